//! Constant and Identity-like operators: Constant, Identity.

use kiln_tensor::{Tensor, Value, ValueType};

use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;

pub fn register(r: &mut Registry) {
    r.add("Constant", 1, build_constant);
    r.add("Identity", 1, |_| Ok(Box::new(IdentityOp)));
}

struct ConstantOp(Tensor);

impl Op for ConstantOp {
    fn run(&self, _inputs: &Inputs) -> OpResult<Vec<Value>> {
        Ok(vec![Value::Tensor(self.0.clone())])
    }
    fn infer(&self, _: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![Value::Tensor(self.0.clone()).value_type()])
    }
}

fn build_constant(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let t = if let Some(t) = n.attr_tensor("value")? {
        t
    } else if let Some(a) = n.attr_raw("sparse_value") {
        let st = a.sparse_tensor.as_ref().ok_or_else(|| OpError::new("sparse_value is empty"))?;
        crate::sparse::densify(st, n.base_dir)?
    } else if let Some(f) = n.attr_float("value_float")? {
        Tensor::scalar(f)
    } else if let Some(v) = n.attr_floats("value_floats")? {
        Tensor::from_vec(vec![v.len()], v)?
    } else if let Some(i) = n.attr_int("value_int")? {
        Tensor::scalar(i)
    } else if let Some(v) = n.attr_ints("value_ints")? {
        Tensor::from_vec(vec![v.len()], v)?
    } else if let Some(s) = n.attr_string("value_string")? {
        Tensor::scalar(s)
    } else if let Some(v) = n.attr_strings("value_strings")? {
        Tensor::from_vec(vec![v.len()], v)?
    } else {
        return Err(OpError::new("Constant has no value attribute"));
    };
    Ok(Box::new(ConstantOp(t)))
}

struct IdentityOp;

impl Op for IdentityOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let v = inputs.value(0).ok_or_else(|| OpError::new("input 0 is missing"))?;
        Ok(vec![v.clone()])
    }
    fn reuses_input0(&self) -> bool {
        true
    }
    fn run_reusing(&self, first: Value, _: &Inputs) -> OpResult<Vec<Value>> {
        Ok(vec![first])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![inputs.first().copied().flatten()?.clone()])
    }
}
