//! Direct 2-D convolution (float32) for convolutions whose depth c·kh·kw is small, such as the
//! first layer of an image network: Y[m × oh·ow] = act(W · im2col(X) + bias) with each row of
//! im2col(X) read in place from the zero-padded, phase-split input copy (see
//! [`crate::convgemm`]) instead of being packed. Output pixels are taken as a "wide" image of
//! oh rows of wq ≥ ow columns, in which every kernel tap reads one contiguous run; tiles of
//! 6 output channels × 16 wide pixels accumulate in registers over the whole depth, and only
//! the columns below ow are stored. When packing is most of the work (few output channels per
//! packed column) this skips it; with many output channels the implicit GEMM is faster.
//! AVX-512 (tiles of 12 × 32 wide pixels) and AVX2 + FMA (6 × 16) only; elsewhere the implicit
//! GEMM runs.

use std::mem::MaybeUninit;

use crate::act::Activation;
use crate::convgemm::Conv2dGeometry;

/// Output channels per tile.
const MR: usize = 6;
/// Wide pixels per tile with AVX2 (see [`nb`]).
const NB: usize = 16;
/// Wide pixels per tile with AVX-512.
#[cfg(target_arch = "x86_64")]
const NB512: usize = 32;

/// Wide pixels per tile on this machine.
fn nb() -> usize {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::best_isa() == crate::gemm::Isa::Avx512 {
        return NB512;
    }
    NB
}
/// Pixel chunks of NB per block (see [`run`]).
const BLOCK: usize = 16;

/// Constant weights W [m × k] in the layout of the direct kernel: ⌈m/6⌉ panels, each k rows of
/// 6 output channels (zero past m).
#[derive(Clone, Debug)]
pub struct DirectWeights {
    m: usize,
    k: usize,
    buf: Vec<f32>,
}

impl DirectWeights {
    /// Rearranges row-major W [m × k], or `None` when the direct kernel cannot run here or W is
    /// too short.
    pub fn new(m: usize, k: usize, w: &[f32]) -> Option<DirectWeights> {
        if !available() || m == 0 || k == 0 || w.len() < m.checked_mul(k)? {
            return None;
        }
        let panels = m.div_ceil(MR);
        let mut buf = vec![0f32; panels * k * MR];
        for (t, panel) in buf.chunks_exact_mut(k * MR).enumerate() {
            for r in 0..MR.min(m - t * MR) {
                let row = &w[(t * MR + r) * k..][..k];
                for (p, &v) in row.iter().enumerate() {
                    panel[p * MR + r] = v;
                }
            }
        }
        Some(DirectWeights { m, k, buf })
    }

    /// Output channels (rows of W).
    pub fn rows(&self) -> usize {
        self.m
    }

    /// c·kh·kw (columns of W).
    pub fn depth(&self) -> usize {
        self.k
    }
}

/// Whether [`conv2d_direct`] has a kernel on this machine.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        matches!(crate::gemm::best_isa(), crate::gemm::Isa::Avx2 | crate::gemm::Isa::Avx512)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the direct kernel is expected to beat the (implicit) GEMM for `m` output channels and
/// depth `k`: packing B costs as much as a product with few rows (measured on the convolutions of
/// common image networks, pointwise and not).
pub fn pays(m: usize, k: usize) -> bool {
    available() && (m <= 64 || k <= 160)
}

/// C pointer shared by the threads computing disjoint tiles.
#[derive(Clone, Copy)]
struct YPtr(*mut f32);
// SAFETY: each part writes a disjoint set of tiles (see `conv2d_direct`).
unsafe impl Send for YPtr {}
// SAFETY: as above.
unsafe impl Sync for YPtr {}

