//! Quantization operators: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and (in
//! `qlinear`) QLinearMatMul and QLinearConv.

mod qlinear;

use kiln_tensor::{
    bf16, f16, DType, Elem, Tensor, TensorData, Value, ValueType, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, I2,
    I4, U2, U4,
};

use crate::error::OpResult;
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::util::norm_axis;
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("QuantizeLinear", 10, build_quantize);
    r.add("DequantizeLinear", 10, build_dequantize);
    r.add("DynamicQuantizeLinear", 11, |_| Ok(Box::new(DynamicQuantizeOp)));
    qlinear::register(r);
}

/// Integer element types that hold quantized values.
pub(crate) trait QInt: Elem + Copy {
    const MIN: i64;
    const MAX: i64;
    fn to_i64(self) -> i64;
    /// `v` must already lie in `MIN..=MAX`.
    fn from_i64(v: i64) -> Self;
}

macro_rules! impl_qint {
    ($($t:ty),*) => {$(
        impl QInt for $t {
            const MIN: i64 = <$t>::MIN as i64;
            const MAX: i64 = <$t>::MAX as i64;
            fn to_i64(self) -> i64 {
                self as i64
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
        }
    )*};
}
impl_qint!(i8, u8, i16, u16, i32);

macro_rules! impl_qint_low {
    ($($t:ident),*) => {$(
        impl QInt for $t {
            const MIN: i64 = $t::MIN;
            const MAX: i64 = $t::MAX;
            fn to_i64(self) -> i64 {
                $t::to_i64(self)
            }
            fn from_i64(v: i64) -> Self {
                $t::saturating(v)
            }
        }
    )*};
}
impl_qint_low!(I4, U4, I2, U2);

/// Rounds `v` half to even and saturates it, plus `zp`, into `Q`'s range. NaN maps to `zp`.
#[inline]
pub(crate) fn saturate_round<Q: QInt>(v: f64, zp: i64) -> Q {
    let r = v.round_ties_even();
    // The float-to-int `as` cast saturates (and maps NaN to 0); the range is ample for any Q.
    let i = (r.clamp(-1e12, 1e12) as i64).saturating_add(zp);
    Q::from_i64(i.clamp(Q::MIN, Q::MAX))
}

/// Precision in which a quotient or product is rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prec {
    F32,
    F16,
    BF16,
    F64,
}

impl Prec {
    pub(crate) fn of(dtype: DType) -> Option<Prec> {
        match dtype {
            DType::F32 => Some(Prec::F32),
            DType::F16 => Some(Prec::F16),
            DType::BF16 => Some(Prec::BF16),
            DType::F64 | DType::I32 => Some(Prec::F64),
            _ => None,
        }
    }
    /// Rounds an f64 to this precision (an f64 holds every value of the narrower types).
    #[inline]
    pub(crate) fn round(self, v: f64) -> f64 {
        match self {
            Prec::F32 => v as f32 as f64,
            Prec::F16 => f16::from_f64(v).to_f64(),
            Prec::BF16 => bf16::from_f64(v).to_f64(),
            Prec::F64 => v,
        }
    }
}

