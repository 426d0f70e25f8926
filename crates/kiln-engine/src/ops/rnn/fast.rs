//! Single-precision path of the recurrent operators: weights packed once (Wᵀ of all directions
//! for one input-projection GEMM over every step, Rᵀ for the per-step products: GEMM panels for
//! batches, column panels for the batch-1 matrix–vector product), and the LSTM recurrence with
//! vectorised gate math, its directions run in parallel when a pool is available.

use std::sync::OnceLock;

use kiln_kernels::{par, sgemm_ex, Epilogue, Lhs, MatRef, PackedB, Rhs};
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
use kiln_kernels::Isa;

use super::{gru_dir, lstm_cell, rnn_dir, Cell, Dims, RnnOp, StepCtx};

/// B[k×n] stored as column panels of width `w` (zero-padded), panel-major then row-major:
/// element (p, j) at `data[((j / w) * k + p) * w + j % w]`. For y = x·B with a single row x.
pub(super) struct PanelMat {
    k: usize,
    w: usize,
    npad: usize,
    data: Vec<f32>,
}

impl PanelMat {
    /// Packs B = Mᵀ for M[n×k] row-major (so B[p, j] = m[j·k + p]).
    fn from_transposed(m: &[f32], n: usize, k: usize) -> PanelMat {
        let w = match kiln_kernels::best_isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 128,
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            Isa::Avx2 => 64,
            _ => 16,
        };
        let npad = n.div_ceil(w) * w;
        let mut data = vec![0f32; npad * k];
        if k == 0 {
            return PanelMat { k, w, npad, data };
        }
        for (panel, pd) in data.chunks_exact_mut(k * w).enumerate() {
            let cols = w.min(n - panel * w);
            for jj in 0..cols {
                let row = &m[(panel * w + jj) * k..][..k];
                for (p, &v) in row.iter().enumerate() {
                    pd[p * w + jj] = v;
                }
            }
        }
        PanelMat { k, w, npad, data }
    }

    /// Padded number of columns (the length `gemv` writes).
    fn npad(&self) -> usize {
        self.npad
    }

    /// y[..npad] = x[..k] · B, visiting the panels last to first when `rev`. Alternating the
    /// direction between consecutive products starts each one on the panels the previous one
    /// left in cache, so a matrix slightly larger than the cache is mostly read from it.
    fn gemv(&self, x: &[f32], y: &mut [f32], rev: bool) {
        let x = &x[..self.k];
        let y = &mut y[..self.npad];
        if self.k == 0 {
            y.iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let isa = kiln_kernels::best_isa();
            if self.w == 128 && isa == Isa::Avx512 {
                // SAFETY: AVX-512F was detected; panels are 128 wide and `y` holds every panel.
                unsafe { gemv_avx512(&self.data, self.k, x, y, rev) };
                return;
            }
            if self.w == 64 && (isa == Isa::Avx2 || isa == Isa::Avx512) {
                // SAFETY: AVX2 and FMA were detected; panels are 64 wide and `y` holds every panel.
                unsafe { gemv_avx2(&self.data, self.k, x, y, rev) };
                return;
            }
        }
        match self.w {
            16 => gemv_portable::<16>(&self.data, self.k, x, y, rev),
            64 => gemv_portable::<64>(&self.data, self.k, x, y, rev),
            _ => gemv_portable::<128>(&self.data, self.k, x, y, rev),
        }
    }
}

/// The (panel, output chunk) pairs of a panel product, in the requested order.
fn panel_order<'a, const W: usize>(data: &'a [f32], k: usize, y: &'a mut [f32], rev: bool) -> impl Iterator<Item = (&'a [f32], &'a mut [f32])> {
    let it = data.chunks_exact(k * W).zip(y.chunks_exact_mut(W));
    let (fwd, back) = if rev { (None, Some(it.rev())) } else { (Some(it), None) };
    fwd.into_iter().flatten().chain(back.into_iter().flatten())
}

