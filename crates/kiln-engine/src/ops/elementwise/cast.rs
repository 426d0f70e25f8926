//! Cast and CastLike between every Kiln dtype, including to and from strings (numpy formatting).

use kiln_tensor::{
    bf16, f16, DType, E8M0Round, Tensor, TensorData, Value, ValueType, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2,
    F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4,
};

use super::infer_unary;
use super::kernels::Num;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;
use crate::bail;

pub fn register(r: &mut Registry) {
    r.add("Cast", 1, build_cast);
    r.add("CastLike", 15, |n| Ok(Box::new(CastLikeOp { opts: cast_opts(n)? })));
}

/// How a float is narrowed to a float8 / float4 type: `saturate` (opset 19+) clamps
/// out-of-range values to the largest finite value instead of giving infinity or NaN;
/// `round` (opset 24+) is the rounding used for float8e8m0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CastOpts {
    pub saturate: bool,
    pub round: E8M0Round,
}

impl Default for CastOpts {
    fn default() -> Self {
        CastOpts { saturate: true, round: E8M0Round::Up }
    }
}

fn cast_opts(n: &NodeInfo) -> OpResult<CastOpts> {
    let saturate = n.attr_int_or("saturate", 1)? != 0;
    let mode = n.attr_string_or("round_mode", "up")?;
    let round = E8M0Round::parse(&mode)
        .ok_or_else(|| OpError(format!("round_mode must be 'up', 'down' or 'nearest', got '{mode}'")))?;
    Ok(CastOpts { saturate, round })
}

struct CastOp {
    to: DType,
    opts: CastOpts,
}

fn build_cast(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let to = if let Some(code) = n.attr_int("to")? {
        let code = i32::try_from(code).map_err(|_| OpError(format!("Cast 'to' {code} is not a type code")))?;
        DType::from_onnx(code).ok_or_else(|| {
            OpError(format!("Cast to {} (type code {code}) is not supported", DType::onnx_code_name(code)))
        })?
    } else if let Some(s) = n.attr_string("to")? {
        // Opset 1 spelled the target type as a string ("FLOAT", "INT64", ...).
        let lower = s.to_ascii_lowercase();
        let name = match lower.as_str() {
            "float" => "float",
            "double" => "double",
            other => other,
        };
        DType::ALL
            .iter()
            .copied()
            .find(|d| d.name() == name)
            .ok_or_else(|| OpError(format!("Cast to '{s}' is not supported")))?
    } else {
        bail!("Cast needs the 'to' attribute");
    };
    Ok(Box::new(CastOp { to, opts: cast_opts(n)? }))
}

