//! Normalizations: BatchNormalization, InstanceNormalization, LayerNormalization,
//! GroupNormalization, RMSNormalization, LRN, LpNormalization, MeanVarianceNormalization.

use kiln_tensor::{Dim, Shape, Tensor, Value, ValueType};

use crate::error::OpResult;
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::matmul::{real_tensor, GemmElem, Real};
use crate::ops::util::{broadcast_index_map, norm_axes, norm_axis};
use crate::registry::Registry;
use crate::{bail, ensure, real_dispatch};

pub(super) fn register(r: &mut Registry) {
    r.add("BatchNormalization", 1, build_batch_norm);
    r.add("InstanceNormalization", 1, |n| Ok(Box::new(InstanceNormOp { eps: n.attr_float_or("epsilon", 1e-5)? as f64 })));
    r.add("LayerNormalization", 17, build_layer_norm);
    r.add("GroupNormalization", 18, build_group_norm);
    r.add("RMSNormalization", 23, build_rms_norm);
    r.add("LRN", 1, build_lrn);
    r.add("LpNormalization", 1, |n| {
        Ok(Box::new(LpNormOp { axis: n.attr_int_or("axis", -1)?, p: n.attr_int_or("p", 2)? }))
    });
    r.add("MeanVarianceNormalization", 9, |n| {
        Ok(Box::new(MvnOp { axes: n.attr_ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]) }))
    });
}

fn same_type(inputs: &[Option<&ValueType>]) -> Option<Vec<ValueType>> {
    Some(vec![inputs.first().copied().flatten()?.clone()])
}

/// Mean and (population) variance of a slice, accumulated in f64.
fn mean_var<T: Real>(v: &[T]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|x| x.to_f64()).sum::<f64>() / n;
    let var = v.iter().map(|x| {
        let d = x.to_f64() - mean;
        d * d
    }).sum::<f64>() / n;
    (mean, var)
}

/// Per-channel parameter lookup that accepts [C] (or a tensor of C·spatial elements for the old
/// non-spatial BatchNormalization).
fn channel_param<T: Real>(p: &[T], c: usize, what: &str) -> OpResult<()> {
    ensure!(p.len() == c, "{what} has {} elements; expected {c}", p.len());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// BatchNormalization
// ---------------------------------------------------------------------------------------------

struct BatchNormOp {
    eps: f64,
    momentum: f64,
    training: bool,
}

fn build_batch_norm(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let training = if n.opset >= 14 {
        n.attr_int_or("training_mode", 0)? != 0
    } else if n.opset < 7 {
        n.attr_int_or("is_test", 0)? == 0 && n.num_outputs > 1
    } else {
        n.num_outputs > 1
    };
    Ok(Box::new(BatchNormOp {
        eps: n.attr_float_or("epsilon", 1e-5)? as f64,
        momentum: n.attr_float_or("momentum", 0.9)? as f64,
        training,
    }))
}

impl Op for BatchNormOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        ensure!(s.len() >= 2, "BatchNormalization input must have rank >= 2, got {s:?}");
        let (n, c) = (s[0], s[1]);
        let sz: usize = s[2..].iter().product();
        let dt = x.dtype();
        real_dispatch!(dt, "BatchNormalization", |T| {
            let xv = T::cow(x)?;
            let scale = T::cow(inputs.tensor(1)?)?;
            let bias = T::cow(inputs.tensor(2)?)?;
            let mean_in = T::cow(inputs.tensor(3)?)?;
            let var_in = T::cow(inputs.tensor(4)?)?;
            for (p, name) in [(&scale, "scale"), (&bias, "B"), (&mean_in, "input_mean"), (&var_in, "input_var")] {
                channel_param(p, c, name)?;
            }
            let mut mean: Vec<f64> = mean_in.iter().map(|v| v.to_f64()).collect();
            let mut var: Vec<f64> = var_in.iter().map(|v| v.to_f64()).collect();
            if self.training {
                for ch in 0..c {
                    let mut sum = 0.0;
                    let mut sq = 0.0;
                    for img in 0..n {
                        for &v in &xv[(img * c + ch) * sz..][..sz] {
                            let v = v.to_f64();
                            sum += v;
                            sq += v * v;
                        }
                    }
                    let cnt = (n * sz).max(1) as f64;
                    let m = sum / cnt;
                    mean[ch] = m;
                    var[ch] = (sq / cnt - m * m).max(0.0);
                }
            }
            let mut y = vec![T::zero(); xv.len()];
            let mul: Vec<T> = (0..c).map(|ch| T::from_f64(scale[ch].to_f64() / (var[ch] + self.eps).sqrt())).collect();
            let add: Vec<T> = (0..c).map(|ch| T::from_f64(bias[ch].to_f64() - mean[ch] * mul[ch].to_f64())).collect();
            if sz > 0 {
                for (i, (yo, xi)) in y.chunks_mut(sz).zip(xv.chunks(sz)).enumerate() {
                    let ch = i % c;
                    let (m, a) = (mul[ch], add[ch]);
                    for (o, &v) in yo.iter_mut().zip(xi) {
                        *o = v * m + a;
                    }
                }
            }
            let mut out = vec![Value::Tensor(real_tensor(s.to_vec(), y, dt)?)];
            if self.training {
                let mom = self.momentum;
                let rm: Vec<T> = (0..c).map(|ch| T::from_f64(mean_in[ch].to_f64() * mom + mean[ch] * (1.0 - mom))).collect();
                let rv: Vec<T> = (0..c).map(|ch| T::from_f64(var_in[ch].to_f64() * mom + var[ch] * (1.0 - mom))).collect();
                out.push(Value::Tensor(real_tensor(vec![c], rm, dt)?));
                out.push(Value::Tensor(real_tensor(vec![c], rv, dt)?));
            }
            Ok(out)
        })
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        if self.training {
            return None;
        }
        same_type(inputs)
    }
}

