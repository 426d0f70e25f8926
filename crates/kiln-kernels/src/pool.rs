//! 2-D max pooling of float32 planes (NCHW, no indices).
//!
//! Separable: for each output row, the element-wise maximum of its window's input rows is
//! written into a row buffer padded with -inf (the identity of max), then each output takes the
//! maximum of its horizontal window in that buffer. NaN inputs are ignored; a window with no
//! valid non-NaN element yields -inf. The common 3×3 / 2×2 stride-2 windows have AVX2 kernels
//! (stride-2 columns split into even and odd lanes with in-register shuffles); every other
//! geometry, and every non-x86 target, uses the portable loops.

use std::mem::MaybeUninit;

use crate::dwconv::DwGeometry;

/// Output rows whose vertical maxima are computed before their horizontal pass, so the reads of
/// a row buffer do not closely follow the stores that wrote it.
const ROW_BLOCK: usize = 4;

/// The larger of `x` and `acc` with `x` ignored when it is NaN (`acc` is never NaN here). This is
/// the operand order of x86 `maxps(x, acc)`.
#[inline(always)]
fn max_keep(x: f32, acc: f32) -> f32 {
    if x > acc {
        x
    } else {
        acc
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

fn best_path() -> Path {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return Path::Avx2;
    }
    Path::Portable
}

/// Max pooling of `planes` planes: x [planes, ih, iw] → y [planes, oh, ow] with the window
/// geometry `g` (kernel, stride, dilation, leading padding; trailing padding and ceil mode are
/// implied by oh/ow). Every element of the first planes·oh·ow of `y` is written (it need not be
/// initialised). Panics if a buffer is smaller than the geometry needs or a stride, dilation or
/// kernel size is zero (callers validate geometry first).
pub fn max_pool2d_f32(g: &DwGeometry, planes: usize, x: &[f32], y: &mut [MaybeUninit<f32>]) {
    max_pool2d_with(g, planes, x, y, best_path());
}

fn max_pool2d_with(g: &DwGeometry, planes: usize, x: &[f32], y: &mut [MaybeUninit<f32>], path: Path) {
    assert!(g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0 && g.kh > 0 && g.kw > 0, "max pool: zero stride, dilation or kernel");
    let (isz, osz) = (g.ih * g.iw, g.oh * g.ow);
    assert!(x.len() >= planes * isz && y.len() >= planes * osz, "max pool: buffer too small");
    if osz == 0 || planes == 0 {
        return;
    }
    let y = &mut y[..planes * osz];
    let plan = Plan::new(g);
    let run = |first: usize, part: &mut [MaybeUninit<f32>]| {
        let mut rows = vec![f32::NEG_INFINITY; ROW_BLOCK * plan.rowlen];
        let mut phases = Vec::new();
        let x = &x[first * isz..];
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 was detected for this path; x holds part.len() / osz planes (checked
            // above) and `rows` is the plan's row buffer size.
            Path::Avx2 => unsafe { x86::planes(&plan, x, part, &mut rows, &mut phases) },
            Path::Portable => crate::simd::vectorized(
                #[inline(always)]
                || {
                    for (p, yp) in part.chunks_exact_mut(osz).enumerate() {
                        plane_portable(&plan, &x[p * isz..][..isz], yp, &mut rows, &mut phases);
                    }
                },
            ),
        }
    };
    let threads = crate::par::threads();
    if threads <= 1 || planes * osz < 1 << 14 || planes == 1 {
        run(0, y);
        return;
    }
    // A few parts per thread, so a thread slowed by other work does not hold up the rest.
    let per = planes.div_ceil(threads * 4).max(1);
    let items: Vec<(usize, &mut [MaybeUninit<f32>])> = y.chunks_mut(per * osz).enumerate().map(|(i, c)| (i * per, c)).collect();
    crate::par::for_each(items, |(first, part)| run(first, part));
}

/// What every plane of one call shares.
struct Plan<'a> {
    g: &'a DwGeometry,
    /// Length of one padded row buffer: input column c sits at pw + c, everything else is -inf.
    /// Long enough for every window, for the vector kernels' reads (up to 2·max(ow, 8) + 2) and
    /// for a whole number of stride phases.
    rowlen: usize,
    /// Per output row: the first input row of its window inside the input, and how many of the
    /// window's rows (dh apart) are inside.
    taps: Vec<(usize, usize)>,
}

