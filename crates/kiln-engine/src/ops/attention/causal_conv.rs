//! CausalConvWithState (opset 27): depthwise causal 1-D convolution with a carried state of the
//! last k−1 positions and an optional fused SiLU.

use kiln_tensor::{DType, Dim, Shape, Tensor, TensorData, Value, ValueType};

use super::{store, Prec, Work};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let act = n.attr_string_or("activation", "none")?;
    let silu = match act.as_str() {
        "none" => false,
        "silu" | "swish" => true,
        other => bail!("CausalConvWithState: unsupported activation '{other}' (expected none, silu or swish)"),
    };
    Ok(Box::new(CausalConvOp { silu }))
}

struct CausalConvOp {
    silu: bool,
}

impl Op for CausalConvOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let w = inputs.tensor(1)?;
        let bias = inputs.opt_tensor(2)?;
        let past = inputs.opt_tensor(3)?;
        super::ensure_float(x, "input", "CausalConvWithState")?;
        let (b, c, l) = match x.shape() {
            [b, c, l] => (*b, *c, *l),
            s => bail!("CausalConvWithState: input must be rank 3 (batch, channels, length), got shape {s:?}"),
        };
        let k = match w.shape() {
            [wc, 1, k] if *wc == c && *k > 0 => *k,
            s => bail!("CausalConvWithState: weight must have shape ({c}, 1, k) with k ≥ 1, got {s:?}"),
        };
        for (t, name) in [(Some(w), "weight"), (bias, "bias"), (past, "past_state")] {
            if let Some(t) = t {
                ensure!(
                    t.dtype() == x.dtype(),
                    "CausalConvWithState: {name} is {} but input is {}",
                    t.dtype(),
                    x.dtype()
                );
            }
        }
        if let Some(t) = bias {
            ensure!(t.shape() == [c], "CausalConvWithState: bias must have shape ({c}), got {:?}", t.shape());
        }
        if let Some(t) = past {
            ensure!(
                t.shape() == [b, c, k - 1],
                "CausalConvWithState: past_state must have shape ({b}, {c}, {}), got {:?}",
                k - 1,
                t.shape()
            );
        }
        // padded = concat(past or zeros, input) along length; the new state is its tail.
        let plen = k - 1 + l;
        let mut padded = TensorData::with_capacity(x.dtype(), b * c * plen);
        let zeros = TensorData::zeros(x.dtype(), k - 1);
        for bi in 0..b {
            for ci in 0..c {
                let row = (bi * c + ci) * (k - 1);
                match past {
                    Some(p) => padded.extend_from(p.data(), row..row + k - 1),
                    None => padded.extend_from(&zeros, 0..k - 1),
                }
                let xr = (bi * c + ci) * l;
                padded.extend_from(x.data(), xr..xr + l);
            }
        }
        let padded = Tensor::new(vec![b, c, plen], padded)?;
        let mut state = TensorData::with_capacity(x.dtype(), b * c * (k - 1));
        for r in 0..b * c {
            state.extend_from(padded.data(), r * plen + l..(r + 1) * plen);
        }
        let state = Tensor::new(vec![b, c, k - 1], state)?;
        let y = if x.dtype() == DType::F64 {
            self.compute::<f64>(&padded, w, bias, b, c, l, k)?
        } else {
            self.compute::<f32>(&padded, w, bias, b, c, l, k)?
        };
        Ok(vec![Value::Tensor(y), Value::Tensor(state)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        let (dtype, shape) = match x {
            ValueType::Tensor { dtype, shape } => (*dtype, shape.clone()),
            _ => return None,
        };
        let k = match inputs.get(1).copied().flatten() {
            Some(ValueType::Tensor { shape: Some(s), .. }) if s.rank() == 3 => s.0[2].fixed(),
            _ => None,
        };
        let state_shape = match (&shape, k) {
            (Some(s), Some(k)) if s.rank() == 3 && k > 0 => {
                Some(Shape(vec![s.0[0].clone(), s.0[1].clone(), Dim::Fixed(k - 1)]))
            }
            _ => None,
        };
        Some(vec![x.clone(), ValueType::Tensor { dtype, shape: state_shape }])
    }
}

impl CausalConvOp {
    #[allow(clippy::too_many_arguments)]
    fn compute<W: Work>(
        &self,
        padded: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        b: usize,
        c: usize,
        l: usize,
        k: usize,
    ) -> OpResult<Tensor> {
        let p = Prec::of(padded.dtype()).ok_or_else(|| OpError::new("CausalConvWithState: input must be float"))?;
        let rt = W::rounder(p);
        let r = |v: W| match rt {
            Some(f) => f(v),
            None => v,
        };
        let xs = W::load(padded)?;
        let ws = W::load(w)?;
        let bs = match bias {
            Some(t) => Some(W::load(t)?),
            None => None,
        };
        let plen = k - 1 + l;
        let mut y = Vec::with_capacity(b * c * l);
        for bi in 0..b {
            for ci in 0..c {
                let row = &xs[(bi * c + ci) * plen..(bi * c + ci + 1) * plen];
                let wr = &ws[ci * k..(ci + 1) * k];
                let bv = bs.as_ref().map(|v| v[ci]).unwrap_or(W::ZERO);
                for t in 0..l {
                    let mut acc = W::ZERO;
                    for (j, &wj) in wr.iter().enumerate() {
                        acc = acc + wj * row[t + j];
                    }
                    let mut v = r(acc + bv);
                    if self.silu {
                        let sig = W::ONE / (W::ONE + (-v).exp());
                        v = r(v * sig);
                    }
                    y.push(v);
                }
            }
        }
        store(y, padded.dtype(), vec![b, c, l])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_window_and_state() {
        // k = 2, weights [1, 10]: y[t] = x[t-1] + 10·x[t] with x[-1] from the past state.
        let op = CausalConvOp { silu: false };
        let x = Tensor::from_vec(vec![1, 1, 3], vec![1f32, 2.0, 3.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 2], vec![1f32, 10.0]).unwrap();
        let past = Tensor::from_vec(vec![1, 1, 1], vec![5f32]).unwrap();
        let vals = [Value::Tensor(x), Value::Tensor(w), Value::Tensor(past)];
        let ins = [Some(&vals[0]), Some(&vals[1]), None, Some(&vals[2])];
        let out = op.run(&Inputs::new(&ins)).unwrap();
        assert_eq!(out[0].as_tensor().unwrap().as_slice::<f32>().unwrap(), &[15.0, 21.0, 32.0]);
        assert_eq!(out[1].as_tensor().unwrap().as_slice::<f32>().unwrap(), &[3.0]);
    }
}
