//! Implicit-GEMM 2-D convolution (float32): Y[m × oh·ow] = W[m × c·kh·kw] · im2col(X) with the
//! im2col matrix never materialised — each k-block × column-block of it is packed straight from
//! the input image into the micro-kernel's B panel layout, then multiplied by the prepacked
//! weights with the GEMM micro-kernels and epilogue.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use crate::gemm::{run_kernel, tile_ep, AlignedBuf, Epilogue, KernelInfo, PackedA, TileOut};

/// Geometry of one group of a 2-D convolution: X [c, ih, iw] → Y [m, oh, ow].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Input channels (of this group).
    pub c: usize,
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

impl Conv2dGeometry {
    /// Depth of the product: c · kh · kw.
    pub fn depth(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Output pixels: oh · ow.
    pub fn cols(&self) -> usize {
        self.oh * self.ow
    }
}

/// Columns of the implicit B matrix packed per block.
const NC: usize = 256;

thread_local! {
    static BBUF: RefCell<AlignedBuf> = RefCell::new(AlignedBuf::default());
    /// The padded input copy of the calling thread, kept between calls.
    static WORK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The packed im2col(X)ᵀ of [`conv2d_transposed`] on the calling thread, kept between calls.
    static COLS_A: RefCell<crate::gemm::PackedA> = RefCell::new(crate::gemm::PackedA::empty());
}

/// C pointer shared by the threads computing disjoint column / row ranges.
#[derive(Clone, Copy)]
struct YPtr(*mut f32);
// SAFETY: each part writes a disjoint rectangle of Y (see `conv2d_gemm`).
unsafe impl Send for YPtr {}
// SAFETY: as above.
unsafe impl Sync for YPtr {}

/// Valid output columns [lo, hi) of kernel column `b` (input column inside 0..iw).
fn col_range(g: &Conv2dGeometry, b: usize) -> (usize, usize) {
    let off = (b * g.dw) as isize - g.pw as isize;
    let lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(g.sw) };
    let hi = if g.iw as isize - off <= 0 { 0 } else { ((g.iw as isize - off) as usize).div_ceil(g.sw).min(g.ow) };
    (lo.min(hi), hi)
}

/// Where B panels are packed from.
enum Src<'a> {
    /// The input image itself, with bounds handled per run (any stride).
    Image { x: &'a [f32], ranges: &'a [(usize, usize)] },
    /// A zero-padded copy of the input split into sh × sw stride phases (phase (ry, rx) holds
    /// padded rows ry, ry+sh, … and columns rx, rx+sw, …), each `plane` = hq × wq: the columns
    /// of B in one output row are a contiguous run of a phase plane.
    Padded { xpad: &'a [f32], plane: usize, wq: usize },
}

/// Packs rows `p0..p0+kc` × output columns `j0..end` of B from the padded copy (see
/// [`Src::Padded`]): each panel's columns as runs within output rows, each run contiguous in
/// the copy.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pack_padded(info: &KernelInfo, g: &Conv2dGeometry, xpad: &[f32], plane: usize, wq: usize, p0: usize, kc: usize, j0: usize, end: usize, dst: &mut [f32]) {
    pack_padded_w(|j| info.panel_width(j, end), g, xpad, plane, wq, p0, kc, j0, end, dst)
}

