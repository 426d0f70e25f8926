//! Depthwise 2-D convolution (float32) over channel planes. Each plane is copied once into a
//! zero-padded image split into its sh × sw stride phases (each hq × wq), so every kernel tap
//! reads one contiguous run and the output is computed as a "wide" oh × wq image: a sum of
//! shifted runs, 16 lanes per vector and up to 8 vectors per pass. The valid oh × ow part is
//! then copied out and the activation applied. Compiled per ISA (AVX-512, AVX2+FMA, portable)
//! and chosen at run time. With AVX-512, unit strides and output rows as wide as the input's,
//! the "flat" path skips both copies: every tap of an output element sits at a fixed offset from
//! it in the input plane, so each output vector is a sum of masked loads straight from the
//! input (lanes outside the plane masked off), stored straight into Y. With AVX2, strided
//! layers and small planes go through a channel-blocked path (eight channels per vector, one per
//! lane), and unit strides on larger planes with 3×3 and 5×5 kernels through a row path: per
//! channel, tiles of a few output rows × a few 8-pixel vectors accumulated in registers from
//! loads straight out of the input rows (masked at the row edges), each input row loaded once per
//! tap column for every output row of the tile that uses it, the activation applied at the store.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use crate::act::Activation;
#[cfg(target_arch = "x86_64")]
use crate::act::{act256, act512};

/// Geometry of a depthwise convolution (per channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// The padded phase image and the wide output of the calling thread, kept between calls.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// Load masks of the flat path per geometry seen by the calling thread.
    #[cfg(target_arch = "x86_64")]
    static FLAT: RefCell<Vec<FlatMasks>> = const { RefCell::new(Vec::new()) };
}

const V: usize = 16;
/// Taps kept on the stack up to this many (7×7 kernels); larger kernels use the heap.
const STACK_TAPS: usize = 49;

/// Where everything lives in the scratch buffers.
struct Layout {
    /// Rows and columns of one phase plane.
    hq: usize,
    wq: usize,
    plane: usize,
    /// Wide output elements (oh × wq) rounded up to whole vectors.
    wide_len: usize,
    /// Padded image elements, with room for the last vector of the farthest tap.
    img_len: usize,
}

impl Layout {
    fn new(g: &DwGeometry) -> Layout {
        let hq = g.oh + (g.kh - 1) * g.dh / g.sh;
        let wq = g.ow + (g.kw - 1) * g.dw / g.sw;
        let plane = hq * wq;
        let wide_len = (g.oh * wq).div_ceil(V) * V;
        let max_off = (g.sh * g.sw - 1) * plane + ((g.kh - 1) * g.dh / g.sh) * wq + (g.kw - 1) * g.dw / g.sw;
        Layout { hq, wq, plane, wide_len, img_len: (max_off + wide_len).max(g.sh * g.sw * plane) }
    }

    /// Offset in the padded image of tap `t` (row-major over the kernel) for wide output 0.
    fn tap(&self, g: &DwGeometry, t: usize) -> usize {
        let (ya, xb) = ((t / g.kw) * g.dh, (t % g.kw) * g.dw);
        ((ya % g.sh) * g.sw + xb % g.sw) * self.plane + (ya / g.sh) * self.wq + xb / g.sw
    }

    /// For phase column `rx`: the phase columns [lo, hi) that hold input columns (phase column q
    /// holds input column q·sw + rx − pw).
    fn cols(&self, g: &DwGeometry, rx: usize) -> (usize, usize) {
        let lo = if g.pw > rx { (g.pw - rx).div_ceil(g.sw) } else { 0 }.min(self.wq);
        let hi = if g.pw + g.iw > rx { (g.pw + g.iw - rx).div_ceil(g.sw) } else { 0 }.clamp(lo, self.wq);
        (lo, hi)
    }

    /// Input row of phase row `r` of row phase `ry`, if inside the input.
    fn in_row(&self, g: &DwGeometry, ry: usize, r: usize) -> Option<usize> {
        let iy = (r * g.sh + ry) as isize - g.ph as isize;
        (iy >= 0 && (iy as usize) < g.ih).then_some(iy as usize)
    }
}

/// y[c] = act(conv(x[c], w[c]) + bias[c]) for `channels` planes: x [channels, ih, iw],
/// w [channels, kh, kw], bias [channels] (zero when absent), y [channels, oh, ow]. Every element
/// of the first channels·oh·ow of `y` is written (it need not be initialised) and none is read.
/// Panics if a buffer is smaller than the geometry needs or a stride or dilation is zero
/// (callers validate geometry first).
pub fn depthwise_conv2d(g: &DwGeometry, channels: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, y: &mut [MaybeUninit<f32>]) {
    assert!(g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0 && g.kh > 0 && g.kw > 0, "depthwise: zero stride, dilation or kernel");
    let (isz, osz, ksz) = (g.ih * g.iw, g.oh * g.ow, g.kh * g.kw);
    assert!(
        x.len() >= channels * isz && w.len() >= channels * ksz && y.len() >= channels * osz && bias.map_or(true, |b| b.len() >= channels),
        "depthwise: buffer too small"
    );
    if osz == 0 || channels == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if g.sh == 1 && g.sw == 1 && g.ow == g.iw && crate::gemm::best_isa() == crate::gemm::Isa::Avx512 {
        let run = |fm: &FlatMasks, y: &mut [MaybeUninit<f32>]| {
            // SAFETY: AVX-512F was detected; the masks were built for this geometry and the
            // buffers were checked above.
            unsafe { planes_flat_avx512(g, channels, x, w, bias, act, y, fm) }
        };
        FLAT.with(|cache| match cache.try_borrow_mut() {
            Ok(mut cache) => {
                let i = match cache.iter().position(|f| f.g == *g) {
                    Some(i) => i,
                    None => {
                        if cache.len() >= 64 {
                            cache.clear();
                        }
                        cache.push(FlatMasks::new(g));
                        cache.len() - 1
                    }
                };
                run(&cache[i], y)
            }
            Err(_) => run(&FlatMasks::new(g), y),
        });
        return;
    }
    // Unit strides on larger planes on AVX2: per channel, vectors along the output rows.
    #[cfg(target_arch = "x86_64")]
    if rows_fit(g) && crate::gemm::best_isa() == crate::gemm::Isa::Avx2 {
        SCRATCH.with(|s| match s.try_borrow_mut() {
            // SAFETY: AVX2 and FMA were detected; the geometry fits; the buffers were checked above.
            Ok(mut s) => unsafe { rows_avx2(g, channels, x, w, bias, act, y, &mut s.0) },
            // SAFETY: as above.
            Err(_) => unsafe { rows_avx2(g, channels, x, w, bias, act, y, &mut Vec::new()) },
        });
        return;
    }
    // Small planes on AVX2: blocks of eight channels at a time, one channel per vector lane.
    #[cfg(target_arch = "x86_64")]
    let (x, w, bias, y, channels) = {
        let blocked = if blocked_pays(g) && crate::gemm::best_isa() == crate::gemm::Isa::Avx2 { channels / CB * CB } else { 0 };
        if blocked > 0 {
            SCRATCH.with(|s| match s.try_borrow_mut() {
                Ok(mut s) => {
                    let (tile, out) = &mut *s;
                    // SAFETY: AVX2 and FMA were detected; the buffers were checked above.
                    unsafe { blocked_avx2(g, blocked, x, w, bias, act, y, tile, out) }
                }
                // SAFETY: as above.
                Err(_) => unsafe { blocked_avx2(g, blocked, x, w, bias, act, y, &mut Vec::new(), &mut Vec::new()) },
            });
        }
        if blocked == channels {
            return;
        }
        (&x[blocked * isz..], &w[blocked * ksz..], bias.map(|b| &b[blocked..]), &mut y[blocked * osz..], channels - blocked)
    };
    let lay = Layout::new(g);
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => {
            let (img, wide) = &mut *s;
            with_taps(g, &lay, |offs| dispatch(g, &lay, offs, channels, x, w, bias, act, y, img, wide))
        }
        Err(_) => with_taps(g, &lay, |offs| dispatch(g, &lay, offs, channels, x, w, bias, act, y, &mut Vec::new(), &mut Vec::new())),
    })
}

