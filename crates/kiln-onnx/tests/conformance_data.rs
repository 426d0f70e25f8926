//! Decodes every model and test-data file of the ONNX backend node tests
//! (`conformance/data/node`, written by `conformance/generate.py`) and spot-checks values.

use std::path::{Path, PathBuf};

use kiln_onnx::{
    decode_model, load_model_file, model_dir, tensor_from_proto, value_from_file_bytes,
    value_type_from_proto, GraphProto, ModelProto, OnnxError, TensorProto, TypeProto,
};
use kiln_tensor::{f16, Tensor, Value};

/// Data types Kiln does not support; an error about one of them must name it.
const UNSUPPORTED: &[&str] = &[
    "complex64",
    "complex128",
    "float8e4m3fn",
    "float8e4m3fnuz",
    "float8e5m2",
    "float8e5m2fnuz",
    "float8e8m0",
    "uint4",
    "int4",
    "float4e2m1",
    "uint2",
    "int2",
];

fn node_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/data/node");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "skipping: {} does not exist (run conformance/generate.py)",
            dir.display()
        );
        None
    }
}

fn is_unsupported_dtype_error(e: &OnnxError) -> bool {
    UNSUPPORTED.iter().any(|name| {
        e.0.contains(&format!("data type {name}, which Kiln does not support"))
    })
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Every dense tensor in a graph: initializers and tensor attributes, in subgraphs too.
fn graph_tensors<'a>(g: &'a GraphProto, out: &mut Vec<&'a TensorProto>) {
    out.extend(&g.initializer);
    for n in &g.node {
        for a in &n.attribute {
            out.extend(a.t.as_ref());
            out.extend(&a.tensors);
            for sub in a.g.iter().chain(&a.graphs) {
                graph_tensors(sub, out);
            }
        }
    }
}

fn model_tensors(m: &ModelProto) -> Vec<&TensorProto> {
    let mut out = Vec::new();
    if let Some(g) = &m.graph {
        graph_tensors(g, &mut out);
    }
    for f in &m.functions {
        for n in &f.node {
            for a in &n.attribute {
                out.extend(a.t.as_ref());
            }
        }
    }
    out
}

fn load(case: &str) -> Option<(ModelProto, PathBuf)> {
    let dir = node_dir()?.join(case);
    Some((load_model_file(&dir.join("model.onnx")).unwrap(), dir))
}

fn data_value(dir: &Path, file: &str, declared: &TypeProto) -> Value {
    let bytes = std::fs::read(dir.join("test_data_set_0").join(file)).unwrap();
    value_from_file_bytes(&bytes, declared).unwrap()
}

fn io_type(model: &ModelProto, output: bool, i: usize) -> &TypeProto {
    let g = model.graph.as_ref().unwrap();
    let list = if output { &g.output } else { &g.input };
    list[i].r#type.as_ref().unwrap()
}

fn tensor(v: Value) -> Tensor {
    v.into_tensor().expect("a tensor value")
}

#[test]
fn every_node_test_decodes() {
    let Some(root) = node_dir() else { return };
    let mut failures = Vec::new();
    let (mut models, mut files, mut unsupported) = (0, 0, 0);
    let mut check = |what: String, r: Result<(), OnnxError>, unsupported: &mut usize| match r {
        Ok(()) => {}
        Err(e) if is_unsupported_dtype_error(&e) => *unsupported += 1,
        Err(e) => failures.push(format!("{what}: {e}")),
    };
    for case in sorted_entries(&root) {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let model = match load_model_file(&case.join("model.onnx")) {
            Ok(m) => m,
            Err(e) => {
                check(format!("{name}/model.onnx"), Err(e), &mut unsupported);
                continue;
            }
        };
        models += 1;
        let dir = model_dir(&case.join("model.onnx"));
        for t in model_tensors(&model) {
            let r = tensor_from_proto(t, Some(&dir)).map(drop);
            check(format!("{name}: tensor '{}'", t.name), r, &mut unsupported);
        }
        let graph = model.graph.as_ref().unwrap();
        for vi in graph.input.iter().chain(&graph.output) {
            let r = value_type_from_proto(vi.r#type.as_ref().unwrap()).map(drop);
            check(
                format!("{name}: type of '{}'", vi.name),
                r,
                &mut unsupported,
            );
        }
        for set in sorted_entries(&case).into_iter().filter(|p| p.is_dir()) {
            for file in sorted_entries(&set) {
                let fname = file.file_name().unwrap().to_string_lossy().into_owned();
                let (list, idx) = if let Some(i) = fname.strip_prefix("input_") {
                    (&graph.input, i)
                } else if let Some(i) = fname.strip_prefix("output_") {
                    (&graph.output, i)
                } else {
                    continue;
                };
                let idx: usize = idx.trim_end_matches(".pb").parse().unwrap();
                let declared = list[idx].r#type.as_ref().unwrap();
                let bytes = std::fs::read(&file).unwrap();
                files += 1;
                let r = value_from_file_bytes(&bytes, declared).map(drop);
                check(
                    format!("{}", file.strip_prefix(&root).unwrap().display()),
                    r,
                    &mut unsupported,
                );
            }
        }
    }
    println!(
        "decoded {models} models and {files} data files; {unsupported} unsupported-dtype errors"
    );
    assert!(models > 1000, "only {models} models found");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn float8_types_decode() {
    let Some((model, _dir)) = load("test_cast_FLOAT_to_FLOAT8E4M3FN") else {
        return;
    };
    let t = value_type_from_proto(io_type(&model, true, 0)).expect("float8e4m3fn is supported");
    assert_eq!(t.tensor_dtype(), Some(kiln_tensor::DType::F8E4M3FN));
}

#[test]
fn add_output_is_the_sum_of_its_inputs() {
    let Some((model, dir)) = load("test_add") else {
        return;
    };
    let a = tensor(data_value(&dir, "input_0.pb", io_type(&model, false, 0)));
    let b = tensor(data_value(&dir, "input_1.pb", io_type(&model, false, 1)));
    let y = tensor(data_value(&dir, "output_0.pb", io_type(&model, true, 0)));
    assert_eq!(a.shape(), &[3, 4, 5]);
    assert_eq!((b.shape(), y.shape()), (a.shape(), a.shape()));
    let (a, b, y) = (
        a.as_slice::<f32>().unwrap(),
        b.as_slice::<f32>().unwrap(),
        y.as_slice::<f32>().unwrap(),
    );
    for i in 0..y.len() {
        assert_eq!(y[i], a[i] + b[i], "element {i}");
    }
    assert!(a.iter().any(|&x| x != 0.0));
}

#[test]
fn relu_and_cast_to_float16_match_recomputed_values() {
    if let Some((model, dir)) = load("test_relu") {
        let x = tensor(data_value(&dir, "input_0.pb", io_type(&model, false, 0)));
        let y = tensor(data_value(&dir, "output_0.pb", io_type(&model, true, 0)));
        let want: Vec<f32> = x
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v.max(0.0))
            .collect();
        assert_eq!(y.as_slice::<f32>().unwrap(), &want[..]);
    }
    if let Some((model, dir)) = load("test_cast_FLOAT_to_FLOAT16") {
        let x = tensor(data_value(&dir, "input_0.pb", io_type(&model, false, 0)));
        let y = tensor(data_value(&dir, "output_0.pb", io_type(&model, true, 0)));
        assert_eq!(x.shape(), y.shape());
        let want: Vec<f16> = x
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|&v| f16::from_f32(v))
            .collect();
        let got = y.as_slice::<f16>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(g == w || (g.is_nan() && w.is_nan()), "{g} != {w}");
        }
    }
}

