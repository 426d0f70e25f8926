//! Packed single-precision GEMM: BLIS-style blocking, operand packing (including packing a constant
//! operand once, ahead of time), register-blocked micro-kernels chosen at run time per ISA, a fused
//! epilogue (alpha, beta, row/column bias, ReLU) and splitting of C across threads.

mod generic;
mod gemv;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
pub(crate) use x86::transpose8_regs;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm32;

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;
use crate::act::{Activation, Gelu};

/// Which micro-kernel family computes the tiles.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Isa {
    Generic,
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    Avx2,
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    Avx512,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

/// Tile and block sizes of one micro-kernel family.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct KernelInfo {
    pub isa: Isa,
    /// Rows of C per tile (rows of a packed A panel).
    pub mr: usize,
    /// Columns of C per full tile (columns of a packed B panel).
    pub nr: usize,
    /// Vector length: the width of a narrowed last B panel is a multiple of it.
    pub vl: usize,
    /// Depth of one packed block.
    pub kc: usize,
    /// Rows of A packed per block.
    pub mc: usize,
    /// Columns of B packed per block.
    pub nc: usize,
}

impl KernelInfo {
    pub(crate) fn for_isa(isa: Isa) -> KernelInfo {
        match isa {
            Isa::Generic => KernelInfo { isa, mr: generic::MR, nr: generic::NR, vl: generic::NR, kc: 256, mc: 128, nc: 1024 },
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx2 => KernelInfo { isa, mr: x86::MR_AVX2, nr: 16, vl: 8, kc: 256, mc: 144, nc: 2048 },
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx512 => KernelInfo { isa, mr: x86::MR_AVX512, nr: 32, vl: 16, kc: 256, mc: 192, nc: 2048 },
            // Depth blocks of 512 (the most convgemm's row table takes): half the tile calls and
            // C reloads of 256 (BERT 0.97x, ResNet-18 0.95x the run time in V8).
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => KernelInfo { isa, mr: wasm32::MR, nr: wasm32::NR, vl: wasm32::VL, kc: 512, mc: 128, nc: 512 },
        }
    }

    /// Width of the packed B panel starting at column `j` when columns end at `end`.
    pub(crate) fn panel_width(&self, j: usize, end: usize) -> usize {
        let rem = end - j;
        if rem >= self.nr {
            self.nr
        } else {
            rem.div_ceil(self.vl) * self.vl
        }
    }

    /// Total packed width of columns `0..n` (full panels plus a narrowed last one).
    pub(crate) fn packed_cols(&self, n: usize) -> usize {
        let full = n / self.nr * self.nr;
        if full == n {
            n
        } else {
            full + self.panel_width(full, n)
        }
    }
}

/// The ISAs this machine can run, best first.
pub fn available_isas() -> Vec<Isa> {
    let mut v = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        // KILN_NO_AVX512 (any value) keeps the AVX2 kernels on an AVX-512 machine.
        if std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("KILN_NO_AVX512").is_none() {
            v.push(Isa::Avx512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            v.push(Isa::Avx2);
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    v.push(Isa::Simd128);
    v.push(Isa::Generic);
    v
}

/// The micro-kernel family used by [`sgemm_ex`] and the packing constructors.
pub fn best_isa() -> Isa {
    static BEST: OnceLock<Isa> = OnceLock::new();
    *BEST.get_or_init(|| available_isas()[0])
}

/// A buffer of f32 whose working region starts on a 64-byte boundary.
#[derive(Clone, Debug, Default)]
pub(crate) struct AlignedBuf {
    data: Vec<f32>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` usable elements, all written by `fill` (which must write every element
    /// of the slice it is given) without being zeroed first: packed weights are as large as the
    /// weights themselves, and zeroing them first would double the writes of loading a model.
    fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> AlignedBuf {
        let total = len + 16;
        let mut data: Vec<f32> = Vec::with_capacity(total);
        let spare = &mut data.spare_capacity_mut()[..total];
        let off = (64 - spare.as_ptr() as usize % 64) % 64 / 4;
        let (head, rest) = spare.split_at_mut(off);
        let (body, tail) = rest.split_at_mut(len);
        head.iter_mut().chain(tail.iter_mut()).for_each(|v| {
            v.write(0.0);
        });
        fill(body);
        // SAFETY: the head and tail were written above and `fill` writes every element of the
        // body (the packing routines write each panel element, padding included).
        unsafe { data.set_len(total) };
        AlignedBuf { data, off, len }
    }
    /// Resizes to `len` usable elements (contents unspecified, but initialised).
    pub(crate) fn reset(&mut self, len: usize) {
        if self.data.len() < len + 16 {
            self.data = vec![0.0; len + 16];
        }
        let addr = self.data.as_ptr() as usize;
        self.off = (64 - addr % 64) % 64 / 4;
        self.len = len;
    }
    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.data[self.off..self.off + self.len]
    }
    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[self.off..self.off + self.len]
    }
    /// The working region as a destination for the packing routines.
    fn as_uninit_mut(&mut self) -> &mut [MaybeUninit<f32>] {
        let s = self.as_mut_slice();
        // SAFETY: MaybeUninit<f32> has f32's layout; the slice is only ever written with
        // initialised values through this view, so it stays initialised.
        unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<MaybeUninit<f32>>(), s.len()) }
    }
}

/// A strided matrix view: element (i, j) at `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: isize,
    pub cs: isize,
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], rs: isize, cs: isize) -> MatRef<'a> {
        MatRef { data, rs, cs }
    }
    /// Panics unless every element of a rows×cols view lies inside `data` (non-negative strides).
    fn check(&self, rows: usize, cols: usize, what: &str) {
        check_view(self.data.len(), self.rs, self.cs, rows, cols, what);
    }
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[(i as isize * self.rs + j as isize * self.cs) as usize]
    }
}

