//! Fuzz target: decode arbitrary bytes as an ONNX model and convert what decodes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = kiln_onnx::decode_model(data) else {
        return;
    };
    let Some(graph) = &model.graph else { return };
    for t in &graph.initializer {
        let _ = kiln_onnx::tensor_from_proto(t, None);
    }
    for vi in graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
    {
        if let Some(tp) = &vi.r#type {
            let _ = kiln_onnx::value_type_from_proto(tp);
        }
    }
});
