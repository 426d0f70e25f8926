//! Broadcasting binary and variadic operators: arithmetic, Pow, Mod, BitShift, logic, bitwise,
//! comparisons, Where, Sum/Mean/Max/Min and PRelu.

use std::borrow::Cow;

use kiln_tensor::{DType, Tensor, TensorData, Value, ValueType};

use super::kernels::{binary, binary_in_place, ternary, FloatElem, Num, Real};
use super::{in_dtype, infer_broadcast, infer_unary, single};
use crate::error::OpResult;
use crate::op::{with_first, Inputs, NodeInfo, Op};
use crate::ops::shape::{move_data_n, unwords, words, MoverN};
use crate::ops::util::broadcast_shapes;
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    macro_rules! bin {
        ($name:literal, $since:expr, $kind:expr) => {
            r.add($name, $since, |_| Ok(Box::new(BinaryOp { kind: $kind, name: $name })));
        };
    }
    bin!("Add", 1, B::Add);
    bin!("Sub", 1, B::Sub);
    bin!("Mul", 1, B::Mul);
    bin!("Div", 1, B::Div);
    bin!("And", 1, B::And);
    bin!("Or", 1, B::Or);
    bin!("Xor", 1, B::Xor);
    bin!("BitwiseAnd", 18, B::BitAnd);
    bin!("BitwiseOr", 18, B::BitOr);
    bin!("BitwiseXor", 18, B::BitXor);
    bin!("Equal", 1, B::Eq);
    bin!("Less", 1, B::Lt);
    bin!("LessOrEqual", 12, B::Le);
    bin!("Greater", 1, B::Gt);
    bin!("GreaterOrEqual", 12, B::Ge);
    r.add("Mod", 10, |n| {
        let fmod = n.attr_int_or("fmod", 0)? != 0;
        Ok(Box::new(BinaryOp { kind: B::Mod(fmod), name: "Mod" }))
    });
    r.add("BitShift", 11, |n| {
        let left = match n.attr_string("direction")?.as_deref() {
            Some("LEFT") => true,
            Some("RIGHT") => false,
            Some(other) => bail!("BitShift direction must be LEFT or RIGHT, got '{other}'"),
            None => bail!("BitShift needs the 'direction' attribute"),
        };
        Ok(Box::new(BinaryOp { kind: B::Shift(left), name: "BitShift" }))
    });
    r.add("Pow", 1, |_| Ok(Box::new(PowOp)));
    r.add("Where", 9, |_| Ok(Box::new(WhereOp)));
    r.add("PRelu", 1, |_| Ok(Box::new(PReluOp)));
    r.add("Sum", 1, |n| variadic(n, V::Sum));
    r.add("Mean", 1, |n| variadic(n, V::Mean));
    r.add("Max", 1, |n| variadic(n, V::Max));
    r.add("Min", 1, |n| variadic(n, V::Min));
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum B {
    Add,
    Sub,
    Mul,
    Div,
    Mod(bool),
    Shift(bool),
    And,
    Or,
    Xor,
    BitAnd,
    BitOr,
    BitXor,
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

struct BinaryOp {
    kind: B,
    name: &'static str,
}

type Out<T> = OpResult<(Vec<usize>, Vec<T>)>;

/// `binary` through a function pointer: every operator using it shares one loop per element
/// type (code size). f32 and f64 arithmetic keep a loop per operator instead.
fn binary_fn<T: Copy>(a: &[T], sa: &[usize], b: &[T], sb: &[usize], f: fn(T, T) -> T) -> Out<T> {
    binary(a, sa, b, sb, move |x, y| f(*x, *y))
}

/// Whether `T` is f32 or f64, whose arithmetic keeps specialised (vectorisable) loops.
fn wide_float<T: Num>() -> bool {
    T::IS_FLOAT && std::mem::size_of::<T>() >= 4
}

fn arith<T: Num>(a: &[T], sa: &[usize], b: &[T], sb: &[usize], k: B) -> Out<T> {
    if !wide_float::<T>() {
        // Integer and 16-bit float types share one loop per type through a function pointer.
        let f: fn(T, T) -> T = match k {
            B::Add => |x, y| x.n_add(y),
            B::Sub => |x, y| x.n_sub(y),
            B::Mul => |x, y| x.n_mul(y),
            B::Div => |x, y| x.n_div(y),
            B::Mod(false) => |x, y| x.rem_floor(y),
            B::Mod(true) => |x, y| x.rem_trunc(y),
            _ => bail!("internal: {k:?} is not arithmetic"),
        };
        return binary_fn(a, sa, b, sb, f);
    }
    match k {
        B::Add => binary(a, sa, b, sb, |x, y| x.n_add(*y)),
        B::Sub => binary(a, sa, b, sb, |x, y| x.n_sub(*y)),
        B::Mul => binary(a, sa, b, sb, |x, y| x.n_mul(*y)),
        B::Div => binary(a, sa, b, sb, |x, y| x.n_div(*y)),
        B::Mod(false) => binary(a, sa, b, sb, |x, y| x.rem_floor(*y)),
        B::Mod(true) => binary(a, sa, b, sb, |x, y| x.rem_trunc(*y)),
        _ => bail!("internal: {k:?} is not arithmetic"),
    }
}

/// `a + b` with broadcasting, as the Add operator computes it (for fused operators whose operand
/// shapes are only known at run time).
pub(crate) fn add_tensors(a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    ensure!(a.dtype() == b.dtype(), "Add needs inputs of one type, got {} and {}", a.dtype(), b.dtype());
    dispatch!(num a.data(), "Add", |va: T| {
        let (s, o) = arith::<T>(va, a.shape(), b.as_slice::<T>()?, b.shape(), B::Add)?;
        Ok(Tensor::from_vec(s, o)?)
    })
}

fn compare<T: PartialOrd>(a: &[T], sa: &[usize], b: &[T], sb: &[usize], k: B) -> Out<bool> {
    // One loop per type through a function pointer (code size).
    let f: fn(&T, &T) -> bool = match k {
        B::Eq => |x, y| x == y,
        B::Lt => |x, y| x < y,
        B::Le => |x, y| x <= y,
        B::Gt => |x, y| x > y,
        B::Ge => |x, y| x >= y,
        _ => bail!("internal: {k:?} is not a comparison"),
    };
    binary(a, sa, b, sb, f)
}

/// Operands of a comparison in a type that compares them the same way: 32- and 64-bit types as
/// they are, 16-bit floats widened to f32, 8- and 16-bit integers to i32/u32 and, for Equal only,
/// bools to u32 and strings as they are. One comparison loop per compute type (code size).
enum C<'a> {
    F32(Cow<'a, [f32]>),
    F64(&'a [f64]),
    I32(Cow<'a, [i32]>),
    I64(&'a [i64]),
    U32(Cow<'a, [u32]>),
    U64(&'a [u64]),
    Str(&'a [String]),
}

fn cmp_view(d: &TensorData, eq: bool) -> Option<C<'_>> {
    fn w<T: Copy, K: Clone>(v: &[T], f: fn(T) -> K) -> Cow<'static, [K]> {
        Cow::Owned(v.iter().map(|&x| f(x)).collect())
    }
    Some(match d {
        TensorData::F32(v) => C::F32(Cow::Borrowed(v)),
        TensorData::F64(v) => C::F64(v),
        TensorData::F16(v) => C::F32(w(v, |x| x.to_f32())),
        TensorData::BF16(v) => C::F32(w(v, |x| x.to_f32())),
        TensorData::I8(v) => C::I32(w(v, i32::from)),
        TensorData::I16(v) => C::I32(w(v, i32::from)),
        TensorData::I32(v) => C::I32(Cow::Borrowed(v)),
        TensorData::I64(v) => C::I64(v),
        TensorData::U8(v) => C::U32(w(v, u32::from)),
        TensorData::U16(v) => C::U32(w(v, u32::from)),
        TensorData::U32(v) => C::U32(Cow::Borrowed(v)),
        TensorData::U64(v) => C::U64(v),
        TensorData::Bool(v) if eq => C::U32(w(v, u32::from)),
        TensorData::String(v) if eq => C::Str(v),
        _ => return None,
    })
}

fn shift_amount<T: Num>(s: T, bits: i64) -> Option<u32> {
    let s = if T::IS_SIGNED { s.to_i64() } else { s.to_u64().min(bits as u64) as i64 };
    if (0..bits).contains(&s) {
        Some(s as u32)
    } else {
        None
    }
}

impl Op for BinaryOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let a = inputs.tensor(0)?;
        let b = inputs.tensor(1)?;
        let name = self.name;
        ensure!(
            a.dtype() == b.dtype(),
            "{name} needs inputs of one type, got {} and {}",
            a.dtype(),
            b.dtype()
        );
        let (sa, sb) = (a.shape(), b.shape());
        let k = self.kind;
        match k {
            B::Add | B::Sub | B::Mul | B::Div | B::Mod(_) => dispatch!(num a.data(), name, |va: T| {
                let (s, o) = arith::<T>(va, sa, b.as_slice::<T>()?, sb, k)?;
                single(s, o)
            }),
            B::Eq | B::Lt | B::Le | B::Gt | B::Ge => {
                let eq = k == B::Eq;
                let (s, o) = match (cmp_view(a.data(), eq), cmp_view(b.data(), eq)) {
                    (Some(C::F32(x)), Some(C::F32(y))) => compare(&x, sa, &y, sb, k)?,
                    (Some(C::F64(x)), Some(C::F64(y))) => compare(x, sa, y, sb, k)?,
                    (Some(C::I32(x)), Some(C::I32(y))) => compare(&x, sa, &y, sb, k)?,
                    (Some(C::I64(x)), Some(C::I64(y))) => compare(x, sa, y, sb, k)?,
                    (Some(C::U32(x)), Some(C::U32(y))) => compare(&x, sa, &y, sb, k)?,
                    (Some(C::U64(x)), Some(C::U64(y))) => compare(x, sa, y, sb, k)?,
                    (Some(C::Str(x)), Some(C::Str(y))) => compare(x, sa, y, sb, k)?,
                    _ => bail!("{name} does not support {} tensors", a.dtype()),
                };
                single(s, o)
            }
            B::And | B::Or | B::Xor => {
                let (TensorData::Bool(va), TensorData::Bool(vb)) = (a.data(), b.data()) else {
                    bail!("{name} needs bool tensors, got {}", a.dtype());
                };
                let f: fn(bool, bool) -> bool = match k {
                    B::And => |x, y| x & y,
                    B::Or => |x, y| x | y,
                    _ => |x, y| x ^ y,
                };
                let (s, o) = binary_fn(va, sa, vb, sb, f)?;
                single(s, o)
            }
            B::BitAnd | B::BitOr | B::BitXor => {
                // Only the bits matter: signed types run the loop of the unsigned type of their
                // width (the same instance as its arithmetic), and are read back from its words.
                fn bits<T: Copy, W: Num + std::ops::BitAnd<Output = W> + std::ops::BitOr<Output = W> + std::ops::BitXor<Output = W>>(
                    va: &[T],
                    sa: &[usize],
                    vb: &[T],
                    sb: &[usize],
                    k: B,
                ) -> Out<W> {
                    let f: fn(W, W) -> W = match k {
                        B::BitAnd => |x, y| x & y,
                        B::BitOr => |x, y| x | y,
                        _ => |x, y| x ^ y,
                    };
                    binary_fn(words::<T, W>(va), sa, words::<T, W>(vb), sb, f)
                }
                use TensorData as TD;
                // SAFETY (each `unwords`): every word is the bits of some value of the signed
                // type of the same width, which is valid for every bit pattern.
                match (a.data(), b.data()) {
                    (TD::U8(x), TD::U8(y)) => { let (s, o) = bits::<u8, u8>(x, sa, y, sb, k)?; single(s, o) }
                    (TD::U16(x), TD::U16(y)) => { let (s, o) = bits::<u16, u16>(x, sa, y, sb, k)?; single(s, o) }
                    (TD::U32(x), TD::U32(y)) => { let (s, o) = bits::<u32, u32>(x, sa, y, sb, k)?; single(s, o) }
                    (TD::U64(x), TD::U64(y)) => { let (s, o) = bits::<u64, u64>(x, sa, y, sb, k)?; single(s, o) }
                    (TD::I8(x), TD::I8(y)) => { let (s, o) = bits::<i8, u8>(x, sa, y, sb, k)?; single(s, unsafe { unwords::<i8, u8>(o) }) }
                    (TD::I16(x), TD::I16(y)) => { let (s, o) = bits::<i16, u16>(x, sa, y, sb, k)?; single(s, unsafe { unwords::<i16, u16>(o) }) }
                    (TD::I32(x), TD::I32(y)) => { let (s, o) = bits::<i32, u32>(x, sa, y, sb, k)?; single(s, unsafe { unwords::<i32, u32>(o) }) }
                    (TD::I64(x), TD::I64(y)) => { let (s, o) = bits::<i64, u64>(x, sa, y, sb, k)?; single(s, unsafe { unwords::<i64, u64>(o) }) }
                    _ => bail!("{name} does not support {} tensors", a.dtype()),
                }
            }
            B::Shift(left) => dispatch!(int a.data(), name, |va: T| {
                let f: fn(T, T) -> T = if left {
                    |x, y| match shift_amount(y, (std::mem::size_of::<T>() * 8) as i64) {
                        Some(n) => x.wrapping_shl(n),
                        None => 0,
                    }
                } else {
                    |x, y| {
                        let bits = (std::mem::size_of::<T>() * 8) as i64;
                        match shift_amount(y, bits) {
                            Some(n) => x.wrapping_shr(n),
                            None => x.wrapping_shr(bits as u32 - 1).wrapping_shr(1),
                        }
                    }
                };
                let (s, o) = binary_fn(va, sa, b.as_slice::<T>()?, sb, f)?;
                single(s, o)
            }),
        }
    }
    fn reuses_input0(&self) -> bool {
        matches!(self.kind, B::Add | B::Sub | B::Mul | B::Div)
    }
    fn run_reusing(&self, first: Value, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let b = inputs.tensor(1)?;
        let mut first = first;
        if let (Value::Tensor(a), TensorData::F32(vb)) = (&mut first, b.data()) {
            if a.dtype() == DType::F32 {
                let shape = a.shape().to_vec();
                let va = a.as_slice_mut::<f32>()?;
                let done = match self.kind {
                    B::Add => binary_in_place(va, &shape, vb, b.shape(), |x, y| *x += *y)?,
                    B::Sub => binary_in_place(va, &shape, vb, b.shape(), |x, y| *x -= *y)?,
                    B::Mul => binary_in_place(va, &shape, vb, b.shape(), |x, y| *x *= *y)?,
                    B::Div => binary_in_place(va, &shape, vb, b.shape(), |x, y| *x /= *y)?,
                    _ => false,
                };
                if done {
                    return Ok(vec![first]);
                }
            }
        }
        with_first(&first, inputs, |all| self.run(all))
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let dt = match self.kind {
            B::Eq | B::Lt | B::Le | B::Gt | B::Ge => DType::Bool,
            _ => in_dtype(inputs, 0)?,
        };
        infer_broadcast(inputs.get(..2)?, dt)
    }
}

/// Pow: base float or integer, exponent any numeric type; the output has the base's type.
struct PowOp;

fn int_pow<T: Num>(mut b: T, mut e: u64) -> T {
    let mut r = T::from_i64(1);
    while e > 0 {
        if e & 1 == 1 {
            r = r.n_mul(b);
        }
        b = b.n_mul(b);
        e >>= 1;
    }
    r
}

fn pow_scalar<T: FloatElem>(x: &[T], e: f64) -> Vec<T> {
    let c = |v: f64| T::R::c(v);
    let map = |f: &dyn Fn(T::R) -> T::R| -> Vec<T> { x.iter().map(|&v| T::from_r(f(v.to_r()))).collect() };
    if e == 2.0 {
        x.iter().map(|&v| { let r = v.to_r(); T::from_r(r * r) }).collect()
    } else if e == 1.0 {
        x.to_vec()
    } else if e == 0.5 {
        x.iter().map(|&v| T::from_r(v.to_r().sqrt())).collect()
    } else if e == 3.0 {
        x.iter().map(|&v| { let r = v.to_r(); T::from_r(r * r * r) }).collect()
    } else {
        let e = c(e);
        map(&|v| v.powf(e))
    }
}

impl Op for PowOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let a = inputs.tensor(0)?;
        let b = inputs.tensor(1)?;
        let (sa, sb) = (a.shape(), b.shape());
        if a.dtype().is_float() && b.len() == 1 && b.rank() <= a.rank() && b.dtype() != DType::String {
            let e = b.to_f64_vec()?[0];
            return dispatch!(float a.data(), "Pow", |v: T| single(sa.to_vec(), pow_scalar::<T>(v, e)));
        }
        if a.dtype() == b.dtype() && a.dtype().is_float() {
            return dispatch!(float a.data(), "Pow", |va: T| {
                let vb = b.as_slice::<T>()?;
                let (s, o) = binary(va, sa, vb, sb, |x, y| T::from_r(x.to_r().powf(y.to_r())))?;
                single(s, o)
            });
        }
        ensure!(b.dtype() != DType::Bool, "Pow does not support a bool exponent");
        let e = b.to_f64_vec()?;
        let int_exp = b.dtype().is_int();
        // The broadcast pairs (index into the base, exponent) are computed once for every type,
        // so each element type only has a plain loop (code size).
        let base: Vec<usize> = (0..a.len()).collect();
        let (s, pairs) = binary(&base, sa, &e, sb, |&i, &y| (i, y))?;
        dispatch!(num a.data(), "Pow", |va: T| {
            let o: Vec<T> = pairs
                .iter()
                .map(|&(i, y)| {
                    let x = va[i];
                    if !T::IS_FLOAT && int_exp && y >= 0.0 {
                        int_pow(x, y as u64)
                    } else {
                        T::from_f64(x.to_f64().powf(y))
                    }
                })
                .collect();
            single(s, o)
        })
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        infer_broadcast(inputs.get(..2)?, in_dtype(inputs, 0)?)
    }
}

/// Where(cond, x, y).
struct WhereOp;

impl Op for WhereOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let c = inputs.tensor(0)?;
        let x = inputs.tensor(1)?;
        let y = inputs.tensor(2)?;
        let TensorData::Bool(vc) = c.data() else {
            bail!("Where condition must be bool, got {}", c.dtype());
        };
        ensure!(
            x.dtype() == y.dtype(),
            "Where needs X and Y of one type, got {} and {}",
            x.dtype(),
            y.dtype()
        );
        let shape = broadcast_shapes(&broadcast_shapes(c.shape(), x.shape())?, y.shape())?;
        if let (TensorData::F32(vx), TensorData::F32(vy)) = (x.data(), y.data()) {
            let numel = kiln_tensor::checked_numel(&shape)?;
            if let Some(o) = where_flat(vc, vx, vy, numel) {
                return single(shape, o);
            }
        }
        // Elements are only moved: one loop per element width serves every type.
        struct M<'a>(&'a [bool], [&'a [usize]; 3]);
        impl MoverN for M<'_> {
            fn run<T: Clone + Default + Send + Sync>(&self, parts: &[&[T]]) -> OpResult<Vec<T>> {
                let [sc, sx, sy] = self.1;
                let (&[vx, vy], vc) = (parts, self.0) else {
                    bail!("internal: Where moves two inputs");
                };
                let (_, o) = ternary((vc, sc), (vx, sx), (vy, sy), |c, a, b| if *c { a.clone() } else { b.clone() })?;
                Ok(o)
            }
        }
        let data = move_data_n(&[x.data(), y.data()], &M(vc, [c.shape(), x.shape(), y.shape()]))?;
        Ok(vec![Value::Tensor(Tensor::new(shape, data)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        infer_broadcast(inputs.get(..3)?, in_dtype(inputs, 1)?)
    }
}

/// Where over operands that each hold one element or all `numel` of the output (so share its
/// layout); `None` for any other broadcast.
fn where_flat<T: Copy>(c: &[bool], x: &[T], y: &[T], numel: usize) -> Option<Vec<T>> {
    let fits = |len: usize| len == numel || len == 1;
    if !(fits(c.len()) && fits(x.len()) && fits(y.len())) {
        return None;
    }
    if c.len() != numel || numel == 1 {
        // One condition for every element: the output is X or Y, repeated as needed.
        let src = if c.first().copied().unwrap_or(false) { x } else { y };
        return Some(if src.len() == numel { src.to_vec() } else { vec![src.first().copied()?; numel] });
    }
    Some(match (x.len() == numel, y.len() == numel) {
        (true, true) => c.iter().zip(x).zip(y).map(|((&c, &a), &b)| if c { a } else { b }).collect(),
        (true, false) => c.iter().zip(x).map(|(&c, &a)| if c { a } else { y[0] }).collect(),
        (false, true) => c.iter().zip(y).map(|(&c, &b)| if c { x[0] } else { b }).collect(),
        (false, false) => c.iter().map(|&c| if c { x[0] } else { y[0] }).collect(),
    })
}

/// PRelu(x, slope): slope broadcasts to x's shape.
struct PReluOp;

impl Op for PReluOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = inputs.tensor(1)?;
        ensure!(
            x.dtype() == s.dtype(),
            "PRelu needs X and slope of one type, got {} and {}",
            x.dtype(),
            s.dtype()
        );
        dispatch!(num x.data(), "PRelu", |vx: T| {
            let vs = s.as_slice::<T>()?;
            let (shape, o) = if wide_float::<T>() {
                let z = T::zero();
                binary(vx, x.shape(), vs, s.shape(), |a, b| if *a < z { a.n_mul(*b) } else { *a })?
            } else {
                binary_fn(vx, x.shape(), vs, s.shape(), |a, b| if a < T::zero() { a.n_mul(b) } else { a })?
            };
            ensure!(
                shape == x.shape(),
                "PRelu slope of shape {:?} does not broadcast to X of shape {:?}",
                s.shape(),
                x.shape()
            );
            single(shape, o)
        })
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        infer_unary(inputs, None)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum V {
    Sum,
    Mean,
    Max,
    Min,
}

struct Variadic(V);

fn variadic(_n: &NodeInfo, v: V) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(Variadic(v)))
}

