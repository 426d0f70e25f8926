//! `Session`: a loaded, optimised model that many threads can `run` at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_kernels::par::ThreadPool;

use kiln_onnx::proto::ModelProto;
use kiln_tensor::{Dim, Value, ValueType};

use crate::error::Error;
use crate::plan::{compile, CompileEnv, Plan};
use crate::registry::{Registry, MAX_AI_ONNX_OPSET};

/// Options for loading a model.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Intra-op threads; 0 means one per available core.
    pub threads: usize,
    /// Run load-time optimisations (constant folding). On by default.
    pub optimize: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { threads: 0, optimize: true }
    }
}

impl SessionOptions {
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }
}

/// Name and declared type of a model input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct IoInfo {
    pub name: String,
    pub ty: ValueType,
}

/// Facts about the loaded model, for `inspect`.
#[derive(Clone, Debug, Default)]
pub struct ModelInfo {
    pub ir_version: i64,
    pub producer: String,
    /// (domain, version); domain "" is ai.onnx.
    pub opsets: Vec<(String, i64)>,
    /// Op types with their node counts, most frequent first (as in the file, before optimisation).
    pub op_histogram: Vec<(String, usize)>,
    /// Number of initializer elements and their total size in bytes.
    pub parameters: usize,
    pub parameter_bytes: usize,
    /// Nodes left after optimisation.
    pub planned_nodes: usize,
}

/// A loaded model.
pub struct Session {
    plan: Plan,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    info: ModelInfo,
    threads: usize,
    /// Workers for parallel kernels (`None` for one thread: runs stay on the caller's thread).
    pool: Option<Arc<ThreadPool>>,
}

impl Session {
    /// Loads a model from a file (memory-mapped); external data is looked up next to it.
    pub fn from_file(path: &Path, options: SessionOptions) -> Result<Session, Error> {
        let model = kiln_onnx::load_model_file(path).map_err(|e| {
            let msg = e.to_string();
            if msg.starts_with("cannot ") {
                Error::Io(msg)
            } else {
                Error::Decode(msg)
            }
        })?;
        let dir: PathBuf = path.parent().map(|p| p.to_path_buf()).unwrap_or_else(|| PathBuf::from("."));
        Session::from_proto(&model, Some(&dir), options, &Registry::with_builtin())
    }

    /// Loads a model from bytes (external data is not available).
    pub fn from_bytes(bytes: &[u8], options: SessionOptions) -> Result<Session, Error> {
        let model = kiln_onnx::decode_model(bytes)?;
        Session::from_proto(&model, None, options, &Registry::with_builtin())
    }

