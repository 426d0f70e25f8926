//! Open Inference Protocol datatypes (`FP32`, `BYTES`, ...) and their conversions to and from Kiln
//! tensors: JSON `data` (flat or nested), raw little-endian bytes (binary extension and gRPC raw
//! contents), and the length-prefixed BYTES layout.

use kiln_tensor::{bf16, f16, DType, Tensor, TensorData};
use serde_json::Value as Json;

use crate::error::ServeError;

/// V2 name of a Kiln dtype.
pub fn v2_name(d: DType) -> &'static str {
    match d {
        DType::Bool => "BOOL",
        DType::U8 => "UINT8",
        DType::U16 => "UINT16",
        DType::U32 => "UINT32",
        DType::U64 => "UINT64",
        DType::I8 => "INT8",
        DType::I16 => "INT16",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::F16 => "FP16",
        DType::BF16 => "BF16",
        DType::F32 => "FP32",
        DType::F64 => "FP64",
        DType::String => "BYTES",
        other => other.name(),
    }
}

/// Whether the V2 protocol has a datatype for this dtype (it has none for 8/4/2-bit floats and ints).
pub fn v2_supported(d: DType) -> bool {
    parse_v2(v2_name(d)).is_ok()
}

/// Kiln dtype of a V2 datatype name.
pub fn parse_v2(s: &str) -> Result<DType, ServeError> {
    Ok(match s {
        "BOOL" => DType::Bool,
        "UINT8" => DType::U8,
        "UINT16" => DType::U16,
        "UINT32" => DType::U32,
        "UINT64" => DType::U64,
        "INT8" => DType::I8,
        "INT16" => DType::I16,
        "INT32" => DType::I32,
        "INT64" => DType::I64,
        "FP16" => DType::F16,
        "BF16" => DType::BF16,
        "FP32" => DType::F32,
        "FP64" => DType::F64,
        "BYTES" => DType::String,
        other => {
            return Err(ServeError::bad(format!(
                "unknown datatype '{other}' (expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES)"
            )))
        }
    })
}

/// Converts a V2 shape (signed) to a concrete one, rejecting negative dims.
pub fn parse_shape(name: &str, shape: &[i64]) -> Result<Vec<usize>, ServeError> {
    shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| ServeError::bad(format!("input '{name}': shape {shape:?} has a negative dimension")))
        })
        .collect()
}

/// Number of elements of a shape, with overflow and size guards.
pub fn numel(name: &str, shape: &[usize]) -> Result<usize, ServeError> {
    kiln_tensor::checked_numel(shape).map_err(|e| ServeError::bad(format!("input '{name}': {e}")))
}

/// One element of JSON `data`, read straight from the request text (no JSON tree).
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    I(i64),
    U(u64),
    F(f64),
    B(bool),
    S(String),
    /// `null` or an object: never a valid element.
    Other(&'static str),
}

impl Scalar {
    fn as_i64(&self) -> Option<i64> {
        match *self {
            Scalar::I(v) => Some(v),
            Scalar::U(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Scalar::I(v) => u64::try_from(v).ok(),
            Scalar::U(v) => Some(v),
            _ => None,
        }
    }
    fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::I(v) => Some(v as f64),
            Scalar::U(v) => Some(v as f64),
            Scalar::F(v) => Some(v),
            _ => None,
        }
    }
    fn describe(&self) -> String {
        match self {
            Scalar::I(v) => v.to_string(),
            Scalar::U(v) => v.to_string(),
            Scalar::F(v) => v.to_string(),
            Scalar::B(v) => v.to_string(),
            Scalar::S(v) => format!("{:?}", truncate(v)),
            Scalar::Other(k) => (*k).to_string(),
        }
    }
}

/// JSON `data` (flat or nested arrays, row-major) flattened while it is parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlatData(pub Vec<Scalar>);

const MAX_DEPTH: usize = 64;

