//! One `Session` shared by several threads, each running a fixture and checking onnxruntime's
//! recorded output: concurrent `run` calls must not interfere.

use std::path::Path;
use std::sync::Arc;

use kiln_engine::{Session, SessionOptions};
use kiln_tensor::npy::read_npy;
use kiln_tensor::Value;

fn load(p: &Path) -> kiln_tensor::Tensor {
    read_npy(&std::fs::read(p).expect("read npy")).expect("parse npy")
}

#[test]
fn concurrent_runs_match_reference() {
    check_concurrent_runs(2);
}

/// One-thread sessions run on their callers' threads: several at once must neither wait for
/// each other nor mix up their work.
#[test]
fn concurrent_single_thread_runs_match_reference() {
    check_concurrent_runs(1);
}

fn check_concurrent_runs(threads: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/resnet_ts");
    let session =
        Arc::new(Session::from_file(&dir.join("model.onnx"), SessionOptions::default().with_threads(threads)).expect("load"));
    let name = session.inputs()[0].name.clone();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let session = session.clone();
            let name = name.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                // Alternate between the two data sets (batch 1 and batch 3).
                let set = dir.join(format!("test_data_set_{}", i % 2));
                let x = load(&set.join("input_0.npy"));
                let want = load(&set.join("output_0.npy"));
                for _ in 0..5 {
                    let out = session.run(vec![(name.clone(), Value::Tensor(x.clone()))]).expect("run");
                    let got = out[0].1.as_tensor().expect("tensor");
                    assert_eq!(got.shape(), want.shape());
                    let (g, w) = (got.as_slice::<f32>().unwrap(), want.as_slice::<f32>().unwrap());
                    for (a, b) in g.iter().zip(w) {
                        assert!((a - b).abs() <= 1e-4 + 1e-3 * b.abs(), "{a} vs {b}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread panicked");
    }
}
