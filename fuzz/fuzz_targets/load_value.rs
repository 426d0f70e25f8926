//! Fuzz target: decode arbitrary bytes as a backend-test value file (tensor, sequence, map or
//! optional, chosen by the first byte) and convert it to a Kiln value.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let _ = match kind % 4 {
        0 => kiln_onnx::decode_tensor(rest)
            .and_then(|t| kiln_onnx::tensor_from_proto(&t, None).map(drop)),
        1 => kiln_onnx::decode_sequence(rest)
            .and_then(|s| kiln_onnx::value_from_sequence(&s).map(drop)),
        2 => kiln_onnx::decode_map(rest).and_then(|m| kiln_onnx::value_from_map(&m).map(drop)),
        _ => kiln_onnx::decode_optional(rest)
            .and_then(|o| kiln_onnx::value_from_optional(&o).map(drop)),
    };
});
