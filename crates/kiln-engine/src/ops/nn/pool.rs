//! Pooling: MaxPool (with Indices), AveragePool, LpPool, their Global variants, and MaxUnpool.

use kiln_tensor::{bf16, f16, DType, Dim, Shape, Tensor, TensorData, Value, ValueType};

use super::{nc_shape, Geometry, WindowAttrs};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::matmul::{par_each, real_tensor, GemmElem, Real};
use crate::registry::Registry;
use crate::{bail, ensure, real_dispatch};

pub(super) fn register(r: &mut Registry) {
    r.add("MaxPool", 1, |n| build_pool(n, Kind::Max));
    r.add("AveragePool", 1, |n| build_pool(n, Kind::Avg));
    r.add("LpPool", 1, |n| build_pool(n, Kind::Lp));
    r.add("GlobalMaxPool", 1, |_| Ok(Box::new(GlobalPoolOp { kind: Kind::Max, p: 2.0 })));
    r.add("GlobalAveragePool", 1, |_| Ok(Box::new(GlobalPoolOp { kind: Kind::Avg, p: 2.0 })));
    r.add("GlobalLpPool", 1, |n| Ok(Box::new(GlobalPoolOp { kind: Kind::Lp, p: n.attr_int_or("p", 2)? as f64 })));
    r.add("MaxUnpool", 9, build_max_unpool);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Max,
    Avg,
    Lp,
}

struct PoolOp {
    kind: Kind,
    attrs: WindowAttrs,
    count_include_pad: bool,
    storage_order: i64,
    p: f64,
    /// MaxPool's optional Indices output is wired in the model.
    want_idx: bool,
}

fn build_pool(n: &NodeInfo, kind: Kind) -> OpResult<Box<dyn Op>> {
    let attrs = WindowAttrs::parse(n)?;
    ensure!(attrs.kernel_shape.is_some(), "pooling needs a 'kernel_shape' attribute");
    // LpPool's p was a float before opset 2.
    let p = match n.attr_raw("p") {
        Some(a) if a.r#type == kiln_onnx::proto::AttributeType::Float => a.f as f64,
        _ => n.attr_int_or("p", 2)? as f64,
    };
    Ok(Box::new(PoolOp {
        kind,
        attrs,
        count_include_pad: n.attr_int_or("count_include_pad", 0)? != 0,
        storage_order: n.attr_int_or("storage_order", 0)?,
        p,
        want_idx: n.num_outputs > 1,
    }))
}

/// For every output position, the valid input offsets (within a plane) of its window and the
/// window's element count including padding (for count_include_pad).
struct Windows {
    starts: Vec<usize>,
    offsets: Vec<u32>,
    padded_counts: Vec<u32>,
}

fn windows(geo: &Geometry) -> OpResult<Windows> {
    let r = geo.input.len();
    let osz = geo.out_size();
    let ksz = geo.kernel_size();
    ensure!(geo.in_size() <= u32::MAX as usize, "pooling plane is too large");
    let istr = kiln_tensor::strides_of(&geo.input);
    let mut starts = Vec::with_capacity(osz + 1);
    let mut offsets = Vec::with_capacity(osz.saturating_mul(ksz).min(1 << 26));
    let mut padded_counts = Vec::with_capacity(osz);
    let mut oidx = vec![0usize; r];
    let mut kidx = vec![0usize; r];
    for _ in 0..osz {
        starts.push(offsets.len());
        let mut padded = 0u32;
        kidx.iter_mut().for_each(|v| *v = 0);
        for _ in 0..ksz {
            let mut off = 0usize;
            let mut valid = true;
            let mut in_pad_region = true;
            for d in 0..r {
                let i = (oidx[d] * geo.strides[d] + kidx[d] * geo.dilations[d]) as isize - geo.pad_begin[d] as isize;
                if i < 0 || i >= geo.input[d] as isize {
                    valid = false;
                    if i >= (geo.input[d] + geo.pad_end[d]) as isize {
                        in_pad_region = false;
                    }
                } else {
                    off += i as usize * istr[d];
                }
            }
            if in_pad_region {
                padded += 1;
            }
            if valid {
                offsets.push(off as u32);
            }
            for d in (0..r).rev() {
                kidx[d] += 1;
                if kidx[d] < geo.kernel[d] {
                    break;
                }
                kidx[d] = 0;
            }
        }
        padded_counts.push(padded);
        for d in (0..r).rev() {
            oidx[d] += 1;
            if oidx[d] < geo.output[d] {
                break;
            }
            oidx[d] = 0;
        }
    }
    starts.push(offsets.len());
    Ok(Windows { starts, offsets, padded_counts })
}

