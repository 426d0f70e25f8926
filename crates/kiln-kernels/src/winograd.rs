//! Winograd F(4×4, 3×3) and F(2×2, 3×3) convolution (float32; 3×3 kernels, stride 1, dilation 1,
//! one group): weights transformed once into 36 (16) packed matrices, input tiles transformed per
//! panel of output tiles straight into the micro-kernel's B panel layout, one product per
//! transform-domain point with the packed GEMM micro-kernels, and the output transform with bias
//! (and optional ReLU).

use std::cell::RefCell;
use std::mem::MaybeUninit;

use crate::convgemm::Conv2dGeometry;
use crate::gemm::{best_isa, run_kernel, tile_ep, AlignedBuf, Epilogue, Isa, KernelInfo, TileOut};
use crate::simd::vectorized;

/// Largest input tile edge.
const TI: usize = 6;
/// Lanes of the fixed-width transform stages (and the slack their buffers keep).
const L: usize = 16;
/// Output channels whose products are kept between the GEMMs and the output transform.
const CO_CHUNK: usize = 64;

/// Output tile size of a Winograd variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileSize {
    /// F(4×4, 3×3): 6×6 input tiles, 36 products.
    F4,
    /// F(2×2, 3×3): 4×4 input tiles, 16 products. Not built for WebAssembly: it is chosen for
    /// small images with many channels, where its transformed weights (16/9 of the weights) are
    /// the largest and its gain the smallest, and creating them in fresh wasm memory cost more at
    /// session creation than it saved.
    #[cfg(not(target_arch = "wasm32"))]
    F2,
}

impl TileSize {
    fn out(self) -> usize {
        match self {
            TileSize::F4 => 4,
            #[cfg(not(target_arch = "wasm32"))]
            TileSize::F2 => 2,
        }
    }
}

/// One Winograd variant: tile sizes and the three transforms (arrays sized for the largest).
trait Tile {
    /// Output tile edge.
    const TO: usize;
    /// Input tile edge (TO + 2).
    const TI: usize;
    /// Points of the transform domain (TI²).
    const NX: usize = Self::TI * Self::TI;
    /// Weight transform G (TI×3).
    const G: [[f64; 3]; TI];
    /// Bᵀ applied to the first TI values.
    fn bt(d: [V; TI]) -> [V; TI];
    /// Aᵀ applied to the first TI values (first TO results).
    fn at(m: [V; TI]) -> [V; 4];
}

struct F4;
#[cfg(not(target_arch = "wasm32"))]
struct F2;

impl Tile for F4 {
    const TO: usize = 4;
    const TI: usize = 6;
    const G: [[f64; 3]; TI] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    #[inline(always)]
    fn bt(d: [V; TI]) -> [V; TI] {
        let (d1, d2, d3, d4) = (d[1], d[2], d[3], d[4]);
        [
            d[0] * 4.0 - d2 * 5.0 + d4,
            d4 + d3 - (d1 + d2) * 4.0,
            d4 - d3 + (d1 - d2) * 4.0,
            d4 - d2 + (d3 - d1) * 2.0,
            d4 - d2 + (d1 - d3) * 2.0,
            d1 * 4.0 - d3 * 5.0 + d[5],
        ]
    }
    #[inline(always)]
    fn at(m: [V; TI]) -> [V; 4] {
        let (s12, d12, s34, d34) = (m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]);
        [m[0] + s12 + s34, d12 + d34 * 2.0, s12 + s34 * 4.0, d12 + d34 * 8.0 + m[5]]
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Tile for F2 {
    const TO: usize = 2;
    const TI: usize = 4;
    const G: [[f64; 3]; TI] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0], [0.0; 3], [0.0; 3]];
    #[inline(always)]
    fn bt(d: [V; TI]) -> [V; TI] {
        let z = V::splat(0.0);
        [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3], z, z]
    }
    #[inline(always)]
    fn at(m: [V; TI]) -> [V; 4] {
        let z = V::splat(0.0);
        [m[0] + m[1] + m[2], m[1] - m[2] - m[3], z, z]
    }
}

/// L lanes processed as one value (one AVX-512 register, two AVX2 ones).
#[derive(Clone, Copy)]
struct V([f32; L]);

impl V {
    #[inline(always)]
    fn load(s: &[f32], off: usize) -> V {
        V(s[off..off + L].try_into().expect("L lanes"))
    }
    #[inline(always)]
    fn store(self, d: &mut [f32], off: usize) {
        d[off..off + L].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn splat(v: f32) -> V {
        V([v; L])
    }
    #[inline(always)]
    fn max(mut self, o: V) -> V {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a = if *a > b { *a } else { b };
        }
        self
    }
}

impl std::ops::Add for V {
    type Output = V;
    #[inline(always)]
    fn add(mut self, o: V) -> V {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
        self
    }
}

impl std::ops::Sub for V {
    type Output = V;
    #[inline(always)]
    fn sub(mut self, o: V) -> V {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a -= b;
        }
        self
    }
}

impl std::ops::Mul<f32> for V {
    type Output = V;
    #[inline(always)]
    fn mul(mut self, k: f32) -> V {
        for a in self.0.iter_mut() {
            *a *= k;
        }
        self
    }
}

/// `n` (at most TI) values at `off`, `off + stride`, … of `s`; zeros after them.
#[inline(always)]
fn loadn(s: &[f32], off: usize, stride: usize, n: usize) -> [V; TI] {
    let mut d = [V::splat(0.0); TI];
    for (i, di) in d.iter_mut().enumerate().take(n) {
        *di = V::load(s, off + i * stride);
    }
    d
}

