//! Softmax, LogSoftmax, Hardmax (opset < 13: flatten-to-2-D semantics; 13+: one axis), Dropout.

use kiln_tensor::{DType, Tensor, TensorData, Value, ValueType};

use crate::error::OpResult;
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::matmul::{real_tensor, GemmElem, Real};
use crate::ops::util::norm_axis;
use crate::registry::Registry;
use crate::{bail, ensure, real_dispatch};

pub(super) fn register(r: &mut Registry) {
    r.add("Softmax", 1, |n| build(n, Kind::Softmax));
    r.add("LogSoftmax", 1, |n| build(n, Kind::LogSoftmax));
    r.add("Hardmax", 1, |n| build(n, Kind::Hardmax));
    r.add("Dropout", 1, build_dropout);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Softmax,
    LogSoftmax,
    Hardmax,
}

struct SoftmaxOp {
    kind: Kind,
    axis: i64,
    /// Opset < 13: the input is viewed as 2-D [prod(dims[..axis]), prod(dims[axis..])].
    coerce_2d: bool,
}

fn build(n: &NodeInfo, kind: Kind) -> OpResult<Box<dyn Op>> {
    let coerce_2d = n.opset < 13;
    let axis = n.attr_int_or("axis", if coerce_2d { 1 } else { -1 })?;
    Ok(Box::new(SoftmaxOp { kind, axis, coerce_2d }))
}

/// Applies the op along a strided axis: `outer` blocks of `len × inner`.
fn along_axis<T: Real>(x: &[T], y: &mut [T], outer: usize, len: usize, inner: usize, kind: Kind) {
    if len == 0 {
        return;
    }
    let mut buf = vec![T::zero(); len];
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            for (k, b) in buf.iter_mut().enumerate() {
                *b = x[base + k * inner];
            }
            row(&mut buf, kind);
            for (k, b) in buf.iter().enumerate() {
                y[base + k * inner] = *b;
            }
        }
    }
}

/// The op on one contiguous row, in place.
fn row<T: Real>(r: &mut [T], kind: Kind) {
    let mut max = T::NEG_INF;
    let mut arg = 0;
    for (i, &v) in r.iter().enumerate() {
        if v > max {
            max = v;
            arg = i;
        }
    }
    match kind {
        Kind::Hardmax => {
            r.iter_mut().for_each(|v| *v = T::zero());
            r[arg] = T::ONE;
        }
        Kind::Softmax => {
            let mut sum = T::zero();
            for v in r.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = T::ONE / sum;
            r.iter_mut().for_each(|v| *v *= inv);
        }
        Kind::LogSoftmax => {
            let mut sum = T::zero();
            for &v in r.iter() {
                sum += (v - max).exp();
            }
            let l = sum.ln();
            r.iter_mut().for_each(|v| *v = *v - max - l);
        }
    }
}

impl SoftmaxOp {
    /// Row length when the vectorised float32 path applies (contiguous rows, not Hardmax).
    fn fast_row_len(&self, x: &Tensor) -> Option<usize> {
        let s = x.shape();
        if x.dtype() != DType::F32 || s.is_empty() || self.kind == Kind::Hardmax {
            return None;
        }
        let axis = norm_axis(self.axis, s.len()).ok()?;
        let len: usize = if self.coerce_2d { s[axis..].iter().product() } else { s[axis] };
        let inner: usize = if self.coerce_2d { 1 } else { s[axis + 1..].iter().product() };
        (inner == 1 && len > 0).then_some(len)
    }

    fn rows_f32_in_place(&self, y: &mut [f32], len: usize) {
        let kind = self.kind;
        let log = kind == Kind::LogSoftmax;
        kiln_kernels::par::split_mut(y, len, 1 << 15, |_, part| kiln_kernels::elementwise::softmax_rows_f32(part, len, log));
    }
}

