//! Tensor-manipulation operators (ai.onnx): reshaping, layout, slicing, indexing, padding, sorting,
//! plus the dtype-generic element kernels they share.

mod index;
mod layout;
mod slicing;
mod sort;

use std::borrow::Cow;
use std::cmp::Ordering;

use kiln_tensor::{bf16, f16, DType, Dim, Elem, Shape, Tensor, TensorData, Value, ValueType};

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

/// Elements as values of a type with the same order: f32, f64, i64, u64 and strings as they are,
/// other floats widened to f32, signed integers to i64, unsigned integers and bools to u64 (all
/// exact, so order, NaN placement and ties are unchanged). The ordering kernels then have one
/// instance for each of these five types instead of one per element type (code size).
pub(crate) enum Keys<'a> {
    F32(Cow<'a, [f32]>),
    F64(&'a [f64]),
    I64(Cow<'a, [i64]>),
    U64(Cow<'a, [u64]>),
    Str(&'a [String]),
}

pub(crate) fn order_keys(d: &TensorData) -> Keys<'_> {
    use TensorData as D;
    fn w<T: Copy, K>(v: &[T], f: fn(T) -> K) -> Cow<'static, [K]>
    where
        [K]: ToOwned<Owned = Vec<K>>,
    {
        Cow::Owned(v.iter().map(|&x| f(x)).collect())
    }
    match d {
        D::F32(v) => Keys::F32(Cow::Borrowed(v)),
        D::F64(v) => Keys::F64(v),
        D::I64(v) => Keys::I64(Cow::Borrowed(v)),
        D::U64(v) => Keys::U64(Cow::Borrowed(v)),
        D::String(v) => Keys::Str(v),
        D::F16(v) => Keys::F32(w(v, |x| x.to_f32())),
        D::BF16(v) => Keys::F32(w(v, |x| x.to_f32())),
        D::F8E4M3FN(v) => Keys::F32(w(v, |x| x.to_f32())),
        D::F8E4M3FNUZ(v) => Keys::F32(w(v, |x| x.to_f32())),
        D::F8E5M2(v) => Keys::F32(w(v, |x| x.to_f32())),
        D::F8E5M2FNUZ(v) => Keys::F32(w(v, |x| x.to_f32())),
        D::F4E2M1(v) => Keys::F32(w(v, |x| x.to_f32())),
        D::F8E8M0(v) => Keys::F32(w(v, |x| x.to_f32())),
        D::I8(v) => Keys::I64(w(v, i64::from)),
        D::I16(v) => Keys::I64(w(v, i64::from)),
        D::I32(v) => Keys::I64(w(v, i64::from)),
        D::I4(v) => Keys::I64(w(v, |x| x.to_i64())),
        D::I2(v) => Keys::I64(w(v, |x| x.to_i64())),
        D::U8(v) => Keys::U64(w(v, u64::from)),
        D::U16(v) => Keys::U64(w(v, u64::from)),
        D::U32(v) => Keys::U64(w(v, u64::from)),
        D::Bool(v) => Keys::U64(w(v, u64::from)),
        D::U4(v) => Keys::U64(w(v, |x| x.to_i64() as u64)),
        D::U2(v) => Keys::U64(w(v, |x| x.to_i64() as u64)),
    }
}

/// A copy that only moves elements of several inputs of one type: every element it returns is a
/// clone of an element of one of `parts`.
pub(crate) trait MoverN {
    fn run<T: Clone + Default + Send + Sync>(&self, parts: &[&[T]]) -> OpResult<Vec<T>>;
}

/// Applies `m` to inputs of one dtype, moving numbers and bools as unsigned words of their
/// width as [`move_data`] does (one instance of `m` per width, not per type).
pub(crate) fn move_data_n(parts: &[&TensorData], m: &impl MoverN) -> OpResult<TensorData> {
    use TensorData as D;
    let dtype = parts.first().ok_or_else(|| OpError::new("internal: no inputs to move"))?.dtype();
    let mismatch = || OpError(format!("inputs mix {dtype} with another type"));
    // One typed view per width; the 1-byte wrapper types are copied to bytes first.
    let mut bytes_owned: Vec<Vec<u8>> = Vec::new();
    let mut w8: Vec<&[u8]> = Vec::new();
    let mut w16: Vec<&[u16]> = Vec::new();
    let mut w32: Vec<&[u32]> = Vec::new();
    let mut w64: Vec<&[u64]> = Vec::new();
    let mut strs: Vec<&[String]> = Vec::new();
    for p in parts {
        if p.dtype() != dtype {
            return Err(mismatch());
        }
        match p {
            D::F32(v) => w32.push(words(v)),
            D::I32(v) => w32.push(words(v)),
            D::U32(v) => w32.push(v),
            D::F64(v) => w64.push(words(v)),
            D::I64(v) => w64.push(words(v)),
            D::U64(v) => w64.push(v),
            D::F16(v) => w16.push(words(v)),
            D::BF16(v) => w16.push(words(v)),
            D::I16(v) => w16.push(words(v)),
            D::U16(v) => w16.push(v),
            D::I8(v) => w8.push(words(v)),
            D::Bool(v) => w8.push(words(v)),
            D::U8(v) => w8.push(v),
            D::String(v) => strs.push(v),
            other => bytes_owned.push(wrapper_bytes(other)),
        }
    }
    if !bytes_owned.is_empty() {
        w8 = bytes_owned.iter().map(|b| b.as_slice()).collect();
    }
    // SAFETY (every `unwords` below): the words come from `m`, whose results are copies of
    // elements of `parts`, all of `dtype`; so each is a valid element of that type.
    Ok(match dtype {
        DType::F32 => D::F32(unsafe { unwords(m.run(&w32)?) }),
        DType::I32 => D::I32(unsafe { unwords(m.run(&w32)?) }),
        DType::U32 => D::U32(m.run(&w32)?),
        DType::F64 => D::F64(unsafe { unwords(m.run(&w64)?) }),
        DType::I64 => D::I64(unsafe { unwords(m.run(&w64)?) }),
        DType::U64 => D::U64(m.run(&w64)?),
        DType::F16 => D::F16(unsafe { unwords(m.run(&w16)?) }),
        DType::BF16 => D::BF16(unsafe { unwords(m.run(&w16)?) }),
        DType::I16 => D::I16(unsafe { unwords(m.run(&w16)?) }),
        DType::U16 => D::U16(m.run(&w16)?),
        DType::I8 => D::I8(unsafe { unwords(m.run(&w8)?) }),
        DType::Bool => D::Bool(unsafe { unwords(m.run(&w8)?) }),
        DType::U8 => D::U8(m.run(&w8)?),
        DType::String => D::String(m.run(&strs)?),
        _ => wrapper_from_bytes(dtype, m.run(&w8)?)?,
    })
}

/// The bytes of a 1-byte wrapper type's elements.
fn wrapper_bytes(d: &TensorData) -> Vec<u8> {
    use TensorData as D;
    match d {
        D::F8E4M3FN(v) => v.iter().map(|x| x.0).collect(),
        D::F8E4M3FNUZ(v) => v.iter().map(|x| x.0).collect(),
        D::F8E5M2(v) => v.iter().map(|x| x.0).collect(),
        D::F8E5M2FNUZ(v) => v.iter().map(|x| x.0).collect(),
        D::U4(v) => v.iter().map(|x| x.0).collect(),
        D::I4(v) => v.iter().map(|x| x.0 as u8).collect(),
        D::F4E2M1(v) => v.iter().map(|x| x.0).collect(),
        D::F8E8M0(v) => v.iter().map(|x| x.0).collect(),
        D::U2(v) => v.iter().map(|x| x.0).collect(),
        D::I2(v) => v.iter().map(|x| x.0 as u8).collect(),
        _ => Vec::new(),
    }
}

/// The inverse of [`wrapper_bytes`].
fn wrapper_from_bytes(dtype: DType, b: Vec<u8>) -> OpResult<TensorData> {
    use kiln_tensor as k;
    use TensorData as D;
    let it = b.into_iter();
    Ok(match dtype {
        DType::F8E4M3FN => D::F8E4M3FN(it.map(k::F8E4M3FN).collect()),
        DType::F8E4M3FNUZ => D::F8E4M3FNUZ(it.map(k::F8E4M3FNUZ).collect()),
        DType::F8E5M2 => D::F8E5M2(it.map(k::F8E5M2).collect()),
        DType::F8E5M2FNUZ => D::F8E5M2FNUZ(it.map(k::F8E5M2FNUZ).collect()),
        DType::U4 => D::U4(it.map(k::U4).collect()),
        DType::I4 => D::I4(it.map(|x| k::I4(x as i8)).collect()),
        DType::F4E2M1 => D::F4E2M1(it.map(k::F4E2M1).collect()),
        DType::F8E8M0 => D::F8E8M0(it.map(k::F8E8M0).collect()),
        DType::U2 => D::U2(it.map(k::U2).collect()),
        DType::I2 => D::I2(it.map(|x| k::I2(x as i8)).collect()),
        other => return Err(OpError(format!("internal: {other} is not a 1-byte wrapper type"))),
    })
}

/// `v` viewed as words `W`: an unsigned integer of the same size and alignment as `T`.
pub(crate) fn words<T: Copy, W: Copy>(v: &[T]) -> &[W] {
    const { assert!(std::mem::size_of::<T>() == std::mem::size_of::<W>() && std::mem::align_of::<T>() == std::mem::align_of::<W>()) };
    // SAFETY: T and W have the same size and alignment (checked at compile time) and W, an unsigned
    // integer, is valid for every bit pattern, so `v` can be read as words.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<W>(), v.len()) }
}

/// Words back as the `T` they were read from by [`words`].
///
/// # Safety
/// Every word must be the bits of a valid `T`, and `T` must have `W`'s size and alignment.
pub(crate) unsafe fn unwords<T, W>(v: Vec<W>) -> Vec<T> {
    const { assert!(std::mem::size_of::<T>() == std::mem::size_of::<W>() && std::mem::align_of::<T>() == std::mem::align_of::<W>()) };
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: same size and alignment (checked at compile time), so the allocation's layout is unchanged;
    // the caller guarantees the contents are valid `T`s.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity()) }
}

/// `m` on the bytes of a one-byte wrapper type.
fn via_byte<T: Copy>(v: &[T], m: &impl Mover, to: fn(T) -> u8, from: fn(u8) -> T) -> Vec<T> {
    let bytes: Vec<u8> = v.iter().map(|&x| to(x)).collect();
    m.run(&bytes).into_iter().map(from).collect()
}

/// `m` on `v` viewed as words `W` (an unsigned integer of the same size and alignment as `T`).
fn via_words<T: Copy + Default, W: Copy + Default>(v: &[T], m: &impl Mover) -> Vec<T> {
    // SAFETY: every word `m` returns is a copy of an element of `v` (the `Mover` contract),
    // hence a valid T.
    unsafe { unwords(m.run(words::<T, W>(v))) }
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

    /// Concatenation written out element by element, independently of `move_data_n`.
    fn concat_by_hand<T: Clone>(parts: &[&[T]]) -> Vec<T> {
        let mut out = Vec::new();
        for p in parts {
            for x in p.iter() {
                out.push(x.clone());
            }
        }
        out
    }

    struct Cat;
    impl MoverN for Cat {
        fn run<T: Clone + Default + Send + Sync>(&self, parts: &[&[T]]) -> OpResult<Vec<T>> {
            let mut out = Vec::new();
            for p in parts {
                out.extend_from_slice(p);
            }
            Ok(out)
        }
    }

    #[test]
    fn move_data_n_keeps_every_type_bit_exact() {
        use kiln_tensor::F8E4M3FN;
        let cat = |a: TensorData, b: TensorData| move_data_n(&[&a, &b], &Cat).unwrap();
        let (a, b) = (vec![-1i8, 127, -128], vec![0i8]);
        assert_eq!(cat(TensorData::I8(a.clone()), TensorData::I8(b.clone())), TensorData::I8(concat_by_hand(&[&a, &b])));
        let (a, b) = (vec![f32::NAN, -0.0, 1.5], vec![f32::INFINITY]);
        let TensorData::F32(got) = cat(TensorData::F32(a.clone()), TensorData::F32(b.clone())) else { panic!("dtype") };
        let want = concat_by_hand(&[&a, &b]);
        assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        let (a, b) = (vec![f16::from_f32(0.5), f16::NAN, f16::from_f32(-0.0)], vec![bf16::from_f32(2.0)]);
        let TensorData::F16(got) = cat(TensorData::F16(a.clone()), TensorData::F16(a.clone())) else { panic!("dtype") };
        let want = concat_by_hand(&[&a, &a]);
        assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        assert_eq!(cat(TensorData::BF16(b.clone()), TensorData::BF16(b.clone())), TensorData::BF16(concat_by_hand(&[&b, &b])));
        let (a, b) = (vec![true, false], vec![true]);
        assert_eq!(cat(TensorData::Bool(a.clone()), TensorData::Bool(b.clone())), TensorData::Bool(concat_by_hand(&[&a, &b])));
        let (a, b) = (vec![i64::MIN, 3], vec![u64::MAX]);
        assert_eq!(cat(TensorData::I64(a.clone()), TensorData::I64(a.clone())), TensorData::I64(concat_by_hand(&[&a, &a])));
        assert_eq!(cat(TensorData::U64(b.clone()), TensorData::U64(b.clone())), TensorData::U64(concat_by_hand(&[&b, &b])));
        let (a, b) = (vec!["x".to_string()], vec![String::new(), "yz".to_string()]);
        assert_eq!(cat(TensorData::String(a.clone()), TensorData::String(b.clone())), TensorData::String(concat_by_hand(&[&a, &b])));
        let (a, b) = (vec![F8E4M3FN(0x7e), F8E4M3FN(0x80)], vec![F8E4M3FN(0x38)]);
        assert_eq!(cat(TensorData::F8E4M3FN(a.clone()), TensorData::F8E4M3FN(b.clone())), TensorData::F8E4M3FN(concat_by_hand(&[&a, &b])));
        // Mixed dtypes are an error, not a reinterpretation.
        assert!(move_data_n(&[&TensorData::I32(vec![1]), &TensorData::U32(vec![1])], &Cat).is_err());
    }

    #[test]
    fn order_keys_preserve_order_and_nan() {
        // Every pair of elements compares the same way through the widened keys as through the
        // element type's own total order.
        let check = |d: TensorData| {
            let n = d.len();
            for i in 0..n {
                for j in 0..n {
                    let own = kiln_tensor::match_data!(&d, v => v[i].order(&v[j]));
                    let via = match order_keys(&d) {
                        Keys::F32(v) => v[i].order(&v[j]),
                        Keys::F64(v) => v[i].order(&v[j]),
                        Keys::I64(v) => v[i].order(&v[j]),
                        Keys::U64(v) => v[i].order(&v[j]),
                        Keys::Str(v) => v[i].order(&v[j]),
                    };
                    assert_eq!(own, via, "{:?} elements {i} and {j}", d.dtype());
                }
            }
        };
        check(TensorData::F16(vec![f16::NAN, f16::from_f32(-0.0), f16::from_f32(0.0), f16::MAX, f16::MIN, f16::from_f32(1e-7)]));
        check(TensorData::BF16(vec![bf16::NAN, bf16::from_f32(-1.0), bf16::from_f32(3.0)]));
        check(TensorData::I8(vec![-128, -1, 0, 127]));
        check(TensorData::I32(vec![i32::MIN, -5, 7, i32::MAX]));
        check(TensorData::U16(vec![0, 1, u16::MAX]));
        check(TensorData::U32(vec![0, u32::MAX, 7]));
        check(TensorData::Bool(vec![true, false, true]));
        check(TensorData::F8E4M3FN(vec![kiln_tensor::F8E4M3FN(0x7e), kiln_tensor::F8E4M3FN(0xfe), kiln_tensor::F8E4M3FN(0x7f)]));
        check(TensorData::I4(vec![kiln_tensor::I4(-8), kiln_tensor::I4(7), kiln_tensor::I4(0)]));
        check(TensorData::U2(vec![kiln_tensor::U2(3), kiln_tensor::U2(0)]));
    }

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