struct FlatVisitor<'a> {
    out: &'a mut Vec<Scalar>,
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for FlatVisitor<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FlatVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of tensor elements")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.out.push(Scalar::B(v));
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.out.push(Scalar::I(v));
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.out.push(Scalar::U(v));
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.out.push(Scalar::F(v));
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.out.push(Scalar::S(v.to_string()));
        Ok(())
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        self.out.push(Scalar::S(v));
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.out.push(Scalar::Other("null"));
        Ok(())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        self.out.push(Scalar::Other("an object"));
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(serde::de::Error::custom("data is nested too deeply"));
        }
        if let Some(n) = seq.size_hint() {
            self.out.reserve(n.min(1 << 16));
        }
        while seq.next_element_seed(FlatVisitor { out: &mut *self.out, depth: self.depth + 1 })?.is_some() {}
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for FlatData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FlatData, D::Error> {
        let mut out = Vec::new();
        d.deserialize_any(FlatVisitor { out: &mut out, depth: 0 })?;
        Ok(FlatData(out))
    }
}

impl FlatData {
    /// Flattens an already-parsed JSON value (for callers that hold a `serde_json::Value`).
    pub fn from_json(v: &Json) -> Result<FlatData, String> {
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())
    }
}

/// Builds a tensor from JSON `data` (flattened in row-major order).
pub fn tensor_from_json(name: &str, dtype: DType, shape: Vec<usize>, data: &FlatData) -> Result<Tensor, ServeError> {
    let n = numel(name, &shape)?;
    let flat = &data.0;
    if flat.len() != n {
        return Err(ServeError::bad(format!(
            "input '{name}': shape {shape:?} has {n} elements but 'data' has {}",
            flat.len()
        )));
    }
    let bad = |i: usize| {
        ServeError::bad(format!(
            "input '{name}': element {i} ({}) is not a valid {} value",
            truncate(&flat[i].describe()),
            v2_name(dtype)
        ))
    };
    macro_rules! ints {
        ($t:ty, $var:ident) => {{
            let mut v: Vec<$t> = Vec::with_capacity(n);
            for (i, x) in flat.iter().enumerate() {
                let y = if let Some(a) = x.as_i64() {
                    <$t>::try_from(a).ok()
                } else if let Some(a) = x.as_u64() {
                    <$t>::try_from(a).ok()
                } else {
                    None
                };
                v.push(y.ok_or_else(|| bad(i))?);
            }
            TensorData::$var(v)
        }};
    }
    macro_rules! floats {
        ($conv:expr, $var:ident) => {{
            let mut v = Vec::with_capacity(n);
            for (i, x) in flat.iter().enumerate() {
                v.push($conv(x.as_f64().ok_or_else(|| bad(i))?));
            }
            TensorData::$var(v)
        }};
    }
    let data = match dtype {
        DType::F32 => floats!(|x: f64| x as f32, F32),
        DType::F64 => floats!(|x: f64| x, F64),
        DType::F16 => floats!(f16::from_f64, F16),
        DType::BF16 => floats!(bf16::from_f64, BF16),
        DType::I8 => ints!(i8, I8),
        DType::I16 => ints!(i16, I16),
        DType::I32 => ints!(i32, I32),
        DType::I64 => ints!(i64, I64),
        DType::U8 => ints!(u8, U8),
        DType::U16 => ints!(u16, U16),
        DType::U32 => ints!(u32, U32),
        DType::U64 => ints!(u64, U64),
        DType::Bool => {
            let mut v = Vec::with_capacity(n);
            for (i, x) in flat.iter().enumerate() {
                v.push(match x {
                    Scalar::B(b) => *b,
                    _ => return Err(bad(i)),
                });
            }
            TensorData::Bool(v)
        }
        DType::String => {
            let mut v = Vec::with_capacity(n);
            for (i, x) in flat.iter().enumerate() {
                v.push(match x {
                    Scalar::S(s) => s.clone(),
                    _ => return Err(bad(i)),
                });
            }
            TensorData::String(v)
        }
        other => return Err(ServeError::bad(format!("input '{name}': datatype {} is not supported", v2_name(other)))),
    };
    Tensor::new(shape, data).map_err(|e| ServeError::bad(format!("input '{name}': {e}")))
}