impl<'a> Plan<'a> {
    fn new(g: &'a DwGeometry) -> Plan<'a> {
        let windows = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1;
        let len = windows.max(g.pw + g.iw).max(2 * g.ow.max(8) + 2);
        let taps = (0..g.oh)
            .map(|i| {
                let inside = |t: &usize| (i * g.sh + t * g.dh).checked_sub(g.ph).is_some_and(|r| r < g.ih);
                match (0..g.kh).find(inside) {
                    Some(t0) => (i * g.sh + t0 * g.dh - g.ph, (t0..g.kh).take_while(inside).count()),
                    None => (0, 0),
                }
            })
            .collect();
        Plan { g, rowlen: len.div_ceil(g.sw) * g.sw, taps }
    }
}

/// One plane with the portable loops.
#[inline(always)]
fn plane_portable(plan: &Plan, xp: &[f32], yp: &mut [MaybeUninit<f32>], rows: &mut [f32], phases: &mut Vec<f32>) {
    let g = plan.g;
    let (iw, ow) = (g.iw, g.ow);
    for (i, yr) in yp.chunks_exact_mut(ow).enumerate() {
        let buf = &mut rows[..plan.rowlen];
        let out = &mut buf[g.pw..g.pw + iw];
        let (r0, n) = plan.taps[i];
        out.fill(f32::NEG_INFINITY);
        for t in 0..n {
            let r = r0 + t * g.dh;
            for (o, &v) in out.iter_mut().zip(&xp[r * iw..(r + 1) * iw]) {
                *o = max_keep(v, *o);
            }
        }
        hmax(g, buf, yr, phases);
    }
}

/// One output row from its padded row buffer `v` (no NaN in it), for any horizontal geometry.
#[inline(always)]
fn hmax(g: &DwGeometry, v: &[f32], yr: &mut [MaybeUninit<f32>], phases: &mut Vec<f32>) {
    let (ow, kw, sw, dw) = (g.ow, g.kw, g.sw, g.dw);
    // Phase r, index q of `src` holds padded column q·sw + r, so window tap t of output column
    // j (padded column j·sw + t·dw) is phase (t·dw) % sw at index j + (t·dw) / sw: one
    // contiguous run per tap.
    let qlen = v.len() / sw;
    let src: &[f32] = if sw == 1 {
        v
    } else {
        phases.resize(qlen * sw, 0.0);
        if sw == 2 {
            let (ev, od) = phases.split_at_mut(qlen);
            for ((pair, e), o) in v.chunks_exact(2).zip(ev.iter_mut()).zip(od.iter_mut()) {
                *e = pair[0];
                *o = pair[1];
            }
        } else {
            for (q, chunk) in v.chunks_exact(sw).enumerate() {
                for (r, &val) in chunk.iter().enumerate() {
                    phases[r * qlen + q] = val;
                }
            }
        }
        phases
    };
    let run = |t: usize| &src[(t * dw % sw) * qlen + t * dw / sw..][..ow];
    for (y, &s) in yr.iter_mut().zip(run(0)) {
        y.write(s);
    }
    // SAFETY: every element of yr was written just above.
    let yr = unsafe { &mut *(yr as *mut [MaybeUninit<f32>] as *mut [f32]) };
    for t in 1..kw {
        for (y, &s) in yr.iter_mut().zip(run(t)) {
            *y = max_keep(s, *y);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{Plan, ROW_BLOCK};

    /// The planes of `y` (whole planes of oh·ow) from the planes at the start of `x`.
    ///
    /// # Safety
    /// AVX2 must be available; x must hold y.len() / (oh·ow) planes and `rows` ROW_BLOCK row
    /// buffers of plan.rowlen elements, all -inf outside columns pw..pw + iw.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn planes(plan: &Plan, x: &[f32], y: &mut [MaybeUninit<f32>], rows: &mut [f32], phases: &mut Vec<f32>) {
        let g = plan.g;
        let (iw, oh, ow, rl) = (g.iw, g.oh, g.ow, plan.rowlen);
        debug_assert!(rows.len() >= ROW_BLOCK * rl && x.len() >= y.len() / (oh * ow) * g.ih * iw);
        let fast_s2 = g.sw == 2 && g.dw == 1 && (g.kw == 2 || g.kw == 3);
        let rp = rows.as_mut_ptr();
        for (xp, yp) in x.chunks_exact(g.ih * iw).zip(y.chunks_exact_mut(oh * ow)) {
            let (xp, yo) = (xp.as_ptr(), yp.as_mut_ptr() as *mut f32);
            let mut i0 = 0;
            while i0 < oh {
                let nr = ROW_BLOCK.min(oh - i0);
                // Vertical maxima of nr output rows first, then their horizontal passes.
                for r in 0..nr {
                    let (r0, n) = plan.taps[i0 + r];
                    let out = rp.add(r * rl + g.pw);
                    let row = |t: usize| xp.add((r0 + t * g.dh) * iw);
                    match n {
                        0 => std::slice::from_raw_parts_mut(out, iw).fill(f32::NEG_INFINITY),
                        1 => vmax([row(0)], out, iw, false),
                        2 => vmax([row(0), row(1)], out, iw, false),
                        _ => {
                            vmax([row(0), row(1), row(2)], out, iw, false);
                            for t in 3..n {
                                vmax([row(t)], out, iw, true);
                            }
                        }
                    }
                }
                for r in 0..nr {
                    let v = rp.add(r * rl);
                    let yr = yo.add((i0 + r) * ow);
                    if fast_s2 {
                        if g.kw == 3 {
                            hmax_s2::<true>(v, yr, ow)
                        } else {
                            hmax_s2::<false>(v, yr, ow)
                        }
                    } else {
                        let yr = std::slice::from_raw_parts_mut(yr as *mut MaybeUninit<f32>, ow);
                        super::hmax(g, std::slice::from_raw_parts(v, rl), yr, phases);
                    }
                }
                i0 += nr;
            }
        }
    }

    /// out[c] = max over the rows (and over out[c] when `accumulate`) for c < n, NaN ignored:
    /// the accumulator starts at -inf and is always the second operand of maxps, which returns
    /// the second operand when either is NaN.
    ///
    /// # Safety
    /// AVX2 must be available; each row pointer must be valid for n reads and `out` for n reads
    /// and writes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn vmax<const N: usize>(rows: [*const f32; N], out: *mut f32, n: usize, accumulate: bool) {
        let block = |c: usize| {
            let mut acc = if accumulate { _mm256_loadu_ps(out.add(c)) } else { _mm256_set1_ps(f32::NEG_INFINITY) };
            for r in rows {
                acc = _mm256_max_ps(_mm256_loadu_ps(r.add(c)), acc);
            }
            _mm256_storeu_ps(out.add(c), acc);
        };
        if n < 8 {
            for c in 0..n {
                let mut acc = if accumulate { *out.add(c) } else { f32::NEG_INFINITY };
                for r in rows {
                    acc = super::max_keep(*r.add(c), acc);
                }
                *out.add(c) = acc;
            }
            return;
        }
        let mut c = 0;
        while c + 8 <= n {
            block(c);
            c += 8;
        }
        if c < n {
            // The last, overlapping block: max is idempotent, so recomputing columns is harmless.
            block(n - 8);
        }
    }

    /// y[j] = max(v[2j], v[2j+1]) (and v[2j+2] when K3) for j < ow.
    ///
    /// # Safety
    /// AVX2 must be available; v must be valid for 2·max(ow, 8) + 2 reads and y for ow writes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hmax_s2<const K3: bool>(v: *const f32, y: *mut f32, ow: usize) {
        // Eight outputs from v[2j .. 2j+17]. The in-lane shuffles give the evens and odds in the
        // lane order [0 2 8 10 | 4 6 12 14]; one 64-bit permute restores the order.
        let block = |j: usize| {
            let p = v.add(2 * j);
            let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
            let mut m = _mm256_max_ps(_mm256_shuffle_ps::<0x88>(a, b), _mm256_shuffle_ps::<0xDD>(a, b));
            if K3 {
                let (a2, b2) = (_mm256_loadu_ps(p.add(2)), _mm256_loadu_ps(p.add(10)));
                m = _mm256_max_ps(m, _mm256_shuffle_ps::<0x88>(a2, b2));
            }
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(m)))
        };
        if ow < 8 {
            let mut tmp = [0f32; 8];
            _mm256_storeu_ps(tmp.as_mut_ptr(), block(0));
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), y, ow);
            return;
        }
        let mut j = 0;
        while j + 8 <= ow {
            _mm256_storeu_ps(y.add(j), block(j));
            j += 8;
        }
        if j < ow {
            _mm256_storeu_ps(y.add(ow - 8), block(ow - 8));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Vec<Path> {
        let mut v = vec![Path::Portable];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            v.push(Path::Avx2);
        }
        v
    }

    /// Output size along one axis for pads (begin, end) and ceil mode, as ONNX defines it (the
    /// last window must start inside the input or the leading padding).
    fn out_dim(n: usize, k: usize, s: usize, d: usize, pb: usize, pe: usize, ceil: bool) -> usize {
        let span = n + pb + pe - ((k - 1) * d + 1);
        let mut o = if ceil { span.div_ceil(s) } else { span / s } + 1;
        if ceil && (o - 1) * s >= n + pb {
            o -= 1;
        }
        o
    }

    /// Max over the window positions inside the input, NaN skipped, -inf if nothing is left.
    fn reference(g: &DwGeometry, planes: usize, x: &[f32]) -> Vec<f32> {
        let mut y = Vec::new();
        for p in 0..planes {
            for i in 0..g.oh {
                for j in 0..g.ow {
                    let mut best = f32::NEG_INFINITY;
                    for a in 0..g.kh {
                        for b in 0..g.kw {
                            let r = (i * g.sh + a * g.dh) as isize - g.ph as isize;
                            let c = (j * g.sw + b * g.dw) as isize - g.pw as isize;
                            if r < 0 || c < 0 || r as usize >= g.ih || c as usize >= g.iw {
                                continue;
                            }
                            let v = x[(p * g.ih + r as usize) * g.iw + c as usize];
                            if !v.is_nan() && v > best {
                                best = v;
                            }
                        }
                    }
                    y.push(best);
                }
            }
        }
        y
    }

    fn check(ih: usize, iw: usize, k: [usize; 2], s: [usize; 2], d: [usize; 2], pads: [usize; 4], ceil: bool, nan_every: usize) {
        let oh = out_dim(ih, k[0], s[0], d[0], pads[0], pads[2], ceil);
        let ow = out_dim(iw, k[1], s[1], d[1], pads[1], pads[3], ceil);
        let g = DwGeometry { ih, iw, oh, ow, kh: k[0], kw: k[1], sh: s[0], sw: s[1], dh: d[0], dw: d[1], ph: pads[0], pw: pads[1] };
        let planes = 3;
        let mut seed = 0x2545_f491u32 ^ (ih * 131 + iw) as u32;
        let x: Vec<f32> = (0..planes * ih * iw)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                if nan_every > 0 && (seed as usize / 7) % nan_every == 0 && i % 5 != 0 {
                    f32::NAN
                } else {
                    (seed % 2001) as f32 / 10.0 - 100.0
                }
            })
            .collect();
        let want = reference(&g, planes, &x);
        for path in paths() {
            let mut y = vec![MaybeUninit::new(f32::NAN); planes * oh * ow + 3];
            max_pool2d_with(&g, planes, &x, &mut y, path);
            for (n, (got, want)) in y.iter().zip(&want).enumerate() {
                // SAFETY: the buffer was initialised (to NaN) above.
                let got = unsafe { got.assume_init() };
                assert!(
                    got == *want,
                    "{path:?} {ih}x{iw} k{k:?} s{s:?} d{d:?} pads{pads:?} ceil {ceil} nan 1/{nan_every}: y[{n}] = {got}, want {want}"
                );
            }
            // SAFETY: as above.
            assert!(y[planes * oh * ow..].iter().all(|v| unsafe { v.assume_init() }.is_nan()), "wrote past the output");
        }
    }

    #[test]
    fn network_shapes() {
        for nan in [0, 3] {
            check(111, 111, [3, 3], [2, 2], [1, 1], [0; 4], true, nan);
            check(55, 55, [3, 3], [2, 2], [1, 1], [0; 4], true, nan);
            check(27, 27, [3, 3], [2, 2], [1, 1], [0; 4], true, nan);
            check(112, 112, [3, 3], [2, 2], [1, 1], [1; 4], false, nan);
            check(112, 112, [2, 2], [2, 2], [1, 1], [0; 4], false, nan);
        }
    }

    #[test]
    fn stride2_widths_and_padding() {
        // Every output width around the vector width, odd and even inputs, both kernels, with
        // and without padding and ceil mode.
        for iw in 1..=40 {
            for (k, pads, ceil) in [
                (3, [0, 0, 0, 0], true),
                (3, [0, 0, 0, 0], false),
                (3, [1, 1, 1, 1], false),
                (3, [1, 1, 1, 1], true),
                (2, [0, 0, 0, 0], false),
                (2, [0, 0, 0, 0], true),
                (2, [1, 1, 1, 1], false),
            ] {
                if iw + pads[1] + pads[3] < k {
                    continue;
                }
                check(7, iw, [3, k], [2, 2], [1, 1], pads, ceil, 0);
                check(5, iw, [k, k], [2, 2], [1, 1], pads, ceil, 4);
            }
        }
    }

    #[test]
    fn general_geometries() {
        // (h, w, kernel, stride, dilation, pads [t, l, b, r], ceil)
        let cases: [(usize, usize, [usize; 2], [usize; 2], [usize; 2], [usize; 4], bool); 13] = [
            (13, 13, [3, 3], [2, 2], [1, 1], [0, 0, 0, 0], true),
            (12, 17, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], false),
            (9, 10, [2, 3], [1, 1], [1, 1], [0, 1, 1, 0], false),
            (10, 23, [3, 2], [3, 3], [1, 2], [1, 2, 2, 1], true),
            (7, 8, [3, 3], [1, 2], [2, 2], [2, 2, 2, 2], false),
            (5, 5, [5, 5], [1, 1], [1, 1], [0, 0, 0, 0], false),
            (6, 4, [2, 2], [2, 4], [1, 1], [1, 3, 1, 3], true),
            (1, 1, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], false),
            (1, 1, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], false),
            (1, 1, [2, 2], [2, 2], [1, 1], [0, 0, 1, 1], true),
            (20, 33, [7, 5], [3, 2], [1, 1], [3, 2, 3, 2], true),
            (19, 21, [3, 3], [2, 2], [2, 1], [0, 0, 0, 0], true),
            (19, 21, [4, 4], [1, 1], [1, 1], [1, 2, 2, 1], false),
        ];
        for (h, w, k, s, d, pads, ceil) in cases {
            for nan in [0, 2, 5] {
                check(h, w, k, s, d, pads, ceil, nan);
            }
        }
    }

    #[test]
    fn all_nan_window_is_neg_inf() {
        let g = DwGeometry { ih: 4, iw: 20, oh: 2, ow: 10, kh: 2, kw: 2, sh: 2, sw: 2, dh: 1, dw: 1, ph: 0, pw: 0 };
        let x = vec![f32::NAN; 80];
        for path in paths() {
            let mut y = vec![MaybeUninit::new(0.0); 20];
            max_pool2d_with(&g, 1, &x, &mut y, path);
            // SAFETY: initialised above.
            assert!(y.iter().all(|v| unsafe { v.assume_init() } == f32::NEG_INFINITY), "{path:?}");
        }
    }
}
