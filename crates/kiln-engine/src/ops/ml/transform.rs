//! Feature transforms and encoders: Scaler, Normalizer, Binarizer, Imputer, OneHotEncoder,
//! LabelEncoder, CategoryMapper, DictVectorizer, FeatureVectorizer, ArrayFeatureExtractor, ZipMap.

use std::collections::HashMap;

use kiln_tensor::{DType, Dim, MapKey, Shape, Tensor, TensorData, Value, ValueType};

use super::to_f32;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

fn same_shape_f32(inputs: &[Option<&ValueType>]) -> Option<Vec<ValueType>> {
    let shape = inputs.first().copied().flatten()?.tensor_shape()?.clone();
    Some(vec![ValueType::tensor(DType::F32, Some(shape))])
}

fn last_dim(x: &Tensor) -> usize {
    x.shape().last().copied().unwrap_or(1)
}

// ---------------------------------------------------------------------------------------------
// Scaler

struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

pub(crate) fn build_scaler(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let offset = n.attr_floats("offset")?.unwrap_or_else(|| vec![0.0]);
    let scale = n.attr_floats("scale")?.unwrap_or_else(|| vec![1.0]);
    ensure!(!offset.is_empty() && !scale.is_empty(), "offset and scale must not be empty");
    Ok(Box::new(Scaler { offset, scale }))
}

impl Op for Scaler {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let v = to_f32(x)?;
        let c = last_dim(x).max(1);
        for (name, p) in [("offset", &self.offset), ("scale", &self.scale)] {
            ensure!(p.len() == 1 || p.len() == c, "{name} has {} values, expected 1 or {c}", p.len());
        }
        let out: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let j = i % c;
                let o = if self.offset.len() == 1 { self.offset[0] } else { self.offset[j] };
                let s = if self.scale.len() == 1 { self.scale[0] } else { self.scale[j] };
                (a - o) * s
            })
            .collect();
        Ok(vec![Tensor::from_vec(x.shape().to_vec(), out)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        same_shape_f32(inputs)
    }
}

// ---------------------------------------------------------------------------------------------
// Normalizer

#[derive(Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

struct Normalizer(Norm);

pub(crate) fn build_normalizer(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let norm = match n.attr_string_or("norm", "MAX")?.as_str() {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => bail!("unknown norm '{other}' (expected MAX, L1 or L2)"),
    };
    Ok(Box::new(Normalizer(norm)))
}

impl Op for Normalizer {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        ensure!(x.rank() >= 1 && x.rank() <= 2, "Normalizer input must be 1-D or 2-D, got rank {}", x.rank());
        let v = to_f32(x)?;
        let c = last_dim(x);
        let mut out = vec![0f32; v.len()];
        if c > 0 {
            for (row, o) in v.chunks(c).zip(out.chunks_mut(c)) {
                match self.0 {
                    Norm::Max => {
                        let m = row.iter().fold(f32::MIN, |a, &b| a.max(b));
                        for (d, &s) in o.iter_mut().zip(row) {
                            *d = if m != 0.0 { s / m } else { s };
                        }
                    }
                    Norm::L1 => {
                        let sum: f32 = row.iter().map(|a| a.abs()).sum();
                        for (d, &s) in o.iter_mut().zip(row) {
                            *d = if sum != 0.0 { s / sum } else { s };
                        }
                    }
                    Norm::L2 => {
                        let sum: f32 = row.iter().map(|a| a * a).sum();
                        for (d, &s) in o.iter_mut().zip(row) {
                            *d = if sum != 0.0 {
                                let r = (s * s / sum).sqrt();
                                if s < 0.0 {
                                    -r
                                } else {
                                    r
                                }
                            } else {
                                s
                            };
                        }
                    }
                }
            }
        }
        Ok(vec![Tensor::from_vec(x.shape().to_vec(), out)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        same_shape_f32(inputs)
    }
}

// ---------------------------------------------------------------------------------------------
// Binarizer

struct Binarizer(f32);

pub(crate) fn build_binarizer(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(Binarizer(n.attr_float_or("threshold", 0.0)?)))
}

