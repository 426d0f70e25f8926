//! Indexing operators: Gather, GatherElements, GatherND, ScatterND, ScatterElements, Scatter,
//! OneHot, NonZero.

use kiln_tensor::{DType, Dim, Shape, Tensor, Value, ValueType};

use super::{axis_of, in_type, numel, one_out, same, take_data, tensor, tensor_type, E};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("Gather", 1, |n| Ok(Box::new(Gather { axis: n.attr_int_or("axis", 0)? })));
    r.add("GatherElements", 11, |n| Ok(Box::new(GatherElements { axis: n.attr_int_or("axis", 0)? })));
    r.add("GatherND", 11, |n| Ok(Box::new(GatherND { batch_dims: n.attr_int_or("batch_dims", 0)? })));
    r.add("ScatterND", 11, |n| Ok(Box::new(ScatterND { red: reduction(n)? })));
    r.add("ScatterElements", 11, |n| {
        Ok(Box::new(ScatterElements { axis: n.attr_int_or("axis", 0)?, red: reduction(n)? }))
    });
    r.add("Scatter", 9, |n| Ok(Box::new(ScatterElements { axis: n.attr_int_or("axis", 0)?, red: Reduction::None })));
    r.add("OneHot", 9, |n| Ok(Box::new(OneHot { axis: n.attr_int_or("axis", -1)? })));
    r.add("NonZero", 9, |_| Ok(Box::new(NonZero)));
}

/// Resolves an index against `dim` (negative counts from the back).
fn resolve(i: i64, dim: usize, what: &str) -> OpResult<usize> {
    let d = dim as i64;
    let j = if i < 0 { i + d } else { i };
    if j < 0 || j >= d {
        bail!("{what} index {i} is out of range for a dim of {dim}");
    }
    Ok(j as usize)
}

fn indices_of(t: &Tensor, what: &str) -> OpResult<Vec<i64>> {
    ensure!(
        matches!(t.dtype(), DType::I64 | DType::I32 | DType::I16 | DType::I8 | DType::U8 | DType::U16 | DType::U32 | DType::U64),
        "{what} indices must be integers, got {}",
        t.dtype()
    );
    Ok(t.to_i64_vec()?)
}

// ---------------------------------------------------------------------------------------------
// Gather

struct Gather {
    axis: i64,
}

impl Op for Gather {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let ind = inputs.tensor(1)?;
        let axis = axis_of(self.axis, x.rank())?;
        let s = x.shape();
        let dim = s[axis];
        let sel: Vec<usize> =
            indices_of(ind, "Gather")?.into_iter().map(|i| resolve(i, dim, "Gather")).collect::<OpResult<_>>()?;
        let mut shape = s[..axis].to_vec();
        shape.extend_from_slice(ind.shape());
        shape.extend_from_slice(&s[axis + 1..]);
        numel(&shape)?;
        let outer = s[..axis].iter().product();
        let inner = s[axis + 1..].iter().product();
        let data = take_data(x.data(), outer, dim, inner, &sel);
        one_out(tensor(shape, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, xs) = in_type(inputs, 0)?;
        let (xs, is) = (xs?, in_type(inputs, 1)?.1?);
        let axis = axis_of(self.axis, xs.rank()).ok()?;
        let mut dims = xs.0[..axis].to_vec();
        dims.extend_from_slice(&is.0);
        dims.extend_from_slice(&xs.0[axis + 1..]);
        Some(tensor_type(dt, Some(Shape(dims))))
    }
}

// ---------------------------------------------------------------------------------------------
// GatherElements

struct GatherElements {
    axis: i64,
}