/// Row-major plane offset → column-major plane offset.
fn col_major(off: usize, dims: &[usize]) -> usize {
    let mut rem = off;
    let mut idx = vec![0usize; dims.len()];
    for d in (0..dims.len()).rev() {
        idx[d] = rem % dims[d].max(1);
        rem /= dims[d].max(1);
    }
    let mut out = 0;
    for d in (0..dims.len()).rev() {
        out = out * dims[d] + idx[d];
    }
    out
}

fn max_pool<T: Copy + PartialOrd + Send + Sync>(
    x: &[T], planes: usize, geo: &Geometry, w: &Windows, lowest: T, want_idx: bool, storage_order: i64,
) -> (Vec<T>, Vec<i64>) {
    let isz = geo.in_size();
    let osz = geo.out_size();
    let mut y = vec![lowest; planes * osz];
    let mut idx = if want_idx { vec![0i64; planes * osz] } else { Vec::new() };
    if osz == 0 {
        return (y, idx);
    }
    let items: Vec<(usize, &mut [T])> = y.chunks_mut(osz).enumerate().collect();
    let idx_chunks: Vec<Option<&mut [i64]>> =
        if want_idx { idx.chunks_mut(osz).map(Some).collect() } else { (0..planes).map(|_| None).collect() };
    let items: Vec<_> = items.into_iter().zip(idx_chunks).collect();
    let work = |((p, yo), io): ((usize, &mut [T]), Option<&mut [i64]>)| {
        let xp = &x[p * isz..][..isz];
        let mut io = io;
        for o in 0..osz {
            let offs = &w.offsets[w.starts[o]..w.starts[o + 1]];
            let mut best = lowest;
            let mut bi = offs.first().copied().unwrap_or(0) as usize;
            let mut first = true;
            for &off in offs {
                let v = xp[off as usize];
                if first || v > best {
                    if first && v.partial_cmp(&v).is_none() {
                        continue;
                    }
                    best = v;
                    bi = off as usize;
                    first = false;
                }
            }
            yo[o] = best;
            if let Some(io) = io.as_deref_mut() {
                let pi = if storage_order == 1 { col_major(bi, &geo.input) } else { bi };
                io[o] = (p * isz + pi) as i64;
            }
        }
    };
    if planes * osz >= 1 << 14 {
        par_each(items, work);
    } else {
        items.into_iter().for_each(work);
    }
    (y, idx)
}

/// 2-D float32 max pooling without indices: max over the valid part of each window, NaN
/// ignored (-inf when nothing is left).
fn max_pool_2d_f32(x: &[f32], planes: usize, geo: &Geometry) -> Vec<f32> {
    let g = geo.window_2d();
    let total = planes * g.oh * g.ow;
    let mut y = Vec::with_capacity(total);
    kiln_kernels::pool::max_pool2d_f32(&g, planes, x, &mut y.spare_capacity_mut()[..total]);
    // SAFETY: the kernel wrote all `total` elements.
    unsafe { y.set_len(total) };
    y
}