/// Numeric tensor values as f64 (exact for every dtype quantization uses).
pub(crate) fn values_f64(t: &Tensor, what: &str) -> OpResult<Vec<f64>> {
    Ok(match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F8E4M3FN(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::F8E4M3FNUZ(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::F8E5M2(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::F8E5M2FNUZ(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::F4E2M1(v) => v.iter().map(|x| x.to_f64()).collect(),
        other => bail!("{what} does not support {} tensors", other.dtype()),
    })
}

/// Integer tensor values (zero points) as i64.
pub(crate) fn values_i64(t: &Tensor, what: &str) -> OpResult<Vec<i64>> {
    ensure!(t.dtype().is_int(), "{what} must be an integer tensor, got {}", t.dtype());
    Ok(t.to_i64_vec()?)
}

/// How a scale (and zero point) maps onto the elements of the quantized tensor, viewed as
/// [outer, d, inner] around the quantization axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    outer: usize,
    d: usize,
    inner: usize,
    mode: Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    PerTensor,
    PerAxis,
    /// Blocks of `block` along the axis; the scale's axis has `blocks` entries.
    Blocked { block: usize, blocks: usize },
}

impl Layout {
    fn new(x_shape: &[usize], s_shape: &[usize], axis: i64, block_size: i64) -> OpResult<Layout> {
        let n: usize = x_shape.iter().product();
        let s_len: usize = s_shape.iter().product();
        if block_size > 0 {
            ensure!(
                s_shape.len() == x_shape.len() && !x_shape.is_empty(),
                "blocked quantization needs a scale of the input's rank {}, got shape {s_shape:?}",
                x_shape.len()
            );
            let ax = norm_axis(axis, x_shape.len())?;
            let block = block_size as usize;
            let blocks = x_shape[ax].div_ceil(block);
            for (i, (&xd, &sd)) in x_shape.iter().zip(s_shape).enumerate() {
                let want = if i == ax { blocks } else { xd };
                ensure!(
                    sd == want,
                    "scale shape {s_shape:?} does not fit input shape {x_shape:?} with block_size {block} on axis {ax}"
                );
            }
            let (outer, d, inner) = split(x_shape, ax);
            return Ok(Layout { outer, d, inner, mode: Mode::Blocked { block, blocks } });
        }
        ensure!(block_size == 0, "block_size must not be negative, got {block_size}");
        if s_len == 1 && s_shape.len() <= 1 {
            return Ok(Layout { outer: 1, d: 1, inner: n, mode: Mode::PerTensor });
        }
        ensure!(
            s_shape.len() == 1 && !x_shape.is_empty(),
            "scale must be a scalar or a 1-D tensor (per-axis), got shape {s_shape:?} for input shape {x_shape:?}"
        );
        let ax = norm_axis(axis, x_shape.len())?;
        ensure!(
            s_shape[0] == x_shape[ax],
            "per-axis scale has {} elements but axis {ax} of input shape {x_shape:?} has {}",
            s_shape[0],
            x_shape[ax]
        );
        let (outer, d, inner) = split(x_shape, ax);
        Ok(Layout { outer, d, inner, mode: Mode::PerAxis })
    }

    /// Calls `f(element index, scale index)` for every element, in order.
    #[inline]
    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let mut i = 0;
        for o in 0..self.outer {
            for a in 0..self.d {
                let (base, stride) = match self.mode {
                    Mode::PerTensor => (0, 0),
                    Mode::PerAxis => (a, 0),
                    Mode::Blocked { block, blocks } => ((o * blocks + a / block) * self.inner, 1),
                };
                for r in 0..self.inner {
                    f(i, base + r * stride);
                    i += 1;
                }
            }
        }
    }
}

fn split(shape: &[usize], ax: usize) -> (usize, usize, usize) {
    (shape[..ax].iter().product(), shape[ax], shape[ax + 1..].iter().product())
}

/// Checks that a zero point has the scale's shape.
fn check_zp_shape(z: &Tensor, scale: &Tensor, what: &str) -> OpResult<()> {
    let same = z.shape() == scale.shape() || (z.len() == 1 && scale.len() == 1);
    ensure!(same, "{what} shape {:?} differs from the scale shape {:?}", z.shape(), scale.shape());
    Ok(())
}

/// Checks that a zero point has the scale's shape and returns its values (zeros if absent).
fn zero_points(zp: Option<&Tensor>, scale: &Tensor, what: &str) -> OpResult<Vec<i64>> {
    match zp {
        None => Ok(vec![0; scale.len()]),
        Some(z) => {
            check_zp_shape(z, scale, what)?;
            values_i64(z, what)
        }
    }
}

/// Float zero-point values (float4e2m1 / float8 zero points), zeros if absent.
fn float_zero_points(zp: Option<&Tensor>, scale: &Tensor, what: &str) -> OpResult<Vec<f64>> {
    match zp {
        None => Ok(vec![0.0; scale.len()]),
        Some(z) => {
            check_zp_shape(z, scale, what)?;
            values_f64(z, what)
        }
    }
}

/// The float8 types, whose zero point must be 0.
fn is_float8(d: DType) -> bool {
    matches!(d, DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ)
}

/// Float8 zero points must all be zero.
fn check_float8_zp(zp: Option<&Tensor>, scale: &Tensor) -> OpResult<()> {
    let zs = float_zero_points(zp, scale, "zero point")?;
    ensure!(zs.iter().all(|&z| z == 0.0), "float8 zero points must be 0");
    Ok(())
}

/// Kiln dtype of an ONNX quantized type code, with a clear error for the types Kiln lacks.
fn quant_dtype(code: i64, what: &str) -> OpResult<DType> {
    let dt = i32::try_from(code).ok().and_then(DType::from_onnx);
    match dt {
        Some(
            d @ (DType::I8
            | DType::U8
            | DType::I16
            | DType::U16
            | DType::I32
            | DType::I4
            | DType::U4
            | DType::I2
            | DType::U2
            | DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F4E2M1),
        ) => Ok(d),
        _ => bail!("{what} {} ({code}) is not supported", DType::onnx_code_name(code as i32)),
    }
}

// ---------------------------------------------------------------------------------------------
// QuantizeLinear

struct QuantizeOp {
    axis: i64,
    block_size: i64,
    output_dtype: Option<DType>,
    precision: Option<Prec>,
    /// Float8 outputs: clamp out-of-range values to the largest finite value (opset 19+).
    saturate: bool,
}

fn build_quantize(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let output_dtype = match n.attr_int("output_dtype")? {
        None | Some(0) => None,
        Some(code) => {
            let d = quant_dtype(code, "QuantizeLinear output_dtype")?;
            ensure!(d != DType::I32, "QuantizeLinear cannot produce int32");
            Some(d)
        }
    };
    let precision = match n.attr_int("precision")? {
        None | Some(0) => None,
        Some(code) => {
            let p = i32::try_from(code).ok().and_then(DType::from_onnx).filter(|d| d.is_float()).and_then(Prec::of);
            match p {
                Some(p) => Some(p),
                None => bail!("precision {} ({code}) is not supported", DType::onnx_code_name(code as i32)),
            }
        }
    };
    if let (Some(od), Some(zd)) = (output_dtype, n.input_dtype(2)) {
        ensure!(od == zd, "output_dtype {od} differs from the zero point type {zd}");
    }
    Ok(Box::new(QuantizeOp {
        axis: n.attr_int_or("axis", 1)?,
        block_size: n.attr_int_or("block_size", 0)?,
        output_dtype,
        precision,
        saturate: n.attr_int_or("saturate", 1)? != 0,
    }))
}

fn quantize_kernel<Q: QInt>(x: &[f64], s: &[f64], zp: &[i64], lay: &Layout, prec: Prec) -> Vec<Q> {
    let mut out = vec![Q::from_i64(0); x.len()];
    lay.for_each(|i, si| {
        out[i] = saturate_round::<Q>(prec.round(x[i] / s[si]), zp[si]);
    });
    out
}

/// Quantizes to a low-precision float: `enc(x / scale [+ zp])`, each step rounded in `prec`.
/// A given zero point is always added, so -0 becomes +0 as in IEEE arithmetic.
fn quantize_float<Q>(
    x: &[f64],
    s: &[f64],
    zp: Option<&[f64]>,
    lay: &Layout,
    prec: Prec,
    enc: impl Fn(f64) -> Q,
) -> Vec<Q>
where
    Q: Copy + Default,
{
    let mut out = vec![Q::default(); x.len()];
    lay.for_each(|i, si| {
        let q = prec.round(x[i] / s[si]);
        let v = match zp {
            Some(z) => prec.round(q + z[si]),
            None => q,
        };
        out[i] = enc(v);
    });
    out
}

impl Op for QuantizeOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let scale = inputs.tensor(1)?;
        let zp = inputs.opt_tensor(2)?;
        let out_dtype = match (zp, self.output_dtype) {
            (Some(z), Some(od)) => {
                ensure!(z.dtype() == od, "output_dtype {od} differs from the zero point type {}", z.dtype());
                od
            }
            (Some(z), None) => z.dtype(),
            (None, Some(od)) => od,
            (None, None) => DType::U8,
        };
        ensure!(
            matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16 | DType::I32),
            "QuantizeLinear input must be float, float16, bfloat16 or int32, got {}",
            x.dtype()
        );
        let prec = match self.precision {
            Some(p) => p,
            None => match Prec::of(scale.dtype()) {
                Some(p) => p,
                None => bail!("QuantizeLinear scale must be float, float16, bfloat16 or int32, got {}", scale.dtype()),
            },
        };
        let lay = Layout::new(x.shape(), scale.shape(), self.axis, self.block_size)?;
        let xs = values_f64(x, "QuantizeLinear")?;
        let ss: Vec<f64> = values_f64(scale, "QuantizeLinear scale")?.into_iter().map(|v| prec.round(v)).collect();
        // An explicit precision converts the input to it before dividing.
        let xs: Vec<f64> = match self.precision {
            Some(p) if p != Prec::F64 => xs.into_iter().map(|v| p.round(v)).collect(),
            _ => xs,
        };
        let shape = x.shape().to_vec();
        if out_dtype.is_low_float() {
            let sat = self.saturate;
            let data = if out_dtype == DType::F4E2M1 {
                let zs = match zp {
                    Some(_) => Some(float_zero_points(zp, scale, "zero point")?),
                    None => None,
                };
                let zs = zs.as_deref();
                TensorData::F4E2M1(quantize_float(&xs, &ss, zs, &lay, prec, |v| F4E2M1::from_f64(v, true)))
            } else {
                check_float8_zp(zp, scale)?;
                let zs = None;
                match out_dtype {
                    DType::F8E4M3FN => {
                        TensorData::F8E4M3FN(quantize_float(&xs, &ss, zs, &lay, prec, |v| F8E4M3FN::from_f64(v, sat)))
                    }
                    DType::F8E4M3FNUZ => TensorData::F8E4M3FNUZ(quantize_float(&xs, &ss, zs, &lay, prec, |v| {
                        F8E4M3FNUZ::from_f64(v, sat)
                    })),
                    DType::F8E5M2 => {
                        TensorData::F8E5M2(quantize_float(&xs, &ss, zs, &lay, prec, |v| F8E5M2::from_f64(v, sat)))
                    }
                    DType::F8E5M2FNUZ => TensorData::F8E5M2FNUZ(quantize_float(&xs, &ss, zs, &lay, prec, |v| {
                        F8E5M2FNUZ::from_f64(v, sat)
                    })),
                    other => bail!("QuantizeLinear cannot produce {other}"),
                }
            };
            return Ok(vec![Value::Tensor(Tensor::new(shape, data)?)]);
        }
        let zs = zero_points(zp, scale, "zero point")?;
        let data = match out_dtype {
            DType::U8 => TensorData::U8(quantize_kernel(&xs, &ss, &zs, &lay, prec)),
            DType::I8 => TensorData::I8(quantize_kernel(&xs, &ss, &zs, &lay, prec)),
            DType::U16 => TensorData::U16(quantize_kernel(&xs, &ss, &zs, &lay, prec)),
            DType::I16 => TensorData::I16(quantize_kernel(&xs, &ss, &zs, &lay, prec)),
            DType::U4 => TensorData::U4(quantize_kernel(&xs, &ss, &zs, &lay, prec)),
            DType::I4 => TensorData::I4(quantize_kernel(&xs, &ss, &zs, &lay, prec)),
            DType::U2 => TensorData::U2(quantize_kernel(&xs, &ss, &zs, &lay, prec)),
            DType::I2 => TensorData::I2(quantize_kernel(&xs, &ss, &zs, &lay, prec)),
            other => bail!("QuantizeLinear cannot produce {other}"),
        };
        Ok(vec![Value::Tensor(Tensor::new(shape, data)?)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        let dtype = match (inputs.get(2).copied().flatten(), self.output_dtype) {
            (Some(z), _) => z.tensor_dtype()?,
            (None, Some(od)) => od,
            (None, None) if inputs.len() <= 2 => DType::U8,
            _ => return None,
        };
        x.tensor_dtype()?;
        Some(vec![ValueType::Tensor { dtype, shape: x.tensor_shape().cloned() }])
    }
}