#[test]
fn string_concat_matches_recomputed_values() {
    let Some((model, dir)) = load("test_string_concat_utf8") else {
        return;
    };
    let a = tensor(data_value(&dir, "input_0.pb", io_type(&model, false, 0)));
    let b = tensor(data_value(&dir, "input_1.pb", io_type(&model, false, 1)));
    let y = tensor(data_value(&dir, "output_0.pb", io_type(&model, true, 0)));
    let a = a.as_slice::<String>().unwrap();
    let b = b.as_slice::<String>().unwrap();
    let want: Vec<String> = a.iter().zip(b).map(|(x, y)| format!("{x}{y}")).collect();
    assert_eq!(y.as_slice::<String>().unwrap(), &want[..]);
    assert!(want.iter().any(|s| !s.is_ascii()));
}

#[test]
fn sequence_insert_appends_the_tensor() {
    let Some((model, dir)) = load("test_sequence_insert_at_back") else {
        return;
    };
    let Value::Sequence { items: before, .. } =
        data_value(&dir, "input_0.pb", io_type(&model, false, 0))
    else {
        panic!("input_0 is not a sequence")
    };
    let inserted = data_value(&dir, "input_1.pb", io_type(&model, false, 1));
    let Value::Sequence { items: after, .. } =
        data_value(&dir, "output_0.pb", io_type(&model, true, 0))
    else {
        panic!("output_0 is not a sequence")
    };
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(after.last(), Some(&inserted));
}

#[test]
fn truncated_and_corrupted_models_are_errors_not_panics() {
    let Some(root) = node_dir() else { return };
    for case in [
        "test_add",
        "test_loop11",
        "test_if_seq",
        "test_scan9_sum",
        "test_constant",
    ] {
        let path = root.join(case).join("model.onnx");
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let full = decode_model(&bytes).unwrap();
        for cut in 0..bytes.len() {
            if let Ok(m) = decode_model(&bytes[..cut]) {
                assert_ne!(
                    m, full,
                    "{case}: prefix of {cut} bytes decoded to the full model"
                );
                for t in model_tensors(&m) {
                    let _ = tensor_from_proto(t, None);
                }
            }
        }
        // Deterministic pseudo-random byte corruption.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut b = bytes.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % b.len();
                b[i] = (state >> 32) as u8;
            }
            if let Ok(m) = decode_model(&b) {
                for t in model_tensors(&m) {
                    let _ = tensor_from_proto(t, None);
                }
                if let Some(g) = &m.graph {
                    for vi in g.input.iter().chain(&g.output) {
                        if let Some(tp) = &vi.r#type {
                            let _ = value_type_from_proto(tp);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn empty_optional_takes_its_element_type_from_the_declaration() {
    let Some((model, dir)) = load("test_optional_has_element_empty_optional_input") else {
        return;
    };
    let declared = io_type(&model, false, 0);
    let kiln_tensor::ValueType::Optional(want) = value_type_from_proto(declared).unwrap() else {
        panic!("input 0 is not declared optional")
    };
    assert_eq!(
        data_value(&dir, "input_0.pb", declared),
        Value::Optional {
            elem: *want,
            value: None
        }
    );
}