fn avg_lp_pool<T: Real>(x: &[T], planes: usize, geo: &Geometry, w: &Windows, kind: Kind, include_pad: bool, p: T) -> Vec<T> {
    let isz = geo.in_size();
    let osz = geo.out_size();
    let mut y = vec![T::zero(); planes * osz];
    if osz == 0 {
        return y;
    }
    let items: Vec<(usize, &mut [T])> = y.chunks_mut(osz).enumerate().collect();
    let two = T::from_f64(2.0);
    let inv_p = T::ONE / p;
    let work = |(pl, yo): (usize, &mut [T])| {
        let xp = &x[pl * isz..][..isz];
        for o in 0..osz {
            let offs = &w.offsets[w.starts[o]..w.starts[o + 1]];
            yo[o] = match kind {
                Kind::Avg => {
                    let mut s = T::zero();
                    for &off in offs {
                        s += xp[off as usize];
                    }
                    let n = if include_pad { w.padded_counts[o] as usize } else { offs.len() };
                    if n == 0 { T::zero() } else { s / T::from_f64(n as f64) }
                }
                _ => {
                    let mut s = T::zero();
                    if p == two {
                        for &off in offs {
                            let v = xp[off as usize];
                            s += v * v;
                        }
                        s.sqrt()
                    } else {
                        for &off in offs {
                            s += xp[off as usize].abs().powf(p);
                        }
                        s.powf(inv_p)
                    }
                }
            };
        }
    };
    if planes * osz >= 1 << 14 {
        par_each(items, work);
    } else {
        items.into_iter().for_each(work);
    }
    y
}

impl PoolOp {
    fn geometry(&self, x: &[usize]) -> OpResult<Geometry> {
        ensure!(x.len() >= 3, "pooling input must have rank >= 3 ([N, C, spatial...]), got {x:?}");
        let k = self.attrs.kernel_shape.as_deref().unwrap_or(&[]);
        self.attrs.geometry(&x[2..], k)
    }
}

