//! Classic-ML parity: every fixture in models/ml/MANIFEST.json (made by models/export_ml.py) run
//! through Kiln and compared with onnxruntime's outputs. Labels (integer and string tensors) must
//! be equal; float tensors and ZipMap probabilities |a - b| <= 1e-5 + 1e-3 * |b|. All fixtures
//! are run and every failure reported, then the test fails if there was any.
//!
//! KILN_ML_FILTER=a,b runs only fixtures whose name contains one of the substrings.

use std::path::{Path, PathBuf};

use kiln_engine::{Session, SessionOptions};
use kiln_tensor::npy::read_npy;
use kiln_tensor::{MapKey, Tensor, TensorData, Value};
use serde_json::Value as Json;

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/ml")
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= ATOL + RTOL * b.abs()
}

fn compare_tensor(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!("shape {:?}, expected {:?}", got.shape(), want.shape()));
    }
    if got.dtype() != want.dtype() {
        return Err(format!("dtype {}, expected {}", got.dtype(), want.dtype()));
    }
    match (got.data(), want.data()) {
        (TensorData::String(a), TensorData::String(b)) => {
            if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
                return Err(format!("element {i}: {:?}, expected {:?}", a[i], b[i]));
            }
        }
        _ if got.dtype().is_float() => {
            let (a, b) = (got.to_f64_vec().map_err(|e| e.0)?, want.to_f64_vec().map_err(|e| e.0)?);
            let mut bad = 0;
            let mut first = None;
            for i in 0..a.len() {
                if !close(a[i], b[i]) {
                    bad += 1;
                    first.get_or_insert((i, a[i], b[i]));
                }
            }
            if let Some((i, x, y)) = first {
                return Err(format!("{bad} of {} elements differ; first at {i}: {x}, expected {y}", a.len()));
            }
        }
        _ => {
            let (a, b) = (got.to_i64_vec().map_err(|e| e.0)?, want.to_i64_vec().map_err(|e| e.0)?);
            if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
                let n = (0..a.len()).filter(|&i| a[i] != b[i]).count();
                return Err(format!("{n} of {} labels differ; first at {i}: {}, expected {}", a.len(), a[i], b[i]));
            }
        }
    }
    Ok(())
}

fn compare_seq_map(got: &Value, want: &Json, key: &str) -> Result<(), String> {
    let Value::Sequence { items, .. } = got else { return Err(format!("expected a sequence of maps, got {}", got.describe())) };
    let want = want.as_array().ok_or("reference is not a JSON list")?;
    if items.len() != want.len() {
        return Err(format!("{} maps, expected {}", items.len(), want.len()));
    }
    for (r, (m, w)) in items.iter().zip(want).enumerate() {
        let Value::Map { entries, .. } = m else { return Err(format!("item {r} is {}, not a map", m.describe())) };
        let w = w.as_object().ok_or("reference item is not an object")?;
        if entries.len() != w.len() {
            return Err(format!("map {r} has {} entries, expected {}", entries.len(), w.len()));
        }
        for (k, v) in entries {
            match (k, key) {
                (MapKey::Int(_), "int") | (MapKey::Str(_), "str") => {}
                _ => return Err(format!("map {r}: key {k} has the wrong type (expected {key})")),
            }
            let ks = k.to_string();
            let exp = w.get(&ks).and_then(|x| x.as_f64()).ok_or_else(|| format!("map {r}: unexpected key {ks}"))?;
            let t = v.as_tensor().ok_or_else(|| format!("map {r}: value is not a tensor"))?;
            if t.dtype() != kiln_tensor::DType::F32 || !t.shape().is_empty() {
                return Err(format!("map {r}: value is {} {:?}, expected a float scalar", t.dtype(), t.shape()));
            }
            let got = t.to_f64_vec().map_err(|e| e.0)?[0];
            if !close(got, exp) {
                return Err(format!("map {r} key {ks}: {got}, expected {exp}"));
            }
        }
    }
    Ok(())
}

/// Row `r` of a tensor whose first dimension is the batch, as a batch of one.
fn row_of(t: &Tensor, r: usize) -> Result<Tensor, String> {
    let rows = *t.shape().first().ok_or("a scalar has no rows")?;
    let per = t.len() / rows.max(1);
    let idx: Vec<usize> = (r * per..(r + 1) * per).collect();
    let mut shape = t.shape().to_vec();
    shape[0] = 1;
    Tensor::new(shape, t.data().gather(&idx)).map_err(|e| e.0)
}