/// Whether the AVX-512 shuffles of [`x86`] can run.
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Four-way interleaving of 16-lane vectors with AVX-512 permutes (the compiler turns the
/// portable loops into gathers or scalar moves).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn idx(v: [i32; 16]) -> __m512i {
        _mm512_loadu_si512(v.as_ptr() as *const _)
    }

    /// dst[p][i] = src[4i + p] for i < 16.
    ///
    /// # Safety
    /// AVX-512F must be available; `src` readable for 64 values, each `dst[p]` writable for 16.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn deinterleave4(src: *const f32, dst: [*mut f32; 4]) {
        let (a0, a1, a2, a3) = (_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16)), _mm512_loadu_ps(src.add(32)), _mm512_loadu_ps(src.add(48)));
        // Phases 0, 1 (resp. 2, 3) of 32 values: 8 each.
        let i01 = idx([0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29]);
        let i23 = idx([2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31]);
        let (x, y) = (_mm512_permutex2var_ps(a0, i01, a1), _mm512_permutex2var_ps(a0, i23, a1));
        let (xx, yy) = (_mm512_permutex2var_ps(a2, i01, a3), _mm512_permutex2var_ps(a2, i23, a3));
        let lo = idx([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);
        let hi = idx([8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]);
        _mm512_storeu_ps(dst[0], _mm512_permutex2var_ps(x, lo, xx));
        _mm512_storeu_ps(dst[1], _mm512_permutex2var_ps(x, hi, xx));
        _mm512_storeu_ps(dst[2], _mm512_permutex2var_ps(y, lo, yy));
        _mm512_storeu_ps(dst[3], _mm512_permutex2var_ps(y, hi, yy));
    }

    /// dst[p][i] = src[2i + p] for i < 16.
    ///
    /// # Safety
    /// AVX-512F must be available; `src` readable for 32 values, each `dst[p]` writable for 16.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn deinterleave2(src: *const f32, dst: [*mut f32; 2]) {
        let (a0, a1) = (_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16)));
        let ev = idx([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]);
        let od = idx([1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31]);
        _mm512_storeu_ps(dst[0], _mm512_permutex2var_ps(a0, ev, a1));
        _mm512_storeu_ps(dst[1], _mm512_permutex2var_ps(a0, od, a1));
    }

    /// out[2t + c] = y[c][t] for t < 16.
    ///
    /// # Safety
    /// AVX-512F must be available; each `y[c]` readable for 16 values, `out` writable for 32.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn interleave2(y: [*const f32; 2], out: *mut f32) {
        let (y0, y1) = (_mm512_loadu_ps(y[0]), _mm512_loadu_ps(y[1]));
        let lo = idx([0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23]);
        let hi = idx([8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31]);
        _mm512_storeu_ps(out, _mm512_permutex2var_ps(y0, lo, y1));
        _mm512_storeu_ps(out.add(16), _mm512_permutex2var_ps(y0, hi, y1));
    }

    /// out[4t + c] = y[c][t] for t < 16.
    ///
    /// # Safety
    /// AVX-512F must be available; each `y[c]` readable for 16 values, `out` writable for 64.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn interleave4(y: [*const f32; 4], out: *mut f32) {
        let (y0, y1, y2, y3) = (_mm512_loadu_ps(y[0]), _mm512_loadu_ps(y[1]), _mm512_loadu_ps(y[2]), _mm512_loadu_ps(y[3]));
        let lo = idx([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);
        let hi = idx([8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]);
        // a = [y0 t0..8, y1 t0..8], b = [y2 t0..8, y3 t0..8] (c, d: t8..16).
        let (a, b) = (_mm512_permutex2var_ps(y0, lo, y1), _mm512_permutex2var_ps(y2, lo, y3));
        let (c, d) = (_mm512_permutex2var_ps(y0, hi, y1), _mm512_permutex2var_ps(y2, hi, y3));
        // Output t..t+4 (t < 8 within a half): lane 4u + k takes a[k·8 + u] (k < 2) or b[(k−2)·8 + u].
        let q0 = idx([0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27]);
        let q1 = idx([4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31]);
        _mm512_storeu_ps(out, _mm512_permutex2var_ps(a, q0, b));
        _mm512_storeu_ps(out.add(16), _mm512_permutex2var_ps(a, q1, b));
        _mm512_storeu_ps(out.add(32), _mm512_permutex2var_ps(c, q0, d));
        _mm512_storeu_ps(out.add(48), _mm512_permutex2var_ps(c, q1, d));
    }
}

/// Stores `n` (2 or 4) vectors interleaved: out[n·t + c] = y[c][t] (`out` holds n·L values).
#[inline(always)]
fn interleave(y: &[V; 4], n: usize, out: &mut [f32], avx512: bool) {
    let out = &mut out[..n * L];
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        // SAFETY: AVX-512F was detected; `out` holds n·L values.
        unsafe {
            if n == 4 {
                x86::interleave4([y[0].0.as_ptr(), y[1].0.as_ptr(), y[2].0.as_ptr(), y[3].0.as_ptr()], out.as_mut_ptr());
            } else {
                x86::interleave2([y[0].0.as_ptr(), y[1].0.as_ptr()], out.as_mut_ptr());
            }
        }
        return;
    }
    let _ = avx512;
    for (t, o) in out.chunks_exact_mut(n).enumerate() {
        for (c, v) in o.iter_mut().enumerate() {
            *v = y[c].0[t];
        }
    }
}

/// Splits `src` (n·len values) into `n` (2 or 4) phases: dst[p][i] = src[n·i + p] (`len` a
/// multiple of L).
#[inline(always)]
fn deinterleave(src: &[f32], n: usize, dst: &mut [&mut [f32]; 4], len: usize, avx512: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        for (i, sc) in src[..n * len].chunks_exact(n * L).enumerate() {
            let o = i * L;
            assert!(dst[..n].iter().all(|d| d.len() >= o + L));
            // SAFETY: AVX-512F was detected; `sc` holds n·L values and each phase row L values
            // from `o` (asserted).
            unsafe {
                if n == 4 {
                    x86::deinterleave4(sc.as_ptr(), [dst[0][o..].as_mut_ptr(), dst[1][o..].as_mut_ptr(), dst[2][o..].as_mut_ptr(), dst[3][o..].as_mut_ptr()]);
                } else {
                    x86::deinterleave2(sc.as_ptr(), [dst[0][o..].as_mut_ptr(), dst[1][o..].as_mut_ptr()]);
                }
            }
        }
        return;
    }
    let _ = avx512;
    for (i, s) in src[..n * len].chunks_exact(n).enumerate() {
        for (p, &v) in s.iter().enumerate() {
            dst[p][i] = v;
        }
    }
}

