//! Kernels shared by the elementwise operators: numeric element traits, strided broadcast loops
//! and vectorisable f32 approximations of exp, tanh and erf.

use kiln_tensor::{bf16, checked_numel, f16, Elem};

use crate::error::OpResult;
use crate::ops::util::broadcast_all;
use crate::ensure;

// ---------------------------------------------------------------------------------------------
// Element traits
// ---------------------------------------------------------------------------------------------

/// A numeric element type (every tensor dtype except bool and string).
pub trait Num: Elem + Copy + PartialOrd {
    const IS_FLOAT: bool;
    const IS_SIGNED: bool;
    fn to_f64(self) -> f64;
    /// Integer value (floats truncate and saturate, NaN → 0).
    fn to_i64(self) -> i64;
    fn to_u64(self) -> u64;
    /// `as`-style conversions (ints wrap, floats round to nearest).
    fn from_f64(v: f64) -> Self;
    fn from_i64(v: i64) -> Self;
    fn from_u64(v: u64) -> Self;
    fn zero() -> Self;
    fn n_add(self, o: Self) -> Self;
    fn n_sub(self, o: Self) -> Self;
    fn n_mul(self, o: Self) -> Self;
    /// Division; integers truncate toward zero and give 0 on division by zero.
    fn n_div(self, o: Self) -> Self;
    /// Remainder with the sign of the divisor (Python / numpy `mod`).
    fn rem_floor(self, o: Self) -> Self;
    /// Remainder with the sign of the dividend (C `fmod`).
    fn rem_trunc(self, o: Self) -> Self;
    fn n_abs(self) -> Self;
    fn n_neg(self) -> Self;
    fn n_sign(self) -> Self;
    /// Maximum / minimum that propagate NaN like numpy's `maximum` / `minimum`.
    fn n_max(self, o: Self) -> Self;
    fn n_min(self, o: Self) -> Self;
    fn is_nan_(self) -> bool;
}

