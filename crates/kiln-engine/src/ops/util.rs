//! Helpers shared by operator families: axes, broadcasting, strided index walks, dtype dispatch.

use kiln_tensor::{DType, Dim, Shape, Tensor, ValueType};

use crate::error::{OpError, OpResult};

/// Resolves a possibly negative axis against `rank` (valid range `-rank..rank`).
pub fn norm_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(OpError(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Resolves a list of axes; rejects duplicates.
pub fn norm_axes(axes: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if out.contains(&a) {
            return Err(OpError(format!("axis {a} is given twice")));
        }
        out.push(a);
    }
    Ok(out)
}

/// Numpy-style broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return Err(OpError(format!("shapes {a:?} and {b:?} cannot be broadcast together")));
        };
    }
    Ok(out)
}

/// Broadcast of many shapes.
pub fn broadcast_all(shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
    let mut out: Vec<usize> = Vec::new();
    for s in shapes {
        out = broadcast_shapes(&out, s)?;
    }
    Ok(out)
}

/// Symbolic broadcast for shape inference (None if it cannot be decided).
pub fn broadcast_symbolic(a: &Shape, b: &Shape) -> Option<Shape> {
    let n = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.rank() >= n { a.0[i + a.rank() - n].clone() } else { Dim::Fixed(1) };
        let db = if i + b.rank() >= n { b.0[i + b.rank() - n].clone() } else { Dim::Fixed(1) };
        out.push(match (&da, &db) {
            (x, y) if x == y => da,
            (Dim::Fixed(1), _) => db,
            (_, Dim::Fixed(1)) => da,
            (Dim::Fixed(_), Dim::Fixed(_)) => return None,
            (Dim::Fixed(_), Dim::Sym(_)) => da,
            (Dim::Sym(_), Dim::Fixed(_)) => db,
            _ => return None,
        });
    }
    Some(Shape(out))
}

/// For each output position of a broadcast to `out_shape`, the flat index into an input of shape
/// `in_shape`. Cheap enough for the generic path; fast paths avoid it.
pub fn broadcast_index_map(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let n: usize = out_shape.iter().product();
    let rank = out_shape.len();
    let off = rank - in_shape.len();
    // Strides of the input as seen from the output (0 on broadcast dims).
    let mut strides = vec![0usize; rank];
    let mut s = 1usize;
    for i in (0..in_shape.len()).rev() {
        strides[i + off] = if in_shape[i] == 1 { 0 } else { s };
        s *= in_shape[i];
    }
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let mut idx = vec![0usize; rank];
    let mut flat = 0usize;
    for _ in 0..n {
        out.push(flat);
        // Increment the multi-index.
        let mut d = rank;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            flat += strides[d];
            if idx[d] < out_shape[d] {
                break;
            }
            flat -= strides[d] * idx[d];
            idx[d] = 0;
        }
    }
    out
}

/// Elementwise binary op over broadcast inputs, with fast paths for equal shapes and scalars.
pub fn broadcast_binary<A: Clone, B: Clone, O>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    f: impl Fn(A, B) -> O,
) -> OpResult<(Vec<usize>, Vec<O>)> {
    let shape = broadcast_shapes(a_shape, b_shape)?;
    let out: Vec<O> = if a_shape == b_shape {
        a.iter().zip(b).map(|(x, y)| f(x.clone(), y.clone())).collect()
    } else if b.len() == 1 && shape.iter().product::<usize>() == a.len() {
        let y = b[0].clone();
        a.iter().map(|x| f(x.clone(), y.clone())).collect()
    } else if a.len() == 1 && shape.iter().product::<usize>() == b.len() {
        let x = a[0].clone();
        b.iter().map(|y| f(x.clone(), y.clone())).collect()
    } else if let Some(inner) = suffix_broadcast(a_shape, b_shape, &shape) {
        // b repeats along the leading dims of a (e.g. bias add [N, C] + [C]).
        if inner == 0 {
            Vec::new()
        } else {
            a.chunks(inner).flat_map(|row| row.iter().zip(b).map(|(x, y)| f(x.clone(), y.clone()))).collect()
        }
    } else {
        let ia = broadcast_index_map(a_shape, &shape);
        let ib = broadcast_index_map(b_shape, &shape);
        ia.iter().zip(&ib).map(|(&i, &j)| f(a[i].clone(), b[j].clone())).collect()
    };
    Ok((shape, out))
}

/// If `a` already has the output shape and `b` equals a trailing block of it (all leading dims
/// of b being 1 or absent), returns the block length.
fn suffix_broadcast(a_shape: &[usize], b_shape: &[usize], out: &[usize]) -> Option<usize> {
    if a_shape != out {
        return None;
    }
    let b_trim: Vec<usize> = {
        let first = b_shape.iter().position(|&d| d != 1).unwrap_or(b_shape.len());
        b_shape[first..].to_vec()
    };
    if b_trim.len() > out.len() || b_trim.is_empty() {
        return None;
    }
    if out[out.len() - b_trim.len()..] == b_trim[..] {
        Some(b_trim.iter().product())
    } else {
        None
    }
}

/// Integer list from an attribute or a (constant or runtime) input, as many ops moved attributes
/// to inputs in later opsets.
pub fn ints_of(t: &Tensor) -> OpResult<Vec<i64>> {
    Ok(t.to_i64_vec()?)
}

/// Converts a non-negative i64 dim to usize.
pub fn to_usize(d: i64, what: &str) -> OpResult<usize> {
    usize::try_from(d).map_err(|_| OpError(format!("{what} must be non-negative, got {d}")))
}

/// Tensor type with a fixed shape.
pub fn fixed_type(dtype: DType, shape: &[usize]) -> ValueType {
    ValueType::Tensor { dtype, shape: Some(Shape::fixed(shape)) }
}

/// Dispatches on a float dtype: `$f` is a generic function taking `&[T]`.
#[macro_export]
macro_rules! float_dispatch {
    ($t:expr, $name:literal, |$v:ident : $T:ident| $body:expr) => {{
        use kiln_tensor::TensorData as TD;
        match $t.data() {
            TD::F32($v) => { type $T = f32; $body }
            TD::F64($v) => { type $T = f64; $body }
            TD::F16($v) => { type $T = kiln_tensor::f16; $body }
            TD::BF16($v) => { type $T = kiln_tensor::bf16; $body }
            other => return Err($crate::OpError(format!("{} does not support {} tensors", $name, other.dtype()))),
        }
    }};
}