// ---------------------------------------------------------------------------------------------
// DequantizeLinear

struct DequantizeOp {
    axis: i64,
    block_size: i64,
    output_dtype: Option<DType>,
}

fn build_dequantize(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let output_dtype = match n.attr_int("output_dtype")? {
        None | Some(0) => None,
        Some(code) => match i32::try_from(code).ok().and_then(DType::from_onnx) {
            Some(d @ (DType::F32 | DType::F16 | DType::BF16)) => Some(d),
            _ => bail!("DequantizeLinear output_dtype {} ({code}) is not supported", DType::onnx_code_name(code as i32)),
        },
    };
    Ok(Box::new(DequantizeOp {
        axis: n.attr_int_or("axis", 1)?,
        block_size: n.attr_int_or("block_size", 0)?,
        output_dtype,
    }))
}

trait FromF32: Elem + Copy {
    fn from_f32(v: f32) -> Self;
}
impl FromF32 for f32 {
    fn from_f32(v: f32) -> f32 {
        v
    }
}
impl FromF32 for f16 {
    fn from_f32(v: f32) -> f16 {
        f16::from_f32(v)
    }
}
impl FromF32 for bf16 {
    fn from_f32(v: f32) -> bf16 {
        bf16::from_f32(v)
    }
}

fn dequantize_kernel<Q: QInt, O: FromF32>(x: &[Q], s: &[f32], zp: &[i64], lay: &Layout) -> Vec<O> {
    let mut out = vec![O::from_f32(0.0); x.len()];
    lay.for_each(|i, si| {
        out[i] = O::from_f32((x[i].to_i64() - zp[si]) as f32 * s[si]);
    });
    out
}

