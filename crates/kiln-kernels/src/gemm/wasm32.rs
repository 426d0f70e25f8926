//! WebAssembly 128-bit SIMD (simd128) sgemm micro-kernel.

use core::arch::wasm32::*;

use super::{store_tile_scalar, TileEp, TileOut};

/// Rows per tile. Larger tiles (5×8, 6×8) and unrolled depth loops ran up to 1.4× slower under
/// V8: LLVM hoists the loads of later steps, and the live values no longer fit the 15 XMM
/// registers V8 allocates.
pub(crate) const MR: usize = 4;
pub(crate) const NR: usize = 8;
pub(crate) const VL: usize = 4;

const TMP_STRIDE: usize = NR;

/// One MR × `w` tile (w = 4 or 8) of `a` panel × `b` panel, stored through `ep`.
///
/// # Safety
/// `a` readable for MR·kc floats, `b` for w·kc floats; `out` and the bias pointers valid for the
/// tile's rows and columns.
#[inline(never)]
pub(crate) unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, w: usize, out: &TileOut, ep: &TileEp) {
    if w > VL {
        tile::<MR, 2>(kc, a, b, out, ep)
    } else {
        tile::<MR, 1>(kc, a, b, out, ep)
    }
}

/// `a·b + c`: fused where the engine offers relaxed SIMD (`f32x4.relaxed_madd` lowers to an FMA
/// on x86-64 and ARM64), a multiply and an add otherwise.
#[inline(always)]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        f32x4_relaxed_madd(a, b, c)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        f32x4_add(c, f32x4_mul(a, b))
    }
}

#[inline(always)]
unsafe fn tile<const M: usize, const NV: usize>(kc: usize, a: *const f32, b: *const f32, out: &TileOut, ep: &TileEp) {
    let zero = f32x4_splat(0.0);
    let mut acc = [[zero; NV]; M];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let mut bv = [zero; NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = v128_load(b.add(VL * v) as *const v128);
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = v128_load32_splat(a.add(i) as *const u32);
            for (x, bx) in row.iter_mut().zip(bv) {
                *x = madd(ai, bx, *x);
            }
        }
        a = a.add(M);
        b = b.add(VL * NV);
    }
    if out.rows == M && out.cols == VL * NV && out.csc == 1 {
        let alpha = f32x4_splat(ep.alpha);
        let cm = f32x4_splat(ep.cmul);
        for (i, row) in acc.iter().enumerate() {
            let cr = out.c.offset(i as isize * out.rsc);
            let rb = if ep.row_bias.is_null() { zero } else { f32x4_splat(*ep.row_bias.add(i)) };
            for (v, &r) in row.iter().enumerate() {
                let p = cr.add(VL * v) as *mut v128;
                let mut x = r;
                if ep.alpha != 1.0 {
                    x = f32x4_mul(x, alpha);
                }
                if ep.cmul != 0.0 {
                    x = f32x4_add(x, f32x4_mul(v128_load(p), cm));
                }
                if !ep.row_bias.is_null() {
                    x = f32x4_add(x, rb);
                }
                if !ep.col_bias.is_null() {
                    x = f32x4_add(x, v128_load(ep.col_bias.add(VL * v) as *const v128));
                }
                if ep.relu {
                    x = f32x4_pmax(x, zero);
                }
                v128_store(p, x);
            }
        }
    } else {
        let mut tmp = [0f32; MR * TMP_STRIDE];
        for (i, row) in acc.iter().enumerate() {
            for (v, &r) in row.iter().enumerate() {
                v128_store(tmp.as_mut_ptr().add(i * TMP_STRIDE + VL * v) as *mut v128, r);
            }
        }
        store_tile_scalar(&tmp, TMP_STRIDE, out, ep);
    }
}