/// For each position of an index tensor of `ishape`, the flat offset into a tensor of `dshape`
/// with the `axis` coordinate replaced by the (resolved) index value.
fn element_offsets(dshape: &[usize], ishape: &[usize], ind: &[i64], axis: usize, what: &str) -> OpResult<Vec<usize>> {
    ensure!(
        dshape.len() == ishape.len(),
        "{what} data {dshape:?} and indices {ishape:?} must have the same rank"
    );
    for (a, (&d, &i)) in dshape.iter().zip(ishape).enumerate() {
        ensure!(a == axis || i <= d, "{what} indices {ishape:?} exceed data {dshape:?} on axis {a}");
    }
    let ds = kiln_tensor::strides_of(dshape);
    let rank = ishape.len();
    let mut out = Vec::with_capacity(ind.len());
    let mut coord = vec![0usize; rank];
    let mut base = 0usize;
    for &v in ind {
        let j = resolve(v, dshape[axis], what)?;
        out.push(base + j * ds[axis]);
        let mut k = rank;
        while k > 0 {
            k -= 1;
            coord[k] += 1;
            if k != axis {
                base += ds[k];
            }
            if coord[k] < ishape[k] {
                break;
            }
            if k != axis {
                base -= ds[k] * coord[k];
            }
            coord[k] = 0;
        }
    }
    Ok(out)
}

impl Op for GatherElements {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let ind = inputs.tensor(1)?;
        let axis = axis_of(self.axis, x.rank())?;
        let offs = element_offsets(x.shape(), ind.shape(), &indices_of(ind, "GatherElements")?, axis, "GatherElements")?;
        one_out(tensor(ind.shape().to_vec(), x.data().gather(&offs))?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, _) = in_type(inputs, 0)?;
        Some(tensor_type(dt, in_type(inputs, 1)?.1.cloned()))
    }
}

// ---------------------------------------------------------------------------------------------
// GatherND / ScatterND

/// Resolves ND indices: for data `dshape`, indices `ishape` (last dim = k) and `batch_dims`,
/// returns (offsets of each addressed slice, slice length, shape of the gathered result).
fn nd_offsets(dshape: &[usize], ishape: &[usize], ind: &[i64], b: usize, what: &str) -> OpResult<(Vec<usize>, usize, Vec<usize>)> {
    let (r, q) = (dshape.len(), ishape.len());
    ensure!(q >= 1, "{what} indices must have rank >= 1");
    ensure!(b < q && b <= r, "{what} batch_dims {b} is too large for data {dshape:?} and indices {ishape:?}");
    let k = ishape[q - 1];
    ensure!(k >= 1 && b + k <= r, "{what} index tuples of length {k} do not fit data {dshape:?} with batch_dims {b}");
    ensure!(dshape[..b] == ishape[..b], "{what} batch dims of data {dshape:?} and indices {ishape:?} differ");
    let ds = kiln_tensor::strides_of(dshape);
    let slice: usize = dshape[b + k..].iter().product();
    let batch_size: usize = dshape[b..].iter().product();
    let per_batch: usize = ishape[b..q - 1].iter().product();
    let tuples = ind.len() / k;
    let mut offs = Vec::with_capacity(tuples);
    for (t, tuple) in ind.chunks(k).enumerate() {
        let batch = t.checked_div(per_batch).unwrap_or(0);
        let mut off = batch * batch_size;
        for (j, &v) in tuple.iter().enumerate() {
            off += resolve(v, dshape[b + j], what)? * ds[b + j];
        }
        offs.push(off);
    }
    let mut shape = ishape[..q - 1].to_vec();
    shape.extend_from_slice(&dshape[b + k..]);
    Ok((offs, slice, shape))
}

struct GatherND {
    batch_dims: i64,
}

fn copy_chunks<T: Clone>(v: &[T], offs: &[usize], len: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(offs.len() * len);
    for &o in offs {
        out.extend_from_slice(&v[o..o + len]);
    }
    out
}

