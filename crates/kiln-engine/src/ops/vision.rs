//! Vision operators: GridSample, AffineGrid, RoiAlign, MaxRoiPool, NonMaxSuppression, Col2Im,
//! DeformConv and ImageDecoder, plus the float element helpers they share.

use std::borrow::Cow;

use kiln_tensor::{bf16, f16, DType, Tensor, TensorData};

use crate::error::{OpError, OpResult};
use crate::registry::Registry;

mod col2im;
mod deform;
mod grid;
mod image;
mod nms;
mod roi;

pub fn register(r: &mut Registry) {
    r.add("GridSample", 16, grid::build_grid_sample);
    r.add("AffineGrid", 20, grid::build_affine_grid);
    r.add("RoiAlign", 10, roi::build_roi_align);
    r.add("MaxRoiPool", 1, roi::build_max_roi_pool);
    r.add("NonMaxSuppression", 10, nms::build);
    r.add("Col2Im", 18, col2im::build);
    r.add("DeformConv", 19, deform::build);
    r.add("ImageDecoder", 20, image::build);
}

/// Float type the vision kernels compute in: f32 (for f32, f16, bf16 tensors) or f64.
pub(crate) trait Real:
    Copy
    + PartialOrd
    + Default
    + Send
    + Sync
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
{
    fn c(v: f64) -> Self;
    fn f64(self) -> f64;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn abs(self) -> Self;
    fn round_even(self) -> Self;
    /// Elements of any float tensor in this type (borrowed when the dtype already matches).
    fn read(t: &Tensor) -> OpResult<Cow<'_, [Self]>>;
    /// A tensor of `dtype` (a float dtype) from values computed in this type.
    fn write(dtype: DType, shape: Vec<usize>, v: Vec<Self>) -> OpResult<Tensor>;
    /// c[m×n] += a[m×k] · b[k×n], all row-major and exactly sized.
    fn gemm_acc(m: usize, k: usize, n: usize, a: &[Self], b: &[Self], c: &mut [Self]);
}

fn not_float(t: &Tensor) -> OpError {
    OpError(format!("expected a float tensor, got {}", t.dtype()))
}

fn write_via<R: Real>(dtype: DType, shape: Vec<usize>, v: Vec<R>) -> OpResult<Tensor> {
    let data = match dtype {
        DType::F32 => TensorData::F32(v.into_iter().map(|x| x.f64() as f32).collect()),
        DType::F64 => TensorData::F64(v.into_iter().map(|x| x.f64()).collect()),
        DType::F16 => TensorData::F16(v.into_iter().map(|x| f16::from_f64(x.f64())).collect()),
        DType::BF16 => TensorData::BF16(v.into_iter().map(|x| bf16::from_f64(x.f64())).collect()),
        other => return Err(OpError(format!("cannot produce a {other} tensor from float values"))),
    };
    Ok(Tensor::new(shape, data)?)
}

impl Real for f32 {
    #[inline(always)]
    fn c(v: f64) -> f32 {
        v as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn floor(self) -> f32 {
        f32::floor(self)
    }
    #[inline(always)]
    fn ceil(self) -> f32 {
        f32::ceil(self)
    }
    #[inline(always)]
    fn abs(self) -> f32 {
        f32::abs(self)
    }
    #[inline(always)]
    fn round_even(self) -> f32 {
        f32::round_ties_even(self)
    }
    fn read(t: &Tensor) -> OpResult<Cow<'_, [f32]>> {
        Ok(match t.data() {
            TensorData::F32(v) => Cow::Borrowed(v.as_slice()),
            TensorData::F64(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
            TensorData::F16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            TensorData::BF16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            _ => return Err(not_float(t)),
        })
    }
    fn write(dtype: DType, shape: Vec<usize>, v: Vec<f32>) -> OpResult<Tensor> {
        if dtype == DType::F32 {
            return Ok(Tensor::from_vec(shape, v)?);
        }
        write_via(dtype, shape, v)
    }
    fn gemm_acc(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
        kiln_kernels::sgemm(m, k, n, 1.0, a, k as isize, 1, b, n as isize, 1, 1.0, c, n as isize, 1);
    }
}

impl Real for f64 {
    #[inline(always)]
    fn c(v: f64) -> f64 {
        v
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn floor(self) -> f64 {
        f64::floor(self)
    }
    #[inline(always)]
    fn ceil(self) -> f64 {
        f64::ceil(self)
    }
    #[inline(always)]
    fn abs(self) -> f64 {
        f64::abs(self)
    }
    #[inline(always)]
    fn round_even(self) -> f64 {
        f64::round_ties_even(self)
    }
    fn read(t: &Tensor) -> OpResult<Cow<'_, [f64]>> {
        Ok(match t.data() {
            TensorData::F64(v) => Cow::Borrowed(v.as_slice()),
            TensorData::F32(v) => Cow::Owned(v.iter().map(|&x| x as f64).collect()),
            TensorData::F16(v) => Cow::Owned(v.iter().map(|x| x.to_f64()).collect()),
            TensorData::BF16(v) => Cow::Owned(v.iter().map(|x| x.to_f64()).collect()),
            _ => return Err(not_float(t)),
        })
    }
    fn write(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> OpResult<Tensor> {
        if dtype == DType::F64 {
            return Ok(Tensor::from_vec(shape, v)?);
        }
        write_via(dtype, shape, v)
    }
    fn gemm_acc(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
        kiln_kernels::dgemm(m, k, n, 1.0, a, k as isize, 1, b, n as isize, 1, 1.0, c, n as isize, 1);
    }
}

/// Calls `$f::<f64>` for f64 tensors and `$f::<f32>` for the other float dtypes; errors otherwise.
macro_rules! real_dispatch {
    ($t:expr, $name:literal, $f:ident ( $($arg:expr),* )) => {{
        match $t.dtype() {
            kiln_tensor::DType::F64 => $f::<f64>($($arg),*),
            kiln_tensor::DType::F32 | kiln_tensor::DType::F16 | kiln_tensor::DType::BF16 => $f::<f32>($($arg),*),
            other => Err($crate::OpError(format!("{} does not support {} tensors", $name, other))),
        }
    }};
}
pub(crate) use real_dispatch;

/// Checks that `t` has a float dtype.
pub(crate) fn ensure_float(t: &Tensor, what: &str) -> OpResult<()> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(OpError(format!("{what} must be a float tensor, got {}", t.dtype())))
    }
}

/// Product of dims with an overflow check.
pub(crate) fn numel(dims: &[usize]) -> OpResult<usize> {
    Ok(kiln_tensor::checked_numel(dims)?)
}