/// Transformed weights: for each transform-domain point ξ, U_ξ [m × c] in the GEMM micro-kernel's
/// packed left-operand layout (depth blocks of `kc`, panels of `mr` rows, rows past m zero), all
/// points in one buffer.
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    tile: TileSize,
    m: usize,
    c: usize,
    info: KernelInfo,
    /// Rows rounded up to whole panels.
    mpad: usize,
    buf: AlignedBuf,
}

impl WinogradWeights {
    /// Transforms W [m, c, 3, 3] (row-major) for [`best_isa`]; `None` if the sizes disagree.
    pub fn new(tile: TileSize, m: usize, c: usize, w: &[f32]) -> Option<WinogradWeights> {
        WinogradWeights::with_isa(best_isa(), tile, m, c, w)
    }

    pub fn with_isa(isa: Isa, tile: TileSize, m: usize, c: usize, w: &[f32]) -> Option<WinogradWeights> {
        if m == 0 || c == 0 || m.checked_mul(c)?.checked_mul(9)? != w.len() {
            return None;
        }
        let info = KernelInfo::for_isa(isa);
        let mpad = m.div_ceil(info.mr) * info.mr;
        let nx = match tile {
            TileSize::F4 => F4::NX,
            #[cfg(not(target_arch = "wasm32"))]
            TileSize::F2 => F2::NX,
        };
        let mut buf = AlignedBuf::default();
        buf.reset(nx.checked_mul(mpad)?.checked_mul(c)?);
        let dst = buf.as_mut_slice();
        match tile {
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            TileSize::F4 if info.mr == V128_LANES => transform_weights_f4_simd128(&info, m, c, mpad, w, dst),
            TileSize::F4 => transform_weights::<F4>(&info, m, c, mpad, w, dst),
            #[cfg(not(target_arch = "wasm32"))]
            TileSize::F2 => transform_weights::<F2>(&info, m, c, mpad, w, dst),
        }
        Some(WinogradWeights { tile, m, c, info, mpad, buf })
    }

    pub fn tile(&self) -> TileSize {
        self.tile
    }
    pub fn out_channels(&self) -> usize {
        self.m
    }
    pub fn in_channels(&self) -> usize {
        self.c
    }

    /// The packed panels of U_ξ for depth block `pc` (depth `kc`) from row `i` (a multiple of MR).
    fn block(&self, xi: usize, pc: usize, kc: usize, i: usize) -> &[f32] {
        let base = xi * self.mpad * self.c + pc * self.mpad;
        &self.buf.as_slice()[base + i * kc..base + self.mpad * kc]
    }
}

/// `mr` values of `src` at `dst[off..]` (fixed-size copies for the panel heights in use).
#[inline(always)]
fn put_panel_row(dst: &mut [f32], off: usize, src: &[f32], mr: usize) {
    match mr {
        8 => dst[off..off + 8].copy_from_slice(&src[..8]),
        6 => dst[off..off + 6].copy_from_slice(&src[..6]),
        4 => dst[off..off + 4].copy_from_slice(&src[..4]),
        _ => dst[off..off + mr].copy_from_slice(&src[..mr]),
    }
}

/// U_ξ[o][ci] = (G g_{o,ci} Gᵀ)[ξ] for the m × c 3×3 kernels of `w`, written straight into the
/// packed layout of [`WinogradWeights`] (`dst`: NX · mpad · c values, every one written): up to
/// L output channels (whole panels) at a time per input channel, one vector lane each.
fn transform_weights<T: Tile>(info: &KernelInfo, m: usize, c: usize, mpad: usize, w: &[f32], dst: &mut [f32]) {
    let (mr, kcb) = (info.mr, info.kc);
    let ms = mpad * c;
    let mut g = [[0f32; 3]; TI];
    for (gr, gd) in g.iter_mut().zip(&T::G) {
        for (x, &y) in gr.iter_mut().zip(gd) {
            *x = y as f32;
        }
    }
    // Output channels per step: whole panels when they fit in L lanes.
    let blk = if mr <= L { mr * (L / mr) } else { L };
    vectorized(
        #[inline(always)]
        || {
            let mut o0 = 0;
            while o0 < mpad {
                let n = blk.min(mpad - o0);
                let valid = n.min(m.saturating_sub(o0));
                for ci in 0..c {
                    let mut k = [V::splat(0.0); 9];
                    for l in 0..valid {
                        let src = &w[((o0 + l) * c + ci) * 9..][..9];
                        for (e, &v) in src.iter().enumerate() {
                            k[e].0[l] = v;
                        }
                    }
                    // gg = G·g (TI×3), then U = gg·Gᵀ.
                    let mut gg = [[V::splat(0.0); 3]; TI];
                    for (ggr, gr) in gg.iter_mut().zip(&g).take(T::TI) {
                        for (b, x) in ggr.iter_mut().enumerate() {
                            *x = k[b] * gr[0] + k[3 + b] * gr[1] + k[6 + b] * gr[2];
                        }
                    }
                    let pc = ci / kcb * kcb;
                    let kc = kcb.min(c - pc);
                    // Row r, depth ci of U_ξ: ξ·ms + pc·mpad + (r / mr)·mr·kc + (ci − pc)·mr + r % mr.
                    let base = pc * mpad + (ci - pc) * mr;
                    for (r, ggr) in gg.iter().enumerate().take(T::TI) {
                        for (l2, gl) in g.iter().enumerate().take(T::TI) {
                            let v = ggr[0] * gl[0] + ggr[1] * gl[1] + ggr[2] * gl[2];
                            let xb = (r * T::TI + l2) * ms + base;
                            if mr <= L {
                                for q in (0..n).step_by(mr) {
                                    put_panel_row(dst, xb + (o0 + q) * kc, &v.0[q..], mr);
                                }
                            } else {
                                for (l, &val) in v.0.iter().enumerate().take(n) {
                                    let row = o0 + l;
                                    dst[xb + row / mr * mr * kc + row % mr] = val;
                                }
                            }
                        }
                    }
                }
                o0 += n;
            }
        },
    );
}

