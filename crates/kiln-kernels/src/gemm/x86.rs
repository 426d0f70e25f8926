//! AVX2+FMA and AVX-512F sgemm micro-kernels (x86 and x86-64 only; selected at run time).

#[cfg(target_arch = "x86")]
use std::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::{store_tile_scalar, TileEp, TileOut};

pub(crate) const MR_AVX512: usize = 8;
pub(crate) const MR_AVX2: usize = 6;

/// Largest tile any kernel here computes (rows × row stride of the spill buffer).
const TMP_ROWS: usize = 16;
const TMP_STRIDE: usize = 32;

/// One MR_AVX512 × `w` tile (w = 16 or 32) of `a` panel × `b` panel, stored through `ep`.
///
/// # Safety
/// AVX-512F must be available; `a` readable for MR·kc floats, `b` for w·kc floats; `out` and the
/// bias pointers valid for the tile's rows and columns.
pub(crate) unsafe fn kernel_avx512(kc: usize, a: *const f32, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    if w > 16 {
        tile512::<MR_AVX512, 2, false>(kc, a, 0, b, out, ep)
    } else {
        tile512::<MR_AVX512, 1, false>(kc, a, 0, b, out, ep)
    }
}

/// As [`kernel_avx512`] with A read in place: row i of the tile at `a + i·lda`, depth contiguous.
///
/// # Safety
/// As [`kernel_avx512`], with `a + i·lda` readable for kc floats for every i < MR_AVX512.
pub(crate) unsafe fn kernel_avx512_direct(kc: usize, a: *const f32, lda: usize, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    if w > 16 {
        tile512::<MR_AVX512, 2, true>(kc, a, lda, b, out, ep)
    } else {
        tile512::<MR_AVX512, 1, true>(kc, a, lda, b, out, ep)
    }
}

/// A tile of MR rows × 16·NV columns; A is a packed panel (element (i, p) at `a[p·MR + i]`) or,
/// when DIRECT, rows in place (element (i, p) at `a[i·lda + p]`).
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const MR: usize, const NV: usize, const DIRECT: bool>(kc: usize, a: *const f32, lda: usize, b: *const f32, out: &TileOut, ep: &TileEp) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = _mm512_loadu_ps(b.add(16 * v));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(if DIRECT { i * lda } else { i }));
            for (x, bx) in row.iter_mut().zip(bv) {
                *x = _mm512_fmadd_ps(ai, bx, *x);
            }
        }
        a = a.add(if DIRECT { 1 } else { MR });
        b = b.add(16 * NV);
    }
    if out.csc == 1 && out.rows <= MR && out.cols <= 16 * NV {
        // Row-contiguous C: full and partial tiles through masked loads and stores.
        let alpha = _mm512_set1_ps(ep.alpha);
        let cm = _mm512_set1_ps(ep.cmul);
        let zero = _mm512_setzero_ps();
        for (i, row) in acc.iter().enumerate().take(out.rows) {
            let cr = out.c.offset(i as isize * out.rsc);
            let rb = if ep.row_bias.is_null() { zero } else { _mm512_set1_ps(*ep.row_bias.add(i)) };
            for (v, &r) in row.iter().enumerate() {
                let rem = out.cols.saturating_sub(16 * v).min(16);
                if rem == 0 {
                    break;
                }
                let mask: __mmask16 = if rem == 16 { 0xffff } else { (1u16 << rem) - 1 };
                let mut x = r;
                if ep.alpha != 1.0 {
                    x = _mm512_mul_ps(x, alpha);
                }
                if ep.cmul != 0.0 {
                    x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, cr.add(16 * v)), cm, x);
                }
                if !ep.row_bias.is_null() {
                    x = _mm512_add_ps(x, rb);
                }
                if !ep.col_bias.is_null() {
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, ep.col_bias.add(16 * v)));
                }
                if ep.relu {
                    x = _mm512_max_ps(x, zero);
                }
                _mm512_mask_storeu_ps(cr.add(16 * v), mask, x);
            }
        }
    } else {
        let mut tmp = [0f32; TMP_ROWS * TMP_STRIDE];
        for (i, row) in acc.iter().enumerate() {
            for (v, &r) in row.iter().enumerate() {
                _mm512_storeu_ps(tmp.as_mut_ptr().add(i * TMP_STRIDE + 16 * v), r);
            }
        }
        store_tile_scalar(&tmp, TMP_STRIDE, out, ep);
    }
}