impl Op for PoolOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let geo = self.geometry(x.shape())?;
        let planes = x.shape()[0] * x.shape()[1];
        let mut shape = x.shape()[..2].to_vec();
        shape.extend_from_slice(&geo.output);
        if let (Kind::Max, false, TensorData::F32(v), 2) = (self.kind, self.want_idx, x.data(), geo.input.len()) {
            if geo.strides.iter().chain(&geo.dilations).chain(&geo.kernel).all(|&s| s > 0) {
                let y = max_pool_2d_f32(v, planes, &geo);
                return Ok(vec![Value::Tensor(Tensor::from_vec(shape, y)?)]);
            }
        }
        let w = windows(&geo)?;
        if self.kind == Kind::Max {
            let want_idx = self.want_idx;
            macro_rules! mp {
                ($v:expr, $low:expr, $var:ident) => {{
                    let (y, i) = max_pool($v, planes, &geo, &w, $low, want_idx, self.storage_order);
                    (TensorData::$var(y), i)
                }};
            }
            let (y, idx) = match x.data() {
                TensorData::F32(v) => mp!(v, f32::NEG_INFINITY, F32),
                TensorData::F64(v) => mp!(v, f64::NEG_INFINITY, F64),
                TensorData::F16(v) => mp!(v, f16::NEG_INFINITY, F16),
                TensorData::BF16(v) => mp!(v, bf16::NEG_INFINITY, BF16),
                TensorData::I8(v) => mp!(v, i8::MIN, I8),
                TensorData::U8(v) => mp!(v, u8::MIN, U8),
                TensorData::I32(v) => mp!(v, i32::MIN, I32),
                TensorData::I64(v) => mp!(v, i64::MIN, I64),
                other => bail!("MaxPool does not support {} tensors", other.dtype()),
            };
            let y = Tensor::new(shape.clone(), y)?;
            if !want_idx {
                return Ok(vec![Value::Tensor(y)]);
            }
            let idx = Tensor::from_vec(shape, idx)?;
            return Ok(vec![Value::Tensor(y), Value::Tensor(idx)]);
        }
        let dt = x.dtype();
        let t = real_dispatch!(dt, "pooling", |T| {
            let xv = T::cow(x)?;
            let y = avg_lp_pool::<T>(&xv, planes, &geo, &w, self.kind, self.count_include_pad, T::from_f64(self.p));
            real_tensor(shape, y, dt)?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        let dt = x.tensor_dtype()?;
        let shape = x.tensor_shape().filter(|s| s.rank() >= 3).and_then(|s| {
            let sp = self.attrs.infer_spatial(&s.0[2..], self.attrs.kernel_shape.as_deref()?)?;
            Some(nc_shape(s, s.0[1].clone(), sp))
        });
        let mut out = vec![ValueType::tensor(dt, shape.clone())];
        if self.kind == Kind::Max {
            out.push(ValueType::tensor(DType::I64, shape));
        }
        Some(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Global pools
// ---------------------------------------------------------------------------------------------

struct GlobalPoolOp {
    kind: Kind,
    p: f64,
}

impl Op for GlobalPoolOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        ensure!(s.len() >= 2, "global pooling input must have rank >= 2, got {s:?}");
        let planes = s[0] * s[1];
        let sz: usize = s[2..].iter().product();
        let mut shape = s[..2].to_vec();
        shape.extend(std::iter::repeat_n(1, s.len() - 2));
        let dt = x.dtype();
        if let (Kind::Avg, Ok(xv), true) = (self.kind, x.as_slice::<f32>(), sz > 0) {
            // Float32 means: one vectorised sum per plane.
            let y: Vec<f32> = kiln_kernels::simd::vectorized(#[inline(always)] || {
                xv.chunks_exact(sz).map(|v| kiln_kernels::simd::sum_f32(v) / sz as f32).collect()
            });
            return Ok(vec![Value::Tensor(Tensor::from_vec(shape, y)?)]);
        }
        let t = real_dispatch!(dt, "global pooling", |T| {
            let xv = T::cow(x)?;
            let p = T::from_f64(self.p);
            let mut y = Vec::with_capacity(planes);
            for pl in 0..planes {
                let v = &xv[pl * sz..(pl + 1) * sz];
                y.push(match self.kind {
                    Kind::Max => v.iter().fold(T::NEG_INF, |a, &b| if b > a { b } else { a }),
                    Kind::Avg => {
                        let mut acc = T::zero();
                        v.iter().for_each(|&b| acc += b);
                        acc / T::from_f64(sz as f64)
                    }
                    Kind::Lp => {
                        let mut acc = T::zero();
                        v.iter().for_each(|&b| acc += b.abs().powf(p));
                        acc.powf(T::ONE / p)
                    }
                });
            }
            real_tensor(shape, y, dt)?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        let shape = x.tensor_shape().filter(|s| s.rank() >= 2).map(|s| {
            let mut v = s.0[..2].to_vec();
            v.extend(std::iter::repeat_n(Dim::Fixed(1), s.rank() - 2));
            Shape(v)
        });
        Some(vec![ValueType::tensor(x.tensor_dtype()?, shape)])
    }
}

// ---------------------------------------------------------------------------------------------
// MaxUnpool
// ---------------------------------------------------------------------------------------------

struct MaxUnpoolOp {
    kernel: Vec<usize>,
    strides: Option<Vec<usize>>,
    pads: Option<Vec<usize>>,
}

fn build_max_unpool(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let a = WindowAttrs::parse(n)?;
    let kernel = a.kernel_shape.ok_or_else(|| OpError::new("MaxUnpool needs a 'kernel_shape' attribute"))?;
    Ok(Box::new(MaxUnpoolOp { kernel, strides: a.strides, pads: a.pads }))
}

impl Op for MaxUnpoolOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let ind = inputs.tensor(1)?;
        let s = x.shape();
        ensure!(s.len() >= 3, "MaxUnpool input must have rank >= 3, got {s:?}");
        ensure!(ind.shape() == s, "MaxUnpool indices shape {:?} differs from input shape {s:?}", ind.shape());
        let r = s.len() - 2;
        ensure!(self.kernel.len() == r, "kernel_shape has {} dims but the input has {r} spatial dims", self.kernel.len());
        let mut inferred = s[..2].to_vec();
        for i in 0..r {
            let st = self.strides.as_ref().map_or(1, |v| v.get(i).copied().unwrap_or(1));
            let (pb, pe) = self.pads.as_ref().map_or((0, 0), |p| (p.get(i).copied().unwrap_or(0), p.get(i + r).copied().unwrap_or(0)));
            let full = (s[2 + i].max(1) - 1) * st + self.kernel[i];
            ensure!(full >= pb + pe, "MaxUnpool pads exceed the output size");
            inferred.push(full - pb - pe);
        }
        let out_shape: Vec<usize> = match inputs.opt_tensor(2)? {
            Some(os) => os
                .to_i64_vec()?
                .iter()
                .map(|&d| crate::ops::util::to_usize(d, "output_shape"))
                .collect::<OpResult<Vec<_>>>()?,
            None => inferred.clone(),
        };
        ensure!(out_shape.len() == s.len(), "output_shape has rank {} but the input has rank {}", out_shape.len(), s.len());
        // Indices address the unpooled shape implied by the attributes; that block is then
        // placed at the origin of a (possibly larger) output_shape.
        let inf_total = kiln_tensor::checked_numel(&inferred)?;
        let total = kiln_tensor::checked_numel(&out_shape)?;
        let idx = ind.to_i64_vec()?;
        let inf_strides = kiln_tensor::strides_of(&inferred);
        let out_strides = kiln_tensor::strides_of(&out_shape);
        let mut dest = Vec::with_capacity(idx.len());
        for &i in &idx {
            let f = usize::try_from(i)
                .ok()
                .filter(|&f| f < inf_total)
                .ok_or_else(|| OpError(format!("MaxUnpool index {i} is out of range for shape {inferred:?}")))?;
            let mut rem = f;
            let mut o = 0usize;
            for d in 0..inferred.len() {
                let c = rem / inf_strides[d];
                rem %= inf_strides[d];
                ensure!(c < out_shape[d], "MaxUnpool index {i} does not fit output_shape {out_shape:?}");
                o += c * out_strides[d];
            }
            dest.push(o);
        }
        let mut out = kiln_tensor::TensorData::zeros(x.dtype(), total);
        macro_rules! scatter {
            ($($var:ident),*) => {
                match (&mut out, x.data()) {
                    $( (TensorData::$var(o), TensorData::$var(v)) => {
                        for (&i, val) in dest.iter().zip(v.iter()) {
                            o[i] = val.clone();
                        }
                    } )*
                    _ => bail!("MaxUnpool does not support {} tensors", x.dtype()),
                }
            };
        }
        scatter!(F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64);
        Ok(vec![Value::Tensor(Tensor::new(out_shape, out)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::nn::AutoPad;

    fn geo(input: &[usize], k: &[usize], s: &[usize], pads: &[usize], ceil: bool) -> Geometry {
        WindowAttrs {
            auto_pad: AutoPad::NotSet,
            kernel_shape: Some(k.to_vec()),
            strides: Some(s.to_vec()),
            dilations: None,
            pads: Some(pads.to_vec()),
            ceil_mode: ceil,
        }
        .geometry(input, k)
        .unwrap()
    }

    #[test]
    fn max_pool_with_indices() {
        let g = geo(&[2, 3], &[2, 2], &[1, 1], &[0, 0, 0, 0], false);
        let w = windows(&g).unwrap();
        let x = [1.0f32, 5., 2., 4., 3., 6.];
        let (y, i) = max_pool(&x, 1, &g, &w, f32::NEG_INFINITY, true, 0);
        assert_eq!(y, vec![5., 6.]);
        assert_eq!(i, vec![1, 5]);
        let (_, ic) = max_pool(&x, 1, &g, &w, f32::NEG_INFINITY, true, 1);
        assert_eq!(ic, vec![2, 5]);
    }

    #[test]
    fn avg_pool_pad_counts() {
        // 1-D [1, 2, 3], kernel 2, stride 1, pad 1 each side -> windows {p,1},{1,2},{2,3},{3,p}
        let g = geo(&[3], &[2], &[1], &[1, 1], false);
        let w = windows(&g).unwrap();
        let x = [1.0f64, 2., 3.];
        assert_eq!(avg_lp_pool(&x, 1, &g, &w, Kind::Avg, false, 2.0), vec![1., 1.5, 2.5, 3.]);
        assert_eq!(avg_lp_pool(&x, 1, &g, &w, Kind::Avg, true, 2.0), vec![0.5, 1.5, 2.5, 1.5]);
    }

    #[test]
    fn max_pool_2d_matches_definition() {
        // (input h, w, kernel, stride, dilation, pads [t, l, b, r], ceil_mode)
        let cases: [([usize; 2], [usize; 2], [usize; 2], [usize; 2], [usize; 4], bool); 8] = [
            ([13, 13], [3, 3], [2, 2], [1, 1], [0, 0, 0, 0], true),
            ([111, 111], [3, 3], [2, 2], [1, 1], [0, 0, 0, 0], true),
            ([12, 17], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], false),
            ([9, 10], [2, 3], [1, 1], [1, 1], [0, 1, 1, 0], false),
            ([10, 23], [3, 2], [3, 3], [1, 2], [1, 2, 2, 1], true),
            ([7, 8], [3, 3], [1, 2], [2, 2], [2, 2, 2, 2], false),
            ([5, 5], [5, 5], [1, 1], [1, 1], [0, 0, 0, 0], false),
            ([6, 4], [2, 2], [2, 4], [1, 1], [1, 3, 1, 3], true),
        ];
        for (input, k, s, d, pads, ceil) in cases {
            let g = WindowAttrs {
                auto_pad: AutoPad::NotSet,
                kernel_shape: Some(k.to_vec()),
                strides: Some(s.to_vec()),
                dilations: Some(d.to_vec()),
                pads: Some(pads.to_vec()),
                ceil_mode: ceil,
            }
            .geometry(&input, &k)
            .unwrap();
            let planes = 3;
            let (ih, iw) = (input[0], input[1]);
            let x: Vec<f32> = (0..planes * ih * iw).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
            let y = max_pool_2d_f32(&x, planes, &g);
            let (oh, ow) = (g.output[0], g.output[1]);
            assert_eq!(y.len(), planes * oh * ow);
            for p in 0..planes {
                for i in 0..oh {
                    for j in 0..ow {
                        // max over the window's positions inside the input (-inf if none).
                        let mut want = f32::NEG_INFINITY;
                        for a in 0..k[0] {
                            for b in 0..k[1] {
                                let r = (i * s[0] + a * d[0]) as isize - pads[0] as isize;
                                let c = (j * s[1] + b * d[1]) as isize - pads[1] as isize;
                                if r >= 0 && c >= 0 && (r as usize) < ih && (c as usize) < iw {
                                    let v = x[(p * ih + r as usize) * iw + c as usize];
                                    if v > want {
                                        want = v;
                                    }
                                }
                            }
                        }
                        assert_eq!(y[(p * oh + i) * ow + j], want, "{input:?} k{k:?} s{s:?} d{d:?} pads{pads:?} ceil {ceil} at {p},{i},{j}");
                    }
                }
            }
        }
    }

    #[test]
    fn ceil_mode_adds_partial_window() {
        let g = geo(&[5], &[2], &[2], &[0, 0], true);
        assert_eq!(g.output, vec![3]);
        let g = geo(&[5], &[2], &[2], &[0, 0], false);
        assert_eq!(g.output, vec![2]);
    }
}