/// Y[m × oh·ow] (row stride oh·ow) = act(W · im2col(X) + bias) for one convolution group, using
/// up to `threads` parts of the calling thread's pool. Every element of the first m·oh·ow of
/// `y` is written (it need not be initialised) and none is read.
///
/// Panics if the buffers are smaller than the geometry needs, a stride, dilation or kernel size
/// is zero, or the weights' depth is not c·kh·kw (callers validate shapes first), or when
/// [`available`] is false (no [`DirectWeights`] can exist then).
pub fn conv2d_direct(g: &Conv2dGeometry, x: &[f32], w: &DirectWeights, bias: Option<&[f32]>, act: Activation, y: &mut [MaybeUninit<f32>], threads: usize) {
    assert!(g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0 && g.kh > 0 && g.kw > 0, "conv2d_direct: zero stride, dilation or kernel");
    let (m, k, n) = (w.m, g.depth(), g.cols());
    assert_eq!(w.k, k, "conv2d_direct: weights have the wrong depth");
    assert!(x.len() >= g.c * g.ih * g.iw && y.len() >= m * n, "conv2d_direct: buffer too small");
    assert!(bias.map_or(true, |b| b.len() >= m), "conv2d_direct: bias too short");
    if n == 0 {
        return;
    }
    crate::convgemm::with_work(|xpad| {
        // The last tile reads up to a tile's width of wide pixels past the last output row.
        let (plane, wq) = crate::convgemm::padded_copy(g, x, xpad, nb(), threads);
        let ksz = g.kh * g.kw;
        let offs: Vec<usize> = (0..k)
            .map(|p| {
                let (ci, r) = (p / ksz, p % ksz);
                let (ya, xb) = ((r / g.kw) * g.dh, (r % g.kw) * g.dw);
                ((ci * g.sh + ya % g.sh) * g.sw + xb % g.sw) * plane + (ya / g.sh) * wq + xb / g.sw
            })
            .collect();
        let xs: &[f32] = xpad;
        run(xs, &offs, wq, usize::MAX, g.oh, g.ow, w, bias, act, y, threads);
    });
}

/// Y[m × n] = act(W · X + bias) for a pointwise convolution (or any product with X [k × n]
/// row-major), read in place; as [`conv2d_direct`] otherwise.
///
/// Panics if the buffers are smaller than the shapes need or the weights' depth is not k.
pub fn pointwise_direct(k: usize, n: usize, x: &[f32], w: &DirectWeights, bias: Option<&[f32]>, act: Activation, y: &mut [MaybeUninit<f32>], threads: usize) {
    let m = w.m;
    assert_eq!(w.k, k, "pointwise_direct: weights have the wrong depth");
    assert!(x.len() >= k * n && y.len() >= m * n, "pointwise_direct: buffer too small");
    assert!(bias.map_or(true, |b| b.len() >= m), "pointwise_direct: bias too short");
    if n == 0 {
        return;
    }
    let offs: Vec<usize> = (0..k).map(|p| p * n).collect();
    run(x, &offs, n, n, 1, n, w, bias, act, y, threads);
}

