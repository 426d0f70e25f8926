//! Portable sgemm micro-kernel (any target; the compiler vectorises it where it can).

use super::{store_tile_scalar, TileEp, TileOut};

pub(crate) const MR: usize = 4;
pub(crate) const NR: usize = 8;

/// One MR × NR tile of `a` panel × `b` panel (panel width `w` is always NR here).
pub(crate) fn kernel(kc: usize, a: &[f32], b: &[f32], w: usize, out: &TileOut, ep: &TileEp) {
    debug_assert_eq!(w, NR);
    let mut acc = [[0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (row, &av) in acc.iter_mut().zip(ap) {
            for (x, &bv) in row.iter_mut().zip(bp) {
                *x += av * bv;
            }
        }
    }
    let mut tmp = [0f32; MR * NR];
    for (t, row) in tmp.chunks_exact_mut(NR).zip(&acc) {
        t.copy_from_slice(row);
    }
    // SAFETY: the driver builds `out` and the bias pointers from views checked against their
    // buffers, covering out.rows × out.cols elements.
    unsafe { store_tile_scalar(&tmp, NR, out, ep) }
}
