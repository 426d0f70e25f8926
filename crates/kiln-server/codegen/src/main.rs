//! Regenerates `src/grpc/inference.rs` from `proto/grpc_service.proto` with a vendored protoc.
//! Run from anywhere: `cargo run --manifest-path crates/kiln-server/codegen/Cargo.toml`.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let protoc = match protoc_bin_vendored::protoc_bin_path() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("codegen: no vendored protoc for this platform: {e}");
            std::process::exit(2);
        }
    };
    std::env::set_var("PROTOC", protoc);
    let out = root.join("src/grpc");
    let proto = root.join("proto/grpc_service.proto");
    let include = root.join("proto");
    if let Err(e) = tonic_build::configure().build_client(false).build_server(true).out_dir(&out).compile_protos(&[proto], &[include]) {
        eprintln!("codegen: {e}");
        std::process::exit(2);
    }
    println!("wrote {}", out.join("inference.rs").display());
}