/// Panics unless every element of a rows×cols view with strides `rs`, `cs` lies inside a buffer
/// of `len` elements (non-negative strides).
fn check_view(len: usize, rs: isize, cs: isize, rows: usize, cols: usize, what: &str) {
    assert!(rs >= 0 && cs >= 0, "{what}: negative strides are not supported here");
    if rows > 0 && cols > 0 {
        let last = (rows - 1) as isize * rs + (cols - 1) as isize * cs;
        assert!((last as usize) < len, "{what}: {rows}x{cols} view exceeds its buffer");
    }
}

/// The left operand A[m×k] packed once into the micro-kernel's panel layout.
#[derive(Clone, Debug)]
pub struct PackedA {
    info: KernelInfo,
    m: usize,
    k: usize,
    mpad: usize,
    buf: AlignedBuf,
}

impl PackedA {
    /// Packs A[m×k] (element (i, p) at `data[i * rs + p * cs]`) for [`best_isa`].
    pub fn new(m: usize, k: usize, a: MatRef<'_>) -> PackedA {
        PackedA::with_isa(best_isa(), m, k, a)
    }

    pub fn with_isa(isa: Isa, m: usize, k: usize, a: MatRef<'_>) -> PackedA {
        a.check(m, k, "PackedA");
        let info = KernelInfo::for_isa(isa);
        let mpad = m.div_ceil(info.mr) * info.mr;
        let buf = AlignedBuf::filled(mpad * k, |dst| {
            let mut pc = 0;
            while pc < k {
                let kc = info.kc.min(k - pc);
                pack_a(&info, &a, 0, m, pc, kc, &mut dst[pc * mpad..pc * mpad + mpad * kc]);
                pc += kc;
            }
        });
        PackedA { info, m, k, mpad, buf }
    }

    /// An empty operand (0×0) whose buffer [`PackedA::refill`] reuses.
    pub fn empty() -> PackedA {
        PackedA { info: KernelInfo::for_isa(best_isa()), m: 0, k: 0, mpad: 0, buf: AlignedBuf::default() }
    }

    /// Re-packs this operand in place as an m×k A for the kernels of `isa`, reusing its buffer: `fill(p0,
    /// kc, block)` writes depth block p0..p0+kc, MR-row panels of `kc` steps each (element
    /// (p, i) of panel q at `block[q·MR·kc + p·MR + i]`), zeros in rows past m; it must write
    /// every element of the block. Blocks are filled on up to `threads` threads of the pool.
    pub fn refill(&mut self, isa: Isa, m: usize, k: usize, threads: usize, fill: impl Fn(usize, usize, &mut [f32]) + Sync) {
        let info = KernelInfo::for_isa(isa);
        let mpad = m.div_ceil(info.mr) * info.mr;
        self.buf.reset(mpad * k);
        *self = PackedA { info, m, k, mpad, buf: std::mem::take(&mut self.buf) };
        let blocks: Vec<(usize, &mut [f32])> = self.buf.as_mut_slice().chunks_mut((mpad * info.kc).max(1)).enumerate().map(|(b, d)| (b * info.kc, d)).collect();
        if threads > 1 && blocks.len() > 1 {
            crate::par::for_each(blocks, |(p0, d)| fill(p0, info.kc.min(k - p0), d));
        } else {
            blocks.into_iter().for_each(|(p0, d)| fill(p0, info.kc.min(k - p0), d));
        }
    }

    pub fn rows(&self) -> usize {
        self.m
    }
    pub(crate) fn info(&self) -> KernelInfo {
        self.info
    }
    pub fn depth(&self) -> usize {
        self.k
    }
    /// The packed panels of k-block `pc` (depth `kc`), starting at row `i` (a multiple of MR).
    pub(crate) fn block(&self, pc: usize, kc: usize, i: usize) -> &[f32] {
        let base = pc * self.mpad;
        &self.buf.as_slice()[base + i * kc..base + self.mpad * kc]
    }
}

/// The right operand B[k×n] packed once into the micro-kernel's panel layout.
#[derive(Clone, Debug)]
pub struct PackedB {
    info: KernelInfo,
    k: usize,
    n: usize,
    npad: usize,
    buf: AlignedBuf,
}

impl PackedB {
    /// Packs B[k×n] (element (p, j) at `data[p * rs + j * cs]`) for [`best_isa`].
    pub fn new(k: usize, n: usize, b: MatRef<'_>) -> PackedB {
        PackedB::with_isa(best_isa(), k, n, b)
    }

    pub fn with_isa(isa: Isa, k: usize, n: usize, b: MatRef<'_>) -> PackedB {
        b.check(k, n, "PackedB");
        let info = KernelInfo::for_isa(isa);
        let npad = info.packed_cols(n);
        let buf = AlignedBuf::filled(npad * k, |dst| {
            let mut pc = 0;
            while pc < k {
                let kc = info.kc.min(k - pc);
                pack_b(&info, &b, pc, kc, 0, n, &mut dst[pc * npad..pc * npad + npad * kc]);
                pc += kc;
            }
        });
        PackedB { info, k, n, npad, buf }
    }