/// Tiles of Y [m × oh·ow] from `xs`: tap p of wide pixel j at xs[offs[p] + j], wide rows of `wq`
/// pixels; reads at or past wide pixel `readable` are masked off (usize::MAX: none).
#[allow(clippy::too_many_arguments)]
fn run(
    xs: &[f32], offs: &[usize], wq: usize, readable: usize, oh: usize, ow: usize, w: &DirectWeights, bias: Option<&[f32]>, act: Activation,
    y: &mut [MaybeUninit<f32>], threads: usize,
) {
    let (m, k, nb) = (w.m, w.k, nb());
    let wide = oh * wq;
    let chunks = wide.div_ceil(nb);
    assert!(
        offs.iter().all(|&o| o + (chunks * nb).min(readable) <= xs.len()) && y.len() >= m * oh * ow,
        "conv2d_direct: source too short"
    );
    let panels = m.div_ceil(MR);
    // Parts of whole pixel chunks × all channels; several per thread so a thread that falls
    // behind is helped.
    let parts = if threads > 1 && m * oh * ow * k >= 1 << 18 { (threads * 4).min(chunks) } else { 1 };
    let per = chunks.div_ceil(parts);
    let yp = YPtr(y.as_mut_ptr().cast::<f32>());
    let geo = Out { oh, ow, wq, readable };
    let job = |&(c0, c1): &(usize, usize)| {
        let yp = yp;
        // SAFETY (the `tiles` calls): the taps' reads stay in `xs` (asserted above, masked past
        // `readable`); the tiles' stores stay inside Y's m × oh·ow elements and belong to this
        // part.
        if m * oh * ow <= 1 << 19 {
            for ch in c0..c1 {
                // The chunk after next is fetched while this one is computed.
                let ahead = (ch + 2 < chunks).then_some((ch + 2) * nb);
                unsafe { tiles(xs, offs, &w.buf[..panels * k * MR], 0, ch * nb, ahead, m, &geo, bias, act, yp.0) };
            }
            return;
        }
        // Outputs well past the L2 cache go in blocks of chunks, each panel of output channels
        // over the whole block in turn: every output row is written in runs of the block's
        // width rather than one chunk at a time.
        for b0 in (c0..c1).step_by(BLOCK) {
            let b1 = (b0 + BLOCK).min(c1);
            // Two panels at a time (the AVX-512 kernel's tile).
            for t in (0..panels).step_by(2) {
                let t1 = (t + 2).min(panels);
                for ch in b0..b1 {
                    let ahead = (t == 0 && ch + 2 < chunks).then_some((ch + 2) * nb);
                    unsafe { tiles(xs, offs, &w.buf[t * k * MR..t1 * k * MR], t, ch * nb, ahead, m, &geo, bias, act, yp.0) };
                }
            }
        }
    };
    let items: Vec<(usize, usize)> = (0..parts).map(|i| ((i * per).min(chunks), ((i + 1) * per).min(chunks))).filter(|r| r.0 < r.1).collect();
    crate::par::for_each(items.iter().collect(), job);
}

/// Output shape of the wide pixels (see [`run`]); only the x86 kernels read it.
#[cfg_attr(not(any(target_arch = "x86", target_arch = "x86_64")), allow(dead_code))]
struct Out {
    oh: usize,
    ow: usize,
    wq: usize,
    readable: usize,
}

/// The tiles of one pixel chunk (of [`nb`] wide pixels) with the kernel for this machine (see
/// [`tiles_avx2`] and [`tiles_avx512`]).
///
/// # Safety
/// As [`tiles_avx2`], except that the ISA is checked here: without AVX2 and FMA (no
/// [`DirectWeights`] can exist then) nothing is written.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tiles(xs: &[f32], offs: &[usize], a: &[f32], p0: usize, j0: usize, ahead: Option<usize>, m: usize, o: &Out, bias: Option<&[f32]>, act: Activation, y: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    match crate::gemm::best_isa() {
        // SAFETY: the ISA was detected; the caller guarantees the rest for chunks of nb() = 32.
        crate::gemm::Isa::Avx512 => unsafe { tiles_avx512(xs, offs, a, p0, j0, ahead, m, o, bias, act, y) },
        // SAFETY: AVX2 and FMA were detected; as above for chunks of nb() = 16.
        crate::gemm::Isa::Avx2 => unsafe { tiles_avx2(xs, offs, a, p0, j0, ahead, m, o, bias, act, y) },
        _ => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (xs, offs, a, p0, j0, ahead, m, o, bias, act, y);
}