fn with_taps<R>(g: &DwGeometry, lay: &Layout, f: impl FnOnce(&[usize]) -> R) -> R {
    let n = g.kh * g.kw;
    if n <= STACK_TAPS {
        let mut buf = [0usize; STACK_TAPS];
        for (t, slot) in buf[..n].iter_mut().enumerate() {
            *slot = lay.tap(g, t);
        }
        f(&buf[..n])
    } else {
        let v: Vec<usize> = (0..n).map(|t| lay.tap(g, t)).collect();
        f(&v)
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch(
    g: &DwGeometry, lay: &Layout, offs: &[usize], channels: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation,
    y: &mut [MaybeUninit<f32>], img: &mut Vec<f32>, wide: &mut Vec<f32>,
) {
    // Positions outside the input stay zero for every channel.
    img.clear();
    img.resize(lay.img_len, 0.0);
    wide.clear();
    wide.resize(lay.wide_len, 0.0);
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        use crate::gemm::Isa;
        match crate::gemm::best_isa() {
            // SAFETY: AVX-512F was detected on this machine; the buffers have the layout's sizes.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => return unsafe { planes_avx512(g, lay, offs, channels, x, w, bias, act, y, img, wide) },
            // SAFETY: AVX2 and FMA were detected on this machine; the buffers have the layout's sizes.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => return unsafe { planes_avx2(g, lay, offs, channels, x, w, bias, act, y, img, wide) },
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    planes_body(g, lay, offs, channels, x, w, bias, act, y, img, wide)
}

/// AVX2 form of [`planes_body`]: vector copies into the phase image (even/odd split for
/// stride 2), the wide output up to 8 vectors of 8 per pass with the activation applied in
/// registers, row copies out.
///
/// # Safety
/// AVX2 and FMA must be available; `img` and `wide` hold the layout's `img_len` / `wide_len`
/// elements with every position outside the input zero; the buffers as [`depthwise_conv2d`]
/// checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn planes_avx2(
    g: &DwGeometry, lay: &Layout, offs: &[usize], channels: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation,
    y: &mut [MaybeUninit<f32>], img: &mut [f32], wide: &mut [f32],
) {
    use std::arch::x86_64::*;
    const V8: usize = 8;
    let (isz, osz, ksz) = (g.ih * g.iw, g.oh * g.ow, g.kh * g.kw);
    // Every tap reads at most `wide_len` elements from its offset (checked once here).
    assert!(offs.iter().all(|&o| o + lay.wide_len <= img.len()) && wide.len() >= lay.wide_len && lay.wide_len % V8 == 0);
    let nvec = lay.wide_len / V8;
    let per_block = nvec.div_ceil(nvec.div_ceil(8));
    // The phase columns holding input columns, per column phase (the same for every channel).
    let cols: Vec<(usize, usize)> = (0..g.sw).map(|rx| lay.cols(g, rx)).collect();
    for c in 0..channels {
        let xc = &x[c * isz..(c + 1) * isz];
        for ry in 0..g.sh {
            for (rx, &(lo, hi)) in cols.iter().enumerate() {
                if lo >= hi {
                    continue;
                }
                let base = (ry * g.sw + rx) * lay.plane;
                for r in 0..lay.hq {
                    let Some(iy) = lay.in_row(g, ry, r) else { continue };
                    let xrow = &xc[iy * g.iw..(iy + 1) * g.iw];
                    let dst = &mut img[base + r * lay.wq..][lo..hi];
                    // Phase column q holds input column q·sw + rx − pw.
                    let s0 = lo * g.sw + rx - g.pw;
                    let n = hi - lo;
                    if g.sw == 1 {
                        // SAFETY: input columns s0 .. s0+n lie in the row; `dst` holds n.
                        copy_avx2(xrow.as_ptr().add(s0), dst.as_mut_ptr(), n);
                        continue;
                    }
                    let mut q = 0;
                    if g.sw == 2 {
                        // Eight phase columns from sixteen input columns.
                        while q + V8 <= n && s0 + 2 * q + 2 * V8 <= g.iw {
                            // SAFETY: input columns s0+2q .. s0+2q+16 lie in the row (checked
                            // above); phase columns q..q+8 lie in `dst`.
                            let p = xrow.as_ptr().add(s0 + 2 * q);
                            let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(V8)));
                            let ev = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
                            let ev = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(ev)));
                            _mm256_storeu_ps(dst.as_mut_ptr().add(q), ev);
                            q += V8;
                        }
                    }
                    for (k, d) in dst.iter_mut().enumerate().skip(q) {
                        *d = xrow[s0 + k * g.sw];
                    }
                }
            }
        }
        let wc = &w[c * ksz..(c + 1) * ksz];
        let b = bias.map_or(0.0, |b| b[c]);
        let mut v0 = 0;
        while v0 < nvec {
            let (ip, op) = (img.as_ptr(), wide.as_mut_ptr().add(v0 * V8));
            // Blocks of even size: a short last block would leave the FMA units idle.
            let nv = (nvec - v0).min(per_block);
            match nv {
                1 => wide_block_avx2::<1>(ip, offs, wc, b, act, v0 * V8, op),
                2 => wide_block_avx2::<2>(ip, offs, wc, b, act, v0 * V8, op),
                3 => wide_block_avx2::<3>(ip, offs, wc, b, act, v0 * V8, op),
                4 => wide_block_avx2::<4>(ip, offs, wc, b, act, v0 * V8, op),
                5 => wide_block_avx2::<5>(ip, offs, wc, b, act, v0 * V8, op),
                6 => wide_block_avx2::<6>(ip, offs, wc, b, act, v0 * V8, op),
                7 => wide_block_avx2::<7>(ip, offs, wc, b, act, v0 * V8, op),
                _ => wide_block_avx2::<8>(ip, offs, wc, b, act, v0 * V8, op),
            }
            v0 += nv;
        }
        let yc = &mut y[c * osz..(c + 1) * osz];
        for (yr, wr) in yc.chunks_exact_mut(g.ow).zip(wide.chunks(lay.wq)) {
            // SAFETY: both rows hold at least ow elements (wq ≥ ow).
            copy_avx2(wr.as_ptr(), yr.as_mut_ptr().cast::<f32>(), g.ow);
        }
    }
}

/// Channels per block of the channel-blocked path (one per AVX2 lane).
#[cfg(target_arch = "x86_64")]
const CB: usize = 8;

