//! Plain Rust mirrors of the ONNX protobuf messages Kiln reads (onnx.proto3, IR version ≤ 11).
//!
//! Only fields Kiln uses are kept; unknown fields are skipped by the decoder. Field numbers are
//! noted next to each field.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// Memory holding a serialized model that decoded messages may refer into.
pub trait ByteSource: Send + Sync {
    fn bytes(&self) -> &[u8];
    /// A hint that `range` will not be read again soon: a file mapping gives those pages back to
    /// the OS (they are read from the file again if touched). Owned memory ignores it.
    fn release(&self, _range: Range<usize>) {}
    /// A hint that `range` is about to be read in full: a file mapping maps those pages in one
    /// request instead of one fault per page. Owned memory ignores it.
    fn prefetch(&self, _range: Range<usize>) {}
}

impl ByteSource for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// A serialized model held in shared memory, so decoding can refer to large fields in place.
pub type SharedBytes = Arc<dyn ByteSource>;

/// The bytes of `TensorProto.raw_data`: owned, or a range of the serialized model when it was
/// decoded with `decode_model_shared` (the main graph's initializers are then not copied).
#[derive(Clone, Default)]
pub struct RawData(RawRepr);

#[derive(Clone, Default)]
enum RawRepr {
    #[default]
    Empty,
    Owned(Vec<u8>),
    Shared(SharedBytes, Range<usize>),
}

impl RawData {
    /// A range of `buf`; `None` when the range is out of bounds.
    pub fn shared(buf: &SharedBytes, range: Range<usize>) -> Option<RawData> {
        buf.bytes().get(range.clone())?;
        Some(RawData(RawRepr::Shared(Arc::clone(buf), range)))
    }

    /// Tells the memory these bytes live in that they have been consumed (see
    /// [`ByteSource::release`]); reading them afterwards stays valid.
    pub fn release(&self) {
        if let RawRepr::Shared(buf, r) = &self.0 {
            buf.release(r.clone());
        }
    }

    /// Tells the memory these bytes live in that they are about to be read in full (see
    /// [`ByteSource::prefetch`]).
    pub fn prefetch(&self) {
        if let RawRepr::Shared(buf, r) = &self.0 {
            buf.prefetch(r.clone());
        }
    }
}

impl Deref for RawData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            RawRepr::Empty => &[],
            RawRepr::Owned(v) => v,
            RawRepr::Shared(buf, r) => buf.bytes().get(r.clone()).unwrap_or(&[]),
        }
    }
}

impl From<Vec<u8>> for RawData {
    fn from(v: Vec<u8>) -> RawData {
        RawData(RawRepr::Owned(v))
    }
}

impl PartialEq for RawData {
    fn eq(&self, other: &RawData) -> bool {
        **self == **other
    }
}

impl fmt::Debug for RawData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// ModelProto
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelProto {
    pub ir_version: i64,                        // 1
    pub opset_import: Vec<OperatorSetIdProto>,  // 8
    pub producer_name: String,                  // 2
    pub producer_version: String,               // 3
    pub domain: String,                         // 4
    pub model_version: i64,                     // 5
    pub doc_string: String,                     // 6
    pub graph: Option<GraphProto>,              // 7
    pub metadata_props: Vec<StringStringEntryProto>, // 14
    pub functions: Vec<FunctionProto>,          // 25
}

/// OperatorSetIdProto
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperatorSetIdProto {
    pub domain: String, // 1
    pub version: i64,   // 2
}

/// StringStringEntryProto
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StringStringEntryProto {
    pub key: String,   // 1
    pub value: String, // 2
}

/// GraphProto
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphProto {
    pub node: Vec<NodeProto>,                      // 1
    pub name: String,                              // 2
    pub initializer: Vec<TensorProto>,             // 5
    pub sparse_initializer: Vec<SparseTensorProto>, // 15
    pub doc_string: String,                        // 10
    pub input: Vec<ValueInfoProto>,                // 11
    pub output: Vec<ValueInfoProto>,               // 12
    pub value_info: Vec<ValueInfoProto>,           // 13
}

/// NodeProto
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeProto {
    pub input: Vec<String>,              // 1
    pub output: Vec<String>,             // 2
    pub name: String,                    // 3
    pub op_type: String,                 // 4
    pub domain: String,                  // 7
    pub overload: String,                // 8
    pub attribute: Vec<AttributeProto>,  // 5
    pub doc_string: String,              // 6
}

/// AttributeProto.AttributeType
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttributeType {
    #[default]
    Undefined = 0,
    Float = 1,
    Int = 2,
    String = 3,
    Tensor = 4,
    Graph = 5,
    SparseTensor = 11,
    TypeProto = 13,
    Floats = 6,
    Ints = 7,
    Strings = 8,
    Tensors = 9,
    Graphs = 10,
    SparseTensors = 12,
    TypeProtos = 14,
}