/// The tiles of one pixel chunk: all output channels (in panels of 6, `a` holding every panel)
/// × wide pixels j0..j0+16 (those that are output pixels), act applied. When `ahead` is given,
/// the taps of the wide pixels from there are prefetched.
///
/// # Safety
/// AVX2 and FMA must be available; `xpad[offs[p] + j0 ..][..16]` must be in bounds for every p;
/// `y` valid for writes of m × oh·ow elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tiles_avx2(xs: &[f32], offs: &[usize], a_all: &[f32], p0: usize, j0: usize, ahead: Option<usize>, m: usize, o: &Out, bias: Option<&[f32]>, act: Activation, y: *mut f32) {
    use std::arch::x86_64::*;
    if let Some(jn) = ahead {
        for &off in offs {
            // Prefetching is a hint and never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(xs.as_ptr().wrapping_add(off + jn).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(xs.as_ptr().wrapping_add(off + jn + NB - 1).cast::<i8>());
        }
    }
    let k = offs.len();
    for (t, a) in a_all.chunks_exact(k * MR).enumerate() {
        let i0 = (p0 + t) * MR;
        let rows = MR.min(m - i0);
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        if let Some(b) = bias {
            for (r, row) in acc.iter_mut().enumerate().take(rows) {
                let v = _mm256_set1_ps(b[i0 + r]);
                *row = [v, v];
            }
        }
        let xp = xs.as_ptr().add(j0);
        let ap = a.as_ptr();
        let fma = |acc: &mut [[__m256; 2]; MR], p: usize, b0: __m256, b1: __m256| {
            let w = ap.add(p * MR);
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*w.add(r));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
        };
        if j0 + NB <= o.readable {
            for (p, &off) in offs.iter().enumerate() {
                fma(&mut acc, p, _mm256_loadu_ps(xp.add(off)), _mm256_loadu_ps(xp.add(off + 8)));
            }
        } else {
            // Lanes at or past `readable` are not read.
            let valid = o.readable.saturating_sub(j0) as i32;
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lanes);
            let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid - 8), lanes);
            for (p, &off) in offs.iter().enumerate() {
                fma(&mut acc, p, _mm256_maskload_ps(xp.add(off), m0), _mm256_maskload_ps(xp.wrapping_add(off + 8), m1));
            }
        }
        // The activation on the accumulators, in registers (Sigmoid and Swish included).
        let f = |v: __m256| crate::act::act256(act, v);
        store_tile::<NB, MR>(rows, j0, i0, o, y, |r, d| {
            _mm256_storeu_ps(d, f(acc[r][0]));
            _mm256_storeu_ps(d.add(8), f(acc[r][1]));
        });
    }
}

/// Stores the first `rows` rows of a finished tile of `W` wide pixels from `j0` and up to `R`
/// output channels from `i0`: `write(r, dst)` writes row r's `W` values (activation applied) to
/// `dst`, straight into Y when the tile's pixels are consecutive outputs of one row, otherwise
/// into a buffer whose runs of output pixels are then copied (see [`store_runs`]).
///
/// # Safety
/// As [`store_runs`]; `write` writes exactly `W` floats at `dst`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_tile<const W: usize, const R: usize>(rows: usize, j0: usize, i0: usize, o: &Out, y: *mut f32, write: impl Fn(usize, *mut f32)) {
    let (wq, n) = (o.wq, o.oh * o.ow);
    let (oy, ox) = (j0 / wq, j0 % wq);
    if ox + W <= o.ow {
        let base = oy * o.ow + ox;
        for r in 0..rows {
            // SAFETY: row i0 + r, pixels base..base+W of Y (caller).
            write(r, unsafe { y.add((i0 + r) * n + base) });
        }
        return;
    }
    let mut buf = [[0f32; W]; R];
    for (r, row) in buf.iter_mut().enumerate().take(rows) {
        write(r, row.as_mut_ptr());
    }
    // SAFETY: forwarded from the caller.
    unsafe { store_runs(&buf[..rows], j0, i0, o, y) };
}

/// Stores the rows of a finished tile (`W` wide pixels from `j0`, output channels from `i0`) that
/// are output pixels: the runs of the tile within wide rows, columns below ow of rows below oh.
///
/// # Safety
/// `y` valid for writes of (i0 + rows.len()) × oh·ow elements.
#[cfg(target_arch = "x86_64")]
unsafe fn store_runs<const W: usize>(rows: &[[f32; W]], j0: usize, i0: usize, o: &Out, y: *mut f32) {
    let (wq, n) = (o.wq, o.oh * o.ow);
    let mut q = 0;
    while q < W {
        let (ry, rx) = ((j0 + q) / wq, (j0 + q) % wq);
        let len = (wq - rx).min(W - q);
        if ry >= o.oh {
            break;
        }
        if rx < o.ow {
            let cnt = (o.ow - rx).min(len);
            for (r, vals) in rows.iter().enumerate() {
                // SAFETY: row i0 + r, columns rx..rx+cnt < ow of output row ry < oh (caller).
                unsafe { copy_short(vals.as_ptr().add(q), y.add((i0 + r) * n + ry * o.ow + rx), cnt) };
            }
        }
        q += len;
    }
}

