//! The one operator trait, the build-time view of a node (`NodeInfo`), and the run-time view of
//! its inputs (`Inputs`).
//!
//! An operator is built once per node at load (attributes parsed, opset differences resolved) and
//! then `run` many times, possibly from several threads at once.

use std::collections::HashMap;
use std::sync::Arc;

use kiln_onnx::proto::{AttributeProto, AttributeType, GraphProto};
use kiln_tensor::{DType, Shape, Tensor, Value, ValueType};

use crate::error::{OpError, OpResult};

/// A built operator, ready to run.
pub trait Op: Send + Sync {
    /// Computes the outputs from the inputs. `inputs` has one entry per declared node input;
    /// an omitted optional input is `None`. Returns one value per node output (trailing optional
    /// outputs may be omitted).
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>>;

    /// Output types from input types, for load-time shape and type inference. `inputs[i]` is the
    /// known type of input i (None if unknown or omitted); `consts[i]` its value when it is a
    /// constant. Returning `None` means "unknown" — always safe.
    fn infer(&self, _inputs: &[Option<&ValueType>], _consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        None
    }

    /// Outputs that are known at load from the input types alone (e.g. `Shape` of a tensor whose
    /// shape is static); they become constants. Default: not foldable.
    fn fold_from_types(&self, _inputs: &[Option<&ValueType>]) -> Option<Vec<Value>> {
        None
    }

    /// False for ops whose result must not be computed at load (random generators).
    fn is_deterministic(&self) -> bool {
        true
    }

    /// True when constant input `i` was captured at build (e.g. prepacked) and `run` does not
    /// read it: the plan passes `None` for it and the raw constant is freed after loading.
    fn captures_const_input(&self, _i: usize) -> bool {
        false
    }

    /// True when [`Op::run_reusing`] may write its output into input 0's buffer.
    fn reuses_input0(&self) -> bool {
        false
    }

    /// Like [`Op::run`], for a step that is input 0's last reader: input 0 is handed over by value
    /// (`inputs.value(0)` is `None`) so its buffer can hold the output. Only called when
    /// [`Op::reuses_input0`] is true. Default: runs [`Op::run`] on a borrowed view.
    fn run_reusing(&self, first: Value, inputs: &Inputs) -> OpResult<Vec<Value>> {
        run_with_first(&first, inputs, &|all| self.run(all))
    }
}

/// Calls `f` with `inputs` whose input 0 is `first` (for [`Op::run_reusing`] fallbacks).
pub fn with_first<R>(first: &Value, inputs: &Inputs, f: impl FnOnce(&Inputs) -> R) -> R {
    f(&Inputs::new(&first_replaced(first, inputs)))
}

/// [`with_first`] for [`Op::run`]-like calls, one instance for every operator (code size).
fn run_with_first(first: &Value, inputs: &Inputs, f: &dyn Fn(&Inputs) -> OpResult<Vec<Value>>) -> OpResult<Vec<Value>> {
    f(&Inputs::new(&first_replaced(first, inputs)))
}

fn first_replaced<'a>(first: &'a Value, inputs: &Inputs<'a>) -> Vec<Option<&'a Value>> {
    let mut values: Vec<Option<&Value>> = inputs.values.to_vec();
    if let Some(v) = values.first_mut() {
        *v = Some(first);
    }
    values
}

/// Build-time view of a node: its attributes, opset, input/output counts and constant inputs.
pub struct NodeInfo<'a> {
    pub name: &'a str,
    pub op_type: &'a str,
    pub domain: &'a str,
    /// Version of the node's domain imported by the model.
    pub opset: i64,
    pub num_inputs: usize,
    pub num_outputs: usize,
    /// Values of inputs that are constants at load time (initializers, folded nodes).
    pub const_inputs: Vec<Option<Arc<Value>>>,
    /// Types of inputs as known at load time.
    pub input_types: Vec<Option<ValueType>>,
    pub(crate) attrs: HashMap<&'a str, &'a AttributeProto>,
    pub(crate) base_dir: Option<&'a std::path::Path>,
    /// Opset imports of the model (domain → version), for ops with subgraphs.
    pub opsets: &'a HashMap<String, i64>,
    /// Outer-scope values the node's subgraphs read (name, type), sorted by name. At run time
    /// their values follow the declared inputs in `Inputs`.
    pub implicit_inputs: Vec<(String, Option<ValueType>)>,
    pub(crate) registry: &'a crate::registry::Registry,
}

