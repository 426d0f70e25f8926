//! Per-node latency of a model on .npy inputs, robust to load from other processes:
//! `node_prof MODEL INPUT.npy [...] [--threads N] [--runs N] [--top N]` prints each node's
//! minimum and 25th-percentile time over the runs, the summed node minima, and the minimum
//! wall time of whole runs (the difference is the time spent between nodes).

use std::time::Instant;

mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut threads, mut runs, mut top) = (1usize, 300usize, 40usize);
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let next = |i: usize| args.get(i + 1).and_then(|s| s.parse().ok());
        match args[i].as_str() {
            "--threads" => threads = next(i).unwrap_or(1),
            "--runs" => runs = next(i).unwrap_or(300),
            "--top" => top = next(i).unwrap_or(40),
            a => {
                files.push(a.to_string());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    if files.len() < 2 {
        eprintln!("usage: node_prof MODEL INPUT.npy [...] [--threads N] [--runs N] [--top N]");
        std::process::exit(2);
    }
    let (sess, feeds) = common::load(&files[0], &files[1..], threads);
    for _ in 0..5 {
        sess.run(feeds.clone()).expect("run");
    }
    let mut per: Vec<Vec<f64>> = Vec::new();
    let mut meta: Vec<(String, String)> = Vec::new();
    let mut wall = Vec::new();
    for r in 0..runs {
        let t = Instant::now();
        sess.run(feeds.clone()).expect("run");
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        let (_, prof) = sess.run_profiled(feeds.clone()).expect("run");
        if r == 0 {
            per = vec![Vec::new(); prof.len()];
            meta = prof.iter().map(|(n, o, _)| (n.clone(), o.clone())).collect();
        }
        for (k, (_, _, ms)) in prof.into_iter().enumerate() {
            per[k].push(ms);
        }
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p) as usize]
    };
    let mut rows: Vec<(f64, f64, usize)> = per.iter_mut().enumerate().map(|(k, v)| (q(v, 0.0), q(v, 0.25), k)).collect();
    let (smin, sp25): (f64, f64) = rows.iter().fold((0.0, 0.0), |a, r| (a.0 + r.0, a.1 + r.1));
    let mut by_type: std::collections::BTreeMap<String, (f64, f64, usize)> = Default::default();
    for r in &rows {
        let e = by_type.entry(meta[r.2].1.clone()).or_default();
        e.0 += r.0;
        e.1 += r.1;
        e.2 += 1;
    }
    println!("wall min {:.3} p10 {:.3} median {:.3} ms; node sum min {smin:.3} p25 {sp25:.3}", q(&mut wall, 0.0), q(&mut wall, 0.1), q(&mut wall, 0.5));
    for (t, (a, b, n)) in &by_type {
        println!("  {t:<24} x{n:<3} min {a:7.3} p25 {b:7.3}");
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    for &(mn, p25, k) in rows.iter().take(top) {
        println!("{:<60} {:<18} {mn:7.3} {p25:7.3}", meta[k].0, meta[k].1);
    }
}
