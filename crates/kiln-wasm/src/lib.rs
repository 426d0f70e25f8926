//! wasm-bindgen bindings of the Kiln engine: load a model from bytes, describe its inputs and
//! outputs, run it on typed arrays. The `kiln-ml` npm package (js/) wraps this in an
//! onnxruntime-web-shaped API; nothing here is meant to be called by applications directly.
//!
//! Tensors cross the boundary as `{ type, data, dims }` with onnxruntime-web's type names and
//! typed arrays (`int64` as `BigInt64Array`, `float16` as the bits in a `Uint16Array`, `bool` as
//! `Uint8Array`, `string` as `string[]`; the 8/4/2-bit types one element per byte: the bits in a
//! `Uint8Array`, or the values in an `Int8Array` for `int4`/`int2`). Non-tensor values (sequences, maps, optionals) become
//! plain JS arrays, objects and `null`; every failure becomes a JS `Error` naming the problem.

use js_sys::{Array, BigInt64Array, BigUint64Array, Float32Array, Float64Array, Function, Int16Array, Int32Array, Int8Array, Object, Reflect, Uint16Array, Uint32Array, Uint8Array};
use std::mem::MaybeUninit;
use std::sync::Arc;

use kiln_engine::{Registry, Session, SessionOptions};
use kiln_tensor::{
    bf16, f16, Dim, DType, MapKey, Tensor, TensorData, Value, ValueType, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2,
    F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// ORT-style type name of a dtype ("float32", "int64", "bool", ...).
pub fn type_name(d: DType) -> &'static str {
    d.numpy_name()
}

/// Dtype for an ORT-style type name; also accepts ONNX spellings ("float", "double").
pub fn parse_type(name: &str) -> Option<DType> {
    Some(match name {
        "float32" | "float" => DType::F32,
        "float64" | "double" => DType::F64,
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "int8" => DType::I8,
        "int16" => DType::I16,
        "int32" => DType::I32,
        "int64" => DType::I64,
        "uint8" => DType::U8,
        "uint16" => DType::U16,
        "uint32" => DType::U32,
        "uint64" => DType::U64,
        "bool" => DType::Bool,
        "string" => DType::String,
        other => return DType::ALL.iter().copied().find(|d| d.numpy_name() == other),
    })
}

/// Name of the JS container a dtype's data must be given in.
pub fn container_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "Float32Array",
        DType::F64 => "Float64Array",
        DType::F16 | DType::BF16 | DType::U16 => "Uint16Array",
        DType::I8 => "Int8Array",
        DType::I16 => "Int16Array",
        DType::I32 => "Int32Array",
        DType::I64 => "BigInt64Array",
        DType::U8 | DType::Bool => "Uint8Array",
        DType::U32 => "Uint32Array",
        DType::U64 => "BigUint64Array",
        DType::String => "an array of strings",
        DType::I4 | DType::I2 => "Int8Array (one element per byte)",
        DType::F8E4M3FN
        | DType::F8E4M3FNUZ
        | DType::F8E5M2
        | DType::F8E5M2FNUZ
        | DType::F8E8M0
        | DType::F4E2M1
        | DType::U4
        | DType::U2 => "Uint8Array (one element's bits per byte)",
    }
}

fn err(msg: impl AsRef<str>) -> JsError {
    JsError::new(msg.as_ref())
}

/// A loaded model.
#[wasm_bindgen]
pub struct KilnSession {
    inner: Option<Session>,
}

