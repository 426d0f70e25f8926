//! Tensor-manipulation operators (ai.onnx): reshaping, layout, slicing, indexing, padding, sorting,
//! plus the dtype-generic element kernels they share.

mod index;
mod layout;
mod slicing;
mod sort;

use std::cmp::Ordering;

use kiln_tensor::{bf16, f16, Dim, Elem, Shape, Tensor, TensorData, Value, ValueType};

use crate::error::{OpError, OpResult};
use crate::op::Inputs;
use crate::registry::Registry;

pub fn register(r: &mut Registry) {
    layout::register(r);
    slicing::register(r);
    index::register(r);
    sort::register(r);
}

/// Element operations the generic kernels need, implemented for every tensor element type.
/// Operations a type does not have (arithmetic on strings) return `None`.
pub(crate) trait E: Elem {
    fn add(&self, o: &Self) -> Option<Self>;
    fn mul(&self, o: &Self) -> Option<Self>;
    /// Total order: numeric order, NaN above everything, -0 equal to +0.
    fn order(&self, o: &Self) -> Ordering;
    fn is_zero(&self) -> bool;
    fn one() -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
}

macro_rules! impl_e_int {
    ($($t:ty),*) => {$(
        impl E for $t {
            fn add(&self, o: &Self) -> Option<Self> { Some(self.wrapping_add(*o)) }
            fn mul(&self, o: &Self) -> Option<Self> { Some(self.wrapping_mul(*o)) }
            fn order(&self, o: &Self) -> Ordering { self.cmp(o) }
            fn is_zero(&self) -> bool { *self == 0 }
            fn one() -> Option<Self> { Some(1) }
            fn from_f64(v: f64) -> Option<Self> { Some(v as $t) }
        }
    )*};
}
impl_e_int!(i8, i16, i32, i64, u8, u16, u32, u64);

fn float_order(a: f64, b: f64) -> Ordering {
    match a.partial_cmp(&b) {
        Some(o) => o,
        None => a.is_nan().cmp(&b.is_nan()),
    }
}

macro_rules! impl_e_float {
    ($($t:ty),*) => {$(
        impl E for $t {
            fn add(&self, o: &Self) -> Option<Self> { Some(self + o) }
            fn mul(&self, o: &Self) -> Option<Self> { Some(self * o) }
            fn order(&self, o: &Self) -> Ordering { float_order(*self as f64, *o as f64) }
            fn is_zero(&self) -> bool { *self == 0.0 }
            fn one() -> Option<Self> { Some(1.0) }
            fn from_f64(v: f64) -> Option<Self> { Some(v as $t) }
        }
    )*};
}
impl_e_float!(f32, f64);

macro_rules! impl_e_half {
    ($($t:ty),*) => {$(
        impl E for $t {
            fn add(&self, o: &Self) -> Option<Self> { Some(<$t>::from_f32(self.to_f32() + o.to_f32())) }
            fn mul(&self, o: &Self) -> Option<Self> { Some(<$t>::from_f32(self.to_f32() * o.to_f32())) }
            fn order(&self, o: &Self) -> Ordering { float_order(self.to_f64(), o.to_f64()) }
            fn is_zero(&self) -> bool { self.to_f32() == 0.0 }
            fn one() -> Option<Self> { Some(<$t>::ONE) }
            fn from_f64(v: f64) -> Option<Self> { Some(<$t>::from_f64(v)) }
        }
    )*};
}
impl_e_half!(f16, bf16);

macro_rules! impl_e_low {
    ($($t:ident: $val:ident, $from:expr),*) => {$(
        impl E for kiln_tensor::$t {
            fn add(&self, _: &Self) -> Option<Self> { None }
            fn mul(&self, _: &Self) -> Option<Self> { None }
            fn order(&self, o: &Self) -> Ordering { float_order(self.$val() as f64, o.$val() as f64) }
            fn is_zero(&self) -> bool { self.$val() == Default::default() }
            fn one() -> Option<Self> { <Self as E>::from_f64(1.0) }
            fn from_f64(v: f64) -> Option<Self> { let f: fn(f64) -> Self = $from; Some(f(v)) }
        }
    )*};
}
impl_e_low!(
    F8E4M3FN: to_f32, |v| kiln_tensor::F8E4M3FN::from_f64(v, true),
    F8E4M3FNUZ: to_f32, |v| kiln_tensor::F8E4M3FNUZ::from_f64(v, true),
    F8E5M2: to_f32, |v| kiln_tensor::F8E5M2::from_f64(v, true),
    F8E5M2FNUZ: to_f32, |v| kiln_tensor::F8E5M2FNUZ::from_f64(v, true),
    F4E2M1: to_f32, |v| kiln_tensor::F4E2M1::from_f64(v, true),
    F8E8M0: to_f32, |v| kiln_tensor::F8E8M0::from_f64(v, true, kiln_tensor::E8M0Round::Up),
    I4: to_i64, |v| kiln_tensor::I4::wrapping(v as i64),
    U4: to_i64, |v| kiln_tensor::U4::wrapping(v as i64),
    I2: to_i64, |v| kiln_tensor::I2::wrapping(v as i64),
    U2: to_i64, |v| kiln_tensor::U2::wrapping(v as i64)
);

