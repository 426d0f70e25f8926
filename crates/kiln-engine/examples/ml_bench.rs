//! Benchmarks a model on .npy inputs: `ml_bench MODEL INPUT.npy [INPUT2.npy ...] [--threads N]
//! [--runs N]`. Inputs are fed in graph-input order. Prints JSON: median and min milliseconds per run.

use std::time::Instant;

mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut threads = 0usize;
    let mut runs = 0usize;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--threads" => {
                threads = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(0);
                i += 1;
            }
            "--runs" => {
                runs = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(0);
                i += 1;
            }
            a => files.push(a.to_string()),
        }
        i += 1;
    }
    if files.len() < 2 {
        eprintln!("usage: ml_bench MODEL INPUT.npy [...] [--threads N] [--runs N]");
        std::process::exit(2);
    }
    let (sess, feeds) = common::load(&files[0], &files[1..], threads);
    // Warm up, then time; the run count adapts to about a second of work unless given.
    let t0 = Instant::now();
    for _ in 0..3 {
        sess.run(feeds.clone()).expect("run");
    }
    let per = t0.elapsed().as_secs_f64() / 3.0;
    let n = if runs > 0 { runs } else { ((1.0 / per.max(1e-7)) as usize).clamp(5, 20000) };
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let f = feeds.clone();
        let t = Instant::now();
        let out = sess.run(f).expect("run");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(out);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    println!(
        "{{\"median_ms\": {}, \"min_ms\": {}, \"runs\": {}, \"threads\": {}}}",
        times[times.len() / 2],
        times[0],
        n,
        sess.threads()
    );
}