/// Columns of the zero-padded tile of the channel-blocked path (every input column and every
/// column a tap reads), and output rows per band: a band's tile rows (every input row its taps
/// read) stay within about 48 KB.
#[cfg(target_arch = "x86_64")]
fn band_dims(g: &DwGeometry) -> (usize, usize) {
    let tw = (g.pw + g.iw).max((g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1);
    let rows = (48 * 1024 / (tw * CB * 4)).max(1);
    // Band rows bo need (bo − 1)·sh + (kh − 1)·dh + 1 tile rows.
    let span = (g.kh - 1) * g.dh + 1;
    let bo = if rows > span { ((rows - span) / g.sh + 1).min(g.oh) } else { 1 };
    (tw, bo)
}

/// Whether the channel-blocked path is expected to beat the planar one: strided convolutions
/// (the planar path's phase split is a second pass over the input) and small planes (per-plane
/// and per-row overheads and the wide rows' wasted columns weigh most there).
#[cfg(target_arch = "x86_64")]
fn blocked_pays(g: &DwGeometry) -> bool {
    g.sh > 1 || g.sw > 1 || g.oh * g.ow <= 256
}

/// The channel-blocked path for the first `channels` (a multiple of 8) planes: per block of
/// eight channels and band of output rows, the input rows the band reads are transposed into a
/// zero-padded tile of 8-lane pixels (lane = channel), each output pixel is a sum of taps · tile
/// pixels (a stride or dilation is a different step between pixels, no phase split), up to 8
/// output pixels of a row in registers, and the 8-lane output pixels are transposed back into
/// the planes.
///
/// # Safety
/// AVX2 and FMA must be available; `channels` a multiple of 8; the buffers as
/// [`depthwise_conv2d`] checks for at least `channels` planes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn blocked_avx2(
    g: &DwGeometry, channels: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, y: &mut [MaybeUninit<f32>],
    tile: &mut Vec<f32>, out: &mut Vec<f32>,
) {
    use std::arch::x86_64::*;
    use crate::gemm::transpose8_regs;
    let (isz, osz, ksz) = (g.ih * g.iw, g.oh * g.ow, g.kh * g.kw);
    let (tw, bo) = band_dims(g);
    let th = (bo - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    assert!(channels % CB == 0 && x.len() >= channels * isz && w.len() >= channels * ksz && y.len() >= channels * osz);
    // The columns outside the input stay zero for every band; rows outside it are zeroed when
    // a band reads them.
    tile.clear();
    tile.resize(th * tw * CB, 0.0);
    out.clear();
    out.resize(bo * g.ow * CB, 0.0);
    // Tap t reads the tile pixel at offs[t] from the output pixel's base.
    let offs: Vec<usize> = (0..ksz).map(|t| ((t / g.kw) * g.dh * tw + (t % g.kw) * g.dw) * CB).collect();
    let mut wt = vec![0f32; ksz * CB];
    // Output rows in even runs of at most 8 pixels.
    let runs = g.ow.div_ceil(8);
    let per_run = g.ow.div_ceil(runs);
    let (tp, op) = (tile.as_mut_ptr(), out.as_mut_ptr());
    for c0 in (0..channels).step_by(CB) {
        let xs: [*const f32; CB] = std::array::from_fn(|i| x.as_ptr().add((c0 + i) * isz));
        let ys: [*mut f32; CB] = std::array::from_fn(|i| y.as_mut_ptr().add((c0 + i) * osz).cast::<f32>());
        for (t, wv) in wt.chunks_exact_mut(CB).enumerate() {
            for (i, v) in wv.iter_mut().enumerate() {
                *v = w[(c0 + i) * ksz + t];
            }
        }
        let bv = match bias {
            Some(b) => _mm256_loadu_ps(b.as_ptr().add(c0)),
            None => _mm256_setzero_ps(),
        };
        for oy0 in (0..g.oh).step_by(bo) {
            let rows = bo.min(g.oh - oy0);
            // Tile row tr holds input row oy0·sh + tr − ph, eight pixels at a time (a row's
            // last group stores only the row's pixels; it reads past the row's end inside the
            // plane, or goes one pixel at a time at the end of the plane).
            for tr in 0..(rows - 1) * g.sh + (g.kh - 1) * g.dh + 1 {
                let dst = tp.add((tr * tw + g.pw) * CB);
                let iy = (oy0 * g.sh + tr) as isize - g.ph as isize;
                if iy < 0 || iy >= g.ih as isize {
                    // SAFETY: columns pw..pw+iw of tile row tr < th.
                    std::ptr::write_bytes(dst, 0, g.iw * CB);
                    continue;
                }
                let r = iy as usize;
                let mut q = 0;
                while q < g.iw {
                    let j = r * g.iw + q;
                    let n = (g.iw - q).min(8);
                    if j + 8 <= isz {
                        let v = transpose8_regs(std::array::from_fn(|i| _mm256_loadu_ps(xs[i].add(j))));
                        // SAFETY (the stores into the tile): pixels q..q+n of the row sit at
                        // columns pw + q.. of tile row tr, inside th × tw.
                        for (k, pv) in v.iter().enumerate().take(n) {
                            _mm256_storeu_ps(dst.add((q + k) * CB), *pv);
                        }
                    } else {
                        for k in 0..n {
                            for (i, p) in xs.iter().enumerate() {
                                *dst.add((q + k) * CB + i) = *p.add(j + k);
                            }
                        }
                    }
                    q += 8;
                }
            }
            let step = g.sw * CB;
            for oy in 0..rows {
                let mut ox = 0;
                while ox < g.ow {
                    let n = per_run.min(g.ow - ox);
                    let base = tp.add((oy * g.sh * tw + ox * g.sw) * CB).cast_const();
                    let dst = op.add((oy * g.ow + ox) * CB);
                    let args = (base, &offs[..], wt.as_ptr(), bv, act, step, dst);
                    match n {
                        1 => blocked_run::<1>(args),
                        2 => blocked_run::<2>(args),
                        3 => blocked_run::<3>(args),
                        4 => blocked_run::<4>(args),
                        5 => blocked_run::<5>(args),
                        6 => blocked_run::<6>(args),
                        7 => blocked_run::<7>(args),
                        _ => blocked_run::<8>(args),
                    }
                    ox += n;
                }
            }
            // The band's output pixels back into the planes, eight at a time, then the last
            // ones one by one.
            let (j0, len) = (oy0 * g.ow, rows * g.ow);
            let mut j = 0;
            while j + 8 <= len {
                let v = transpose8_regs(std::array::from_fn(|p| _mm256_loadu_ps(op.add((j + p) * CB))));
                for (i, cv) in v.into_iter().enumerate() {
                    _mm256_storeu_ps(ys[i].add(j0 + j), cv);
                }
                j += 8;
            }
            for jj in j..len {
                for (i, p) in ys.iter().enumerate() {
                    *p.add(j0 + jj) = *op.add(jj * CB + i);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
type BlockedArgs<'a> = (*const f32, &'a [usize], *const f32, std::arch::x86_64::__m256, Activation, usize, *mut f32);

/// NX consecutive output pixels of one row, 8 channels each: act(bias + Σ_t w[t] · tile[base +
/// offs[t] + i·step]) stored at out + i·8.
///
/// # Safety
/// AVX2 and FMA must be available; every tile pixel read lies in the tile, `wt` holds
/// offs.len() · 8 weights and `out` NX · 8 floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn blocked_run<const NX: usize>((base, offs, wt, bias, act, step, out): BlockedArgs<'_>) {
    use std::arch::x86_64::*;
    let mut acc = [bias; NX];
    for (t, &off) in offs.iter().enumerate() {
        let wv = _mm256_loadu_ps(wt.add(t * CB));
        let p = base.add(off);
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(i * step)), *a);
        }
    }
    for (i, &a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.add(i * CB), act256(act, a));
    }
}

