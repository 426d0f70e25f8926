//! kiln-onnx: ONNX protobuf → plain Rust structs, with no protoc and no generated code.
//!
//! `proto` mirrors the messages; `wire` and `decode` form a small hand-written protobuf reader
//! that never panics on malformed input; `tensor` turns `TensorProto`/`SequenceProto`/... into
//! kiln-tensor values (raw, typed and external data). Depends on kiln-tensor only (plus
//! memmap2 natively).

use std::fmt;
use std::path::{Path, PathBuf};

mod decode;
pub mod proto;
pub mod tensor;
#[cfg(test)]
mod testenc;
mod wire;

pub use proto::{
    AttributeProto, AttributeType, ByteSource, DataLocation, DimProto, FunctionProto, GraphProto, MapProto,
    ModelProto, NodeProto, OperatorSetIdProto, OptionalProto, RawData, SequenceProto, SharedBytes, SparseTensorProto,
    StringStringEntryProto, TensorProto, TypeProto, TypeValue, ValueInfoProto,
};
pub use tensor::{
    tensor_from_proto, value_from_file_bytes, value_from_map, value_from_optional,
    value_from_sequence, value_type_from_proto,
};
pub use wire::MAX_DEPTH;

/// Why an ONNX file or message could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxError(pub String);

impl fmt::Display for OnnxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OnnxError {}

fn decode_as<T: Default>(
    bytes: &[u8],
    root: &str,
    merge: fn(&mut wire::Reader<'_>, &mut T, u32) -> Result<(), wire::DecodeError>,
) -> Result<T, OnnxError> {
    decode::decode_root(bytes, merge).map_err(|e| OnnxError(e.render(root)))
}

/// Decodes a serialized `ModelProto` (the contents of a `.onnx` file).
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    decode_as(bytes, "ModelProto", decode::merge_model)
}

/// Decodes a serialized `ModelProto` held in shared memory without copying the initializers'
/// `raw_data`: it refers into `bytes`, which stays alive as long as the decoded model does.
pub fn decode_model_shared(bytes: SharedBytes) -> Result<ModelProto, OnnxError> {
    decode::decode_root_shared(&bytes, decode::merge_model).map_err(|e| OnnxError(e.render("ModelProto")))
}

/// Decodes a serialized `TensorProto` (a backend-test `.pb` file holding a tensor).
pub fn decode_tensor(bytes: &[u8]) -> Result<TensorProto, OnnxError> {
    decode_as(bytes, "TensorProto", decode::merge_tensor)
}

/// Decodes a serialized `SequenceProto`.
pub fn decode_sequence(bytes: &[u8]) -> Result<SequenceProto, OnnxError> {
    decode_as(bytes, "SequenceProto", decode::merge_sequence)
}

/// Decodes a serialized `MapProto`.
pub fn decode_map(bytes: &[u8]) -> Result<MapProto, OnnxError> {
    decode_as(bytes, "MapProto", decode::merge_map)
}

/// Decodes a serialized `OptionalProto`.
pub fn decode_optional(bytes: &[u8]) -> Result<OptionalProto, OnnxError> {
    decode_as(bytes, "OptionalProto", decode::merge_optional)
}

/// Decodes a serialized `TypeProto`.
pub fn decode_type(bytes: &[u8]) -> Result<TypeProto, OnnxError> {
    decode_as(bytes, "TypeProto", decode::merge_type)
}

/// The directory external data of the model at `path` is relative to.
pub fn model_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads and decodes a `.onnx` file. Natively the file is memory-mapped and the main graph's
/// initializers refer into the map (see `decode_model_shared`): the map lives as long as the
/// decoded model, and `RawData::release` gives pages already converted back to the OS, so
/// loading a model does not hold a second copy of its weights. Pass `model_dir(path)` to
/// `tensor_from_proto` to resolve the initializers' external data.
pub fn load_model_file(path: &Path) -> Result<ModelProto, OnnxError> {
    let shown = path.display();
    let fail = |what: &str, e: std::io::Error| {
        OnnxError(format!("cannot {what} model file '{shown}': {e}"))
    };
    let decoded = |bytes: SharedBytes| {
        if bytes.bytes().is_empty() {
            return Err(OnnxError(format!("model file '{shown}' is empty")));
        }
        decode_model_shared(bytes).map_err(|e| OnnxError(format!("model file '{shown}': {e}")))
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        let file = std::fs::File::open(path).map_err(|e| fail("open", e))?;
        let len = file.metadata().map_err(|e| fail("read", e))?.len();
        if len == 0 {
            return decoded(std::sync::Arc::new(Vec::new()));
        }
        // SAFETY: the map is read-only. As with any file-backed map, another process truncating
        // the file while the model is being loaded is outside what Kiln can guard against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| fail("map", e))?;
        decoded(std::sync::Arc::new(MappedFile(map)))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let bytes = std::fs::read(path).map_err(|e| fail("read", e))?;
        decoded(std::sync::Arc::new(bytes))
    }
}

/// A read-only file map as a `ByteSource`.
#[cfg(not(target_arch = "wasm32"))]
struct MappedFile(memmap2::Mmap);

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.0
    }

    #[cfg(unix)]
    fn release(&self, range: std::ops::Range<usize>) {
        // Whole pages inside the range only, so a neighbour's bytes are not dropped early.
        const PAGE: usize = 4096;
        let start = range.start.div_ceil(PAGE) * PAGE;
        let end = range.end.min(self.0.len()) / PAGE * PAGE;
        if end > start {
            // SAFETY: the map is read-only and file-backed; MADV_DONTNEED only drops the
            // pages from this process, and a later read faults them in from the file again.
            let _ = unsafe {
                self.0.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }

    #[cfg(target_os = "linux")]
    fn prefetch(&self, range: std::ops::Range<usize>) {
        const PAGE: usize = 4096;
        let start = range.start / PAGE * PAGE;
        let end = range.end.min(self.0.len());
        // Small ranges are cheaper to fault in than to ask for.
        if end > start + 16 * PAGE {
            // A hint only: kernels without MADV_POPULATE_READ (before 5.14) refuse it and the
            // pages are faulted in as they are read.
            let _ = self.0.advise_range(memmap2::Advice::PopulateRead, start, end - start);
        }
    }
}