#[wasm_bindgen]
impl KilnSession {
    /// Loads a model from the bytes of an .onnx file. The bytes are moved into wasm memory once;
    /// initializers are decoded from them in place and the buffer is freed once the session is built.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: Vec<u8>) -> Result<KilnSession, JsError> {
        let opts = SessionOptions::default().with_threads(1);
        // Loading allocates about the model's size again for the initializers, then their packed
        // copies: growing the wasm memory once for that (the freed block is reused by those
        // allocations) is much cheaper than growing it in many small steps.
        let mut reserve: Vec<u8> = Vec::new();
        let _ = reserve.try_reserve_exact(bytes.len().saturating_mul(2));
        drop(reserve);
        let model = kiln_onnx::decode_model_shared(Arc::new(bytes))
            .map_err(|e| err(kiln_engine::Error::from(e).to_string()))?;
        let session = Session::from_proto(&model, None, opts, &Registry::with_builtin())
            .map_err(|e| err(e.to_string()))?;
        Ok(KilnSession { inner: Some(session) })
    }

    /// Loads a model whose large initializers were moved out of the serialized bytes (by
    /// `splitWeights` in js/src/weights.js): `skeleton` is the model with those tensors marked as
    /// external data at `location`, at offsets into `weights` (the original model bytes). Each
    /// tensor is copied from `weights` straight into the tensor that needs it, so the whole
    /// model is never copied into wasm memory.
    #[wasm_bindgen(js_name = withWeights)]
    pub fn with_weights(skeleton: Vec<u8>, weights: Uint8Array, location: String) -> Result<KilnSession, JsError> {
        let opts = SessionOptions::default().with_threads(1);
        // The initializers and their packed copies take about twice the weights' size: grow the
        // memory once for them (see `new`).
        let mut reserve: Vec<u8> = Vec::new();
        let _ = reserve.try_reserve_exact((weights.length() as usize).saturating_mul(2));
        drop(reserve);
        let model = kiln_onnx::decode_model(&skeleton).map_err(|e| err(kiln_engine::Error::from(e).to_string()))?;
        drop(skeleton);
        let reader = move |offset: u64, dst: &mut [MaybeUninit<u8>]| -> Result<(), String> {
            let total = u64::from(weights.length());
            let length = dst.len() as u64;
            let end = offset.checked_add(length).filter(|&e| e <= total).ok_or_else(|| {
                format!("external data bytes {offset}..{} are outside the model's {total} bytes", offset.saturating_add(length))
            })?;
            // SAFETY: `dst` is writable for exactly the subarray's length (offset..end lies inside
            // `weights`, checked above, and both fit in u32 there).
            unsafe { weights.subarray(offset as u32, end as u32).raw_copy_to_ptr(dst.as_mut_ptr().cast::<u8>()) };
            Ok(())
        };
        // SAFETY: on `Ok` the reader has copied `dst.len()` bytes into `dst`.
        let _guard = unsafe { kiln_onnx::tensor::memory_external::install(location, Box::new(reader)) };
        let session = Session::from_proto(&model, None, opts, &Registry::with_builtin())
            .map_err(|e| err(e.to_string()))?;
        Ok(KilnSession { inner: Some(session) })
    }

    fn session(&self) -> Result<&Session, JsError> {
        self.inner.as_ref().ok_or_else(|| err("the session has been released"))
    }

    /// `[{ name, isTensor, type, shape }]` for the graph inputs; `shape` holds numbers for fixed
    /// dims and strings for symbolic ones, or is `undefined` when even the rank is unknown.
    #[wasm_bindgen(js_name = inputMetadata)]
    pub fn input_metadata(&self) -> Result<Array, JsError> {
        let s = self.session()?;
        Ok(s.inputs().iter().map(|io| io_meta(&io.name, &io.ty)).collect())
    }

    /// Same as `inputMetadata` for the graph outputs.
    #[wasm_bindgen(js_name = outputMetadata)]
    pub fn output_metadata(&self) -> Result<Array, JsError> {
        let s = self.session()?;
        Ok(s.outputs().iter().map(|io| io_meta(&io.name, &io.ty)).collect())
    }

    /// Runs the model. `feeds` is an array of `{ name, type, data, dims }`; the result is an array
    /// of `[name, value]` pairs in graph output order, where tensors are built by
    /// `make_tensor(type, data, dims)` and other values are plain JS values.
    pub fn run(&self, feeds: Array, make_tensor: &Function) -> Result<Array, JsError> {
        let s = self.session()?;
        let mut inputs = Vec::with_capacity(feeds.length() as usize);
        for feed in feeds.iter() {
            let name = get(&feed, "name")?
                .as_string()
                .ok_or_else(|| err("every feed needs a string 'name'"))?;
            let t = tensor_from_js(&feed).map_err(|m| err(format!("input '{name}': {m}")))?;
            inputs.push((name, Value::Tensor(t)));
        }
        let outputs = s.run(inputs).map_err(|e| err(e.to_string()))?;
        let out = Array::new();
        for (name, v) in outputs {
            let js = value_to_js(&v, make_tensor, true)?;
            out.push(&Array::of2(&JsValue::from_str(&name), &js));
        }
        Ok(out)
    }

    /// Frees the model's memory now; later calls fail with "the session has been released".
    pub fn release(&mut self) {
        self.inner = None;
    }

    /// Whether `release` has been called.
    #[wasm_bindgen(getter)]
    pub fn released(&self) -> bool {
        self.inner.is_none()
    }
}

