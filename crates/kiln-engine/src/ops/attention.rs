//! Attention-family operators: Attention, RotaryEmbedding, LinearAttention, CausalConvWithState,
//! SwiGLU and (ai.onnx.preview) FlexAttention, plus the float helpers they share.

mod causal_conv;
mod flex;
mod linear;
mod rotary;
mod sdpa;
mod swiglu;
mod tensor_scatter;

use std::borrow::Cow;
use std::ops::{Add, Div, Mul, Neg, Sub};

use kiln_tensor::{bf16, f16, DType, Dim, Tensor, TensorData};

use crate::error::{OpError, OpResult};
use crate::registry::Registry;

pub fn register(r: &mut Registry) {
    r.add("Attention", 23, sdpa::build);
    r.add("RotaryEmbedding", 23, rotary::build);
    r.add("LinearAttention", 27, linear::build);
    r.add("CausalConvWithState", 27, causal_conv::build);
    r.add("SwiGLU", 28, swiglu::build);
    r.add("TensorScatter", 24, tensor_scatter::build);
    r.add_in("ai.onnx.preview", "FlexAttention", 1, flex::build);
}

/// Storage precision of a float tensor, used to reproduce the rounding a computation in that
/// type performs after every elementwise step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prec {
    F64,
    F32,
    F16,
    BF16,
}

impl Prec {
    pub(crate) fn of(dt: DType) -> Option<Prec> {
        match dt {
            DType::F64 => Some(Prec::F64),
            DType::F32 => Some(Prec::F32),
            DType::F16 => Some(Prec::F16),
            DType::BF16 => Some(Prec::BF16),
            _ => None,
        }
    }
}

/// Working float type of a kernel (f32 or f64).
pub(crate) trait Work:
    Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INF: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn is_nan(self) -> bool;
    /// The rounding to `p` (None when `p` represents every value of `Self`).
    fn rounder(p: Prec) -> Option<fn(Self) -> Self>;
    /// The elements of a float tensor converted to `Self` (borrowed when already `Self`).
    fn load(t: &Tensor) -> OpResult<Cow<'_, [Self]>>;
    /// C = A·B (strided, see kiln_kernels::sgemm).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize, k: usize, n: usize,
        a: &[Self], rsa: isize, csa: isize,
        b: &[Self], rsb: isize, csb: isize,
        c: &mut [Self], rsc: isize, csc: isize,
    );
}

fn r_f32_64(x: f64) -> f64 {
    x as f32 as f64
}
fn r_f16_64(x: f64) -> f64 {
    f16::from_f64(x).to_f64()
}
fn r_bf16_64(x: f64) -> f64 {
    bf16::from_f64(x).to_f64()
}
fn r_f16_32(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}
fn r_bf16_32(x: f32) -> f32 {
    bf16::from_f32(x).to_f32()
}

fn not_float(dt: DType) -> OpError {
    OpError(format!("expected a float tensor, got {dt}"))
}

impl Work for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    const NEG_INF: f32 = f32::NEG_INFINITY;
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn exp(self) -> f32 {
        f32::exp(self)
    }
    fn tanh(self) -> f32 {
        f32::tanh(self)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn rounder(p: Prec) -> Option<fn(f32) -> f32> {
        match p {
            Prec::F64 | Prec::F32 => None,
            Prec::F16 => Some(r_f16_32),
            Prec::BF16 => Some(r_bf16_32),
        }
    }
    fn load(t: &Tensor) -> OpResult<Cow<'_, [f32]>> {
        Ok(match t.data() {
            TensorData::F32(v) => Cow::Borrowed(v.as_slice()),
            TensorData::F64(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
            TensorData::F16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            TensorData::BF16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            other => return Err(not_float(other.dtype())),
        })
    }
    fn gemm(
        m: usize, k: usize, n: usize,
        a: &[f32], rsa: isize, csa: isize,
        b: &[f32], rsb: isize, csb: isize,
        c: &mut [f32], rsc: isize, csc: isize,
    ) {
        if k == 0 {
            fill_strided(c, m, n, rsc, csc, 0.0);
            return;
        }
        kiln_kernels::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc);
    }
}