fn dequantize_to<O: FromF32>(x: &Tensor, s: &[f32], zp: &[i64], lay: &Layout) -> OpResult<Vec<O>> {
    Ok(match x.data() {
        TensorData::I8(v) => dequantize_kernel::<i8, O>(v, s, zp, lay),
        TensorData::U8(v) => dequantize_kernel::<u8, O>(v, s, zp, lay),
        TensorData::I16(v) => dequantize_kernel::<i16, O>(v, s, zp, lay),
        TensorData::U16(v) => dequantize_kernel::<u16, O>(v, s, zp, lay),
        TensorData::I32(v) => dequantize_kernel::<i32, O>(v, s, zp, lay),
        TensorData::I4(v) => dequantize_kernel::<I4, O>(v, s, zp, lay),
        TensorData::U4(v) => dequantize_kernel::<U4, O>(v, s, zp, lay),
        TensorData::I2(v) => dequantize_kernel::<I2, O>(v, s, zp, lay),
        TensorData::U2(v) => dequantize_kernel::<U2, O>(v, s, zp, lay),
        other => bail!("DequantizeLinear does not support {} input", other.dtype()),
    })
}

/// Dequantizes low-precision floats: `x * scale` (their zero point is not applied).
fn dequantize_float<O: FromF32>(x: &[f64], s: &[f32], lay: &Layout) -> Vec<O> {
    let mut out = vec![O::from_f32(0.0); x.len()];
    lay.for_each(|i, si| {
        out[i] = O::from_f32(x[i] as f32 * s[si]);
    });
    out
}