impl Op for SoftmaxOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        let dt = x.dtype();
        if s.is_empty() {
            // A scalar: a single-element row.
            let t = real_dispatch!(dt, "Softmax", |T| {
                let mut v = T::cow(x)?.into_owned();
                row(&mut v, self.kind);
                real_tensor(vec![], v, dt)?
            });
            return Ok(vec![Value::Tensor(t)]);
        }
        let axis = norm_axis(self.axis, s.len())?;
        let (outer, len, inner) = if self.coerce_2d {
            (s[..axis].iter().product::<usize>(), s[axis..].iter().product::<usize>(), 1)
        } else {
            (s[..axis].iter().product(), s[axis], s[axis + 1..].iter().product())
        };
        if let Some(len) = self.fast_row_len(x) {
            let mut y = x.clone();
            self.rows_f32_in_place(y.as_slice_mut::<f32>()?, len);
            return Ok(vec![Value::Tensor(y)]);
        }
        let t = real_dispatch!(dt, "Softmax", |T| {
            let xv = T::cow(x)?;
            let mut y = vec![T::zero(); xv.len()];
            if inner == 1 {
                if len > 0 {
                    for (yo, xi) in y.chunks_mut(len).zip(xv.chunks(len)) {
                        yo.copy_from_slice(xi);
                        row(yo, self.kind);
                    }
                }
            } else {
                along_axis(&xv, &mut y, outer, len, inner, self.kind);
            }
            real_tensor(s.to_vec(), y, dt)?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![inputs.first().copied().flatten()?.clone()])
    }
    fn reuses_input0(&self) -> bool {
        self.kind != Kind::Hardmax
    }
    fn run_reusing(&self, first: Value, inputs: &Inputs) -> OpResult<Vec<Value>> {
        match first {
            Value::Tensor(mut t) => match self.fast_row_len(&t) {
                Some(len) => {
                    self.rows_f32_in_place(t.as_slice_mut::<f32>()?, len);
                    Ok(vec![Value::Tensor(t)])
                }
                None => crate::op::with_first(&Value::Tensor(t), inputs, |all| self.run(all)),
            },
            other => crate::op::with_first(&other, inputs, |all| self.run(all)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dropout
// ---------------------------------------------------------------------------------------------

struct DropoutOp {
    /// Ratio from the attribute (opset < 12) or the default.
    ratio: f32,
    /// Opset < 12 and is_test == 0 (opset < 7) select training behaviour.
    attr_training: bool,
    /// Opset >= 12: ratio and training_mode come from inputs 1 and 2.
    from_inputs: bool,
    seed: Option<i64>,
    /// Opset < 10 emits a mask of the data type; later a bool mask.
    mask_same_type: bool,
}

fn build_dropout(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let from_inputs = n.opset >= 12;
    let attr_training = n.opset < 7 && n.attr_int_or("is_test", 0)? == 0;
    Ok(Box::new(DropoutOp {
        ratio: n.attr_float_or("ratio", 0.5)?,
        attr_training,
        from_inputs,
        seed: n.attr_int("seed")?,
        mask_same_type: n.opset < 10,
    }))
}

/// MT19937 with numpy's legacy `RandomState(seed).uniform(0, 1)` doubles, so a seeded
/// training-mode Dropout draws the same mask as the ONNX reference implementation.
struct Mt19937 {
    mt: Box<[u32; 624]>,
    idx: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Mt19937 {
        let mut mt = Box::new([0u32; 624]);
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1812433253u32.wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { mt, idx: 624 }
    }
    fn next_u32(&mut self) -> u32 {
        if self.idx >= 624 {
            for i in 0..624 {
                let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[i] = v;
            }
            self.idx = 0;
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
    fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67108864.0 + b) / 9007199254740992.0
    }
}

impl Op for DropoutOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let (ratio, training) = if self.from_inputs {
            let ratio = match inputs.opt_tensor(1)? {
                Some(t) => *t.to_f64_vec()?.first().unwrap_or(&0.5) as f32,
                None => 0.5,
            };
            let training = match inputs.opt_tensor(2)? {
                Some(t) => match t.data() {
                    TensorData::Bool(v) => v.first().copied().unwrap_or(false),
                    _ => t.to_i64_vec()?.first().copied().unwrap_or(0) != 0,
                },
                None => false,
            };
            (ratio, training)
        } else {
            (self.ratio, self.attr_training)
        };
        ensure!((0.0..1.0).contains(&ratio) || (ratio == 1.0 && !training), "Dropout ratio must be in [0, 1), got {ratio}");
        let n = x.len();
        let mask_bool: Vec<bool>;
        let y = if !training || ratio == 0.0 {
            mask_bool = vec![true; n];
            x.clone()
        } else {
            let seed = self.seed.map_or_else(
                || {
                    // wasm32-unknown-unknown has no clock (SystemTime::now panics there).
                    #[cfg(target_arch = "wasm32")]
                    {
                        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                        0x5EED ^ CALLS.fetch_add(0x9E37_79B9, std::sync::atomic::Ordering::Relaxed)
                    }
                    #[cfg(not(target_arch = "wasm32"))]
                    {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
                            .unwrap_or(0x5EED)
                    }
                },
                |s| s as u32,
            );
            let mut rng = Mt19937::new(seed);
            mask_bool = (0..n).map(|_| rng.next_f64() >= ratio as f64).collect();
            let scale = 1.0 / (1.0 - ratio as f64);
            let dt = x.dtype();
            real_dispatch!(dt, "Dropout", |T| {
                let xv = T::cow(x)?;
                let sc = T::from_f64(scale);
                let v: Vec<T> = xv.iter().zip(&mask_bool).map(|(&v, &m)| if m { v * sc } else { T::zero() }).collect();
                real_tensor(x.shape().to_vec(), v, dt)?
            })
        };
        let mask = if self.mask_same_type {
            let ones: Vec<f64> = mask_bool.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
            match x.dtype() {
                d if d.is_float() => real_tensor(x.shape().to_vec(), ones, d)?,
                d => bail!("Dropout does not support {d} tensors"),
            }
        } else {
            Tensor::from_vec(x.shape().to_vec(), mask_bool)?
        };
        Ok(vec![Value::Tensor(y), Value::Tensor(mask)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        let mask_dt = if self.mask_same_type { x.tensor_dtype()? } else { DType::Bool };
        Some(vec![x.clone(), ValueType::tensor(mask_dt, x.tensor_shape().cloned())])
    }
    fn is_deterministic(&self) -> bool {
        !(self.attr_training || self.from_inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_row() {
        let mut r = vec![0.0f64, (2.0f64).ln()];
        row(&mut r, Kind::Softmax);
        assert!((r[0] - 1.0 / 3.0).abs() < 1e-12 && (r[1] - 2.0 / 3.0).abs() < 1e-12);
        let mut h = vec![1.0f32, 3.0, 3.0];
        row(&mut h, Kind::Hardmax);
        assert_eq!(h, vec![0.0, 1.0, 0.0]);
    }

    #[test]
    fn mt19937_reference_output() {
        // First outputs of MT19937 seeded with 5489 (the generator's published default).
        let mut g = Mt19937::new(5489);
        assert_eq!(g.next_u32(), 3499211612);
        assert_eq!(g.next_u32(), 581869302);
    }
}
