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
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if g.sw == 1 => return unsafe { dw_avx512_direct(g, x, w, bias, y) },
            // SAFETY: AVX-512F was detected on this machine.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => return unsafe { dw_avx512(g, x, w, bias, y, scratch) },
            // SAFETY: AVX2 and FMA were detected on this machine.
            Isa::Avx2 => return unsafe { dw_avx2(g, x, w, bias, y, scratch) },
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    dw_body(g, x, w, bias, y, scratch)
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw_avx2(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32], scratch: &mut Vec<f32>) {
    dw_body(g, x, w, bias, y, scratch)
}

/// Fills the zero-padded, stride-phase-split copy of `x` that every tap reads contiguously.
/// Returns (rows per phase, row length, elements used); `scratch` gets `V` spare zeros at the end.
fn prepare(g: &DwGeometry, x: &[f32], scratch: &mut Vec<f32>) -> (usize, usize, usize) {
    // Padded extent actually read by the taps.
    let prow = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    let pcol = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    // Columns split into `sw` phases: padded column c lives in phase c % sw at index c / sw.
    let plen = pcol.div_ceil(g.sw);
    let used = g.sw * prow * plen;
    // V spare elements at the end: a partial last vector of a row is computed full width
    // (the extra lanes read the next row or the spare, and are not stored).
    let need = used + V;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let img = &mut scratch[..need];
    for q in 0..g.sw {
        // Phase q, index i holds padded column i·sw + q, i.e. input column i·sw + q − pw.
        let lo = if g.pw > q { (g.pw - q).div_ceil(g.sw) } else { 0 }.min(plen);
        let hi = if g.pw + g.iw > q { (g.pw + g.iw - q).div_ceil(g.sw) } else { 0 }.clamp(lo, plen);
        for r in 0..prow {
            let dst = &mut img[(q * prow + r) * plen..(q * prow + r + 1) * plen];
            let xr = r as isize - g.ph as isize;
            if xr < 0 || xr as usize >= g.ih {
                dst.fill(0.0);
                continue;
            }
            let xrow = &x[xr as usize * g.iw..(xr as usize + 1) * g.iw];
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            if g.sw == 1 {
                dst[lo..hi].copy_from_slice(&xrow[lo + q - g.pw..hi + q - g.pw]);
            } else {
                for (i, d) in dst[lo..hi].iter_mut().enumerate() {
                    *d = xrow[(lo + i) * g.sw + q - g.pw];
                }
            }
        }
    }
    img[used..].fill(0.0);
    (prow, plen, used)
}

const V: usize = 16;
/// Taps kept on the stack up to this many (7×7 kernels); larger kernels use the heap.
const STACK_TAPS: usize = 49;

/// Per tap: (phase row offset without the output-row term, column start, weight).
fn with_taps<R>(g: &DwGeometry, prow: usize, w: &[f32], f: impl FnOnce(&[(usize, usize, f32)]) -> R) -> R {
    let n = g.kh * g.kw;
    let tap = |t: usize| {
        let (a, b) = (t / g.kw, t % g.kw);
        let c0 = b * g.dw;
        ((c0 % g.sw) * prow + a * g.dh, c0 / g.sw, w[t])
    };
    if n <= STACK_TAPS {
        let mut buf = [(0usize, 0usize, 0f32); STACK_TAPS];
        for (t, slot) in buf[..n].iter_mut().enumerate() {
            *slot = tap(t);
        }
        f(&buf[..n])
    } else {
        let v: Vec<_> = (0..n).map(tap).collect();
        f(&v)
    }
}

#[inline(always)]
fn dw_body(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32], scratch: &mut Vec<f32>) {
    let (prow, plen, _) = prepare(g, x, scratch);
    let img = &scratch[..];
    with_taps(g, prow, w, |taps| {
        for orow in 0..g.oh {
            let yrow = &mut y[orow * g.ow..(orow + 1) * g.ow];
            let rbase = orow * g.sh;
            let mut o0 = 0;
            while o0 < g.ow {
                let rem = (g.ow - o0).min(V);
                let mut acc = [bias; V];
                for &(row, start, wv) in taps {
                    let src = &img[(row + rbase) * plen + start + o0..][..V];
                    for (s, &v) in acc.iter_mut().zip(src) {
                        *s += wv * v;
                    }
                }
                yrow[o0..o0 + rem].copy_from_slice(&acc[..rem]);
                o0 += V;
            }
        }
    })
}