/// f32 lanes of a v128: [`transform_weights_f4_simd128`] serves kernels whose panels are one
/// vector of output channels (the simd128 kernel's MR).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const V128_LANES: usize = 4;

/// [`transform_weights`] for F(4×4) with the simd128 kernel's panels of four output channels: one
/// channel per lane of a 4-lane vector, so every transformed value is one panel row (one store),
/// and G applied through its factored form (10 operations per column instead of 30). The 16-lane
/// portable version kept its temporaries in memory under V8 and took 4× as long (ResNet-18's
/// weights: about 20 ms of a 50 ms session creation).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn transform_weights_f4_simd128(info: &KernelInfo, m: usize, c: usize, mpad: usize, w: &[f32], dst: &mut [f32]) {
    use core::arch::wasm32::*;
    const MR: usize = V128_LANES;
    /// F(4×4, 3×3)'s G times (x0, x1, x2), for four channels at once.
    #[inline(always)]
    fn g(x0: v128, x1: v128, x2: v128) -> [v128; 6] {
        let s = f32x4_add(x0, x2);
        let p = f32x4_add(f32x4_mul(x0, f32x4_splat(1.0 / 24.0)), f32x4_mul(x2, f32x4_splat(1.0 / 6.0)));
        let q = f32x4_mul(x1, f32x4_splat(1.0 / 12.0));
        let sixth = f32x4_splat(-1.0 / 6.0);
        [
            f32x4_mul(x0, f32x4_splat(0.25)),
            f32x4_mul(f32x4_add(s, x1), sixth),
            f32x4_mul(f32x4_sub(s, x1), sixth),
            f32x4_add(p, q),
            f32x4_sub(p, q),
            x2,
        ]
    }
    const NONE: [f32; 9] = [0.0; 9];
    let kcb = info.kc;
    let ms = mpad * c;
    for o0 in (0..mpad).step_by(MR) {
        let valid = MR.min(m.saturating_sub(o0));
        for ci in 0..c {
            let row = |l: usize| -> &[f32] {
                if l < valid {
                    &w[((o0 + l) * c + ci) * 9..][..9]
                } else {
                    &NONE
                }
            };
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            // k[e]: element e of the four kernels (row e / 3, column e % 3).
            let k: [v128; 9] = core::array::from_fn(|e| f32x4(r0[e], r1[e], r2[e], r3[e]));
            // G·g column by column, then U's row r = G·(row r of G·g).
            let cols = [g(k[0], k[3], k[6]), g(k[1], k[4], k[7]), g(k[2], k[5], k[8])];
            let pc = ci / kcb * kcb;
            let kc = kcb.min(c - pc);
            let base = pc * mpad + (ci - pc) * MR + o0 * kc;
            for r in 0..F4::TI {
                let u = g(cols[0][r], cols[1][r], cols[2][r]);
                for (l2, &v) in u.iter().enumerate() {
                    let off = (r * F4::TI + l2) * ms + base;
                    let d = &mut dst[off..off + MR];
                    // SAFETY: `d` is MR = 4 floats, one unaligned v128.
                    unsafe { v128_store(d.as_mut_ptr() as *mut v128, v) };
                }
            }
        }
    }
}

/// Whether the geometry is one [`conv3x3_winograd`] computes (3×3, stride 1, dilation 1).
pub fn applies(g: &Conv2dGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1
}

/// Largest transformed F(4×4) weights (bytes) used on planes of at most 16 tiles with AVX-512.
const F4_FEW_TILES_MAX_BYTES: usize = 4 << 20;

/// Whether the AVX-512 GEMM kernels are in use.
fn avx512() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        crate::gemm::best_isa() == crate::gemm::Isa::Avx512
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

/// The Winograd variant expected to beat the implicit GEMM for c → m channels and an oh × ow
/// output per image, if any.
pub fn choose(m: usize, c: usize, oh: usize, ow: usize) -> Option<TileSize> {
    let tiles = |t: usize| oh.div_ceil(t) * ow.div_ceil(t);
    // With few tiles per image the transforms only pay off against deep products.
    if m < 16 || c < 16 {
        None
    } else if tiles(4) <= 16 && m * c * 36 * 4 > F4_FEW_TILES_MAX_BYTES && avx512() {
        // 14×14 planes with many channels: each transformed weight serves 16 tiles only, and
        // with AVX-512 the GEMM on weights 9/36 the size is faster inside a model, where the
        // weights come from memory (ResNet-18's 256→256 layers: 0.96× the run time at 1 thread,
        // 0.99× at 2), though slower alone (1.98×, the weights staying cached).
        None
    } else if tiles(4) > 16 || (tiles(4) == 16 && c >= 48) || (tiles(4) >= 12 && c >= 128) {
        Some(TileSize::F4)
    } else {
        // F(2×2) (small planes with many channels: 7×7 ones) only pays on AVX2. With AVX-512
        // the GEMM's transposed form is faster on such planes, its weights being 9/16 the size
        // of the transformed ones (ResNet-18: 0.92× the run time at 1 thread, 0.96× at 2).
        #[cfg(not(target_arch = "wasm32"))]
        if tiles(2) >= 12 && c >= 128 && !avx512() {
            return Some(TileSize::F2);
        }
        None
    }
}

/// Per-thread work buffers.
#[derive(Default)]
struct Bufs {
    /// Padded, column-phase-split rows of one input channel.
    xp: Vec<f32>,
    /// First-stage input transform: 36 rows of `ts`.
    t: Vec<f32>,
    /// Transformed input: per ξ, [c × w] in B panel layout.
    v: AlignedBuf,
    /// Products: per ξ, [chunk × w].
    p: AlignedBuf,
    /// Output tiles of one channel: 16 rows of `w`.
    z: Vec<f32>,
}

