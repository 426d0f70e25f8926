//! Model parity: every fixture in models/fixtures/MANIFEST.json, every data set, compared with
//! onnxruntime's outputs (made by models/export_fixtures.py).
//!
//! Floats: |actual - expected| <= ATOL + RTOL * |expected| elementwise, NaN equals NaN, infinities
//! must match exactly; other dtypes: equal values. Shapes and dtypes must be equal. All fixtures are
//! run; every failure is reported at the end, then the test fails if there was any.
//!
//! Environment:
//!   KILN_PARITY_FILTER=a,b   only fixtures whose name contains one of these substrings
//!   KILN_PARITY_LARGE=1      also run models/large (made by models/export_large.py), if present

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_engine::{Session, SessionOptions};
use kiln_tensor::npy::read_npy;
use kiln_tensor::{Tensor, TensorData, Value};

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-4;

// ---------------------------------------------------------------------------------------------
// A small JSON reader (the manifests are written by Python's json module).

#[derive(Debug, Clone)]
#[allow(dead_code)] // scalar payloads are parsed but only strings, arrays and objects are read
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_arr(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            _ => &[],
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON: {what} at byte {}", self.i))
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("unexpected literal")
        }
    }
    fn value(&mut self) -> Result<Json, String> {
        match self.peek() {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(items));
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return self.err("expected a key");
                    }
                    let k = self.string()?;
                    if self.peek() != Some(b':') {
                        return self.err("expected ':'");
                    }
                    self.i += 1;
                    let v = self.value()?;
                    items.push((k, v));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(items));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'n') => self.lit("null", Json::Null),
            Some(b'N') => self.lit("NaN", Json::Num(f64::NAN)),
            Some(b'I') => self.lit("Infinity", Json::Num(f64::INFINITY)),
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9' | b'I' | b'n' | b'f' | b'i' | b't' | b'y')
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                match text {
                    "-Infinity" => Ok(Json::Num(f64::NEG_INFINITY)),
                    _ => text.parse().map(Json::Num).or_else(|_| self.err("bad number")),
                }
            }
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else { return self.err("unterminated string") };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).or_else(|_| self.err("invalid UTF-8")),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else { return self.err("unterminated escape") };
                    self.i += 1;
                    let ch = match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            char::from_u32(cp).unwrap_or('\u{fffd}')
                        }
                        other => other as char,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
    fn hex4(&mut self) -> Result<u32, String> {
        let Some(h) = self.s.get(self.i..self.i + 4) else { return self.err("short \\u escape") };
        self.i += 4;
        std::str::from_utf8(h).ok().and_then(|h| u32::from_str_radix(h, 16).ok()).map_or_else(|| self.err("bad \\u escape"), Ok)
    }
}

fn read_json(path: &Path) -> Result<Json, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut p = JsonParser { s: text.as_bytes(), i: 0 };
    let v = p.value().map_err(|e| format!("{}: {e}", path.display()))?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("{}: trailing text", path.display()));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Comparison

fn floats(t: &Tensor) -> Option<Vec<f64>> {
    if t.dtype().is_float() {
        t.to_f64_vec().ok()
    } else {
        None
    }
}