impl E for bool {
    fn add(&self, o: &Self) -> Option<Self> {
        Some(*self || *o)
    }
    fn mul(&self, o: &Self) -> Option<Self> {
        Some(*self && *o)
    }
    fn order(&self, o: &Self) -> Ordering {
        self.cmp(o)
    }
    fn is_zero(&self) -> bool {
        !*self
    }
    fn one() -> Option<Self> {
        Some(true)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v != 0.0)
    }
}

impl E for String {
    fn add(&self, _: &Self) -> Option<Self> {
        None
    }
    fn mul(&self, _: &Self) -> Option<Self> {
        None
    }
    fn order(&self, o: &Self) -> Ordering {
        self.cmp(o)
    }
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
    fn one() -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
}

/// The same-dtype slice of `d`, or an error naming both dtypes.
pub(crate) fn same<'a, T: Elem>(d: &'a TensorData, what: &str) -> OpResult<&'a [T]> {
    T::slice(d).ok_or_else(|| OpError(format!("{what} must be {} like the data, got {}", T::DTYPE, d.dtype())))
}

pub(crate) fn tensor(shape: Vec<usize>, data: TensorData) -> OpResult<Tensor> {
    Ok(Tensor::new(shape, data)?)
}

pub(crate) fn one_out(t: Tensor) -> OpResult<Vec<Value>> {
    Ok(vec![Value::Tensor(t)])
}

pub(crate) fn numel(shape: &[usize]) -> OpResult<usize> {
    Ok(kiln_tensor::checked_numel(shape)?)
}

/// An integer list from attribute `attr` if the node has it, else from input `input` if present.
pub(crate) fn attr_or_input(attr: &Option<Vec<i64>>, inputs: &Inputs, input: usize) -> OpResult<Option<Vec<i64>>> {
    if let Some(a) = attr {
        return Ok(Some(a.clone()));
    }
    match inputs.opt_tensor(input)? {
        Some(t) => Ok(Some(t.to_i64_vec()?)),
        None => Ok(None),
    }
}

/// Like `attr_or_input` but at load time, from a constant input (None if the input is not constant).
pub(crate) fn attr_or_const(attr: &Option<Vec<i64>>, consts: &[Option<&Tensor>], input: usize) -> Option<Option<Vec<i64>>> {
    if let Some(a) = attr {
        return Some(Some(a.clone()));
    }
    match consts.get(input) {
        Some(Some(t)) => t.to_i64_vec().ok().map(Some),
        _ => None,
    }
}

/// Type of input `i` at load time, split into dtype and (maybe) shape.
pub(crate) fn in_type<'a>(inputs: &[Option<&'a ValueType>], i: usize) -> Option<(kiln_tensor::DType, Option<&'a Shape>)> {
    match inputs.get(i).copied().flatten()? {
        ValueType::Tensor { dtype, shape } => Some((*dtype, shape.as_ref())),
        _ => None,
    }
}

pub(crate) fn tensor_type(dtype: kiln_tensor::DType, shape: Option<Shape>) -> Vec<ValueType> {
    vec![ValueType::Tensor { dtype, shape }]
}

/// A shape of the given rank with every dim unknown.
pub(crate) fn unknown_shape(rank: usize) -> Shape {
    Shape((0..rank).map(|_| Dim::unknown()).collect())
}

/// Resolves an axis against `rank` (negative counts from the back), naming the op on error.
pub(crate) fn axis_of(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(OpError(format!("axis {axis} is out of range for a rank-{rank} tensor")));
    }
    Ok(a as usize)
}