thread_local! {
    static BUFS: RefCell<Bufs> = RefCell::new(Bufs::default());
}

/// Y pointer shared by the threads writing disjoint output tiles.
#[derive(Clone, Copy)]
struct YPtr(*mut f32);
// SAFETY: each part writes a disjoint set of (channel, tile) outputs (see `conv3x3_winograd`).
unsafe impl Send for YPtr {}
// SAFETY: as above.
unsafe impl Sync for YPtr {}

/// Shapes shared by every part of one call.
struct Job<'a> {
    g: &'a Conv2dGeometry,
    info: KernelInfo,
    w: &'a WinogradWeights,
    x: &'a [f32],
    y: YPtr,
    bias: Option<&'a [f32]>,
    relu: bool,
    /// Tiles per image: rows, columns.
    ty: usize,
    tx: usize,
}

/// Y [batch, m, oh, ow] = act(conv3x3(X [batch, c, ih, iw], W) + bias), zero padding `ph`/`pw`
/// before and as much as the output size implies after, using up to `threads` parts of the
/// calling thread's pool. Every element of the first batch·m·oh·ow of `y` is written (it need
/// not be initialised) and none is read.
///
/// Panics if [`applies`] is false for `g`, the weights were made for other channel counts, or a
/// buffer is smaller than the geometry needs (callers validate shapes first).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_winograd(
    g: &Conv2dGeometry, batch: usize, x: &[f32], w: &WinogradWeights, y: &mut [MaybeUninit<f32>], bias: Option<&[f32]>, relu: bool,
    threads: usize,
) {
    assert!(applies(g), "conv3x3_winograd: not a 3x3 stride-1 convolution");
    assert_eq!(w.c, g.c, "conv3x3_winograd: weights for other input channels");
    let (m, osz) = (w.m, g.oh * g.ow);
    assert!(x.len() >= batch * g.c * g.ih * g.iw && y.len() >= batch * m * osz, "conv3x3_winograd: buffer too small");
    assert!(bias.map_or(true, |b| b.len() >= m), "conv3x3_winograd: bias too short");
    if batch == 0 || osz == 0 {
        return;
    }
    let info = w.info;
    let to = w.tile.out();
    let (ty, tx) = (g.oh.div_ceil(to), g.ow.div_ceil(to));
    let job = Job { g, info, w, x, y: YPtr(y.as_mut_ptr().cast::<f32>()), bias, relu, ty, tx };
    let parts = split(&info, batch, ty * tx, m, threads.max(1));
    let run = |&(t0, t1, c0, c1): &(usize, usize, usize, usize)| {
        BUFS.with(|b| match b.try_borrow_mut() {
            Ok(mut bufs) => part(&job, t0, t1, c0, c1, &mut bufs),
            Err(_) => part(&job, t0, t1, c0, c1, &mut Bufs::default()),
        })
    };
    crate::par::for_each(parts.iter().collect(), run);
}

/// Parts (first tile, end tile over the batch, first channel, end channel) for `threads`
/// threads. With many B panels of tiles, one panel per part, handed out as threads become free
/// (a thread slowed by other work on its core then takes fewer); with a few, one contiguous run
/// of tiles per thread (whole panels per part would leave a thread idle); with fewer tiles than
/// threads × NR, output channels split instead (every part repeats the input transform then).
fn split(info: &KernelInfo, batch: usize, per_img: usize, m: usize, threads: usize) -> Vec<(usize, usize, usize, usize)> {
    let total = batch * per_img;
    if threads == 1 {
        vec![(0, total, 0, m)]
    } else if batch * per_img.div_ceil(info.nr) >= threads * PANELS_PER_THREAD {
        (0..batch)
            .flat_map(|b| (0..per_img).step_by(info.nr).map(move |j| (b * per_img + j, b * per_img + (j + info.nr).min(per_img), 0, m)))
            .collect()
    } else if total >= threads * info.nr {
        let per = total.div_ceil(threads);
        (0..threads).map(|t| ((t * per).min(total), ((t + 1) * per).min(total), 0, m)).filter(|p| p.0 < p.1).collect()
    } else {
        let per = m.div_ceil(info.mr).div_ceil(threads) * info.mr;
        (0..threads).map(|t| (0, total, (t * per).min(m), ((t + 1) * per).min(m))).filter(|p| p.2 < p.3).collect()
    }
}

/// B panels per thread from which a convolution is split panel by panel.
const PANELS_PER_THREAD: usize = 4;

/// Tiles `t0..t1` (over the batch) × output channels `c0..c1` (c0 a multiple of MR).
fn part(job: &Job<'_>, t0: usize, t1: usize, c0: usize, c1: usize, bufs: &mut Bufs) {
    match job.w.tile {
        TileSize::F4 => part_t::<F4>(job, t0, t1, c0, c1, bufs),
        #[cfg(not(target_arch = "wasm32"))]
        TileSize::F2 => part_t::<F2>(job, t0, t1, c0, c1, bufs),
    }
}

fn part_t<T: Tile>(job: &Job<'_>, t0: usize, t1: usize, c0: usize, c1: usize, bufs: &mut Bufs) {
    let per_img = job.ty * job.tx;
    let nr = job.info.nr;
    let mut t = t0;
    while t < t1 {
        let img = t / per_img;
        let j0 = t % per_img;
        let j1 = (j0 + nr).min(per_img).min(j0 + (t1 - t));
        panel::<T>(job, img, j0, j1, c0, c1, bufs);
        t += j1 - j0;
    }
}

/// Runs of one panel's tiles within one tile row: (tile row, first column, end column, panel column).
fn segments(job: &Job<'_>, j0: usize, j1: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let tx = job.tx;
    let mut j = j0;
    std::iter::from_fn(move || {
        if j >= j1 {
            return None;
        }
        let (r, c) = (j / tx, j % tx);
        let end = (c + (j1 - j)).min(tx);
        let seg = (r, c, end, j - j0);
        j += end - c;
        Some(seg)
    })
}