/// `None` when equal within tolerance, otherwise a description with the max abs difference.
fn compare(actual: &Tensor, expected: &Tensor) -> Option<String> {
    if actual.dtype() != expected.dtype() {
        return Some(format!("dtype {} but onnxruntime gives {}", actual.dtype(), expected.dtype()));
    }
    if actual.shape() != expected.shape() {
        return Some(format!("shape {:?} but onnxruntime gives {:?}", actual.shape(), expected.shape()));
    }
    if let (Some(a), Some(b)) = (floats(actual), floats(expected)) {
        let mut max_abs = 0f64;
        let mut bad = 0usize;
        let mut nan_mismatch = 0usize;
        let mut first: Option<(usize, f64, f64)> = None;
        for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
            let ok = if x.is_nan() || y.is_nan() {
                if x.is_nan() != y.is_nan() {
                    nan_mismatch += 1;
                }
                x.is_nan() && y.is_nan()
            } else if x.is_infinite() || y.is_infinite() {
                if x != y {
                    max_abs = f64::INFINITY;
                }
                x == y
            } else {
                max_abs = max_abs.max((x - y).abs());
                (x - y).abs() <= ATOL + RTOL * y.abs()
            };
            if !ok {
                bad += 1;
                first.get_or_insert((i, x, y));
            }
        }
        return first.map(|(i, x, y)| {
            let nan = if nan_mismatch > 0 { format!(" ({nan_mismatch} NaN where the other is not)") } else { String::new() };
            format!(
                "max abs diff {max_abs:.3e}; {bad} of {} elements out of tolerance{nan}; first at flat index {i}: {x} vs {y}",
                a.len()
            )
        });
    }
    if actual.data() == expected.data() {
        return None;
    }
    let n = actual.len();
    let (bad, first) = match (actual.data(), expected.data()) {
        (TensorData::String(a), TensorData::String(b)) => {
            let bad: Vec<usize> = (0..n).filter(|&i| a[i] != b[i]).collect();
            let first = bad.first().map(|&i| format!("{:?} vs {:?} at {i}", a[i], b[i]));
            (bad.len(), first)
        }
        _ => match (actual.to_i64_vec(), expected.to_i64_vec()) {
            (Ok(a), Ok(b)) => {
                let bad: Vec<usize> = (0..n).filter(|&i| a[i] != b[i]).collect();
                let max = bad.iter().map(|&i| (a[i] as i128 - b[i] as i128).unsigned_abs()).max().unwrap_or(0);
                let first = bad.first().map(|&i| format!("{} vs {} at {i} (max abs diff {max})", a[i], b[i]));
                (bad.len(), first)
            }
            _ => (n, None),
        },
    };
    Some(format!("{bad} of {n} elements differ; first: {}", first.unwrap_or_else(|| "?".into())))
}

// ---------------------------------------------------------------------------------------------

struct Failure {
    model: String,
    dataset: String,
    output: String,
    problem: String,
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}

fn load_npy(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_npy(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs one fixture directory; pushes failures; returns (data sets passed, data sets run).
fn run_fixture(dir: &Path, name: &str, failures: &mut Vec<Failure>) -> (usize, usize) {
    let fail = |failures: &mut Vec<Failure>, dataset: &str, output: &str, problem: String| {
        failures.push(Failure { model: name.to_string(), dataset: dataset.into(), output: output.into(), problem });
    };
    let meta = match read_json(&dir.join("meta.json")) {
        Ok(m) => m,
        Err(e) => {
            fail(failures, "-", "-", format!("meta.json: {e}"));
            return (0, 1);
        }
    };
    let names = |key: &str| -> Vec<String> {
        meta.get(key)
            .map(|v| v.as_arr().iter().filter_map(|io| io.get("name").and_then(Json::as_str)).map(String::from).collect())
            .unwrap_or_default()
    };
    let in_names = names("inputs");
    let out_names = names("outputs");
    let datasets = meta.get("datasets").map(|d| d.as_arr().to_vec()).unwrap_or_default();

    let model_path = dir.join("model.onnx");
    let loaded = catch_unwind(AssertUnwindSafe(|| Session::from_file(&model_path, SessionOptions::default())));
    let session = match loaded {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            fail(failures, "-", "-", format!("load failed: {e}"));
            return (0, datasets.len().max(1));
        }
        Err(p) => {
            fail(failures, "-", "-", format!("load panicked: {}", panic_message(p)));
            return (0, datasets.len().max(1));
        }
    };
    let sess_in: Vec<String> = session.inputs().iter().map(|io| io.name.clone()).collect();
    let sess_out: Vec<String> = session.outputs().iter().map(|io| io.name.clone()).collect();
    if sess_in != in_names {
        fail(failures, "-", "-", format!("session inputs {sess_in:?}, the graph declares {in_names:?}"));
    }
    if sess_out != out_names {
        fail(failures, "-", "-", format!("session outputs {sess_out:?}, the graph declares {out_names:?}"));
    }

    let mut passed = 0;
    for ds in &datasets {
        let ds_name = ds.get("name").and_then(Json::as_str).unwrap_or("?").to_string();
        let before = failures.len();
        let files = |key: &str| -> Vec<PathBuf> {
            ds.get(key).map(|v| v.as_arr().iter().filter_map(Json::as_str).map(|f| dir.join(f)).collect()).unwrap_or_default()
        };
        let in_files = files("inputs");
        let out_files = files("outputs");
        if in_files.len() != in_names.len() || out_files.len() != out_names.len() {
            fail(failures, &ds_name, "-", "meta.json file lists do not match the inputs/outputs".into());
            continue;
        }
        let mut feeds = Vec::new();
        let mut bad_input = false;
        for (n, f) in in_names.iter().zip(&in_files) {
            match load_npy(f) {
                Ok(t) => feeds.push((n.clone(), Value::Tensor(t))),
                Err(e) => {
                    fail(failures, &ds_name, n, format!("reading input: {e}"));
                    bad_input = true;
                }
            }
        }
        if bad_input {
            continue;
        }
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| session.run(feeds)));
        let elapsed = started.elapsed();
        let outputs = match result {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                fail(failures, &ds_name, "-", format!("run failed: {e}"));
                continue;
            }
            Err(p) => {
                fail(failures, &ds_name, "-", format!("run panicked: {}", panic_message(p)));
                continue;
            }
        };
        if outputs.len() != out_names.len() {
            fail(failures, &ds_name, "-", format!("{} outputs, expected {}", outputs.len(), out_names.len()));
        }
        for (k, (exp_name, f)) in out_names.iter().zip(&out_files).enumerate() {
            let Some((got_name, value)) = outputs.get(k) else { continue };
            if got_name != exp_name {
                fail(failures, &ds_name, exp_name, format!("output {k} is named {got_name:?}"));
            }
            let expected = match load_npy(f) {
                Ok(t) => t,
                Err(e) => {
                    fail(failures, &ds_name, exp_name, format!("reading reference: {e}"));
                    continue;
                }
            };
            let Some(actual) = value.as_tensor() else {
                fail(failures, &ds_name, exp_name, format!("not a tensor: {}", value.describe()));
                continue;
            };
            if let Some(problem) = compare(actual, &expected) {
                fail(failures, &ds_name, exp_name, problem);
            }
        }
        let ok = failures.len() == before;
        if ok {
            passed += 1;
        }
        println!("  {name} {ds_name}: {} ({:.1} ms)", if ok { "ok" } else { "FAIL" }, elapsed.as_secs_f64() * 1e3);
    }
    (passed, datasets.len())
}

