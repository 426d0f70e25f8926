//! Pointwise activations applied in kernel epilogues (convolution and GEMM outputs): identity,
//! Relu, Clip, HardSigmoid, HardSwish, Sigmoid and Swish, with the same definitions as the ONNX
//! operators of those names.

use crate::vmath::{exp_f32, gelu_f32, gelu_tanh_f32};

/// An activation applied to each element after a product is computed.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    #[default]
    Identity,
    /// max(x, 0).
    Relu,
    /// x limited to [lo, hi].
    Clip(f32, f32),
    /// clamp(alpha·x + beta, 0, 1).
    HardSigmoid(f32, f32),
    /// x · clamp(x/6 + 1/2, 0, 1).
    HardSwish,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// x · sigmoid(alpha·x).
    Swish(f32),
}

impl Activation {
    /// The activation of one value (NaN passes through the clamping forms).
    #[inline(always)]
    pub fn eval(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => relu(v),
            Activation::Clip(lo, hi) => clip(v, lo, hi),
            Activation::HardSigmoid(a, b) => clip(a * v + b, 0.0, 1.0),
            Activation::HardSwish => v * clip(v * (1.0 / 6.0) + 0.5, 0.0, 1.0),
            Activation::Sigmoid => 1.0 / (1.0 + exp_f32(-v)),
            Activation::Swish(a) => v / (1.0 + exp_f32(-a * v)),
        }
    }

    /// The activation in double precision (for float64 outputs).
    pub fn eval_f64(self, v: f64) -> f64 {
        let clip = |v: f64, lo: f64, hi: f64| if v < lo { lo } else if v > hi { hi } else { v };
        match self {
            Activation::Identity => v,
            Activation::Relu => if v < 0.0 { 0.0 } else { v },
            Activation::Clip(lo, hi) => clip(v, lo as f64, hi as f64),
            Activation::HardSigmoid(a, b) => clip(a as f64 * v + b as f64, 0.0, 1.0),
            Activation::HardSwish => v * clip(v / 6.0 + 0.5, 0.0, 1.0),
            Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Activation::Swish(a) => v / (1.0 + (-a as f64 * v).exp()),
        }
    }

    /// Applies the activation in place; meant to be inlined into a caller already compiled for
    /// the wide ISA (see [`crate::simd::vectorized`]).
    #[inline(always)]
    pub fn apply_inline(self, xs: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => xs.iter_mut().for_each(|v| *v = relu(*v)),
            Activation::Clip(lo, hi) => xs.iter_mut().for_each(|v| *v = clip(*v, lo, hi)),
            Activation::HardSigmoid(a, b) => xs.iter_mut().for_each(|v| *v = clip(a * *v + b, 0.0, 1.0)),
            Activation::HardSwish => xs.iter_mut().for_each(|v| *v *= clip(*v * (1.0 / 6.0) + 0.5, 0.0, 1.0)),
            Activation::Sigmoid => xs.iter_mut().for_each(|v| *v = 1.0 / (1.0 + exp_f32(-*v))),
            Activation::Swish(a) => xs.iter_mut().for_each(|v| *v /= 1.0 + exp_f32(-a * *v)),
        }
    }

    /// Applies the activation in place with the CPU's widest vector ISA.
    pub fn apply(self, xs: &mut [f32]) {
        // SAFETY: one row of xs.len() contiguous elements.
        unsafe { self.apply_block(xs.as_mut_ptr(), 1, xs.len(), 0, 1) }
    }

    /// y[i] = act(y[i] + r[i]): a residual added to a finished output before its activation.
    /// Split over the calling thread's pool when long enough to pay for it.
    ///
    /// Panics if the lengths differ.
    pub fn add_apply(self, y: &mut [f32], r: &[f32]) {
        assert_eq!(y.len(), r.len(), "add_apply: residual length differs from the output's");
        // Pieces small enough to stay in L1 between the sum and the activation.
        const PIECE: usize = 2048;
        crate::par::split_mut(y, PIECE, 1 << 16, |g, part| {
            let r = &r[g * PIECE..g * PIECE + part.len()];
            for (y, r) in part.chunks_mut(PIECE).zip(r.chunks(PIECE)) {
                if self == Activation::Relu {
                    crate::simd::vectorized(#[inline(always)] || y.iter_mut().zip(r).for_each(|(y, r)| *y = relu(*y + *r)));
                } else {
                    crate::simd::vectorized(#[inline(always)] || y.iter_mut().zip(r).for_each(|(y, r)| *y += *r));
                    self.apply(y);
                }
            }
        });
    }

    /// Applies the activation to the `rows × cols` block of C at `c` (element (i, j) at
    /// `c[i·rsc + j·csc]`).
    ///
    /// # Safety
    /// Every element of the block must be valid for reads and writes and not aliased elsewhere.
    pub(crate) unsafe fn apply_block(self, c: *mut f32, rows: usize, cols: usize, rsc: isize, csc: isize) {
        if self == Activation::Identity {
            return;
        }
        if csc != 1 && rsc == 1 {
            // Contiguous columns (a product stored transposed): the same elements as a
            // cols × rows block with contiguous rows.
            // SAFETY: the same set of elements as the caller's block.
            return unsafe { self.apply_block(c, cols, rows, csc, 1) };
        }
        #[cfg(target_arch = "x86_64")]
        if csc == 1 && crate::gemm::best_isa() == crate::gemm::Isa::Avx512 {
            // SAFETY: AVX-512F was detected; the caller guarantees the block is valid.
            return unsafe { apply_avx512(self, c, rows, cols, rsc) };
        }
        #[cfg(target_arch = "x86_64")]
        if csc == 1 && crate::gemm::best_isa() == crate::gemm::Isa::Avx2 {
            // SAFETY: AVX2 and FMA were detected; the caller guarantees the block is valid.
            return unsafe { apply_avx2(self, c, rows, cols, rsc) };
        }
        crate::simd::vectorized(
            #[inline(always)]
            || {
                for i in 0..rows {
                    // SAFETY: the caller guarantees the block is valid (see above).
                    let row = unsafe { c.offset(i as isize * rsc) };
                    if csc == 1 {
                        // SAFETY: row i holds `cols` contiguous elements.
                        self.apply_inline(unsafe { std::slice::from_raw_parts_mut(row, cols) });
                    } else {
                        for j in 0..cols {
                            // SAFETY: element (i, j) lies in the block.
                            let p = unsafe { row.offset(j as isize * csc) };
                            unsafe { *p = self.eval(*p) };
                        }
                    }
                }
            },
        )
    }
}

/// GELU, applied by the GEMM epilogue after the biases (see [`crate::Epilogue::gelu`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gelu {
    /// x·(1 + erf(x/√2))/2, the ONNX Gelu default.
    Erf,
    /// x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2, Gelu with approximate = "tanh".
    Tanh,
}