    pub fn depth(&self) -> usize {
        self.k
    }
    pub fn cols(&self) -> usize {
        self.n
    }
    /// The kernel family the panels are laid out for.
    pub fn isa(&self) -> Isa {
        self.info.isa
    }
    /// The packed panels of k-block `pc` (depth `kc`), starting at column `j` (a multiple of NR).
    fn block(&self, pc: usize, kc: usize, j: usize) -> &[f32] {
        let base = pc * self.npad;
        &self.buf.as_slice()[base + j * kc..base + self.npad * kc]
    }
}

/// Left operand of [`sgemm_ex`].
#[derive(Clone, Copy, Debug)]
pub enum Lhs<'a> {
    Strided(MatRef<'a>),
    Packed(&'a PackedA),
}

/// Right operand of [`sgemm_ex`].
#[derive(Clone, Copy, Debug)]
pub enum Rhs<'a> {
    Strided(MatRef<'a>),
    Packed(&'a PackedB),
}

/// What is applied to each element of the product before it is stored:
/// `C = gelu(act(alpha·A·B + beta·C + row_bias[i] + col_bias[j]))`.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    pub alpha: f32,
    /// 0 means C is written without being read.
    pub beta: f32,
    pub row_bias: Option<&'a [f32]>,
    pub col_bias: Option<&'a [f32]>,
    pub relu: bool,
    /// Applied after everything above (on each finished tile).
    pub act: Activation,
    /// GELU applied last, by the sgemm entry points ([`sgemm_ex`], [`sgemm_new`]).
    pub gelu: Option<Gelu>,
}

impl Epilogue<'_> {
    /// Applies the activations to a finished `rows × cols` block of C at `c`.
    ///
    /// # Safety
    /// As [`Activation::apply_block`]: every element of the block valid and not aliased.
    unsafe fn finish_block(&self, c: *mut f32, rows: usize, cols: usize, rsc: isize, csc: isize) {
        // SAFETY: forwarded from the caller.
        unsafe {
            self.act.apply_block(c, rows, cols, rsc, csc);
            if let Some(g) = self.gelu {
                g.apply_block(c, rows, cols, rsc, csc);
            }
        }
    }
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Epilogue { alpha: 1.0, beta: 0.0, row_bias: None, col_bias: None, relu: false, act: Activation::Identity, gelu: None }
    }
}

/// Per-tile epilogue as the micro-kernels see it.
pub(crate) struct TileEp {
    pub alpha: f32,
    /// Multiplier of the current C (0: C is not read).
    pub cmul: f32,
    pub row_bias: *const f32,
    pub col_bias: *const f32,
    pub relu: bool,
    /// Lines (16 floats each) from `prefetch` on that the kernel brings towards L2 while its
    /// depth loop runs (0: none). Prefetching never faults, so the pointer need not be valid.
    pub prefetch: *const f32,
    pub prefetch_lines: usize,
}

/// Destination tile of C.
pub(crate) struct TileOut {
    pub c: *mut f32,
    pub rsc: isize,
    pub csc: isize,
    pub rows: usize,
    pub cols: usize,
}

/// Stores a computed tile (`tmp`, row stride `ts`) through the epilogue, element by element.
///
/// # Safety
/// `out` must describe `rows × cols` writable elements of C; the bias pointers, when not null,
/// must be readable for `rows` (row bias) and `cols` (column bias) elements.
pub(crate) unsafe fn store_tile_scalar(tmp: &[f32], ts: usize, out: &TileOut, ep: &TileEp) {
    for i in 0..out.rows {
        let rb = if ep.row_bias.is_null() { 0.0 } else { *ep.row_bias.add(i) };
        for j in 0..out.cols {
            let p = out.c.offset(i as isize * out.rsc + j as isize * out.csc);
            let mut x = tmp[i * ts + j] * ep.alpha;
            if ep.cmul != 0.0 {
                x += ep.cmul * *p;
            }
            x += rb;
            if !ep.col_bias.is_null() {
                x += *ep.col_bias.add(j);
            }
            if ep.relu && x < 0.0 {
                x = 0.0;
            }
            *p = x;
        }
    }
}

/// Packs rows `i0..i0+rows` × depth `p0..p0+kc` of A into MR-row panels (zero-padded rows),
/// writing every element of the first `rows.div_ceil(MR)` panels of `dst`.
fn pack_a(info: &KernelInfo, a: &MatRef<'_>, i0: usize, rows: usize, p0: usize, kc: usize, dst: &mut [MaybeUninit<f32>]) {
    let mr = info.mr;
    for (ip, panel) in dst.chunks_mut(mr * kc).enumerate().take(rows.div_ceil(mr)) {
        let r0 = i0 + ip * mr;
        let valid = mr.min(i0 + rows - r0);
        if a.cs == 1 {
            transpose_into(&a.data[r0 * a.rs as usize + p0..], a.rs as usize, valid, kc, panel, mr);
        } else if a.rs == 1 {
            for p in 0..kc {
                let start = ((p0 + p) as isize * a.cs) as usize + r0;
                let (d, s) = (&mut panel[p * mr..p * mr + valid], &a.data[start..start + valid]);
                // Whole panel rows of the x86 kernels as fixed-size moves (not a memcpy call).
                match valid {
                    8 => copy_n::<8>(d, s),
                    6 => copy_n::<6>(d, s),
                    _ => copy_into(d, s),
                }
            }
        } else {
            for p in 0..kc {
                for i in 0..valid {
                    panel[p * mr + i].write(a.at(r0 + i, p0 + p));
                }
            }
        }
        if valid < mr {
            for p in 0..kc {
                zero_into(&mut panel[p * mr + valid..(p + 1) * mr]);
            }
        }
    }
}