// ---------------------------------------------------------------------------------------------
// InstanceNormalization
// ---------------------------------------------------------------------------------------------

struct InstanceNormOp {
    eps: f64,
}

impl Op for InstanceNormOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        ensure!(s.len() >= 2, "InstanceNormalization input must have rank >= 2, got {s:?}");
        let c = s[1];
        let sz: usize = s[2..].iter().product();
        let dt = x.dtype();
        let t = real_dispatch!(dt, "InstanceNormalization", |T| {
            let xv = T::cow(x)?;
            let scale = T::cow(inputs.tensor(1)?)?;
            let bias = T::cow(inputs.tensor(2)?)?;
            channel_param(&scale, c, "scale")?;
            channel_param(&bias, c, "B")?;
            let mut y = vec![T::zero(); xv.len()];
            if sz > 0 {
                for (i, (yo, xi)) in y.chunks_mut(sz).zip(xv.chunks(sz)).enumerate() {
                    let ch = i % c;
                    let (mean, var) = mean_var(xi);
                    let m = scale[ch].to_f64() / (var + self.eps).sqrt();
                    let a = bias[ch].to_f64() - mean * m;
                    let (m, a) = (T::from_f64(m), T::from_f64(a));
                    for (o, &v) in yo.iter_mut().zip(xi) {
                        *o = v * m + a;
                    }
                }
            }
            real_tensor(s.to_vec(), y, dt)?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        same_type(inputs)
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNormalization and RMSNormalization
// ---------------------------------------------------------------------------------------------

struct LayerNormOp {
    axis: i64,
    eps: f64,
    rms: bool,
}

fn build_layer_norm(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(LayerNormOp { axis: n.attr_int_or("axis", -1)?, eps: n.attr_float_or("epsilon", 1e-5)? as f64, rms: false }))
}

fn build_rms_norm(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(LayerNormOp { axis: n.attr_int_or("axis", -1)?, eps: n.attr_float_or("epsilon", 1e-5)? as f64, rms: true }))
}

/// Indices of a parameter (scale/bias) broadcast over the normalized inner shape.
fn inner_param_index(p: &[usize], inner: &[usize]) -> OpResult<Option<Vec<usize>>> {
    let full = crate::ops::util::broadcast_shapes(p, inner)?;
    ensure!(full == inner, "parameter of shape {p:?} does not broadcast to the normalized shape {inner:?}");
    if p.iter().product::<usize>() == inner.iter().product::<usize>() {
        return Ok(None);
    }
    Ok(Some(broadcast_index_map(p, inner)))
}

