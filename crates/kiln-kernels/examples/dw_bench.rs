//! Single-thread depthwise convolution timings: `dw_bench [identity|swish|hardswish|relu] [layer]`
//! prints the best time per call (ms) for the depthwise layers of EfficientNet-B0 (timed on
//! DW_CC channels at a time, 8 by default, and scaled to the layer's channels).

use std::mem::MaybeUninit;
use std::time::Instant;

use kiln_kernels::{depthwise_conv2d, Activation, DwGeometry};

fn main() {
    if std::env::args().nth(1).as_deref() == Some("act") {
        // Activation throughput on an L1-resident buffer, ns per element (best call of many,
        // the activations interleaved).
        let acts = [Activation::Identity, Activation::Swish(1.0), Activation::Sigmoid, Activation::HardSwish];
        let mut best = [f64::INFINITY; 4];
        let mut v: Vec<f32> = (0..4096).map(|i| (i % 200) as f32 * 0.1 - 10.0).collect();
        for _ in 0..3000 {
            for (act, b) in acts.iter().zip(&mut best) {
                let t = Instant::now();
                act.apply(&mut v);
                std::hint::black_box(&mut v);
                *b = b.min(t.elapsed().as_secs_f64());
            }
        }
        for (act, b) in acts.iter().zip(best) {
            println!("{act:?}: {:.3} ns/element", b * 1e9 / 4096.0);
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("mb") {
        mobilenet_layers();
        return;
    }
    let act = match std::env::args().nth(1).as_deref() {
        Some("identity") => Activation::Identity,
        Some("hardswish") => Activation::HardSwish,
        Some("relu") => Activation::Relu,
        _ => Activation::Swish(1.0),
    };
    // (channels, size, kernel, stride)
    let layers = [(32, 112, 3, 1), (96, 112, 3, 2), (144, 56, 3, 1), (144, 56, 5, 2), (240, 28, 5, 1), (240, 28, 3, 2), (480, 14, 3, 1), (672, 14, 5, 1), (1152, 7, 5, 1), (1152, 7, 3, 1)];
    // An optional second argument picks one layer by index.
    let only: Option<usize> = std::env::args().nth(2).and_then(|s| s.parse().ok());
    let mut total = 0.0;
    for (i, &(c, h, k, s)) in layers.iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let (g, x, w, b) = layer(c, h, k, s);
        let o = g.oh;
        let mut y = vec![MaybeUninit::<f32>::uninit(); c * o * o];
        // Best of many calls on eight channels at a time, scaled to all channels: short calls
        // are rarely preempted, so the minimum holds up on a busy machine.
        let cc = std::env::var("DW_CC").ok().and_then(|v| v.parse().ok()).unwrap_or(8).min(c);
        let mut best = f64::INFINITY;
        for _ in 0..400 {
            let t = Instant::now();
            depthwise_conv2d(&g, cc, &x, &w, Some(&b), act, &mut y);
            best = best.min(t.elapsed().as_secs_f64());
        }
        best *= c as f64 / cc as f64;
        total += best * 1e3;
        println!("k{k} s{s} C{c} {h}x{h}: {:.3} ms", best * 1e3);
    }
    println!("total {total:.3} ms");
}

/// The depthwise layers of MobileNetV3-small with all their channels and a fresh output per call.
fn mobilenet_layers() {
    let layers = [(16, 112, 3, 2), (72, 56, 3, 2), (88, 28, 3, 1), (96, 28, 5, 2), (240, 14, 5, 1), (120, 14, 5, 1), (288, 14, 5, 2), (576, 7, 5, 1)];
    let mut total = 0.0;
    for (c, h, k, s) in layers {
        let (g, x, w, b) = layer(c, h, k, s);
        let o = g.oh;
        let mut best = f64::INFINITY;
        for _ in 0..300 {
            let mut y: Vec<f32> = Vec::with_capacity(c * o * o);
            let t = Instant::now();
            depthwise_conv2d(&g, c, &x, &w, Some(&b), Activation::HardSwish, &mut y.spare_capacity_mut()[..c * o * o]);
            best = best.min(t.elapsed().as_secs_f64());
            std::hint::black_box(&y);
        }
        total += best * 1e3;
        println!("k{k} s{s} C{c} {h}x{h}: {:.4} ms", best * 1e3);
    }
    println!("total {total:.3} ms");
}

/// A `c`-channel h×h depthwise layer with a k×k kernel, stride s and "same" padding: its geometry,
/// input, weights and bias.
fn layer(c: usize, h: usize, k: usize, s: usize) -> (DwGeometry, Vec<f32>, Vec<f32>, Vec<f32>) {
    let p = k / 2;
    let o = (h + 2 * p - k) / s + 1;
    let g = DwGeometry { ih: h, iw: h, oh: o, ow: o, kh: k, kw: k, sh: s, sw: s, dh: 1, dw: 1, ph: p, pw: p };
    let x: Vec<f32> = (0..c * h * h).map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6).collect();
    let w: Vec<f32> = (0..c * k * k).map(|i| ((i * 5) % 11) as f32 * 0.05 - 0.25).collect();
    let b: Vec<f32> = (0..c).map(|i| i as f32 * 0.01).collect();
    (g, x, w, b)
}