impl Op for DequantizeOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let scale = inputs.tensor(1)?;
        let zp = inputs.opt_tensor(2)?;
        if let Some(z) = zp {
            ensure!(z.dtype() == x.dtype(), "zero point type {} differs from the input type {}", z.dtype(), x.dtype());
        }
        let out_dtype = match self.output_dtype {
            Some(d) => d,
            None => match scale.dtype() {
                d @ (DType::F32 | DType::F16 | DType::BF16) => d,
                other => bail!("DequantizeLinear scale must be float, float16 or bfloat16, got {other}"),
            },
        };
        let lay = Layout::new(x.shape(), scale.shape(), self.axis, self.block_size)?;
        let ss: Vec<f32> = values_f64(scale, "DequantizeLinear scale")?.into_iter().map(|v| v as f32).collect();
        let shape = x.shape().to_vec();
        if x.dtype().is_low_float() {
            if is_float8(x.dtype()) {
                check_float8_zp(zp, scale)?;
            } else if let Some(z) = zp {
                check_zp_shape(z, scale, "zero point")?;
            }
            let xs = values_f64(x, "DequantizeLinear")?;
            let data = match out_dtype {
                DType::F16 => TensorData::F16(dequantize_float(&xs, &ss, &lay)),
                DType::BF16 => TensorData::BF16(dequantize_float(&xs, &ss, &lay)),
                _ => TensorData::F32(dequantize_float(&xs, &ss, &lay)),
            };
            return Ok(vec![Value::Tensor(Tensor::new(shape, data)?)]);
        }
        let zs = zero_points(zp, scale, "zero point")?;
        let data = match out_dtype {
            DType::F16 => TensorData::F16(dequantize_to(x, &ss, &zs, &lay)?),
            DType::BF16 => TensorData::BF16(dequantize_to(x, &ss, &zs, &lay)?),
            _ => TensorData::F32(dequantize_to(x, &ss, &zs, &lay)?),
        };
        Ok(vec![Value::Tensor(Tensor::new(shape, data)?)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        let dtype = match self.output_dtype {
            Some(d) => d,
            None => inputs.get(1).copied().flatten()?.tensor_dtype()?,
        };
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return None;
        }
        Some(vec![ValueType::Tensor { dtype, shape: x.tensor_shape().cloned() }])
    }
}