/// Whether the row path serves the geometry: unit strides and dilations, a square 3×3 or 5×5
/// kernel, rows of at least one vector and planes past the channel-blocked path's size.
#[cfg(target_arch = "x86_64")]
fn rows_fit(g: &DwGeometry) -> bool {
    g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.kh == g.kw && (g.kh == 3 || g.kh == 5) && g.ow >= 8 && g.oh * g.ow > 256
}

/// The row path (see [`rows_fit`]) for `channels` planes: per channel, bands of output rows
/// (3 for 3×3 kernels, 4 for 5×5), each row in vectors of 8 output pixels (the last one
/// overlapping the one before when the width is not a multiple of 8), 3 or 2 vectors side by
/// side per tile. Every input row of a band is loaded once per tap column for all the band's
/// output rows that use it, straight from the plane: rows above or below the plane read a zero
/// row, and vectors whose taps cross the left or right edge use masked loads. The activation is
/// applied before the store into Y.
///
/// # Safety
/// AVX2 and FMA must be available; `rows_fit(g)`; the buffers as [`depthwise_conv2d`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_avx2(
    g: &DwGeometry, channels: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, y: &mut [MaybeUninit<f32>],
    zero: &mut Vec<f32>,
) {
    use std::arch::x86_64::*;
    let (isz, osz, k) = (g.ih * g.iw, g.oh * g.ow, g.kh);
    let ksz = k * k;
    assert!(rows_fit(g) && x.len() >= channels * isz && w.len() >= channels * ksz && y.len() >= channels * osz);
    // Rows per band and vectors per tile: 3 × 3 for 3×3 kernels, 4 × 2 for 5×5 (whose 25
    // weights leave fewer registers).
    let (rb, nx) = if k == 3 { (3, 3) } else { (4, 2) };
    // The zero row stands for the rows above and below the plane: it covers every column a tap
    // reads, -pw ..= ow − 8 − pw + (k − 1) + 7.
    zero.clear();
    zero.resize(g.ow + k + 8, 0.0);
    let zrow = zero.as_ptr().add(g.pw);
    // Vectors start every 8 columns, then at ow − 8 for a tail. The interior ones (every tap
    // column inside the input row) are vectors lo .. hi of the first ow / 8, taken nx at a time.
    // The rest (the edges, the interior leftovers, the tail) go in pairs, masked when one of the
    // pair crosses an edge (all lanes set for an interior one).
    let interior = |ox: usize| ox >= g.pw && ox + k + 7 <= g.iw + g.pw;
    let full = g.ow / 8;
    let lo = g.pw.div_ceil(8).min(full);
    let hi = (lo..full).find(|&v| !interior(v * 8)).unwrap_or(full);
    let groups = (hi - lo) / nx;
    let mut rest: Vec<usize> = (0..lo).chain(lo + groups * nx..full).map(|v| v * 8).collect();
    if g.ow % 8 != 0 {
        rest.push(g.ow - 8);
    }
    let all = [_mm256_set1_epi32(-1); 5];
    let rest: Vec<(usize, bool, [__m256i; 5])> =
        rest.into_iter().map(|ox| if interior(ox) { (ox, false, all) } else { (ox, true, edge_masks(g, ox)) }).collect();
    let mut wb = [_mm256_setzero_ps(); 25];
    for c in 0..channels {
        let xc = x.as_ptr().add(c * isz);
        let yc = y.as_mut_ptr().add(c * osz).cast::<f32>();
        for (t, wv) in wb[..ksz].iter_mut().enumerate() {
            *wv = _mm256_set1_ps(w[c * ksz + t]);
        }
        let mut band = Band { rows: [zrow; 8], outs: [yc; 4], w: wb.as_ptr(), bias: bias.map_or(0.0, |b| b[c]), act, pw: g.pw };
        let mut oy0 = 0;
        while oy0 < g.oh {
            let nr = rb.min(g.oh - oy0);
            // Column 0 of each input row the band reads (nr + k − 1), or of the zero row.
            for (i, s) in band.rows.iter_mut().enumerate() {
                let iy = (oy0 + i) as isize - g.ph as isize;
                *s = if i < nr + k - 1 && iy >= 0 && (iy as usize) < g.ih { xc.add(iy as usize * g.iw) } else { zrow };
            }
            for (r, o) in band.outs.iter_mut().enumerate() {
                *o = yc.add((oy0 + r.min(nr - 1)) * g.ow);
            }
            // The band's tiles with K×K kernels, R rows and NX vectors per interior tile.
            macro_rules! run {
                ($k:literal, $r:literal, $nx:literal) => {{
                    row_tiles::<$k, $r, $nx, false>(&band, std::array::from_fn(|q| lo * 8 + 8 * q), groups, &[all; $nx]);
                    for p in rest.chunks(2) {
                        match *p {
                            [(a, false, _), (b, false, _)] => row_tiles::<$k, $r, 2, false>(&band, [a, b], 1, &[all; 2]),
                            [(a, _, ma), (b, _, mb)] => row_tiles::<$k, $r, 2, true>(&band, [a, b], 1, &[ma, mb]),
                            [(a, false, _)] => row_tiles::<$k, $r, 1, false>(&band, [a], 1, &[all]),
                            [(a, _, ma)] => row_tiles::<$k, $r, 1, true>(&band, [a], 1, &[ma]),
                            _ => {}
                        }
                    }
                }};
            }
            match (k, nr) {
                (3, 1) => run!(3, 1, 3),
                (3, 2) => run!(3, 2, 3),
                (3, _) => run!(3, 3, 3),
                (_, 1) => run!(5, 1, 2),
                (_, 2) => run!(5, 2, 2),
                (_, 3) => run!(5, 3, 2),
                (_, _) => run!(5, 4, 2),
            }
            oy0 += nr;
        }
    }
}

/// For the vector of output columns ox.. of the row path: per tap column kx (up to 5), the lanes
/// whose input column ox − pw + kx + lane lies inside the input row.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn edge_masks(g: &DwGeometry, ox: usize) -> [std::arch::x86_64::__m256i; 5] {
    use std::arch::x86_64::*;
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    std::array::from_fn(|kx| {
        // Lane l is inside when 0 ≤ c0 + l < iw.
        let c0 = ox as i32 - g.pw as i32 + kx as i32;
        let lo = _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(-c0 - 1));
        let hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(g.iw as i32 - c0), lane);
        _mm256_and_si256(lo, hi)
    })
}

/// One band of the row path: column 0 of its input rows (or of the zero row), its output rows,
/// the channel's K×K weights each broadcast to a vector, bias, activation and left padding.
#[cfg(target_arch = "x86_64")]
struct Band {
    rows: [*const f32; 8],
    outs: [*mut f32; 4],
    w: *const std::arch::x86_64::__m256,
    bias: f32,
    act: Activation,
    pw: usize,
}

