//! Vectorised elementwise math over f32 slices (exp, sigmoid, tanh, erf, GELU), in place: branch-free
//! polynomial kernels compiled per ISA (AVX-512, AVX2+FMA, portable; wasm32 builds vectorise the
//! portable body with simd128) and chosen at run time. Accurate to a few ulp of the correctly
//! rounded result, exact at the limits: ±inf, NaN propagation, saturation for large |x|.

pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that n·LN2_HI is exact for the exponents used.
pub(crate) const LN2_HI: f32 = 0.693_359_375;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2^23: adding it rounds to an integer held in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;
/// exp(x) is 0 (after rounding) below this and +inf above `EXP_HI`.
const EXP_LO: f32 = -104.0;
const EXP_HI: f32 = 88.8;

/// Coefficients of e^r ≈ 1 + r + r²·p(r) on |r| ≤ ln2/2, highest first (Cephes expf).
pub(crate) const EXP_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];

/// e^x for one value (the scalar form of the slice kernels; same results).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Comparisons are false for NaN, which therefore passes through unchanged.
    let xc = if x < EXP_LO { EXP_LO } else if x > EXP_HI { EXP_HI } else { x };
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // e^r on |r| <= ln2/2 (Cephes expf coefficients).
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = p * r + c;
    }
    let e = p * (r * r) + r + 1.0;
    // 2^n as two factors so that n in [-150, 128] neither wraps nor loses subnormals early.
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) as u32) << 23);
    let s2 = f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    let y = e * s1 * s2;
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// 1 / (1 + e^-x): 0 at -inf, 1 at +inf, NaN for NaN.
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// tanh(x): odd polynomial near 0, 1 − 2/(e^{2|x|} + 1) elsewhere, saturating to ±1.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let ax = f32::from_bits(x.to_bits() & 0x7fff_ffff);
    let sign = x.to_bits() & 0x8000_0000;
    // |x| < 0.625: x + x·z·P(z), z = x² (Cephes tanhf coefficients).
    let z = x * x;
    let mut p = -5.704_988_7e-3f32;
    p = p * z + 2.063_908_9e-2;
    p = p * z + -5.373_971_6e-2;
    p = p * z + 1.333_144_2e-1;
    p = p * z + -3.333_328_2e-1;
    let small = ax + ax * z * p;
    let e = exp_f32(2.0 * ax);
    let big = 1.0 - 2.0 / (e + 1.0);
    let t = if ax < 0.625 { small } else { big };
    f32::from_bits(t.to_bits() | sign)
}

/// erf(x): rational approximation on [-4, 4] (absolute error below 5e-7), ±1 outside, NaN for
/// NaN.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    // clamp keeps NaN, which therefore reaches the result.
    let xc = x.clamp(-4.0, 4.0);
    let x2 = xc * xc;
    let mut p = -2.726_142_3e-10f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    p *= xc;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329e-3;
    q = q * x2 + -1.426_473_9e-2;
    let r = p / q;
    if x > 4.0 {
        1.0
    } else if x < -4.0 {
        -1.0
    } else {
        r
    }
}

/// GELU in its exact form, x·(1 + erf(x/√2))/2.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU in its tanh form, x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2.
#[inline(always)]
pub fn gelu_tanh_f32(x: f32) -> f32 {
    const S: f32 = 0.797_884_6; // √(2/π)
    0.5 * x * (1.0 + tanh_f32(S * (x + 0.044_715 * x * x * x)))
}

#[inline(always)]
fn exp_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = exp_f32(*x));
}

#[inline(always)]
fn sigmoid_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = sigmoid_f32(*x));
}

#[inline(always)]
fn tanh_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = tanh_f32(*x));
}

#[inline(always)]
fn gelu_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = gelu_f32(*x));
}

#[inline(always)]
fn gelu_tanh_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = gelu_tanh_f32(*x));
}

/// Which compiled copy of the kernels runs on this machine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    Portable,
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

#[inline]
fn level() -> Level {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        use crate::gemm::Isa;
        match crate::gemm::best_isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => return Level::Avx512,
            Isa::Avx2 => return Level::Avx2,
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    Level::Portable
}

type Kernel = fn(&mut [f32]);
type UnsafeKernel = unsafe fn(&mut [f32]);