fn get(obj: &JsValue, key: &str) -> Result<JsValue, JsError> {
    Reflect::get(obj, &JsValue::from_str(key)).map_err(|_| err(format!("cannot read '{key}' of a feed")))
}

fn io_meta(name: &str, ty: &ValueType) -> JsValue {
    let o = Object::new();
    let set = |k: &str, v: &JsValue| {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    };
    set("name", &JsValue::from_str(name));
    match ty {
        ValueType::Tensor { dtype, shape } => {
            set("isTensor", &JsValue::TRUE);
            set("type", &JsValue::from_str(type_name(*dtype)));
            if let Some(shape) = shape {
                let dims: Array = shape
                    .0
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => JsValue::from_f64(*n as f64),
                        Dim::Sym(s) => JsValue::from_str(s),
                    })
                    .collect();
                set("shape", &dims);
            }
        }
        other => {
            set("isTensor", &JsValue::FALSE);
            set("type", &JsValue::from_str(&value_type_name(other)));
        }
    }
    o.into()
}

/// A readable type such as `sequence<map<int64, float32>>`.
pub fn value_type_name(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { dtype, .. } => format!("tensor<{}>", type_name(*dtype)),
        ValueType::Sequence(e) => format!("sequence<{}>", value_type_name(e)),
        ValueType::Map(k, v) => format!("map<{}, {}>", type_name(*k), value_type_name(v)),
        ValueType::Optional(e) => format!("optional<{}>", value_type_name(e)),
    }
}

fn parse_dims(dims: &JsValue) -> Result<Vec<usize>, String> {
    if dims.is_undefined() || dims.is_null() {
        return Err("'dims' is missing".into());
    }
    let arr: &Array = dims.dyn_ref().ok_or("'dims' must be an array of non-negative integers")?;
    let mut out = Vec::with_capacity(arr.length() as usize);
    for d in arr.iter() {
        let n = if let Some(f) = d.as_f64() {
            f
        } else if d.is_bigint() {
            let s: String = js_sys::BigInt::from(d.clone()).to_string(10).map(String::from).unwrap_or_default();
            s.parse::<f64>().map_err(|_| "'dims' must be an array of non-negative integers".to_string())?
        } else {
            return Err("'dims' must be an array of non-negative integers".into());
        };
        if !(n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= u32::MAX as f64) {
            return Err(format!("'dims' must be non-negative integers, got {n}"));
        }
        out.push(n as usize);
    }
    Ok(out)
}

