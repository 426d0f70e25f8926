//! Matrix–vector special cases of the packed GEMM: a single column of C (n = 1, e.g. a 1×1
//! convolution on a 1×1 image) and a single row of C against a prepacked B (batch-1 Linear).

use super::{store_tile_scalar, Epilogue, KernelInfo, Lhs, MatRef, PackedB, TileEp, TileOut};

/// C[m×1] = epilogue(A · b) for b = column 0 of `b`.
pub(super) fn gemv_col(info: &KernelInfo, m: usize, k: usize, a: &Lhs<'_>, b: &MatRef<'_>, c: *mut f32, rsc: isize, ep: &Epilogue<'_>) {
    let x: Vec<f32> = (0..k).map(|p| b.at(p, 0)).collect();
    let mut y = vec![0f32; m];
    match a {
        Lhs::Strided(av) if av.cs == 1 => {
            for (i, yi) in y.iter_mut().enumerate() {
                let start = (i as isize * av.rs) as usize;
                *yi = dot(&av.data[start..start + k], &x);
            }
        }
        Lhs::Strided(av) => {
            for (p, &xp) in x.iter().enumerate() {
                for (i, yi) in y.iter_mut().enumerate() {
                    *yi += av.at(i, p) * xp;
                }
            }
        }
        Lhs::Packed(pa) => {
            let mr = info.mr;
            let mut pc = 0;
            while pc < k {
                let kc = info.kc.min(k - pc);
                let block = pa.block(pc, kc, 0);
                let xs = &x[pc..pc + kc];
                for (ip, panel) in block.chunks_exact(mr * kc).enumerate() {
                    let i0 = ip * mr;
                    let rows = mr.min(m - i0);
                    match mr {
                        8 => panel_gemv::<8>(panel, xs, &mut y[i0..i0 + rows]),
                        6 => panel_gemv::<6>(panel, xs, &mut y[i0..i0 + rows]),
                        4 => panel_gemv::<4>(panel, xs, &mut y[i0..i0 + rows]),
                        _ => {
                            for (p, &xp) in xs.iter().enumerate() {
                                for (i, yi) in y[i0..i0 + rows].iter_mut().enumerate() {
                                    *yi += panel[p * mr + i] * xp;
                                }
                            }
                        }
                    }
                }
                pc += kc;
            }
        }
    }
    let out = TileOut { c, rsc, csc: 1, rows: m, cols: 1 };
    let tep = whole_ep(ep);
    // SAFETY: the caller checked C as an m×1 view at row stride rsc and the biases' lengths.
    unsafe { store_tile_scalar(&y, 1, &out, &tep) }
}

fn panel_gemv<const MR: usize>(panel: &[f32], x: &[f32], y: &mut [f32]) {
    let mut acc = [0f32; MR];
    for (col, &xp) in panel.chunks_exact(MR).zip(x) {
        for (s, &v) in acc.iter_mut().zip(col) {
            *s += v * xp;
        }
    }
    for (yi, s) in y.iter_mut().zip(acc) {
        *yi += s;
    }
}

/// Parts per thread of a threaded row product: it is bound by reading B, and threads sharing
/// the memory bus do not read at the same speed, so finer parts keep both busy to the end.
const GEMV_PARTS_PER_THREAD: usize = 4;