/// Folds the inputs with `f`: a loop per operator for f32 and f64, one shared loop per type
/// (through a function pointer) for the others. `F` is a function item, so the Sum of Mean and
/// of Sum share one instance.
fn fold<T: Num, F: Fn(T, T) -> T + Copy>(ts: &[&Tensor], f: fn(T, T) -> T, wide: F) -> Out<T> {
    if !wide_float::<T>() {
        return fold_fn(ts, f);
    }
    let Some(first) = ts.first() else { bail!("needs at least one input") };
    let mut shape = first.shape().to_vec();
    let mut acc: Vec<T> = first.as_slice::<T>()?.to_vec();
    for t in &ts[1..] {
        let (s, o) = binary(&acc, &shape, t.as_slice::<T>()?, t.shape(), |x, y| wide(*x, *y))?;
        acc = o;
        shape = s;
    }
    Ok((shape, acc))
}

/// [`fold`] through a function pointer: one instance per element type.
fn fold_fn<T: Num>(ts: &[&Tensor], f: fn(T, T) -> T) -> Out<T> {
    let Some(first) = ts.first() else { bail!("needs at least one input") };
    let mut shape = first.shape().to_vec();
    let mut acc: Vec<T> = first.as_slice::<T>()?.to_vec();
    for t in &ts[1..] {
        let (s, o) = binary_fn(&acc, &shape, t.as_slice::<T>()?, t.shape(), f)?;
        acc = o;
        shape = s;
    }
    Ok((shape, acc))
}

