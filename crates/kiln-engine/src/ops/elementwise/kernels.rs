//! Kernels shared by the elementwise operators: numeric element traits, strided broadcast loops
//! and vectorisable f32 approximations of exp, tanh and erf.

use kiln_tensor::{bf16, checked_numel, f16, Elem};

use crate::error::OpResult;
use crate::ops::util::broadcast_all;
use crate::ensure;

pub use kiln_kernels::elementwise::Real;
use kiln_kernels::elementwise::{float_unary_f32, float_unary_f64, FloatUnary};

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


/// Float tensor element: computed in `R` (f32 for f32/f16/bf16, f64 for f64).
pub trait FloatElem: Num {
    type R: Real;
    fn to_r(self) -> Self::R;
    fn from_r(r: Self::R) -> Self;
    /// Applies the unary function in place (computed in `R`).
    fn unary(kind: FloatUnary, x: &mut [Self]);
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
    fn unary(kind: FloatUnary, x: &mut [f32]) {
        float_unary_f32(kind, x)
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
    fn unary(kind: FloatUnary, x: &mut [f64]) {
        float_unary_f64(kind, x)
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
    fn unary(kind: FloatUnary, x: &mut [f16]) {
        unary_through_f32(kind, x)
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
    fn unary(kind: FloatUnary, x: &mut [bf16]) {
        unary_through_f32(kind, x)
    }
}

/// A unary function on 16-bit floats: widened to f32 a chunk at a time, computed, rounded back.
fn unary_through_f32<T: FloatElem<R = f32>>(kind: FloatUnary, x: &mut [T]) {
    let mut buf = [0f32; 256];
    for chunk in x.chunks_mut(256) {
        let b = &mut buf[..chunk.len()];
        for (d, v) in b.iter_mut().zip(chunk.iter()) {
            *d = v.to_r();
        }
        float_unary_f32(kind, b);
        for (v, &d) in chunk.iter_mut().zip(b.iter()) {
            *v = T::from_r(d);
        }
    }
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
