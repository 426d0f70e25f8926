//! Shared by the examples: a session for MODEL and its inputs from .npy files, fed in graph-input
//! order. Exits with a message (status 1) when the model does not load or an input file is bad.

use kiln_engine::{Session, SessionOptions};
use kiln_tensor::npy::read_npy;
use kiln_tensor::Value;

pub fn load(model: &str, inputs: &[String], threads: usize) -> (Session, Vec<(String, Value)>) {
    let fail = |msg: String| -> ! {
        eprintln!("{msg}");
        std::process::exit(1);
    };
    let sess = Session::from_file(std::path::Path::new(model), SessionOptions::default().with_threads(threads))
        .unwrap_or_else(|e| fail(format!("load failed: {e}")));
    let names: Vec<String> = sess.inputs().iter().map(|i| i.name.clone()).collect();
    let mut feeds = Vec::new();
    for (name, f) in names.iter().zip(inputs) {
        let bytes = std::fs::read(f).unwrap_or_else(|e| fail(format!("{f}: {e}")));
        let t = read_npy(&bytes).unwrap_or_else(|e| fail(format!("{f}: {e:?}")));
        feeds.push((name.clone(), Value::Tensor(t)));
    }
    (sess, feeds)
}