impl Gelu {
    /// GELU of one value.
    #[inline(always)]
    pub fn eval(self, v: f32) -> f32 {
        match self {
            Gelu::Erf => gelu_f32(v),
            Gelu::Tanh => gelu_tanh_f32(v),
        }
    }

    /// Applies GELU to the `rows × cols` block at `c` (element (i, j) at `c[i·rsc + j·csc]`).
    ///
    /// # Safety
    /// Every element of the block must be valid for reads and writes and not aliased elsewhere.
    pub(crate) unsafe fn apply_block(self, c: *mut f32, rows: usize, cols: usize, rsc: isize, csc: isize) {
        if csc != 1 && rsc == 1 {
            // SAFETY: the same set of elements as the caller's block, as contiguous rows.
            return unsafe { self.apply_block(c, cols, rows, csc, 1) };
        }
        crate::simd::vectorized(
            #[inline(always)]
            || {
                for i in 0..rows {
                    // SAFETY: the caller guarantees the block is valid.
                    let row = unsafe { c.offset(i as isize * rsc) };
                    if csc == 1 {
                        // SAFETY: row i holds `cols` contiguous elements.
                        let r = unsafe { std::slice::from_raw_parts_mut(row, cols) };
                        match self {
                            Gelu::Erf => r.iter_mut().for_each(|v| *v = gelu_f32(*v)),
                            Gelu::Tanh => r.iter_mut().for_each(|v| *v = gelu_tanh_f32(*v)),
                        }
                    } else {
                        for j in 0..cols {
                            // SAFETY: element (i, j) lies in the block.
                            let p = unsafe { row.offset(j as isize * csc) };
                            unsafe { *p = self.eval(*p) };
                        }
                    }
                }
            },
        )
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn act512(act: Activation, x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // ln2^k / k! for k = 6 .. 1.
    const C: [f32; 6] = [1.540_353e-4, 1.333_355_8e-3, 9.618_129e-3, 5.550_411e-2, 2.402_265e-1, std::f32::consts::LN_2];
    // max(lo, x) and min(hi, x) return x when it is NaN.
    let clip = |x: __m512, lo: f32, hi: f32| _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), x));
    let logistic = |x: __m512, alpha: f32| {
        let one = _mm512_set1_ps(1.0);
        let z = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_set1_ps(-alpha), x), _mm512_set1_ps(-88.0)), _mm512_set1_ps(88.0));
        let t = _mm512_mul_ps(z, _mm512_set1_ps(std::f32::consts::LOG2_E));
        let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
        let f = _mm512_sub_ps(t, k);
        let mut q = _mm512_set1_ps(C[0]);
        for &c in &C[1..] {
            q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(c));
        }
        q = _mm512_fmadd_ps(q, f, one);
        let d = _mm512_add_ps(one, _mm512_scalef_ps(q, k));
        let r0 = _mm512_rcp14_ps(d);
        _mm512_mul_ps(r0, _mm512_fnmadd_ps(d, r0, _mm512_set1_ps(2.0)))
    };
    match act {
        Activation::Identity => x,
        Activation::Relu => _mm512_max_ps(_mm512_setzero_ps(), x),
        Activation::Clip(lo, hi) => clip(x, lo, hi),
        Activation::HardSigmoid(a, b) => clip(_mm512_fmadd_ps(_mm512_set1_ps(a), x, _mm512_set1_ps(b)), 0.0, 1.0),
        Activation::HardSwish => {
            _mm512_mul_ps(x, clip(_mm512_fmadd_ps(_mm512_set1_ps(1.0 / 6.0), x, _mm512_set1_ps(0.5)), 0.0, 1.0))
        }
        // The clamped z loses a NaN; it comes back through the product with x (Swish) or the
        // blend (Sigmoid).
        Activation::Sigmoid => _mm512_mask_mov_ps(logistic(x, 1.0), _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), x),
        Activation::Swish(a) => _mm512_mul_ps(x, logistic(x, a)),
    }
}