/// AVX-512 form of [`dw_body`]: four output rows at a time, 16 columns per vector, masked stores
/// at the row end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dw_avx512(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32], scratch: &mut Vec<f32>) {
    use std::arch::x86_64::*;
    let (prow, plen, _) = prepare(g, x, scratch);
    let img = scratch.as_ptr();
    let limit = scratch.len();
    with_taps(g, prow, w, |taps| {
        // Largest element offset a tap reads for output row `orow`, column block `o0`, plus V.
        let reach = |orow: usize, o0: usize| taps.iter().map(|&(row, start, _)| (row + orow * g.sh) * plen + start + o0 + V).max().unwrap_or(0);
        if reach(g.oh - 1, (g.ow - 1) / V * V) > limit {
            // Unreachable by construction of `prepare`; keeps the raw reads below provably in bounds.
            return dw_body(g, x, w, bias, y, &mut scratch.clone());
        }
        let vb = _mm512_set1_ps(bias);
        let mut orow = 0;
        while orow < g.oh {
            let nr = (g.oh - orow).min(4);
            let mut o0 = 0;
            while o0 < g.ow {
                let rem = (g.ow - o0).min(V);
                let mask: __mmask16 = if rem == V { 0xffff } else { (1u16 << rem) - 1 };
                let (mut a0, mut a1, mut a2, mut a3) = (vb, vb, vb, vb);
                for &(row, start, wv) in taps {
                    let wvv = _mm512_set1_ps(wv);
                    // SAFETY: every offset is at most `reach(..)` − V ≤ limit − V (checked above).
                    let p = img.add((row + orow * g.sh) * plen + start + o0);
                    let step = g.sh * plen;
                    a0 = _mm512_fmadd_ps(wvv, _mm512_loadu_ps(p), a0);
                    if nr > 1 {
                        a1 = _mm512_fmadd_ps(wvv, _mm512_loadu_ps(p.add(step)), a1);
                    }
                    if nr > 2 {
                        a2 = _mm512_fmadd_ps(wvv, _mm512_loadu_ps(p.add(2 * step)), a2);
                    }
                    if nr > 3 {
                        a3 = _mm512_fmadd_ps(wvv, _mm512_loadu_ps(p.add(3 * step)), a3);
                    }
                }
                let out = y.as_mut_ptr().add(orow * g.ow + o0);
                // SAFETY: rows orow..orow+nr exist and columns o0..o0+rem lie within each row
                // (y.len() >= oh·ow is asserted by the caller).
                _mm512_mask_storeu_ps(out, mask, a0);
                if nr > 1 {
                    _mm512_mask_storeu_ps(out.add(g.ow), mask, a1);
                }
                if nr > 2 {
                    _mm512_mask_storeu_ps(out.add(2 * g.ow), mask, a2);
                }
                if nr > 3 {
                    _mm512_mask_storeu_ps(out.add(3 * g.ow), mask, a3);
                }
                o0 += V;
            }
            orow += nr;
        }
    })
}

