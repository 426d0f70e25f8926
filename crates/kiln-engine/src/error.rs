//! Engine errors: every failure a caller can cause is one of these, never a panic.

use std::fmt;

use kiln_tensor::TensorError;

/// A node Kiln cannot run, reported at load time (all of them at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedNode {
    pub node: String,
    pub domain: String,
    pub op_type: String,
    pub opset: i64,
    pub reason: String,
}

/// Error from loading or running a model.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// The bytes are not a valid ONNX model (truncated, garbage, bad protobuf).
    Decode(String),
    /// Reading the model or its external data failed.
    Io(String),
    /// The model decodes but is inconsistent: a cycle, a missing initializer, a bad attribute...
    InvalidModel(String),
    /// Nodes whose op Kiln does not implement (or not in this form).
    Unsupported(Vec<UnsupportedNode>),
    /// Inputs passed to `run` do not match the model (unknown name, missing, dtype or shape).
    Input(String),
    /// A node failed while running (shape mismatch discovered at run time, bad index...).
    Node { node: String, op_type: String, message: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Decode(m) => write!(f, "not a valid ONNX model: {m}"),
            Error::Io(m) => write!(f, "{m}"),
            Error::InvalidModel(m) => write!(f, "invalid model: {m}"),
            Error::Unsupported(nodes) => {
                // Grouped by op (and reason), each group naming all of its nodes.
                let mut groups: Vec<(String, &str, Vec<&str>)> = Vec::new();
                for n in nodes {
                    let dom = if n.domain.is_empty() { "ai.onnx" } else { &n.domain };
                    let key = format!("{dom}:{} (opset {})", n.op_type, n.opset);
                    match groups.iter_mut().find(|g| g.0 == key && g.1 == n.reason) {
                        Some(g) => g.2.push(&n.node),
                        None => groups.push((key, &n.reason, vec![&n.node])),
                    }
                }
                write!(f, "{} unsupported node(s): ", nodes.len())?;
                for (i, (op, reason, names)) in groups.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{op}")?;
                    if !reason.is_empty() {
                        write!(f, " [{reason}]")?;
                    }
                    write!(f, " at ")?;
                    for (k, name) in names.iter().enumerate() {
                        if k > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "'{name}'")?;
                    }
                }
                Ok(())
            }
            Error::Input(m) => write!(f, "bad input: {m}"),
            Error::Node { node, op_type, message } => {
                write!(f, "node '{node}' ({op_type}) failed: {message}")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<kiln_onnx::OnnxError> for Error {
    fn from(e: kiln_onnx::OnnxError) -> Error {
        Error::Decode(e.to_string())
    }
}

/// Error from inside an operator; the executor adds the node name and op type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError(pub String);

impl OpError {
    pub fn new(msg: impl Into<String>) -> OpError {
        OpError(msg.into())
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpError {}

impl From<TensorError> for OpError {
    fn from(e: TensorError) -> OpError {
        OpError(e.0)
    }
}

impl From<kiln_onnx::OnnxError> for OpError {
    fn from(e: kiln_onnx::OnnxError) -> OpError {
        OpError(e.to_string())
    }
}

/// `bail!("...", args)`: return an `OpError` from an operator.
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::OpError(format!($($t)*))) };
}

/// `ensure!(cond, "...", args)`: return an `OpError` unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($c:expr, $($t:tt)*) => { if !$c { return Err($crate::OpError(format!($($t)*))); } };
}

pub type OpResult<T> = Result<T, OpError>;