fn gemv_portable<const W: usize>(data: &[f32], k: usize, x: &[f32], y: &mut [f32], rev: bool) {
    for (panel, yc) in panel_order::<W>(data, k, y, rev) {
        let mut acc = [0f32; W];
        for (row, &xp) in panel.chunks_exact(W).zip(x) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += xp * v;
            }
        }
        yc.copy_from_slice(&acc);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gemv_avx512(data: &[f32], k: usize, x: &[f32], y: &mut [f32], rev: bool) {
    use std::arch::x86_64::*;
    const W: usize = 128;
    for (panel, yc) in panel_order::<W>(data, k, y, rev) {
        let (mut a0, mut a1, mut a2, mut a3) = (_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps());
        let (mut a4, mut a5, mut a6, mut a7) = (_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps());
        for (row, &xp) in panel.chunks_exact(W).zip(x) {
            let xv = _mm512_set1_ps(xp);
            let r = row.as_ptr();
            // SAFETY: `row` holds W = 128 floats, read in eight 16-float vectors.
            unsafe {
                a0 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r), a0);
                a1 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(16)), a1);
                a2 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(32)), a2);
                a3 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(48)), a3);
                a4 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(64)), a4);
                a5 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(80)), a5);
                a6 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(96)), a6);
                a7 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(112)), a7);
            }
        }
        let o = yc.as_mut_ptr();
        // SAFETY: `yc` holds W = 128 floats.
        unsafe {
            _mm512_storeu_ps(o, a0);
            _mm512_storeu_ps(o.add(16), a1);
            _mm512_storeu_ps(o.add(32), a2);
            _mm512_storeu_ps(o.add(48), a3);
            _mm512_storeu_ps(o.add(64), a4);
            _mm512_storeu_ps(o.add(80), a5);
            _mm512_storeu_ps(o.add(96), a6);
            _mm512_storeu_ps(o.add(112), a7);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv_avx2(data: &[f32], k: usize, x: &[f32], y: &mut [f32], rev: bool) {
    use std::arch::x86_64::*;
    const W: usize = 64;
    for (panel, yc) in panel_order::<W>(data, k, y, rev) {
        let (mut a0, mut a1, mut a2, mut a3) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut a4, mut a5, mut a6, mut a7) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
        for (row, &xp) in panel.chunks_exact(W).zip(x) {
            let xv = _mm256_set1_ps(xp);
            let r = row.as_ptr();
            // SAFETY: `row` holds W = 64 floats, read in eight 8-float vectors.
            unsafe {
                a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r), a0);
                a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r.add(8)), a1);
                a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r.add(16)), a2);
                a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r.add(24)), a3);
                a4 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r.add(32)), a4);
                a5 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r.add(40)), a5);
                a6 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r.add(48)), a6);
                a7 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r.add(56)), a7);
            }
        }
        let o = yc.as_mut_ptr();
        // SAFETY: `yc` holds W = 64 floats.
        unsafe {
            _mm256_storeu_ps(o, a0);
            _mm256_storeu_ps(o.add(8), a1);
            _mm256_storeu_ps(o.add(16), a2);
            _mm256_storeu_ps(o.add(24), a3);
            _mm256_storeu_ps(o.add(32), a4);
            _mm256_storeu_ps(o.add(40), a5);
            _mm256_storeu_ps(o.add(48), a6);
            _mm256_storeu_ps(o.add(56), a7);
        }
    }
}

/// The weights of one node in the layouts the f32 path multiplies with.
pub(super) struct Packed {
    nd: usize,
    gh: usize,
    input: usize,
    hidden: usize,
    has_bias: bool,
    /// Wᵀ of all directions: [input × nd·G·H].
    w: PackedB,
    /// Wb + Rb per direction, [nd·G·H] (GRU with linear_before_reset: without the candidate's Rb).
    bias: Vec<f32>,
    /// Per direction Rᵀ [H × G·H] for batched steps (LSTM; packed by the first such run).
    r_gemm: OnceLock<Vec<PackedB>>,
    /// Per direction Rᵀ in column panels for batch-1 steps (LSTM; packed by the first such run).
    r_panels: OnceLock<Vec<PanelMat>>,
}