fn tensor_from_js(feed: &JsValue) -> Result<Tensor, String> {
    let ty = Reflect::get(feed, &JsValue::from_str("type")).map_err(|_| "cannot read 'type'".to_string())?;
    let ty = ty.as_string().ok_or("'type' must be a string such as \"float32\"")?;
    let dtype = parse_type(&ty).ok_or_else(|| format!("unknown tensor type '{ty}'"))?;
    let dims = Reflect::get(feed, &JsValue::from_str("dims")).map_err(|_| "cannot read 'dims'".to_string())?;
    let dims = parse_dims(&dims)?;
    let data = Reflect::get(feed, &JsValue::from_str("data")).map_err(|_| "cannot read 'data'".to_string())?;
    let wrong = || format!("{ty} data must be a {}", container_name(dtype));
    macro_rules! typed {
        ($arr:ty, $var:ident) => {{
            let a: &$arr = data.dyn_ref().ok_or_else(wrong)?;
            TensorData::$var(a.to_vec())
        }};
    }
    macro_rules! bits {
        ($ty:ident, $var:ident) => {{
            let a: &Uint8Array = data.dyn_ref().ok_or_else(wrong)?;
            TensorData::$var(a.to_vec().into_iter().map($ty).collect())
        }};
    }
    macro_rules! small_int {
        ($arr:ty, $var:ident, $min:expr, $max:expr, $make:expr) => {{
            let a: &$arr = data.dyn_ref().ok_or_else(wrong)?;
            let v = a.to_vec();
            if let Some((i, x)) = v.iter().enumerate().find(|(_, &x)| (x as i64) < $min || (x as i64) > $max) {
                return Err(format!("{ty} data item {i} is {x}, outside {}..={}", $min, $max));
            }
            TensorData::$var(v.into_iter().map($make).collect())
        }};
    }
    let td = match dtype {
        DType::F32 => typed!(Float32Array, F32),
        DType::F64 => typed!(Float64Array, F64),
        DType::I8 => typed!(Int8Array, I8),
        DType::I16 => typed!(Int16Array, I16),
        DType::I32 => typed!(Int32Array, I32),
        DType::I64 => typed!(BigInt64Array, I64),
        DType::U8 => typed!(Uint8Array, U8),
        DType::U16 => typed!(Uint16Array, U16),
        DType::U32 => typed!(Uint32Array, U32),
        DType::U64 => typed!(BigUint64Array, U64),
        DType::F16 => {
            let a: &Uint16Array = data.dyn_ref().ok_or_else(wrong)?;
            TensorData::F16(a.to_vec().into_iter().map(f16::from_bits).collect())
        }
        DType::BF16 => {
            let a: &Uint16Array = data.dyn_ref().ok_or_else(wrong)?;
            TensorData::BF16(a.to_vec().into_iter().map(bf16::from_bits).collect())
        }
        DType::Bool => {
            let a: &Uint8Array = data.dyn_ref().ok_or_else(wrong)?;
            TensorData::Bool(a.to_vec().into_iter().map(|b| b != 0).collect())
        }
        DType::F8E4M3FN => bits!(F8E4M3FN, F8E4M3FN),
        DType::F8E4M3FNUZ => bits!(F8E4M3FNUZ, F8E4M3FNUZ),
        DType::F8E5M2 => bits!(F8E5M2, F8E5M2),
        DType::F8E5M2FNUZ => bits!(F8E5M2FNUZ, F8E5M2FNUZ),
        DType::F8E8M0 => bits!(F8E8M0, F8E8M0),
        DType::F4E2M1 => small_int!(Uint8Array, F4E2M1, 0, 15, |b: u8| F4E2M1::from_bits(b)),
        DType::U4 => small_int!(Uint8Array, U4, U4::MIN, U4::MAX, |b: u8| U4(b)),
        DType::U2 => small_int!(Uint8Array, U2, U2::MIN, U2::MAX, |b: u8| U2(b)),
        DType::I4 => small_int!(Int8Array, I4, I4::MIN, I4::MAX, |b: i8| I4(b)),
        DType::I2 => small_int!(Int8Array, I2, I2::MIN, I2::MAX, |b: i8| I2(b)),
        DType::String => {
            let a: &Array = data.dyn_ref().ok_or_else(wrong)?;
            let mut v = Vec::with_capacity(a.length() as usize);
            for (i, s) in a.iter().enumerate() {
                v.push(s.as_string().ok_or_else(|| format!("string data item {i} is not a string"))?);
            }
            TensorData::String(v)
        }
    };
    Tensor::new(dims, td).map_err(|e| e.to_string())
}