impl Op for GatherND {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let ind = inputs.tensor(1)?;
        let b = usize::try_from(self.batch_dims).map_err(|_| OpError::new("batch_dims must be non-negative"))?;
        let (offs, len, shape) = nd_offsets(x.shape(), ind.shape(), &indices_of(ind, "GatherND")?, b, "GatherND")?;
        numel(&shape)?;
        let data = kiln_tensor::map_data!(x.data(), v => copy_chunks(v, &offs, len));
        one_out(tensor(shape, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, xs) = in_type(inputs, 0)?;
        let (xs, is) = (xs?, in_type(inputs, 1)?.1?);
        let k = is.0.last()?.fixed()?;
        let b = usize::try_from(self.batch_dims).ok()?;
        if b + k > xs.rank() {
            return None;
        }
        let mut dims: Vec<Dim> = is.0[..is.rank() - 1].to_vec();
        dims.extend_from_slice(&xs.0[b + k..]);
        Some(tensor_type(dt, Some(Shape(dims))))
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn reduction(n: &NodeInfo) -> OpResult<Reduction> {
    Ok(match n.attr_string_or("reduction", "none")?.as_str() {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        r => bail!("unknown reduction '{r}'"),
    })
}

/// dst[d] = reduce(dst[d], src[s]) for each (d, s) in pairs of chunk starts, over `len` elements.
fn scatter_apply<T: E>(dst: &mut [T], src: &kiln_tensor::TensorData, pairs: &[(usize, usize)], len: usize, red: Reduction) -> OpResult<()> {
    let src = same::<T>(src, "updates")?;
    // One loop per type through a function pointer (code size).
    let f: fn(&T, &T) -> Option<T> = match red {
        Reduction::None => {
            for &(d, s) in pairs {
                dst[d..d + len].clone_from_slice(&src[s..s + len]);
            }
            return Ok(());
        }
        Reduction::Add => |a, b| a.add(b),
        Reduction::Mul => |a, b| a.mul(b),
        Reduction::Max => |a, b| Some(if b.order(a) == std::cmp::Ordering::Greater { b.clone() } else { a.clone() }),
        Reduction::Min => |a, b| Some(if b.order(a) == std::cmp::Ordering::Less { b.clone() } else { a.clone() }),
    };
    for &(d, s) in pairs {
        for (a, b) in dst[d..d + len].iter_mut().zip(&src[s..s + len]) {
            *a = f(a, b).ok_or_else(|| OpError(format!("reduction {red:?} is not supported for {} data", T::DTYPE)))?;
        }
    }
    Ok(())
}

struct ScatterND {
    red: Reduction,
}

impl Op for ScatterND {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let ind = inputs.tensor(1)?;
        let upd = inputs.tensor(2)?;
        let (offs, len, shape) = nd_offsets(x.shape(), ind.shape(), &indices_of(ind, "ScatterND")?, 0, "ScatterND")?;
        ensure!(
            upd.shape() == shape.as_slice(),
            "ScatterND updates {:?} should have shape {shape:?}",
            upd.shape()
        );
        let pairs: Vec<(usize, usize)> = offs.iter().enumerate().map(|(i, &o)| (o, i * len)).collect();
        let mut out = x.clone();
        kiln_tensor::match_data!(out.data_mut(), v => scatter_apply(v, upd.data(), &pairs, len, self.red)?);
        one_out(out)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![inputs.first().copied().flatten()?.clone()])
    }
}

struct ScatterElements {
    axis: i64,
    red: Reduction,
}

impl Op for ScatterElements {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let ind = inputs.tensor(1)?;
        let upd = inputs.tensor(2)?;
        ensure!(
            ind.shape() == upd.shape(),
            "ScatterElements indices {:?} and updates {:?} must have the same shape",
            ind.shape(),
            upd.shape()
        );
        let axis = axis_of(self.axis, x.rank())?;
        let offs = element_offsets(x.shape(), ind.shape(), &indices_of(ind, "ScatterElements")?, axis, "ScatterElements")?;
        let pairs: Vec<(usize, usize)> = offs.iter().enumerate().map(|(i, &o)| (o, i)).collect();
        let mut out = x.clone();
        kiln_tensor::match_data!(out.data_mut(), v => scatter_apply(v, upd.data(), &pairs, 1, self.red)?);
        one_out(out)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![inputs.first().copied().flatten()?.clone()])
    }
}