impl Packed {
    /// Packs W [nd, G·H, input], R [nd, G·H, H] and B [nd, 2·G·H] (shapes checked by the caller).
    pub(super) fn new(cell: Cell, linear_before_reset: bool, d: &Dims, w: &[f32], b: Option<&[f32]>) -> Packed {
        let gh = cell.gates() * d.hidden;
        let ng = d.nd * gh;
        let wp = PackedB::new(d.input, ng, MatRef::new(w, 1, d.input as isize));
        let skip_rbh = cell == Cell::Gru && linear_before_reset;
        let mut bias = vec![0f32; ng];
        if let Some(b) = b {
            for k in 0..d.nd {
                let bk = &b[k * 2 * gh..][..2 * gh];
                for j in 0..gh {
                    let rb = if skip_rbh && j >= 2 * d.hidden { 0.0 } else { bk[gh + j] };
                    bias[k * gh + j] = bk[j] + rb;
                }
            }
        }
        Packed {
            nd: d.nd,
            gh,
            input: d.input,
            hidden: d.hidden,
            has_bias: b.is_some(),
            w: wp,
            bias,
            r_gemm: OnceLock::new(),
            r_panels: OnceLock::new(),
        }
    }

    fn fits(&self, d: &Dims, gh: usize, has_bias: bool) -> bool {
        self.nd == d.nd && self.gh == gh && self.input == d.input && self.hidden == d.hidden && self.has_bias == has_bias
    }

    /// Direction k's block of R [nd, G·H, H].
    fn r_of<'r>(&self, r: &'r [f32], k: usize) -> &'r [f32] {
        &r[k * self.gh * self.hidden..][..self.gh * self.hidden]
    }

    /// Rᵀ of every direction packed for batched steps.
    fn r_gemm(&self, r: &[f32]) -> &[PackedB] {
        self.r_gemm.get_or_init(|| (0..self.nd).map(|k| PackedB::new(self.hidden, self.gh, MatRef::new(self.r_of(r, k), 1, self.hidden as isize))).collect())
    }

    /// Rᵀ of every direction in column panels for batch-1 steps.
    fn r_panels(&self, r: &[f32]) -> &[PanelMat] {
        self.r_panels.get_or_init(|| (0..self.nd).map(|k| PanelMat::from_transposed(self.r_of(r, k), self.gh, self.hidden)).collect())
    }
}

/// Packs constant f32 weights at build time (None when W or R is not a constant f32 tensor of
/// the expected shape; the run then packs what it needs).
pub(super) fn prepack(op: &RnnOp, w: &kiln_tensor::Tensor, r: &kiln_tensor::Tensor, b: Option<&kiln_tensor::Tensor>) -> Option<Packed> {
    let nd = op.dirs.len();
    let gh = op.cell.gates() * op.hidden;
    let (ws, rs) = (w.shape(), r.shape());
    if ws.len() != 3 || ws[0] != nd || ws[1] != gh || rs != [nd, gh, op.hidden] {
        return None;
    }
    let wv = w.as_slice::<f32>().ok()?;
    let bv = match b {
        Some(b) if b.shape() == [nd, 2 * gh] => Some(b.as_slice::<f32>().ok()?),
        Some(_) => return None,
        None => None,
    };
    let d = Dims { seq: 0, batch: 0, input: ws[2], hidden: op.hidden, nd };
    // R is packed by the first run, in the layout its batch size needs.
    let _ = r.as_slice::<f32>().ok()?;
    Some(Packed::new(op.cell, op.linear_before_reset, &d, wv, bv))
}

/// Everything the f32 recurrence reads.
pub(super) struct Run<'a> {
    pub d: &'a Dims,
    /// X as [seq, batch, input].
    pub x: &'a [f32],
    pub w: &'a [f32],
    pub r: &'a [f32],
    pub b: Option<&'a [f32]>,
    pub lens: &'a [usize],
    pub peep: Option<&'a [f32]>,
}