/// Copies the strided view (`offset`, `shape`, `strides` in elements, strides may be 0 or negative)
/// of `src` into a new row-major vector. Callers guarantee the view lies inside `src`.
pub(crate) fn strided<T: Clone + Default>(src: &[T], offset: usize, shape: &[usize], strides: &[isize]) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    // Drop unit dims and merge dims that are contiguous with each other.
    let mut dims: Vec<(usize, isize)> = Vec::with_capacity(shape.len());
    for (&d, &s) in shape.iter().zip(strides) {
        if d == 1 {
            continue;
        }
        if let Some(last) = dims.last_mut() {
            if last.1 == s * d as isize {
                *last = (last.0 * d, s);
                continue;
            }
        }
        dims.push((d, s));
    }
    let Some((inner_n, inner_s)) = dims.pop() else {
        out.push(src[offset].clone());
        return out;
    };
    // Blocked 2-D transpose: the row dim reads contiguously while the inner dim jumps.
    if inner_s != 1 && inner_s != 0 && inner_n >= 8 {
        if let Some(&(rows, 1)) = dims.last() {
            if rows >= 8 {
                dims.pop();
                return blocked_transpose(src, offset, &dims, rows, inner_n, inner_s, n);
            }
        }
    }
    let mut idx = vec![0usize; dims.len()];
    let mut base = offset as isize;
    loop {
        let b = base as usize;
        if inner_s == 1 {
            out.extend_from_slice(&src[b..b + inner_n]);
        } else if inner_s == 0 {
            out.extend(std::iter::repeat_n(src[b].clone(), inner_n));
        } else {
            let mut p = base;
            for _ in 0..inner_n {
                out.push(src[p as usize].clone());
                p += inner_s;
            }
        }
        let mut k = dims.len();
        loop {
            if k == 0 {
                return out;
            }
            k -= 1;
            idx[k] += 1;
            base += dims[k].1;
            if idx[k] < dims[k].0 {
                break;
            }
            base -= dims[k].1 * dims[k].0 as isize;
            idx[k] = 0;
        }
    }
}

fn blocked_transpose<T: Clone + Default>(
    src: &[T],
    offset: usize,
    outer: &[(usize, isize)],
    rows: usize,
    cols: usize,
    col_stride: isize,
    n: usize,
) -> Vec<T> {
    const B: usize = 32;
    let mut out = vec![T::default(); n];
    let block = rows * cols;
    let mut idx = vec![0usize; outer.len()];
    let mut base = offset as isize;
    let mut o0 = 0usize;
    loop {
        let dst = &mut out[o0..o0 + block];
        for r0 in (0..rows).step_by(B) {
            let r1 = (r0 + B).min(rows);
            for c0 in (0..cols).step_by(B) {
                let c1 = (c0 + B).min(cols);
                for c in c0..c1 {
                    let sc = base + c as isize * col_stride;
                    for r in r0..r1 {
                        dst[r * cols + c] = src[(sc + r as isize) as usize].clone();
                    }
                }
            }
        }
        o0 += block;
        let mut k = outer.len();
        loop {
            if k == 0 {
                return out;
            }
            k -= 1;
            idx[k] += 1;
            base += outer[k].1;
            if idx[k] < outer[k].0 {
                break;
            }
            base -= outer[k].1 * outer[k].0 as isize;
            idx[k] = 0;
        }
    }
}

/// Strided view copy for any dtype.
pub(crate) fn strided_data(d: &TensorData, offset: usize, shape: &[usize], strides: &[isize]) -> TensorData {
    struct M<'a>(usize, &'a [usize], &'a [isize]);
    impl Mover for M<'_> {
        fn run<T: Clone + Default>(&self, v: &[T]) -> Vec<T> {
            strided(v, self.0, self.1, self.2)
        }
    }
    move_data(d, &M(offset, shape, strides))
}

/// A copy that only moves elements: every element it returns is a clone of one of `v`.
pub(crate) trait Mover {
    fn run<T: Clone + Default>(&self, v: &[T]) -> Vec<T>;
}