/// As [`pack_padded`], with panel widths given by `width(j)` for the panel starting at column j
/// (the A panels of [`conv2d_transposed`] are all MR wide).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pack_padded_w(width: impl Fn(usize) -> usize, g: &Conv2dGeometry, xpad: &[f32], plane: usize, wq: usize, p0: usize, kc: usize, j0: usize, end: usize, dst: &mut [f32]) {
    // Where row p0 + p of B starts in the copy, for the whole block (counters, no divisions
    // per row): channel ci's phases start at ci·sh·sw·plane, and tap (a, b) reads phase
    // (a·dh % sh, b·dw % sw) from row a·dh / sh, column b·dw / sw.
    let ksz = g.kh * g.kw;
    let mut rowoff = [0usize; ROWS_MAX];
    let (mut ci, r) = (p0 / ksz, p0 % ksz);
    let (mut ta, mut tb) = (r / g.kw, r % g.kw);
    for off in rowoff.iter_mut().take(kc) {
        let (ya, xb) = (ta * g.dh, tb * g.dw);
        let phase = (ci * g.sh + ya % g.sh) * g.sw + xb % g.sw;
        *off = phase * plane + (ya / g.sh) * wq + xb / g.sw;
        tb += 1;
        if tb == g.kw {
            tb = 0;
            ta += 1;
            if ta == g.kh {
                ta = 0;
                ci += 1;
            }
        }
    }
    let mut j = j0;
    let mut off = 0;
    while j < end {
        let w = width(j);
        let valid = w.min(end - j);
        let panel = &mut dst[off..off + w * kc];
        // The panel's columns as runs within one output row: (panel column, offset in a phase
        // plane, len).
        let mut segs = [(0usize, 0usize, 0usize); MAX_SEGS];
        let mut ns = 0;
        let mut col = 0;
        while col < valid && ns < MAX_SEGS {
            let pix = j + col;
            let (oy, ox) = (pix / g.ow, pix % g.ow);
            let len = (g.ow - ox).min(valid - col);
            segs[ns] = (col, oy * wq + ox, len);
            ns += 1;
            col += len;
        }
        for (row, &base) in panel.chunks_exact_mut(w).zip(&rowoff[..kc]) {
            for &(c0, o, len) in &segs[..ns] {
                copy_run(&mut row[c0..c0 + len], &xpad[base + o..base + o + len]);
            }
            row[valid..].fill(0.0);
        }
        off += w * kc;
        j += w;
    }
}

/// Largest depth block [`pack_padded`] packs (the kernels' kc is at most this).
const ROWS_MAX: usize = 512;

/// dst = src (equal lengths) as fixed-size moves, so short runs are not a library call each:
/// whole 16-float pieces, the tail as one more piece overlapping the last (8- and 4-float
/// pieces likewise for shorter runs).
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    #[inline(always)]
    fn pieces<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let len = dst.len().min(src.len());
        let mut i = 0;
        while i + N < len {
            dst[i..i + N].copy_from_slice(&src[i..i + N]);
            i += N;
        }
        dst[len - N..len].copy_from_slice(&src[len - N..len]);
    }
    match dst.len() {
        16.. => pieces::<16>(dst, src),
        8..=15 => pieces::<8>(dst, src),
        4..=7 => pieces::<4>(dst, src),
        // Runs of 1-3 (where a panel crosses a row of a small output) as single moves: a
        // variable-length copy_from_slice would be a library call each.
        3 => dst[..3].copy_from_slice(&src[..3]),
        2 => dst[..2].copy_from_slice(&src[..2]),
        1 => dst[0] = src[0],
        _ => {}
    }
}

/// Largest number of row segments one panel can cover (a panel is at most this wide).
const MAX_SEGS: usize = 64;

