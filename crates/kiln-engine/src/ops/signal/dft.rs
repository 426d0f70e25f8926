//! DFT (opset 17 axis attribute, opset 20 axis input) and STFT.

use kiln_tensor::{DType, Dim, Shape, Tensor, Value, ValueType};

use super::fft::{Fft, C};
use super::{from_f64, scalar_i64};
use crate::error::OpResult;
use crate::op::{Inputs, NodeInfo, Op};
use crate::ensure;

fn check_float(dt: DType, op: &str) -> OpResult<()> {
    ensure!(dt.is_float(), "{op} needs a float tensor, got {dt}");
    Ok(())
}

pub struct DftOp {
    /// Axis from the attribute (opset < 20); `None` means it comes from input 2 (default -2).
    axis_attr: Option<i64>,
    inverse: bool,
    onesided: bool,
}

pub fn build_dft(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let axis_attr = if n.opset < 20 { Some(n.attr_int_or("axis", 1)?) } else { None };
    let inverse = n.attr_int_or("inverse", 0)?;
    let onesided = n.attr_int_or("onesided", 0)?;
    ensure!(matches!(inverse, 0 | 1), "DFT: inverse must be 0 or 1, got {inverse}");
    ensure!(matches!(onesided, 0 | 1), "DFT: onesided must be 0 or 1, got {onesided}");
    Ok(Box::new(DftOp { axis_attr, inverse: inverse == 1, onesided: onesided == 1 }))
}

/// Resolves a DFT axis: valid range is [-r, -2] ∪ [0, r-2] (the last dim holds re/im).
fn dft_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    ensure!(a >= 0 && a <= r - 2, "DFT: axis {axis} is out of range for an input of rank {rank}");
    Ok(a as usize)
}

impl DftOp {
    fn axis(&self, inputs: &Inputs, rank: usize) -> OpResult<usize> {
        let axis = match self.axis_attr {
            Some(a) => a,
            None => match inputs.opt_tensor(2)? {
                Some(t) => scalar_i64(t, "DFT axis")?,
                None => -2,
            },
        };
        dft_axis(axis, rank)
    }
}

/// Layout of a signal tensor `[outer..., len, inner..., c]` around the transformed axis.
struct Layout {
    outer: usize,
    len: usize,
    inner: usize,
    comps: usize,
}

fn layout(shape: &[usize], axis: usize) -> OpResult<Layout> {
    let r = shape.len();
    ensure!(r >= 2, "signal must have rank ≥ 2 (the last dim holds re/im), got shape {shape:?}");
    let comps = shape[r - 1];
    ensure!(comps == 1 || comps == 2, "the last dim must be 1 (real) or 2 (complex), got shape {shape:?}");
    Ok(Layout {
        outer: shape[..axis].iter().product(),
        len: shape[axis],
        inner: shape[axis + 1..r - 1].iter().product(),
        comps,
    })
}

impl Op for DftOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        check_float(x.dtype(), "DFT")?;
        let shape = x.shape();
        let axis = self.axis(inputs, shape.len())?;
        let lay = layout(shape, axis)?;
        let irfft = self.inverse && self.onesided;
        let n = match inputs.opt_tensor(1)? {
            Some(t) => scalar_i64(t, "DFT dft_length")?,
            None if irfft => 2 * (lay.len as i64 - 1),
            None => lay.len as i64,
        };
        ensure!(n >= 1, "DFT: dft_length must be positive, got {n}");
        let n = n as usize;
        let out_len = if self.onesided && !self.inverse { n / 2 + 1 } else { n };
        let out_comps = if irfft { 1 } else { 2 };
        let mut out_shape = shape.to_vec();
        out_shape[axis] = out_len;
        let last = out_shape.len() - 1;
        out_shape[last] = out_comps;
        let total = kiln_tensor::checked_numel(&out_shape)?;

        let xs = x.to_f64_vec()?;
        let mut out = vec![0f64; total];
        let plan = Fft::new(n);
        let mut buf = vec![C::ZERO; n];
        let mut scratch = Vec::new();
        // How many input points along the axis feed the transform.
        let take = if irfft { lay.len.min(n / 2 + 1) } else { lay.len.min(n) };
        let (c_in, inner) = (lay.comps, lay.inner);
        for o in 0..lay.outer {
            for i in 0..inner {
                buf.fill(C::ZERO);
                for (k, b) in buf.iter_mut().enumerate().take(take) {
                    let at = ((o * lay.len + k) * inner + i) * c_in;
                    *b = C::new(xs[at], if c_in == 2 { xs[at + 1] } else { 0.0 });
                }
                if irfft {
                    // Hermitian extension of the one-sided spectrum.
                    for k in n / 2 + 1..n {
                        buf[k] = buf[n - k].conj();
                    }
                }
                if self.inverse {
                    plan.inverse_unscaled(&mut buf, &mut scratch);
                    let s = 1.0 / n as f64;
                    for b in buf.iter_mut() {
                        *b = b.scale(s);
                    }
                } else {
                    plan.forward(&mut buf, &mut scratch);
                }
                for (k, b) in buf.iter().enumerate().take(out_len) {
                    let at = ((o * out_len + k) * inner + i) * out_comps;
                    out[at] = b.re;
                    if out_comps == 2 {
                        out[at + 1] = b.im;
                    }
                }
            }
        }
        Ok(vec![Value::Tensor(Tensor::new(out_shape, from_f64(out, x.dtype())?)?)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dtype, shape) = match inputs.first().copied().flatten()? {
            ValueType::Tensor { dtype, shape } => (*dtype, shape.as_ref()?),
            _ => return None,
        };
        let r = shape.rank();
        if r < 2 {
            return None;
        }
        let axis = match self.axis_attr {
            Some(a) => a,
            None => match inputs.get(2).copied().flatten() {
                None => -2,
                Some(_) => scalar_i64(consts.get(2).copied().flatten()?, "axis").ok()?,
            },
        };
        let axis = dft_axis(axis, r).ok()?;
        let irfft = self.inverse && self.onesided;
        let n: Option<usize> = match inputs.get(1).copied().flatten() {
            Some(_) => {
                let v = scalar_i64(consts.get(1).copied().flatten()?, "dft_length").ok()?;
                if v < 1 {
                    return None;
                }
                Some(v as usize)
            }
            None => match &shape.0[axis] {
                Dim::Fixed(l) if irfft => (*l >= 2).then(|| 2 * (l - 1)),
                Dim::Fixed(l) => Some(*l),
                Dim::Sym(_) => None,
            },
        };
        let mut dims = shape.0.clone();
        dims[axis] = match n {
            Some(n) if self.onesided && !self.inverse => Dim::Fixed(n / 2 + 1),
            Some(n) => Dim::Fixed(n),
            None if !self.onesided => dims[axis].clone(),
            None => Dim::unknown(),
        };
        dims[r - 1] = Dim::Fixed(if irfft { 1 } else { 2 });
        Some(vec![ValueType::Tensor { dtype, shape: Some(Shape(dims)) }])
    }
}