/// Runs every direction: fills `y` ([seq, nd, batch, H]), `h_all` and (LSTM) `c_all`
/// ([nd, batch, H]).
pub(super) fn run_dirs(op: &RnnOp, a: &Run<'_>, h_all: &mut [f32], c_all: &mut [f32], y: &mut [f32]) {
    let d = a.d;
    let gh = op.cell.gates() * d.hidden;
    let ng = d.nd * gh;
    let local;
    let pk = match &op.packed {
        Some(p) if p.fits(d, gh, a.b.is_some()) => p,
        _ => {
            local = Packed::new(op.cell, op.linear_before_reset, d, a.w, a.b);
            &local
        }
    };

    // Input projection of every step and direction at once: XW = X · Wᵀ + Wb + Rb.
    let rows = d.seq * d.batch;
    let mut xw = vec![0f32; rows * ng];
    let ep = Epilogue { col_bias: Some(&pk.bias), ..Epilogue::default() };
    sgemm_ex(rows, d.input, ng, Lhs::Strided(MatRef::new(a.x, d.input as isize, 1)), Rhs::Packed(&pk.w), &mut xw, ng as isize, 1, &ep, par::threads());

    let nacts = op.cell.num_acts();
    if op.cell != Cell::Lstm {
        for (k, &reverse) in op.dirs.iter().enumerate() {
            let rk = &a.r[k * gh * d.hidden..][..gh * d.hidden];
            let bk: &[f32] = match a.b {
                Some(b) => &b[k * 2 * gh..][..2 * gh],
                None => &[],
            };
            let rbh: &[f32] = if op.cell == Cell::Gru && !bk.is_empty() { &bk[gh + 2 * d.hidden..] } else { &[] };
            let zeros;
            let rbh = if op.cell == Cell::Gru && rbh.is_empty() {
                zeros = vec![0f32; d.hidden];
                &zeros[..]
            } else {
                rbh
            };
            let ctx = StepCtx {
                d,
                k,
                reverse,
                lens: a.lens,
                xw: &xw,
                xw_stride: ng,
                xw_off: k * gh,
                r: rk,
                rbh,
                acts: &op.acts[k * nacts..][..nacts],
                clip: op.clip,
            };
            let h = &mut h_all[k * d.batch * d.hidden..][..d.batch * d.hidden];
            match op.cell {
                Cell::Gru => gru_dir(&ctx, h, op.linear_before_reset, y),
                _ => rnn_dir(&ctx, h, y),
            }
        }
        return;
    }

    // LSTM: each direction into its own [seq, batch, H] buffer, in parallel when worthwhile.
    let (r_gemm, r_panels): (&[PackedB], &[PanelMat]) = if d.batch == 1 { (&[], pk.r_panels(a.r)) } else { (pk.r_gemm(a.r), &[]) };
    let bh = d.batch * d.hidden;
    let mut ys: Vec<Vec<f32>> = (0..d.nd).map(|_| vec![0f32; d.seq * bh]).collect();
    let items: Vec<(usize, &mut [f32], &mut [f32], &mut Vec<f32>)> = h_all
        .chunks_mut(bh.max(1))
        .zip(c_all.chunks_mut(bh.max(1)))
        .zip(ys.iter_mut())
        .enumerate()
        .map(|(k, ((h, c), yk))| (k, h, c, yk))
        .collect();
    let job = |(k, h, c, yk): (usize, &mut [f32], &mut [f32], &mut Vec<f32>)| {
        let ctx = LstmDir {
            d,
            reverse: op.dirs.get(k).copied().unwrap_or(false),
            lens: a.lens,
            xw: &xw[k * gh..],
            xw_stride: ng,
            r_gemm: r_gemm.get(k),
            r_panels: r_panels.get(k),
            acts: &op.acts[k * nacts..][..nacts],
            clip: op.clip,
            peep: a.peep.map(|p| &p[k * 3 * d.hidden..][..3 * d.hidden]),
            input_forget: op.input_forget,
        };
        lstm_dir(&ctx, h, c, yk);
    };
    let work = d.seq.saturating_mul(d.batch).saturating_mul(gh).saturating_mul(d.hidden);
    if d.nd > 1 && bh > 0 && par::threads() > 1 && work >= 1 << 18 {
        par::for_each(items, job);
    } else {
        items.into_iter().for_each(job);
    }
    if bh > 0 {
        for (k, yk) in ys.iter().enumerate() {
            for (t, row) in yk.chunks_exact(bh).enumerate() {
                y[(t * d.nd + k) * bh..][..bh].copy_from_slice(row);
            }
        }
    }
}