/// Tiles `j0..j1` of image `img` (at most one B panel) for output channels `c0..c1`.
#[allow(clippy::too_many_arguments)]
fn panel<T: Tile>(job: &Job<'_>, img: usize, j0: usize, j1: usize, c0: usize, c1: usize, bufs: &mut Bufs) {
    let (g, info) = (job.g, &job.info);
    let c = g.c;
    let nt = j1 - j0;
    let w = info.panel_width(0, nt);
    let vs = c * w + L;
    bufs.v.reset(T::NX * vs);
    input_transform::<T>(job, img, j0, j1, w, vs, bufs);
    let chunk = CO_CHUNK.div_ceil(info.mr) * info.mr;
    let ps = chunk * w;
    bufs.p.reset(T::NX * ps + L);
    let no_ep = Epilogue::default();
    let mut cc = c0;
    while cc < c1 {
        let rows_c = chunk.min(c1 - cc);
        for xi in 0..T::NX {
            let vb = &bufs.v.as_slice()[xi * vs..xi * vs + c * w];
            let pb = &mut bufs.p.as_mut_slice()[xi * ps..(xi + 1) * ps];
            let mut pc = 0;
            while pc < c {
                let kc = info.kc.min(c - pc);
                let (first, last) = (pc == 0, pc + kc == c);
                let ap = job.w.block(xi, pc, kc, cc);
                let bp = &vb[pc * w..(pc + kc) * w];
                let mut i = 0;
                while i < rows_c {
                    let rows = info.mr.min(rows_c - i);
                    let a = &ap[i * kc..(i + info.mr) * kc];
                    let dst = &mut pb[i * w..];
                    let out = TileOut { c: dst.as_mut_ptr(), rsc: w as isize, csc: 1, rows, cols: nt };
                    debug_assert!(dst.len() >= (rows - 1) * w + nt);
                    let tep = tile_ep(&no_ep, if first { 0.0 } else { 1.0 }, first, last, 0, 0);
                    run_kernel(info, kc, a, bp, w, &out, &tep);
                    i += info.mr;
                }
                pc += kc;
            }
        }
        for ol in 0..rows_c {
            output_transform::<T>(job, img, j0, j1, cc + ol, ol, w, ps, bufs);
        }
        cc += rows_c;
    }
}

/// Transforms the input tiles of tiles `j0..j1` of image `img`, every input channel, into
/// `bufs.v` (per ξ at `ξ·vs`, [c × w] panel rows).
fn input_transform<T: Tile>(job: &Job<'_>, img: usize, j0: usize, j1: usize, w: usize, vs: usize, bufs: &mut Bufs) {
    let g = job.g;
    let (ra, rb) = (j0 / job.tx, (j1 - 1) / job.tx);
    let rows = T::TO * (rb - ra) + T::TI;
    // Phase p, index i of a padded row holds padded column TO·i + p; one extra index so every
    // tile's last two columns exist.
    let qs = (job.tx + 1).div_ceil(L) * L;
    let ts = w.div_ceil(L) * L + L;
    bufs.xp.resize(rows * T::TO * qs + T::TO * qs + 2 * L, 0.0);
    bufs.t.resize(T::NX * ts, 0.0);
    let isz = g.ih * g.iw;
    let nt = j1 - j0;
    let segs: Vec<(usize, usize, usize, usize)> = segments(job, j0, j1).collect();
    let avx512 = has_avx512();
    vectorized(
        #[inline(always)]
        || {
            let (xp, t, v) = (&mut bufs.xp[..], &mut bufs.t[..], bufs.v.as_mut_slice());
            for ci in 0..g.c {
                let xc = &job.x[(img * g.c + ci) * isz..][..isz];
                fill_padded::<T>(g, xc, T::TO * ra, rows, qs, xp, avx512);
                for &(r, c0, c1, jo) in &segs {
                    let base = T::TO * (r - ra);
                    for col in 0..T::TI {
                        let (phase, dq) = (col % T::TO, col / T::TO);
                        let mut j = 0;
                        while j < c1 - c0 {
                            let d = loadn(xp, (base * T::TO + phase) * qs + c0 + dq + j, T::TO * qs, T::TI);
                            for (k, o) in T::bt(d).into_iter().take(T::TI).enumerate() {
                                o.store(t, (k * T::TI + col) * ts + jo + j);
                            }
                            j += L;
                        }
                    }
                }
                let mut j = 0;
                while j < nt {
                    for k in 0..T::TI {
                        let d = loadn(t, k * T::TI * ts + j, ts, T::TI);
                        for (l, o) in T::bt(d).into_iter().take(T::TI).enumerate() {
                            o.store(v, (k * T::TI + l) * vs + ci * w + j);
                        }
                    }
                    j += L;
                }
            }
        },
    );
}

/// Rows `y0..y0+rows` of the zero-padded channel `xc`, each split into TO column phases of `qs`
/// values: dst[(row·TO + p)·qs + i] = padded(y0 + row, TO·i + p). Uses `dst[rows·TO·qs..]`
/// (TO·qs values) as scratch.
#[inline(always)]
fn fill_padded<T: Tile>(g: &Conv2dGeometry, xc: &[f32], y0: usize, rows: usize, qs: usize, dst: &mut [f32], avx512: bool) {
    let wide = T::TO * qs;
    let (out, scratch) = dst.split_at_mut(rows * wide);
    let scratch = &mut scratch[..wide];
    // Input columns that land inside the wide row.
    let x1 = g.iw.min(wide.saturating_sub(g.pw));
    for (rr, orow) in out.chunks_exact_mut(wide).enumerate() {
        let iy = (y0 + rr) as isize - g.ph as isize;
        if iy < 0 || iy >= g.ih as isize || x1 == 0 {
            orow.fill(0.0);
            continue;
        }
        let xrow = &xc[iy as usize * g.iw..][..g.iw];
        scratch[..g.pw.min(wide)].fill(0.0);
        scratch[g.pw..g.pw + x1].copy_from_slice(&xrow[..x1]);
        scratch[g.pw + x1..].fill(0.0);
        let mut ph = orow.chunks_exact_mut(qs);
        let mut dsts: [&mut [f32]; 4] = [&mut [], &mut [], &mut [], &mut []];
        for d in dsts.iter_mut().take(T::TO) {
            *d = ph.next().expect("TO phase rows");
        }
        deinterleave(scratch, T::TO, &mut dsts, qs, avx512);
    }
}