/// Packs depth `p0..p0+kc` × columns `j0..end` of B into panels of width NR (the last one
/// narrowed to a multiple of the vector length, zero-padded), writing every element of those
/// panels in `dst`.
fn pack_b(info: &KernelInfo, b: &MatRef<'_>, p0: usize, kc: usize, j0: usize, end: usize, dst: &mut [MaybeUninit<f32>]) {
    let mut j = j0;
    let mut off = 0;
    while j < end {
        let w = info.panel_width(j, end);
        let valid = w.min(end - j);
        let panel = &mut dst[off..off + w * kc];
        if b.cs == 1 {
            for p in 0..kc {
                let start = ((p0 + p) as isize * b.rs) as usize + j;
                let row = &mut panel[p * w..(p + 1) * w];
                copy_into(&mut row[..valid], &b.data[start..start + valid]);
                zero_into(&mut row[valid..]);
            }
        } else {
            if valid < w {
                zero_into(panel);
            }
            if b.rs == 1 {
                // Column-major B (a transposed weight).
                transpose_into(&b.data[j * b.cs as usize + p0..], b.cs as usize, valid, kc, panel, w);
            } else {
                for p in 0..kc {
                    for jj in 0..valid {
                        panel[p * w + jj].write(b.at(p0 + p, j + jj));
                    }
                }
            }
        }
        off += w * kc;
        j += w;
    }
}

fn copy_into(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        d.write(v);
    }
}

#[inline(always)]
fn copy_n<const N: usize>(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (<&mut [MaybeUninit<f32>; N]>::try_from(dst), <&[f32; N]>::try_from(src)) {
        for (d, &v) in d.iter_mut().zip(s) {
            d.write(v);
        }
    }
}

fn zero_into(dst: &mut [MaybeUninit<f32>]) {
    for d in dst {
        d.write(0.0);
    }
}

/// dst[q·ds + r] = src[r·ss + q] for r < rows, q < cols: the transposed copy both packings make
/// of a strided operand (row-major A into MR-row panels, column-major B into NR-wide panels).
/// Whole [`transpose_block`]-sided squares go through registers, the edges element by element.
fn transpose_into(src: &[f32], ss: usize, rows: usize, cols: usize, dst: &mut [MaybeUninit<f32>], ds: usize) {
    let tb = transpose_block();
    let (rfull, qfull) = if tb > 0 { (rows / tb * tb, cols / tb * tb) } else { (0, 0) };
    if tb > 0 {
        for r in (0..rfull).step_by(tb) {
            for q in (0..qfull).step_by(tb) {
                transpose_square(&src[r * ss + q..], ss, &mut dst[q * ds + r..], ds);
            }
        }
    }
    for r in 0..rows {
        let from = if r < rfull { qfull } else { 0 };
        for (q, &v) in src[r * ss..r * ss + cols].iter().enumerate().skip(from) {
            dst[q * ds + r].write(v);
        }
    }
}

/// Side of the blocks [`transpose_square`] transposes in registers (0: none, element by element).
fn transpose_block() -> usize {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            8
        } else {
            0
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        4
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    {
        0
    }
}

/// Writes the transpose of the [`transpose_block`]-sided square at `src` (row stride `ss`) to
/// `dst` (row stride `ds`): `dst[q·ds + r] = src[r·ss + q]`.
fn transpose_square(src: &[f32], ss: usize, dst: &mut [MaybeUninit<f32>], ds: usize) {
    let n = transpose_block();
    assert!(n > 0 && src.len() >= (n - 1) * ss + n && dst.len() >= (n - 1) * ds + n);
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    // SAFETY: transpose_block() is 8 only with AVX; both blocks lie inside their slices (asserted).
    unsafe {
        x86::transpose8_avx(src.as_ptr(), ss, dst.as_mut_ptr().cast::<f32>(), ds)
    };
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    // SAFETY: both 4×4 blocks lie inside their slices (asserted above); unaligned loads/stores.
    unsafe {
        use core::arch::wasm32::*;
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr().cast::<f32>());
        let r: [v128; 4] = core::array::from_fn(|i| v128_load(s.add(i * ss) as *const v128));
        let t0 = i32x4_shuffle::<0, 4, 1, 5>(r[0], r[1]);
        let t1 = i32x4_shuffle::<2, 6, 3, 7>(r[0], r[1]);
        let t2 = i32x4_shuffle::<0, 4, 1, 5>(r[2], r[3]);
        let t3 = i32x4_shuffle::<2, 6, 3, 7>(r[2], r[3]);
        v128_store(d as *mut v128, i32x4_shuffle::<0, 1, 4, 5>(t0, t2));
        v128_store(d.add(ds) as *mut v128, i32x4_shuffle::<2, 3, 6, 7>(t0, t2));
        v128_store(d.add(2 * ds) as *mut v128, i32x4_shuffle::<0, 1, 4, 5>(t1, t3));
        v128_store(d.add(3 * ds) as *mut v128, i32x4_shuffle::<2, 3, 6, 7>(t1, t3));
    }
}