/// `act` on eight lanes with AVX2 and FMA. Sigmoid and Swish use e^z by Cody–Waite reduction
/// and the same polynomial as [`crate::vmath::exp_f32`], then a division (within a few ulp of the exact
/// logistic).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn act256(act: Activation, x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // max(lo, x) and min(hi, x) return x when it is NaN.
    let clip = |x: __m256, lo: f32, hi: f32| _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), x));
    let logistic = |x: __m256, alpha: f32| {
        let one = _mm256_set1_ps(1.0);
        // z = -alpha·x limited to ±88 (NaN becomes -88: max returns its second operand).
        let z = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_set1_ps(-alpha), x), _mm256_set1_ps(-88.0)), _mm256_set1_ps(88.0));
        let k = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(z, _mm256_set1_ps(crate::vmath::LOG2E)));
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(crate::vmath::LN2_LO), _mm256_fnmadd_ps(k, _mm256_set1_ps(crate::vmath::LN2_HI), z));
        // The polynomial in Estrin's form (shorter dependency chains than Horner's).
        let c = |i: usize| _mm256_set1_ps(crate::vmath::EXP_POLY[i]);
        let r2 = _mm256_mul_ps(r, r);
        let (a, b, h) = (_mm256_fmadd_ps(c(0), r, c(1)), _mm256_fmadd_ps(c(2), r, c(3)), _mm256_fmadd_ps(c(4), r, c(5)));
        let p = _mm256_fmadd_ps(_mm256_fmadd_ps(a, r2, b), r2, h);
        let e = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, one));
        // 2^k for k in [-127, 127] (2^-127 comes out as 0, below what 1 + e^z can resolve).
        let s = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127))));
        // 1/d by a division (a Newton-refined reciprocal was slower once exact at the limits).
        _mm256_div_ps(one, _mm256_fmadd_ps(e, s, one))
    };
    match act {
        Activation::Identity => x,
        Activation::Relu => _mm256_max_ps(_mm256_setzero_ps(), x),
        Activation::Clip(lo, hi) => clip(x, lo, hi),
        Activation::HardSigmoid(a, b) => clip(_mm256_fmadd_ps(_mm256_set1_ps(a), x, _mm256_set1_ps(b)), 0.0, 1.0),
        Activation::HardSwish => {
            _mm256_mul_ps(x, clip(_mm256_fmadd_ps(_mm256_set1_ps(1.0 / 6.0), x, _mm256_set1_ps(0.5)), 0.0, 1.0))
        }
        // The clamped z loses a NaN; it comes back through the product with x (Swish) or the
        // blend (Sigmoid).
        Activation::Sigmoid => _mm256_blendv_ps(logistic(x, 1.0), x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x)),
        Activation::Swish(a) => _mm256_mul_ps(x, logistic(x, a)),
    }
}