/// One LSTM direction's inputs.
struct LstmDir<'a> {
    d: &'a Dims,
    reverse: bool,
    lens: &'a [usize],
    /// Projections of this direction: step t, batch row b at `xw[(t·batch + b)·xw_stride..]`.
    xw: &'a [f32],
    xw_stride: usize,
    r_gemm: Option<&'a PackedB>,
    r_panels: Option<&'a PanelMat>,
    acts: &'a [super::Act],
    clip: Option<f32>,
    peep: Option<&'a [f32]>,
    input_forget: bool,
}

impl LstmDir<'_> {
    #[inline]
    fn time(&self, s: usize, b: usize) -> Option<usize> {
        super::step_time(self.lens, self.reverse, s, b)
    }
}

fn lstm_dir(ctx: &LstmDir<'_>, h: &mut [f32], c: &mut [f32], y: &mut [f32]) {
    let d = ctx.d;
    let hs = d.hidden;
    let gh = 4 * hs;
    let mut gates = vec![0f32; d.batch * gh];
    if d.batch == 1 {
        let Some(panels) = ctx.r_panels else { return };
        let mut prod = vec![0f32; panels.npad()];
        for s in 0..d.seq {
            let Some(t) = ctx.time(s, 0) else { break };
            panels.gemv(h, &mut prod, s % 2 == 1);
            let xr = &ctx.xw[t * ctx.xw_stride..][..gh];
            for ((g, &a), &b) in gates.iter_mut().zip(xr).zip(&prod[..gh]) {
                *g = a + b;
            }
            lstm_cell(&mut gates, h, c, ctx.acts, ctx.clip, ctx.peep, ctx.input_forget);
            y[t * hs..][..hs].copy_from_slice(h);
        }
        return;
    }
    let Some(rp) = ctx.r_gemm else { return };
    let ep = Epilogue { beta: 1.0, ..Epilogue::default() };
    let threads = par::threads();
    for s in 0..d.seq {
        let mut any = false;
        for b in 0..d.batch {
            let dst = &mut gates[b * gh..][..gh];
            match ctx.time(s, b) {
                Some(t) => {
                    dst.copy_from_slice(&ctx.xw[(t * d.batch + b) * ctx.xw_stride..][..gh]);
                    any = true;
                }
                None => dst.iter_mut().for_each(|v| *v = 0.0),
            }
        }
        if !any {
            break;
        }
        sgemm_ex(d.batch, hs, gh, Lhs::Strided(MatRef::new(h, hs as isize, 1)), Rhs::Packed(rp), &mut gates, gh as isize, 1, &ep, threads);
        for b in 0..d.batch {
            let Some(t) = ctx.time(s, b) else { continue };
            let hb = &mut h[b * hs..][..hs];
            lstm_cell(&mut gates[b * gh..][..gh], hb, &mut c[b * hs..][..hs], ctx.acts, ctx.clip, ctx.peep, ctx.input_forget);
            y[(t * d.batch + b) * hs..][..hs].copy_from_slice(hb);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_gemv_matches_naive() {
        // M[n×k]; y = x · Mᵀ, with n not a multiple of any panel width.
        let (n, k) = (131, 7);
        let m: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let x: Vec<f32> = (0..k).map(|i| i as f32 - 3.0).collect();
        let pm = PanelMat::from_transposed(&m, n, k);
        for rev in [false, true] {
            let mut y = vec![f32::NAN; pm.npad()];
            pm.gemv(&x, &mut y, rev);
            for j in 0..n {
                let want: f32 = (0..k).map(|p| x[p] * m[j * k + p]).sum();
                assert!((y[j] - want).abs() < 1e-4, "{j}: {} vs {want}", y[j]);
            }
            assert!(y[n..].iter().all(|&v| v == 0.0));
        }
    }
}
