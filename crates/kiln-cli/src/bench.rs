//! `kiln bench`: load time and run latency of a model, in-process.
//!
//! Inputs come from .npy files or are generated: floats uniform in [-1, 1), integer inputs that
//! index an embedding table (a Gather on a constant) stay within its rows, masks are ones.
//! Symbolic dims default to 1 (or 128 for names that look like a sequence length); `--dim`
//! overrides them.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use kiln_engine::{Session, SessionOptions};
use kiln_onnx::proto::ModelProto;
use kiln_tensor::npy::read_npy;
use kiln_tensor::{DType, Dim, Tensor, TensorData, Value, ValueType};
use serde_json::json;

use crate::{flag_value, parse_threads, CliError};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn main(args: &[String]) -> Result<(), CliError> {
    let mut model: Option<&String> = None;
    let mut files: Vec<(String, String)> = Vec::new();
    let mut dims: HashMap<String, usize> = HashMap::new();
    let mut threads = 1usize;
    let mut warmup = 3usize;
    let mut duration = 3.0f64;
    let mut as_json = false;
    let mut profile = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--input" | "-i" => {
                let v = flag_value(&mut it, "--input")?;
                let (n, f) = v.split_once('=').ok_or_else(|| CliError(format!("--input expects NAME=FILE.npy, got '{v}'")))?;
                files.push((n.to_string(), f.to_string()));
            }
            "--dim" => {
                let v = flag_value(&mut it, "--dim")?;
                let (n, d) = v.split_once('=').ok_or_else(|| CliError(format!("--dim expects NAME=SIZE, got '{v}'")))?;
                let d = d.parse::<usize>().map_err(|_| CliError(format!("--dim {n}: '{d}' is not a size")))?;
                dims.insert(n.to_string(), d);
            }
            "--threads" => threads = parse_threads(flag_value(&mut it, "--threads")?)?,
            "--warmup" => {
                let v = flag_value(&mut it, "--warmup")?;
                warmup = v.parse().map_err(|_| CliError(format!("--warmup must be a count, got '{v}'")))?;
            }
            "--duration" => {
                let v = flag_value(&mut it, "--duration")?;
                duration = v
                    .parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .ok_or_else(|| CliError(format!("--duration must be seconds, got '{v}'")))?;
            }
            "--json" => as_json = true,
            "--profile" => profile = true,
            s if s.starts_with('-') => return Err(CliError(format!("bench: unknown option '{s}'"))),
            _ if model.is_none() => model = Some(a),
            s => return Err(CliError(format!("bench: unexpected argument '{s}'"))),
        }
    }
    let path = Path::new(model.ok_or_else(|| CliError("bench: missing MODEL".into()))?);
    let proto = kiln_onnx::load_model_file(path)?;
    let t0 = Instant::now();
    let session = Session::from_file(path, SessionOptions::default().with_threads(threads))?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut given: HashMap<String, Tensor> = HashMap::new();
    for (name, file) in files {
        let bytes = std::fs::read(&file).map_err(|e| CliError(format!("cannot read input file {file}: {e}")))?;
        given.insert(name, read_npy(&bytes).map_err(|e| CliError(format!("input file {file}: {e}")))?);
    }
    let bounds = index_bounds(&proto);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut feeds: Vec<(String, Value)> = Vec::new();
    for io in session.inputs() {
        let t = match given.remove(&io.name) {
            Some(t) => t,
            None => random_input(&io.name, &io.ty, &dims, bounds.get(&io.name).copied(), &mut rng)?,
        };
        feeds.push((io.name.clone(), Value::Tensor(t)));
    }
    if let Some(name) = given.keys().next() {
        return Err(CliError(format!("the model has no input named '{name}'")));
    }

    for _ in 0..warmup {
        session.run(feeds.clone())?;
    }
    if profile {
        return print_profile(&session, &feeds, duration);
    }
    let mut times: Vec<f64> = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed().as_secs_f64() < duration && times.len() < 1_000_000) {
        let f = feeds.clone();
        let t = Instant::now();
        session.run(f)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    if as_json {
        let shapes: serde_json::Map<String, serde_json::Value> = feeds
            .iter()
            .map(|(n, v)| (n.clone(), json!(v.as_tensor().map(|t| t.shape().to_vec()).unwrap_or_default())))
            .collect();
        let out = json!({
            "model": path.display().to_string(),
            "median_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
            "min_ms": times[0], "mean_ms": mean,
            "runs": times.len(), "warmup": warmup, "load_ms": load_ms, "threads": session.threads(),
            "inputs": shapes, "peak_rss_mb": peak_rss_mb(),
        });
        println!("{out}");
    } else {
        println!("model:   {}", path.display());
        for (n, v) in &feeds {
            if let Some(t) = v.as_tensor() {
                println!("input:   {n} {} {:?}", t.dtype(), t.shape());
            }
        }
        println!("threads: {}", session.threads());
        println!("load:    {load_ms:.1} ms");
        if let Some(mb) = peak_rss_mb() {
            println!("memory:  peak RSS {mb:.1} MB");
        }
        println!(
            "run:     median {:.3} ms, p90 {:.3} ms, min {:.3} ms over {} runs",
            pct(0.5),
            pct(0.9),
            times[0],
            times.len()
        );
    }
    Ok(())
}