/// Applies `m` to the data. Numbers and bools are moved as unsigned words of their width (the
/// same bits), so f32, i32 and u32 share one instance of the copy loop, and so on (code size).
pub(crate) fn move_data(d: &TensorData, m: &impl Mover) -> TensorData {
    use TensorData as D;
    match d {
        D::F32(v) => D::F32(via_words::<f32, u32>(v, m)),
        D::I32(v) => D::I32(via_words::<i32, u32>(v, m)),
        D::U32(v) => D::U32(m.run(v)),
        D::F64(v) => D::F64(via_words::<f64, u64>(v, m)),
        D::I64(v) => D::I64(via_words::<i64, u64>(v, m)),
        D::U64(v) => D::U64(m.run(v)),
        D::F16(v) => D::F16(via_words::<f16, u16>(v, m)),
        D::BF16(v) => D::BF16(via_words::<bf16, u16>(v, m)),
        D::I16(v) => D::I16(via_words::<i16, u16>(v, m)),
        D::U16(v) => D::U16(m.run(v)),
        D::I8(v) => D::I8(via_words::<i8, u8>(v, m)),
        D::Bool(v) => D::Bool(via_words::<bool, u8>(v, m)),
        D::U8(v) => D::U8(m.run(v)),
        D::String(v) => D::String(m.run(v)),
        // The one-byte wrappers move as their byte (the u8 instance) with a conversion each way.
        D::F8E4M3FN(v) => D::F8E4M3FN(via_byte(v, m, |x| x.0, kiln_tensor::F8E4M3FN)),
        D::F8E4M3FNUZ(v) => D::F8E4M3FNUZ(via_byte(v, m, |x| x.0, kiln_tensor::F8E4M3FNUZ)),
        D::F8E5M2(v) => D::F8E5M2(via_byte(v, m, |x| x.0, kiln_tensor::F8E5M2)),
        D::F8E5M2FNUZ(v) => D::F8E5M2FNUZ(via_byte(v, m, |x| x.0, kiln_tensor::F8E5M2FNUZ)),
        D::U4(v) => D::U4(via_byte(v, m, |x| x.0, kiln_tensor::U4)),
        D::I4(v) => D::I4(via_byte(v, m, |x| x.0 as u8, |b| kiln_tensor::I4(b as i8))),
        D::F4E2M1(v) => D::F4E2M1(via_byte(v, m, |x| x.0, kiln_tensor::F4E2M1)),
        D::F8E8M0(v) => D::F8E8M0(via_byte(v, m, |x| x.0, kiln_tensor::F8E8M0)),
        D::U2(v) => D::U2(via_byte(v, m, |x| x.0, kiln_tensor::U2)),
        D::I2(v) => D::I2(via_byte(v, m, |x| x.0 as u8, |b| kiln_tensor::I2(b as i8))),
    }
}

/// `m` on the bytes of a one-byte wrapper type.
fn via_byte<T: Copy>(v: &[T], m: &impl Mover, to: fn(T) -> u8, from: fn(u8) -> T) -> Vec<T> {
    let bytes: Vec<u8> = v.iter().map(|&x| to(x)).collect();
    m.run(&bytes).into_iter().map(from).collect()
}

/// `m` on `v` viewed as words `W` (an unsigned integer of the same size and alignment as `T`).
fn via_words<T: Copy + Default, W: Copy + Default>(v: &[T], m: &impl Mover) -> Vec<T> {
    if std::mem::size_of::<T>() != std::mem::size_of::<W>() || std::mem::align_of::<T>() != std::mem::align_of::<W>() {
        return m.run(v);
    }
    // SAFETY: T and W have the same size and alignment and W (an unsigned integer) is valid for
    // every bit pattern, so `v` can be read as words.
    let words: &[W] = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<W>(), v.len()) };
    let mut out = std::mem::ManuallyDrop::new(m.run(words));
    // SAFETY: the allocation has T's size and alignment, and every word in it is a copy of an
    // element of `v` (the `Mover` contract), hence a valid T.
    unsafe { Vec::from_raw_parts(out.as_mut_ptr().cast::<T>(), out.len(), out.capacity()) }
}

/// Row-major strides as isize.
pub(crate) fn istrides(shape: &[usize]) -> Vec<isize> {
    kiln_tensor::strides_of(shape).into_iter().map(|s| s as isize).collect()
}

/// Transposes `d` (of `shape`) by `perm` (already validated).
pub(crate) fn permute(d: &TensorData, shape: &[usize], perm: &[usize]) -> (Vec<usize>, TensorData) {
    let st = istrides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out_strides: Vec<isize> = perm.iter().map(|&p| st[p]).collect();
    let data = strided_data(d, 0, &out_shape, &out_strides);
    (out_shape, data)
}

/// Takes, along `axis` of a tensor viewed as [outer, dim, inner], the slices `sel` (each < dim).
pub(crate) fn take<T: Clone>(v: &[T], outer: usize, dim: usize, inner: usize, sel: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * sel.len() * inner);
    for o in 0..outer {
        let base = o * dim * inner;
        if inner == 1 {
            out.extend(sel.iter().map(|&i| v[base + i].clone()));
        } else {
            for &i in sel {
                let s = base + i * inner;
                out.extend_from_slice(&v[s..s + inner]);
            }
        }
    }
    out
}

