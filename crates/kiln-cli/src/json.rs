//! JSON renderings of values and types.

use kiln_tensor::{Dim, Tensor, TensorData, Value, ValueType};
use serde_json::{json, Map};

/// A non-tensor value as JSON: sequences → arrays, maps → objects, optionals → inner or null,
/// tensors → nested arrays (a scalar tensor → a number/string/bool).
pub fn value_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Tensor(t) => tensor_to_json(t),
        Value::Sequence { items, .. } => serde_json::Value::Array(items.iter().map(value_to_json).collect()),
        Value::Map { entries, .. } => {
            let mut m = Map::new();
            for (k, v) in entries {
                m.insert(k.to_string(), value_to_json(v));
            }
            serde_json::Value::Object(m)
        }
        Value::Optional { value, .. } => value.as_deref().map(value_to_json).unwrap_or(serde_json::Value::Null),
    }
}

fn f64_json(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x).map(serde_json::Value::Number).unwrap_or_else(|| json!(x.to_string()))
}

fn tensor_to_json(t: &Tensor) -> serde_json::Value {
    let flat: Vec<serde_json::Value> = match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| f64_json(x as f64)).collect(),
        TensorData::F64(v) => v.iter().map(|&x| f64_json(x)).collect(),
        TensorData::F16(v) => v.iter().map(|x| f64_json(x.to_f64())).collect(),
        TensorData::BF16(v) => v.iter().map(|x| f64_json(x.to_f64())).collect(),
        TensorData::I8(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I16(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::U16(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::U32(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::U64(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::String(v) => v.iter().map(|x| json!(x)).collect(),
        // float8 / float4 values widened to f64; 4- and 2-bit integers to i64.
        d if d.dtype().is_low_float() => t.to_f64_vec().unwrap_or_default().into_iter().map(f64_json).collect(),
        _ => t.to_i64_vec().unwrap_or_default().into_iter().map(|x| json!(x)).collect(),
    };
    nest(&flat, t.shape())
}

fn nest(flat: &[serde_json::Value], shape: &[usize]) -> serde_json::Value {
    match shape.split_first() {
        None => flat.first().cloned().unwrap_or(serde_json::Value::Null),
        Some((&n, rest)) => {
            let inner: usize = rest.iter().product();
            serde_json::Value::Array(
                (0..n).map(|i| nest(flat.get(i * inner..(i + 1) * inner).unwrap_or(&[]), rest)).collect(),
            )
        }
    }
}

/// Dims as JSON: numbers for fixed dims, strings for symbols.
pub fn dims_json(ty: &ValueType) -> serde_json::Value {
    match ty.tensor_shape() {
        Some(s) => serde_json::Value::Array(
            s.0.iter()
                .map(|d| match d {
                    Dim::Fixed(n) => json!(n),
                    Dim::Sym(s) => json!(s),
                })
                .collect(),
        ),
        None => serde_json::Value::Null,
    }
}

/// dtype name of a type: numpy name for tensors, the type's text otherwise.
pub fn type_name(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { dtype, .. } => dtype.numpy_name().to_string(),
        other => other.to_string(),
    }
}