/// Appends `s` as a JSON string literal.
pub fn write_json_str(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn truncate(s: &str) -> String {
    if s.len() > 40 {
        let mut end = 40;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

/// Builds a tensor from raw little-endian bytes (BYTES: 4-byte little-endian length + bytes per element).
pub fn tensor_from_raw(name: &str, dtype: DType, shape: Vec<usize>, raw: &[u8]) -> Result<Tensor, ServeError> {
    let n = numel(name, &shape)?;
    if dtype == DType::String {
        let mut v = Vec::with_capacity(n.min(1 << 20));
        let mut pos = 0usize;
        while pos < raw.len() {
            let len_bytes = raw
                .get(pos..pos + 4)
                .ok_or_else(|| ServeError::bad(format!("input '{name}': truncated BYTES element length at byte {pos}")))?;
            let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
            pos += 4;
            let bytes = raw.get(pos..pos.saturating_add(len)).ok_or_else(|| {
                ServeError::bad(format!("input '{name}': BYTES element {} claims {len} bytes but the data ends first", v.len()))
            })?;
            pos += len;
            let s = std::str::from_utf8(bytes).map_err(|_| {
                ServeError::bad(format!("input '{name}': BYTES element {} is not valid UTF-8 (the model expects strings)", v.len()))
            })?;
            v.push(s.to_string());
        }
        if v.len() != n {
            return Err(ServeError::bad(format!(
                "input '{name}': shape {shape:?} has {n} elements but the binary data has {}",
                v.len()
            )));
        }
        return Tensor::new(shape, TensorData::String(v)).map_err(|e| ServeError::bad(format!("input '{name}': {e}")));
    }
    let size = dtype.size();
    let expect = n.checked_mul(size).ok_or_else(|| ServeError::bad(format!("input '{name}': shape too large")))?;
    if raw.len() != expect {
        return Err(ServeError::bad(format!(
            "input '{name}': shape {shape:?} of {} needs {expect} bytes but {} were given",
            v2_name(dtype),
            raw.len()
        )));
    }
    macro_rules! le {
        ($t:ty, $var:ident, $w:expr) => {{
            TensorData::$var(raw.chunks_exact($w).map(|c| {
                let mut a = [0u8; $w];
                a.copy_from_slice(c);
                <$t>::from_le_bytes(a)
            }).collect())
        }};
    }
    let data = match dtype {
        DType::F32 => le!(f32, F32, 4),
        DType::F64 => le!(f64, F64, 8),
        DType::I8 => le!(i8, I8, 1),
        DType::I16 => le!(i16, I16, 2),
        DType::I32 => le!(i32, I32, 4),
        DType::I64 => le!(i64, I64, 8),
        DType::U8 => TensorData::U8(raw.to_vec()),
        DType::U16 => le!(u16, U16, 2),
        DType::U32 => le!(u32, U32, 4),
        DType::U64 => le!(u64, U64, 8),
        DType::F16 => TensorData::F16(raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect()),
        DType::BF16 => TensorData::BF16(raw.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]])).collect()),
        DType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DType::String => TensorData::String(Vec::new()),
        other => return Err(ServeError::bad(format!("input '{name}': datatype {} is not supported", v2_name(other)))),
    };
    Tensor::new(shape, data).map_err(|e| ServeError::bad(format!("input '{name}': {e}")))
}

/// Raw little-endian bytes of a tensor (BYTES: length-prefixed elements).
pub fn tensor_to_raw(t: &Tensor, out: &mut Vec<u8>) {
    match t.data() {
        TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::BF16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I8(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bool(v) => v.iter().for_each(|&x| out.push(x as u8)),
        TensorData::String(v) => v.iter().for_each(|s| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }),
        _ => {}
    }
}