/// Applies `act` to the `rows × cols` block at `c` with row stride `rsc` (columns contiguous).
///
/// # Safety
/// AVX2 and FMA must be available and the block valid for reads and writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_avx2(act: Activation, c: *mut f32, rows: usize, cols: usize, rsc: isize) {
    use std::arch::x86_64::*;
    for i in 0..rows {
        let p = c.offset(i as isize * rsc);
        let mut j = 0;
        while j + 8 <= cols {
            _mm256_storeu_ps(p.add(j), act256(act, _mm256_loadu_ps(p.add(j))));
            j += 8;
        }
        if j < cols {
            // The tail through a zero-padded stack vector.
            let mut t = [0f32; 8];
            std::ptr::copy_nonoverlapping(p.add(j), t.as_mut_ptr(), cols - j);
            _mm256_storeu_ps(t.as_mut_ptr(), act256(act, _mm256_loadu_ps(t.as_ptr())));
            std::ptr::copy_nonoverlapping(t.as_ptr(), p.add(j), cols - j);
        }
    }
}

/// Applies `act` to the `rows × cols` block at `c` with row stride `rsc` (columns contiguous).
///
/// # Safety
/// AVX-512F must be available and the block valid for reads and writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn apply_avx512(act: Activation, c: *mut f32, rows: usize, cols: usize, rsc: isize) {
    use std::arch::x86_64::*;
    for i in 0..rows {
        let p = c.offset(i as isize * rsc);
        let mut j = 0;
        while j + 16 <= cols {
            _mm512_storeu_ps(p.add(j), act512(act, _mm512_loadu_ps(p.add(j))));
            j += 16;
        }
        if j < cols {
            let m = ((1u32 << (cols - j)) - 1) as __mmask16;
            _mm512_mask_storeu_ps(p.add(j), m, act512(act, _mm512_maskz_loadu_ps(m, p.add(j))));
        }
    }
}

