//! `kiln demo`: runs the built-in demo models (small fixtures exported from PyTorch by
//! models/export_fixtures.py, compiled into the binary) and compares Kiln's outputs with the
//! onnxruntime outputs recorded next to them.

use std::time::Instant;

use kiln_engine::{Session, SessionOptions};
use kiln_tensor::npy::read_npy;
use kiln_tensor::{Tensor, Value};

use crate::CliError;

struct Demo {
    name: &'static str,
    what: &'static str,
    model: &'static [u8],
    inputs: &'static [&'static [u8]],
    outputs: &'static [&'static [u8]],
}

macro_rules! fixture {
    ($dir:literal, $file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/", $dir, "/", $file))
    };
}

const DEMOS: &[Demo] = &[
    Demo {
        name: "resnet_ts",
        what: "torchvision ResNet (resnet18 layout, narrow), image 64x64 → 10 logits",
        model: fixture!("resnet_ts", "model.onnx"),
        inputs: &[fixture!("resnet_ts", "test_data_set_0/input_0.npy")],
        outputs: &[fixture!("resnet_ts", "test_data_set_0/output_0.npy")],
    },
    Demo {
        name: "sentence_embedding_ts",
        what: "BERT encoder + mean pooling + L2 norm (sentence embeddings), dynamic batch/sequence",
        model: fixture!("sentence_embedding_ts", "model.onnx"),
        inputs: &[
            fixture!("sentence_embedding_ts", "test_data_set_0/input_0.npy"),
            fixture!("sentence_embedding_ts", "test_data_set_0/input_1.npy"),
        ],
        outputs: &[fixture!("sentence_embedding_ts", "test_data_set_0/output_0.npy")],
    },
    Demo {
        name: "lstm_tagger_ts",
        what: "Embedding + 2-layer bidirectional LSTM tagger",
        model: fixture!("lstm_tagger_ts", "model.onnx"),
        inputs: &[fixture!("lstm_tagger_ts", "test_data_set_0/input_0.npy")],
        outputs: &[fixture!("lstm_tagger_ts", "test_data_set_0/output_0.npy")],
    },
];

pub fn main(args: &[String]) -> Result<(), CliError> {
    if let Some(a) = args.first() {
        return Err(CliError(format!("demo: unexpected argument '{a}'")));
    }
    println!("Kiln {} — built-in demo models, compared with onnxruntime's outputs", env!("CARGO_PKG_VERSION"));
    let mut worst = 0f64;
    for d in DEMOS {
        let t0 = Instant::now();
        let session = Session::from_bytes(d.model, SessionOptions::default().with_threads(1))
            .map_err(|e| CliError(format!("{}: {e}", d.name)))?;
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut feeds = Vec::new();
        for (io, bytes) in session.inputs().iter().zip(d.inputs) {
            feeds.push((io.name.clone(), Value::Tensor(read_npy(bytes)?)));
        }
        let shapes: Vec<String> = feeds
            .iter()
            .map(|(n, v)| format!("{n}{:?}", v.as_tensor().map(|t| t.shape().to_vec()).unwrap_or_default()))
            .collect();
        let t1 = Instant::now();
        let outs = session.run(feeds).map_err(|e| CliError(format!("{}: {e}", d.name)))?;
        let run_ms = t1.elapsed().as_secs_f64() * 1e3;
        println!("\n{} — {}", d.name, d.what);
        println!("  inputs  {}", shapes.join(", "));
        for ((name, got), want) in outs.iter().zip(d.outputs) {
            let want = read_npy(want)?;
            let got = got.as_tensor().ok_or_else(|| CliError(format!("{}: output {name} is not a tensor", d.name)))?;
            let diff = max_abs_diff(got, &want)?;
            worst = worst.max(diff);
            println!("  output  {name}{:?}  max |kiln − onnxruntime| = {diff:.2e}", got.shape());
        }
        println!("  load {load_ms:.1} ms, run {run_ms:.2} ms (1 thread)");
    }
    println!("\nlargest difference from onnxruntime: {worst:.2e}");
    Ok(())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64, CliError> {
    if a.shape() != b.shape() {
        return Err(CliError(format!("shape {:?} differs from reference {:?}", a.shape(), b.shape())));
    }
    let x = a.to_f64_vec()?;
    let y = b.to_f64_vec()?;
    Ok(x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max))
}