/// Runs a fixture on all its rows, or (`row` = Some(r)) on row r alone, compared with the
/// matching rows of onnxruntime's outputs. Single rows take the engines' batch-of-one paths
/// (tree ensembles walk several trees of one row together instead of several rows of one tree).
fn run_fixture(dir: &Path, entry: &Json, row: Option<usize>) -> Result<(), String> {
    let sess = Session::from_file(&dir.join("model.onnx"), SessionOptions::default()).map_err(|e| format!("load: {e}"))?;
    let mut feeds = Vec::new();
    for i in entry["inputs"].as_array().ok_or("no inputs")? {
        let name = i["name"].as_str().ok_or("input name")?;
        let bytes = std::fs::read(dir.join(i["file"].as_str().ok_or("input file")?)).map_err(|e| e.to_string())?;
        let t = read_npy(&bytes).map_err(|e| format!("{name}: {e:?}"))?;
        let t = match row {
            Some(r) => row_of(&t, r)?,
            None => t,
        };
        feeds.push((name.to_string(), Value::Tensor(t)));
    }
    let outs = sess.run(feeds).map_err(|e| format!("run: {e}"))?;
    let mut errs = Vec::new();
    for o in entry["outputs"].as_array().ok_or("no outputs")? {
        let name = o["name"].as_str().ok_or("output name")?;
        let file = dir.join(o["file"].as_str().ok_or("output file")?);
        let Some((_, got)) = outs.iter().find(|(n, _)| n == name) else {
            errs.push(format!("{name}: missing from Kiln's outputs"));
            continue;
        };
        let r = if o["kind"] == "seq_map" {
            if row.is_some() {
                // ZipMap outputs are compared on whole batches only.
                continue;
            }
            let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
            let want: Json = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            compare_seq_map(got, &want, o["key"].as_str().unwrap_or("int"))
        } else {
            let bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
            let want = read_npy(&bytes).map_err(|e| format!("{e:?}"))?;
            let want = match row {
                Some(r) => row_of(&want, r)?,
                None => want,
            };
            match got.as_tensor() {
                Some(t) => compare_tensor(t, &want),
                None => Err(format!("expected a tensor, got {}", got.describe())),
            }
        };
        if let Err(e) = r {
            errs.push(format!("{name}: {e}"));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// Fixtures that need an op Kiln lacks: they must fail to load with an error naming that op.
const KNOWN_UNSUPPORTED: &[(&str, &str)] = &[];

#[test]
fn ml_fixtures_match_onnxruntime() {
    let manifest_path = root().join("MANIFEST.json");
    let Ok(text) = std::fs::read_to_string(&manifest_path) else {
        panic!("{} is missing: run models/export_ml.py", manifest_path.display());
    };
    let manifest: Json = serde_json::from_str(&text).expect("MANIFEST.json is valid JSON");
    let filter: Vec<String> = std::env::var("KILN_ML_FILTER")
        .map(|s| s.split(',').filter(|x| !x.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let mut failures = Vec::new();
    let mut passed = 0;
    for entry in manifest["fixtures"].as_array().expect("fixtures list") {
        let name = entry["name"].as_str().expect("fixture name");
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_fixture(&root().join(name), entry, None)))
            .unwrap_or_else(|_| Err("panicked".into()));
        if let Some((_, op)) = KNOWN_UNSUPPORTED.iter().find(|(n, _)| *n == name) {
            // Must fail only because of the missing op, and say so.
            match &r {
                Err(e) if e.contains(op) => {
                    eprintln!("known {name}: needs {op}, which Kiln does not implement yet");
                    continue;
                }
                _ => {}
            }
        }
        match r {
            Ok(()) => {
                passed += 1;
                eprintln!("ok    {name}");
            }
            Err(e) => {
                eprintln!("FAIL  {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    eprintln!("{passed} passed, {} failed", failures.len());
    assert!(failures.is_empty(), "{} fixture(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// Tree ensembles one row at a time (their batch-of-one walk), against the same references.
#[test]
fn tree_ensembles_match_onnxruntime_row_by_row() {
    let text = std::fs::read_to_string(root().join("MANIFEST.json")).expect("models/ml/MANIFEST.json (run models/export_ml.py)");
    let manifest: Json = serde_json::from_str(&text).expect("MANIFEST.json is valid JSON");
    let mut failures = Vec::new();
    let mut checked = 0;
    for entry in manifest["fixtures"].as_array().expect("fixtures list") {
        let name = entry["name"].as_str().expect("fixture name");
        let dir = root().join(name);
        let model = std::fs::read(dir.join("model.onnx")).expect("fixture model");
        // Tree ensembles only (their op names appear in the serialized graph).
        if !model.windows(12).any(|w| w == b"TreeEnsemble") {
            continue;
        }
        for r in 0..9 {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_fixture(&dir, entry, Some(r)))) {
                Ok(Ok(())) => checked += 1,
                Ok(Err(e)) => failures.push(format!("{name} row {r}: {e}")),
                Err(_) => failures.push(format!("{name} row {r}: panicked")),
            }
        }
    }
    assert!(checked >= 9, "no tree-ensemble fixture was checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
