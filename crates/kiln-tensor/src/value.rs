//! `Value`: what flows along a graph edge — a tensor, a sequence, a map or an optional — and
//! `ValueType`, its declared type.

use std::fmt;

use crate::{DType, Shape, Tensor};

/// A map key (ONNX maps are keyed by integers or strings).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapKey {
    Int(i64),
    Str(String),
}

impl fmt::Display for MapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapKey::Int(i) => write!(f, "{i}"),
            MapKey::Str(s) => f.write_str(s),
        }
    }
}

/// A runtime value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Tensor(Tensor),
    /// A sequence; `elem` is the declared element type, kept so an empty sequence still has one.
    Sequence { elem: ValueType, items: Vec<Value> },
    /// A map with entries in insertion order.
    Map { key: DType, value: ValueType, entries: Vec<(MapKey, Value)> },
    /// An optional; `elem` is the declared element type.
    Optional { elem: ValueType, value: Option<Box<Value>> },
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Value {
        Value::Tensor(t)
    }
}

impl Value {
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }
    pub fn into_tensor(self) -> Option<Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }
    /// The concrete type of this value (tensor shapes fully known).
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Tensor(t) => ValueType::Tensor { dtype: t.dtype(), shape: Some(Shape::fixed(t.shape())) },
            Value::Sequence { elem, .. } => ValueType::Sequence(Box::new(elem.clone())),
            Value::Map { key, value, .. } => ValueType::Map(*key, Box::new(value.clone())),
            Value::Optional { elem, .. } => ValueType::Optional(Box::new(elem.clone())),
        }
    }
    /// Short description for error messages ("float tensor [1, 3]", "sequence", ...).
    pub fn describe(&self) -> String {
        match self {
            Value::Tensor(t) => format!("{} tensor {:?}", t.dtype(), t.shape()),
            Value::Sequence { items, .. } => format!("sequence of {} items", items.len()),
            Value::Map { entries, .. } => format!("map of {} entries", entries.len()),
            Value::Optional { value, .. } => {
                if value.is_some() {
                    "optional (present)".into()
                } else {
                    "optional (empty)".into()
                }
            }
        }
    }
}

/// A declared type of a graph value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// A tensor; `shape` is `None` when even the rank is unknown.
    Tensor { dtype: DType, shape: Option<Shape> },
    Sequence(Box<ValueType>),
    Map(DType, Box<ValueType>),
    Optional(Box<ValueType>),
}

impl ValueType {
    pub fn tensor(dtype: DType, shape: Option<Shape>) -> ValueType {
        ValueType::Tensor { dtype, shape }
    }
    pub fn tensor_dtype(&self) -> Option<DType> {
        match self {
            ValueType::Tensor { dtype, .. } => Some(*dtype),
            _ => None,
        }
    }
    pub fn tensor_shape(&self) -> Option<&Shape> {
        match self {
            ValueType::Tensor { shape, .. } => shape.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Tensor { dtype, shape: Some(s) } => write!(f, "{dtype}{s}"),
            ValueType::Tensor { dtype, shape: None } => write!(f, "{dtype}[...]"),
            ValueType::Sequence(e) => write!(f, "seq({e})"),
            ValueType::Map(k, v) => write!(f, "map({k}, {v})"),
            ValueType::Optional(e) => write!(f, "optional({e})"),
        }
    }
}
