//! Elementwise float math shared by the operators: vectorisable f32 approximations of exp, tanh
//! and erf, the `Real` arithmetic trait (f32 and f64), and row kernels over f32 slices (unary
//! functions in place, softmax rows, LayerNormalization rows, IsNaN). The f32 entry points are
//! not inlined into their callers, so their loops are compiled (and vectorised) with this
//! crate's optimisation settings.

use crate::simd::{max_f32, sum_f32, sum_sq_dev_f32, vectorized};

/// e^x for f32 (Cephes polynomial, ~1 ulp; results below 2^-126 flush to 0).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const HI: f32 = 88.376_26;
    const LO: f32 = -87.336_54;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer in the low bits.
    let xc = if x > HI {
        HI
    } else if x < LO {
        LO
    } else {
        x
    };
    let t = xc * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = xc - n * 0.693_359_4;
    let r = r - n * -2.121_944_4e-4;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1)
        * z
        + r
        + 1.0;
    let bits = (t.to_bits() as i32).wrapping_sub(0x4B40_0000).wrapping_add(127).wrapping_shl(23);
    let y = p * f32::from_bits(bits as u32);
    if x > 88.722_84 {
        f32::INFINITY
    } else if x < LO {
        0.0
    } else {
        y
    }
}

/// tanh for f32: odd polynomial near 0, 1 - 2/(e^{2|x|}+1) elsewhere.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let ax = x.abs();
    let z = x * x;
    let small = ((((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
        - 3.333_328_2e-1)
        * z
        * x
        + x;
    let e = exp_f32(2.0 * ax);
    let big = (1.0 - 2.0 / (e + 1.0)).copysign(x);
    if ax < 0.625 {
        small
    } else {
        big
    }
}

/// erf for f32: rational approximation on [-4, 4] (|error| < 5e-7), ±1 outside.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    crate::vmath::erf_f32(x)
}

/// erf for f64: erf(x) = 2/sqrt(pi) * e^{-x^2} * sum_n (2x^2)^n x / (2n+1)!!, a series of
/// positive terms (no cancellation); |x| >= 6 gives ±1 to f64 precision.
pub fn erf_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    if ax >= 6.0 {
        return 1f64.copysign(x);
    }
    let x2 = ax * ax;
    let mut term = ax;
    let mut sum = ax;
    let mut n = 0u32;
    while n < 500 {
        n += 1;
        term *= 2.0 * x2 / (2 * n + 1) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    let r = 2.0 / std::f64::consts::PI.sqrt() * (-x2).exp() * sum;
    r.min(1.0).copysign(x)
}

/// Float arithmetic used by the float-only operators (implemented for f32 and f64).
pub trait Real:
    Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    fn c(v: f64) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn asin(self) -> Self;
    fn acos(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn tanh(self) -> Self;
    fn asinh(self) -> Self;
    fn acosh(self) -> Self;
    fn atanh(self) -> Self;
    fn erf(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn round_even(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, e: Self) -> Self;
}

macro_rules! impl_real {
    ($t:ident, $exp:expr, $tanh:expr, $erf:expr) => {
        impl Real for $t {
            #[inline(always)]
            fn c(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn exp(self) -> Self {
                let f: fn($t) -> $t = $exp;
                f(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                let f: fn($t) -> $t = $tanh;
                f(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                let f: fn($t) -> $t = $erf;
                f(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                $t::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                $t::ln_1p(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                $t::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                $t::cos(self)
            }
            #[inline(always)]
            fn tan(self) -> Self {
                $t::tan(self)
            }
            #[inline(always)]
            fn asin(self) -> Self {
                $t::asin(self)
            }
            #[inline(always)]
            fn acos(self) -> Self {
                $t::acos(self)
            }
            #[inline(always)]
            fn atan(self) -> Self {
                $t::atan(self)
            }
            #[inline(always)]
            fn sinh(self) -> Self {
                $t::sinh(self)
            }
            #[inline(always)]
            fn cosh(self) -> Self {
                $t::cosh(self)
            }
            #[inline(always)]
            fn asinh(self) -> Self {
                $t::asinh(self)
            }
            #[inline(always)]
            fn acosh(self) -> Self {
                $t::acosh(self)
            }
            #[inline(always)]
            fn atanh(self) -> Self {
                $t::atanh(self)
            }
            #[inline(always)]
            fn floor(self) -> Self {
                $t::floor(self)
            }
            #[inline(always)]
            fn ceil(self) -> Self {
                $t::ceil(self)
            }
            #[inline(always)]
            fn round_even(self) -> Self {
                $t::round_ties_even(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                $t::powf(self, e)
            }
        }
    };
}
impl_real!(f32, exp_f32, tanh_f32, erf_f32);
impl_real!(f64, f64::exp, f64::tanh, erf_f64);

/// Float-only unary functions (attribute parameters inline).
#[derive(Clone, Copy, Debug)]
pub enum FloatUnary {
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Erf,
    Floor,
    Ceil,
    Round,
    Sigmoid,
    HardSwish,
    Softplus,
    Softsign,
    Mish,
    LeakyRelu(f32),
    Elu(f32),
    Selu(f32, f32),
    Celu(f32),
    HardSigmoid(f32, f32),
    ThresholdedRelu(f32),
    Swish(f32),
    Gelu(bool),
}

#[inline(always)]
pub fn sigmoid<R: Real>(v: R) -> R {
    R::c(1.0) / (R::c(1.0) + (-v).exp())
}

#[inline(always)]
pub fn softplus<R: Real>(v: R) -> R {
    // max(v, 0) + log1p(exp(-|v|)): no overflow for large |v|.
    let m = if v > R::c(0.0) { v } else { R::c(0.0) };
    m + (-v.abs()).exp().ln_1p()
}

#[inline(always)]
fn map<R: Real>(x: &mut [R], f: impl Fn(R) -> R) {
    for v in x.iter_mut() {
        *v = f(*v);
    }
}

/// Applies `kind` to every element, in place (the loop for one function is chosen outside it).
#[inline(always)]
pub fn float_unary<R: Real>(kind: FloatUnary, x: &mut [R]) {
    let c = |v: f64| R::c(v);
    let zero = c(0.0);
    let one = c(1.0);
    match kind {
        FloatUnary::Sqrt => map(x, |v| v.sqrt()),
        FloatUnary::Reciprocal => map(x, |v| one / v),
        FloatUnary::Exp => map(x, |v| v.exp()),
        FloatUnary::Log => map(x, |v| v.ln()),
        FloatUnary::Sin => map(x, |v| v.sin()),
        FloatUnary::Cos => map(x, |v| v.cos()),
        FloatUnary::Tan => map(x, |v| v.tan()),
        FloatUnary::Asin => map(x, |v| v.asin()),
        FloatUnary::Acos => map(x, |v| v.acos()),
        FloatUnary::Atan => map(x, |v| v.atan()),
        FloatUnary::Sinh => map(x, |v| v.sinh()),
        FloatUnary::Cosh => map(x, |v| v.cosh()),
        FloatUnary::Tanh => map(x, |v| v.tanh()),
        FloatUnary::Asinh => map(x, |v| v.asinh()),
        FloatUnary::Acosh => map(x, |v| v.acosh()),
        FloatUnary::Atanh => map(x, |v| v.atanh()),
        FloatUnary::Erf => map(x, |v| v.erf()),
        FloatUnary::Floor => map(x, |v| v.floor()),
        FloatUnary::Ceil => map(x, |v| v.ceil()),
        FloatUnary::Round => map(x, |v| v.round_even()),
        FloatUnary::Sigmoid => map(x, sigmoid),
        FloatUnary::HardSwish => {
            let (a, b) = (c(1.0 / 6.0), c(0.5));
            map(x, move |v| {
                let t = a * v + b;
                let t = if t < zero { zero } else if t > one { one } else { t };
                v * t
            })
        }
        FloatUnary::Softplus => map(x, softplus),
        FloatUnary::Softsign => map(x, |v| v / (one + v.abs())),
        FloatUnary::Mish => map(x, |v| v * softplus(v).tanh()),
        FloatUnary::LeakyRelu(a) => {
            let a = c(a as f64);
            map(x, move |v| if v < zero { a * v } else { v })
        }
        FloatUnary::Elu(a) => {
            let a = c(a as f64);
            map(x, move |v| if v < zero { a * (v.exp() - one) } else { v })
        }
        FloatUnary::Selu(a, g) => {
            let (a, g) = (c(a as f64), c(g as f64));
            map(x, move |v| if v > zero { g * v } else { g * (a * v.exp() - a) })
        }
        FloatUnary::Celu(a) => {
            let a = c(a as f64);
            map(x, move |v| {
                let pos = if v > zero { v } else { zero };
                let neg = a * ((v / a).exp() - one);
                let neg = if neg < zero { neg } else { zero };
                pos + neg
            })
        }
        FloatUnary::HardSigmoid(a, b) => {
            let (a, b) = (c(a as f64), c(b as f64));
            map(x, move |v| {
                let t = a * v + b;
                if t < zero {
                    zero
                } else if t > one {
                    one
                } else {
                    t
                }
            })
        }
        FloatUnary::ThresholdedRelu(a) => {
            let a = c(a as f64);
            map(x, move |v| if v > a { v } else { zero })
        }
        FloatUnary::Swish(a) => {
            let a = c(a as f64);
            map(x, move |v| v * sigmoid(a * v))
        }
        FloatUnary::Gelu(false) => {
            let (h, s) = (c(0.5), c(std::f64::consts::FRAC_1_SQRT_2));
            map(x, move |v| h * v * (one + (v * s).erf()))
        }
        FloatUnary::Gelu(true) => {
            let (h, s, k) = (c(0.5), c((2.0 / std::f64::consts::PI).sqrt()), c(0.044715));
            map(x, move |v| h * v * (one + (s * (v + k * v * v * v)).tanh()))
        }
    }
}

/// [`float_unary`] on f32, vectorised for the CPU's widest ISA.
#[inline(never)]
pub fn float_unary_f32(kind: FloatUnary, x: &mut [f32]) {
    vectorized(#[inline(always)] || float_unary(kind, x))
}

/// [`float_unary`] on f64, vectorised for the CPU's widest ISA.
#[inline(never)]
pub fn float_unary_f64(kind: FloatUnary, x: &mut [f64]) {
    vectorized(#[inline(always)] || float_unary(kind, x))
}

/// Softmax (or, with `log`, LogSoftmax) of each contiguous row of `len` values of `y`, in place,
/// vectorised. LogSoftmax keeps the inputs and writes the result in a second pass.
#[inline(never)]
pub fn softmax_rows_f32(y: &mut [f32], len: usize, log: bool) {
    vectorized(#[inline(always)] || {
        for row in y.chunks_mut(len) {
            let max = max_f32(row);
            if !log {
                row.iter_mut().for_each(|v| *v = exp_f32(*v - max));
                let inv = 1.0 / sum_f32(row);
                row.iter_mut().for_each(|v| *v *= inv);
            } else {
                let mut sum = 0f32;
                for chunk in row.chunks(256) {
                    let mut e = [0f32; 256];
                    for (d, &v) in e.iter_mut().zip(chunk) {
                        *d = exp_f32(v - max);
                    }
                    sum += sum_f32(&e[..chunk.len()]);
                }
                let l = max + sum.ln();
                row.iter_mut().for_each(|v| *v -= l);
            }
        }
    })
}

/// One row of LayerNormalization (or, with `rms`, RMSNormalization without centring):
/// `y = (x - mean) * inv * scale (+ bias)` with `inv = 1 / sqrt(mean square deviation + eps)`.
/// Returns `(mean, inv)` (mean 0 with `rms`). `scale`, `bias` and `y` have `x.len()` values.
#[inline(never)]
pub fn layer_norm_row_f32(x: &[f32], scale: &[f32], bias: Option<&[f32]>, eps: f32, rms: bool, y: &mut [f32]) -> (f32, f32) {
    vectorized(#[inline(always)] || {
        let n = x.len() as f32;
        let mean = if rms { 0.0 } else { sum_f32(x) / n };
        let inv = 1.0 / (sum_sq_dev_f32(x, mean) / n + eps).sqrt();
        match bias {
            Some(b) => {
                for (((o, &v), &g), &bb) in y.iter_mut().zip(x).zip(scale).zip(b) {
                    *o = (v - mean) * inv * g + bb;
                }
            }
            None => {
                for ((o, &v), &g) in y.iter_mut().zip(x).zip(scale) {
                    *o = (v - mean) * inv * g;
                }
            }
        }
        (mean, inv)
    })
}

/// Whether each value is NaN (IsNaN on f32).
#[inline(never)]
pub fn is_nan_f32(x: &[f32]) -> Vec<bool> {
    x.iter().map(|v| v.is_nan()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_known_values() {
        for (x, e) in [(0.0f32, 1.0f64), (1.0, std::f64::consts::E), (-1.0, 0.36787944117144233), (10.0, 22026.465794806718), (-20.0, 2.061153622438558e-9), (50.0, 5.184705528587072e21)] {
            let y = exp_f32(x) as f64;
            assert!(((y - e) / e).abs() < 1e-6, "exp({x}) = {y}, want {e}");
        }
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn fast_tanh_matches_known_values() {
        for (x, t) in [(0.1f32, 0.09966799462495582f64), (0.5, 0.46211715726000974), (1.0, 0.7615941559557649), (-2.0, -0.9640275800758169), (1e-5, 1e-5), (20.0, 1.0)] {
            let y = tanh_f32(x) as f64;
            assert!(((y - t) / t).abs() < 1e-6, "tanh({x}) = {y}, want {t}");
        }
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
    }

    #[test]
    fn erf_matches_known_values() {
        let cases = [(0.5, 0.5204998778130465), (1.0, 0.8427007929497149), (2.0, 0.9953222650189527), (-0.1, -0.1124629160182849), (3.5, 0.9999992569016276)];
        for (x, e) in cases {
            assert!((erf_f32(x as f32) as f64 - e).abs() < 1e-6, "erf_f32({x})");
            assert!((erf_f64(x) - e).abs() < 1e-14, "erf_f64({x}) = {}", erf_f64(x));
        }
        assert_eq!(erf_f64(10.0), 1.0);
        assert_eq!(erf_f32(-10.0), -1.0);
    }

    /// Softmax and LogSoftmax rows against the plain f64 definitions (rows of 1, odd lengths
    /// and more than one 256-value chunk).
    #[test]
    fn softmax_rows_match_definition() {
        for len in [1usize, 3, 17, 300] {
            let x: Vec<f32> = (0..2 * len).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7).collect();
            for log in [false, true] {
                let mut y = x.clone();
                softmax_rows_f32(&mut y, len, log);
                for (row, got) in x.chunks(len).zip(y.chunks(len)) {
                    let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
                    let sum: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
                    for (&v, &g) in row.iter().zip(got) {
                        let want = if log { v as f64 - m - sum.ln() } else { (v as f64 - m).exp() / sum };
                        assert!((g as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "len {len} log {log}: {g} vs {want}");
                    }
                }
            }
        }
    }

    /// erf by Simpson's rule on 2/sqrt(pi) * exp(-t^2) (independent of `erf_f64`).
    fn erf_simpson(z: f64) -> f64 {
        let n = 2000;
        let h = z / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(z);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    /// A few unary functions on f32 against their f64 definitions (vectorised body and tail).
    #[test]
    fn float_unary_f32_matches_definitions() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.31).collect();
        let cases: [(FloatUnary, fn(f64) -> f64); 5] = [
            (FloatUnary::Sigmoid, |v| 1.0 / (1.0 + (-v).exp())),
            (FloatUnary::Gelu(false), |v| 0.5 * v * (1.0 + erf_simpson(v / std::f64::consts::SQRT_2))),
            (FloatUnary::Tanh, f64::tanh),
            (FloatUnary::HardSwish, |v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
            (FloatUnary::LeakyRelu(0.1), |v| if v < 0.0 { 0.1 * v } else { v }),
        ];
        for (kind, f) in cases {
            let mut y = x.clone();
            float_unary_f32(kind, &mut y);
            for (&v, &g) in x.iter().zip(&y) {
                let want = f(v as f64);
                assert!((g as f64 - want).abs() < 1e-5 * (1.0 + want.abs()), "{kind:?}({v}) = {g}, want {want}");
            }
        }
    }

    /// LayerNorm rows (with and without bias, RMS) against the two-pass f64 definition.
    #[test]
    fn layer_norm_rows_match_definition() {
        for len in [1usize, 5, 33] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 7 % 11) as f32 - 4.0) * 0.9).collect();
            let g: Vec<f32> = (0..len).map(|i| 0.5 + i as f32 * 0.1).collect();
            let b: Vec<f32> = (0..len).map(|i| i as f32 * -0.2).collect();
            for rms in [false, true] {
                for bias in [None, Some(&b[..])] {
                    let mut y = vec![0f32; len];
                    let (mean, inv) = layer_norm_row_f32(&x, &g, bias, 1e-5, rms, &mut y);
                    let m = if rms { 0.0 } else { x.iter().map(|&v| v as f64).sum::<f64>() / len as f64 };
                    let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / len as f64;
                    let want_inv = 1.0 / (var + 1e-5).sqrt();
                    assert!((mean as f64 - m).abs() < 1e-5 && (inv as f64 - want_inv).abs() < 1e-4 * want_inv);
                    for i in 0..len {
                        let want = (x[i] as f64 - m) * want_inv * g[i] as f64 + bias.map_or(0.0, |b| b[i] as f64);
                        assert!((y[i] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "len {len} rms {rms}: {} vs {want}", y[i]);
                    }
                }
            }
        }
    }

    #[test]
    fn is_nan_flags() {
        assert_eq!(is_nan_f32(&[0.0, f32::NAN, f32::INFINITY, -f32::NAN]), vec![false, true, false, true]);
    }
}