macro_rules! dispatched {
    ($(#[$doc:meta])* $name:ident, $body:ident, $avx2:ident, $avx512:ident) => {
        $(#[$doc])*
        pub fn $name(xs: &mut [f32]) {
            run_at(level(), xs, $body, $avx2, $avx512)
        }

        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2(xs: &mut [f32]) {
            $body(xs)
        }

        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        unsafe fn $avx2(xs: &mut [f32]) {
            $body(xs)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn $avx512(xs: &mut [f32]) {
            $body(xs)
        }

        #[cfg(not(target_arch = "x86_64"))]
        unsafe fn $avx512(xs: &mut [f32]) {
            $body(xs)
        }
    };
}

#[inline]
#[allow(unused_variables)]
fn run_at(lv: Level, xs: &mut [f32], portable: Kernel, avx2: UnsafeKernel, avx512: UnsafeKernel) {
    match lv {
        // SAFETY: AVX2 and FMA were detected on this machine.
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Level::Avx2 => unsafe { avx2(xs) },
        // SAFETY: AVX-512F (with AVX2 and FMA) was detected on this machine.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512(xs) },
        Level::Portable => portable(xs),
    }
}

dispatched!(
    /// xs[i] = e^xs[i].
    exp, exp_body, exp_avx2, exp_avx512
);
dispatched!(
    /// xs[i] = 1 / (1 + e^-xs[i]).
    sigmoid, sigmoid_body, sigmoid_avx2, sigmoid_avx512
);
dispatched!(
    /// xs[i] = tanh(xs[i]).
    tanh, tanh_body, tanh_avx2, tanh_avx512
);
dispatched!(
    /// xs[i] = GELU(xs[i]), exact (erf) form.
    gelu, gelu_body, gelu_avx2, gelu_avx512
);
dispatched!(
    /// xs[i] = GELU(xs[i]), tanh form.
    gelu_tanh, gelu_tanh_body, gelu_tanh_avx2, gelu_tanh_avx512
);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn levels() -> Vec<Level> {
        let mut v = vec![Level::Portable];
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            v.push(Level::Avx2);
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            v.push(Level::Avx512);
        }
        v
    }

    fn inputs(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..=n).map(|i| lo + (hi - lo) * i as f32 / n as f32).collect();
        v.extend([0.0, -0.0, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-30, -1e-30, 1e-8, -1e-8, 0.625, -0.625, 0.6249999, -0.6249999]);
        v
    }

    /// Checks `kernel` against `want` (computed in f64) with a relative tolerance, or an absolute
    /// one below `tiny`.
    fn check(name: &str, xs: &[f32], kernel: (Kernel, UnsafeKernel, UnsafeKernel), want: impl Fn(f64) -> f64, rel: f64, tiny: f64) {
        for lv in levels() {
            let mut got = xs.to_vec();
            run_at(lv, &mut got, kernel.0, kernel.1, kernel.2);
            for (&x, &g) in xs.iter().zip(&got) {
                let w = want(x as f64);
                let err = (g as f64 - w).abs();
                assert!(
                    err <= rel * w.abs() || err <= tiny,
                    "{name}({x:e}) at {lv:?}: got {g:e}, want {w:e} (rel err {:e})",
                    err / w.abs()
                );
            }
        }
    }

    fn specials(kernel: (Kernel, UnsafeKernel, UnsafeKernel)) -> Vec<Vec<f32>> {
        let xs = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e30, -1e30, 100.0, -100.0, 89.0, -89.0, 88.7, -87.0, -103.0, -110.0, f32::MAX, f32::MIN];
        levels()
            .into_iter()
            .map(|lv| {
                // Odd lengths exercise the vector remainders.
                let mut v = xs.to_vec();
                run_at(lv, &mut v, kernel.0, kernel.1, kernel.2);
                v
            })
            .collect()
    }

    const EXP: (Kernel, UnsafeKernel, UnsafeKernel) = (exp_body, exp_avx2, exp_avx512);
    const SIG: (Kernel, UnsafeKernel, UnsafeKernel) = (sigmoid_body, sigmoid_avx2, sigmoid_avx512);
    const TANH: (Kernel, UnsafeKernel, UnsafeKernel) = (tanh_body, tanh_avx2, tanh_avx512);

    #[test]
    fn exp_matches_f64() {
        check("exp", &inputs(-87.0, 88.5, 200_001), EXP, f64::exp, 2.5e-7, 0.0);
        // Subnormal results: absolute error within one subnormal step.
        check("exp", &inputs(-103.0, -87.0, 10_001), EXP, f64::exp, 2.5e-7, 1.5e-45);
    }

    #[test]
    fn exp_specials() {
        for v in specials(EXP) {
            assert_eq!(v[0], f32::INFINITY);
            assert_eq!(v[1], 0.0);
            assert!(v[2].is_nan());
            assert_eq!(v[3], f32::INFINITY);
            assert_eq!(v[4], 0.0);
            assert_eq!(v[5], f32::INFINITY);
            assert!(((v[6] as f64) / (-100f64).exp() - 1.0).abs() < 0.05);
            assert_eq!(v[7], f32::INFINITY);
            assert!(v[8] > 0.0 && v[8] < 1e-38);
            assert!(((v[9] as f64) / (88.7f32 as f64).exp() - 1.0).abs() < 3e-7);
            assert!(v[11] >= 0.0 && v[11] < 1e-44);
            assert_eq!(v[12], 0.0);
            assert_eq!(v[13], f32::INFINITY);
            assert_eq!(v[14], 0.0);
        }
    }

    #[test]
    fn sigmoid_matches_f64() {
        let want = |x: f64| 1.0 / (1.0 + (-x).exp());
        check("sigmoid", &inputs(-87.0, 40.0, 200_001), SIG, want, 4e-7, 0.0);
        check("sigmoid", &inputs(-8.0, 8.0, 100_001), SIG, want, 3e-7, 0.0);
        // Tiny results keep a bounded absolute error.
        check("sigmoid", &inputs(-104.0, -87.0, 1001), SIG, want, 4e-7, 1e-38);
    }

    #[test]
    fn sigmoid_specials() {
        for v in specials(SIG) {
            assert_eq!(v[0], 1.0);
            assert_eq!(v[1], 0.0);
            assert!(v[2].is_nan());
            assert_eq!(v[3], 1.0);
            assert_eq!(v[4], 0.0);
            assert_eq!(v[5], 1.0);
            assert!(v[6] >= 0.0 && v[6] < 1e-38);
            assert_eq!(v[13], 1.0);
            assert_eq!(v[14], 0.0);
            assert!(v.iter().skip(3).all(|x| !x.is_nan()));
        }
    }

    #[test]
    fn tanh_matches_f64() {
        check("tanh", &inputs(-10.0, 10.0, 200_001), TANH, f64::tanh, 4e-7, 0.0);
        check("tanh", &inputs(-1.0, 1.0, 100_001), TANH, f64::tanh, 4e-7, 0.0);
        check("tanh", &inputs(-1e-3, 1e-3, 10_001), TANH, f64::tanh, 2.5e-7, 0.0);
        check("tanh", &inputs(-50.0, 50.0, 10_001), TANH, f64::tanh, 2.5e-7, 0.0);
    }

    #[test]
    fn tanh_specials() {
        for v in specials(TANH) {
            assert_eq!(v[0], 1.0);
            assert_eq!(v[1], -1.0);
            assert!(v[2].is_nan());
            assert_eq!(&v[3..], &[1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0]);
        }
        let mut z = [0.0f32, -0.0];
        tanh(&mut z);
        assert_eq!(z[0].to_bits(), 0);
        assert_eq!(z[1].to_bits(), (-0.0f32).to_bits());
    }

    const GELU: (Kernel, UnsafeKernel, UnsafeKernel) = (gelu_body, gelu_avx2, gelu_avx512);
    const GELU_TANH: (Kernel, UnsafeKernel, UnsafeKernel) = (gelu_tanh_body, gelu_tanh_avx2, gelu_tanh_avx512);

    /// erf in f64 by its Maclaurin series (|x| <= 3) or the continued fraction of erfc, both
    /// independent of the kernel's rational approximation.
    pub(crate) fn erf_f64(x: f64) -> f64 {
        let ax = x.abs();
        let r = if ax <= 3.0 {
            let (mut term, mut sum, mut n) = (ax, ax, 0.0);
            while term.abs() > 1e-17 * sum.abs() {
                n += 1.0;
                term *= -ax * ax / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) = e^{-x²}/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))).
            let mut f = ax;
            for k in (1..60).rev() {
                f = ax + k as f64 / 2.0 / f;
            }
            1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f
        };
        r.copysign(x)
    }

    #[test]
    fn gelu_matches_f64() {
        let want = |x: f64| 0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2));
        // The erf approximation has an absolute error near 5e-7, relative to 1 + erf.
        check("gelu", &inputs(-10.0, 10.0, 100_001), GELU, want, 2e-6, 2e-6);
        let want_t = |x: f64| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh());
        check("gelu_tanh", &inputs(-10.0, 10.0, 100_001), GELU_TANH, want_t, 2e-6, 2e-6);
        for x in [0.5f64, 1.0, 2.0, 3.5, 4.5] {
            assert!((erf_f32(x as f32) as f64 - erf_f64(x)).abs() < 1e-6, "erf({x})");
        }
    }

    #[test]
    fn gelu_specials() {
        for kernel in [GELU, GELU_TANH] {
            for v in specials(kernel) {
                // GELU(-inf) is -inf·0 in either form: NaN, as the unfused graph computes it.
                assert_eq!(v[0], f32::INFINITY);
                assert!(v[2].is_nan());
                assert_eq!(v[3], 1e30);
                assert_eq!(v[4].abs(), 0.0);
                assert_eq!(v[5], 100.0);
                assert_eq!(v[6].abs(), 0.0);
            }
        }
    }

    #[test]
    fn public_entry_points() {
        let mut v = [0.0f32, 1.0, -1.0];
        exp(&mut v);
        assert!((v[0] - 1.0).abs() < 1e-7 && (v[1] - std::f32::consts::E).abs() < 1e-6);
        let mut s = [0.0f32, 2.0];
        sigmoid(&mut s);
        assert!((s[0] - 0.5).abs() < 1e-7 && (s[1] - 0.880_797_1).abs() < 1e-6);
    }
}