// ---------------------------------------------------------------------------------------------
// DynamicQuantizeLinear

struct DynamicQuantizeOp;

impl Op for DynamicQuantizeOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let xs = x.as_slice::<f32>().map_err(|_| {
            crate::OpError(format!("DynamicQuantizeLinear input must be float, got {}", x.dtype()))
        })?;
        let mut max = 0f32;
        let mut min = 0f32;
        for &v in xs {
            if v > max {
                max = v;
            }
            if v < min {
                min = v;
            }
        }
        let (qmin, qmax) = (0f32, 255f32);
        let scale = (if max == min { 1.0 } else { max - min }) / (qmax - qmin);
        let zp = (qmin - min / scale).clamp(qmin, qmax).round_ties_even();
        let zpi = zp as i64;
        let y: Vec<u8> = xs.iter().map(|&v| saturate_round::<u8>((v / scale) as f64, zpi)).collect();
        Ok(vec![
            Value::Tensor(Tensor::from_vec(x.shape().to_vec(), y)?),
            Value::Tensor(Tensor::scalar(scale)),
            Value::Tensor(Tensor::scalar(zpi as u8)),
        ])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        if x.tensor_dtype()? != DType::F32 {
            return None;
        }
        Some(vec![
            ValueType::Tensor { dtype: DType::U8, shape: x.tensor_shape().cloned() },
            crate::ops::util::fixed_type(DType::F32, &[]),
            crate::ops::util::fixed_type(DType::U8, &[]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &dyn Op, inputs: Vec<Tensor>) -> OpResult<Vec<Tensor>> {
        let vals: Vec<Value> = inputs.into_iter().map(Value::Tensor).collect();
        let refs: Vec<Option<&Value>> = vals.iter().map(Some).collect();
        let out = op.run(&Inputs::new(&refs))?;
        Ok(out.into_iter().filter_map(Value::into_tensor).collect())
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let op = QuantizeOp { axis: 1, block_size: 0, output_dtype: None, precision: None, saturate: true };
        let x = Tensor::from_vec(vec![6], vec![0.5f32, 1.5, 2.5, -2.5, 1000.0, -1000.0]).unwrap();
        let s = Tensor::scalar(1f32);
        let z = Tensor::scalar(10i8);
        let y = run(&op, vec![x, s, z]).unwrap();
        assert_eq!(y[0].as_slice::<i8>().unwrap(), &[10, 12, 12, 8, 127, -128]);
    }

    #[test]
    fn quantize_per_axis_and_blocked() {
        // x [2, 4], per-axis over axis 0 with scales [1, 2]
        let x = Tensor::from_vec(vec![2, 4], vec![1f32, 2., 3., 4., 2., 4., 6., 8.]).unwrap();
        let op = QuantizeOp { axis: 0, block_size: 0, output_dtype: None, precision: None, saturate: true };
        let y = run(&op, vec![x.clone(), Tensor::from_vec(vec![2], vec![1f32, 2.]).unwrap()]).unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[1, 2, 3, 4, 1, 2, 3, 4]);
        // blocked along axis 1 with block 3: scale shape [2, 2]
        let op = QuantizeOp { axis: 1, block_size: 3, output_dtype: Some(DType::I16), precision: None, saturate: true };
        let s = Tensor::from_vec(vec![2, 2], vec![1f32, 4., 2., 8.]).unwrap();
        let y = run(&op, vec![x, s]).unwrap();
        assert_eq!(y[0].as_slice::<i16>().unwrap(), &[1, 2, 3, 1, 1, 2, 3, 1]);
    }

    #[test]
    fn quantize_to_low_precision() {
        let x = Tensor::from_vec(vec![4], vec![3.0f32, -20.0, 7.0, 1000.0]).unwrap();
        let s = Tensor::scalar(2f32);
        // int4 with zero point 1: round(x / 2) + 1 = [3 (1.5 → 2, +1), -9 → -8, 5 (3.5 → 4, +1), 501 → 7]
        let op = QuantizeOp { axis: 1, block_size: 0, output_dtype: None, precision: None, saturate: true };
        let y = run(&op, vec![x.clone(), s.clone(), Tensor::scalar(I4(1))]).unwrap();
        assert_eq!(y[0].as_slice::<I4>().unwrap(), &[I4(3), I4(-8), I4(5), I4(7)]);
        // uint2 without zero point via output_dtype: [2 (1.5 → 2), 0, 3, 3]
        let op = QuantizeOp { axis: 1, block_size: 0, output_dtype: Some(DType::U2), precision: None, saturate: true };
        let y = run(&op, vec![x.clone(), s.clone()]).unwrap();
        assert_eq!(y[0].as_slice::<U2>().unwrap(), &[U2(2), U2(0), U2(3), U2(3)]);
        // float8 e4m3fn: 1.5 = 0x3c, -10 = 0xd2, 3.5 = 0x46, 500 saturates to 448 = 0x7e or is NaN.
        let z = Tensor::scalar(F8E4M3FN(0));
        let op = QuantizeOp { axis: 1, block_size: 0, output_dtype: None, precision: None, saturate: true };
        let y = run(&op, vec![x.clone(), s.clone(), z.clone()]).unwrap();
        let bits: Vec<u8> = y[0].as_slice::<F8E4M3FN>().unwrap().iter().map(|v| v.0).collect();
        assert_eq!(bits, vec![0x3c, 0xd2, 0x46, 0x7e]);
        let op = QuantizeOp { axis: 1, block_size: 0, output_dtype: None, precision: None, saturate: false };
        let y = run(&op, vec![x.clone(), s.clone(), z]).unwrap();
        assert_eq!(y[0].as_slice::<F8E4M3FN>().unwrap()[3], F8E4M3FN(0x7f));
        // A nonzero float8 zero point is an error.
        let op = QuantizeOp { axis: 1, block_size: 0, output_dtype: None, precision: None, saturate: true };
        assert!(run(&op, vec![x.clone(), s.clone(), Tensor::scalar(F8E4M3FN(0x38))]).is_err());
        // float4e2m1: [1.5, -6 (saturated), 4 (3.5 ties to even), 6]
        let op = QuantizeOp { axis: 1, block_size: 0, output_dtype: Some(DType::F4E2M1), precision: None, saturate: true };
        let y = run(&op, vec![x, s]).unwrap();
        let bits: Vec<u8> = y[0].as_slice::<F4E2M1>().unwrap().iter().map(|v| v.0).collect();
        assert_eq!(bits, vec![0x3, 0xf, 0x6, 0x7]);
    }

    #[test]
    fn dequantize_low_precision() {
        let op = DequantizeOp { axis: 1, block_size: 0, output_dtype: None };
        let x = Tensor::from_vec(vec![3], vec![I4(-8), I4(0), I4(7)]).unwrap();
        let y = run(&op, vec![x, Tensor::scalar(0.5f32), Tensor::scalar(I4(-1))]).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-3.5, 0.5, 4.0]);
        // float8 e5m2 0x3c = 1, 0xc0 = -2; float4e2m1 0x7 = 6.
        let x = Tensor::from_vec(vec![2], vec![F8E5M2(0x3c), F8E5M2(0xc0)]).unwrap();
        let y = run(&op, vec![x, Tensor::scalar(3f32)]).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[3.0, -6.0]);
        let x = Tensor::from_vec(vec![1], vec![F4E2M1(0x7)]).unwrap();
        let y = run(&op, vec![x, Tensor::scalar(f16::from_f32(0.5))]).unwrap();
        assert_eq!(y[0].as_slice::<f16>().unwrap(), &[f16::from_f32(3.0)]);
    }

    #[test]
    fn dequantize_per_axis() {
        let op = DequantizeOp { axis: 1, block_size: 0, output_dtype: None };
        let x = Tensor::from_vec(vec![1, 2, 2], vec![10u8, 20, 30, 40]).unwrap();
        let s = Tensor::from_vec(vec![2], vec![0.5f32, 2.0]).unwrap();
        let z = Tensor::from_vec(vec![2], vec![10u8, 20]).unwrap();
        let y = run(&op, vec![x, s, z]).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[0.0, 5.0, 20.0, 40.0]);
    }

    #[test]
    fn bad_scale_shape_is_an_error() {
        let op = DequantizeOp { axis: 1, block_size: 0, output_dtype: None };
        let x = Tensor::from_vec(vec![2, 2], vec![1u8, 2, 3, 4]).unwrap();
        let s = Tensor::from_vec(vec![3], vec![1f32, 1., 1.]).unwrap();
        assert!(run(&op, vec![x, s]).is_err());
    }

    #[test]
    fn dynamic_quantize() {
        // range [0, 2.55] → scale 0.01, zero point 0
        let x = Tensor::from_vec(vec![3], vec![0f32, 1.0, 2.55]).unwrap();
        let y = run(&DynamicQuantizeOp, vec![x]).unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[0, 100, 255]);
        assert_eq!(y[2].as_slice::<u8>().unwrap(), &[0]);
    }
}