/// `count` tiles of R output rows × NX vectors of 8, tile j at output columns oxs[q] + j·8·NX:
/// out[r][ox + l] = act(bias + Σ w[ky][kx] · rows[r + ky][ox − pw + kx + l]). Input row i serves
/// output rows r with i − r in 0..K, so each of its tap loads feeds up to K accumulators.
/// MASKED loads vector q's tap column kx through masks[q][kx] (for one tile).
///
/// # Safety
/// AVX2 and FMA must be available; for every lane read (every lane, or the lanes set in the
/// masks) rows[i] + ox − pw + kx + l is readable for i < R + K − 1; the tiles' columns of
/// outs[r] are writable for r < R.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_tiles<const K: usize, const R: usize, const NX: usize, const MASKED: bool>(
    b: &Band, oxs: [usize; NX], count: usize, masks: &[[std::arch::x86_64::__m256i; 5]; NX],
) {
    use std::arch::x86_64::*;
    const { assert!(R + K - 1 <= 8 && R <= 4 && K <= 5) };
    // Column −pw of each row (left of the row for masked loads at the left edge; the masked-off
    // lanes are not read).
    let rows: [*const f32; 8] = std::array::from_fn(|i| b.rows[i].wrapping_sub(b.pw));
    for j in 0..count {
        let oxs: [usize; NX] = std::array::from_fn(|q| oxs[q] + j * 8 * NX);
        let mut acc = [[_mm256_set1_ps(b.bias); NX]; R];
        // One input row: its K shifted loads, each into every accumulator row it serves.
        // Spelled out per row index below so that the row selection folds away.
        macro_rules! input_row {
            ($i:literal) => {
                if $i < R + K - 1 {
                    for kx in 0..K {
                        let v: [__m256; NX] = std::array::from_fn(|q| {
                            let p = rows[$i].wrapping_add(oxs[q] + kx);
                            if MASKED { _mm256_maskload_ps(p, masks[q][kx]) } else { _mm256_loadu_ps(p) }
                        });
                        for (r, ar) in acc.iter_mut().enumerate() {
                            if $i >= r && $i - r < K {
                                // A volatile read keeps each weight load next to its use: shared
                                // between rows, the K·K weights would not fit in registers.
                                let wv = std::ptr::read_volatile(b.w.add(($i - r) * K + kx));
                                for (a, &vq) in ar.iter_mut().zip(&v) {
                                    *a = _mm256_fmadd_ps(wv, vq, *a);
                                }
                            }
                        }
                    }
                }
            };
        }
        input_row!(0);
        input_row!(1);
        input_row!(2);
        input_row!(3);
        input_row!(4);
        input_row!(5);
        input_row!(6);
        input_row!(7);
        // The store loop may stay a loop (the activation is long); it reads a copy so that the
        // accumulators above stay in registers.
        let res = acc;
        for (ar, &o) in res.iter().zip(&b.outs) {
            for (&a, &ox) in ar.iter().zip(&oxs) {
                _mm256_storeu_ps(o.add(ox), act256(b.act, a));
            }
        }
    }
}

/// Copies `n` floats from `src` to `dst` (short rows, so inline rather than through memcpy; the
/// last vector overlaps the one before rather than using masked moves, which are slow on some
/// cores).
///
/// # Safety
/// AVX2 must be available; `src` readable and `dst` writable for `n` elements, not overlapping.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn copy_avx2(src: *const f32, dst: *mut f32, n: usize) {
    use std::arch::x86_64::*;
    if n < 8 {
        for i in 0..n {
            *dst.add(i) = *src.add(i);
        }
        return;
    }
    let mut i = 0;
    while i + 8 < n {
        _mm256_storeu_ps(dst.add(i), _mm256_loadu_ps(src.add(i)));
        i += 8;
    }
    _mm256_storeu_ps(dst.add(n - 8), _mm256_loadu_ps(src.add(n - 8)));
}

/// NV vectors of 8 of the wide output from element `j0` (see [`wide_block`]), the activation
/// applied in registers.
///
/// # Safety
/// AVX2 and FMA must be available; offs[t] + j0 + NV·8 ≤ the image length for every tap and
/// `out` must hold NV·8 elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn wide_block_avx2<const NV: usize>(img: *const f32, offs: &[usize], wc: &[f32], bias: f32, act: Activation, j0: usize, out: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(bias); NV];
    for (&off, &wv) in offs.iter().zip(wc) {
        let wv = _mm256_set1_ps(wv);
        let p = img.add(off + j0);
        for (v, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(v * 8)), *a);
        }
    }
    for (v, &a) in acc.iter().enumerate() {
        let r = act256(act, a);
        _mm256_storeu_ps(out.add(v * 8), r);
    }
}

/// Copies the input plane `xc` into the phase image (positions outside the input untouched).
#[inline(always)]
fn fill_plane(g: &DwGeometry, lay: &Layout, xc: &[f32], img: &mut [f32]) {
    for ry in 0..g.sh {
        for rx in 0..g.sw {
            let (lo, hi) = lay.cols(g, rx);
            let base = (ry * g.sw + rx) * lay.plane;
            for r in 0..lay.hq {
                let Some(iy) = lay.in_row(g, ry, r) else { continue };
                let xrow = &xc[iy * g.iw..(iy + 1) * g.iw];
                let dst = &mut img[base + r * lay.wq..][lo..hi];
                for (q, d) in dst.iter_mut().enumerate() {
                    *d = xrow[(lo + q) * g.sw + rx - g.pw];
                }
            }
        }
    }
}

/// Portable form: the wide output in blocks of `PB` elements, then copied out.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn planes_body(
    g: &DwGeometry, lay: &Layout, offs: &[usize], channels: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation,
    y: &mut [MaybeUninit<f32>], img: &mut [f32], wide: &mut [f32],
) {
    const PB: usize = 64;
    let (isz, osz, ksz) = (g.ih * g.iw, g.oh * g.ow, g.kh * g.kw);
    for c in 0..channels {
        fill_plane(g, lay, &x[c * isz..(c + 1) * isz], img);
        let wc = &w[c * ksz..(c + 1) * ksz];
        let b = bias.map_or(0.0, |b| b[c]);
        for (blk, out) in wide.chunks_mut(PB).enumerate() {
            let j0 = blk * PB;
            let n = out.len();
            let mut acc = [b; PB];
            for (&off, &wv) in offs.iter().zip(wc) {
                for (a, &s) in acc[..n].iter_mut().zip(&img[off + j0..off + j0 + n]) {
                    *a += wv * s;
                }
            }
            act.apply_inline(&mut acc[..n]);
            out.copy_from_slice(&acc[..n]);
        }
        let yc = &mut y[c * osz..(c + 1) * osz];
        for (yr, wr) in yc.chunks_mut(g.ow).zip(wide.chunks(lay.wq)) {
            for (d, &v) in yr.iter_mut().zip(&wr[..g.ow]) {
                d.write(v);
            }
        }
    }
}

