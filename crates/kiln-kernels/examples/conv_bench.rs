//! Convolution throughput for the pointwise and full convolutions of common image networks:
//! `conv_bench [THREADS] [NAME,...]` prints, per shape, ms and GFLOP/s of the implicit GEMM
//! with prepacked weights and of the direct kernel, the direct kernel followed by a separate
//! activation pass (pointwise shapes) and the Winograd kernel (3×3 stride-1 shapes where it is
//! chosen, or always with `WINO=2` / `WINO=4` forcing F(2×2) / F(4×4)). The variants run in
//! turns and the best time of each is kept, so load from other processes affects all alike.

use std::mem::MaybeUninit;
use std::time::Instant;

use kiln_kernels::convdirect::{self, DirectWeights};
use kiln_kernels::{conv2d_gemm, sgemm_new, Activation, Conv2dGeometry, Epilogue, Lhs, MatRef, PackedA, Rhs};

/// Best time of each of `fs`, run in turns (so that load from other processes affects all alike).
fn best_of(fs: &mut [&mut dyn FnMut()], min_total: f64) -> Vec<f64> {
    fs.iter_mut().for_each(|f| f());
    let mut best = vec![f64::INFINITY; fs.len()];
    let start = Instant::now();
    let mut runs = 0;
    while runs < 7 || start.elapsed().as_secs_f64() < min_total {
        for (b, f) in best.iter_mut().zip(fs.iter_mut()) {
            let t = Instant::now();
            f();
            *b = b.min(t.elapsed().as_secs_f64());
        }
        runs += 1;
    }
    best
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let filter: Option<String> = std::env::args().nth(2);
    let _pool = kiln_kernels::par::enter(kiln_kernels::par::build_pool(threads));
    // (name, m, c, hw, k, stride, pad, act)
    let swish = Activation::Swish(1.0);
    let shapes = [
        ("pw16-96@112", 96, 16, 112, 1, 1, 0, swish),
        ("pw16-96@112id", 96, 16, 112, 1, 1, 0, Activation::Identity),
        ("pw16-96@112relu", 96, 16, 112, 1, 1, 0, Activation::Relu),
        ("pw32-16@112", 16, 32, 112, 1, 1, 0, Activation::Identity),
        ("pw24-144@56", 144, 24, 56, 1, 1, 0, swish),
        ("pw144-24@56", 24, 144, 56, 1, 1, 0, Activation::Identity),
        ("pw40-240@28", 240, 40, 28, 1, 1, 0, swish),
        ("pw240-40@28", 40, 240, 28, 1, 1, 0, Activation::Identity),
        ("pw112-672@14", 672, 112, 14, 1, 1, 0, swish),
        ("pw672-112@14", 112, 672, 14, 1, 1, 0, Activation::Identity),
        ("pw1152-192@7", 192, 1152, 7, 1, 1, 0, Activation::Identity),
        ("pw192-1152@7", 1152, 192, 7, 1, 1, 0, swish),
        ("pw320-1280@7", 1280, 320, 7, 1, 1, 0, swish),
        ("sq64-16@55", 16, 64, 55, 1, 1, 0, Activation::Relu),
        ("sq16-64@55", 64, 16, 55, 1, 1, 0, Activation::Relu),
        ("sq3x3-16-64@55", 64, 16, 55, 3, 1, 1, Activation::Relu),
        ("sq3x3-32-128@27", 128, 32, 27, 3, 1, 1, Activation::Relu),
        ("sq3x3-64-256@13", 256, 64, 13, 3, 1, 1, Activation::Relu),
        ("sq3x3-48-192@13", 192, 48, 13, 3, 1, 1, Activation::Relu),
        ("x3x3-32-64@13", 64, 32, 13, 3, 1, 1, Activation::Relu),
        ("x3x3-16-32@13", 32, 16, 13, 3, 1, 1, Activation::Relu),
        ("x3x3-64-64@12", 64, 64, 12, 3, 1, 1, Activation::Relu),
        ("x3x3-64-64@9", 64, 64, 9, 3, 1, 1, Activation::Relu),
        ("r18-512@7", 512, 512, 7, 3, 1, 1, Activation::Relu),
        ("r18-256@14", 256, 256, 14, 3, 1, 1, Activation::Relu),
        ("r18s2-64-128@56", 128, 64, 56, 3, 2, 1, Activation::Relu),
        ("r18s2-128-256@28", 256, 128, 28, 3, 2, 1, Activation::Relu),
        ("r18s2-256-512@14", 512, 256, 14, 3, 2, 1, Activation::Relu),
        ("r18stem3-64@224s2", 64, 3, 224, 7, 2, 3, Activation::Relu),
        ("stem3-32@224s2", 32, 3, 224, 3, 2, 1, swish),
        ("stem3-32@224s2id", 32, 3, 224, 3, 2, 1, Activation::Identity),
        ("sqstem3-64@224s2", 64, 3, 224, 3, 2, 0, Activation::Relu),
        ("mbstem3-16@224s2", 16, 3, 224, 3, 2, 1, Activation::HardSwish),
        ("mb16-72@56relu", 72, 16, 56, 1, 1, 0, Activation::Relu),
        ("mb16-16@56", 16, 16, 56, 1, 1, 0, Activation::Identity),
        ("mb96-576@7", 576, 96, 7, 1, 1, 0, Activation::HardSwish),
        ("mb576-96@7", 96, 576, 7, 1, 1, 0, Activation::Identity),
        ("cls512-1000@13", 1000, 512, 13, 1, 1, 0, Activation::Identity),
    ];
    for (name, m, c, hw, ks, s, p, act) in shapes {
        if filter.as_ref().is_some_and(|f| !f.split(",").any(|f| name == f)) {
            continue;
        }
        let oh = (hw + 2 * p - ks) / s + 1;
        let g = Conv2dGeometry { c, ih: hw, iw: hw, oh, ow: oh, kh: ks, kw: ks, sh: s, sw: s, dh: 1, dw: 1, ph: p, pw: p };
        let k = c * ks * ks;
        let n = oh * oh;
        let x: Vec<f32> = (0..c * hw * hw).map(|i| ((i % 97) as f32 - 48.0) / 97.0).collect();
        let w: Vec<f32> = (0..m * k).map(|i| ((i % 89) as f32 - 44.0) / 89.0).collect();
        let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.01).collect();
        let flops = 2.0 * (m * k * n) as f64;
        let mut y: Vec<MaybeUninit<f32>> = vec![MaybeUninit::new(0.0); m * n];
        let pa = PackedA::new(m, k, MatRef::new(&w, k as isize, 1));
        let ep = Epilogue { row_bias: Some(&bias), act, ..Epilogue::default() };
        let mut y2: Vec<MaybeUninit<f32>> = vec![MaybeUninit::new(0.0); m * n];
        let dw = DirectWeights::new(m, k, &w);
        let pointwise = ks == 1 && s == 1;
        let mut gemm = || {
            if pointwise {
                drop(sgemm_new(m, k, n, Lhs::Packed(&pa), Rhs::Strided(MatRef::new(&x, n as isize, 1)), &ep, threads))
            } else {
                conv2d_gemm(&g, &x, &pa, &mut y, &ep, threads)
            }
        };
        let mut direct = || {
            if let Some(dw) = &dw {
                if pointwise {
                    convdirect::pointwise_direct(k, n, &x, dw, Some(&bias), act, &mut y2, threads)
                } else {
                    convdirect::conv2d_direct(&g, &x, dw, Some(&bias), act, &mut y2, threads)
                }
            }
        };
        // The direct kernel into a fresh output buffer per call (as in a model).
        let mut two_pass = || {
            if let Some(dw) = &dw {
                let mut y3: Vec<f32> = Vec::with_capacity(m * n);
                let yu = &mut y3.spare_capacity_mut()[..m * n];
                if pointwise {
                    convdirect::pointwise_direct(k, n, &x, dw, Some(&bias), act, yu, threads);
                } else {
                    convdirect::conv2d_direct(&g, &x, dw, Some(&bias), act, yu, threads)
                }
                std::hint::black_box(&y3);
            }
        };
        let wino_w = if ks == 3 && s == 1 {
            std::env::var("WINO").ok().map(|v| if v == "2" { kiln_kernels::winograd::TileSize::F2 } else { kiln_kernels::winograd::TileSize::F4 }).or(kiln_kernels::winograd::choose(m, c, oh, oh)).and_then(|t| kiln_kernels::winograd::WinogradWeights::new(t, m, c, &w))
        } else {
            None
        };
        let mut y4: Vec<MaybeUninit<f32>> = vec![MaybeUninit::new(0.0); m * n];
        let mut wino = || {
            if let Some(ww) = &wino_w {
                kiln_kernels::winograd::conv3x3_winograd(&g, 1, &x, ww, &mut y4, Some(&bias), act == Activation::Relu, threads);
            }
        };
        let t = best_of(&mut [&mut gemm, &mut direct, &mut two_pass, &mut wino], 0.6);
        if wino_w.is_some() {
            println!("{name:18} winograd {:7.3} ms {:?}", t[3] * 1e3, wino_w.as_ref().map(|w| w.tile()));
        }
        let (tg, td) = (t[0], if dw.is_some() { t[1] } else { f64::NAN });
        println!("{name:18} fresh-y  {:7.3} ms", t[2] * 1e3);
        let pays = convdirect::pays(m, k);
        println!(
            "{name:18} m{m:5} k{k:5} n{n:6}  gemm {:7.3} ms {:6.1} GF/s  direct {:7.3} ms {:6.1} GF/s  {}",
            tg * 1e3, flops / tg / 1e9, td * 1e3, flops / td / 1e9, if pays { "[direct]" } else { "[gemm]" }
        );
    }
}