impl LayerNormOp {
    /// Float32 rows with scale (and bias) of the row's shape: vectorised, rows split over threads.
    fn run_f32(&self, s: &[usize], axis: usize, inner: usize, x: &[f32], sc: &[f32], bias: Option<&[f32]>) -> OpResult<Vec<Value>> {
        let outer = x.len() / inner;
        // Each row's output followed by its mean and inverse deviation, filled in parallel.
        let mut y = vec![0f32; x.len()];
        let mut stats = vec![0f32; 2 * outer];
        let (rms, eps) = (self.rms, self.eps as f32);
        {
            let mut rows: Vec<(&mut [f32], &mut [f32])> = y.chunks_mut(inner).zip(stats.chunks_mut(2)).collect();
            let per = outer.div_ceil(kiln_kernels::par::threads().min(x.len() / 8192).max(1));
            let mut parts: Vec<(usize, Vec<(&mut [f32], &mut [f32])>)> = Vec::new();
            let mut start = 0;
            while !rows.is_empty() {
                let rest = rows.split_off(per.min(rows.len()));
                parts.push((start, std::mem::replace(&mut rows, rest)));
                start += per;
            }
            kiln_kernels::par::for_each(parts, |(first, part)| {
                for (r, (yo, st)) in part.into_iter().enumerate() {
                    let xi = &x[(first + r) * inner..(first + r + 1) * inner];
                    (st[0], st[1]) = kiln_kernels::elementwise::layer_norm_row_f32(xi, sc, bias, eps, rms, yo);
                }
            });
        }
        let mut out = vec![Value::Tensor(Tensor::from_vec(s.to_vec(), y)?)];
        if !self.rms {
            let mut rs = s[..axis].to_vec();
            rs.extend(std::iter::repeat_n(1, s.len() - axis));
            let means: Vec<f32> = stats.iter().step_by(2).copied().collect();
            let invs: Vec<f32> = stats.iter().skip(1).step_by(2).copied().collect();
            out.push(Value::Tensor(Tensor::from_vec(rs.clone(), means)?));
            out.push(Value::Tensor(Tensor::from_vec(rs, invs)?));
        }
        Ok(out)
    }
}

impl Op for LayerNormOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        let axis = norm_axis(self.axis, s.len())?;
        let outer: usize = s[..axis].iter().product();
        let inner_shape = &s[axis..];
        let inner: usize = inner_shape.iter().product();
        let dt = x.dtype();
        let scale_t = inputs.tensor(1)?;
        let bias_t = if self.rms { None } else { inputs.opt_tensor(2)? };
        let si = inner_param_index(scale_t.shape(), inner_shape)?;
        let bi = match bias_t {
            Some(b) => inner_param_index(b.shape(), inner_shape)?,
            None => None,
        };
        if let (Ok(xv), Ok(sc), None, None) = (x.as_slice::<f32>(), scale_t.as_slice::<f32>(), &si, &bi) {
            let bias = match bias_t {
                Some(b) => Some(b.as_slice::<f32>()?),
                None => None,
            };
            if inner > 0 && bias.is_none_or(|b| b.len() == inner) && sc.len() == inner {
                return self.run_f32(s, axis, inner, xv, sc, bias);
            }
        }
        real_dispatch!(dt, "LayerNormalization", |T| {
            let xv = T::cow(x)?;
            let scale = T::cow(scale_t)?;
            let bias = match bias_t {
                Some(b) => Some(T::cow(b)?),
                None => None,
            };
            let sc: Vec<T> = match &si { Some(ix) => ix.iter().map(|&i| scale[i]).collect(), None => scale.to_vec() };
            let bs: Option<Vec<T>> = bias.map(|b| match &bi { Some(ix) => ix.iter().map(|&i| b[i]).collect(), None => b.to_vec() });
            let mut y = vec![T::zero(); xv.len()];
            let mut means = Vec::with_capacity(outer);
            let mut invs = Vec::with_capacity(outer);
            if inner > 0 {
                for (yo, xi) in y.chunks_mut(inner).zip(xv.chunks(inner)) {
                    let (mean, inv) = if self.rms {
                        let ms = xi.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>() / inner as f64;
                        (0.0, 1.0 / (ms + self.eps).sqrt())
                    } else {
                        let (m, v) = mean_var(xi);
                        (m, 1.0 / (v + self.eps).sqrt())
                    };
                    means.push(T::from_f64(mean));
                    invs.push(T::from_f64(inv));
                    let (mt, it) = (T::from_f64(mean), T::from_f64(inv));
                    match &bs {
                        Some(b) => {
                            for (((o, &v), &g), &bb) in yo.iter_mut().zip(xi).zip(&sc).zip(b) {
                                *o = (v - mt) * it * g + bb;
                            }
                        }
                        None => {
                            for ((o, &v), &g) in yo.iter_mut().zip(xi).zip(&sc) {
                                *o = (v - mt) * it * g;
                            }
                        }
                    }
                }
            } else {
                means.resize(outer, T::zero());
                invs.resize(outer, T::zero());
            }
            let mut out = vec![Value::Tensor(real_tensor(s.to_vec(), y, dt)?)];
            if !self.rms {
                let mut rs = s[..axis].to_vec();
                rs.extend(std::iter::repeat_n(1, s.len() - axis));
                out.push(Value::Tensor(real_tensor(rs.clone(), means, dt)?));
                out.push(Value::Tensor(real_tensor(rs, invs, dt)?));
            }
            Ok(out)
        })
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        let dt = x.tensor_dtype()?;
        let mut out = vec![x.clone()];
        if !self.rms {
            let rs = x.tensor_shape().and_then(|s| {
                let axis = norm_axis(self.axis, s.rank()).ok()?;
                let mut v = s.0[..axis].to_vec();
                v.extend(std::iter::repeat_n(Dim::Fixed(1), s.rank() - axis));
                Some(Shape(v))
            });
            out.push(ValueType::tensor(dt, rs.clone()));
            out.push(ValueType::tensor(dt, rs));
        }
        Some(out)
    }
}