/// AVX-512 form of [`planes_body`]: vector copies into the phase image (even/odd split for
/// stride 2), the wide output up to 8 vectors per pass with the activation applied in
/// registers, masked copies out.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn planes_avx512(
    g: &DwGeometry, lay: &Layout, offs: &[usize], channels: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation,
    y: &mut [MaybeUninit<f32>], img: &mut [f32], wide: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (isz, osz, ksz) = (g.ih * g.iw, g.oh * g.ow, g.kh * g.kw);
    // Every tap reads at most `wide_len` elements from its offset (checked once here).
    assert!(offs.iter().all(|&o| o + lay.wide_len <= img.len()) && wide.len() >= lay.wide_len);
    let mask = |n: usize| -> __mmask16 { if n >= V { 0xffff } else { ((1u32 << n) - 1) as __mmask16 } };
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let nvec = lay.wide_len / V;
    for c in 0..channels {
        let xc = &x[c * isz..(c + 1) * isz];
        if g.sw == 1 {
            let (lo, hi) = lay.cols(g, 0);
            for ry in (0..g.sh).filter(|_| lo < hi) {
                for r in 0..lay.hq {
                    let Some(iy) = lay.in_row(g, ry, r) else { continue };
                    let dst = img[ry * lay.plane + r * lay.wq..][lo..hi].as_mut_ptr();
                    // Phase column q holds input column q − pw.
                    let src = xc[iy * g.iw..(iy + 1) * g.iw].as_ptr().add(lo - g.pw);
                    let n = hi - lo;
                    let mut q = 0;
                    while q < n {
                        let m = mask(n - q);
                        // SAFETY: lanes below n − q stay inside the input row and the phase row.
                        _mm512_mask_storeu_ps(dst.add(q), m, _mm512_maskz_loadu_ps(m, src.add(q)));
                        q += V;
                    }
                }
            }
        } else if g.sw == 2 {
            // Input column c goes to column phase (c + pw) % 2 at index (c + pw) / 2: even
            // columns to phase pw % 2 from index pw / 2, odd ones to the other from (pw + 1) / 2.
            let (rxe, qe, rxo, qo) = (g.pw % 2, g.pw / 2, (g.pw + 1) % 2, (g.pw + 1) / 2);
            for ry in 0..g.sh {
                for r in 0..lay.hq {
                    let Some(iy) = lay.in_row(g, ry, r) else { continue };
                    let src = xc[iy * g.iw..(iy + 1) * g.iw].as_ptr();
                    let row = img[(ry * 2) * lay.plane + r * lay.wq..].as_mut_ptr();
                    let (de, dof) = (row.add(rxe * lay.plane), row.add(rxo * lay.plane));
                    let mut c0 = 0;
                    while c0 < g.iw {
                        let n = (g.iw - c0).min(2 * V);
                        // SAFETY: the loads read input columns c0..c0+n of the row; the stores
                        // write phase columns below wq of rows inside the image.
                        let a = _mm512_maskz_loadu_ps(mask(n), src.add(c0));
                        let b = _mm512_maskz_loadu_ps(mask(n.saturating_sub(V)), src.wrapping_add(c0 + V));
                        let k = c0 / 2;
                        let ne = n.div_ceil(2).min(lay.wq.saturating_sub(qe + k));
                        let no = (n / 2).min(lay.wq.saturating_sub(qo + k));
                        if ne > 0 {
                            _mm512_mask_storeu_ps(de.add(qe + k), mask(ne), _mm512_permutex2var_ps(a, evens, b));
                        }
                        if no > 0 {
                            _mm512_mask_storeu_ps(dof.add(qo + k), mask(no), _mm512_permutex2var_ps(a, odds, b));
                        }
                        c0 += 2 * V;
                    }
                }
            }
        } else {
            fill_plane(g, lay, xc, img);
        }
        let wc = &w[c * ksz..(c + 1) * ksz];
        let b = bias.map_or(0.0, |b| b[c]);
        let mut v0 = 0;
        while v0 < nvec {
            let (ip, op) = (img.as_ptr(), wide.as_mut_ptr().add(v0 * V));
            match nvec - v0 {
                1 => wide_block::<1>(ip, offs, wc, b, act, v0 * V, op),
                2 => wide_block::<2>(ip, offs, wc, b, act, v0 * V, op),
                3 => wide_block::<3>(ip, offs, wc, b, act, v0 * V, op),
                4 => wide_block::<4>(ip, offs, wc, b, act, v0 * V, op),
                5 => wide_block::<5>(ip, offs, wc, b, act, v0 * V, op),
                6 => wide_block::<6>(ip, offs, wc, b, act, v0 * V, op),
                7 => wide_block::<7>(ip, offs, wc, b, act, v0 * V, op),
                _ => wide_block::<8>(ip, offs, wc, b, act, v0 * V, op),
            }
            v0 += 8;
        }
        let yc = &mut y[c * osz..(c + 1) * osz];
        for oy in 0..g.oh {
            let (src, dst) = (wide.as_ptr().add(oy * lay.wq), yc.as_mut_ptr().cast::<f32>().add(oy * g.ow));
            let mut q = 0;
            while q < g.ow {
                let m = mask(g.ow - q);
                // SAFETY: columns q.. < ow of row oy in both the wide output and Y.
                _mm512_mask_storeu_ps(dst.add(q), m, _mm512_maskz_loadu_ps(m, src.add(q)));
                q += V;
            }
        }
    }
}

/// For the flat path (unit strides, input and output rows of equal width, so every tap of an
/// output element is at a fixed offset from it in the input plane): per 16-element vector of the
/// output plane and tap, the lanes whose input lies inside the plane, and whether every lane of
/// every tap does.
#[cfg(target_arch = "x86_64")]
struct FlatMasks {
    g: DwGeometry,
    /// [vector][tap] lane masks.
    masks: Vec<u16>,
    interior: Vec<bool>,
}

#[cfg(target_arch = "x86_64")]
impl FlatMasks {
    fn new(g: &DwGeometry) -> FlatMasks {
        let (osz, ksz) = (g.oh * g.ow, g.kh * g.kw);
        let nvec = osz.div_ceil(V);
        let mut masks = vec![0u16; nvec * ksz];
        let mut interior = vec![true; nvec];
        for (v, (mv, int)) in masks.chunks_exact_mut(ksz).zip(interior.iter_mut()).enumerate() {
            for (t, m) in mv.iter_mut().enumerate() {
                let (dy, dx) = ((t / g.kw) * g.dh, (t % g.kw) * g.dw);
                for l in 0..V {
                    let j = v * V + l;
                    if j >= osz {
                        break;
                    }
                    let iy = (j / g.ow + dy) as isize - g.ph as isize;
                    let ix = (j % g.ow + dx) as isize - g.pw as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < g.ih && (ix as usize) < g.iw {
                        *m |= 1 << l;
                    }
                }
                *int &= *m == u16::MAX;
            }
        }
        FlatMasks { g: *g, masks, interior }
    }
}