impl<'a> NodeInfo<'a> {
    pub fn has_attr(&self, name: &str) -> bool {
        self.attrs.contains_key(name)
    }
    fn attr(&self, name: &str, ty: AttributeType) -> OpResult<Option<&'a AttributeProto>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == ty || a.r#type == AttributeType::Undefined => Ok(Some(*a)),
            Some(a) => Err(OpError(format!(
                "attribute '{name}' should be {ty:?} but is {:?}",
                a.r#type
            ))),
        }
    }
    pub fn attr_int(&self, name: &str) -> OpResult<Option<i64>> {
        Ok(self.attr(name, AttributeType::Int)?.map(|a| a.i))
    }
    pub fn attr_int_or(&self, name: &str, default: i64) -> OpResult<i64> {
        Ok(self.attr_int(name)?.unwrap_or(default))
    }
    pub fn attr_float(&self, name: &str) -> OpResult<Option<f32>> {
        Ok(self.attr(name, AttributeType::Float)?.map(|a| a.f))
    }
    pub fn attr_float_or(&self, name: &str, default: f32) -> OpResult<f32> {
        Ok(self.attr_float(name)?.unwrap_or(default))
    }
    pub fn attr_string(&self, name: &str) -> OpResult<Option<String>> {
        match self.attr(name, AttributeType::String)? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| OpError(format!("attribute '{name}' is not valid UTF-8"))),
        }
    }
    pub fn attr_string_or(&self, name: &str, default: &str) -> OpResult<String> {
        Ok(self.attr_string(name)?.unwrap_or_else(|| default.to_string()))
    }
    pub fn attr_ints(&self, name: &str) -> OpResult<Option<Vec<i64>>> {
        Ok(self.attr(name, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }
    pub fn attr_floats(&self, name: &str) -> OpResult<Option<Vec<f32>>> {
        Ok(self.attr(name, AttributeType::Floats)?.map(|a| a.floats.clone()))
    }
    pub fn attr_strings(&self, name: &str) -> OpResult<Option<Vec<String>>> {
        match self.attr(name, AttributeType::Strings)? {
            None => Ok(None),
            Some(a) => a
                .strings
                .iter()
                .map(|s| {
                    String::from_utf8(s.clone())
                        .map_err(|_| OpError(format!("attribute '{name}' is not valid UTF-8")))
                })
                .collect::<OpResult<Vec<_>>>()
                .map(Some),
        }
    }
    pub fn attr_tensor(&self, name: &str) -> OpResult<Option<Tensor>> {
        match self.attr(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => match &a.t {
                None => Err(OpError(format!("attribute '{name}' has no tensor"))),
                Some(t) => Ok(Some(kiln_onnx::tensor::tensor_from_proto(t, self.base_dir)?)),
            },
        }
    }
    pub fn attr_graph(&self, name: &str) -> OpResult<Option<&'a GraphProto>> {
        Ok(self.attr(name, AttributeType::Graph)?.and_then(|a| a.g.as_ref()))
    }
    /// The raw attribute, for ops with unusual attribute types (sparse tensors, type protos).
    pub fn attr_raw(&self, name: &str) -> Option<&'a AttributeProto> {
        self.attrs.get(name).copied()
    }
    /// The constant tensor value of input `i`, if it is a constant.
    pub fn const_tensor(&self, i: usize) -> Option<&Tensor> {
        self.const_inputs.get(i).and_then(|v| v.as_ref()).and_then(|v| v.as_tensor())
    }
    /// Declared/inferred dtype of input `i`, if known.
    pub fn input_dtype(&self, i: usize) -> Option<DType> {
        self.input_types.get(i).and_then(|t| t.as_ref()).and_then(|t| t.tensor_dtype())
    }
    /// Declared/inferred shape of input `i`, if known.
    pub fn input_shape(&self, i: usize) -> Option<&Shape> {
        self.input_types.get(i).and_then(|t| t.as_ref()).and_then(|t| t.tensor_shape())
    }
}

/// Run-time view of a node's inputs.
pub struct Inputs<'a> {
    pub(crate) values: &'a [Option<&'a Value>],
}

impl<'a> Inputs<'a> {
    pub fn new(values: &'a [Option<&'a Value>]) -> Inputs<'a> {
        Inputs { values }
    }
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    /// Input `i` as any value, or None if omitted.
    pub fn value(&self, i: usize) -> Option<&'a Value> {
        self.values.get(i).copied().flatten()
    }
    /// Required tensor input `i`.
    pub fn tensor(&self, i: usize) -> OpResult<&'a Tensor> {
        match self.value(i) {
            Some(Value::Tensor(t)) => Ok(t),
            Some(other) => Err(OpError(format!("input {i} should be a tensor, got {}", other.describe()))),
            None => Err(OpError(format!("required input {i} is missing"))),
        }
    }
    /// Optional tensor input `i` (None if omitted or beyond the inputs given).
    pub fn opt_tensor(&self, i: usize) -> OpResult<Option<&'a Tensor>> {
        match self.value(i) {
            Some(Value::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(OpError(format!("input {i} should be a tensor, got {}", other.describe()))),
            None => Ok(None),
        }
    }
    /// All present inputs as tensors (for variadic ops).
    pub fn tensors(&self) -> OpResult<Vec<&'a Tensor>> {
        (0..self.values.len()).filter(|&i| self.value(i).is_some()).map(|i| self.tensor(i)).collect()
    }
}
