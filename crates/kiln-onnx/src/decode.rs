//! Message decoders: one `merge_*` function per ONNX message, filling the structs in `proto`.
//!
//! Decoding follows protobuf merge semantics (a repeated singular message merges into the
//! earlier one, the last scalar wins), skips unknown fields, accepts packed and unpacked
//! repeated scalars, and rejects a known field that arrives with the wrong wire type.

use crate::proto::*;
use crate::wire::{Context, DecodeError, Field, Reader};

type Result<T> = std::result::Result<T, DecodeError>;

/// Decodes a whole buffer as one top-level message.
pub fn decode_root<T: Default>(
    bytes: &[u8],
    merge: fn(&mut Reader<'_>, &mut T, u32) -> Result<()>,
) -> Result<T> {
    let mut msg = T::default();
    merge(&mut Reader::new(bytes), &mut msg, 0)?;
    Ok(msg)
}

/// `decode_root` over a shared buffer: `raw_data` fields refer into it.
pub fn decode_root_shared<T: Default>(
    bytes: &SharedBytes,
    merge: fn(&mut Reader<'_>, &mut T, u32) -> Result<()>,
) -> Result<T> {
    let mut msg = T::default();
    merge(&mut Reader::new_shared(bytes), &mut msg, 0)?;
    Ok(msg)
}

/// Appends a freshly decoded message to a repeated field, naming its index on error.
fn push_message<'a, T: Default>(
    r: &mut Reader<'a>,
    f: Field,
    depth: u32,
    list: &mut Vec<T>,
    name: &str,
    merge: fn(&mut Reader<'a>, &mut T, u32) -> Result<()>,
) -> Result<()> {
    let item = r.new_message(f, depth, merge).ctx_at(name, list.len())?;
    list.push(item);
    Ok(())
}

/// Merges into an optional singular message, creating it on first sight.
fn merge_opt<'a, T: Default>(
    r: &mut Reader<'a>,
    f: Field,
    depth: u32,
    slot: &mut Option<T>,
    name: &str,
    merge: fn(&mut Reader<'a>, &mut T, u32) -> Result<()>,
) -> Result<()> {
    r.message(f, depth, slot.get_or_insert_with(T::default), merge)
        .ctx(name)
}

/// Like `merge_opt` for boxed (recursive) messages.
fn merge_boxed<'a, T: Default>(
    r: &mut Reader<'a>,
    f: Field,
    depth: u32,
    slot: &mut Option<Box<T>>,
    name: &str,
    merge: fn(&mut Reader<'a>, &mut T, u32) -> Result<()>,
) -> Result<()> {
    r.message(
        f,
        depth,
        slot.get_or_insert_with(Box::default).as_mut(),
        merge,
    )
    .ctx(name)
}

fn push_string(r: &mut Reader<'_>, f: Field, list: &mut Vec<String>, name: &str) -> Result<()> {
    let s = r.string(f).ctx_at(name, list.len())?;
    list.push(s);
    Ok(())
}

fn push_bytes(r: &mut Reader<'_>, f: Field, list: &mut Vec<Vec<u8>>, name: &str) -> Result<()> {
    let b = r.bytes(f).ctx_at(name, list.len())?;
    list.push(b);
    Ok(())
}

pub fn merge_model(r: &mut Reader<'_>, m: &mut ModelProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.ir_version = r.int64(f).ctx("ir_version")?,
            2 => m.producer_name = r.string(f).ctx("producer_name")?,
            3 => m.producer_version = r.string(f).ctx("producer_version")?,
            4 => m.domain = r.string(f).ctx("domain")?,
            5 => m.model_version = r.int64(f).ctx("model_version")?,
            6 => m.doc_string = r.string(f).ctx("doc_string")?,
            7 => merge_opt(r, f, depth, &mut m.graph, "graph", merge_graph)?,
            8 => push_message(
                r,
                f,
                depth,
                &mut m.opset_import,
                "opset_import",
                merge_opset,
            )?,
            14 => push_message(
                r,
                f,
                depth,
                &mut m.metadata_props,
                "metadata_props",
                merge_string_entry,
            )?,
            25 => push_message(r, f, depth, &mut m.functions, "functions", merge_function)?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

fn merge_opset(r: &mut Reader<'_>, m: &mut OperatorSetIdProto, _depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.domain = r.string(f).ctx("domain")?,
            2 => m.version = r.int64(f).ctx("version")?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

fn merge_string_entry(
    r: &mut Reader<'_>,
    m: &mut StringStringEntryProto,
    _depth: u32,
) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.key = r.string(f).ctx("key")?,
            2 => m.value = r.string(f).ctx("value")?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

pub fn merge_graph(r: &mut Reader<'_>, m: &mut GraphProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => push_message(r, f, depth, &mut m.node, "node", merge_node)?,
            2 => m.name = r.string(f).ctx("name")?,
            5 => push_message(r, f, depth, &mut m.initializer, "initializer", merge_tensor)?,
            10 => m.doc_string = r.string(f).ctx("doc_string")?,
            11 => push_message(r, f, depth, &mut m.input, "input", merge_value_info)?,
            12 => push_message(r, f, depth, &mut m.output, "output", merge_value_info)?,
            13 => push_message(
                r,
                f,
                depth,
                &mut m.value_info,
                "value_info",
                merge_value_info,
            )?,
            15 => push_message(
                r,
                f,
                depth,
                &mut m.sparse_initializer,
                "sparse_initializer",
                merge_sparse_tensor,
            )?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

fn merge_node(r: &mut Reader<'_>, m: &mut NodeProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => push_string(r, f, &mut m.input, "input")?,
            2 => push_string(r, f, &mut m.output, "output")?,
            3 => m.name = r.string(f).ctx("name")?,
            4 => m.op_type = r.string(f).ctx("op_type")?,
            5 => push_message(r, f, depth, &mut m.attribute, "attribute", merge_attribute)?,
            6 => m.doc_string = r.string(f).ctx("doc_string")?,
            7 => m.domain = r.string(f).ctx("domain")?,
            8 => m.overload = r.string(f).ctx("overload")?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

fn attribute_type(code: i32) -> AttributeType {
    match code {
        1 => AttributeType::Float,
        2 => AttributeType::Int,
        3 => AttributeType::String,
        4 => AttributeType::Tensor,
        5 => AttributeType::Graph,
        6 => AttributeType::Floats,
        7 => AttributeType::Ints,
        8 => AttributeType::Strings,
        9 => AttributeType::Tensors,
        10 => AttributeType::Graphs,
        11 => AttributeType::SparseTensor,
        12 => AttributeType::SparseTensors,
        13 => AttributeType::TypeProto,
        14 => AttributeType::TypeProtos,
        _ => AttributeType::Undefined,
    }
}

fn merge_attribute(r: &mut Reader<'_>, m: &mut AttributeProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.name = r.string(f).ctx("name")?,
            2 => m.f = r.float(f).ctx("f")?,
            3 => m.i = r.int64(f).ctx("i")?,
            4 => m.s = r.bytes(f).ctx("s")?,
            5 => merge_opt(r, f, depth, &mut m.t, "t", merge_tensor)?,
            6 => merge_opt(r, f, depth, &mut m.g, "g", merge_graph)?,
            7 => r.repeated_float(f, &mut m.floats).ctx("floats")?,
            8 => r.repeated_int64(f, &mut m.ints).ctx("ints")?,
            9 => push_bytes(r, f, &mut m.strings, "strings")?,
            10 => push_message(r, f, depth, &mut m.tensors, "tensors", merge_tensor)?,
            11 => push_message(r, f, depth, &mut m.graphs, "graphs", merge_graph)?,
            13 => m.doc_string = r.string(f).ctx("doc_string")?,
            14 => merge_opt(r, f, depth, &mut m.tp, "tp", merge_type)?,
            15 => push_message(r, f, depth, &mut m.type_protos, "type_protos", merge_type)?,
            20 => m.r#type = attribute_type(r.int32(f).ctx("type")?),
            21 => m.ref_attr_name = r.string(f).ctx("ref_attr_name")?,
            22 => merge_opt(
                r,
                f,
                depth,
                &mut m.sparse_tensor,
                "sparse_tensor",
                merge_sparse_tensor,
            )?,
            23 => push_message(
                r,
                f,
                depth,
                &mut m.sparse_tensors,
                "sparse_tensors",
                merge_sparse_tensor,
            )?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

pub fn merge_tensor(r: &mut Reader<'_>, m: &mut TensorProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => r.repeated_int64(f, &mut m.dims).ctx("dims")?,
            2 => m.data_type = r.int32(f).ctx("data_type")?,
            4 => r.repeated_float(f, &mut m.float_data).ctx("float_data")?,
            5 => r.repeated_int32(f, &mut m.int32_data).ctx("int32_data")?,
            6 => push_bytes(r, f, &mut m.string_data, "string_data")?,
            7 => r.repeated_int64(f, &mut m.int64_data).ctx("int64_data")?,
            8 => m.name = r.string(f).ctx("name")?,
            // Only the main graph's initializers (depth 2) refer into a shared input: the
            // engine keeps nothing of them but the tensors, while a subgraph's tensors may live
            // on in the operator that owns the subgraph and would keep the whole input alive.
            9 => {
                m.raw_data = if depth <= 2 { r.raw_bytes(f) } else { r.bytes(f).map(RawData::from) }.ctx("raw_data")?
            }
            10 => r
                .repeated_double(f, &mut m.double_data)
                .ctx("double_data")?,
            11 => r
                .repeated_uint64(f, &mut m.uint64_data)
                .ctx("uint64_data")?,
            12 => m.doc_string = r.string(f).ctx("doc_string")?,
            13 => push_message(
                r,
                f,
                depth,
                &mut m.external_data,
                "external_data",
                merge_string_entry,
            )?,
            14 => {
                let at = r.offset();
                m.data_location = match r.int32(f).ctx("data_location")? {
                    0 => DataLocation::Default,
                    1 => DataLocation::External,
                    v => {
                        return Err(DecodeError::new(format!("unknown data location {v}"), at))
                            .ctx("data_location")
                    }
                };
            }
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

fn merge_sparse_tensor(r: &mut Reader<'_>, m: &mut SparseTensorProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => merge_opt(r, f, depth, &mut m.values, "values", merge_tensor)?,
            2 => merge_opt(r, f, depth, &mut m.indices, "indices", merge_tensor)?,
            3 => r.repeated_int64(f, &mut m.dims).ctx("dims")?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

fn merge_value_info(r: &mut Reader<'_>, m: &mut ValueInfoProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.name = r.string(f).ctx("name")?,
            2 => merge_opt(r, f, depth, &mut m.r#type, "type", merge_type)?,
            3 => m.doc_string = r.string(f).ctx("doc_string")?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

/// The fields of `TypeProto.Tensor` and `TypeProto.SparseTensor`.
#[derive(Default)]
struct TensorTypeFields {
    elem_type: i32,
    shape: Option<Vec<DimProto>>,
}

fn merge_tensor_type(r: &mut Reader<'_>, m: &mut TensorTypeFields, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.elem_type = r.int32(f).ctx("elem_type")?,
            2 => merge_opt(r, f, depth, &mut m.shape, "shape", merge_shape)?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

fn merge_shape(r: &mut Reader<'_>, dims: &mut Vec<DimProto>, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => {
                let mut d = DimProto::Unknown;
                r.message(f, depth, &mut d, merge_dim)
                    .ctx_at("dim", dims.len())?;
                dims.push(d);
            }
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

fn merge_dim(r: &mut Reader<'_>, d: &mut DimProto, _depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => *d = DimProto::Value(r.int64(f).ctx("dim_value")?),
            2 => *d = DimProto::Param(r.string(f).ctx("dim_param")?),
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

/// A `TypeProto.Sequence` / `TypeProto.Optional` body: `elem_type` (1).
fn merge_elem_type(r: &mut Reader<'_>, m: &mut Option<Box<TypeProto>>, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => merge_boxed(r, f, depth, m, "elem_type", merge_type)?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

#[derive(Default)]
struct MapTypeFields {
    key_type: i32,
    value_type: Option<Box<TypeProto>>,
}

fn merge_map_type(r: &mut Reader<'_>, m: &mut MapTypeFields, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.key_type = r.int32(f).ctx("key_type")?,
            2 => merge_boxed(r, f, depth, &mut m.value_type, "value_type", merge_type)?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

/// `TypeProto`: the `value` oneof merges when the same member repeats and is replaced when
/// another member follows, as protobuf specifies.
pub fn merge_type(r: &mut Reader<'_>, m: &mut TypeProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 | 8 => {
                let sparse = f.number == 8;
                let mut t = match m.value.take() {
                    Some(TypeValue::Tensor { elem_type, shape }) if !sparse => {
                        TensorTypeFields { elem_type, shape }
                    }
                    Some(TypeValue::SparseTensor { elem_type, shape }) if sparse => {
                        TensorTypeFields { elem_type, shape }
                    }
                    _ => TensorTypeFields::default(),
                };
                let name = if sparse {
                    "sparse_tensor_type"
                } else {
                    "tensor_type"
                };
                r.message(f, depth, &mut t, merge_tensor_type).ctx(name)?;
                let TensorTypeFields { elem_type, shape } = t;
                m.value = Some(if sparse {
                    TypeValue::SparseTensor { elem_type, shape }
                } else {
                    TypeValue::Tensor { elem_type, shape }
                });
            }
            4 => {
                let mut elem = match m.value.take() {
                    Some(TypeValue::Sequence(e)) => e,
                    _ => None,
                };
                r.message(f, depth, &mut elem, merge_elem_type)
                    .ctx("sequence_type")?;
                m.value = Some(TypeValue::Sequence(elem));
            }
            5 => {
                let mut t = match m.value.take() {
                    Some(TypeValue::Map {
                        key_type,
                        value_type,
                    }) => MapTypeFields {
                        key_type,
                        value_type,
                    },
                    _ => MapTypeFields::default(),
                };
                r.message(f, depth, &mut t, merge_map_type)
                    .ctx("map_type")?;
                m.value = Some(TypeValue::Map {
                    key_type: t.key_type,
                    value_type: t.value_type,
                });
            }
            6 => m.denotation = r.string(f).ctx("denotation")?,
            9 => {
                let mut elem = match m.value.take() {
                    Some(TypeValue::Optional(e)) => e,
                    _ => None,
                };
                r.message(f, depth, &mut elem, merge_elem_type)
                    .ctx("optional_type")?;
                m.value = Some(TypeValue::Optional(elem));
            }
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

fn merge_function(r: &mut Reader<'_>, m: &mut FunctionProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.name = r.string(f).ctx("name")?,
            4 => push_string(r, f, &mut m.input, "input")?,
            5 => push_string(r, f, &mut m.output, "output")?,
            6 => push_string(r, f, &mut m.attribute, "attribute")?,
            7 => push_message(r, f, depth, &mut m.node, "node", merge_node)?,
            8 => m.doc_string = r.string(f).ctx("doc_string")?,
            9 => push_message(
                r,
                f,
                depth,
                &mut m.opset_import,
                "opset_import",
                merge_opset,
            )?,
            10 => m.domain = r.string(f).ctx("domain")?,
            11 => push_message(
                r,
                f,
                depth,
                &mut m.attribute_proto,
                "attribute_proto",
                merge_attribute,
            )?,
            13 => m.overload = r.string(f).ctx("overload")?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

pub fn merge_sequence(r: &mut Reader<'_>, m: &mut SequenceProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.name = r.string(f).ctx("name")?,
            2 => m.elem_type = r.int32(f).ctx("elem_type")?,
            3 => push_message(
                r,
                f,
                depth,
                &mut m.tensor_values,
                "tensor_values",
                merge_tensor,
            )?,
            4 => push_message(
                r,
                f,
                depth,
                &mut m.sparse_tensor_values,
                "sparse_tensor_values",
                merge_sparse_tensor,
            )?,
            5 => push_message(
                r,
                f,
                depth,
                &mut m.sequence_values,
                "sequence_values",
                merge_sequence,
            )?,
            6 => push_message(r, f, depth, &mut m.map_values, "map_values", merge_map)?,
            7 => push_message(
                r,
                f,
                depth,
                &mut m.optional_values,
                "optional_values",
                merge_optional,
            )?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

pub fn merge_map(r: &mut Reader<'_>, m: &mut MapProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.name = r.string(f).ctx("name")?,
            2 => m.key_type = r.int32(f).ctx("key_type")?,
            3 => r.repeated_int64(f, &mut m.keys).ctx("keys")?,
            4 => push_bytes(r, f, &mut m.string_keys, "string_keys")?,
            5 => merge_opt(r, f, depth, &mut m.values, "values", merge_sequence)?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

pub fn merge_optional(r: &mut Reader<'_>, m: &mut OptionalProto, depth: u32) -> Result<()> {
    while let Some(f) = r.field()? {
        match f.number {
            1 => m.name = r.string(f).ctx("name")?,
            2 => m.elem_type = r.int32(f).ctx("elem_type")?,
            3 => merge_opt(
                r,
                f,
                depth,
                &mut m.tensor_value,
                "tensor_value",
                merge_tensor,
            )?,
            4 => merge_opt(
                r,
                f,
                depth,
                &mut m.sparse_tensor_value,
                "sparse_tensor_value",
                merge_sparse_tensor,
            )?,
            5 => merge_boxed(
                r,
                f,
                depth,
                &mut m.sequence_value,
                "sequence_value",
                merge_sequence,
            )?,
            6 => merge_opt(r, f, depth, &mut m.map_value, "map_value", merge_map)?,
            7 => merge_boxed(
                r,
                f,
                depth,
                &mut m.optional_value,
                "optional_value",
                merge_optional,
            )?,
            _ => r.skip(f)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::proto::*;
    use crate::testenc::{tensor, Msg};
    use crate::{decode_model, decode_type};

    fn dim_value(n: i64) -> Msg {
        Msg::new().int(1, n)
    }

    fn tensor_type(elem: i32, dims: Vec<Msg>) -> Msg {
        let shape = dims.into_iter().fold(Msg::new(), |s, d| s.msg(1, d));
        Msg::new().msg(1, Msg::new().int(1, i64::from(elem)).msg(2, shape))
    }

    fn sample_model() -> Vec<u8> {
        let attr_alpha = Msg::new().str(1, "alpha").float(2, 0.5).int(20, 1);
        // ints both unpacked and packed in one attribute: 1, then [2, -3]
        let attr_axes = Msg::new()
            .str(1, "axes")
            .int(8, 1)
            .packed_ints(8, &[2, -3])
            .int(20, 7);
        let node = Msg::new()
            .str(1, "x")
            .str(1, "w")
            .str(2, "y")
            .str(3, "n0")
            .str(4, "Add")
            .msg(5, attr_alpha)
            .msg(5, attr_axes);
        let init = tensor("w", 1, &[2]).bytes(9, &[0, 0, 128, 63, 0, 0, 0, 64]);
        let input = Msg::new().str(1, "x").msg(
            2,
            tensor_type(
                1,
                vec![
                    Msg::new().str(2, "batch"),
                    dim_value(2),
                    Msg::new(),
                    dim_value(-1),
                ],
            ),
        );
        let graph = Msg::new()
            .msg(1, node)
            .str(2, "g")
            .msg(5, init)
            .msg(11, input);
        Msg::new()
            .int(1, 8)
            .str(2, "test")
            .msg(8, Msg::new().str(1, "").int(2, 17))
            .msg(7, graph)
            .build()
    }

    #[test]
    fn shared_decoding_refers_to_the_same_bytes() {
        let bytes = sample_model();
        let copied = decode_model(&bytes).unwrap();
        let buf = std::sync::Arc::new(bytes);
        let base = buf.as_ptr() as usize;
        let shared = crate::decode_model_shared(buf.clone()).unwrap();
        assert_eq!(shared, copied);
        let raw = &shared.graph.as_ref().unwrap().initializer[0].raw_data;
        assert_eq!(raw.len(), 8);
        let start = raw.as_ptr() as usize;
        assert!(start >= base && start + 8 <= base + buf.len(), "raw_data is not a copy");
    }

    #[test]
    fn decodes_a_hand_built_model() {
        let m = decode_model(&sample_model()).unwrap();
        assert_eq!(m.ir_version, 8);
        assert_eq!(m.producer_name, "test");
        assert_eq!(
            m.opset_import,
            vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17
            }]
        );
        let g = m.graph.unwrap();
        assert_eq!(g.name, "g");
        let n = &g.node[0];
        assert_eq!(
            (n.input.clone(), n.output.clone()),
            (vec!["x".into(), "w".into()], vec!["y".into()])
        );
        assert_eq!(n.op_type, "Add");
        assert_eq!(n.attribute[0].r#type, AttributeType::Float);
        assert_eq!(n.attribute[0].f, 0.5);
        assert_eq!(n.attribute[1].r#type, AttributeType::Ints);
        assert_eq!(n.attribute[1].ints, vec![1, 2, -3]);
        assert_eq!(g.initializer[0].dims, vec![2]);
        assert_eq!(g.initializer[0].raw_data.len(), 8);
        let ty = g.input[0].r#type.as_ref().unwrap();
        assert_eq!(
            ty.value,
            Some(TypeValue::Tensor {
                elem_type: 1,
                shape: Some(vec![
                    DimProto::Param("batch".into()),
                    DimProto::Value(2),
                    DimProto::Unknown,
                    DimProto::Value(-1)
                ]),
            })
        );
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let noise = |m: Msg| {
            m.int(99, 5)
                .fixed32(98, 7)
                .fixed64(97, 9)
                .str(96, "x")
                .msg(95, Msg::new().int(1, 1))
        };
        let graph = noise(Msg::new().str(2, "g"));
        let bytes = noise(Msg::new()).msg(7, graph).int(1, 9).build();
        let m = decode_model(&bytes).unwrap();
        assert_eq!(m.ir_version, 9);
        assert_eq!(m.graph.unwrap().name, "g");
    }

    #[test]
    fn repeated_singular_messages_merge() {
        let bytes = Msg::new()
            .msg(
                7,
                Msg::new().str(2, "first").msg(1, Msg::new().str(4, "Relu")),
            )
            .msg(
                7,
                Msg::new().str(10, "doc").msg(1, Msg::new().str(4, "Neg")),
            )
            .build();
        let g = decode_model(&bytes).unwrap().graph.unwrap();
        assert_eq!(g.name, "first");
        assert_eq!(g.doc_string, "doc");
        assert_eq!(g.node.len(), 2);
    }

    #[test]
    fn wrong_wire_type_is_an_error_with_a_path() {
        let node = Msg::new().int(4, 3); // op_type as a varint
        let bytes = Msg::new()
            .msg(7, Msg::new().msg(1, Msg::new()).msg(1, node))
            .build();
        let e = decode_model(&bytes).unwrap_err().0;
        assert!(
            e.contains("wire type varint, expected length-delimited"),
            "{e}"
        );
        assert!(e.ends_with("in ModelProto.graph.node[1].op_type"), "{e}");
    }

    #[test]
    fn truncation_reports_offset_and_field() {
        let bytes = sample_model();
        for cut in 0..bytes.len() {
            let _ = decode_model(&bytes[..cut]);
        }
        let e = decode_model(&bytes[..bytes.len() - 1]).unwrap_err().0;
        assert!(
            e.contains("at byte") && e.contains("ModelProto.graph"),
            "{e}"
        );
        let e = decode_model(&[0x08, 0x80]).unwrap_err().0;
        assert_eq!(e, "truncated varint at byte 1 in ModelProto.ir_version");
    }

    #[test]
    fn invalid_utf8_in_a_string_field_is_an_error() {
        let bytes = Msg::new().bytes(2, &[0xff, 0xfe]).build();
        let e = decode_model(&bytes).unwrap_err().0;
        assert!(e.contains("UTF-8") && e.contains("producer_name"), "{e}");
    }

    fn nested_sequence_type(levels: usize) -> Vec<u8> {
        let mut t = tensor_type(1, vec![]);
        for _ in 0..levels {
            t = Msg::new().msg(4, Msg::new().msg(1, t));
        }
        t.build()
    }

    #[test]
    fn nesting_is_limited() {
        assert!(decode_type(&nested_sequence_type(20)).is_ok());
        let e = decode_type(&nested_sequence_type(100)).unwrap_err().0;
        assert!(e.contains("nest deeper"), "{e}");
        // Subgraphs inside attributes inside graphs.
        let mut g = Msg::new().str(2, "leaf");
        for _ in 0..40 {
            let attr = Msg::new().str(1, "body").msg(6, g).int(20, 5);
            g = Msg::new().msg(1, Msg::new().str(4, "Loop").msg(5, attr));
        }
        let e = decode_model(&Msg::new().msg(7, g).build()).unwrap_err().0;
        assert!(e.contains("nest deeper"), "{e}");
    }

    #[test]
    fn type_oneof_merges_and_replaces() {
        let t = tensor_type(1, vec![dim_value(3)])
            .msg(1, Msg::new().int(1, 7))
            .build();
        let tp = decode_type(&t).unwrap();
        assert_eq!(
            tp.value,
            Some(TypeValue::Tensor {
                elem_type: 7,
                shape: Some(vec![DimProto::Value(3)])
            })
        );
        let t = tensor_type(1, vec![])
            .msg(9, Msg::new().msg(1, tensor_type(7, vec![])))
            .build();
        let tp = decode_type(&t).unwrap();
        assert!(matches!(tp.value, Some(TypeValue::Optional(Some(_)))));
        let map = Msg::new()
            .msg(5, Msg::new().int(1, 8).msg(2, tensor_type(1, vec![])))
            .build();
        assert!(matches!(
            decode_type(&map).unwrap().value,
            Some(TypeValue::Map {
                key_type: 8,
                value_type: Some(_)
            })
        ));
    }

    #[test]
    fn typed_tensor_fields_packed_and_unpacked() {
        let t = tensor("t", 1, &[3])
            .float(4, 1.0)
            .packed_floats(4, &[2.0, 3.0])
            .int(5, -1)
            .packed_ints(7, &[i64::MIN, i64::MAX])
            .fixed64(10, 2.5f64.to_bits())
            .packed_doubles(10, &[3.5])
            .varint(11, u64::MAX)
            .str(6, "s")
            .build();
        let t = crate::decode_tensor(&t).unwrap();
        assert_eq!(t.float_data, vec![1.0, 2.0, 3.0]);
        assert_eq!(t.int32_data, vec![-1]);
        assert_eq!(t.int64_data, vec![i64::MIN, i64::MAX]);
        assert_eq!(t.double_data, vec![2.5, 3.5]);
        assert_eq!(t.uint64_data, vec![u64::MAX]);
        assert_eq!(t.string_data, vec![b"s".to_vec()]);
    }

    #[test]
    fn malformed_packed_fixed_and_groups_are_errors() {
        let t = tensor("t", 1, &[1]).bytes(4, &[0, 0, 128]).build();
        assert!(crate::decode_tensor(&t)
            .unwrap_err()
            .0
            .contains("multiple of 4"));
        assert!(crate::decode_tensor(&[0x1b, 0x1c])
            .unwrap_err()
            .0
            .contains("group"));
        let bad_location = tensor("t", 1, &[1]).int(14, 5).build();
        assert!(crate::decode_tensor(&bad_location)
            .unwrap_err()
            .0
            .contains("data location"));
    }
}