/// The flat path: each output vector is act(bias + Σ_t w[t] · x[j + off_t ..]) read straight
/// from the input plane with the lanes outside it masked off, stored straight into Y.
///
/// # Safety
/// AVX-512F must be available; `fm` built for `g` (sh = sw = 1, ow = iw); the buffers as
/// [`depthwise_conv2d`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn planes_flat_avx512(
    g: &DwGeometry, channels: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, y: &mut [MaybeUninit<f32>],
    fm: &FlatMasks,
) {
    let (isz, osz, ksz) = (g.ih * g.iw, g.oh * g.ow, g.kh * g.kw);
    let nvec = osz.div_ceil(V);
    let offs: Vec<isize> = (0..ksz)
        .map(|t| ((t / g.kw * g.dh) as isize - g.ph as isize) * g.iw as isize + (t % g.kw * g.dw) as isize - g.pw as isize)
        .collect();
    for c in 0..channels {
        let xc = x[c * isz..(c + 1) * isz].as_ptr();
        let yc = y[c * osz..(c + 1) * osz].as_mut_ptr().cast::<f32>();
        let wc = &w[c * ksz..(c + 1) * ksz];
        let b = bias.map_or(0.0, |b| b[c]);
        let mut v0 = 0;
        while v0 < nvec {
            let nv = (nvec - v0).min(8);
            let ms = &fm.masks[v0 * ksz..(v0 + nv) * ksz];
            let int = fm.interior[v0..v0 + nv].iter().all(|&i| i);
            let args = (xc, yc, &offs[..], wc, b, act, ms, int, v0 * V, osz);
            match nv {
                1 => flat_block::<1>(args),
                2 => flat_block::<2>(args),
                3 => flat_block::<3>(args),
                4 => flat_block::<4>(args),
                5 => flat_block::<5>(args),
                6 => flat_block::<6>(args),
                7 => flat_block::<7>(args),
                _ => flat_block::<8>(args),
            }
            v0 += nv;
        }
    }
}

#[cfg(target_arch = "x86_64")]
type FlatArgs<'a> = (*const f32, *mut f32, &'a [isize], &'a [f32], f32, Activation, &'a [u16], bool, usize, usize);

/// NV output vectors from element `j0` of one channel (see [`planes_flat_avx512`]).
///
/// # Safety
/// AVX-512F must be available; for every lane set in a mask (every lane when `interior`), the
/// input element at j + offs[t] lies in the plane at `xc`; `yc` is writable for `osz` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn flat_block<const NV: usize>((xc, yc, offs, wc, bias, act, masks, interior, j0, osz): FlatArgs<'_>) {
    use std::arch::x86_64::*;
    let ksz = offs.len();
    let mut acc = [_mm512_set1_ps(bias); NV];
    if interior {
        for (&off, &wv) in offs.iter().zip(wc) {
            let wv = _mm512_set1_ps(wv);
            let p = xc.offset(j0 as isize + off);
            for (v, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p.add(v * V)), *a);
            }
        }
    } else {
        for (t, (&off, &wv)) in offs.iter().zip(wc).enumerate() {
            let wv = _mm512_set1_ps(wv);
            let p = xc.wrapping_offset(j0 as isize + off);
            for (v, a) in acc.iter_mut().enumerate() {
                let m = masks[v * ksz + t];
                *a = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, p.wrapping_add(v * V)), *a);
            }
        }
    }
    for (v, a) in acc.iter().enumerate() {
        let j = j0 + v * V;
        let r = act512(act, *a);
        if j + V <= osz {
            _mm512_storeu_ps(yc.add(j), r);
        } else {
            _mm512_mask_storeu_ps(yc.add(j), ((1u32 << (osz - j)) - 1) as __mmask16, r);
        }
    }
}