thread_local! {
    static PACK_BUFS: RefCell<(AlignedBuf, AlignedBuf)> = RefCell::new((AlignedBuf::default(), AlignedBuf::default()));
}

/// C pointer shared by the threads computing disjoint tiles.
#[derive(Clone, Copy)]
struct CPtr(*mut f32);
// SAFETY: each thread writes a disjoint rectangle of C (see `sgemm_ex`).
unsafe impl Send for CPtr {}
// SAFETY: as above; no element is accessed by two threads.
unsafe impl Sync for CPtr {}

/// C = act(alpha·A·B + beta·C + biases) for A[m×k], B[k×n], C[m×n] (element (i, j) at
/// `c[i * rsc + j * csc]`), using up to `threads` threads of the calling thread's pool ([`crate::par`]).
///
/// Panics if a view does not fit its buffer, if strides are negative, or if packed operands
/// disagree with `m`, `k`, `n` (callers validate shapes first).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_ex(m: usize, k: usize, n: usize, a: Lhs<'_>, b: Rhs<'_>, c: &mut [f32], rsc: isize, csc: isize, ep: &Epilogue<'_>, threads: usize) {
    let info = operand_info(&a, &b);
    sgemm_with(info, m, k, n, a, b, c, rsc, csc, ep, threads)
}

/// The kernel family of the packed operands, or the best one here when neither is packed.
fn operand_info(a: &Lhs<'_>, b: &Rhs<'_>) -> KernelInfo {
    match (a, b) {
        (Lhs::Packed(pa), Rhs::Packed(pb)) => {
            assert_eq!(pa.info, pb.info, "packed operands for different kernels");
            pa.info
        }
        (Lhs::Packed(pa), _) => pa.info,
        (_, Rhs::Packed(pb)) => pb.info,
        _ => KernelInfo::for_isa(best_isa()),
    }
}

/// C = act(alpha·A·B + biases) into a new row-major m×n buffer, as [`sgemm_ex`] with beta = 0
/// (`ep.beta` is ignored). The buffer is not zeroed first: the product writes every element.
pub fn sgemm_new(m: usize, k: usize, n: usize, a: Lhs<'_>, b: Rhs<'_>, ep: &Epilogue<'_>, threads: usize) -> Vec<f32> {
    let info = operand_info(&a, &b);
    let len = m.checked_mul(n).expect("sgemm_new: the product's size overflows");
    let mut c: Vec<f32> = Vec::with_capacity(len);
    let ep = Epilogue { beta: 0.0, ..*ep };
    // SAFETY: the buffer has room for the contiguous m×n view; with beta 0 every element of the
    // view is written before it is read (the first depth block stores without reading C).
    unsafe {
        sgemm_raw(info, m, k, n, a, b, c.as_mut_ptr(), len, n as isize, 1, &ep, threads);
        c.set_len(len);
    }
    c
}

/// C = A·B (m×n) written column-major into `c`: element (i, j) at `c[j·m + i]`. `c` holds at
/// least m·n elements and may be uninitialised; the first m·n are all written. This is the
/// layout of the n×m product Bᵀ·Aᵀ, computed with A's rows as the kernels' rows (see
/// [`prefer_transposed`]).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_into_col_major(m: usize, k: usize, n: usize, a: Lhs<'_>, b: Rhs<'_>, c: &mut [MaybeUninit<f32>], ep: &Epilogue<'_>, threads: usize) {
    let info = operand_info(&a, &b);
    let len = m.checked_mul(n).expect("sgemm_into_col_major: the product's size overflows");
    assert!(c.len() >= len, "sgemm_into_col_major: C has {} elements, needs {len}", c.len());
    let ep = Epilogue { beta: 0.0, ..*ep };
    // SAFETY: `c` has room for the m×n view at row stride 1 and column stride m; with beta 0
    // every element of the view is written before it is read.
    unsafe { sgemm_raw(info, m, k, n, a, b, c.as_mut_ptr().cast::<f32>(), len, 1, m.max(1) as isize, &ep, threads) }
}