fn tensor_data_to_js(t: &Tensor) -> JsValue {
    match t.data() {
        TensorData::F32(v) => Float32Array::from(&v[..]).into(),
        TensorData::F64(v) => Float64Array::from(&v[..]).into(),
        TensorData::F16(v) => {
            let bits: Vec<u16> = v.iter().map(|x| x.to_bits()).collect();
            Uint16Array::from(&bits[..]).into()
        }
        TensorData::BF16(v) => {
            let bits: Vec<u16> = v.iter().map(|x| x.to_bits()).collect();
            Uint16Array::from(&bits[..]).into()
        }
        TensorData::I8(v) => Int8Array::from(&v[..]).into(),
        TensorData::I16(v) => Int16Array::from(&v[..]).into(),
        TensorData::I32(v) => Int32Array::from(&v[..]).into(),
        TensorData::I64(v) => BigInt64Array::from(&v[..]).into(),
        TensorData::U8(v) => Uint8Array::from(&v[..]).into(),
        TensorData::U16(v) => Uint16Array::from(&v[..]).into(),
        TensorData::U32(v) => Uint32Array::from(&v[..]).into(),
        TensorData::U64(v) => BigUint64Array::from(&v[..]).into(),
        TensorData::Bool(v) => {
            let bytes: Vec<u8> = v.iter().map(|&b| b as u8).collect();
            Uint8Array::from(&bytes[..]).into()
        }
        TensorData::String(v) => v.iter().map(|s| JsValue::from_str(s)).collect::<Array>().into(),
        TensorData::F8E4M3FN(v) => u8s(v.iter().map(|x| x.0)),
        TensorData::F8E4M3FNUZ(v) => u8s(v.iter().map(|x| x.0)),
        TensorData::F8E5M2(v) => u8s(v.iter().map(|x| x.0)),
        TensorData::F8E5M2FNUZ(v) => u8s(v.iter().map(|x| x.0)),
        TensorData::F8E8M0(v) => u8s(v.iter().map(|x| x.0)),
        TensorData::F4E2M1(v) => u8s(v.iter().map(|x| x.to_bits())),
        TensorData::U4(v) => u8s(v.iter().map(|x| x.0)),
        TensorData::U2(v) => u8s(v.iter().map(|x| x.0)),
        TensorData::I4(v) => {
            let b: Vec<i8> = v.iter().map(|x| x.0).collect();
            Int8Array::from(&b[..]).into()
        }
        TensorData::I2(v) => {
            let b: Vec<i8> = v.iter().map(|x| x.0).collect();
            Int8Array::from(&b[..]).into()
        }
    }
}

fn u8s(it: impl Iterator<Item = u8>) -> JsValue {
    let b: Vec<u8> = it.collect();
    Uint8Array::from(&b[..]).into()
}

