//! End-to-end tests of the `kiln` binary: the CLI contract and bad input (one line, exit code 2).
//! The models come from models/make_bad_models.py; the reference output from numpy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("data").join(name)
}

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).output().expect("run kiln")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-cli-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Exit code 2, exactly one line on stderr that contains every `needles`, no panic text.
fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line, got: {err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr should mention '{n}': {err}");
    }
}

fn run_model(model: &str, input: &str, tag: &str) -> (Output, PathBuf) {
    let out_dir = tmpdir(tag);
    let m = data(model);
    let x = format!("x={}", data(input).display());
    let out = kiln(&["run", m.to_str().unwrap(), "--input", &x, "--output-dir", out_dir.to_str().unwrap()]);
    (out, out_dir)
}

fn read_f32_npy(p: &Path) -> (Vec<usize>, Vec<f32>) {
    let t = kiln_tensor::npy::read_npy(&std::fs::read(p).unwrap()).unwrap();
    (t.shape().to_vec(), t.as_slice::<f32>().unwrap().to_vec())
}

#[test]
fn run_writes_npy_and_outputs_json_matching_numpy() {
    let (out, dir) = run_model("mlp.onnx", "mlp_x.npy", "ok");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("outputs.json")).unwrap()).unwrap();
    assert_eq!(index["y"]["file"], "y.npy");
    assert_eq!(index["y"]["dtype"], "float32");
    assert_eq!(index["y"]["shape"], serde_json::json!([2, 3]));
    let (shape, got) = read_f32_npy(&dir.join("y.npy"));
    let (want_shape, want) = read_f32_npy(&data("mlp_y_ref.npy"));
    assert_eq!(shape, want_shape);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6 + 1e-5 * w.abs(), "{g} vs {w}");
    }
}

#[test]
fn inspect_reports_io_and_ops() {
    let out = kiln(&["inspect", data("mlp.onnx").to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["inputs"][0]["name"], "x");
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!(["batch", 4]));
    assert_eq!(v["parameters"], 15);
    assert_eq!(v["supported"], true);
}

#[test]
fn inspect_lists_every_unsupported_node() {
    let out = kiln(&["inspect", data("unsupported.onnx").to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["unsupported"].as_array().unwrap().iter().map(|u| u["node"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["frob_a", "frob_b"]);
}

#[test]
fn unsupported_ops_are_all_named_at_load() {
    let (out, _) = run_model("unsupported.onnx", "mlp_x.npy", "unsup");
    assert_clean_failure(&out, &["frob_a", "FrobnicateA", "frob_b", "FrobnicateB"]);
}

#[test]
fn truncated_model() {
    let (out, _) = run_model("truncated.onnx", "mlp_x.npy", "trunc");
    assert_clean_failure(&out, &["truncated.onnx"]);
}

#[test]
fn garbage_model() {
    let (out, _) = run_model("garbage.onnx", "mlp_x.npy", "garbage");
    assert_clean_failure(&out, &["garbage.onnx"]);
}

#[test]
fn missing_model_file() {
    let (out, _) = run_model("no_such_model.onnx", "mlp_x.npy", "missing");
    assert_clean_failure(&out, &["no_such_model.onnx"]);
}

#[test]
fn cycle() {
    let (out, _) = run_model("cycle.onnx", "mlp_x.npy", "cycle");
    assert_clean_failure(&out, &["cycle"]);
}

#[test]
fn missing_initializer() {
    let (out, _) = run_model("missing_initializer.onnx", "mlp_x.npy", "missinginit");
    assert_clean_failure(&out, &["missing_weight"]);
}

#[test]
fn tensor_too_large_to_allocate() {
    let (out, _) = run_model("huge_tensor.onnx", "mlp_x.npy", "huge");
    assert_clean_failure(&out, &["too large"]);
}

#[test]
fn shapes_that_do_not_fit() {
    let (out, _) = run_model("shape_mismatch.onnx", "mlp_x.npy", "shape");
    assert_clean_failure(&out, &["bad_add", "broadcast"]);
}

#[test]
fn wrong_input_dtype() {
    let (out, _) = run_model("mlp.onnx", "mlp_x_f64.npy", "dtype");
    assert_clean_failure(&out, &["'x'", "float", "double"]);
}

#[test]
fn wrong_input_shape() {
    let (out, _) = run_model("mlp.onnx", "mlp_x_badshape.npy", "badshape");
    assert_clean_failure(&out, &["'x'", "shape"]);
}

#[test]
fn wrong_input_name() {
    let dir = tmpdir("name");
    let x = format!("nope={}", data("mlp_x.npy").display());
    let out = kiln(&["run", data("mlp.onnx").to_str().unwrap(), "--input", &x, "--output-dir", dir.to_str().unwrap()]);
    assert_clean_failure(&out, &["nope"]);
}

#[test]
fn missing_input() {
    let dir = tmpdir("noinput");
    let out = kiln(&["run", data("mlp.onnx").to_str().unwrap(), "--output-dir", dir.to_str().unwrap()]);
    assert_clean_failure(&out, &["'x'", "missing"]);
}

#[test]
fn input_file_not_npy() {
    let dir = tmpdir("notnpy");
    let x = format!("x={}", data("mlp.onnx").display());
    let out = kiln(&["run", data("mlp.onnx").to_str().unwrap(), "--input", &x, "--output-dir", dir.to_str().unwrap()]);
    assert_clean_failure(&out, &["mlp.onnx"]);
}

#[test]
fn unknown_command_and_option() {
    assert_clean_failure(&kiln(&["frobnicate"]), &["frobnicate"]);
    assert_eq!(kiln(&["run", "m.onnx", "--bogus"]).status.code(), Some(2));
}

#[test]
fn external_data_is_loaded_relative_to_the_model() {
    let (out, dir) = run_model("mlp_external.onnx", "mlp_x.npy", "external");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, got) = read_f32_npy(&dir.join("y.npy"));
    let (_, want) = read_f32_npy(&data("mlp_y_ref.npy"));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6 + 1e-5 * w.abs(), "{g} vs {w}");
    }
}

/// A reader that stops early (`kiln bench ... | head`) ends kiln quietly, without the panic
/// report of a failed print.
#[cfg(unix)]
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let model = data("mlp.onnx");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["inspect", model.to_str().expect("utf-8 path")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kiln");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for kiln");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("internal error"), "stderr: {stderr}");
    assert!(out.status.success() || out.status.signal() == Some(13), "status {:?}", out.status);
}