impl Work for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    const NEG_INF: f64 = f64::NEG_INFINITY;
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    fn tanh(self) -> f64 {
        f64::tanh(self)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn rounder(p: Prec) -> Option<fn(f64) -> f64> {
        match p {
            Prec::F64 => None,
            Prec::F32 => Some(r_f32_64),
            Prec::F16 => Some(r_f16_64),
            Prec::BF16 => Some(r_bf16_64),
        }
    }
    fn load(t: &Tensor) -> OpResult<Cow<'_, [f64]>> {
        Ok(match t.data() {
            TensorData::F64(v) => Cow::Borrowed(v.as_slice()),
            TensorData::F32(v) => Cow::Owned(v.iter().map(|&x| x as f64).collect()),
            TensorData::F16(v) => Cow::Owned(v.iter().map(|x| x.to_f64()).collect()),
            TensorData::BF16(v) => Cow::Owned(v.iter().map(|x| x.to_f64()).collect()),
            other => return Err(not_float(other.dtype())),
        })
    }
    fn gemm(
        m: usize, k: usize, n: usize,
        a: &[f64], rsa: isize, csa: isize,
        b: &[f64], rsb: isize, csb: isize,
        c: &mut [f64], rsc: isize, csc: isize,
    ) {
        if k == 0 {
            fill_strided(c, m, n, rsc, csc, 0.0);
            return;
        }
        kiln_kernels::dgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc);
    }
}

fn fill_strided<W: Copy>(c: &mut [W], m: usize, n: usize, rsc: isize, csc: isize, v: W) {
    for i in 0..m {
        for j in 0..n {
            let off = i as isize * rsc + j as isize * csc;
            if let Some(x) = usize::try_from(off).ok().and_then(|o| c.get_mut(o)) {
                *x = v;
            }
        }
    }
}

/// Applies an optional rounding in place.
pub(crate) fn round_all<W: Copy>(v: &mut [W], r: Option<fn(W) -> W>) {
    if let Some(r) = r {
        for x in v.iter_mut() {
            *x = r(*x);
        }
    }
}

/// Builds a tensor of float dtype `dt` from working values.
pub(crate) fn store<W: Work>(v: Vec<W>, dt: DType, shape: Vec<usize>) -> OpResult<Tensor> {
    let data = match dt {
        DType::F32 => TensorData::F32(v.into_iter().map(|x| x.to_f64() as f32).collect()),
        DType::F64 => TensorData::F64(v.into_iter().map(|x| x.to_f64()).collect()),
        DType::F16 => TensorData::F16(v.into_iter().map(|x| f16::from_f64(x.to_f64())).collect()),
        DType::BF16 => TensorData::BF16(v.into_iter().map(|x| bf16::from_f64(x.to_f64())).collect()),
        other => return Err(not_float(other)),
    };
    Ok(Tensor::new(shape, data)?)
}

/// Rejects non-float tensors with a message naming the input.
pub(crate) fn ensure_float(t: &Tensor, what: &str, op: &str) -> OpResult<()> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(OpError(format!("{op}: {what} must be a float tensor, got {}", t.dtype())))
    }
}

/// Sum of two symbolic dims (unknown unless both are known).
pub(crate) fn dim_add(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => Dim::Fixed(x + y),
        (Dim::Fixed(0), d) | (d, Dim::Fixed(0)) => d.clone(),
        _ => Dim::unknown(),
    }
}

/// Product of two symbolic dims.
pub(crate) fn dim_mul(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => Dim::Fixed(x * y),
        (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => d.clone(),
        _ => Dim::unknown(),
    }
}

/// Exact quotient of a dim by a known divisor (unknown when not divisible or symbolic).
pub(crate) fn dim_div(a: &Dim, n: usize) -> Dim {
    match a {
        Dim::Fixed(x) if n > 0 && x % n == 0 => Dim::Fixed(x / n),
        Dim::Sym(_) if n == 1 => a.clone(),
        _ => Dim::unknown(),
    }
}

/// A required positive head-count attribute.
pub(crate) fn heads_attr(v: Option<i64>, name: &str, op: &str) -> OpResult<Option<usize>> {
    match v {
        None => Ok(None),
        Some(h) if h > 0 => Ok(Some(h as usize)),
        Some(h) => Err(OpError(format!("{op}: {name} must be positive, got {h}"))),
    }
}
