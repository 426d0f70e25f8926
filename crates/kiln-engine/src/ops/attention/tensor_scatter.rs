//! TensorScatter (opset 24): writes `update` into a copy of the KV cache along the sequence axis,
//! at per-batch write indices (linear or circular).

use kiln_tensor::{Tensor, Value, ValueType};

use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::util::norm_axis;
use crate::{bail, ensure};

pub(super) struct TensorScatterOp {
    axis: i64,
    circular: bool,
}

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let circular = match n.attr_string_or("mode", "linear")?.as_str() {
        "linear" => false,
        "circular" => true,
        other => bail!("TensorScatter mode must be 'linear' or 'circular', got '{other}'"),
    };
    Ok(Box::new(TensorScatterOp { axis: n.attr_int_or("axis", -2)?, circular }))
}

impl Op for TensorScatterOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let cache = inputs.tensor(0)?;
        let update = inputs.tensor(1)?;
        let shape = cache.shape();
        ensure!(shape.len() >= 2, "TensorScatter needs a cache of rank >= 2, got {shape:?}");
        let axis = norm_axis(self.axis, shape.len())?;
        ensure!(axis >= 1, "TensorScatter axis must not be the batch axis");
        ensure!(cache.dtype() == update.dtype(), "update is {} but the cache is {}", update.dtype(), cache.dtype());
        let ushape = update.shape();
        ensure!(
            ushape.len() == shape.len() && ushape.iter().zip(shape).enumerate().all(|(i, (u, c))| i == axis || u == c),
            "update shape {ushape:?} must equal the cache shape {shape:?} except on axis {axis}"
        );
        let (max_seq, seq) = (shape[axis], ushape[axis]);
        ensure!(seq <= max_seq, "update has {seq} positions but the cache only {max_seq}");
        let batch = shape[0];
        let indices: Vec<i64> = match inputs.opt_tensor(2)? {
            Some(t) => {
                let v = t.to_i64_vec()?;
                ensure!(v.len() == batch, "write_indices has {} entries for batch {batch}", v.len());
                v
            }
            None => vec![0; batch],
        };
        let inner: usize = shape[axis + 1..].iter().product();
        let per_batch: usize = shape[1..axis].iter().product();
        let mut out = cache.clone();
        let src = update.data();
        for (b, &w) in indices.iter().enumerate() {
            ensure!(w >= 0, "write index {w} is negative");
            for p in 0..per_batch {
                let prefix = b * per_batch + p;
                for s in 0..seq {
                    let mut pos = w as usize + s;
                    if self.circular {
                        pos %= max_seq;
                    }
                    ensure!(pos < max_seq, "write index {w} + {s} is past the cache length {max_seq}");
                    let dst = (prefix * max_seq + pos) * inner;
                    let from = (prefix * seq + s) * inner;
                    copy_range(out.data_mut(), dst, src, from, inner)?;
                }
            }
        }
        Ok(vec![Value::Tensor(out)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![inputs.first().copied().flatten()?.clone()])
    }
}

fn copy_range(dst: &mut kiln_tensor::TensorData, at: usize, src: &kiln_tensor::TensorData, from: usize, n: usize) -> OpResult<()> {
    kiln_tensor::match_data!(dst, d => {
        let s = kiln_tensor::Elem::slice(src).ok_or_else(|| OpError::new("dtype mismatch"))?;
        d[at..at + n].clone_from_slice(&s[from..from + n]);
    });
    Ok(())
}