/// AVX-512 depthwise convolution for column stride 1 reading the input directly: each tap is a
/// masked load whose mask drops the columns that fall in the padding (they contribute zero).
/// R output rows per pass, 16 columns per vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dw_avx512_direct(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32]) {
    let mut orow = 0;
    while orow < g.oh {
        match g.oh - orow {
            1 => dw_direct_rows::<1>(g, x, w, bias, y, orow),
            2 => dw_direct_rows::<2>(g, x, w, bias, y, orow),
            3 => dw_direct_rows::<3>(g, x, w, bias, y, orow),
            _ => dw_direct_rows::<4>(g, x, w, bias, y, orow),
        }
        orow += 4;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dw_direct_rows<const R: usize>(g: &DwGeometry, x: &[f32], w: &[f32], bias: f32, y: &mut [f32], orow: usize) {
    use std::arch::x86_64::*;
    let xp = x.as_ptr();
    let vb = _mm512_set1_ps(bias);
    let mut o0 = 0;
    while o0 < g.ow {
        let rem = (g.ow - o0).min(V);
        let mut acc = [vb; R];
        for a in 0..g.kh {
            // Input row of each output row for kernel row `a` (None: in the padding).
            let mut rows = [None; R];
            for (r, slot) in rows.iter_mut().enumerate() {
                let iy = ((orow + r) * g.sh + a * g.dh) as isize - g.ph as isize;
                if iy >= 0 && iy < g.ih as isize {
                    *slot = Some(iy as usize * g.iw);
                }
            }
            for b in 0..g.kw {
                let ix0 = (o0 + b * g.dw) as isize - g.pw as isize;
                let lo = (-ix0).max(0) as usize;
                let hi = ((g.iw as isize - ix0).max(0) as usize).min(rem);
                if lo >= hi {
                    continue;
                }
                let mask = (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16;
                let wv = _mm512_set1_ps(w[a * g.kw + b]);
                for (r, row) in rows.iter().enumerate() {
                    if let Some(base) = *row {
                        // SAFETY: lanes in lo..hi read input columns ix0+lo..ix0+hi of row `base`,
                        // inside 0..iw (x.len() >= ih·iw is asserted by the caller); the other
                        // lanes are masked off and not accessed.
                        let p = xp.wrapping_offset(base as isize + ix0);
                        acc[r] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask, p), acc[r]);
                    }
                }
            }
        }
        let smask: __mmask16 = if rem == V { 0xffff } else { (1u16 << rem) - 1 };
        for (r, &v) in acc.iter().enumerate() {
            // SAFETY: row orow+r < oh and columns o0..o0+rem < ow; y.len() >= oh·ow (asserted).
            _mm512_mask_storeu_ps(y.as_mut_ptr().add((orow + r) * g.ow + o0), smask, v);
        }
        o0 += V;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_definition() {
        for (k, s, p, d, h, wd) in [(3usize, 1usize, 1usize, 1usize, 7usize, 20usize), (3, 2, 1, 1, 8, 37), (5, 2, 2, 1, 9, 6), (3, 2, 0, 1, 5, 5), (3, 1, 2, 2, 6, 18), (5, 1, 2, 1, 14, 14), (3, 1, 1, 1, 7, 7), (5, 2, 2, 1, 14, 14), (3, 2, 1, 1, 56, 56), (3, 1, 1, 1, 33, 40), (7, 3, 3, 1, 11, 23), (3, 1, 4, 1, 5, 21), (5, 1, 2, 1, 16, 16), (3, 1, 0, 1, 3, 17)] {
            let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1;
            let ow = (wd + 2 * p - d * (k - 1) - 1) / s + 1;
            let g = DwGeometry { ih: h, iw: wd, oh, ow, kh: k, kw: k, sh: s, sw: s, dh: d, dw: d, ph: p, pw: p };
            let x: Vec<f32> = (0..h * wd).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let w: Vec<f32> = (0..k * k).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
            let mut y = vec![0f32; oh * ow];
            depthwise_conv2d(&g, &x, &w, 0.5, &mut y);
            // The portable body must agree with the dispatched one.
            let mut y2 = vec![0f32; oh * ow];
            dw_body(&g, &x, &w, 0.5, &mut y2, &mut Vec::new());
            assert_eq!(y, y2);
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

    #[test]
    fn row_stride_differs_from_column_stride() {
        // sh 2, sw 1, dilation (1, 2), padding only on the left/top.
        let g = DwGeometry { ih: 9, iw: 23, oh: 5, ow: 21, kh: 3, kw: 3, sh: 2, sw: 1, dh: 1, dw: 2, ph: 1, pw: 2 };
        let x: Vec<f32> = (0..g.ih * g.iw).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let w: Vec<f32> = (0..9).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let mut y = vec![0f32; g.oh * g.ow];
        depthwise_conv2d(&g, &x, &w, -1.0, &mut y);
        for i in 0..g.oh {
            for j in 0..g.ow {
                let mut acc = -1.0f32;
                for a in 0..3 {
                    for b in 0..3 {
                        let r = (i * 2 + a) as isize - 1;
                        let q = (j + b * 2) as isize - 2;
                        if r >= 0 && q >= 0 && (r as usize) < g.ih && (q as usize) < g.iw {
                            acc += x[r as usize * g.iw + q as usize] * w[a * 3 + b];
                        }
                    }
                }
                assert_eq!(y[i * g.ow + j], acc, "at ({i},{j})");
            }
        }
    }
}