// ---------------------------------------------------------------------------------------------
// GroupNormalization
// ---------------------------------------------------------------------------------------------

struct GroupNormOp {
    eps: f64,
    groups: usize,
    per_channel: bool,
}

fn build_group_norm(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let g = n.attr_int("num_groups")?.ok_or_else(|| crate::OpError::new("GroupNormalization needs 'num_groups'"))?;
    ensure!(g >= 1, "num_groups must be >= 1, got {g}");
    Ok(Box::new(GroupNormOp { eps: n.attr_float_or("epsilon", 1e-5)? as f64, groups: g as usize, per_channel: n.opset >= 21 }))
}

impl Op for GroupNormOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        ensure!(s.len() >= 2, "GroupNormalization input must have rank >= 2, got {s:?}");
        let c = s[1];
        let g = self.groups;
        ensure!(c % g == 0, "channels {c} are not divisible by num_groups {g}");
        let cg = c / g;
        let sz: usize = s[2..].iter().product();
        let dt = x.dtype();
        let t = real_dispatch!(dt, "GroupNormalization", |T| {
            let xv = T::cow(x)?;
            let scale = T::cow(inputs.tensor(1)?)?;
            let bias = T::cow(inputs.tensor(2)?)?;
            let per_channel = if scale.len() == c && (self.per_channel || c != g) && bias.len() == c {
                true
            } else if scale.len() == g && bias.len() == g {
                false
            } else {
                bail!("GroupNormalization scale/bias have {} and {} elements; expected {}", scale.len(), bias.len(), if self.per_channel { c } else { g });
            };
            let mut y = vec![T::zero(); xv.len()];
            let block = cg * sz;
            if block > 0 {
                for (i, (yo, xi)) in y.chunks_mut(block).zip(xv.chunks(block)).enumerate() {
                    let grp = i % g;
                    let (mean, var) = mean_var(xi);
                    let inv = 1.0 / (var + self.eps).sqrt();
                    for cc in 0..cg {
                        let ch = grp * cg + cc;
                        let pi = if per_channel { ch } else { grp };
                        let m = T::from_f64(scale[pi].to_f64() * inv);
                        let a = T::from_f64(bias[pi].to_f64() - mean * scale[pi].to_f64() * inv);
                        for (o, &v) in yo[cc * sz..(cc + 1) * sz].iter_mut().zip(&xi[cc * sz..(cc + 1) * sz]) {
                            *o = v * m + a;
                        }
                    }
                }
            }
            real_tensor(s.to_vec(), y, dt)?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        same_type(inputs)
    }
}

// ---------------------------------------------------------------------------------------------
// LRN
// ---------------------------------------------------------------------------------------------

struct LrnOp {
    alpha: f64,
    beta: f64,
    bias: f64,
    size: usize,
}

fn build_lrn(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let size = n.attr_int("size")?.ok_or_else(|| crate::OpError::new("LRN needs a 'size' attribute"))?;
    ensure!(size >= 1, "LRN size must be >= 1, got {size}");
    Ok(Box::new(LrnOp {
        alpha: n.attr_float_or("alpha", 1e-4)? as f64,
        beta: n.attr_float_or("beta", 0.75)? as f64,
        bias: n.attr_float_or("bias", 1.0)? as f64,
        size: size as usize,
    }))
}