/// Appends a tensor's elements as a flat JSON array.
pub fn write_json_data(t: &Tensor, out: &mut String) {
    use std::fmt::Write;
    out.push('[');
    macro_rules! nums {
        ($v:expr, $fmt:expr) => {{
            for (i, x) in $v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                $fmt(x, &mut *out);
            }
        }};
    }
    fn float(x: f64, out: &mut String) {
        if x.is_finite() {
            let _ = write!(out, "{x}");
        } else {
            out.push_str("null");
        }
    }
    match t.data() {
        TensorData::F32(v) => nums!(v, |x: &f32, o: &mut String| if x.is_finite() { let _ = write!(o, "{x}"); } else { o.push_str("null") }),
        TensorData::F64(v) => nums!(v, |x: &f64, o: &mut String| float(*x, o)),
        TensorData::F16(v) => nums!(v, |x: &f16, o: &mut String| float(x.to_f64(), o)),
        TensorData::BF16(v) => nums!(v, |x: &bf16, o: &mut String| float(x.to_f64(), o)),
        TensorData::I8(v) => nums!(v, |x: &i8, o: &mut String| { let _ = write!(o, "{x}"); }),
        TensorData::I16(v) => nums!(v, |x: &i16, o: &mut String| { let _ = write!(o, "{x}"); }),
        TensorData::I32(v) => nums!(v, |x: &i32, o: &mut String| { let _ = write!(o, "{x}"); }),
        TensorData::I64(v) => nums!(v, |x: &i64, o: &mut String| { let _ = write!(o, "{x}"); }),
        TensorData::U8(v) => nums!(v, |x: &u8, o: &mut String| { let _ = write!(o, "{x}"); }),
        TensorData::U16(v) => nums!(v, |x: &u16, o: &mut String| { let _ = write!(o, "{x}"); }),
        TensorData::U32(v) => nums!(v, |x: &u32, o: &mut String| { let _ = write!(o, "{x}"); }),
        TensorData::U64(v) => nums!(v, |x: &u64, o: &mut String| { let _ = write!(o, "{x}"); }),
        TensorData::Bool(v) => nums!(v, |x: &bool, o: &mut String| o.push_str(if *x { "true" } else { "false" })),
        TensorData::String(v) => nums!(v, |x: &String, o: &mut String| write_json_str(x, o)),
        _ => {}
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    fn flat(text: &str) -> FlatData {
        serde_json::from_str(text).unwrap()
    }
    #[test]
    fn nested_and_flat_json_agree() {
        let a = tensor_from_json("x", DType::F32, vec![2, 2], &flat("[[1, 2], [3, 4.5]]")).unwrap();
        let b = tensor_from_json("x", DType::F32, vec![2, 2], &flat("[1, 2, 3, 4.5]")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.5]);
    }
    #[test]
    fn int_range_is_checked() {
        assert!(tensor_from_json("x", DType::U8, vec![1], &flat("[256]")).is_err());
        assert!(tensor_from_json("x", DType::I8, vec![1], &flat("[-128]")).is_ok());
        assert!(tensor_from_json("x", DType::I32, vec![1], &flat("[1.5]")).is_err());
        assert!(tensor_from_json("x", DType::F32, vec![1], &flat("[null]")).is_err());
        assert!(tensor_from_json("x", DType::F32, vec![1], &flat("[{\"a\": 1}]")).is_err());
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(serde_json::from_str::<FlatData>(&deep).is_err());
    }
    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        write_json_str("a\"b\\c\nd\u{1}é", &mut out);
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), "a\"b\\c\nd\u{1}é");
    }
    #[test]
    fn bytes_roundtrip_and_utf8() {
        let t = Tensor::new(vec![2], TensorData::String(vec!["ab".into(), "".into()])).unwrap();
        let mut raw = Vec::new();
        tensor_to_raw(&t, &mut raw);
        assert_eq!(raw, vec![2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
        assert_eq!(tensor_from_raw("x", DType::String, vec![2], &raw).unwrap(), t);
        assert!(tensor_from_raw("x", DType::String, vec![1], &[1, 0, 0, 0, 0xff]).is_err());
    }
}