    /// Loads a decoded model with a custom operator registry.
    pub fn from_proto(
        model: &ModelProto,
        base_dir: Option<&Path>,
        options: SessionOptions,
        registry: &Registry,
    ) -> Result<Session, Error> {
        let graph = model.graph.as_ref().ok_or_else(|| Error::InvalidModel("the model has no graph".into()))?;
        let mut opsets: HashMap<String, i64> = HashMap::new();
        for o in &model.opset_import {
            let d = if o.domain == "ai.onnx" { String::new() } else { o.domain.clone() };
            opsets.insert(d, o.version);
        }
        if model.opset_import.is_empty() {
            // IR version 2 models have no opset import: they are opset 1.
            opsets.insert(String::new(), 1);
        }
        if let Some(&v) = opsets.get("") {
            if v > MAX_AI_ONNX_OPSET {
                return Err(Error::InvalidModel(format!(
                    "the model needs ai.onnx opset {v}; Kiln supports up to {MAX_AI_ONNX_OPSET}"
                )));
            }
        }
        let inlined;
        let graph = if model.functions.is_empty() {
            graph
        } else {
            inlined = crate::functions::inline_functions(graph, &model.functions)?;
            &inlined
        };
        let env = CompileEnv { registry, opsets: &opsets, base_dir, optimize: options.optimize };
        let plan = compile(graph, &env, &[])?;

        let inputs = plan
            .inputs
            .iter()
            .map(|(name, ty, _)| IoInfo { name: name.clone(), ty: ty.clone().unwrap_or_else(unknown_type) })
            .collect();
        let outputs = plan
            .outputs
            .iter()
            .map(|(name, ty, _)| IoInfo { name: name.clone(), ty: ty.clone().unwrap_or_else(unknown_type) })
            .collect();
        let mut parameters = 0usize;
        let mut parameter_bytes = 0usize;
        for t in &graph.initializer {
            let n: i64 = t.dims.iter().product();
            let n = n.max(0) as usize;
            parameters += n;
            if let Some(d) = kiln_tensor::DType::from_onnx(t.data_type) {
                parameter_bytes += n * d.size();
            }
        }
        let mut op_list: Vec<(String, i64)> = opsets.iter().map(|(k, v)| (k.clone(), *v)).collect();
        op_list.sort();
        let info = ModelInfo {
            ir_version: model.ir_version,
            producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_string(),
            opsets: op_list,
            op_histogram: plan.op_histogram.clone(),
            parameters,
            parameter_bytes,
            planned_nodes: plan.steps.len(),
        };
        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            options.threads
        };
        let pool = kiln_kernels::par::build_pool(threads);
        Ok(Session {
            plan,
            inputs,
            outputs,
            info,
            threads,
            pool,
        })
    }

    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs the model. Every graph input must be given (by name, any order); outputs come back
    /// in graph output order.
    pub fn run(&self, inputs: Vec<(String, Value)>) -> Result<Vec<(String, Value)>, Error> {
        let feeds = self.check_inputs(inputs)?;
        let values = self.execute(feeds)?;
        Ok(self.outputs.iter().map(|o| o.name.clone()).zip(values).collect())
    }

    /// Runs the model and reports each executed node's wall time: (node name, op type, ms).
    #[allow(clippy::type_complexity)]
    pub fn run_profiled(
        &self,
        inputs: Vec<(String, Value)>,
    ) -> Result<(Vec<(String, Value)>, Vec<(String, String, f64)>), Error> {
        let feeds = self.check_inputs(inputs)?;
        let mut times = Vec::with_capacity(self.plan.steps.len());
        let values = {
            let _pool = kiln_kernels::par::enter(self.pool.clone());
            self.plan.execute_profiled(feeds, &[], Some(&mut times))?
        };
        let profile = self.plan.step_names().into_iter().zip(times).map(|((n, o), t)| (n, o, t)).collect();
        Ok((self.outputs.iter().map(|o| o.name.clone()).zip(values).collect(), profile))
    }

    /// Runs the plan on the caller's thread; parallel kernels use this session's pool.
    fn execute(&self, feeds: Vec<Value>) -> Result<Vec<Value>, Error> {
        let _pool = kiln_kernels::par::enter(self.pool.clone());
        self.plan.execute(feeds)
    }

    /// Matches the given inputs to the graph inputs and checks dtype and shape.
    fn check_inputs(&self, inputs: Vec<(String, Value)>) -> Result<Vec<Value>, Error> {
        let mut by_name: HashMap<String, Value> = HashMap::new();
        for (name, v) in inputs {
            if !self.inputs.iter().any(|i| i.name == name) {
                let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(Error::Input(format!(
                    "the model has no input named '{name}' (inputs: {})",
                    names.join(", ")
                )));
            }
            if by_name.insert(name.clone(), v).is_some() {
                return Err(Error::Input(format!("input '{name}' is given twice")));
            }
        }
        let mut symbols: HashMap<String, (usize, String)> = HashMap::new();
        let mut feeds = Vec::with_capacity(self.inputs.len());
        for io in &self.inputs {
            let v = by_name
                .remove(&io.name)
                .ok_or_else(|| Error::Input(format!("input '{}' ({}) is missing", io.name, io.ty)))?;
            check_value(&io.name, &io.ty, &v, &mut symbols)?;
            feeds.push(v);
        }
        Ok(feeds)
    }
}

fn unknown_type() -> ValueType {
    ValueType::Tensor { dtype: kiln_tensor::DType::F32, shape: None }
}

fn check_value(
    name: &str,
    declared: &ValueType,
    v: &Value,
    symbols: &mut HashMap<String, (usize, String)>,
) -> Result<(), Error> {
    match (declared, v) {
        (ValueType::Tensor { dtype, shape }, Value::Tensor(t)) => {
            if t.dtype() != *dtype {
                return Err(Error::Input(format!(
                    "input '{name}' must be {dtype}, got {}",
                    t.dtype()
                )));
            }
            if let Some(shape) = shape {
                if !shape.accepts(t.shape()) {
                    return Err(Error::Input(format!(
                        "input '{name}' must have shape {shape}, got {:?}",
                        t.shape()
                    )));
                }
                for (d, &n) in shape.0.iter().zip(t.shape()) {
                    if let Dim::Sym(s) = d {
                        if s == "?" || s.is_empty() {
                            continue;
                        }
                        if let Some((m, other)) = symbols.get(s.as_str()) {
                            if *m != n {
                                return Err(Error::Input(format!(
                                    "dimension '{s}' is {n} in input '{name}' but {m} in input '{other}'"
                                )));
                            }
                        } else {
                            symbols.insert(s.clone(), (n, name.to_string()));
                        }
                    }
                }
            }
            Ok(())
        }
        (ValueType::Tensor { .. }, other) => {
            Err(Error::Input(format!("input '{name}' must be a tensor, got {}", other.describe())))
        }
        (ValueType::Sequence(_), Value::Sequence { .. })
        | (ValueType::Map(..), Value::Map { .. })
        | (ValueType::Optional(_), _) => Ok(()),
        (d, other) => Err(Error::Input(format!("input '{name}' must be {d}, got {}", other.describe()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn session_is_send_and_sync() {
        assert_send_sync::<Session>();
    }
}