/// Output transform of channel `o` (row `ol` of the products) for tiles `j0..j1` of image `img`,
/// with bias and activation, stored into Y.
#[allow(clippy::too_many_arguments)]
fn output_transform<T: Tile>(job: &Job<'_>, img: usize, j0: usize, j1: usize, o: usize, ol: usize, w: usize, ps: usize, bufs: &mut Bufs) {
    let g = job.g;
    let nt = j1 - j0;
    let zs = w.div_ceil(L) * L;
    let b = V::splat(job.bias.map_or(0.0, |b| b[o]));
    let relu = job.relu;
    let p = bufs.p.as_slice();
    let z = &mut bufs.z;
    z.resize(T::TO * T::TO * zs, 0.0);
    let avx512 = has_avx512();
    vectorized(
        #[inline(always)]
        || {
            let mut j = 0;
            while j < nt {
                // s[k][c'] = Σ_l M[k][l] Aᵀ[c'][l]; y[r'][c'] = Σ_k Aᵀ[r'][k] s[k][c'].
                let row = |k: usize| T::at(loadn(p, k * T::TI * ps + ol * w + j, ps, T::TI));
                let mut sm = [[V::splat(0.0); 4]; TI];
                for (k, sk) in sm.iter_mut().enumerate().take(T::TI) {
                    *sk = row(k);
                }
                let col = |cc: usize| T::at([sm[0][cc], sm[1][cc], sm[2][cc], sm[3][cc], sm[4][cc], sm[5][cc]]);
                let (y0, y1, y2, y3) = (col(0), col(1), col(2), col(3));
                let fin = |v: V| if relu { (v + b).max(V::splat(0.0)) } else { v + b };
                for r in 0..T::TO {
                    let yr = [fin(y0[r]), fin(y1[r]), fin(y2[r]), fin(y3[r])];
                    interleave(&yr, T::TO, &mut z[r * T::TO * zs + T::TO * j..], avx512);
                }
                j += L;
            }
            let yc = (img * job.w.m + o) * g.oh * g.ow;
            for (r, c0, c1, jo) in segments(job, j0, j1) {
                for rr in 0..T::TO {
                    let oy = T::TO * r + rr;
                    if oy >= g.oh {
                        break;
                    }
                    let (x0, x1) = (T::TO * c0, (T::TO * c1).min(g.ow));
                    let src = &z[rr * T::TO * zs + T::TO * jo..][..x1 - x0];
                    // SAFETY: columns x0..x1 of row oy of channel o in image img lie inside Y
                    // (checked in `conv3x3_winograd`) and belong to this part's tiles only.
                    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), job.y.0.add(yc + oy * g.ow + x0), x1 - x0) };
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::available_isas;

    /// The buffer as the kernel's output type (the kernels only write initialised values).
    pub(super) fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
        // SAFETY: MaybeUninit<f32> has f32's layout; nothing written through the view is uninitialised.
        unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
    }

    /// Direct definition in f64: y[n, o, oy, ox] = b[o] + Σ w[o, ci, a, b] · x[n, ci, oy + a − ph, ox + b − pw].
    #[allow(clippy::too_many_arguments)]
    fn naive(g: &Conv2dGeometry, batch: usize, m: usize, x: &[f32], w: &[f32], bias: &[f32], relu: bool) -> Vec<f64> {
        let mut y = vec![0f64; batch * m * g.oh * g.ow];
        for n in 0..batch {
            for o in 0..m {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = bias[o] as f64;
                        for ci in 0..g.c {
                            for a in 0..3 {
                                for b in 0..3 {
                                    let iy = (oy + a) as isize - g.ph as isize;
                                    let ix = (ox + b) as isize - g.pw as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < g.ih && (ix as usize) < g.iw {
                                        let xv = x[((n * g.c + ci) * g.ih + iy as usize) * g.iw + ix as usize] as f64;
                                        acc += xv * w[((o * g.c + ci) * 3 + a) * 3 + b] as f64;
                                    }
                                }
                            }
                        }
                        y[((n * m + o) * g.oh + oy) * g.ow + ox] = if relu && acc < 0.0 { 0.0 } else { acc };
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_direct_definition() {
        // (batch, m, c, ih, iw, ph, pw, pad_end_h, pad_end_w)
        let cases = [
            (1, 8, 3, 9, 9, 1, 1, 1, 1),
            (2, 13, 5, 11, 7, 1, 1, 1, 1),
            (1, 17, 30, 6, 40, 0, 0, 0, 0),
            (3, 9, 7, 14, 13, 1, 0, 0, 1),
            (1, 5, 2, 3, 3, 1, 1, 1, 1),
            (1, 70, 20, 12, 33, 1, 1, 1, 1),
            (2, 33, 19, 23, 21, 2, 1, 0, 2),
            (1, 11, 260, 9, 10, 1, 1, 1, 1),
            (1, 40, 12, 29, 27, 1, 1, 1, 1),
            (1, 6, 4, 5, 4, 0, 0, 0, 0),
        ];
        #[cfg(not(target_arch = "wasm32"))]
        let _pool = crate::par::enter(crate::par::build_pool(2));
        for (isa, tile) in available_isas().into_iter().flat_map(|i| [(i, TileSize::F4), (i, TileSize::F2)]) {
            for &(batch, m, c, ih, iw, ph, pw, eh, ew) in &cases {
                let (oh, ow) = (ih + ph + eh - 2, iw + pw + ew - 2);
                let g = Conv2dGeometry { c, ih, iw, oh, ow, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, ph, pw };
                let x: Vec<f32> = (0..batch * c * ih * iw).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
                let wv: Vec<f32> = (0..m * c * 9).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
                let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.5 - 2.0).collect();
                let ww = WinogradWeights::with_isa(isa, tile, m, c, &wv).expect("weights");
                for relu in [false, true] {
                    let want = naive(&g, batch, m, &x, &wv, &bias, relu);
                    let scale = want.iter().fold(1f64, |a, v| a.max(v.abs()));
                    for threads in [1, 2] {
                        let mut y = vec![f32::NAN; batch * m * oh * ow + 3];
                        conv3x3_winograd(&g, batch, &x, &ww, as_uninit(&mut y), Some(&bias), relu, threads);
                        for (idx, (&got, &w)) in y.iter().zip(&want).enumerate() {
                            assert!((got as f64 - w).abs() <= 1e-5 * scale + 1e-4 * w.abs(), "{isa:?} {tile:?} {g:?} batch {batch} threads {threads} at {idx}: {got} vs {w}");
                        }
                        assert!(y[want.len()..].iter().all(|v| v.is_nan()), "wrote past Y");
                    }
                }
            }
        }
    }

    #[test]
    fn hand_computed_single_tile() {
        // One channel, 3×3 input of ones, all-ones kernel, padding 1: each output counts the
        // input pixels its window covers.
        let g = Conv2dGeometry { c: 1, ih: 3, iw: 3, oh: 3, ow: 3, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, ph: 1, pw: 1 };
        for tile in [TileSize::F4, TileSize::F2] {
            let ww = WinogradWeights::new(tile, 1, 1, &[1.0; 9]).expect("weights");
            let mut y = vec![0f32; 9];
            conv3x3_winograd(&g, 1, &[1.0; 9], &ww, as_uninit(&mut y), None, false, 1);
            let want = [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0];
            for (a, b) in y.iter().zip(want) {
                assert!((a - b).abs() < 1e-5, "{tile:?} {y:?}");
            }
        }
    }

    #[test]
    fn rejects_mismatched_weights() {
        assert!(WinogradWeights::new(TileSize::F4, 2, 3, &[0.0; 53]).is_none());
        assert!(WinogradWeights::new(TileSize::F2, 0, 3, &[]).is_none());
    }

    #[test]
    fn chooses_by_tile_count() {
        assert_eq!(choose(64, 64, 56, 56), Some(TileSize::F4));
        let f2 = (!avx512()).then_some(TileSize::F2);
        assert_eq!(choose(512, 512, 7, 7), f2);
        // Large transformed weights on few tiles: the GEMM with AVX-512.
        assert_eq!(choose(256, 256, 14, 14), (!avx512()).then_some(TileSize::F4));
        assert_eq!(choose(256, 64, 13, 13), Some(TileSize::F4));
        assert_eq!(choose(8, 64, 56, 56), None);
        assert_eq!(choose(64, 64, 3, 3), None);
        assert_eq!(choose(192, 48, 13, 13), Some(TileSize::F4));
        assert_eq!(choose(64, 32, 13, 13), None);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod timing {
    use super::*;
    use crate::convgemm::conv2d_gemm;
    use crate::gemm::{MatRef, PackedA};
    use std::time::Instant;

    /// Per-layer timings of this path against the implicit GEMM (run with --ignored --nocapture).
    #[test]
    #[ignore]
    fn layer_timings() {
        let threads: usize = std::env::var("WINO_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        let _pool = crate::par::enter(if threads > 1 { crate::par::build_pool(threads) } else { None });
        let only: Option<usize> = std::env::var("WINO_CASE").ok().and_then(|v| v.parse().ok());
        let cases = [(64, 64, 56), (128, 128, 28), (256, 256, 14), (512, 512, 7), (64, 16, 55), (128, 32, 27), (192, 48, 13), (256, 64, 13)];
        for (ci, &(m, c, hw)) in cases.iter().enumerate() {
            if only.is_some_and(|o| o != ci) {
                continue;
            }
            let g = Conv2dGeometry { c, ih: hw, iw: hw, oh: hw, ow: hw, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, ph: 1, pw: 1 };
            let x: Vec<f32> = (0..c * hw * hw).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
            let wv: Vec<f32> = (0..m * c * 9).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
            let bias = vec![0.5f32; m];
            let tile = match std::env::var("WINO_TILE").as_deref() {
                Ok("2") => TileSize::F2,
                Ok("4") => TileSize::F4,
                _ => choose(m, c, hw, hw).unwrap_or(TileSize::F4),
            };
            let ww = WinogradWeights::new(tile, m, c, &wv).expect("weights");
            let pa = PackedA::new(m, c * 9, MatRef::new(&wv, (c * 9) as isize, 1));
            let mut y = vec![0f32; m * hw * hw];
            let ep = Epilogue { row_bias: Some(&bias), ..Epilogue::default() };
            let reps = if only.is_some() { 200 } else { 5 };
            let time = |f: &mut dyn FnMut()| {
                for _ in 0..3 {
                    f();
                }
                let mut best = f64::MAX;
                for _ in 0..reps {
                    let t = Instant::now();
                    for _ in 0..5 {
                        f();
                    }
                    best = best.min(t.elapsed().as_secs_f64() / 5.0);
                }
                best * 1e3
            };
            let tg = if only.is_some() { f64::NAN } else { time(&mut || conv2d_gemm(&g, &x, &pa, crate::winograd::tests::as_uninit(&mut y), &ep, threads)) };
            let tw = time(&mut || conv3x3_winograd(&g, 1, &x, &ww, crate::winograd::tests::as_uninit(&mut y), Some(&bias), false, threads));
            println!("{tile:?} {c:>4}->{m:<4} @{hw:>3}²  convgemm {tg:7.3} ms  winograd {tw:7.3} ms  speedup {:.2}", tg / tw);
        }
    }
}