/// dst[..len] = src[..len] as fixed-size moves: a variable-length copy is a library call, and
/// these runs are short (at most a tile's width).
///
/// # Safety
/// Both ranges valid for `len` elements and not overlapping.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn copy_short(src: *const f32, dst: *mut f32, len: usize) {
    use std::ptr::copy_nonoverlapping as copy;
    let mut i = 0;
    // SAFETY (each copy): i + piece ≤ len (caller: both ranges hold len elements).
    unsafe {
        while i + 8 <= len {
            copy(src.add(i), dst.add(i), 8);
            i += 8;
        }
        if i + 4 <= len {
            copy(src.add(i), dst.add(i), 4);
            i += 4;
        }
        if i + 2 <= len {
            copy(src.add(i), dst.add(i), 2);
            i += 2;
        }
        if i < len {
            copy(src.add(i), dst.add(i), 1);
        }
    }
}

/// Depth from which the AVX-512 kernel takes two weight panels per tile: shallower tiles spend
/// too little time in the tap loop to repay the larger epilogue (`conv_bench`: 16→72 pointwise
/// @56 1.08× slower with pairs, 24→144 @56 0.94×, 16→64 3×3 @55 0.90×).
#[cfg(target_arch = "x86_64")]
const PAIR_MIN_DEPTH: usize = 20;

/// As [`tiles_avx2`] for chunks of 32 wide pixels: tiles of 12 output channels (two weight panels;
/// 6 for a last odd panel) × 2 vectors of 16.
///
/// # Safety
/// AVX-512F must be available; `xpad[offs[p] + j0 ..][..32]` must be in bounds for every p
/// (below `o.readable`); `y` valid for writes of m × oh·ow elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tiles_avx512(xs: &[f32], offs: &[usize], a_all: &[f32], p0: usize, j0: usize, ahead: Option<usize>, m: usize, o: &Out, bias: Option<&[f32]>, act: Activation, y: *mut f32) {
    use std::arch::x86_64::*;
    const W: usize = NB512;
    if let Some(jn) = ahead {
        for &off in offs {
            // Prefetching is a hint and never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(xs.as_ptr().wrapping_add(off + jn).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(xs.as_ptr().wrapping_add(off + jn + W - 1).cast::<i8>());
        }
    }
    let k = offs.len();
    // Two panels (12 output channels) per tile where there are two: 24 accumulators, each tap's
    // two pixel vectors loaded once for twice the multiply-adds.
    let panels = a_all.len() / (k * MR);
    let mut t = 0;
    while t < panels {
        // SAFETY: forwarded from the caller; the group's panels lie in `a_all`.
        unsafe {
            if t + 1 < panels && k >= PAIR_MIN_DEPTH {
                tile_group_avx512::<2, { 2 * MR }>(xs, offs, &a_all[t * k * MR..(t + 2) * k * MR], (p0 + t) * MR, j0, m, o, bias, act, y);
                t += 2;
            } else {
                tile_group_avx512::<1, MR>(xs, offs, &a_all[t * k * MR..(t + 1) * k * MR], (p0 + t) * MR, j0, m, o, bias, act, y);
                t += 1;
            }
        }
    }
}

