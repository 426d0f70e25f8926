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

/// Starts loading the rows of a row-contiguous C tile (`bytes` per row) into L1 while the depth
/// loop runs, so the epilogue does not wait for them.
#[inline(always)]
fn prefetch_c(out: &TileOut, bytes: usize) {
    if out.csc != 1 {
        return;
    }
    for i in 0..out.rows {
        let row = out.c.wrapping_offset(i as isize * out.rsc) as *const i8;
        let mut off = 0;
        while off < bytes {
            // SAFETY: prefetching is a hint and never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(off)) };
            off += 64;
        }
        // The row's last line when it does not start on a line boundary.
        // SAFETY: as above.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(bytes - 4)) };
    }
}

/// Starts loading the line holding `p` into L2.
#[inline(always)]
pub(crate) fn prefetch_l2(p: *const f32) {
    // SAFETY: prefetching is a hint and never faults, whatever the address.
    unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast::<i8>()) };
}

/// Spreads a tile's L2 prefetches ([`TileEp::prefetch`]) evenly over its depth loop: one line
/// every `every` steps. Issued in one burst, they would fill the core's miss buffers and stall
/// the multiply-adds behind them.
struct Prefetcher {
    p: *const f32,
    left: usize,
    every: usize,
    count: usize,
}

impl Prefetcher {
    #[inline(always)]
    fn new(kc: usize, ep: &TileEp) -> Prefetcher {
        let every = if ep.prefetch_lines == 0 { usize::MAX } else { (kc / ep.prefetch_lines).max(1) };
        Prefetcher { p: ep.prefetch, left: ep.prefetch_lines, every, count: every }
    }
    #[inline(always)]
    fn step(&mut self) {
        self.count -= 1;
        if self.count == 0 {
            self.count = self.every;
            if self.left > 0 {
                prefetch_l2(self.p);
                self.p = self.p.wrapping_add(16);
                self.left -= 1;
            }
        }
    }

    /// Issues the lines the depth loop had no step left for.
    #[inline(always)]
    fn rest(&mut self) {
        while self.left > 0 {
            prefetch_l2(self.p);
            self.p = self.p.wrapping_add(16);
            self.left -= 1;
        }
    }
}

/// Runs a tile's depth loop: `step(p)` for p in 0..kc, in groups of four (one loop branch and
/// one prefetch slot per group, see [`Prefetcher`]), then the rest.
#[inline(always)]
fn depth_loop(kc: usize, ep: &TileEp, mut step: impl FnMut(usize)) {
    const UNROLL: usize = 4;
    let mut pf = Prefetcher::new(kc / UNROLL, ep);
    let mut p = 0;
    while p + UNROLL <= kc {
        pf.step();
        for u in 0..UNROLL {
            step(p + u);
        }
        p += UNROLL;
    }
    while p < kc {
        step(p);
        p += 1;
    }
    pf.rest();
}

/// One MR_AVX512 × `w` tile (w = 16 or 32) of `a` panel × `b` panel, stored through `ep`.
///
/// # Safety
/// AVX-512F must be available; `a` readable for MR·kc floats, `b` for w·kc floats; `out` and the
/// bias pointers valid for the tile's rows and columns.
/// A tile of fewer rows (the last of a panel padded with zero rows) computes only its rows.
pub(crate) unsafe fn kernel_avx512(kc: usize, a: *const f32, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    tiles512::<false>(kc, a, MR_AVX512, b, w, out, ep)
}

/// Dispatches on the tile's rows and width; `lda` is the row stride of A when DIRECT, else the
/// packed panel's depth stride.
#[inline(always)]
unsafe fn tiles512<const DIRECT: bool>(kc: usize, a: *const f32, lda: usize, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    macro_rules! rows {
        ($r:expr) => {
            if w > 16 {
                tile512::<{ $r }, 2, DIRECT>(kc, a, lda, b, out, ep)
            } else {
                tile512::<{ $r }, 1, DIRECT>(kc, a, lda, b, out, ep)
            }
        };
    }
    match out.rows {
        1 => rows!(1),
        2 => rows!(2),
        3 => rows!(3),
        4 => rows!(4),
        5 => rows!(5),
        6 => rows!(6),
        7 => rows!(7),
        _ => rows!(MR_AVX512),
    }
}