/// Packs rows `p0..p0+kc` × columns `j0..end` of im2col(x) into B panels (see `gemm::pack_b`).
#[allow(clippy::too_many_arguments)]
fn pack_block(info: &KernelInfo, g: &Conv2dGeometry, x: &[f32], ranges: &[(usize, usize)], p0: usize, kc: usize, j0: usize, end: usize, dst: &mut [f32]) {
    let ksz = g.kh * g.kw;
    let isz = g.ih * g.iw;
    let mut j = j0;
    let mut off = 0;
    while j < end {
        let w = info.panel_width(j, end);
        let valid = w.min(end - j);
        let panel = &mut dst[off..off + w * kc];
        // The panel's columns as runs within one output row: (panel column, oy, ox, len).
        let mut segs = [(0usize, 0usize, 0usize, 0usize); MAX_SEGS];
        let mut ns = 0;
        let mut col = 0;
        while col < valid && ns < MAX_SEGS {
            let pix = j + col;
            let (oy, ox) = (pix / g.ow, pix % g.ow);
            let len = (g.ow - ox).min(valid - col);
            segs[ns] = (col, oy, ox, len);
            ns += 1;
            col += len;
        }
        for p in 0..kc {
            let kk = p0 + p;
            let (ci, r) = (kk / ksz, kk % ksz);
            let (a, b) = (r / g.kw, r % g.kw);
            let (lo_b, hi_b) = ranges[b];
            let xc = &x[ci * isz..(ci + 1) * isz];
            let row = &mut panel[p * w..(p + 1) * w];
            row[valid..].fill(0.0);
            let ioff = (b * g.dw) as isize - g.pw as isize;
            for &(c0, oy, ox0, len) in &segs[..ns] {
                let seg = &mut row[c0..c0 + len];
                let iy = (oy * g.sh + a * g.dh) as isize - g.ph as isize;
                if iy < 0 || iy >= g.ih as isize {
                    seg.fill(0.0);
                    continue;
                }
                let lo = lo_b.clamp(ox0, ox0 + len);
                let hi = hi_b.clamp(lo, ox0 + len);
                seg[..lo - ox0].fill(0.0);
                seg[hi - ox0..].fill(0.0);
                if lo < hi {
                    let xrow = &xc[iy as usize * g.iw..(iy as usize + 1) * g.iw];
                    let start = (lo as isize * g.sw as isize + ioff) as usize;
                    let out = &mut seg[lo - ox0..hi - ox0];
                    if g.sw == 1 {
                        out.copy_from_slice(&xrow[start..start + (hi - lo)]);
                    } else {
                        for (d, s) in out.iter_mut().zip(xrow[start..].iter().step_by(g.sw)) {
                            *d = *s;
                        }
                    }
                }
            }
        }
        off += w * kc;
        j += w;
    }
}

/// Y[m × oh·ow] (row stride oh·ow) = act(W · im2col(X) + biases) for one convolution group, with W
/// the packed [m × c·kh·kw] weights. Uses up to `threads` parts of the calling thread's pool.
/// Every element of the first m·oh·ow of `y` is written (it need not be initialised) before it
/// is read.
///
/// Panics if the buffers are smaller than the geometry needs, a stride or dilation is zero, the
/// packed weights' depth is not c·kh·kw (callers validate shapes first) or `ep.beta` is not 0
/// (Y is written, not accumulated into).
pub fn conv2d_gemm(g: &Conv2dGeometry, x: &[f32], w: &PackedA, y: &mut [MaybeUninit<f32>], ep: &Epilogue<'_>, threads: usize) {
    assert!(g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0, "conv2d_gemm: zero stride or dilation");
    assert!(ep.beta == 0.0, "conv2d_gemm: beta must be 0");
    let info = w.info();
    let (m, k, n) = (w.rows(), g.depth(), g.cols());
    assert_eq!(w.depth(), k, "conv2d_gemm: packed weights have the wrong depth");
    assert!(x.len() >= g.c * g.ih * g.iw && y.len() >= m * n, "conv2d_gemm: buffer too small");
    assert!(info.panel_width(0, info.nr) <= MAX_SEGS && info.kc <= ROWS_MAX);
    if let Some(rb) = ep.row_bias {
        assert!(rb.len() >= m, "conv2d_gemm: row bias too short");
    }
    assert!(ep.col_bias.map_or(true, |cb| cb.len() >= n), "conv2d_gemm: column bias too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for (i, row) in y.chunks_mut(n).take(m).enumerate() {
            let rb = ep.row_bias.map_or(0.0, |b| b[i]);
            for (j, v) in row.iter_mut().enumerate() {
                let mut t = rb + ep.col_bias.map_or(0.0, |b| b[j]);
                if ep.relu && t < 0.0 {
                    t = 0.0;
                }
                v.write(ep.act.eval(t));
            }
        }
        return;
    }
    if ep.col_bias.is_none() {
        with_work(|xpad| {
            let (plane, wq) = padded_copy(g, x, xpad, 0, threads);
            // SAFETY: y holds at least m × n elements (asserted above) and is borrowed for the call.
            unsafe { run(&info, g, &Src::Padded { xpad, plane, wq }, w, YPtr(y.as_mut_ptr().cast::<f32>()), n, ep, threads) };
        });
        return;
    }
    let ranges: Vec<(usize, usize)> = (0..g.kw).map(|b| col_range(g, b)).collect();
    // SAFETY: y holds at least m × n elements (asserted above) and is borrowed for the call.
    unsafe { run(&info, g, &Src::Image { x, ranges: &ranges }, w, YPtr(y.as_mut_ptr().cast::<f32>()), n, ep, threads) };
}