pub struct StftOp {
    onesided: bool,
}

pub fn build_stft(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let onesided = n.attr_int_or("onesided", 1)?;
    ensure!(matches!(onesided, 0 | 1), "STFT: onesided must be 0 or 1, got {onesided}");
    Ok(Box::new(StftOp { onesided: onesided == 1 }))
}

impl Op for StftOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        check_float(x.dtype(), "STFT")?;
        let shape = x.shape();
        ensure!(
            shape.len() == 3 && (shape[2] == 1 || shape[2] == 2),
            "STFT: signal must have shape [batch, length, 1 or 2], got {shape:?}"
        );
        let (batch, sig_len, comps) = (shape[0], shape[1], shape[2]);
        let step = scalar_i64(inputs.tensor(1)?, "STFT frame_step")?;
        ensure!(step > 0, "STFT: frame_step must be positive, got {step}");
        let step = step as usize;
        let window = match inputs.opt_tensor(2)? {
            Some(w) => {
                ensure!(w.rank() == 1, "STFT: window must be 1-D, got shape {:?}", w.shape());
                Some(w.to_f64_vec()?)
            }
            None => None,
        };
        let frame_len = match inputs.opt_tensor(3)? {
            Some(t) => {
                let fl = scalar_i64(t, "STFT frame_length")?;
                ensure!(fl > 0, "STFT: frame_length must be positive, got {fl}");
                fl as usize
            }
            None => window.as_ref().map_or(sig_len, |w| w.len()),
        };
        if let Some(w) = &window {
            ensure!(
                w.len() == frame_len,
                "STFT: window length {} differs from frame_length {frame_len}",
                w.len()
            );
        }
        ensure!(frame_len >= 1, "STFT: frame_length must be positive");
        ensure!(
            frame_len <= sig_len,
            "STFT: frame_length {frame_len} is longer than the signal ({sig_len} samples)"
        );
        let frames = (sig_len - frame_len) / step + 1;
        let bins = if self.onesided { frame_len / 2 + 1 } else { frame_len };
        let out_shape = vec![batch, frames, bins, 2];
        let total = kiln_tensor::checked_numel(&out_shape)?;
        let xs = x.to_f64_vec()?;
        let mut out = vec![0f64; total];
        let plan = Fft::new(frame_len);
        let mut buf = vec![C::ZERO; frame_len];
        let mut scratch = Vec::new();
        for b in 0..batch {
            for f in 0..frames {
                let start = f * step;
                for (k, v) in buf.iter_mut().enumerate() {
                    let at = (b * sig_len + start + k) * comps;
                    let w = window.as_ref().map_or(1.0, |w| w[k]);
                    *v = C::new(xs[at] * w, if comps == 2 { xs[at + 1] * w } else { 0.0 });
                }
                plan.forward(&mut buf, &mut scratch);
                let base = (b * frames + f) * bins * 2;
                for (k, v) in buf.iter().enumerate().take(bins) {
                    out[base + 2 * k] = v.re;
                    out[base + 2 * k + 1] = v.im;
                }
            }
        }
        Ok(vec![Value::Tensor(Tensor::new(out_shape, from_f64(out, x.dtype())?)?)])
    }
}