impl Op for LrnOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        ensure!(s.len() >= 2, "LRN input must have rank >= 2, got {s:?}");
        let (n, c) = (s[0], s[1]);
        let sz: usize = s[2..].iter().product();
        let dt = x.dtype();
        let before = (self.size - 1) / 2;
        let after = self.size - 1 - before;
        let t = real_dispatch!(dt, "LRN", |T| {
            let xv = T::cow(x)?;
            let mut y = vec![T::zero(); xv.len()];
            for img in 0..n {
                for ch in 0..c {
                    let lo = ch.saturating_sub(before);
                    let hi = (ch + after).min(c - 1);
                    for p in 0..sz {
                        let mut sq = 0.0f64;
                        for cc in lo..=hi {
                            let v = xv[(img * c + cc) * sz + p].to_f64();
                            sq += v * v;
                        }
                        let i = (img * c + ch) * sz + p;
                        let d = (self.bias + self.alpha / self.size as f64 * sq).powf(self.beta);
                        y[i] = T::from_f64(xv[i].to_f64() / d);
                    }
                }
            }
            real_tensor(s.to_vec(), y, dt)?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        same_type(inputs)
    }
}

// ---------------------------------------------------------------------------------------------
// LpNormalization
// ---------------------------------------------------------------------------------------------

struct LpNormOp {
    axis: i64,
    p: i64,
}

impl Op for LpNormOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        let axis = norm_axis(self.axis, s.len())?;
        ensure!(self.p == 1 || self.p == 2, "LpNormalization p must be 1 or 2, got {}", self.p);
        let len = s.get(axis).copied().unwrap_or(1);
        let inner: usize = s[axis + 1..].iter().product();
        let outer: usize = s[..axis].iter().product();
        let dt = x.dtype();
        let t = real_dispatch!(dt, "LpNormalization", |T| {
            let xv = T::cow(x)?;
            let mut y = vec![T::zero(); xv.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let base = o * len * inner + i;
                    let mut acc = 0.0f64;
                    for k in 0..len {
                        let v = xv[base + k * inner].to_f64();
                        acc += if self.p == 1 { v.abs() } else { v * v };
                    }
                    let norm = if self.p == 1 { acc } else { acc.sqrt() };
                    for k in 0..len {
                        let j = base + k * inner;
                        y[j] = if norm == 0.0 { T::zero() } else { T::from_f64(xv[j].to_f64() / norm) };
                    }
                }
            }
            real_tensor(s.to_vec(), y, dt)?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        same_type(inputs)
    }
}

// ---------------------------------------------------------------------------------------------
// MeanVarianceNormalization
// ---------------------------------------------------------------------------------------------

struct MvnOp {
    axes: Vec<i64>,
}

impl Op for MvnOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        let axes = norm_axes(&self.axes, s.len())?;
        // Shape of the statistics: reduced axes set to 1.
        let kept: Vec<usize> = s.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
        let groups: usize = kept.iter().product();
        let gidx = broadcast_index_map(&kept, s);
        let dt = x.dtype();
        let t = real_dispatch!(dt, "MeanVarianceNormalization", |T| {
            let xv = T::cow(x)?;
            let mut sum = vec![0.0f64; groups];
            let mut sq = vec![0.0f64; groups];
            let mut cnt = vec![0usize; groups];
            for (v, &g) in xv.iter().zip(&gidx) {
                let v = v.to_f64();
                sum[g] += v;
                sq[g] += v * v;
                cnt[g] += 1;
            }
            let stats: Vec<(f64, f64)> = (0..groups)
                .map(|g| {
                    let n = cnt[g].max(1) as f64;
                    let m = sum[g] / n;
                    (m, ((sq[g] / n - m * m).max(0.0)).sqrt() + 1e-9)
                })
                .collect();
            let y: Vec<T> = xv.iter().zip(&gidx).map(|(v, &g)| T::from_f64((v.to_f64() - stats[g].0) / stats[g].1)).collect();
            real_tensor(s.to_vec(), y, dt)?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        same_type(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_var_population() {
        let (m, v) = mean_var(&[1.0f32, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((v - 1.25).abs() < 1e-12);
    }

    #[test]
    fn inner_param_broadcast() {
        assert_eq!(inner_param_index(&[3], &[2, 3]).unwrap(), Some(vec![0, 1, 2, 0, 1, 2]));
        assert_eq!(inner_param_index(&[2, 3], &[2, 3]).unwrap(), None);
        assert!(inner_param_index(&[4], &[2, 3]).is_err());
    }
}
