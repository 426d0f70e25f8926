//! RotaryEmbedding (opset 23): rotary position embedding of 3-D (B, S, H·D) or 4-D (B, H, S, D)
//! inputs, half-split or interleaved, with optional partial rotation and position ids.

use kiln_tensor::{Tensor, Value, ValueType};

use super::{store, Prec, Work};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let num_heads = n.attr_int_or("num_heads", 0)?;
    ensure!(num_heads >= 0, "RotaryEmbedding: num_heads must be nonnegative, got {num_heads}");
    let rot = n.attr_int_or("rotary_embedding_dim", 0)?;
    ensure!(rot >= 0, "RotaryEmbedding: rotary_embedding_dim must be nonnegative, got {rot}");
    Ok(Box::new(RotaryOp {
        interleaved: n.attr_int_or("interleaved", 0)? != 0,
        rot_dim: rot as usize,
        num_heads: num_heads as usize,
    }))
}

struct RotaryOp {
    interleaved: bool,
    rot_dim: usize,
    num_heads: usize,
}

impl Op for RotaryOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let cos = inputs.tensor(1)?;
        let sin = inputs.tensor(2)?;
        let pos = inputs.opt_tensor(3)?;
        super::ensure_float(x, "X", "RotaryEmbedding")?;
        let y = if x.dtype() == kiln_tensor::DType::F64 {
            self.compute::<f64>(x, cos, sin, pos)?
        } else {
            self.compute::<f32>(x, cos, sin, pos)?
        };
        Ok(vec![Value::Tensor(y)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![inputs.first().copied().flatten()?.clone()])
    }
}

impl RotaryOp {
    fn compute<W: Work>(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, pos: Option<&Tensor>) -> OpResult<Tensor> {
        let s = x.shape();
        // (batch, seq, heads, head_size) and the element strides of (b, s, h).
        let (b, seq, heads, hd, sb, ss, sh) = match s.len() {
            4 => (s[0], s[2], s[1], s[3], s[1] * s[2] * s[3], s[3], s[2] * s[3]),
            3 => {
                let h = self.num_heads;
                ensure!(h > 0, "RotaryEmbedding: 3-D input needs the num_heads attribute");
                ensure!(
                    s[2].is_multiple_of(h),
                    "RotaryEmbedding: hidden size {} is not divisible by num_heads {h}",
                    s[2]
                );
                let hd = s[2] / h;
                (s[0], s[1], h, hd, s[1] * s[2], s[2], hd)
            }
            r => bail!("RotaryEmbedding: input must be 3-D or 4-D, got rank {r}"),
        };
        let rd = if self.rot_dim == 0 { hd } else { self.rot_dim };
        ensure!(
            rd <= hd && rd % 2 == 0,
            "RotaryEmbedding: rotary_embedding_dim {rd} must be even and at most the head size {hd}"
        );
        let half = rd / 2;
        for (t, name) in [(cos, "cos_cache"), (sin, "sin_cache")] {
            ensure!(
                t.dtype() == x.dtype(),
                "RotaryEmbedding: {name} is {} but the input is {}",
                t.dtype(),
                x.dtype()
            );
            ensure!(
                t.shape().last() == Some(&half),
                "RotaryEmbedding: {name} has shape {:?}; its last dimension must be rotary_embedding_dim/2 = {half}",
                t.shape()
            );
            ensure!(t.shape() == cos.shape(), "RotaryEmbedding: cos_cache and sin_cache shapes differ");
        }
        // Row of the caches for each (batch, position).
        let rows: Vec<usize> = match pos {
            Some(p) => {
                ensure!(
                    p.shape() == [b, seq] || (p.len() == seq && p.rank() <= 2 && (p.rank() < 2 || p.shape()[0] == 1)),
                    "RotaryEmbedding: position_ids has shape {:?}, expected ({b}, {seq})",
                    p.shape()
                );
                ensure!(cos.rank() == 2, "RotaryEmbedding: with position_ids the caches must be 2-D");
                let max = cos.shape()[0];
                let ids = p.to_i64_vec()?;
                let per_batch = ids.len() == b * seq;
                let mut rows = Vec::with_capacity(b * seq);
                for bi in 0..b {
                    for si in 0..seq {
                        let id = ids[if per_batch { bi * seq + si } else { si }];
                        ensure!(
                            id >= 0 && (id as usize) < max,
                            "RotaryEmbedding: position id {id} is out of range for caches of {max} positions"
                        );
                        rows.push(id as usize);
                    }
                }
                rows
            }
            None => match cos.shape() {
                [cb, cs, _] if *cb == b && *cs == seq => (0..b * seq).collect(),
                [cs, _] if *cs == seq => (0..b).flat_map(|_| 0..seq).collect(),
                other => bail!(
                    "RotaryEmbedding: without position_ids the caches must have shape ({b}, {seq}, {half}), got {other:?}"
                ),
            },
        };
        let tp = Prec::of(x.dtype()).ok_or_else(|| OpError::new("RotaryEmbedding: input must be float"))?;
        let rt = W::rounder(tp);
        let r = |v: W| match rt {
            Some(f) => f(v),
            None => v,
        };
        let xs = W::load(x)?;
        let cs = W::load(cos)?;
        let sn = W::load(sin)?;
        let mut out: Vec<W> = xs.to_vec();
        for bi in 0..b {
            for si in 0..seq {
                let row = rows[bi * seq + si] * half;
                let (c, s_) = (&cs[row..row + half], &sn[row..row + half]);
                for h in 0..heads {
                    let base = bi * sb + si * ss + h * sh;
                    let xin = &xs[base..base + hd];
                    let o = &mut out[base..base + hd];
                    for i in 0..half {
                        let (i1, i2) = if self.interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
                        let (x1, x2) = (xin[i1], xin[i2]);
                        o[i1] = r(r(c[i] * x1) - r(s_[i] * x2));
                        o[i2] = r(r(s_[i] * x1) + r(c[i] * x2));
                    }
                }
            }
        }
        store(out, x.dtype(), s.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_turn_rotates_pairs() {
        // cos 0, sin 1: (x1, x2) → (-x2, x1).
        let op = RotaryOp { interleaved: false, rot_dim: 0, num_heads: 0 };
        let x = Tensor::from_vec(vec![1, 1, 1, 4], vec![1f32, 2.0, 3.0, 4.0]).unwrap();
        let c = Tensor::from_vec(vec![1, 1, 2], vec![0f32, 0.0]).unwrap();
        let s = Tensor::from_vec(vec![1, 1, 2], vec![1f32, 1.0]).unwrap();
        let y = op.compute::<f32>(&x, &c, &s, None).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-3.0, -4.0, 1.0, 2.0]);
        let op = RotaryOp { interleaved: true, rot_dim: 0, num_heads: 0 };
        let y = op.compute::<f32>(&x, &c, &s, None).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-2.0, 1.0, -4.0, 3.0]);
    }
}