fn run_manifest(root: &Path, label: &str, filter: &[String], failures: &mut Vec<Failure>, summary: &mut String) -> usize {
    let manifest = match read_json(&root.join("MANIFEST.json")) {
        Ok(m) => m,
        Err(e) => {
            failures.push(Failure { model: root.display().to_string(), dataset: "-".into(), output: "-".into(), problem: e });
            return 0;
        }
    };
    let mut count = 0;
    for fx in manifest.get("fixtures").map(Json::as_arr).unwrap_or(&[]) {
        let Some(name) = fx.get("name").and_then(Json::as_str) else { continue };
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        count += 1;
        let shown = format!("{label}{name}");
        println!("{shown}");
        let started = Instant::now();
        let (passed, total) = run_fixture(&root.join(name), &shown, failures);
        let _ = writeln!(
            summary,
            "  {:<4} {shown:<32} {passed}/{total} data sets  ({:.2} s)",
            if passed == total { "ok" } else { "FAIL" },
            started.elapsed().as_secs_f64()
        );
    }
    count
}

#[test]
fn model_parity_with_onnxruntime() {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let filter: Vec<String> = std::env::var("KILN_PARITY_FILTER")
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let mut failures = Vec::new();
    let mut summary = String::new();
    let mut count = run_manifest(&models.join("fixtures"), "", &filter, &mut failures, &mut summary);
    let large = models.join("large");
    if std::env::var("KILN_PARITY_LARGE").is_ok_and(|v| v != "0") && large.join("MANIFEST.json").exists() {
        count += run_manifest(&large, "large/", &filter, &mut failures, &mut summary);
    }
    println!("\nmodel parity (rtol {RTOL}, atol {ATOL}):\n{summary}");
    assert!(count > 0 || !filter.is_empty(), "no fixtures found under {}", models.display());
    if !failures.is_empty() {
        let mut msg = format!("{} parity failure(s):\n", failures.len());
        for f in &failures {
            let _ = writeln!(msg, "  {} [{}] {}: {}", f.model, f.dataset, f.output, f.problem);
        }
        panic!("{msg}");
    }
}
