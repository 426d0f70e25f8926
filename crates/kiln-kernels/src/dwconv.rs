//! Depthwise 2-D convolution of one channel (float32): the input is copied once into a
//! zero-padded, stride-phase-split scratch image so every kernel tap reads a contiguous run, and
//! each output row is accumulated in registers, 16 columns at a time. Compiled per ISA
//! (AVX-512, AVX2+FMA, portable) and chosen at run time.

use std::cell::RefCell;

/// Geometry of a depthwise convolution (per channel).
#[derive(Clone, Copy, Debug)]
pub struct DwGeometry {
    pub ih: usize,
    pub iw: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// Padding before the first row / column.
    pub ph: usize,
    pub pw: usize,
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// y[oh×ow] = conv(x[ih×iw], w[kh×kw]) + bias. Panics if a buffer is smaller than the geometry
/// needs or a stride is zero (callers validate geometry first).
pub fn depthwise_conv2d(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32]) {
    assert!(g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0, "depthwise: zero stride or dilation");
    assert!(x.len() >= g.ih * g.iw && w.len() >= g.kh * g.kw && y.len() >= g.oh * g.ow, "depthwise: buffer too small");
    if g.oh == 0 || g.ow == 0 {
        return;
    }
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => dispatch(g, x, w, bias, y, &mut s),
        Err(_) => dispatch(g, x, w, bias, y, &mut Vec::new()),
    })
}

fn dispatch(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32], scratch: &mut Vec<f32>) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        use crate::gemm::Isa;
        match crate::gemm::best_isa() {
            // SAFETY: AVX-512F was detected on this machine.
            Isa::Avx512 => return unsafe { dw_avx512(g, x, w, bias, y, scratch) },
            // SAFETY: AVX2 and FMA were detected on this machine.
            Isa::Avx2 => return unsafe { dw_avx2(g, x, w, bias, y, scratch) },
            _ => {}
        }
    }
    dw_body(g, x, w, bias, y, scratch)
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx512f")]
unsafe fn dw_avx512(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32], scratch: &mut Vec<f32>) {
    dw_body(g, x, w, bias, y, scratch)
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw_avx2(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32], scratch: &mut Vec<f32>) {
    dw_body(g, x, w, bias, y, scratch)
}

#[inline(always)]
fn dw_body(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32], scratch: &mut Vec<f32>) {
    // Padded extent actually read by the taps.
    let prow = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    let pcol = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    // Columns split into `sw` phases: padded column c lives in phase c % sw at index c / sw.
    let plen = pcol.div_ceil(g.sw);
    let need = g.sw * prow * plen;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let img = &mut scratch[..need];
    for r in 0..prow {
        let xr = r as isize - g.ph as isize;
        let inside = xr >= 0 && (xr as usize) < g.ih;
        for q in 0..g.sw {
            let dst = &mut img[(q * prow + r) * plen..(q * prow + r + 1) * plen];
            if !inside {
                dst.iter_mut().for_each(|v| *v = 0.0);
                continue;
            }
            let xrow = &x[xr as usize * g.iw..(xr as usize + 1) * g.iw];
            for (i, d) in dst.iter_mut().enumerate() {
                let c = (i * g.sw + q) as isize - g.pw as isize;
                *d = if c >= 0 && (c as usize) < g.iw { xrow[c as usize] } else { 0.0 };
            }
        }
    }
    let img = &*img;
    // Per tap: (phase row base offset without the row term, column start).
    let taps: Vec<(usize, usize, f32)> = (0..g.kh)
        .flat_map(|a| (0..g.kw).map(move |b| (a, b)))
        .map(|(a, b)| {
            let c0 = b * g.dw;
            ((c0 % g.sw) * prow + a * g.dh, c0 / g.sw, w[a * g.kw + b])
        })
        .collect();
    const V: usize = 16;
    for orow in 0..g.oh {
        let yrow = &mut y[orow * g.ow..(orow + 1) * g.ow];
        let rbase = orow * g.sh;
        let mut o0 = 0;
        while o0 + V <= g.ow {
            let mut acc = [bias; V];
            for &(row, start, wv) in &taps {
                let src = &img[(row + rbase) * plen + start + o0..][..V];
                for (s, &v) in acc.iter_mut().zip(src) {
                    *s += wv * v;
                }
            }
            yrow[o0..o0 + V].copy_from_slice(&acc);
            o0 += V;
        }
        if o0 < g.ow {
            let rem = g.ow - o0;
            let mut acc = [bias; V];
            for &(row, start, wv) in &taps {
                let src = &img[(row + rbase) * plen + start + o0..][..rem];
                for (s, &v) in acc.iter_mut().zip(src) {
                    *s += wv * v;
                }
            }
            yrow[o0..].copy_from_slice(&acc[..rem]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_definition() {
        for (k, s, p, d, h, wd) in [(3usize, 1usize, 1usize, 1usize, 7usize, 20usize), (3, 2, 1, 1, 8, 37), (5, 2, 2, 1, 9, 6), (3, 2, 0, 1, 5, 5), (3, 1, 2, 2, 6, 18), (5, 1, 2, 1, 14, 14)] {
            let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1;
            let ow = (wd + 2 * p - d * (k - 1) - 1) / s + 1;
            let g = DwGeometry { ih: h, iw: wd, oh, ow, kh: k, kw: k, sh: s, sw: s, dh: d, dw: d, ph: p, pw: p };
            let x: Vec<f32> = (0..h * wd).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let w: Vec<f32> = (0..k * k).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
            let mut y = vec![0f32; oh * ow];
            depthwise_conv2d(&g, &x, &w, 0.5, &mut y);
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.5f32;
                    for a in 0..k {
                        for b in 0..k {
                            let r = (i * s + a * d) as isize - p as isize;
                            let q = (j * s + b * d) as isize - p as isize;
                            if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < wd {
                                acc += x[r as usize * wd + q as usize] * w[a * k + b];
                            }
                        }
                    }
                    assert_eq!(y[i * ow + j], acc, "k{k} s{s} p{p} d{d} at ({i},{j})");
                }
            }
        }
    }
}
