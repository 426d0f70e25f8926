//! kiln-onnx: ONNX protobuf → plain Rust structs, with no protoc and no generated code.
//!
//! `proto` mirrors the messages; `decode` is a small hand-written protobuf reader that never
//! panics on malformed input; `tensor` turns `TensorProto`/`SequenceProto`/... into kiln-tensor
//! values (raw, typed and external data). Depends on kiln-tensor only (plus memmap2 natively).

pub mod proto;