impl Op for Binarizer {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let t = self.0;
        let data = match x.data() {
            TensorData::F32(v) => TensorData::F32(v.iter().map(|&a| if a > t { 1.0 } else { 0.0 }).collect()),
            TensorData::F64(v) => TensorData::F64(v.iter().map(|&a| if a > t as f64 { 1.0 } else { 0.0 }).collect()),
            TensorData::I64(v) => TensorData::I64(v.iter().map(|&a| (a as f32 > t) as i64).collect()),
            TensorData::I32(v) => TensorData::I32(v.iter().map(|&a| (a as f32 > t) as i32).collect()),
            other => bail!("Binarizer does not support {} input", other.dtype()),
        };
        Ok(vec![Tensor::new(x.shape().to_vec(), data)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![inputs.first().copied().flatten()?.clone()])
    }
}

// ---------------------------------------------------------------------------------------------
// Imputer

struct Imputer {
    floats: Vec<f32>,
    ints: Vec<i64>,
    replaced_f: f32,
    replaced_i: i64,
}

pub(crate) fn build_imputer(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let floats = n.attr_floats("imputed_value_floats")?.unwrap_or_default();
    let ints = n.attr_ints("imputed_value_int64s")?.unwrap_or_default();
    ensure!(!floats.is_empty() || !ints.is_empty(), "one of imputed_value_floats or imputed_value_int64s is required");
    Ok(Box::new(Imputer {
        floats,
        ints,
        replaced_f: n.attr_float_or("replaced_value_float", 0.0)?,
        replaced_i: n.attr_int_or("replaced_value_int64", 0)?,
    }))
}