/// For integer inputs used as Gather indices into a constant table: the table's row count.
fn index_bounds(m: &ModelProto) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let Some(g) = &m.graph else { return out };
    let inits: HashMap<&str, &kiln_onnx::proto::TensorProto> = g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    for n in &g.node {
        if n.op_type == "Gather" && n.input.len() >= 2 {
            if let Some(t) = inits.get(n.input[0].as_str()) {
                if let Some(&rows) = t.dims.first() {
                    let rows = rows.max(1) as usize;
                    let e = out.entry(n.input[1].clone()).or_insert(rows);
                    *e = (*e).min(rows);
                }
            }
        }
    }
    out
}

fn random_input(
    name: &str,
    ty: &ValueType,
    dims: &HashMap<String, usize>,
    bound: Option<usize>,
    rng: &mut Rng,
) -> Result<Tensor, CliError> {
    let ValueType::Tensor { dtype, shape } = ty else {
        return Err(CliError(format!("input '{name}' is {ty}: pass it with --input")));
    };
    let shape = shape.as_ref().ok_or_else(|| CliError(format!("input '{name}' has unknown rank: pass it with --input")))?;
    let concrete: Vec<usize> = shape
        .0
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Sym(s) => dims.get(s).copied().unwrap_or_else(|| {
                let l = s.to_lowercase();
                if l.contains("seq") || l.contains("len") || l.contains("token") {
                    128
                } else {
                    1
                }
            }),
        })
        .collect();
    let n: usize = concrete.iter().product();
    let lname = name.to_lowercase();
    let data = match dtype {
        DType::F32 => TensorData::F32((0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()),
        DType::F64 => TensorData::F64((0..n).map(|_| rng.unit() * 2.0 - 1.0).collect()),
        DType::F16 => TensorData::F16((0..n).map(|_| kiln_tensor::f16::from_f64(rng.unit() * 2.0 - 1.0)).collect()),
        DType::Bool => TensorData::Bool(vec![true; n]),
        DType::I64 | DType::I32 => {
            let hi: u64 = if lname.contains("mask") {
                return Tensor::new(concrete, if *dtype == DType::I64 { TensorData::I64(vec![1; n]) } else { TensorData::I32(vec![1; n]) })
                    .map_err(CliError::from);
            } else if lname.contains("type") || lname.contains("segment") {
                1
            } else {
                bound.unwrap_or(100) as u64
            };
            let v: Vec<i64> = (0..n).map(|_| (rng.next() % hi) as i64).collect();
            if *dtype == DType::I64 {
                TensorData::I64(v)
            } else {
                TensorData::I32(v.into_iter().map(|x| x as i32).collect())
            }
        }
        other => {
            return Err(CliError(format!("input '{name}' is {other}: pass it with --input (no random generator for it)")))
        }
    };
    Tensor::new(concrete, data).map_err(CliError::from)
}

/// This process's peak resident set (VmHWM), where the OS reports it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Per-op-type time, summed over the nodes of that type, median over repeated runs.
fn print_profile(session: &Session, feeds: &[(String, Value)], duration: f64) -> Result<(), CliError> {
    let mut per_run: Vec<Vec<(String, String, f64)>> = Vec::new();
    let start = Instant::now();
    while per_run.len() < 5 || start.elapsed().as_secs_f64() < duration {
        per_run.push(session.run_profiled(feeds.to_vec())?.1);
    }
    let steps = per_run[0].len();
    let mut by_type: HashMap<String, (f64, usize)> = HashMap::new();
    let mut by_node: Vec<(f64, usize)> = Vec::with_capacity(steps);
    let mut total = 0.0;
    for i in 0..steps {
        let mut t: Vec<f64> = per_run.iter().map(|r| r[i].2).collect();
        t.sort_by(f64::total_cmp);
        let med = t[t.len() / 2];
        total += med;
        by_node.push((med, i));
        let e = by_type.entry(per_run[0][i].1.clone()).or_default();
        e.0 += med;
        e.1 += 1;
    }
    let mut rows: Vec<(String, (f64, usize))> = by_type.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("{:<28} {:>6} {:>10} {:>6}", "op type", "nodes", "ms", "%");
    for (op, (ms, n)) in rows {
        println!("{op:<28} {n:>6} {ms:>10.3} {:>5.1}%", 100.0 * ms / total.max(1e-12));
    }
    println!("{:<28} {:>6} {:>10.3}", "total", steps, total);
    by_node.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("\nslowest nodes                                      op type           ms");
    let shown = std::env::var("KILN_PROFILE_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    for &(ms, i) in by_node.iter().take(shown) {
        let (name, op, _) = &per_run[0][i];
        println!("{:<50} {:<14} {:>8.3}", name, op, ms);
    }
    Ok(())
}