/// A scalar tensor as a plain JS value (numbers for every numeric type, as in JSON).
fn scalar_to_js(t: &Tensor) -> JsValue {
    let n = |x: f64| JsValue::from_f64(x);
    match t.data() {
        TensorData::F32(v) => v.first().map_or(JsValue::NULL, |&x| n(x as f64)),
        TensorData::F64(v) => v.first().map_or(JsValue::NULL, |&x| n(x)),
        TensorData::F16(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_f64())),
        TensorData::BF16(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_f64())),
        TensorData::I8(v) => v.first().map_or(JsValue::NULL, |&x| n(x as f64)),
        TensorData::I16(v) => v.first().map_or(JsValue::NULL, |&x| n(x as f64)),
        TensorData::I32(v) => v.first().map_or(JsValue::NULL, |&x| n(x as f64)),
        TensorData::I64(v) => v.first().map_or(JsValue::NULL, |&x| n(x as f64)),
        TensorData::U8(v) => v.first().map_or(JsValue::NULL, |&x| n(x as f64)),
        TensorData::U16(v) => v.first().map_or(JsValue::NULL, |&x| n(x as f64)),
        TensorData::U32(v) => v.first().map_or(JsValue::NULL, |&x| n(x as f64)),
        TensorData::U64(v) => v.first().map_or(JsValue::NULL, |&x| n(x as f64)),
        TensorData::Bool(v) => v.first().map_or(JsValue::NULL, |&x| JsValue::from_bool(x)),
        TensorData::String(v) => v.first().map_or(JsValue::NULL, |x| JsValue::from_str(x)),
        TensorData::F8E4M3FN(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_f64())),
        TensorData::F8E4M3FNUZ(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_f64())),
        TensorData::F8E5M2(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_f64())),
        TensorData::F8E5M2FNUZ(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_f64())),
        TensorData::F4E2M1(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_f64())),
        TensorData::F8E8M0(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_f32() as f64)),
        TensorData::U4(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_i64() as f64)),
        TensorData::I4(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_i64() as f64)),
        TensorData::U2(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_i64() as f64)),
        TensorData::I2(v) => v.first().map_or(JsValue::NULL, |x| n(x.to_i64() as f64)),
    }
}

/// Converts an output value: tensors through `make_tensor` (scalars nested in sequences or maps
/// as plain values), sequences to arrays, maps to objects, empty optionals to `null`.
fn value_to_js(v: &Value, make_tensor: &Function, top: bool) -> Result<JsValue, JsError> {
    match v {
        Value::Tensor(t) => {
            if !top && t.rank() == 0 {
                return Ok(scalar_to_js(t));
            }
            let dims: Array = t.shape().iter().map(|&d| JsValue::from_f64(d as f64)).collect();
            make_tensor
                .call3(&JsValue::NULL, &JsValue::from_str(type_name(t.dtype())), &tensor_data_to_js(t), &dims)
                .map_err(|e| err(format!("cannot build an output tensor: {}", js_message(&e))))
        }
        Value::Sequence { items, .. } => {
            let arr = Array::new();
            for item in items {
                arr.push(&value_to_js(item, make_tensor, false)?);
            }
            Ok(arr.into())
        }
        Value::Map { entries, .. } => {
            let o = Object::new();
            for (k, val) in entries {
                let key = match k {
                    MapKey::Int(i) => JsValue::from_str(&i.to_string()),
                    MapKey::Str(s) => JsValue::from_str(s),
                };
                let _ = Reflect::set(&o, &key, &value_to_js(val, make_tensor, false)?);
            }
            Ok(o.into())
        }
        Value::Optional { value, .. } => match value {
            Some(inner) => value_to_js(inner, make_tensor, top),
            None => Ok(JsValue::NULL),
        },
    }
}

fn js_message(e: &JsValue) -> String {
    if let Some(e) = e.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    e.as_string().unwrap_or_else(|| "unknown error".into())
}

/// The engine's version (the crate version).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for d in DType::ALL {
            assert_eq!(parse_type(type_name(d)), Some(d));
        }
        assert_eq!(parse_type("float"), Some(DType::F32));
        assert_eq!(parse_type("complex64"), None);
    }

    #[test]
    fn readable_value_types() {
        let t = ValueType::Sequence(Box::new(ValueType::Map(
            DType::I64,
            Box::new(ValueType::tensor(DType::F32, None)),
        )));
        assert_eq!(value_type_name(&t), "sequence<map<int64, tensor<float32>>>");
    }
}