impl Op for Imputer {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let c = last_dim(x).max(1);
        let pick = |len: usize, i: usize| -> OpResult<usize> {
            ensure!(len == 1 || len == c, "imputed values have {len} entries, expected 1 or {c}");
            Ok(if len == 1 { 0 } else { i % c })
        };
        let out = match x.data() {
            TensorData::F32(_) | TensorData::F64(_) => {
                ensure!(!self.floats.is_empty(), "imputed_value_floats is required for float input");
                let v = to_f32(x)?;
                let r = self.replaced_f;
                let mut o = Vec::with_capacity(v.len());
                for (i, &a) in v.iter().enumerate() {
                    let hit = a == r || (r.is_nan() && a.is_nan());
                    o.push(if hit { self.floats[pick(self.floats.len(), i)?] } else { a });
                }
                Tensor::from_vec(x.shape().to_vec(), o)?
            }
            TensorData::I64(_) | TensorData::I32(_) => {
                ensure!(!self.ints.is_empty(), "imputed_value_int64s is required for integer input");
                let v = x.to_i64_vec()?;
                let mut o = Vec::with_capacity(v.len());
                for (i, &a) in v.iter().enumerate() {
                    o.push(if a == self.replaced_i { self.ints[pick(self.ints.len(), i)?] } else { a });
                }
                Tensor::from_vec(x.shape().to_vec(), o)?
            }
            other => bail!("Imputer does not support {} input", other.dtype()),
        };
        Ok(vec![out.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// OneHotEncoder

struct OneHot {
    ints: HashMap<i64, usize>,
    strs: HashMap<String, usize>,
    n: usize,
    zeros: bool,
}

pub(crate) fn build_one_hot_encoder(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let ints = n.attr_ints("cats_int64s")?.unwrap_or_default();
    let strs = n.attr_strings("cats_strings")?.unwrap_or_default();
    ensure!(!ints.is_empty() || !strs.is_empty(), "one of cats_int64s or cats_strings is required");
    let count = ints.len().max(strs.len());
    Ok(Box::new(OneHot {
        ints: ints.iter().enumerate().map(|(i, &v)| (v, i)).collect(),
        strs: strs.iter().enumerate().map(|(i, v)| (v.clone(), i)).collect(),
        n: count,
        zeros: n.attr_int_or("zeros", 1)? != 0,
    }))
}

impl Op for OneHot {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let idx: Vec<Option<usize>> = match x.data() {
            TensorData::String(v) => v.iter().map(|s| self.strs.get(s).copied()).collect(),
            TensorData::F32(_) | TensorData::F64(_) => {
                x.to_f64_vec()?.iter().map(|&f| self.ints.get(&(f as i64)).copied()).collect()
            }
            _ => x.to_i64_vec()?.iter().map(|i| self.ints.get(i).copied()).collect(),
        };
        let mut out = vec![0f32; idx.len() * self.n];
        for (k, i) in idx.iter().enumerate() {
            match i {
                Some(i) => out[k * self.n + i] = 1.0,
                None if !self.zeros => bail!("input value at position {k} is not one of the categories"),
                None => {}
            }
        }
        let mut shape = x.shape().to_vec();
        shape.push(self.n);
        Ok(vec![Tensor::from_vec(shape, out)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let mut s = inputs.first().copied().flatten()?.tensor_shape()?.clone();
        s.0.push(Dim::Fixed(self.n));
        Some(vec![ValueType::tensor(DType::F32, Some(s))])
    }
}

// ---------------------------------------------------------------------------------------------
// LabelEncoder

enum Keys {
    Str(HashMap<String, usize>),
    Int(HashMap<i64, usize>),
    F32(HashMap<u32, usize>),
    F64(HashMap<u64, usize>),
}

fn f32_key(v: f32) -> u32 {
    if v.is_nan() {
        f32::NAN.to_bits()
    } else if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

fn f64_key(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

impl Keys {
    fn from_data(d: &TensorData) -> OpResult<Keys> {
        Ok(match d {
            TensorData::String(v) => Keys::Str(v.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect()),
            TensorData::F32(v) => Keys::F32(v.iter().enumerate().map(|(i, &f)| (f32_key(f), i)).collect()),
            TensorData::F64(v) => Keys::F64(v.iter().enumerate().map(|(i, &f)| (f64_key(f), i)).collect()),
            TensorData::I64(v) => Keys::Int(v.iter().enumerate().map(|(i, &k)| (k, i)).collect()),
            TensorData::I32(v) => Keys::Int(v.iter().enumerate().map(|(i, &k)| (k as i64, i)).collect()),
            TensorData::I16(v) => Keys::Int(v.iter().enumerate().map(|(i, &k)| (k as i64, i)).collect()),
            other => bail!("LabelEncoder keys of type {} are not supported", other.dtype()),
        })
    }
    fn lookup(&self, x: &Tensor) -> OpResult<Vec<Option<usize>>> {
        Ok(match (self, x.data()) {
            (Keys::Str(m), TensorData::String(v)) => v.iter().map(|s| m.get(s).copied()).collect(),
            (Keys::F32(m), TensorData::F32(v)) => v.iter().map(|&f| m.get(&f32_key(f)).copied()).collect(),
            (Keys::F64(m), TensorData::F64(v)) => v.iter().map(|&f| m.get(&f64_key(f)).copied()).collect(),
            (Keys::Int(m), TensorData::I64(_) | TensorData::I32(_) | TensorData::I16(_)) => {
                x.to_i64_vec()?.iter().map(|k| m.get(k).copied()).collect()
            }
            (_, d) => bail!("input of type {} does not match the encoder's key type", d.dtype()),
        })
    }
}

struct LabelEncoder {
    keys: Keys,
    values: TensorData,
    default: TensorData,
}

fn default_for(n: &NodeInfo, dt: DType) -> OpResult<TensorData> {
    if let Some(t) = n.attr_tensor("default_tensor")? {
        ensure!(t.len() == 1, "default_tensor must hold one value");
        ensure!(t.dtype() == dt, "default_tensor is {} but the values are {dt}", t.dtype());
        return Ok(t.into_data());
    }
    Ok(match dt {
        DType::String => TensorData::String(vec![n.attr_string_or("default_string", "_Unused")?]),
        DType::I64 => TensorData::I64(vec![n.attr_int_or("default_int64", -1)?]),
        DType::I32 => TensorData::I32(vec![n.attr_int_or("default_int64", -1)? as i32]),
        DType::I16 => TensorData::I16(vec![n.attr_int_or("default_int64", -1)? as i16]),
        DType::F32 => TensorData::F32(vec![n.attr_float_or("default_float", -0.0)?]),
        DType::F64 => TensorData::F64(vec![n.attr_float_or("default_float", -0.0)? as f64]),
        other => bail!("LabelEncoder values of type {other} are not supported"),
    })
}

pub(crate) fn build_label_encoder(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    if n.opset < 2 {
        let classes = n.attr_strings("classes_strings")?.unwrap_or_default();
        let input = n.input_dtype(0);
        let to_int = input != Some(DType::I64);
        let (keys, values, default) = if to_int {
            (
                TensorData::String(classes.clone()),
                TensorData::I64((0..classes.len() as i64).collect()),
                TensorData::I64(vec![n.attr_int_or("default_int64", -1)?]),
            )
        } else {
            (
                TensorData::I64((0..classes.len() as i64).collect()),
                TensorData::String(classes),
                TensorData::String(vec![n.attr_string_or("default_string", "_Unused")?]),
            )
        };
        return Ok(Box::new(LabelEncoder { keys: Keys::from_data(&keys)?, values, default }));
    }
    let keys = if let Some(t) = n.attr_tensor("keys_tensor")? {
        t.into_data()
    } else if let Some(v) = n.attr_strings("keys_strings")? {
        TensorData::String(v)
    } else if let Some(v) = n.attr_ints("keys_int64s")? {
        TensorData::I64(v)
    } else if let Some(v) = n.attr_floats("keys_floats")? {
        TensorData::F32(v)
    } else {
        bail!("LabelEncoder needs keys (keys_strings, keys_int64s, keys_floats or keys_tensor)")
    };
    let values = if let Some(t) = n.attr_tensor("values_tensor")? {
        t.into_data()
    } else if let Some(v) = n.attr_strings("values_strings")? {
        TensorData::String(v)
    } else if let Some(v) = n.attr_ints("values_int64s")? {
        TensorData::I64(v)
    } else if let Some(v) = n.attr_floats("values_floats")? {
        TensorData::F32(v)
    } else {
        bail!("LabelEncoder needs values (values_strings, values_int64s, values_floats or values_tensor)")
    };
    ensure!(keys.len() == values.len(), "LabelEncoder has {} keys but {} values", keys.len(), values.len());
    let default = default_for(n, values.dtype())?;
    Ok(Box::new(LabelEncoder { keys: Keys::from_data(&keys)?, values, default }))
}

impl Op for LabelEncoder {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let idx = self.keys.lookup(x)?;
        let mut out = TensorData::with_capacity(self.values.dtype(), idx.len());
        for i in idx {
            match i {
                Some(i) => out.push_from(&self.values, i),
                None => out.push_from(&self.default, 0),
            }
        }
        Ok(vec![Tensor::new(x.shape().to_vec(), out)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let shape = inputs.first().copied().flatten()?.tensor_shape().cloned();
        Some(vec![ValueType::tensor(self.values.dtype(), shape)])
    }
}

// ---------------------------------------------------------------------------------------------
// CategoryMapper

struct CategoryMapper {
    s2i: HashMap<String, i64>,
    i2s: HashMap<i64, String>,
    default_string: String,
    default_int: i64,
}

pub(crate) fn build_category_mapper(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let strs = n.attr_strings("cats_strings")?.unwrap_or_default();
    let ints = n.attr_ints("cats_int64s")?.unwrap_or_default();
    ensure!(strs.len() == ints.len(), "cats_strings ({}) and cats_int64s ({}) must have the same length", strs.len(), ints.len());
    Ok(Box::new(CategoryMapper {
        s2i: strs.iter().cloned().zip(ints.iter().copied()).collect(),
        i2s: ints.iter().copied().zip(strs.iter().cloned()).collect(),
        default_string: n.attr_string_or("default_string", "_Unused")?,
        default_int: n.attr_int_or("default_int64", -1)?,
    }))
}

impl Op for CategoryMapper {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let t = match x.data() {
            TensorData::String(v) => {
                let o: Vec<i64> = v.iter().map(|s| self.s2i.get(s).copied().unwrap_or(self.default_int)).collect();
                Tensor::from_vec(x.shape().to_vec(), o)?
            }
            TensorData::I64(v) => {
                let o: Vec<String> =
                    v.iter().map(|i| self.i2s.get(i).cloned().unwrap_or_else(|| self.default_string.clone())).collect();
                Tensor::from_vec(x.shape().to_vec(), o)?
            }
            other => bail!("CategoryMapper input must be string or int64, got {}", other.dtype()),
        };
        Ok(vec![t.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let t = inputs.first().copied().flatten()?;
        let dt = match t.tensor_dtype()? {
            DType::String => DType::I64,
            _ => DType::String,
        };
        Some(vec![ValueType::tensor(dt, t.tensor_shape().cloned())])
    }
}

// ---------------------------------------------------------------------------------------------
// DictVectorizer

struct DictVectorizer {
    index: HashMap<MapKey, usize>,
    n: usize,
}

pub(crate) fn build_dict_vectorizer(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let strs = n.attr_strings("string_vocabulary")?.unwrap_or_default();
    let ints = n.attr_ints("int64_vocabulary")?.unwrap_or_default();
    ensure!(strs.is_empty() != ints.is_empty(), "exactly one of string_vocabulary or int64_vocabulary is required");
    let keys: Vec<MapKey> = if strs.is_empty() {
        ints.into_iter().map(MapKey::Int).collect()
    } else {
        strs.into_iter().map(MapKey::Str).collect()
    };
    Ok(Box::new(DictVectorizer { n: keys.len(), index: keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect() }))
}

impl DictVectorizer {
    fn one(&self, v: &Value, out: &mut TensorData, row: usize) -> OpResult<()> {
        let Value::Map { entries, .. } = v else { bail!("DictVectorizer input must be a map, got {}", v.describe()) };
        for (k, val) in entries {
            let Some(&i) = self.index.get(k) else { continue };
            let t = val.as_tensor().ok_or_else(|| OpError::new("map values must be scalars"))?;
            ensure!(t.len() == 1, "map values must be scalars");
            ensure!(t.dtype() == out.dtype(), "map values have mixed types");
            let pos = row * self.n + i;
            macro_rules! set {
                ($($var:ident),*) => {
                    match (&mut *out, t.data()) {
                        $( (TensorData::$var(o), TensorData::$var(s)) => o[pos] = s[0].clone(), )*
                        _ => bail!("unsupported map value type {}", t.dtype()),
                    }
                };
            }
            set!(F32, F64, I64, I32, String);
        }
        Ok(())
    }
}

impl Op for DictVectorizer {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let v = inputs.value(0).ok_or_else(|| OpError::new("input 0 is missing"))?;
        let maps: Vec<&Value> = match v {
            Value::Map { .. } => vec![v],
            Value::Sequence { items, .. } => items.iter().collect(),
            other => bail!("DictVectorizer input must be a map, got {}", other.describe()),
        };
        let vt = match v {
            Value::Map { value, .. } => value.tensor_dtype(),
            Value::Sequence { elem: ValueType::Map(_, value), .. } => value.tensor_dtype(),
            _ => None,
        }
        .unwrap_or(DType::F32);
        let mut out = TensorData::zeros(vt, maps.len() * self.n);
        for (r, m) in maps.iter().enumerate() {
            self.one(m, &mut out, r)?;
        }
        Ok(vec![Tensor::new(vec![maps.len(), self.n], out)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// FeatureVectorizer

struct FeatureVectorizer {
    dims: Vec<usize>,
}

pub(crate) fn build_feature_vectorizer(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let dims = n.attr_ints("inputdimensions")?.unwrap_or_default();
    ensure!(dims.iter().all(|&d| d >= 0), "inputdimensions must not be negative");
    Ok(Box::new(FeatureVectorizer { dims: dims.into_iter().map(|d| d as usize).collect() }))
}

impl Op for FeatureVectorizer {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let ts = inputs.tensors()?;
        ensure!(!ts.is_empty(), "FeatureVectorizer needs at least one input");
        let dims: Vec<usize> = if self.dims.len() == ts.len() { self.dims.clone() } else { ts.iter().map(|t| last_dim(t)).collect() };
        let rows = if ts[0].rank() <= 1 { 1 } else { ts[0].shape()[0] };
        let total: usize = dims.iter().sum();
        let mut out = vec![0f32; rows * total];
        let mut off = 0;
        for (t, &d) in ts.iter().zip(&dims) {
            let v = to_f32(t)?;
            let c = if t.rank() <= 1 { t.len() } else { t.len() / t.shape()[0].max(1) };
            let trows = if t.rank() <= 1 { 1 } else { t.shape()[0] };
            ensure!(trows == rows, "all inputs must have the same number of rows ({trows} vs {rows})");
            for r in 0..rows {
                for j in 0..d.min(c) {
                    out[r * total + off + j] = v[r * c + j];
                }
            }
            off += d;
        }
        Ok(vec![Tensor::from_vec(vec![rows, total], out)?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// ArrayFeatureExtractor

struct ArrayFeatureExtractor;

pub(crate) fn build_array_feature_extractor(_n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(ArrayFeatureExtractor))
}

impl Op for ArrayFeatureExtractor {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let y = inputs.tensor(1)?.to_i64_vec()?;
        ensure!(x.rank() >= 1, "X must have at least one dimension");
        let c = last_dim(x);
        ensure!(!y.is_empty(), "indices must not be empty");
        let mut idx = Vec::with_capacity(y.len());
        for &i in &y {
            ensure!(i >= 0 && (i as usize) < c, "index {i} is out of range for the last dimension {c}");
            idx.push(i as usize);
        }
        let outer = if c == 0 { 0 } else { x.len() / c };
        let mut gather = Vec::with_capacity(outer * idx.len());
        for r in 0..outer {
            for &i in &idx {
                gather.push(r * c + i);
            }
        }
        let mut shape = x.shape().to_vec();
        if shape.len() == 1 {
            shape = vec![1, idx.len()];
        } else if let Some(l) = shape.last_mut() {
            *l = idx.len();
        }
        Ok(vec![Tensor::new(shape, x.data().gather(&gather))?.into()])
    }
}

// ---------------------------------------------------------------------------------------------
// ZipMap

struct ZipMap {
    keys: Vec<MapKey>,
    key_type: DType,
}

pub(crate) fn build_zipmap(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let strs = n.attr_strings("classlabels_strings")?.unwrap_or_default();
    let ints = n.attr_ints("classlabels_int64s")?.unwrap_or_default();
    ensure!(strs.is_empty() != ints.is_empty(), "exactly one of classlabels_strings or classlabels_int64s is required");
    Ok(Box::new(if strs.is_empty() {
        ZipMap { keys: ints.into_iter().map(MapKey::Int).collect(), key_type: DType::I64 }
    } else {
        ZipMap { keys: strs.into_iter().map(MapKey::Str).collect(), key_type: DType::String }
    }))
}

impl ZipMap {
    fn value_type() -> ValueType {
        ValueType::tensor(DType::F32, Some(Shape(vec![])))
    }
}

impl Op for ZipMap {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        ensure!(x.rank() >= 1 && x.rank() <= 2, "ZipMap input must be 1-D or 2-D, got shape {:?}", x.shape());
        let v = to_f32(x)?;
        let c = last_dim(x);
        ensure!(c == self.keys.len(), "ZipMap input has {c} columns but there are {} class labels", self.keys.len());
        let rows = if c == 0 { 0 } else { v.len() / c };
        let mut items = Vec::with_capacity(rows);
        for r in 0..rows {
            let entries = self
                .keys
                .iter()
                .zip(&v[r * c..(r + 1) * c])
                .map(|(k, &p)| (k.clone(), Value::Tensor(Tensor::scalar(p))))
                .collect();
            items.push(Value::Map { key: self.key_type, value: ZipMap::value_type(), entries });
        }
        Ok(vec![Value::Sequence { elem: ValueType::Map(self.key_type, Box::new(ZipMap::value_type())), items }])
    }
    fn infer(&self, _: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![ValueType::Sequence(Box::new(ValueType::Map(self.key_type, Box::new(ZipMap::value_type()))))])
    }
}
