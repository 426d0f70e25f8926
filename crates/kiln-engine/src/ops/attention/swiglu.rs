//! SwiGLU (opset 28): Y = A · sigmoid(alpha · A) · B for same-shaped A and B.

use kiln_tensor::{DType, Tensor, Value, ValueType};

use super::{store, Prec, Work};
use crate::ensure;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(SwiGluOp { alpha: n.attr_float_or("alpha", 1.0)? }))
}

struct SwiGluOp {
    alpha: f32,
}

impl Op for SwiGluOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let a = inputs.tensor(0)?;
        let b = inputs.tensor(1)?;
        super::ensure_float(a, "A", "SwiGLU")?;
        ensure!(a.dtype() == b.dtype(), "SwiGLU: A is {} but B is {}", a.dtype(), b.dtype());
        ensure!(
            a.shape() == b.shape(),
            "SwiGLU: A and B must have identical shapes (no broadcasting), got {:?} and {:?}",
            a.shape(),
            b.shape()
        );
        let y = if a.dtype() == DType::F64 { self.compute::<f64>(a, b)? } else { self.compute::<f32>(a, b)? };
        Ok(vec![Value::Tensor(y)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![inputs.first().copied().flatten()?.clone()])
    }
}

impl SwiGluOp {
    fn compute<W: Work>(&self, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
        let p = Prec::of(a.dtype()).ok_or_else(|| OpError::new("SwiGLU: inputs must be float"))?;
        let rt = W::rounder(p);
        let r = |v: W| match rt {
            Some(f) => f(v),
            None => v,
        };
        let mut alpha = W::from_f64(self.alpha as f64);
        alpha = r(alpha);
        let (av, bv) = (W::load(a)?, W::load(b)?);
        let y: Vec<W> = av
            .iter()
            .zip(bv.iter())
            .map(|(&x, &g)| {
                let e = r(r(-(alpha * x)).exp());
                let sig = r(W::ONE / r(W::ONE + e));
                r(r(x * sig) * g)
            })
            .collect();
        store(y, a.dtype(), a.shape().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_values() {
        // swish(0) = 0; swish(ln 3) with alpha 1 = ln3 · 3/4.
        let op = SwiGluOp { alpha: 1.0 };
        let a = Tensor::from_vec(vec![2], vec![0f64, 3f64.ln()]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![5f64, 2.0]).unwrap();
        let y = op.compute::<f64>(&a, &b).unwrap();
        let y = y.as_slice::<f64>().unwrap();
        assert_eq!(y[0], 0.0);
        assert!((y[1] - 3f64.ln() * 0.75 * 2.0).abs() < 1e-12);
    }
}