macro_rules! impl_num_int {
    ($t:ty, $signed:expr) => {
        impl Num for $t {
            const IS_FLOAT: bool = false;
            const IS_SIGNED: bool = $signed;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self as u64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn zero() -> Self {
                0
            }
            #[inline(always)]
            fn n_add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline(always)]
            fn n_sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline(always)]
            fn n_mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            #[inline(always)]
            fn n_div(self, o: Self) -> Self {
                if o == 0 {
                    0
                } else {
                    self.wrapping_div(o)
                }
            }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn rem_floor(self, o: Self) -> Self {
                if o == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(o);
                if r != 0 && ((r < 0) != (o < 0)) {
                    r.wrapping_add(o)
                } else {
                    r
                }
            }
            #[inline(always)]
            fn rem_trunc(self, o: Self) -> Self {
                if o == 0 {
                    0
                } else {
                    self.wrapping_rem(o)
                }
            }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn n_abs(self) -> Self {
                if self < 0 {
                    (0 as $t).wrapping_sub(self)
                } else {
                    self
                }
            }
            #[inline(always)]
            fn n_neg(self) -> Self {
                (0 as $t).wrapping_sub(self)
            }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn n_sign(self) -> Self {
                if self > 0 {
                    1
                } else if self < 0 {
                    (0 as $t).wrapping_sub(1)
                } else {
                    0
                }
            }
            #[inline(always)]
            fn n_max(self, o: Self) -> Self {
                if self > o {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn n_min(self, o: Self) -> Self {
                if self < o {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn is_nan_(self) -> bool {
                false
            }
        }
    };
}
impl_num_int!(i8, true);
impl_num_int!(i16, true);
impl_num_int!(i32, true);
impl_num_int!(i64, true);
impl_num_int!(u8, false);
impl_num_int!(u16, false);
impl_num_int!(u32, false);
impl_num_int!(u64, false);

macro_rules! impl_num_float {
    ($t:ty, $to:expr, $from:expr) => {
        impl Num for $t {
            const IS_FLOAT: bool = true;
            const IS_SIGNED: bool = true;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                let f: fn($t) -> f64 = $to;
                f(self)
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self.to_f64() as i64
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self.to_f64() as u64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                let f: fn(f64) -> $t = $from;
                f(v)
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                <$t as Num>::from_f64(v as f64)
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                <$t as Num>::from_f64(v as f64)
            }
            #[inline(always)]
            fn zero() -> Self {
                <$t as Num>::from_f64(0.0)
            }
            #[inline(always)]
            fn n_add(self, o: Self) -> Self {
                self + o
            }
            #[inline(always)]
            fn n_sub(self, o: Self) -> Self {
                self - o
            }
            #[inline(always)]
            fn n_mul(self, o: Self) -> Self {
                self * o
            }
            #[inline(always)]
            fn n_div(self, o: Self) -> Self {
                self / o
            }
            #[inline(always)]
            fn rem_floor(self, o: Self) -> Self {
                let (a, b) = (self.to_f64(), o.to_f64());
                <$t as Num>::from_f64(py_mod(a, b))
            }
            #[inline(always)]
            fn rem_trunc(self, o: Self) -> Self {
                let (a, b) = (self.to_f64(), o.to_f64());
                <$t as Num>::from_f64(a % b)
            }
            #[inline(always)]
            fn n_abs(self) -> Self {
                <$t as Num>::from_f64(self.to_f64().abs())
            }
            #[inline(always)]
            fn n_neg(self) -> Self {
                -self
            }
            #[inline(always)]
            fn n_sign(self) -> Self {
                let v = self.to_f64();
                if v > 0.0 {
                    <$t as Num>::from_f64(1.0)
                } else if v < 0.0 {
                    <$t as Num>::from_f64(-1.0)
                } else {
                    self
                }
            }
            #[inline(always)]
            fn n_max(self, o: Self) -> Self {
                if self > o || self.is_nan_() {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn n_min(self, o: Self) -> Self {
                if self < o || self.is_nan_() {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            #[allow(clippy::eq_op)]
            fn is_nan_(self) -> bool {
                self != self
            }
        }
    };
}
impl_num_float!(f32, |x| x as f64, |v| v as f32);
impl_num_float!(f64, |x| x, |v| v);
impl_num_float!(f16, |x| x.to_f64(), f16::from_f64);
impl_num_float!(bf16, |x| x.to_f64(), bf16::from_f64);

/// Python-style float remainder: the result has the sign of the divisor (numpy `mod`).
#[inline(always)]
pub fn py_mod(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r == 0.0 {
        0f64.copysign(b)
    } else if (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
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

/// Float tensor element: computed in `R` (f32 for f32/f16/bf16, f64 for f64).
pub trait FloatElem: Num {
    type R: Real;
    fn to_r(self) -> Self::R;
    fn from_r(r: Self::R) -> Self;
}

impl FloatElem for f32 {
    type R = f32;
    #[inline(always)]
    fn to_r(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_r(r: f32) -> f32 {
        r
    }
}
impl FloatElem for f64 {
    type R = f64;
    #[inline(always)]
    fn to_r(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_r(r: f64) -> f64 {
        r
    }
}
impl FloatElem for f16 {
    type R = f32;
    #[inline(always)]
    fn to_r(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_r(r: f32) -> f16 {
        f16::from_f32(r)
    }
}
impl FloatElem for bf16 {
    type R = f32;
    #[inline(always)]
    fn to_r(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_r(r: f32) -> bf16 {
        bf16::from_f32(r)
    }
}

/// Applies `f` (in the computation type) to every element.
#[inline(always)]
pub fn map_float<T: FloatElem>(x: &mut [T], f: impl Fn(T::R) -> T::R) {
    for v in x.iter_mut() {
        *v = T::from_r(f(v.to_r()));
    }
}

// ---------------------------------------------------------------------------------------------
// Fast f32 math (branch-free, auto-vectorisable)
// ---------------------------------------------------------------------------------------------

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
    let xc = if x > 4.0 {
        4.0
    } else if x < -4.0 {
        -4.0
    } else {
        x
    };
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

// ---------------------------------------------------------------------------------------------
// Broadcast loops
// ---------------------------------------------------------------------------------------------

/// The iteration space of a broadcast: output shape, plus collapsed dims and per-input strides
/// (0 on broadcast dims). Adjacent dims are merged where every input is contiguous across them.
pub struct Walk {
    pub shape: Vec<usize>,
    pub numel: usize,
    dims: Vec<usize>,
    strides: Vec<Vec<usize>>,
}

impl Walk {
    pub fn new(shapes: &[&[usize]], lens: &[usize]) -> OpResult<Walk> {
        let shape = broadcast_all(shapes)?;
        let numel = checked_numel(&shape)?;
        for (s, &len) in shapes.iter().zip(lens) {
            let n = checked_numel(s)?;
            ensure!(n == len, "input of shape {s:?} has {len} elements");
        }
        let r = shape.len();
        let mut per: Vec<Vec<usize>> = Vec::with_capacity(shapes.len());
        for s in shapes {
            let off = r - s.len();
            let mut st = vec![0usize; r];
            let mut acc = 1usize;
            for i in (0..s.len()).rev() {
                st[i + off] = if s[i] == 1 { 0 } else { acc };
                acc *= s[i];
            }
            per.push(st);
        }
        let mut dims: Vec<usize> = Vec::new();
        let mut strides: Vec<Vec<usize>> = vec![Vec::new(); shapes.len()];
        for i in 0..r {
            let d = shape[i];
            if d == 1 {
                continue;
            }
            let mergeable = !dims.is_empty()
                && per.iter().zip(&strides).all(|(p, st)| st.last().copied() == Some(p[i] * d));
            if mergeable {
                if let Some(last) = dims.last_mut() {
                    *last *= d;
                }
                for (p, st) in per.iter().zip(strides.iter_mut()) {
                    if let Some(l) = st.last_mut() {
                        *l = p[i];
                    }
                }
            } else {
                dims.push(d);
                for (p, st) in per.iter().zip(strides.iter_mut()) {
                    st.push(p[i]);
                }
            }
        }
        if dims.is_empty() {
            dims.push(1);
            for st in strides.iter_mut() {
                st.push(0);
            }
        }
        Ok(Walk { shape, numel, dims, strides })
    }

    /// Calls `row(offsets, inner_strides, inner_len)` for each run of the innermost dim.
    #[inline(always)]
    fn rows<const N: usize>(&self, mut row: impl FnMut([usize; N], [usize; N], usize)) {
        if self.numel == 0 {
            return;
        }
        let rank = self.dims.len();
        let inner = self.dims[rank - 1];
        let mut inner_st = [0usize; N];
        for k in 0..N {
            inner_st[k] = self.strides[k][rank - 1];
        }
        let outer_rank = rank - 1;
        let mut idx = vec![0usize; outer_rank];
        let mut off = [0usize; N];
        let outer_n = self.numel / inner;
        for _ in 0..outer_n {
            row(off, inner_st, inner);
            let mut d = outer_rank;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                for k in 0..N {
                    off[k] += self.strides[k][d];
                }
                if idx[d] < self.dims[d] {
                    break;
                }
                for k in 0..N {
                    off[k] -= self.strides[k][d] * self.dims[d];
                }
                idx[d] = 0;
            }
        }
    }
}

/// Elementwise `f(a, b)` with multidirectional broadcasting. Returns the output shape and data.
pub fn binary<A, B, O>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    f: impl Fn(&A, &B) -> O,
) -> OpResult<(Vec<usize>, Vec<O>)> {
    let w = Walk::new(&[a_shape, b_shape], &[a.len(), b.len()])?;
    let mut out: Vec<O> = Vec::with_capacity(w.numel);
    w.rows::<2>(|[oa, ob], [sa, sb], n| match (sa, sb) {
        (1, 1) => out.extend(a[oa..oa + n].iter().zip(&b[ob..ob + n]).map(|(x, y)| f(x, y))),
        (1, _) => {
            let y = &b[ob];
            out.extend(a[oa..oa + n].iter().map(|x| f(x, y)))
        }
        (_, 1) => {
            let x = &a[oa];
            out.extend(b[ob..ob + n].iter().map(|y| f(x, y)))
        }
        _ => out.extend((0..n).map(|_| f(&a[oa], &b[ob]))),
    });
    Ok((w.shape, out))
}

/// `a = f(a, b)` in place, for a `b` that broadcasts to `a`'s shape. Returns false (and leaves
/// `a` untouched) when the broadcast result would be larger than `a`.
pub fn binary_in_place<A, B>(a: &mut [A], a_shape: &[usize], b: &[B], b_shape: &[usize], f: impl Fn(&mut A, &B)) -> OpResult<bool> {
    let w = Walk::new(&[a_shape, b_shape], &[a.len(), b.len()])?;
    if w.shape != a_shape {
        return Ok(false);
    }
    w.rows::<2>(|[oa, ob], [sa, sb], n| match (sa, sb) {
        (1, 1) => a[oa..oa + n].iter_mut().zip(&b[ob..ob + n]).for_each(|(x, y)| f(x, y)),
        (1, 0) => {
            let y = &b[ob];
            a[oa..oa + n].iter_mut().for_each(|x| f(x, y))
        }
        _ => (0..n).for_each(|i| f(&mut a[oa + i * sa], &b[ob + i * sb])),
    });
    Ok(true)
}

/// Elementwise `f(a, b, c)` with multidirectional broadcasting.
pub fn ternary<A, B, C, O>(
    a: (&[A], &[usize]),
    b: (&[B], &[usize]),
    c: (&[C], &[usize]),
    f: impl Fn(&A, &B, &C) -> O,
) -> OpResult<(Vec<usize>, Vec<O>)> {
    let w = Walk::new(&[a.1, b.1, c.1], &[a.0.len(), b.0.len(), c.0.len()])?;
    let (a, b, c) = (a.0, b.0, c.0);
    let mut out: Vec<O> = Vec::with_capacity(w.numel);
    w.rows::<3>(|[oa, ob, oc], [sa, sb, sc], n| {
        if sa == 1 && sb == 1 && sc == 1 {
            out.extend(
                a[oa..oa + n].iter().zip(&b[ob..ob + n]).zip(&c[oc..oc + n]).map(|((x, y), z)| f(x, y, z)),
            )
        } else {
            out.extend((0..n).map(|i| f(&a[oa + i * sa], &b[ob + i * sb], &c[oc + i * sc])))
        }
    });
    Ok((w.shape, out))
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

    #[test]
    fn python_mod_signs() {
        assert_eq!(py_mod(-3.0, 2.0), 1.0);
        assert_eq!(py_mod(3.0, -2.0), -1.0);
        assert_eq!(py_mod(-1.0, f64::INFINITY), f64::INFINITY);
        assert!(py_mod(0.0, -2.0).is_sign_negative());
        assert_eq!((-7i32).rem_floor(3), 2);
        assert_eq!((-7i32).rem_trunc(3), -1);
        assert_eq!(7i32.n_div(0), 0);
        assert_eq!((-7i32).n_div(2), -3);
    }

    #[test]
    fn broadcast_walk_bias_and_outer() {
        let a = [1, 2, 3, 4, 5, 6];
        let (s, o) = binary(&a, &[2, 3], &[10, 20, 30], &[3], |x, y| x + y).unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(o, vec![11, 22, 33, 14, 25, 36]);
        let (s, o) = binary(&[1, 2], &[2, 1], &[10, 20, 30], &[1, 3], |x, y| x * y).unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(o, vec![10, 20, 30, 20, 40, 60]);
        let (s, o) = binary(&[5], &[], &[1, 2], &[2], |x, y| x - y).unwrap();
        assert_eq!((s, o), (vec![2], vec![4, 3]));
        let (s, o) = binary(&[1, 2, 3, 4], &[2, 1, 2], &[10, 20, 30], &[3, 1], |x, y| x + y).unwrap();
        assert_eq!(s, vec![2, 3, 2]);
        assert_eq!(o, vec![11, 12, 21, 22, 31, 32, 13, 14, 23, 24, 33, 34]);
        assert!(binary(&[1, 2], &[2], &[1, 2, 3], &[3], |x, y| x + y).is_err());
        let (s, o) = binary::<i32, i32, i32>(&[], &[0, 3], &[1, 2, 3], &[3], |x, y| x + y).unwrap();
        assert_eq!((s, o), (vec![0, 3], vec![]));
    }

    #[test]
    fn ternary_broadcast() {
        let (s, o) = ternary(
            (&[true, false][..], &[2, 1][..]),
            (&[1, 2, 3][..], &[3][..]),
            (&[9][..], &[][..]),
            |c, x, y| if *c { *x } else { *y },
        )
        .unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(o, vec![1, 2, 3, 9, 9, 9]);
    }
}