/// Whether an m×n product takes fewer micro-kernel steps on this machine as the n×m product
/// Bᵀ·Aᵀ: C is computed in tiles of MR rows × NR columns, and a last panel of a few columns
/// costs nearly a full one (a 6×8 tile of the AVX2 kernel takes two thirds of a 6×16 one), so
/// a product with, say, 49 columns wastes a sixth of its time; its 49 rows would waste little.
pub fn prefer_transposed(m: usize, n: usize) -> bool {
    if m < 2 || n < 2 {
        return false;
    }
    let info = KernelInfo::for_isa(best_isa());
    let cost = |rows: usize, cols: usize| {
        let r = rows % info.mr;
        let row_tiles = (rows / info.mr) as f64 + if r > 0 { (r as f64 / info.mr as f64).max(0.25) } else { 0.0 };
        let c = cols % info.nr;
        let panels = (cols / info.nr) as f64 + if c > 0 { (info.panel_width(0, c) as f64 / info.nr as f64).max(0.66) } else { 0.0 };
        row_tiles * panels
    };
    cost(n, m) < 0.92 * cost(m, n)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_with(info: KernelInfo, m: usize, k: usize, n: usize, a: Lhs<'_>, b: Rhs<'_>, c: &mut [f32], rsc: isize, csc: isize, ep: &Epilogue<'_>, threads: usize) {
    // SAFETY: `c` is an initialised slice of c.len() elements.
    unsafe { sgemm_raw(info, m, k, n, a, b, c.as_mut_ptr(), c.len(), rsc, csc, ep, threads) }
}

/// The product behind [`sgemm_with`] and [`sgemm_new`], into C at `c`.
///
/// # Safety
/// `c` must be valid for reads and writes of `c_len` elements and not accessed elsewhere during
/// the call. Elements of the m×n view may be uninitialised only when `ep.beta == 0`: each is then
/// written before it is read.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_raw(info: KernelInfo, m: usize, k: usize, n: usize, a: Lhs<'_>, b: Rhs<'_>, c: *mut f32, c_len: usize, rsc: isize, csc: isize, ep: &Epilogue<'_>, threads: usize) {
    match &a {
        Lhs::Strided(v) => v.check(m, k, "sgemm A"),
        Lhs::Packed(p) => assert!(p.m == m && p.k == k && p.info == info, "packed A is {}x{}, product needs {m}x{k}", p.m, p.k),
    }
    match &b {
        Rhs::Strided(v) => v.check(k, n, "sgemm B"),
        Rhs::Packed(p) => assert!(p.k == k && p.n == n && p.info == info, "packed B is {}x{}, product needs {k}x{n}", p.k, p.n),
    }
    check_view(c_len, rsc, csc, m, n, "sgemm C");
    if let Some(rb) = ep.row_bias {
        assert!(rb.len() >= m, "row bias has {} elements, needs {m}", rb.len());
    }
    if let Some(cb) = ep.col_bias {
        assert!(cb.len() >= n, "column bias has {} elements, needs {n}", cb.len());
    }
    if m == 0 || n == 0 {
        return;
    }
    let cp = CPtr(c);
    if k == 0 {
        let tmp = vec![0f32; n];
        for i in 0..m {
            // SAFETY: row i of the m×n view checked above.
            let out = TileOut { c: unsafe { c.offset(i as isize * rsc) }, rsc, csc, rows: 1, cols: n };
            let tep = tile_ep(ep, ep.beta, true, true, i, 0);
            // SAFETY: row i of C holds n elements at stride csc (checked above); biases checked above.
            unsafe {
                store_tile_scalar(&tmp, n, &out, &tep);
                ep.finish_block(out.c, 1, n, rsc, csc);
            }
        }
        return;
    }
    if n == 1 && m > 1 {
        let bv = match b {
            Rhs::Strided(v) => v,
            Rhs::Packed(p) => MatRef::new(p.buf.as_slice(), p.npad as isize, 1),
        };
        gemv::gemv_col(&info, m, k, &a, &bv, cp.0, rsc, ep);
        // SAFETY: C's m×1 view was checked above.
        unsafe { ep.finish_block(cp.0, m, 1, rsc, csc) };
        return;
    }
    if let (1, Lhs::Strided(av), Rhs::Packed(pb)) = (m, &a, &b) {
        gemv::gemv_row(&info, k, n, av, pb, cp.0, csc, ep);
        // SAFETY: C's 1×n view was checked above.
        unsafe { ep.finish_block(cp.0, 1, n, rsc, csc) };
        return;
    }
    let parts = split_parts_by(&info, m, n, m.saturating_mul(n).saturating_mul(k), 1 << 20, threads, PARTS_PER_THREAD);
    let block = |cp: CPtr, rsc: isize, csc: isize, (i0, i1, j0, j1): (usize, usize, usize, usize)| {
        PACK_BUFS.with(|bufs| match bufs.try_borrow_mut() {
            Ok(mut bufs) => {
                let (ba, bb) = &mut *bufs;
                gemm_block(&info, k, &a, &b, cp, rsc, csc, ep, i0, i1, j0, j1, ba, bb);
            }
            Err(_) => {
                let (mut ba, mut bb) = (AlignedBuf::default(), AlignedBuf::default());
                gemm_block(&info, k, &a, &b, cp, rsc, csc, ep, i0, i1, j0, j1, &mut ba, &mut bb);
            }
        });
    };
    // Column-major C over several depth blocks: every block would read and write each tile
    // again, transposing it in registers each time. A part spanning all rows (so its columns
    // are a memory range of their own) accumulates row-major in its thread's scratch instead
    // and is transposed into C once.
    let via_rows = rsc == 1 && csc >= m as isize && k > info.kc && ep.beta == 0.0;
    let job = |&(i0, i1, j0, j1): &(usize, usize, usize, usize)| {
        let cp = cp;
        if !(via_rows && i0 == 0 && i1 == m) {
            return block(cp, rsc, csc, (i0, i1, j0, j1));
        }
        let w = j1 - j0;
        ROW_MAJOR_C.with(|cell| {
            let mut fresh = Vec::new();
            let mut guard = cell.try_borrow_mut();
            let scratch = match guard.as_deref_mut() {
                Ok(v) => v,
                Err(_) => &mut fresh,
            };
            if scratch.len() < m * w {
                scratch.resize(m * w, 0.0);
            }
            // Element (i, j) of this part at scratch[i·w + j − j0] (the block's tile pointers
            // are formed with wrapping offsets from this origin before column j0).
            block(CPtr(scratch.as_mut_ptr().wrapping_sub(j0)), w as isize, 1, (i0, i1, j0, j1));
            let csc = csc as usize;
            // SAFETY: columns j0..j1 of the m×n view of C (checked above) lie in this range,
            // which no other part touches: every part spans all rows, parts' columns are
            // disjoint and csc ≥ m.
            let dst = unsafe { std::slice::from_raw_parts_mut(cp.0.add(j0 * csc).cast::<MaybeUninit<f32>>(), (w - 1) * csc + m) };
            transpose_into(&scratch[..m * w], w, m, w, dst, csc);
        });
    };
    run_parts(&parts, job);
}