/// Y[m × oh·ow] = act(W · im2col(X) + bias) for one convolution group computed as the
/// transposed product Yᵀ = im2col(X)ᵀ · Wᵀ, for outputs of few pixels (a 7×7 plane fills the
/// kernels' MR-row tiles far better than their NR-wide column panels, see
/// [`crate::gemm::prefer_transposed`]). `wt` is Wᵀ [c·kh·kw × m] packed as B; the pixels' rows
/// of A are packed straight from a zero-padded copy of X, never materialising im2col(X). The
/// bias, when given, is per output channel (`ep.col_bias` of the transposed product) and
/// `ep.row_bias` must be None. Every element of the first m·oh·ow of `y` is written.
///
/// Panics as [`conv2d_gemm`], or if `wt`'s depth is not c·kh·kw.
pub fn conv2d_transposed(g: &Conv2dGeometry, x: &[f32], wt: &crate::gemm::PackedB, y: &mut [MaybeUninit<f32>], ep: &Epilogue<'_>, threads: usize) {
    assert!(g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0, "conv2d_transposed: zero stride or dilation");
    assert!(ep.row_bias.is_none(), "conv2d_transposed: the bias is per column of the transposed product");
    let (k, n, m) = (g.depth(), g.cols(), wt.cols());
    assert_eq!(wt.depth(), k, "conv2d_transposed: packed weights have the wrong depth");
    assert!(x.len() >= g.c * g.ih * g.iw && y.len() >= m * n, "conv2d_transposed: buffer too small");
    with_work(|xpad| {
        let (plane, wq) = padded_copy(g, x, xpad, 0, threads);
        let xpad: &[f32] = xpad;
        COLS_A.with(|cell| {
            let mut fresh = None;
            let mut guard = cell.try_borrow_mut();
            let pa = match guard.as_deref_mut() {
                Ok(pa) => pa,
                Err(_) => fresh.insert(crate::gemm::PackedA::empty()),
            };
            let info = KernelInfo::for_isa(wt.isa());
            let mr = info.mr;
            assert!(mr <= MAX_SEGS && info.kc <= ROWS_MAX);
            pa.refill(wt.isa(), n, k, threads, |p0, kc, block| {
                crate::simd::vectorized(#[inline(always)] || pack_padded_w(|_| mr, g, xpad, plane, wq, p0, kc, 0, n, block))
            });
            crate::gemm::sgemm_into_col_major(n, k, m, crate::gemm::Lhs::Packed(pa), crate::gemm::Rhs::Packed(wt), y, ep, threads);
        });
    });
}

/// Runs `f` with the calling thread's work buffer (the padded copy here, the engine's im2col
/// matrix), a fresh one when it is in use. Its contents are whatever the last user left.
pub fn with_work<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    WORK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Fills `xpad` with a zero-padded copy of the input X [c, ih, iw] split into its sh × sw stride
/// phases: phase (ry, rx) of channel ci holds padded rows ry, ry+sh, … and columns rx, rx+sw, …
/// as a `plane` = hq × wq image at ((ci·sh + ry)·sw + rx)·plane, hq = oh + (kh−1)·dh/sh and
/// wq = ow + (kw−1)·dw/sw. Output pixel (oy, ox) of kernel tap (a, b) then reads phase
/// (a·dh % sh, b·dw % sw) at (oy + a·dh/sh)·wq + ox + b·dw/sw. The copy is followed by
/// (kw−1)·dw/sw + `slack` zeros, so runs that start inside the last plane stay in the buffer.
/// Channels are split over up to `threads` parts of the calling thread's pool. Returns
/// (plane, wq). Every element used is rewritten, so the buffer is only zero-filled when it grows.
pub(crate) fn padded_copy(g: &Conv2dGeometry, x: &[f32], xpad: &mut Vec<f32>, slack: usize, threads: usize) -> (usize, usize) {
    let hq = g.oh + (g.kh - 1) * g.dh / g.sh;
    let wq = g.ow + (g.kw - 1) * g.dw / g.sw;
    let plane = hq * wq;
    let per_ch = g.sh * g.sw * plane;
    let body = g.c * per_ch;
    let len = body + (g.kw - 1) * g.dw / g.sw + slack;
    if xpad.len() < len {
        xpad.resize(len, 0.0);
    }
    xpad[body..len].fill(0.0);
    let fill = |c0: usize, dst: &mut [f32]| {
        crate::simd::vectorized(#[inline(always)] || for (k, xc) in dst.chunks_exact_mut(per_ch).enumerate() {
            let ci = c0 + k;
            for ry in 0..g.sh {
                for r in 0..hq {
                    let iy = (r * g.sh + ry) as isize - g.ph as isize;
                    if iy < 0 || iy >= g.ih as isize {
                        for rx in 0..g.sw {
                            xc[(ry * g.sw + rx) * plane + r * wq..][..wq].fill(0.0);
                        }
                        continue;
                    }
                    let xrow = &x[(ci * g.ih + iy as usize) * g.iw..][..g.iw];
                    for rx in 0..g.sw {
                        // Phase column q holds input column q·sw + rx − pw.
                        let lo = if g.pw > rx { (g.pw - rx).div_ceil(g.sw) } else { 0 }.min(wq);
                        let hi = if g.pw + g.iw > rx { (g.pw + g.iw - rx).div_ceil(g.sw) } else { 0 }.clamp(lo, wq);
                        let dst = &mut xc[(ry * g.sw + rx) * plane + r * wq..][..wq];
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        if lo >= hi {
                            continue;
                        }
                        let start = lo * g.sw + rx - g.pw;
                        if g.sw == 1 {
                            dst[lo..hi].copy_from_slice(&xrow[start..start + (hi - lo)]);
                        } else {
                            // Every sw-th value from `start` (whole chunks, then a last value).
                            let chunks = xrow[start..].chunks_exact(g.sw);
                            let full = chunks.len().min(hi - lo);
                            for (d, c) in dst[lo..lo + full].iter_mut().zip(chunks) {
                                *d = c[0];
                            }
                            for (q, d) in dst[lo + full..hi].iter_mut().enumerate() {
                                *d = xrow[start + (full + q) * g.sw];
                            }
                        }
                    }
                }
            }
        });
    };
    // Whole channels per part, and only when the copy is large enough to pay for the split.
    let parts = if body >= 1 << 16 { threads.clamp(1, g.c) } else { 1 };
    if parts > 1 && per_ch > 0 {
        let per = g.c.div_ceil(parts);
        let items: Vec<(usize, &mut [f32])> = xpad[..body].chunks_mut(per * per_ch).enumerate().map(|(i, c)| (i * per, c)).collect();
        crate::par::for_each(items, |(c0, dst)| fill(c0, dst));
    } else {
        fill(0, &mut xpad[..body]);
    }
    (plane, wq)
}

