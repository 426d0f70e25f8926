//! sgemm throughput: `sgemm_bench [--cold] [--threads N] SIZE|MxKxN [...]` prints one JSON line per
//! size with GFLOP/s of the strided product, of the product with B prepacked and with both
//! prepacked (best of several runs; one thread unless `--threads` says otherwise). With `--cold`
//! the prepacked products cycle through enough copies of B (at least 64 MB) that B comes from
//! memory each time, as the weights of a model larger than the caches do.

use std::time::Instant;

use kiln_kernels::{best_isa, sgemm_ex, Epilogue, Lhs, MatRef, PackedA, PackedB, Rhs};

fn best_seconds(mut f: impl FnMut(), min_total: f64) -> f64 {
    f();
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut runs = 0;
    while runs < 5 || start.elapsed().as_secs_f64() < min_total {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

fn main() {
    let parse = |s: &str| -> Option<(usize, usize, usize)> {
        let d: Vec<usize> = s.split('x').map(|t| t.parse().ok()).collect::<Option<_>>()?;
        match d[..] {
            [n] => Some((n, n, n)),
            [m, k, n] => Some((m, k, n)),
            _ => None,
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cold = args.iter().any(|a| a == "--cold");
    let threads = match args.iter().position(|a| a == "--threads") {
        Some(i) => match args.get(i + 1).and_then(|v| v.parse::<usize>().ok()) {
            Some(t) if t > 0 => t,
            _ => {
                eprintln!("sgemm_bench: --threads needs a positive count");
                std::process::exit(2);
            }
        },
        None => 1,
    };
    let _pool = kiln_kernels::par::enter(kiln_kernels::par::build_pool(threads));
    let sizes: Vec<(usize, usize, usize)> = args
        .iter()
        .enumerate()
        .filter(|&(i, _)| i == 0 || args[i - 1] != "--threads")
        .filter_map(|(_, s)| parse(s))
        .collect();
    let sizes = if sizes.is_empty() { [256, 512, 1024, 2048].map(|n| (n, n, n)).to_vec() } else { sizes };
    for (m, k, n) in sizes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 97) as f32 - 48.0) / 97.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 89) as f32 - 44.0) / 89.0).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * m as f64 * k as f64 * n as f64;
        let ep = Epilogue::default();
        let am = MatRef::new(&a, k as isize, 1);
        let bm = MatRef::new(&b, n as isize, 1);
        let min_total = 0.5;
        let t = best_seconds(|| sgemm_ex(m, k, n, Lhs::Strided(am), Rhs::Strided(bm), &mut c, n as isize, 1, &ep, threads), min_total);
        let copies = if cold { (64 << 20) / (4 * k * n) + 1 } else { 1 };
        let pbs: Vec<PackedB> = (0..copies).map(|_| PackedB::new(k, n, bm)).collect();
        let mut next = 0;
        let mut pick = || {
            next = (next + 1) % copies;
            &pbs[next]
        };
        let tp = best_seconds(|| sgemm_ex(m, k, n, Lhs::Strided(am), Rhs::Packed(pick()), &mut c, n as isize, 1, &ep, threads), min_total);
        let pa = PackedA::new(m, k, am);
        let tab = best_seconds(|| sgemm_ex(m, k, n, Lhs::Packed(&pa), Rhs::Packed(pick()), &mut c, n as isize, 1, &ep, threads), min_total);
        println!(
            "{{\"size\": \"{m}x{k}x{n}\", \"threads\": {threads}, \"isa\": \"{:?}\", \"gflops\": {:.2}, \"gflops_prepacked_b\": {:.2}, \"gflops_prepacked_ab\": {:.2}}}",
            best_isa(),
            flops / t / 1e9,
            flops / tp / 1e9,
            flops / tab / 1e9
        );
    }
}