/// C[1×n] = epilogue(a · B) for a prepacked B. Column panels are split over the run's threads
/// when B is large (the product is bound by reading B).
pub(super) fn gemv_row(info: &KernelInfo, k: usize, n: usize, a: &MatRef<'_>, b: &PackedB, c: *mut f32, csc: isize, ep: &Epilogue<'_>) {
    let x: Vec<f32> = (0..k).map(|p| a.at(0, p)).collect();
    let mut y = vec![0f32; info.packed_cols(n)];
    crate::par::split_mut_by(&mut y, info.nr, (1 << 17) / k.max(1), GEMV_PARTS_PER_THREAD, |g, part| {
        crate::simd::vectorized(#[inline(always)] || row_cols(info, k, n, &x, b, g * info.nr, part))
    });
    let out = TileOut { c, rsc: 0, csc, rows: 1, cols: n };
    let tep = whole_ep(ep);
    // SAFETY: the caller checked C as a 1×n view at column stride csc and the biases' lengths.
    unsafe { store_tile_scalar(&y, n, &out, &tep) }
}

/// y[j0..] (the packed columns from `j0`, a multiple of NR) = x · B.
#[inline(always)]
fn row_cols(info: &KernelInfo, k: usize, n: usize, x: &[f32], b: &PackedB, j0: usize, y: &mut [f32]) {
    let end = (j0 + y.len()).min(n);
    let mut pc = 0;
    while pc < k {
        let kc = info.kc.min(k - pc);
        let block = b.block(pc, kc, 0);
        let xs = &x[pc..pc + kc];
        let mut j = j0;
        let mut off = j0 * kc;
        while j < end {
            let w = info.panel_width(j, n);
            let panel = &block[off..off + w * kc];
            let yj = &mut y[j - j0..j - j0 + w];
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            if x86::row_panel(info.isa, panel, xs, yj) {
                off += w * kc;
                j += w;
                continue;
            }
            match w {
                32 => row_panel::<32>(panel, xs, yj),
                16 => row_panel::<16>(panel, xs, yj),
                8 => row_panel::<8>(panel, xs, yj),
                _ => {
                    for (row, &xp) in panel.chunks_exact(w).zip(xs) {
                        for (s, &v) in yj.iter_mut().zip(row) {
                            *s += v * xp;
                        }
                    }
                }
            }
            off += w * kc;
            j += w;
        }
        pc += kc;
    }
}

#[inline(always)]
fn row_panel<const W: usize>(panel: &[f32], x: &[f32], y: &mut [f32]) {
    let mut acc = [0f32; W];
    for (row, &xp) in panel.chunks_exact(W).zip(x) {
        for (s, &v) in acc.iter_mut().zip(row) {
            *s += v * xp;
        }
    }
    for (yi, s) in y.iter_mut().zip(acc) {
        *yi += s;
    }
}

/// Dot product with 16 independent accumulators.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// The epilogue of a product computed in one pass over the whole depth (first and last block).
fn whole_ep(ep: &Epilogue<'_>) -> TileEp {
    TileEp {
        alpha: ep.alpha,
        cmul: ep.beta,
        row_bias: ep.row_bias.map_or(std::ptr::null(), |r| r.as_ptr()),
        col_bias: ep.col_bias.map_or(std::ptr::null(), |r| r.as_ptr()),
        relu: ep.relu,
        prefetch: std::ptr::null(),
        prefetch_lines: 0,
    }
}

/// Explicit-intrinsics forms of [`row_panel`]: four rows of the panel per step into independent
/// accumulators with fused multiply-adds (the autovectorised loop keeps one dependency chain per
/// vector, and splits a 32-wide accumulator array into mixed widths).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86 {
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    use super::super::Isa;

    /// y += x · panel (rows of `y.len()` floats) when `isa` has a form for this width; false if not.
    #[inline(always)]
    pub(super) fn row_panel(isa: Isa, panel: &[f32], x: &[f32], y: &mut [f32]) -> bool {
        let w = y.len();
        if panel.len() < w * x.len() {
            return false;
        }
        // SAFETY: the ISA was detected before its kernels were chosen; `panel` holds x.len() rows
        // of w floats (checked above) and `y` holds w floats.
        unsafe {
            match (isa, w) {
                (Isa::Avx512, 32) => avx512::<2>(panel.as_ptr(), x, y.as_mut_ptr()),
                (Isa::Avx512, 16) => avx512::<1>(panel.as_ptr(), x, y.as_mut_ptr()),
                (Isa::Avx2 | Isa::Avx512, 8) | (Isa::Avx2, 16) => avx2(panel.as_ptr(), x, y, w / 8),
                _ => return false,
            }
        }
        true
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const NV: usize>(panel: *const f32, x: &[f32], y: *mut f32) {
        let w = 16 * NV;
        let mut acc = [[_mm512_setzero_ps(); NV]; 4];
        let k = x.len();
        let mut p = 0;
        while p + 4 <= k {
            for (u, row) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.get_unchecked(p + u));
                let r = panel.add((p + u) * w);
                for (v, a) in row.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(16 * v)), *a);
                }
            }
            p += 4;
        }
        while p < k {
            let xv = _mm512_set1_ps(*x.get_unchecked(p));
            let r = panel.add(p * w);
            for (v, a) in acc[0].iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(16 * v)), *a);
            }
            p += 1;
        }
        for v in 0..NV {
            let s = _mm512_add_ps(_mm512_add_ps(acc[0][v], acc[1][v]), _mm512_add_ps(acc[2][v], acc[3][v]));
            let yp = y.add(16 * v);
            _mm512_storeu_ps(yp, _mm512_add_ps(_mm512_loadu_ps(yp), s));
        }
    }

    /// `nv` (1 or 2) vectors of 8 per panel row.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(panel: *const f32, x: &[f32], y: &mut [f32], nv: usize) {
        let w = 8 * nv;
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        let k = x.len();
        let mut p = 0;
        while p + 4 <= k {
            for (u, row) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_ps(*x.get_unchecked(p + u));
                let r = panel.add((p + u) * w);
                for (v, a) in row.iter_mut().enumerate().take(nv) {
                    *a = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r.add(8 * v)), *a);
                }
            }
            p += 4;
        }
        while p < k {
            let xv = _mm256_set1_ps(*x.get_unchecked(p));
            let r = panel.add(p * w);
            for (v, a) in acc[0].iter_mut().enumerate().take(nv) {
                *a = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r.add(8 * v)), *a);
            }
            p += 1;
        }
        for v in 0..nv {
            let s = _mm256_add_ps(_mm256_add_ps(acc[0][v], acc[1][v]), _mm256_add_ps(acc[2][v], acc[3][v]));
            let yp = y.as_mut_ptr().add(8 * v);
            _mm256_storeu_ps(yp, _mm256_add_ps(_mm256_loadu_ps(yp), s));
        }
    }
}