/// Splits Y [m × n] into parts over the pool and computes each from `src`.
#[allow(clippy::too_many_arguments)]
///
/// # Safety
/// `y` must be valid for writes (and reads after them) of m × n elements, not accessed elsewhere
/// during the call.
unsafe fn run(info: &KernelInfo, g: &Conv2dGeometry, src: &Src<'_>, w: &PackedA, y: YPtr, n: usize, ep: &Epilogue<'_>, threads: usize) {
    let info = *info;
    let (m, k) = (w.rows(), g.depth());
    let parts = crate::gemm::split_parts(&info, m, n, m.saturating_mul(n).saturating_mul(k), 1 << 21, threads);
    let job = |&(i0, i1, j0, j1): &(usize, usize, usize, usize)| {
        // The whole YPtr (Send + Sync) is captured, not its raw pointer field.
        let yp = y;
        BBUF.with(|b| match b.try_borrow_mut() {
            Ok(mut buf) => block(&info, g, src, w, yp, n, ep, i0, i1, j0, j1, &mut buf),
            Err(_) => block(&info, g, src, w, yp, n, ep, i0, i1, j0, j1, &mut AlignedBuf::default()),
        });
    };
    crate::par::for_each(parts.iter().collect(), job);
}

/// Rows `i0..i1` × columns `j0..j1` of Y (i0 a multiple of MR, j0 of NR).
#[allow(clippy::too_many_arguments)]
fn block(
    info: &KernelInfo, g: &Conv2dGeometry, src: &Src<'_>, w: &PackedA, y: YPtr, n: usize,
    ep: &Epilogue<'_>, i0: usize, i1: usize, j0: usize, j1: usize, buf: &mut AlignedBuf,
) {
    let k = g.depth();
    let (mr, nr) = (info.mr, info.nr);
    let mut jc = j0;
    while jc < j1 {
        let nc = NC.min(j1 - jc);
        let mut pc = 0;
        while pc < k {
            let kc = info.kc.min(k - pc);
            let (first, last) = (pc == 0, pc + kc == k);
            let cmul = if first { ep.beta } else { 1.0 };
            buf.reset(info.packed_cols(nc) * kc);
            match *src {
                Src::Image { x, ranges } => pack_block(info, g, x, ranges, pc, kc, jc, jc + nc, buf.as_mut_slice()),
                Src::Padded { xpad, plane, wq } => {
                    crate::simd::vectorized(#[inline(always)] || pack_padded(info, g, xpad, plane, wq, pc, kc, jc, jc + nc, buf.as_mut_slice()))
                }
            }
            let bpanels = buf.as_slice();
            let apanels = w.block(pc, kc, i0);
            let mut j = jc;
            let mut boff = 0;
            while j < jc + nc {
                let pw = info.panel_width(j, jc + nc);
                let cols = nr.min(jc + nc - j);
                let bp = &bpanels[boff..boff + pw * kc];
                let mut i = i0;
                let mut aoff = 0;
                while i < i1 {
                    let rows = mr.min(i1 - i);
                    let ap = &apanels[aoff..aoff + mr * kc];
                    let out = TileOut {
                        // SAFETY: (i, j) lies inside the m×n Y checked in `conv2d_gemm`.
                        c: unsafe { y.0.add(i * n + j) },
                        rsc: n as isize,
                        csc: 1,
                        rows,
                        cols,
                    };
                    let tep = tile_ep(ep, cmul, first, last, i, j);
                    run_kernel(info, kc, ap, bp, pw, &out, &tep);
                    i += mr;
                    aoff += mr * kc;
                }
                if last {
                    // SAFETY: rows i0..i1 × columns j..j+cols lie inside Y and belong to this part.
                    unsafe { ep.act.apply_block(y.0.add(i0 * n + j), i1 - i0, cols, n as isize, 1) };
                }
                boff += pw * kc;
                j += pw;
            }
            pc += kc;
        }
        jc += nc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{available_isas, Isa, MatRef};

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
                                    let xv = x[(ci * g.ih + iy as usize) * g.iw + ix as usize] as f64;
                                    acc += xv * w[((o * g.c + ci) * g.kh + a) * g.kw + b] as f64;
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

    /// (m, c, ih, iw, kh, kw, sh, sw, dh, dw, ph, pw, pad_end_h, pad_end_w)
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize);

    fn geometry(&(_, c, ih, iw, kh, kw, sh, sw, dh, dw, ph, pw, eh, ew): &Case) -> Conv2dGeometry {
        let oh = (ih + ph + eh - (kh - 1) * dh - 1) / sh + 1;
        let ow = (iw + pw + ew - (kw - 1) * dw - 1) / sw + 1;
        Conv2dGeometry { c, ih, iw, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw }
    }

    #[test]
    fn matches_direct_definition() {
        let cases: [Case; 15] = [
            (8, 3, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
            (13, 5, 11, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),
            (16, 3, 20, 23, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3),
            (5, 2, 8, 10, 3, 2, 1, 3, 2, 1, 2, 0, 1, 2),
            (33, 40, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
            (9, 7, 14, 14, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0),
            (4, 1, 3, 3, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2),
            (17, 30, 6, 40, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0),
            (3, 2, 5, 5, 3, 3, 3, 3, 1, 1, 4, 4, 4, 4),
            (6, 3, 9, 8, 3, 3, 1, 1, 2, 1, 2, 0, 1, 2),
            (3, 2, 4, 5, 2, 2, 1, 1, 1, 1, 3, 3, 0, 1),
            (70, 20, 12, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
            (20, 13, 9, 11, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0),
            (41, 300, 5, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0),
            (8, 5, 30, 31, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0),
        ];
        check_cases(&cases, |isa, g, m, x, wv, y, ep, threads| {
            let pa = PackedA::with_isa(isa, m, g.depth(), MatRef::new(wv, g.depth() as isize, 1));
            conv2d_gemm(g, x, &pa, y, &Epilogue { row_bias: ep.col_bias, col_bias: None, ..*ep }, threads);
        });
    }

    /// Runs `conv` (ISA, geometry, output channels, X, W, Y, epilogue with the bias as
    /// `col_bias`, threads) on every case for every ISA, with and without ReLU, on 1 and 2
    /// threads, and compares Y with [`naive`] plus the per-channel bias.
    #[allow(clippy::type_complexity)]
    fn check_cases(cases: &[Case], conv: impl Fn(Isa, &Conv2dGeometry, usize, &[f32], &[f32], &mut [MaybeUninit<f32>], &Epilogue<'_>, usize)) {
        for isa in available_isas() {
            for case in cases {
                let (m, g) = (case.0, geometry(case));
                let x: Vec<f32> = (0..g.c * g.ih * g.iw).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
                let wv: Vec<f32> = (0..m * g.depth()).map(|i| ((i * 5) % 11) as f32 * 0.25 - 1.0).collect();
                let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.5 - 2.0).collect();
                let want = naive(&g, m, &x, &wv);
                for threads in [1, 2] {
                    let _pool = crate::par::enter(crate::par::build_pool(threads));
                    for relu in [false, true] {
                        let mut y = vec![MaybeUninit::new(f32::NAN); m * g.cols() + 3];
                        let ep = Epilogue { col_bias: Some(&bias), relu, ..Epilogue::default() };
                        conv(isa, &g, m, &x, &wv, &mut y, &ep, threads);
                        // SAFETY: every element was initialised (to NaN, then by the kernel).
                        let y: Vec<f32> = y.iter().map(|v| unsafe { v.assume_init() }).collect();
                        for (idx, (&got, &w)) in y.iter().zip(&want).enumerate() {
                            let mut w = w + bias[idx / g.cols()] as f64;
                            if relu && w < 0.0 {
                                w = 0.0;
                            }
                            assert!((got as f64 - w).abs() <= 1e-3 * (1.0 + w.abs()), "{isa:?} {g:?} at {idx}: {got} vs {w}");
                        }
                        assert!(y[m * g.cols()..].iter().all(|v| v.is_nan()), "wrote past Y");
                    }
                }
            }
        }
    }

    #[test]
    fn transposed_matches_direct_definition() {
        // Few-pixel outputs (the form's purpose), partial pixel panels, stride 2, dilation,
        // uneven padding, a depth over several blocks and more channels than one column panel.
        let cases: [Case; 9] = [
            (64, 40, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
            (48, 30, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),
            (33, 20, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
            (5, 2, 8, 10, 3, 2, 1, 3, 2, 1, 2, 0, 1, 2),
            (17, 3, 11, 13, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3),
            (70, 9, 5, 6, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2),
            (3, 2, 4, 5, 2, 2, 1, 1, 1, 1, 3, 3, 0, 1),
            (40, 100, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
            // A result large enough that its transposition is split over two threads.
            (300, 40, 15, 15, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
        ];
        check_cases(&cases, |isa, g, m, x, wv, y, ep, threads| {
            // Wᵀ [depth × m]: W read column-major.
            let wt = crate::gemm::PackedB::with_isa(isa, g.depth(), m, MatRef::new(wv, 1, g.depth() as isize));
            conv2d_transposed(g, x, &wt, y, ep, threads);
        });
    }
}