/// As [`kernel_avx512`] with A read in place: row i of the tile at `a + i·lda`, depth contiguous.
/// Tiles of fewer than MR_AVX512 rows compute only their rows.
///
/// # Safety
/// As [`kernel_avx512`], with `a + i·lda` readable for kc floats for every i < out.rows
/// (1 ≤ out.rows ≤ MR_AVX512).
pub(crate) unsafe fn kernel_avx512_direct(kc: usize, a: *const f32, lda: usize, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    tiles512::<true>(kc, a, lda, b, w, out, ep)
}

/// A tile of MR rows × 16·NV columns; A is a packed panel (element (i, p) at `a[p·lda + i]`, lda
/// being the full panel height) or, when DIRECT, rows in place (element (i, p) at `a[i·lda + p]`).
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const MR: usize, const NV: usize, const DIRECT: bool>(kc: usize, a: *const f32, lda: usize, b: *const f32, out: &TileOut, ep: &TileEp) {
    prefetch_c(out, 64 * NV);
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let rows: [*const f32; MR] = std::array::from_fn(|i| if DIRECT { a.add(i * lda) } else { a.add(i) });
    depth_loop(kc, ep, |p| {
        let bp = b.add(p * 16 * NV);
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = _mm512_loadu_ps(bp.add(16 * v));
        }
        for (row, r) in acc.iter_mut().zip(rows) {
            let ai = _mm512_set1_ps(*r.add(if DIRECT { p } else { p * lda }));
            for (x, bx) in row.iter_mut().zip(bv) {
                *x = _mm512_fmadd_ps(ai, bx, *x);
            }
        }
    });
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
    } else if out.rsc == 1 && out.rows <= MR && MR <= 8 {
        // Column-contiguous C (a product stored transposed): each 16-lane vector as two 8-lane
        // halves, stored by the AVX2 column path.
        let mut halves = [[_mm256_setzero_ps(); 4]; MR];
        for (h, row) in halves.iter_mut().zip(&acc) {
            for (v, &r) in row.iter().enumerate() {
                h[2 * v] = _mm512_castps512_ps256(r);
                h[2 * v + 1] = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(r)));
            }
        }
        if NV == 1 {
            let h: [[__m256; 2]; MR] = std::array::from_fn(|i| [halves[i][0], halves[i][1]]);
            store_cols256(&h, out, ep);
        } else {
            store_cols256(&halves, out, ep);
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
/// A tile of fewer rows (the last of a panel padded with zero rows) computes only its rows.
pub(crate) unsafe fn kernel_avx2(kc: usize, a: *const f32, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    tiles256::<false>(kc, a, MR_AVX2, b, w, out, ep)
}

/// As [`tiles512`].
#[inline(always)]
unsafe fn tiles256<const DIRECT: bool>(kc: usize, a: *const f32, lda: usize, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    macro_rules! rows {
        ($r:expr) => {
            if w > 8 {
                tile256::<{ $r }, 2, DIRECT>(kc, a, lda, b, out, ep)
            } else {
                tile256::<{ $r }, 1, DIRECT>(kc, a, lda, b, out, ep)
            }
        };
    }
    match out.rows {
        1 => rows!(1),
        2 => rows!(2),
        3 => rows!(3),
        4 => rows!(4),
        5 => rows!(5),
        _ => rows!(MR_AVX2),
    }
}

/// As [`kernel_avx2`] with A read in place (see [`kernel_avx512_direct`]).
///
/// # Safety
/// As [`kernel_avx2`], with `a + i·lda` readable for kc floats for every i < out.rows
/// (1 ≤ out.rows ≤ MR_AVX2).
pub(crate) unsafe fn kernel_avx2_direct(kc: usize, a: *const f32, lda: usize, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    tiles256::<true>(kc, a, lda, b, w, out, ep)
}

/// As [`tile512`] with 8-wide vectors.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const MR: usize, const NV: usize, const DIRECT: bool>(kc: usize, a: *const f32, lda: usize, b: *const f32, out: &TileOut, ep: &TileEp) {
    prefetch_c(out, 32 * NV);
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    let rows: [*const f32; MR] = std::array::from_fn(|i| if DIRECT { a.add(i * lda) } else { a.add(i) });
    depth_loop(kc, ep, |p| {
        let bp = b.add(p * 8 * NV);
        let mut bv = [_mm256_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = _mm256_loadu_ps(bp.add(8 * v));
        }
        for (row, r) in acc.iter_mut().zip(rows) {
            let ai = _mm256_broadcast_ss(&*r.add(if DIRECT { p } else { p * lda }));
            for (x, bx) in row.iter_mut().zip(bv) {
                *x = _mm256_fmadd_ps(ai, bx, *x);
            }
        }
    });
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
    } else if out.rsc == 1 && out.rows <= MR && MR <= 8 {
        store_cols256(&acc, out, ep);
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

/// Stores a tile into a column-contiguous C (row stride 1: a product stored transposed, see
/// `sgemm_into_col_major`): 8 columns at a time are transposed in registers, and each column's
/// `out.rows` consecutive floats are written with plain stores, with the same epilogue as the
/// row-major path.
///
/// # Safety
/// AVX2 and FMA must be available; MR ≤ 8, out.rows ≤ MR, out.cols ≤ 8·NV; `out` and the bias
/// pointers valid for the tile's rows and columns.
#[target_feature(enable = "avx2,fma")]
unsafe fn store_cols256<const MR: usize, const NV: usize>(acc: &[[__m256; NV]; MR], out: &TileOut, ep: &TileEp) {
    let zero = _mm256_setzero_ps();
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(out.rows as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    let alpha = _mm256_set1_ps(ep.alpha);
    let cm = _mm256_set1_ps(ep.cmul);
    let rb = if ep.row_bias.is_null() { zero } else { _mm256_maskload_ps(ep.row_bias, mask) };
    for v in 0..NV {
        let mut r = [zero; 8];
        for (ri, row) in r.iter_mut().zip(acc.iter()) {
            *ri = row[v];
        }
        for (q, col) in transpose8_regs(r).into_iter().enumerate() {
            let j = 8 * v + q;
            if j >= out.cols {
                break;
            }
            let p = out.c.offset(j as isize * out.csc);
            let mut x = col;
            if ep.alpha != 1.0 {
                x = _mm256_mul_ps(x, alpha);
            }
            if ep.cmul != 0.0 {
                x = _mm256_fmadd_ps(_mm256_maskload_ps(p, mask), cm, x);
            }
            if !ep.row_bias.is_null() {
                x = _mm256_add_ps(x, rb);
            }
            if !ep.col_bias.is_null() {
                x = _mm256_add_ps(x, _mm256_set1_ps(*ep.col_bias.add(j)));
            }
            if ep.relu {
                x = _mm256_max_ps(x, zero);
            }
            store_first(p, x, out.rows);
        }
    }
}

/// Writes the first `n` (≤ 8) lanes of `x` to `p` with plain 4-, 2- and 1-float stores (masked
/// stores are slow on some x86 cores).
///
/// # Safety
/// AVX must be available; `p` writable for `n` floats.
#[target_feature(enable = "avx")]
#[inline]
unsafe fn store_first(p: *mut f32, x: __m256, n: usize) {
    if n >= 8 {
        return _mm256_storeu_ps(p, x);
    }
    let (mut rest, mut off) = (_mm256_castps256_ps128(x), 0);
    if n >= 4 {
        _mm_storeu_ps(p, rest);
        rest = _mm256_extractf128_ps::<1>(x);
        off = 4;
    }
    if n - off >= 2 {
        _mm_store_sd(p.add(off).cast::<f64>(), _mm_castps_pd(rest));
        rest = _mm_movehl_ps(rest, rest);
        off += 2;
    }
    if n > off {
        _mm_store_ss(p.add(off), rest);
    }
}

/// Transposes the 8×8 block at `src` (row stride `ss`) into `dst` (row stride `ds`).
///
/// # Safety
/// AVX must be available; `src + r·ss` readable and `dst + r·ds` writable for 8 floats, r < 8.
#[target_feature(enable = "avx")]
pub(crate) unsafe fn transpose8_avx(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    let r = [
        _mm256_loadu_ps(src),
        _mm256_loadu_ps(src.add(ss)),
        _mm256_loadu_ps(src.add(2 * ss)),
        _mm256_loadu_ps(src.add(3 * ss)),
        _mm256_loadu_ps(src.add(4 * ss)),
        _mm256_loadu_ps(src.add(5 * ss)),
        _mm256_loadu_ps(src.add(6 * ss)),
        _mm256_loadu_ps(src.add(7 * ss)),
    ];
    for (q, v) in transpose8_regs(r).into_iter().enumerate() {
        _mm256_storeu_ps(dst.add(q * ds), v);
    }
}

/// The 8×8 transpose of eight vectors: lane j of result i is lane i of input j.
///
/// # Safety
/// AVX must be available.
#[target_feature(enable = "avx")]
#[inline]
pub(crate) unsafe fn transpose8_regs(r: [__m256; 8]) -> [__m256; 8] {
    // Pairs of rows interleaved: [r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5]], ...
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    // Columns q and q+4 of rows 0..4 (s0..s3) and rows 4..8 (s4..s7).
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}