// ---------------------------------------------------------------------------------------------
// OneHot

struct OneHot {
    axis: i64,
}

impl Op for OneHot {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let ind = inputs.tensor(0)?;
        let depth = inputs.tensor(1)?;
        let values = inputs.tensor(2)?;
        ensure!(depth.len() == 1, "OneHot depth must be a scalar, got shape {:?}", depth.shape());
        ensure!(values.len() == 2, "OneHot values must be [off, on], got {} elements", values.len());
        let d = depth.to_f64_vec()?[0];
        ensure!(d >= 1.0 && d <= kiln_tensor::MAX_ELEMENTS as f64, "OneHot depth {d} is invalid");
        let d = d as usize;
        let r = ind.rank() as i64;
        let a = if self.axis < 0 { self.axis + r + 1 } else { self.axis };
        ensure!(a >= 0 && a <= r, "OneHot axis {} is out of range for indices of rank {r}", self.axis);
        let a = a as usize;
        let mut shape = ind.shape().to_vec();
        shape.insert(a, d);
        let n = numel(&shape)?;
        let outer: usize = ind.shape()[..a].iter().product();
        let inner: usize = ind.shape()[a..].iter().product();
        let idx: Vec<i64> = ind.to_f64_vec()?.into_iter().map(|v| v as i64).collect();
        let mut sel = vec![0usize; n];
        for o in 0..outer {
            for i in 0..inner {
                let v = idx[o * inner + i];
                let v = if v < 0 { v + d as i64 } else { v };
                if v >= 0 && (v as usize) < d {
                    sel[(o * d + v as usize) * inner + i] = 1;
                }
            }
        }
        one_out(tensor(shape, values.data().gather(&sel))?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, _) = in_type(inputs, 2)?;
        let rank = in_type(inputs, 0)?.1?.rank();
        Some(tensor_type(dt, Some(super::unknown_shape(rank + 1))))
    }
}

// ---------------------------------------------------------------------------------------------
// NonZero

struct NonZero;

fn nonzero_flat<T: E>(v: &[T]) -> Vec<usize> {
    v.iter().enumerate().filter(|(_, x)| !x.is_zero()).map(|(i, _)| i).collect()
}

impl Op for NonZero {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let flat = kiln_tensor::match_data!(x.data(), v => nonzero_flat(v));
        let shape: Vec<usize> = if x.rank() == 0 { vec![1] } else { x.shape().to_vec() };
        let st = kiln_tensor::strides_of(&shape);
        let nnz = flat.len();
        let mut out = vec![0i64; shape.len() * nnz];
        for (j, &f) in flat.iter().enumerate() {
            for (a, (&s, &d)) in st.iter().zip(&shape).enumerate() {
                out[a * nnz + j] = ((f / s) % d) as i64;
            }
        }
        one_out(Tensor::from_vec(vec![shape.len(), nnz], out)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let rank = in_type(inputs, 0)?.1?.rank().max(1);
        Some(tensor_type(DType::I64, Some(Shape(vec![Dim::Fixed(rank), Dim::unknown()]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_elements_offsets() {
        // data 2x2, indices [[0,0],[1,0]] on axis 1 -> offsets [0,0,3,2]
        let o = element_offsets(&[2, 2], &[2, 2], &[0, 0, 1, 0], 1, "t").unwrap();
        assert_eq!(o, vec![0, 0, 3, 2]);
        assert!(element_offsets(&[2, 2], &[2, 2], &[0, 0, 2, 0], 1, "t").is_err());
    }

    #[test]
    fn gather_nd_batch() {
        // data [2,2,2], indices [[1],[0]] with batch_dims 1 -> rows data[0,1,:], data[1,0,:]
        let (offs, len, shape) = nd_offsets(&[2, 2, 2], &[2, 1], &[1, 0], 1, "t").unwrap();
        assert_eq!((offs, len, shape), (vec![2, 4], 2, vec![2, 2]));
    }
}