impl Op for CastOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        Ok(vec![Value::Tensor(cast_with(inputs.tensor(0)?, self.to, self.opts)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        infer_unary(inputs, Some(self.to))
    }
}

struct CastLikeOp {
    opts: CastOpts,
}

impl Op for CastLikeOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let like = inputs.tensor(1)?;
        Ok(vec![Value::Tensor(cast_with(inputs.tensor(0)?, like.dtype(), self.opts)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let to = inputs.get(1).copied().flatten()?.tensor_dtype()?;
        infer_unary(inputs, Some(to))
    }
}

/// Values of low-precision floats, widened exactly.
fn low_floats<T: Copy>(v: &[T], f: fn(T) -> f64) -> Vec<f64> {
    v.iter().map(|&x| f(x)).collect()
}

/// Values of 4- and 2-bit integers, widened.
fn low_ints<T: Copy>(v: &[T], f: fn(T) -> i64) -> Vec<i64> {
    v.iter().map(|&x| f(x)).collect()
}

/// Converts `t` to `to` with numpy `astype` semantics (floats to ints truncate and saturate;
/// 4- and 2-bit integers wrap); narrowing to float8 follows `o`.
pub fn cast_with(t: &Tensor, to: DType, o: CastOpts) -> OpResult<Tensor> {
    if t.dtype() == to {
        return Ok(t.clone());
    }
    let shape = t.shape().to_vec();
    let data = match t.data() {
        TensorData::String(v) => from_strings(v, to, o)?,
        TensorData::Bool(v) => {
            if to == DType::String {
                TensorData::String(v.iter().map(|&b| if b { "True" } else { "False" }.to_string()).collect())
            } else {
                let ints: Vec<u8> = v.iter().map(|&b| b as u8).collect();
                numeric_to(&ints, to, o)
            }
        }
        TensorData::F8E4M3FN(v) => numeric_to(&low_floats(v, F8E4M3FN::to_f64), to, o),
        TensorData::F8E4M3FNUZ(v) => numeric_to(&low_floats(v, F8E4M3FNUZ::to_f64), to, o),
        TensorData::F8E5M2(v) => numeric_to(&low_floats(v, F8E5M2::to_f64), to, o),
        TensorData::F8E5M2FNUZ(v) => numeric_to(&low_floats(v, F8E5M2FNUZ::to_f64), to, o),
        TensorData::F8E8M0(v) => numeric_to(&low_floats(v, F8E8M0::to_f64), to, o),
        TensorData::F4E2M1(v) => numeric_to(&low_floats(v, F4E2M1::to_f64), to, o),
        TensorData::I4(v) => numeric_to(&low_ints(v, I4::to_i64), to, o),
        TensorData::U4(v) => numeric_to(&low_ints(v, U4::to_i64), to, o),
        TensorData::I2(v) => numeric_to(&low_ints(v, I2::to_i64), to, o),
        TensorData::U2(v) => numeric_to(&low_ints(v, U2::to_i64), to, o),
        d => dispatch!(num d, "Cast", |v: T| numeric_to::<T>(v, to, o)),
    };
    Ok(Tensor::new(shape, data)?)
}

fn conv<S: Num, D: Num>(v: &[S]) -> Vec<D> {
    if S::IS_FLOAT {
        v.iter().map(|&x| D::from_f64(x.to_f64())).collect()
    } else if S::IS_SIGNED {
        v.iter().map(|&x| D::from_i64(x.to_i64())).collect()
    } else {
        v.iter().map(|&x| D::from_u64(x.to_u64())).collect()
    }
}

/// Integer whose low bits a 4- or 2-bit integer keeps: floats truncate toward zero, and
/// NaN, infinities and values beyond i64 give 0 low bits (as the reference's float-to-int
/// conversion does); integers keep their two's-complement bits.
#[inline]
fn wrap_source<S: Num>(x: S) -> i64 {
    if S::IS_FLOAT {
        let f = x.to_f64();
        if f.is_finite() && f.abs() < 9.2e18 {
            f as i64
        } else {
            0
        }
    } else {
        x.to_i64()
    }
}

/// Every conversion but the one to text depends only on the source's value as f64, i64 or u64
/// (by its class): other source types are widened first, so only f32, f64, i64 and u64 keep
/// their own set of conversion loops (code size).
fn numeric_to<S: Num + Fmt>(v: &[S], to: DType, o: CastOpts) -> TensorData {
    if to == DType::String {
        return TensorData::String(v.iter().map(|&x| x.fmt_numpy()).collect());
    }
    let wide = std::mem::size_of::<S>() == 8 || (S::IS_FLOAT && std::mem::size_of::<S>() == 4);
    if wide {
        numeric_from(v, to, o)
    } else if S::IS_FLOAT {
        numeric_from(&v.iter().map(|&x| x.to_f64()).collect::<Vec<f64>>(), to, o)
    } else if S::IS_SIGNED {
        numeric_from(&v.iter().map(|&x| x.to_i64()).collect::<Vec<i64>>(), to, o)
    } else {
        numeric_from(&v.iter().map(|&x| x.to_u64()).collect::<Vec<u64>>(), to, o)
    }
}

fn numeric_from<S: Num + Fmt>(v: &[S], to: DType, o: CastOpts) -> TensorData {
    let sat = o.saturate;
    match to {
        DType::F32 => TensorData::F32(conv(v)),
        DType::F64 => TensorData::F64(conv(v)),
        DType::F16 => TensorData::F16(conv(v)),
        DType::BF16 => TensorData::BF16(conv(v)),
        DType::I8 => TensorData::I8(conv(v)),
        DType::I16 => TensorData::I16(conv(v)),
        DType::I32 => TensorData::I32(conv(v)),
        DType::I64 => TensorData::I64(conv(v)),
        DType::U8 => TensorData::U8(conv(v)),
        DType::U16 => TensorData::U16(conv(v)),
        DType::U32 => TensorData::U32(conv(v)),
        DType::U64 => TensorData::U64(conv(v)),
        DType::Bool => TensorData::Bool(v.iter().map(|&x| x.to_f64() != 0.0).collect()),
        DType::String => TensorData::String(v.iter().map(|&x| x.fmt_numpy()).collect()),
        DType::F8E4M3FN => TensorData::F8E4M3FN(v.iter().map(|&x| F8E4M3FN::from_f64(x.to_f64(), sat)).collect()),
        DType::F8E4M3FNUZ => {
            TensorData::F8E4M3FNUZ(v.iter().map(|&x| F8E4M3FNUZ::from_f64(x.to_f64(), sat)).collect())
        }
        DType::F8E5M2 => TensorData::F8E5M2(v.iter().map(|&x| F8E5M2::from_f64(x.to_f64(), sat)).collect()),
        DType::F8E5M2FNUZ => {
            TensorData::F8E5M2FNUZ(v.iter().map(|&x| F8E5M2FNUZ::from_f64(x.to_f64(), sat)).collect())
        }
        DType::F8E8M0 => TensorData::F8E8M0(v.iter().map(|&x| F8E8M0::from_f64(x.to_f64(), sat, o.round)).collect()),
        // float4e2m1 has no infinity or NaN: out-of-range values always saturate.
        DType::F4E2M1 => TensorData::F4E2M1(v.iter().map(|&x| F4E2M1::from_f64(x.to_f64(), true)).collect()),
        DType::I4 => TensorData::I4(v.iter().map(|&x| I4::wrapping(wrap_source(x))).collect()),
        DType::U4 => TensorData::U4(v.iter().map(|&x| U4::wrapping(wrap_source(x))).collect()),
        DType::I2 => TensorData::I2(v.iter().map(|&x| I2::wrapping(wrap_source(x))).collect()),
        DType::U2 => TensorData::U2(v.iter().map(|&x| U2::wrapping(wrap_source(x))).collect()),
    }
}

/// Text form of a number as numpy's `astype(str)` writes it.
trait Fmt: Copy {
    fn fmt_numpy(self) -> String;
}

macro_rules! fmt_int {
    ($($t:ty),*) => { $( impl Fmt for $t { fn fmt_numpy(self) -> String { self.to_string() } } )* };
}
fmt_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Fmt for f32 {
    fn fmt_numpy(self) -> String {
        numpy_float(self as f64, || format!("{self:e}"))
    }
}
impl Fmt for f64 {
    fn fmt_numpy(self) -> String {
        numpy_float(self, || format!("{self:e}"))
    }
}
impl Fmt for f16 {
    fn fmt_numpy(self) -> String {
        let x = self.to_f32();
        numpy_float(x as f64, || shortest_sci(x, |s| s.parse::<f32>().ok().map(f16::from_f32) == Some(self)))
    }
}
impl Fmt for bf16 {
    fn fmt_numpy(self) -> String {
        let x = self.to_f32();
        numpy_float(x as f64, || shortest_sci(x, |s| s.parse::<f32>().ok().map(bf16::from_f32) == Some(self)))
    }
}

/// Fewest significant digits (as `{:e}` text) that read back as the same narrow float.
fn shortest_sci(x: f32, round_trips: impl Fn(&str) -> bool) -> String {
    for p in 0..9 {
        let s = format!("{x:.p$e}");
        if round_trips(&s) {
            return s;
        }
    }
    format!("{x:e}")
}

/// Formats like numpy's `str()` of a float scalar: positional for 1e-4 <= |x| < 1e16 (decided on
/// the shortest digits, as numpy compares in the value's own precision; always
/// with a fractional part), scientific with a signed two-digit exponent otherwise. `sci` gives
/// the shortest round-trip digits in Rust's `{:e}` form.
fn numpy_float(x: f64, sci: impl Fn() -> String) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = sci();
    let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if neg { "-" } else { "" };
    if x == 0.0 || (-4..16).contains(&exp) {
        let body = if exp >= 0 {
            let e = exp as usize;
            let mut int_part: String = digits.chars().take(e + 1).collect();
            while int_part.len() < e + 1 {
                int_part.push('0');
            }
            let frac: String = digits.chars().skip(e + 1).collect();
            format!("{int_part}.{}", if frac.is_empty() { "0" } else { &frac })
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits.clone() };
        let es = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}

fn parse_f64(s: &str) -> OpResult<f64> {
    s.trim().parse::<f64>().map_err(|_| OpError(format!("Cast: cannot parse '{s}' as a number")))
}

fn parse_num<D: Num>(s: &str) -> OpResult<D> {
    let t = s.trim();
    if !D::IS_FLOAT {
        if let Ok(i) = t.parse::<i64>() {
            return Ok(D::from_i64(i));
        }
        if let Ok(u) = t.parse::<u64>() {
            return Ok(D::from_u64(u));
        }
    }
    Ok(D::from_f64(parse_f64(t)?))
}

fn parse_all<D: Num>(v: &[String]) -> OpResult<Vec<D>> {
    v.iter().map(|s| parse_num::<D>(s)).collect()
}

fn from_strings(v: &[String], to: DType, o: CastOpts) -> OpResult<TensorData> {
    Ok(match to {
        DType::F32 => TensorData::F32(
            v.iter()
                .map(|s| s.trim().parse::<f32>().map_err(|_| OpError(format!("Cast: cannot parse '{s}' as a number"))))
                .collect::<OpResult<_>>()?,
        ),
        DType::F64 => TensorData::F64(parse_all(v)?),
        DType::F16 => TensorData::F16(parse_all(v)?),
        DType::BF16 => TensorData::BF16(parse_all(v)?),
        DType::I8 => TensorData::I8(parse_all(v)?),
        DType::I16 => TensorData::I16(parse_all(v)?),
        DType::I32 => TensorData::I32(parse_all(v)?),
        DType::I64 => TensorData::I64(parse_all(v)?),
        DType::U8 => TensorData::U8(parse_all(v)?),
        DType::U16 => TensorData::U16(parse_all(v)?),
        DType::U32 => TensorData::U32(parse_all(v)?),
        DType::U64 => TensorData::U64(parse_all(v)?),
        DType::Bool => TensorData::Bool(
            v.iter()
                .map(|s| {
                    let t = s.trim();
                    match t.to_ascii_lowercase().as_str() {
                        "true" => Ok(true),
                        "false" | "" => Ok(false),
                        _ => Ok(parse_f64(t)? != 0.0),
                    }
                })
                .collect::<OpResult<_>>()?,
        ),
        DType::String => TensorData::String(v.to_vec()),
        low => numeric_to(&parse_all::<f64>(v)?, low, o),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(t: &Tensor, to: DType) -> OpResult<Tensor> {
        cast_with(t, to, CastOpts::default())
    }

    #[test]
    fn floats_format_like_numpy() {
        assert_eq!(1.0f32.fmt_numpy(), "1.0");
        assert_eq!(0.1f32.fmt_numpy(), "0.1");
        assert_eq!((-2.5f32).fmt_numpy(), "-2.5");
        assert_eq!(1e-5f32.fmt_numpy(), "1e-05");
        assert_eq!(1.5e-5f32.fmt_numpy(), "1.5e-05");
        assert_eq!(1e16f64.fmt_numpy(), "1e+16");
        assert_eq!(123456.0f32.fmt_numpy(), "123456.0");
        assert_eq!(0.0001f32.fmt_numpy(), "0.0001");
        assert_eq!(0.0f32.fmt_numpy(), "0.0");
        assert_eq!(f32::NAN.fmt_numpy(), "nan");
        assert_eq!(f32::NEG_INFINITY.fmt_numpy(), "-inf");
        assert_eq!(f16::from_f32(0.1).fmt_numpy(), "0.1");
        assert_eq!(3.14159265358979f64.fmt_numpy(), "3.14159265358979");
    }

    #[test]
    fn strings_parse() {
        let v: Vec<String> = ["0.5", "-INF", "NaN", "1e3"].iter().map(|s| s.to_string()).collect();
        let TensorData::F32(f) = from_strings(&v, DType::F32, CastOpts::default()).unwrap() else { panic!() };
        assert_eq!(f[0], 0.5);
        assert_eq!(f[1], f32::NEG_INFINITY);
        assert!(f[2].is_nan());
        assert_eq!(f[3], 1000.0);
        let TensorData::I64(i) = from_strings(&["-7".to_string()], DType::I64, CastOpts::default()).unwrap() else { panic!() };
        assert_eq!(i, vec![-7]);
        assert!(from_strings(&["abc".to_string()], DType::F64, CastOpts::default()).is_err());
    }

    #[test]
    fn numeric_casts_truncate() {
        let t = Tensor::from_vec(vec![3], vec![-1.7f32, 2.9, 300.0]).unwrap();
        assert_eq!(cast(&t, DType::I32).unwrap().as_slice::<i32>().unwrap(), &[-1, 2, 300]);
        assert_eq!(cast(&t, DType::Bool).unwrap().as_slice::<bool>().unwrap(), &[true, true, true]);
        let t = Tensor::from_vec(vec![2], vec![-1i64, 5]).unwrap();
        assert_eq!(cast(&t, DType::U8).unwrap().as_slice::<u8>().unwrap(), &[255, 5]);
    }
}