/// AttributeProto
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttributeProto {
    pub name: String,                         // 1
    pub ref_attr_name: String,                // 21
    pub doc_string: String,                   // 13
    pub r#type: AttributeType,                // 20
    pub f: f32,                               // 2
    pub i: i64,                               // 3
    pub s: Vec<u8>,                           // 4
    pub t: Option<TensorProto>,               // 5
    pub g: Option<GraphProto>,                // 6
    pub sparse_tensor: Option<SparseTensorProto>, // 22
    pub tp: Option<TypeProto>,                // 14
    pub floats: Vec<f32>,                     // 7 (packed or not)
    pub ints: Vec<i64>,                       // 8 (packed or not)
    pub strings: Vec<Vec<u8>>,                // 9
    pub tensors: Vec<TensorProto>,            // 10
    pub graphs: Vec<GraphProto>,              // 11
    pub sparse_tensors: Vec<SparseTensorProto>, // 23
    pub type_protos: Vec<TypeProto>,          // 15
}

/// TensorProto.DataLocation
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataLocation {
    #[default]
    Default = 0,
    External = 1,
}

/// TensorProto
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorProto {
    pub dims: Vec<i64>,                          // 1
    pub data_type: i32,                          // 2
    pub name: String,                            // 8
    pub doc_string: String,                      // 12
    pub raw_data: RawData,                       // 9
    pub float_data: Vec<f32>,                    // 4
    pub int32_data: Vec<i32>,                    // 5
    pub string_data: Vec<Vec<u8>>,               // 6
    pub int64_data: Vec<i64>,                    // 7
    pub double_data: Vec<f64>,                   // 10
    pub uint64_data: Vec<u64>,                   // 11
    pub external_data: Vec<StringStringEntryProto>, // 13
    pub data_location: DataLocation,             // 14
}

/// SparseTensorProto
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseTensorProto {
    pub values: Option<TensorProto>,  // 1
    pub indices: Option<TensorProto>, // 2
    pub dims: Vec<i64>,               // 3
}

/// ValueInfoProto
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueInfoProto {
    pub name: String,            // 1
    pub r#type: Option<TypeProto>, // 2
    pub doc_string: String,      // 3
}

/// TypeProto (the `value` oneof) plus `denotation` (6).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeProto {
    pub value: Option<TypeValue>,
    pub denotation: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TypeValue {
    /// tensor_type = 1: elem_type (1), shape (2, absent = unknown rank)
    Tensor { elem_type: i32, shape: Option<Vec<DimProto>> },
    /// sequence_type = 4: elem_type (1)
    Sequence(Option<Box<TypeProto>>),
    /// map_type = 5: key_type (1), value_type (2)
    Map { key_type: i32, value_type: Option<Box<TypeProto>> },
    /// optional_type = 9: elem_type (1)
    Optional(Option<Box<TypeProto>>),
    /// sparse_tensor_type = 8: elem_type (1), shape (2)
    SparseTensor { elem_type: i32, shape: Option<Vec<DimProto>> },
}

/// TensorShapeProto.Dimension: dim_value (1) | dim_param (2), plus denotation (3).
#[derive(Clone, Debug, PartialEq)]
pub enum DimProto {
    Value(i64),
    Param(String),
    Unknown,
}

/// FunctionProto (model-local functions)
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FunctionProto {
    pub name: String,                           // 1
    pub input: Vec<String>,                     // 4
    pub output: Vec<String>,                    // 5
    pub attribute: Vec<String>,                 // 6
    pub attribute_proto: Vec<AttributeProto>,   // 11
    pub node: Vec<NodeProto>,                   // 7
    pub doc_string: String,                     // 8
    pub opset_import: Vec<OperatorSetIdProto>,  // 9
    pub domain: String,                         // 10
    pub overload: String,                       // 13
}

/// SequenceProto (test data files): name 1, elem_type 2, tensor_values 3, sparse_tensor_values 4,
/// sequence_values 5, map_values 6, optional_values 7.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SequenceProto {
    pub name: String,
    pub elem_type: i32,
    pub tensor_values: Vec<TensorProto>,
    pub sparse_tensor_values: Vec<SparseTensorProto>,
    pub sequence_values: Vec<SequenceProto>,
    pub map_values: Vec<MapProto>,
    pub optional_values: Vec<OptionalProto>,
}

/// MapProto: name 1, key_type 2, keys 3 (int64, packed), string_keys 4, values 5 (SequenceProto).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapProto {
    pub name: String,
    pub key_type: i32,
    pub keys: Vec<i64>,
    pub string_keys: Vec<Vec<u8>>,
    pub values: Option<SequenceProto>,
}

/// OptionalProto: name 1, elem_type 2, tensor_value 3, sparse_tensor_value 4, sequence_value 5,
/// map_value 6, optional_value 7.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptionalProto {
    pub name: String,
    pub elem_type: i32,
    pub tensor_value: Option<TensorProto>,
    pub sparse_tensor_value: Option<SparseTensorProto>,
    pub sequence_value: Option<Box<SequenceProto>>,
    pub map_value: Option<MapProto>,
    pub optional_value: Option<Box<OptionalProto>>,
}