/// NV vectors of the wide output from element `j0`: act(bias + Σ_t w[t] · img[offs[t] + j ..]).
///
/// # Safety
/// AVX-512F must be available; offs[t] + j0 + NV·16 ≤ the image length for every tap and
/// `out` must hold NV·16 elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn wide_block<const NV: usize>(img: *const f32, offs: &[usize], wc: &[f32], bias: f32, act: Activation, j0: usize, out: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(bias); NV];
    for (&off, &wv) in offs.iter().zip(wc) {
        let wv = _mm512_set1_ps(wv);
        let p = img.add(off + j0);
        for (v, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p.add(v * V)), *a);
        }
    }
    for (v, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.add(v * V), act512(act, *a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffer as the kernel's output type (the kernels only write initialised values).
    fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
        // SAFETY: MaybeUninit<f32> has f32's layout; nothing written through the view is uninitialised.
        unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
    }

    /// Direct definition in f64.
    fn naive(g: &DwGeometry, x: &[f32], w: &[f32], bias: f64) -> Vec<f64> {
        let mut y = vec![bias; g.oh * g.ow];
        for i in 0..g.oh {
            for j in 0..g.ow {
                for a in 0..g.kh {
                    for b in 0..g.kw {
                        let r = (i * g.sh + a * g.dh) as isize - g.ph as isize;
                        let q = (j * g.sw + b * g.dw) as isize - g.pw as isize;
                        if r >= 0 && q >= 0 && (r as usize) < g.ih && (q as usize) < g.iw {
                            y[i * g.ow + j] += x[r as usize * g.iw + q as usize] as f64 * w[a * g.kw + b] as f64;
                        }
                    }
                }
            }
        }
        y
    }

    fn check(g: &DwGeometry, channels: usize, act: Activation) {
        let (isz, osz, ksz) = (g.ih * g.iw, g.oh * g.ow, g.kh * g.kw);
        let x: Vec<f32> = (0..channels * isz).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let w: Vec<f32> = (0..channels * ksz).map(|i| ((i * 5) % 11) as f32 * 0.25 - 1.25).collect();
        let bias: Vec<f32> = (0..channels).map(|c| c as f32 * 0.5 - 1.0).collect();
        let mut y = vec![f32::NAN; channels * osz + 5];
        depthwise_conv2d(g, channels, &x, &w, Some(&bias), act, as_uninit(&mut y));
        // The portable body (used without AVX-512) on the same input.
        let lay = Layout::new(g);
        let (mut img, mut wide) = (vec![0f32; lay.img_len], vec![0f32; lay.wide_len]);
        let mut yp = vec![f32::NAN; channels * osz + 5];
        with_taps(g, &lay, |offs| planes_body(g, &lay, offs, channels, &x, &w, Some(&bias), act, as_uninit(&mut yp), &mut img, &mut wide));
        for c in 0..channels {
            let want = naive(g, &x[c * isz..], &w[c * ksz..], bias[c] as f64);
            for (k, &wv) in want.iter().enumerate() {
                let wv = act.eval_f64(wv);
                for got in [y[c * osz + k] as f64, yp[c * osz + k] as f64] {
                    assert!((got - wv).abs() <= 1e-4 * (1.0 + wv.abs()), "{g:?} {act:?} channel {c} at {k}: {got} vs {wv}");
                }
            }
        }
        assert!(y[channels * osz..].iter().chain(&yp[channels * osz..]).all(|v| v.is_nan()), "wrote past Y");
    }

    #[test]
    fn matches_direct_definition() {
        for (k, s, p, d, h, wd) in [(3usize, 1usize, 1usize, 1usize, 7usize, 20usize), (3, 2, 1, 1, 8, 37), (5, 2, 2, 1, 9, 6), (3, 2, 0, 1, 5, 5), (3, 1, 2, 2, 6, 18), (5, 1, 2, 1, 14, 14), (3, 1, 1, 1, 7, 7), (5, 2, 2, 1, 14, 14), (3, 2, 1, 1, 56, 56), (3, 1, 1, 1, 33, 40), (7, 3, 3, 1, 11, 23), (3, 1, 4, 1, 5, 21), (5, 1, 2, 1, 16, 16), (3, 1, 0, 1, 3, 17), (3, 2, 1, 1, 112, 112), (1, 1, 0, 1, 4, 4), (3, 2, 1, 1, 41, 65)] {
            let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1;
            let ow = (wd + 2 * p - d * (k - 1) - 1) / s + 1;
            let g = DwGeometry { ih: h, iw: wd, oh, ow, kh: k, kw: k, sh: s, sw: s, dh: d, dw: d, ph: p, pw: p };
            check(&g, 3, Activation::Identity);
        }
    }

    #[test]
    fn activations_and_uneven_geometry() {
        // sh 2, sw 1, dilation (1, 2), padding only on the left/top; and sw 2 with sh 1.
        let g1 = DwGeometry { ih: 9, iw: 23, oh: 5, ow: 21, kh: 3, kw: 3, sh: 2, sw: 1, dh: 1, dw: 2, ph: 1, pw: 2 };
        let g2 = DwGeometry { ih: 6, iw: 19, oh: 6, ow: 9, kh: 3, kw: 2, sh: 1, sw: 2, dh: 2, dw: 1, ph: 2, pw: 0 };
        // Unit strides, rows as wide as the input's but fewer of them (the flat path's masks).
        let g3 = DwGeometry { ih: 9, iw: 12, oh: 7, ow: 12, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, ph: 0, pw: 1 };
        let g4 = DwGeometry { ih: 5, iw: 3, oh: 8, ow: 3, kh: 5, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, ph: 3, pw: 1 };
        for g in [g1, g2, g3, g4] {
            for act in [Activation::Identity, Activation::Relu, Activation::HardSwish, Activation::Swish(1.0), Activation::Clip(0.0, 6.0)] {
                check(&g, 2, act);
            }
        }
    }

    #[test]
    fn channel_blocks() {
        // Whole blocks of eight channels and a partial one after them (the blocked path with the
        // planar one for the rest), on square planes from 1×1 up, strides 1 and 2, pads k/2 and 0.
        for channels in [8usize, 19] {
            for k in [3usize, 5] {
                for s in [1usize, 2] {
                    for p in [k / 2, 0] {
                        for h in [1usize, 2, 3, 5, 7, 8, 9, 14, 15, 28, 29] {
                            if h + 2 * p < k {
                                continue;
                            }
                            let o = (h + 2 * p - k) / s + 1;
                            let g = DwGeometry { ih: h, iw: h, oh: o, ow: o, kh: k, kw: k, sh: s, sw: s, dh: 1, dw: 1, ph: p, pw: p };
                            for act in [Activation::Identity, Activation::HardSwish, Activation::Relu] {
                                check(&g, channels, act);
                            }
                        }
                    }
                }
            }
        }
        // Uneven strides, dilations and pads, rows wider than eight output pixels.
        let gs = [
            DwGeometry { ih: 9, iw: 23, oh: 5, ow: 21, kh: 3, kw: 3, sh: 2, sw: 1, dh: 1, dw: 2, ph: 1, pw: 2 },
            DwGeometry { ih: 6, iw: 19, oh: 6, ow: 9, kh: 3, kw: 2, sh: 1, sw: 2, dh: 2, dw: 1, ph: 2, pw: 0 },
            DwGeometry { ih: 11, iw: 23, oh: 4, ow: 8, kh: 7, kw: 7, sh: 3, sw: 3, dh: 1, dw: 1, ph: 3, pw: 3 },
            DwGeometry { ih: 5, iw: 3, oh: 8, ow: 3, kh: 5, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, ph: 3, pw: 1 },
            DwGeometry { ih: 56, iw: 56, oh: 28, ow: 28, kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, ph: 1, pw: 1 },
            DwGeometry { ih: 4, iw: 4, oh: 2, ow: 2, kh: 1, kw: 1, sh: 2, sw: 2, dh: 1, dw: 1, ph: 0, pw: 0 },
        ];
        for g in gs {
            check(&g, 16, Activation::Swish(1.0));
            check(&g, 11, Activation::Clip(0.0, 6.0));
        }
    }

    /// Every fused activation, with parameters as models use them.
    const EVERY_ACT: [Activation; 7] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Clip(0.0, 6.0),
        Activation::HardSigmoid(0.2, 0.5),
        Activation::HardSwish,
        Activation::Sigmoid,
        Activation::Swish(1.0),
    ];

    #[test]
    fn unit_stride_large_planes() {
        // Unit strides on planes of more than 256 outputs (the row path with AVX2): widths around
        // multiples of the 8-lane vector (tails, rows of one vector), begin and end pads 0 to 2
        // chosen apart, 3×3 and 5×5 kernels, channel counts around the 8-channel blocks.
        let acts = EVERY_ACT;
        let mut n = 0;
        for k in [3usize, 5] {
            for (ih, iw) in [(40usize, 8usize), (33, 9), (20, 15), (17, 16), (16, 17), (12, 23), (9, 31), (9, 33), (6, 57), (113, 113)] {
                for (pb, pe) in [(0usize, 0usize), (1, 1), (2, 2), (0, 2), (2, 0), (1, 2)] {
                    // Rows: padding pb / pe; columns: pe / pb (different begin pads per axis).
                    let (oh, ow) = ((ih + pb + pe + 1).checked_sub(k), (iw + pe + pb + 1).checked_sub(k));
                    let (Some(oh), Some(ow)) = (oh, ow) else { continue };
                    let g = DwGeometry { ih, iw, oh, ow, kh: k, kw: k, sh: 1, sw: 1, dh: 1, dw: 1, ph: pb, pw: pe };
                    #[cfg(target_arch = "x86_64")]
                    assert!(oh * ow <= 256 || ow < 8 || rows_fit(&g), "{g:?}");
                    let big = ih * iw > 4000;
                    for (i, &channels) in [1usize, 7, 8, 17, 32].iter().enumerate() {
                        if big && channels > 8 {
                            continue;
                        }
                        check(&g, channels, acts[(n + i) % acts.len()]);
                    }
                    n += 1;
                }
            }
        }
        // Every activation on one geometry with both edges and a tail.
        let g = DwGeometry { ih: 19, iw: 21, oh: 19, ow: 21, kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, ph: 1, pw: 1 };
        for act in acts {
            check(&g, 9, act);
        }
    }

    #[test]
    fn kernel_sizes_strides_and_small_planes() {
        // Square planes from 1×1 (smaller than the kernel) past two vectors, pads of k/2 and 0,
        // every activation, an odd channel count.
        let acts = EVERY_ACT;
        for k in [3usize, 5] {
            for s in [1usize, 2] {
                for p in [k / 2, 0] {
                    for h in [1usize, 2, 3, 4, 5, 7, 8, 9, 14, 15, 16, 17, 28, 31] {
                        if h + 2 * p < k {
                            continue;
                        }
                        let o = (h + 2 * p - k) / s + 1;
                        let g = DwGeometry { ih: h, iw: h, oh: o, ow: o, kh: k, kw: k, sh: s, sw: s, dh: 1, dw: 1, ph: p, pw: p };
                        for act in acts {
                            check(&g, 3, act);
                        }
                    }
                }
            }
        }
    }
}