#[inline(always)]
fn relu(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

#[inline(always)]
fn clip(v: f32, lo: f32, hi: f32) -> f32 {
    let t = if v < lo { lo } else { v };
    if t > hi {
        hi
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_definitions() {
        let xs: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.25).collect();
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::Clip(-1.0, 6.0),
            Activation::HardSigmoid(0.2, 0.5),
            Activation::HardSwish,
            Activation::Sigmoid,
            Activation::Swish(1.0),
            Activation::Swish(1.702),
        ];
        for act in acts {
            let want = |x: f64| -> f64 {
                match act {
                    Activation::Identity => x,
                    Activation::Relu => x.max(0.0),
                    Activation::Clip(lo, hi) => x.max(lo as f64).min(hi as f64),
                    Activation::HardSigmoid(a, b) => (a as f64 * x + b as f64).clamp(0.0, 1.0),
                    Activation::HardSwish => x * ((x + 3.0).clamp(0.0, 6.0) / 6.0),
                    Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
                    Activation::Swish(a) => x / (1.0 + (-(a as f64) * x).exp()),
                }
            };
            let mut got = xs.clone();
            act.apply(&mut got);
            let mut inl = xs.clone();
            act.apply_inline(&mut inl);
            for (&x, &g) in xs.iter().zip(&inl) {
                let w = want(x as f64);
                assert!((g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()), "{act:?}({x}) inline = {g}, want {w}");
            }
            for (&x, &g) in xs.iter().zip(&got) {
                let w = want(x as f64);
                assert!((g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()), "{act:?}({x}) = {g}, want {w}");
                assert!((act.eval(x) as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()));
                assert!((act.eval_f64(x as f64) - w).abs() <= 1e-12 * (1.0 + w.abs()));
            }
        }
        assert!(Activation::Relu.eval(f32::NAN).is_nan());
        for act in [Activation::Sigmoid, Activation::Swish(1.0)] {
            let mut v = vec![f32::NAN, f32::INFINITY, -200.0, 200.0];
            act.apply(&mut v);
            assert!(v[0].is_nan());
            assert_eq!(v[1], if act == Activation::Sigmoid { 1.0 } else { f32::INFINITY });
            assert!(v[2].abs() < 1e-30 && (v[3] - if act == Activation::Sigmoid { 1.0 } else { 200.0 }).abs() < 1e-4);
        }
        assert!(Activation::Clip(0.0, 1.0).eval(f32::NAN).is_nan());
    }

    #[test]
    fn block_with_strides() {
        // A 2×3 block inside a 3×4 buffer, column stride 1 and transposed.
        let mut c: Vec<f32> = (0..12).map(|i| i as f32 - 6.0).collect();
        unsafe { Activation::Relu.apply_block(c.as_mut_ptr().add(1), 2, 3, 4, 1) };
        assert_eq!(c, vec![-6.0, 0.0, 0.0, 0.0, -2.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let mut c: Vec<f32> = (0..12).map(|i| i as f32 - 6.0).collect();
        unsafe { Activation::Relu.apply_block(c.as_mut_ptr(), 2, 2, 1, 4) };
        assert_eq!(c, vec![0.0, 0.0, -4.0, -3.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn add_apply_matches_definition() {
        // Long enough to be split over two threads, with a partial last piece.
        let n = (1 << 17) + 2051;
        let y0: Vec<f32> = (0..n).map(|i| ((i * 7) % 29) as f32 * 0.25 - 3.5).collect();
        let r: Vec<f32> = (0..n).map(|i| ((i * 11) % 23) as f32 * 0.3 - 3.3).collect();
        for threads in [1, 2] {
            let _pool = crate::par::enter(crate::par::build_pool(threads));
            for act in [Activation::Identity, Activation::Relu, Activation::HardSwish, Activation::Sigmoid] {
                let mut y = y0.clone();
                act.add_apply(&mut y, &r);
                for (i, &got) in y.iter().enumerate() {
                    let v = y0[i] as f64 + r[i] as f64;
                    let want = match act {
                        Activation::Relu => v.max(0.0),
                        Activation::HardSwish => v * ((v + 3.0).clamp(0.0, 6.0) / 6.0),
                        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
                        _ => v,
                    };
                    assert!((got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "{act:?} threads {threads} at {i}: {got} vs {want}");
                }
            }
        }
    }
}