thread_local! {
    /// Row-major scratch of one part of a column-major product (see `sgemm_raw`), kept between
    /// calls.
    static ROW_MAJOR_C: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Rectangles (rows i0..i1, columns j0..j1) of an m×n product for `threads` threads: one when
/// `work` (multiply-adds) is below `min_work`, else whole column panels per thread when there are
/// enough, else whole row panels, else one.
pub(crate) fn split_parts(info: &KernelInfo, m: usize, n: usize, work: usize, min_work: usize, threads: usize) -> Vec<(usize, usize, usize, usize)> {
    split_parts_by(info, m, n, work, min_work, threads, 1)
}

/// Parts per thread a threaded product is split into. The pool hands parts out as threads become
/// free, so a thread held up (by other work on its core, or a slower start) delays the product by
/// one small part rather than by a whole half of it. Parts keep whole panels and at least
/// [`MIN_PANELS_PER_PART`] of them.
const PARTS_PER_THREAD: usize = 4;
const MIN_PANELS_PER_PART: usize = 4;

/// As [`split_parts`], with up to `per_thread` parts per thread along the split dimension (never
/// fewer than one per thread, never fewer than [`MIN_PANELS_PER_PART`] panels in a part unless
/// one per thread already needs it).
pub(crate) fn split_parts_by(info: &KernelInfo, m: usize, n: usize, work: usize, min_work: usize, threads: usize, per_thread: usize) -> Vec<(usize, usize, usize, usize)> {
    let threads = threads.max(1);
    // Whole panels of width `unit` over `len`, in `count` parts (at least `threads`).
    let ranges = |len: usize, unit: usize| -> Vec<(usize, usize)> {
        let panels = len.div_ceil(unit);
        let count = threads.saturating_mul(per_thread.max(1)).min(panels / MIN_PANELS_PER_PART).max(threads);
        let per = panels.div_ceil(count);
        (0..count)
            .map(|t| ((t * per * unit).min(len), ((t + 1) * per * unit).min(len)))
            .filter(|(a, b)| a < b)
            .collect()
    };
    if threads == 1 || work < min_work {
        vec![(0, m, 0, n)]
    } else if n >= threads * info.nr * 2 {
        ranges(n, info.nr).into_iter().map(|(j0, j1)| (0, m, j0, j1)).collect()
    } else if m >= threads * info.mr * 2 {
        ranges(m, info.mr).into_iter().map(|(i0, i1)| (i0, i1, 0, n)).collect()
    } else {
        vec![(0, m, 0, n)]
    }
}

fn run_parts<F: Fn(&(usize, usize, usize, usize)) + Sync + Send>(parts: &[(usize, usize, usize, usize)], job: F) {
    crate::par::for_each(parts.iter().collect(), job);
}

pub(crate) fn tile_ep(ep: &Epilogue<'_>, cmul: f32, first: bool, last: bool, i: usize, j: usize) -> TileEp {
    TileEp {
        alpha: ep.alpha,
        cmul,
        row_bias: match ep.row_bias {
            Some(rb) if first => rb[i..].as_ptr(),
            _ => std::ptr::null(),
        },
        col_bias: match ep.col_bias {
            Some(cb) if first => cb[j..].as_ptr(),
            _ => std::ptr::null(),
        },
        relu: ep.relu && last,
        prefetch: std::ptr::null(),
        prefetch_lines: 0,
    }
}

/// Computes the rectangle rows `i0..i1` × columns `j0..j1` of C (i0 a multiple of MR, j0 of NR).
#[allow(clippy::too_many_arguments)]
fn gemm_block(
    info: &KernelInfo, k: usize, a: &Lhs<'_>, b: &Rhs<'_>, c: CPtr, rsc: isize, csc: isize, ep: &Epilogue<'_>,
    i0: usize, i1: usize, j0: usize, j1: usize, abuf: &mut AlignedBuf, bbuf: &mut AlignedBuf,
) {
    let (mr, nr) = (info.mr, info.nr);
    let mut jc = j0;
    while jc < j1 {
        let nc = info.nc.min(j1 - jc);
        let mut pc = 0;
        while pc < k {
            let kc = info.kc.min(k - pc);
            let first = pc == 0;
            let last = pc + kc == k;
            let cmul = if first { ep.beta } else { 1.0 };
            let bpanels: &[f32] = match b {
                Rhs::Packed(pb) => pb.block(pc, kc, jc),
                Rhs::Strided(bv) => {
                    bbuf.reset(info.packed_cols(nc) * kc);
                    pack_b(info, bv, pc, kc, jc, jc + nc, bbuf.as_uninit_mut());
                    bbuf.as_slice()
                }
            };
            let mut ic = i0;
            while ic < i1 {
                let mc = match a {
                    Lhs::Packed(_) => i1 - ic,
                    Lhs::Strided(_) => info.mc.min(i1 - ic),
                };
                // Row-contiguous A is read in place by kernels that can, a last partial row
                // panel included (by a kernel with fewer rows).
                let direct = match a {
                    Lhs::Strided(av) if av.cs == 1 && has_direct_kernel(info) => Some(*av),
                    _ => None,
                };
                let apanels: &[f32] = match (a, direct) {
                    (Lhs::Packed(pa), _) => pa.block(pc, kc, ic),
                    (Lhs::Strided(av), None) => {
                        abuf.reset(mc.div_ceil(mr) * mr * kc);
                        pack_a(info, av, ic, mc, pc, kc, abuf.as_uninit_mut());
                        abuf.as_slice()
                    }
                    (Lhs::Strided(_), Some(_)) => &[],
                };
                let mut j = jc;
                let mut boff = 0;
                while j < jc + nc {
                    // Block ends are multiples of NR except at n, so this matches both layouts.
                    let w = info.panel_width(j, jc + nc);
                    let cols = nr.min(jc + nc - j);
                    let bp = &bpanels[boff..boff + w * kc];
                    // The next panel is brought towards L2 in equal parts over this panel's
                    // tiles: a B packed once and larger than the caches is otherwise read from
                    // memory by the first tile of each panel, faster than memory delivers it.
                    let next = &bpanels[(boff + w * kc).min(bpanels.len())..];
                    let next = &next[..next.len().min(w * kc)];
                    let part = next.len().div_ceil(mc.div_ceil(mr)).div_ceil(16) * 16;
                    let mut i = ic;
                    let mut aoff = 0;
                    while i < ic + mc {
                        let t = (i - ic) / mr;
                        let pf = &next[(t * part).min(next.len())..((t + 1) * part).min(next.len())];
                        let rows = mr.min(ic + mc - i);
                        let out = TileOut {
                            // (i, j) lies inside the m×n view of C checked in `sgemm_raw`, or
                            // inside the part's row-major scratch there.
                            c: c.0.wrapping_offset(i as isize * rsc + j as isize * csc),
                            rsc,
                            csc,
                            rows,
                            cols,
                        };
                        let mut tep = tile_ep(ep, cmul, first, last, i, j);
                        // Spread over the tile's depth loop (see `x86::Prefetcher`).
                        tep.prefetch = pf.as_ptr();
                        tep.prefetch_lines = pf.len().div_ceil(16);
                        match direct {
                            Some(av) => {
                                let start = (i as isize * av.rs) as usize + pc;
                                run_kernel_direct(info, kc, &av.data[start..], av.rs as usize, bp, w, &out, &tep);
                            }
                            None => run_kernel(info, kc, &apanels[aoff..aoff + mr * kc], bp, w, &out, &tep),
                        }
                        i += mr;
                        aoff += mr * kc;
                    }
                    if last {
                        // SAFETY: rows ic..ic+mc × columns j..j+cols lie inside C and belong to
                        // this part only.
                        unsafe { ep.finish_block(c.0.wrapping_offset(ic as isize * rsc + j as isize * csc), mc, cols, rsc, csc) };
                    }
                    boff += w * kc;
                    j += nr;
                }
                ic += mc;
            }
            pc += kc;
        }
        jc += nc;
    }
}

/// Whether the kernel family of `info` can read a row-contiguous A in place.
fn has_direct_kernel(info: &KernelInfo) -> bool {
    match info.isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => true,
        _ => false,
    }
}