/// One MR_AVX2 × `w` tile (w = 8 or 16), as [`kernel_avx512`].
///
/// # Safety
/// AVX2 and FMA must be available; otherwise as [`kernel_avx512`].
pub(crate) unsafe fn kernel_avx2(kc: usize, a: *const f32, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    if w > 8 {
        tile256::<MR_AVX2, 2, false>(kc, a, 0, b, out, ep)
    } else {
        tile256::<MR_AVX2, 1, false>(kc, a, 0, b, out, ep)
    }
}

/// As [`kernel_avx2`] with A read in place (see [`kernel_avx512_direct`]).
///
/// # Safety
/// As [`kernel_avx2`], with `a + i·lda` readable for kc floats for every i < MR_AVX2.
pub(crate) unsafe fn kernel_avx2_direct(kc: usize, a: *const f32, lda: usize, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    if w > 8 {
        tile256::<MR_AVX2, 2, true>(kc, a, lda, b, out, ep)
    } else {
        tile256::<MR_AVX2, 1, true>(kc, a, lda, b, out, ep)
    }
}

/// As [`tile512`] with 8-wide vectors.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const MR: usize, const NV: usize, const DIRECT: bool>(kc: usize, a: *const f32, lda: usize, b: *const f32, out: &TileOut, ep: &TileEp) {
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let mut bv = [_mm256_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = _mm256_loadu_ps(b.add(8 * v));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm256_broadcast_ss(&*a.add(if DIRECT { i * lda } else { i }));
            for (x, bx) in row.iter_mut().zip(bv) {
                *x = _mm256_fmadd_ps(ai, bx, *x);
            }
        }
        a = a.add(if DIRECT { 1 } else { MR });
        b = b.add(8 * NV);
    }
    if out.rows == MR && out.cols == 8 * NV && out.csc == 1 {
        let alpha = _mm256_set1_ps(ep.alpha);
        let cm = _mm256_set1_ps(ep.cmul);
        let zero = _mm256_setzero_ps();
        for (i, row) in acc.iter().enumerate() {
            let cr = out.c.offset(i as isize * out.rsc);
            let rb = if ep.row_bias.is_null() { zero } else { _mm256_set1_ps(*ep.row_bias.add(i)) };
            for (v, &r) in row.iter().enumerate() {
                let mut x = r;
                if ep.alpha != 1.0 {
                    x = _mm256_mul_ps(x, alpha);
                }
                if ep.cmul != 0.0 {
                    x = _mm256_fmadd_ps(_mm256_loadu_ps(cr.add(8 * v)), cm, x);
                }
                if !ep.row_bias.is_null() {
                    x = _mm256_add_ps(x, rb);
                }
                if !ep.col_bias.is_null() {
                    x = _mm256_add_ps(x, _mm256_loadu_ps(ep.col_bias.add(8 * v)));
                }
                if ep.relu {
                    x = _mm256_max_ps(x, zero);
                }
                _mm256_storeu_ps(cr.add(8 * v), x);
            }
        }
    } else {
        let mut tmp = [0f32; TMP_ROWS * TMP_STRIDE];
        for (i, row) in acc.iter().enumerate() {
            for (v, &r) in row.iter().enumerate() {
                _mm256_storeu_ps(tmp.as_mut_ptr().add(i * TMP_STRIDE + 8 * v), r);
            }
        }
        store_tile_scalar(&tmp, TMP_STRIDE, out, ep);
    }
}