pub(crate) fn take_data(d: &TensorData, outer: usize, dim: usize, inner: usize, sel: &[usize]) -> TensorData {
    struct M<'a>(usize, usize, usize, &'a [usize]);
    impl Mover for M<'_> {
        fn run<T: Clone + Default>(&self, v: &[T]) -> Vec<T> {
            take(v, self.0, self.1, self.2, self.3)
        }
    }
    move_data(d, &M(outer, dim, inner, sel))
}

/// Index meaning "the fill value" in `gather_fill`.
pub(crate) const FILL: usize = usize::MAX;

fn gather_fill<T: Clone>(v: &[T], idx: &[usize], fill: &T) -> Vec<T> {
    idx.iter().map(|&i| if i == FILL { fill.clone() } else { v[i].clone() }).collect()
}

/// How a padding-style gather obtains its fill value.
pub(crate) enum Fill<'a> {
    /// The element type's zero (0, false, "").
    Zero,
    /// A float attribute converted to the element type.
    Float(f64),
    /// Element 0 of a tensor of the same dtype (zero if it is empty).
    Tensor(&'a Tensor),
}

fn fill_value<T: E>(fill: &Fill) -> OpResult<T> {
    match fill {
        Fill::Zero => Ok(T::default()),
        Fill::Float(f) => T::from_f64(*f).ok_or_else(|| OpError(format!("a numeric fill value cannot be used for {} data", T::DTYPE))),
        Fill::Tensor(t) => Ok(same::<T>(t.data(), "the constant value")?.first().cloned().unwrap_or_default()),
    }
}

/// Builds a tensor of `shape` whose element k is `d[idx[k]]`, or the fill value where idx is FILL.
pub(crate) fn gather_with_fill(d: &TensorData, idx: &[usize], fill: &Fill) -> OpResult<TensorData> {
    Ok(kiln_tensor::map_data!(d, v => { let f = fill_value(fill)?; gather_fill(v, idx, &f) }))
}

/// Flat source indices for an output whose position along each axis a maps to `maps[a][o]`
/// (None: fill). `in_shape` is the source shape.
pub(crate) fn axis_map_indices(in_shape: &[usize], maps: &[Vec<Option<usize>>]) -> OpResult<Vec<usize>> {
    let out_shape: Vec<usize> = maps.iter().map(|m| m.len()).collect();
    let n = numel(&out_shape)?;
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    let st = kiln_tensor::strides_of(in_shape);
    fn rec(axis: usize, base: Option<usize>, maps: &[Vec<Option<usize>>], st: &[usize], sizes: &[usize], out: &mut Vec<usize>) {
        if axis == maps.len() {
            out.push(base.unwrap_or(FILL));
            return;
        }
        for m in &maps[axis] {
            match (base, m) {
                (Some(b), Some(s)) => rec(axis + 1, Some(b + s * st[axis]), maps, st, sizes, out),
                _ => out.extend(std::iter::repeat_n(FILL, sizes[axis])),
            }
        }
    }
    // sizes[a]: number of output elements under one index of axis a.
    let mut sizes = vec![1usize; maps.len()];
    for a in (0..maps.len().saturating_sub(1)).rev() {
        sizes[a] = sizes[a + 1] * out_shape[a + 1];
    }
    rec(0, Some(0), maps, &st, &sizes, &mut out);
    Ok(out)
}

/// Product of a symbolic dim list if all are known.
pub(crate) fn fixed_product(dims: &[Dim]) -> Option<usize> {
    dims.iter().map(Dim::fixed).try_fold(1usize, |a, d| d.map(|d| a * d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_transpose_matches_hand_result() {
        // [[0,1,2],[3,4,5]] transposed.
        let v: Vec<i32> = (0..6).collect();
        assert_eq!(strided(&v, 0, &[3, 2], &[1, 3]), vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn strided_blocked_transpose() {
        let (r, c) = (9usize, 10usize);
        let v: Vec<usize> = (0..r * c).collect();
        let t = strided(&v, 0, &[c, r], &[1, c as isize]);
        for i in 0..c {
            for j in 0..r {
                assert_eq!(t[i * r + j], j * c + i);
            }
        }
    }

    #[test]
    fn strided_negative_and_broadcast() {
        let v = vec![1, 2, 3];
        assert_eq!(strided(&v, 2, &[3], &[-1]), vec![3, 2, 1]);
        assert_eq!(strided(&v, 0, &[2, 3], &[0, 1]), vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn axis_maps_with_fill() {
        // 1x2 source, pad one column of fill on the left.
        let idx = axis_map_indices(&[1, 2], &[vec![Some(0)], vec![None, Some(0), Some(1)]]).unwrap();
        assert_eq!(idx, vec![FILL, 0, 1]);
    }
}