/// One tile of `out.rows` (at most MR) rows with A read in place: row i at `a[i * lda..]`, depth
/// contiguous.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(not(any(target_arch = "x86", target_arch = "x86_64")), allow(unused_variables))]
fn run_kernel_direct(info: &KernelInfo, kc: usize, a: &[f32], lda: usize, b: &[f32], w: usize, out: &TileOut, ep: &TileEp) {
    assert!(out.rows >= 1 && out.rows <= info.mr && a.len() >= (out.rows - 1) * lda + kc && b.len() >= w * kc && w <= info.nr && out.cols <= w);
    match info.isa {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        // SAFETY: the ISA was detected on this machine; the A rows and the B panel were asserted
        // above; `out` and the bias pointers were derived from checked views.
        Isa::Avx2 => unsafe { x86::kernel_avx2_direct(kc, a.as_ptr(), lda, b.as_ptr(), w, out, ep) },
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        // SAFETY: as above.
        Isa::Avx512 => unsafe { x86::kernel_avx512_direct(kc, a.as_ptr(), lda, b.as_ptr(), w, out, ep) },
        _ => unreachable!("no in-place A kernel for {:?}", info.isa),
    }
}

/// One tile through the kernel family of `info`.
pub(crate) fn run_kernel(info: &KernelInfo, kc: usize, a: &[f32], b: &[f32], w: usize, out: &TileOut, ep: &TileEp) {
    assert!(a.len() >= info.mr * kc && b.len() >= w * kc && w <= info.nr && out.rows <= info.mr && out.cols <= w);
    match info.isa {
        Isa::Generic => generic::kernel(kc, a, b, w, out, ep),
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        // SAFETY: the ISA was detected on this machine; panel sizes asserted above; `out` and the
        // bias pointers were derived from checked views.
        Isa::Avx2 => unsafe { x86::kernel_avx2(kc, a.as_ptr(), b.as_ptr(), w, out, ep) },
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        // SAFETY: as above.
        Isa::Avx512 => unsafe { x86::kernel_avx512(kc, a.as_ptr(), b.as_ptr(), w, out, ep) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        // SAFETY: simd128 is enabled at compile time; panel sizes asserted above; `out` and the
        // bias pointers were derived from checked views.
        Isa::Simd128 => unsafe { wasm32::kernel(kc, a.as_ptr(), b.as_ptr(), w, out, ep) },
    }
}

#[cfg(test)]
mod tests;