/// One tile of [`tiles_avx512`]: the `P` consecutive weight panels in `a` (R = 6·P output
/// channels from `i0`) × the 32 wide pixels from `j0`.
///
/// # Safety
/// As [`tiles_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile_group_avx512<const P: usize, const R: usize>(xs: &[f32], offs: &[usize], a: &[f32], i0: usize, j0: usize, m: usize, o: &Out, bias: Option<&[f32]>, act: Activation, y: *mut f32) {
    use std::arch::x86_64::*;
    const W: usize = NB512;
    let k = offs.len();
    let rows = R.min(m - i0);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    if let Some(b) = bias {
        for (r, row) in acc.iter_mut().enumerate().take(rows) {
            let v = _mm512_set1_ps(b[i0 + r]);
            *row = [v, v];
        }
    }
    let xp = xs.as_ptr().add(j0);
    let ap = a.as_ptr();
    let fma = |acc: &mut [[__m512; 2]; R], p: usize, b0: __m512, b1: __m512| {
        for q in 0..P {
            let w = ap.add(q * k * MR + p * MR);
            for r in 0..MR {
                let av = _mm512_set1_ps(*w.add(r));
                let row = &mut acc[q * MR + r];
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
        }
    };
    if j0 + W <= o.readable {
        for (p, &off) in offs.iter().enumerate() {
            fma(&mut acc, p, _mm512_loadu_ps(xp.add(off)), _mm512_loadu_ps(xp.add(off + 16)));
        }
    } else {
        // Lanes at or past `readable` are not read (masked loads do not fault there).
        let valid = o.readable.saturating_sub(j0);
        let mask = |from: usize| -> __mmask16 {
            let v = valid.saturating_sub(from).min(16);
            ((1u32 << v) - 1) as __mmask16
        };
        let (m0, m1) = (mask(0), mask(16));
        for (p, &off) in offs.iter().enumerate() {
            fma(&mut acc, p, _mm512_maskz_loadu_ps(m0, xp.wrapping_add(off)), _mm512_maskz_loadu_ps(m1, xp.wrapping_add(off + 16)));
        }
    }
    // The activation on the accumulators, in registers (Sigmoid and Swish included).
    let f = |v: __m512| crate::act::act512(act, v);
    store_tile::<W, R>(rows, j0, i0, o, y, |r, d| {
        _mm512_storeu_ps(d, f(acc[r][0]));
        _mm512_storeu_ps(d.add(16), f(acc[r][1]));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition: y[o, oy, ox] = Σ w[o, ci, a, b] · x[ci, oy·sh + a·dh − ph, ox·sw + b·dw − pw].
    fn naive(g: &Conv2dGeometry, m: usize, x: &[f32], w: &[f32]) -> Vec<f64> {
        let mut y = vec![0f64; m * g.oh * g.ow];
        for o in 0..m {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut acc = 0f64;
                    for ci in 0..g.c {
                        for a in 0..g.kh {
                            for b in 0..g.kw {
                                let iy = (oy * g.sh + a * g.dh) as isize - g.ph as isize;
                                let ix = (ox * g.sw + b * g.dw) as isize - g.pw as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < g.ih && (ix as usize) < g.iw {
                                    acc += x[(ci * g.ih + iy as usize) * g.iw + ix as usize] as f64 * w[((o * g.c + ci) * g.kh + a) * g.kw + b] as f64;
                                }
                            }
                        }
                    }
                    y[(o * g.oh + oy) * g.ow + ox] = acc;
                }
            }
        }
        y
    }

    #[test]
    fn pointwise_matches_definition() {
        if !available() {
            return;
        }
        let _pool = crate::par::enter(crate::par::build_pool(2));
        // (m, k, n): tails of the channel tile and of the 16-pixel tile, one pixel, long rows.
        for &(m, k, n) in &[(16usize, 128usize, 3025usize), (1, 1, 1), (7, 3, 17), (13, 40, 49), (64, 512, 169), (6, 9, 16), (25, 70, 250), (97, 16, 1001), (41, 8, 13_001)] {
            let x: Vec<f32> = (0..k * n).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
            let wv: Vec<f32> = (0..m * k).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.25 - 1.0).collect();
            let dw_ = DirectWeights::new(m, k, &wv).expect("weights");
            for (threads, act) in [(1, Activation::Relu), (2, Activation::Identity), (2, Activation::Sigmoid), (1, Activation::Swish(1.0))] {
                let mut y = vec![MaybeUninit::new(f32::NAN); m * n + 3];
                pointwise_direct(k, n, &x, &dw_, Some(&bias), act, &mut y, threads);
                // SAFETY: every element was initialised (to NaN, then by the kernel).
                let y: Vec<f32> = y.iter().map(|v| unsafe { v.assume_init() }).collect();
                for i in 0..m {
                    for j in 0..n {
                        let want = act.eval_f64(bias[i] as f64 + (0..k).map(|p| wv[i * k + p] as f64 * x[p * n + j] as f64).sum::<f64>());
                        let got = y[i * n + j] as f64;
                        assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "m{m} k{k} n{n} {act:?} at ({i}, {j}): {got} vs {want}");
                    }
                }
                assert!(y[m * n..].iter().all(|v| v.is_nan()), "wrote past Y");
            }
        }
    }

    #[test]
    fn matches_direct_definition() {
        if !available() {
            assert!(DirectWeights::new(4, 4, &[0.0; 16]).is_none());
            return;
        }
        // (m, c, ih, iw, kh, kw, sh, sw, dh, dw, ph, pw, pad_end_h, pad_end_w)
        let cases = [
            (16, 3, 30, 30, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),
            (13, 3, 23, 19, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3),
            (5, 2, 8, 10, 3, 2, 1, 3, 2, 1, 2, 0, 1, 2),
            (7, 1, 3, 3, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2),
            (6, 4, 9, 8, 3, 3, 1, 1, 2, 1, 2, 0, 1, 2),
            (1, 3, 17, 40, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0),
            (20, 5, 6, 6, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0),
            (3, 2, 4, 5, 2, 2, 1, 1, 1, 1, 3, 3, 0, 1),
            (32, 3, 35, 35, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),
            // Outputs large enough to go in blocks of pixel chunks, a partial last panel.
            (20, 3, 171, 170, 3, 3, 1, 1, 1, 1, 0, 1, 0, 0),
        ];
        let _pool = crate::par::enter(crate::par::build_pool(2));
        let acts = [Activation::Identity, Activation::Relu, Activation::HardSwish, Activation::Swish(1.0), Activation::Clip(-0.5, 0.5), Activation::HardSigmoid(0.2, 0.5)];
        for (ci, &(m, c, ih, iw, kh, kw, sh, sw, dh, dw, ph, pw, eh, ew)) in cases.iter().enumerate() {
            let oh = (ih + ph + eh - (kh - 1) * dh - 1) / sh + 1;
            let ow = (iw + pw + ew - (kw - 1) * dw - 1) / sw + 1;
            let g = Conv2dGeometry { c, ih, iw, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw };
            let x: Vec<f32> = (0..c * ih * iw).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
            let wv: Vec<f32> = (0..m * g.depth()).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.25 - 1.0).collect();
            let dw_ = DirectWeights::new(m, g.depth(), &wv).expect("weights");
            let want = naive(&g, m, &x, &wv);
            for threads in [1, 2] {
                let act = acts[ci % acts.len()];
                for b in [None, Some(&bias[..])] {
                    let mut y = vec![MaybeUninit::new(f32::NAN); m * g.cols() + 3];
                    conv2d_direct(&g, &x, &dw_, b, act, &mut y, threads);
                    // SAFETY: every element was initialised (to NaN, then by the kernel).
                    let y: Vec<f32> = y.iter().map(|v| unsafe { v.assume_init() }).collect();
                    for (idx, (&got, &w)) in y.iter().zip(&want).enumerate() {
                        let w = act.eval_f64(w + b.map_or(0.0, |b| b[idx / g.cols()] as f64));
                        assert!((got as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g:?} m{m} {act:?} at {idx}: {got} vs {w}");
                    }
                    assert!(y[m * g.cols()..].iter().all(|v| v.is_nan()), "wrote past Y");
                }
            }
        }
    }
}