fn v_add<T: Num>(x: T, y: T) -> T {
    x.n_add(y)
}
fn v_max<T: Num>(x: T, y: T) -> T {
    x.n_max(y)
}
fn v_min<T: Num>(x: T, y: T) -> T {
    x.n_min(y)
}

impl Op for Variadic {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let ts = inputs.tensors()?;
        let name = match self.0 {
            V::Sum => "Sum",
            V::Mean => "Mean",
            V::Max => "Max",
            V::Min => "Min",
        };
        let Some(first) = ts.first() else { bail!("{name} needs at least one input") };
        for t in &ts {
            ensure!(
                t.dtype() == first.dtype(),
                "{name} needs inputs of one type, got {} and {}",
                first.dtype(),
                t.dtype()
            );
        }
        dispatch!(num first.data(), name, |_v: T| {
            let (s, o) = match self.0 {
                V::Sum => fold::<T, _>(&ts, v_add, v_add::<T>)?,
                V::Max => fold::<T, _>(&ts, v_max, v_max::<T>)?,
                V::Min => fold::<T, _>(&ts, v_min, v_min::<T>)?,
                V::Mean => {
                    let (s, o) = fold::<T, _>(&ts, v_add, v_add::<T>)?;
                    let n = T::from_f64(ts.len() as f64);
                    (s, o.into_iter().map(|x| x.n_div(n)).collect())
                }
            };
            single(s, o)
        })
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        infer_broadcast(inputs, in_dtype(inputs, 0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_follow_reference_rules() {
        assert_eq!(shift_amount(3i8, 8), Some(3));
        assert_eq!(shift_amount(-1i8, 8), None);
        assert_eq!(shift_amount(8u8, 8), None);
        assert_eq!(shift_amount(u64::MAX, 64), None);
        // Arithmetic right shift saturating to the sign when the amount is out of range.
        assert_eq!((-100i8).wrapping_shr(7).wrapping_shr(1), -1);
    }

    #[test]
    fn where_flat_selects_per_element_or_whole() {
        let c = [true, false, false, true];
        assert_eq!(where_flat(&c, &[1., 2., 3., 4.], &[5., 6., 7., 8.], 4), Some(vec![1., 6., 7., 4.]));
        assert_eq!(where_flat(&c, &[0.], &[5., 6., 7., 8.], 4), Some(vec![0., 6., 7., 0.]));
        assert_eq!(where_flat(&c, &[1., 2., 3., 4.], &[-1.], 4), Some(vec![1., -1., -1., 4.]));
        assert_eq!(where_flat(&c, &[9.], &[-1.], 4), Some(vec![9., -1., -1., 9.]));
        assert_eq!(where_flat(&[false], &[9.], &[1., 2., 3.], 3), Some(vec![1., 2., 3.]));
        assert_eq!(where_flat(&[true], &[9.], &[1., 2., 3.], 3), Some(vec![9., 9., 9.]));
        assert_eq!(where_flat::<f32>(&[], &[], &[1.], 0), Some(vec![]));
        // A row broadcast against a matrix is not flat.
        assert_eq!(where_flat(&c, &[1., 2.], &[0.], 4), None);
    }

    #[test]
    fn integer_pow() {
        assert_eq!(int_pow(3i32, 6), 729);
        assert_eq!(int_pow(-2i64, 3), -8);
        assert_eq!(int_pow(7u8, 0), 1);
    }
}
