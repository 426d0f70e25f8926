//! The operator registry: (domain, op type) → builder. Each `ops/` family registers its ops here;
//! other domains (ai.onnx.ml, custom) register the same way.

use std::collections::HashMap;

use crate::error::OpResult;
use crate::op::{NodeInfo, Op};

/// Builds an operator for one node.
pub type BuildFn = fn(&NodeInfo) -> OpResult<Box<dyn Op>>;

/// One registered operator.
#[derive(Clone)]
pub struct OpEntry {
    pub domain: &'static str,
    pub op_type: &'static str,
    /// Lowest opset version of the domain this implementation accepts.
    pub since: i64,
    pub build: BuildFn,
}

/// Highest ai.onnx opset Kiln knows (the pinned onnx package's).
pub const MAX_AI_ONNX_OPSET: i64 = 28;

/// All registered operators.
#[derive(Clone, Default)]
pub struct Registry {
    ops: HashMap<&'static str, HashMap<&'static str, OpEntry>>,
}

impl Registry {
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// The registry with every built-in operator.
    pub fn with_builtin() -> Registry {
        let mut r = Registry::empty();
        crate::ops::register_all(&mut r);
        r
    }

    /// Registers an ai.onnx op available from opset `since`.
    pub fn add(&mut self, op_type: &'static str, since: i64, build: BuildFn) {
        self.add_in("", op_type, since, build);
    }

    /// Registers an op in another domain ("ai.onnx.ml", "com.example", ...).
    pub fn add_in(&mut self, domain: &'static str, op_type: &'static str, since: i64, build: BuildFn) {
        self.ops.entry(domain).or_default().insert(op_type, OpEntry { domain, op_type, since, build });
    }

    pub fn get(&self, domain: &str, op_type: &str) -> Option<&OpEntry> {
        let domain = if domain == "ai.onnx" { "" } else { domain };
        self.ops.get(domain)?.get(op_type)
    }

    /// Every registered op, sorted by domain then name.
    pub fn entries(&self) -> Vec<&OpEntry> {
        let mut v: Vec<&OpEntry> = self.ops.values().flat_map(|m| m.values()).collect();
        v.sort_by_key(|e| (e.domain, e.op_type));
        v
    }
}
