//! Ordering and scan operators: TopK, Unique, CumSum, CumProd.

use std::cmp::Ordering;

use kiln_tensor::{DType, Dim, Shape, Tensor, TensorData, Value, ValueType};

use super::{axis_of, gather_with_fill, in_type, one_out, order_keys, take_data, tensor, tensor_type, Fill, Keys, E};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, Op};
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("TopK", 1, |n| {
        Ok(Box::new(TopK {
            k_attr: n.attr_int("k")?,
            axis: n.attr_int_or("axis", -1)?,
            largest: n.attr_int_or("largest", 1)? != 0,
        }))
    });
    r.add("Unique", 11, |n| {
        Ok(Box::new(Unique { axis: n.attr_int("axis")?, sorted: n.attr_int_or("sorted", 1)? != 0 }))
    });
    r.add("CumSum", 11, |n| {
        Ok(Box::new(Cum {
            product: false,
            exclusive: n.attr_int_or("exclusive", 0)? != 0,
            reverse: n.attr_int_or("reverse", 0)? != 0,
        }))
    });
    r.add("CumProd", 26, |n| {
        Ok(Box::new(Cum {
            product: true,
            exclusive: n.attr_int_or("exclusive", 0)? != 0,
            reverse: n.attr_int_or("reverse", 0)? != 0,
        }))
    });
}

// ---------------------------------------------------------------------------------------------
// TopK

struct TopK {
    k_attr: Option<i64>,
    axis: i64,
    largest: bool,
}

/// Positions in `v` of the top `k` along the middle axis of [outer, dim, inner], in output order,
/// and their indices along that axis.
fn topk<T: E>(v: &[T], outer: usize, dim: usize, inner: usize, k: usize, largest: bool) -> (Vec<usize>, Vec<i64>) {
    let mut pos = vec![0usize; outer * k * inner];
    let mut idxs = vec![0i64; outer * k * inner];
    let mut order: Vec<usize> = Vec::with_capacity(dim);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * dim + j) * inner + i;
            let cmp = |a: &usize, b: &usize| {
                let c = if largest { v[at(*b)].order(&v[at(*a)]) } else { v[at(*a)].order(&v[at(*b)]) };
                c.then(a.cmp(b))
            };
            order.clear();
            order.extend(0..dim);
            top_indices(&mut order, k, &cmp);
            for (r, &j) in order.iter().take(k).enumerate() {
                let p = (o * k + r) * inner + i;
                pos[p] = at(j);
                idxs[p] = j as i64;
            }
        }
    }
    (pos, idxs)
}

/// Keeps the first `k` of `order` under `cmp`, sorted. Not generic, so one copy of the sort code
/// serves every element type.
fn top_indices(order: &mut Vec<usize>, k: usize, cmp: &dyn Fn(&usize, &usize) -> Ordering) {
    if k > 0 && k < order.len() {
        order.select_nth_unstable_by(k - 1, cmp);
        order.truncate(k);
    }
    order.sort_unstable_by(cmp);
}

/// Stable sort of item indices under `cmp` (not generic, as [`top_indices`]).
fn sort_indices(order: &mut [usize], cmp: &dyn Fn(usize, usize) -> Ordering) {
    order.sort_by(|&a, &b| cmp(a, b));
}

impl Op for TopK {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let k = match self.k_attr {
            Some(k) => k,
            None => {
                let t = inputs.tensor(1)?;
                ensure!(t.len() == 1, "TopK K must hold one value, got shape {:?}", t.shape());
                t.to_i64_vec()?[0]
            }
        };
        let axis = axis_of(self.axis, x.rank())?;
        let s = x.shape();
        let dim = s[axis];
        ensure!(k >= 0 && k as usize <= dim, "TopK k={k} is outside [0, {dim}] for axis {axis}");
        let k = k as usize;
        let outer = s[..axis].iter().product();
        let inner = s[axis + 1..].iter().product();
        let mut shape = s.to_vec();
        shape[axis] = k;
        if x.dtype() == DType::String || x.dtype() == DType::Bool {
            return Err(OpError(format!("TopK does not support {} tensors", x.dtype())));
        }
        let (pos, idx) = match order_keys(x.data()) {
            Keys::F32(v) => topk(&v, outer, dim, inner, k, self.largest),
            Keys::F64(v) => topk(v, outer, dim, inner, k, self.largest),
            Keys::I64(v) => topk(&v, outer, dim, inner, k, self.largest),
            Keys::U64(v) => topk(&v, outer, dim, inner, k, self.largest),
            Keys::Str(_) => bail!("TopK does not support {} tensors", x.dtype()),
        };
        let vals = gather_with_fill(x.data(), &pos, &Fill::Zero)?;
        Ok(vec![
            Value::Tensor(tensor(shape.clone(), vals)?),
            Value::Tensor(Tensor::from_vec(shape, idx)?),
        ])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let s = shape?;
        let axis = axis_of(self.axis, s.rank()).ok()?;
        let k = match self.k_attr {
            Some(k) => Some(k),
            None => consts.get(1).copied().flatten().and_then(|t| t.to_i64_vec().ok()).and_then(|v| v.first().copied()),
        };
        let mut dims = s.0.clone();
        dims[axis] = match k {
            Some(k) if k >= 0 => Dim::Fixed(k as usize),
            _ => Dim::unknown(),
        };
        Some(vec![
            ValueType::Tensor { dtype: dt, shape: Some(Shape(dims.clone())) },
            ValueType::Tensor { dtype: DType::I64, shape: Some(Shape(dims)) },
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// Unique

struct Unique {
    axis: Option<i64>,
    sorted: bool,
}

/// Groups the `dim` items (slices along the middle of [outer, dim, inner]) into unique values.
/// Returns (first occurrence of each unique item, in output order; inverse; counts).
fn unique_items<T: E>(v: &[T], outer: usize, dim: usize, inner: usize, sorted: bool) -> (Vec<usize>, Vec<i64>, Vec<i64>) {
    let cmp_items = |a: usize, b: usize| -> Ordering {
        for o in 0..outer {
            for i in 0..inner {
                let c = v[(o * dim + a) * inner + i].order(&v[(o * dim + b) * inner + i]);
                if c != Ordering::Equal {
                    return c;
                }
            }
        }
        Ordering::Equal
    };
    let mut order: Vec<usize> = (0..dim).collect();
    sort_indices(&mut order, &cmp_items);
    // Groups of equal items in sorted order; the stable sort puts each group's first occurrence first.
    let mut groups: Vec<(usize, i64)> = Vec::new();
    let mut group_of = vec![0usize; dim];
    for (p, &j) in order.iter().enumerate() {
        if p == 0 || cmp_items(order[p - 1], j) != Ordering::Equal {
            groups.push((j, 0));
        }
        let g = groups.len() - 1;
        groups[g].1 += 1;
        group_of[j] = g;
    }
    // Output position of each group.
    let mut pos: Vec<usize> = (0..groups.len()).collect();
    if !sorted {
        sort_indices(&mut pos, &|a, b| groups[a].0.cmp(&groups[b].0));
    }
    let mut rank_of = vec![0usize; groups.len()];
    for (r, &g) in pos.iter().enumerate() {
        rank_of[g] = r;
    }
    let first: Vec<usize> = pos.iter().map(|&g| groups[g].0).collect();
    let counts: Vec<i64> = pos.iter().map(|&g| groups[g].1).collect();
    let inverse: Vec<i64> = group_of.iter().map(|&g| rank_of[g] as i64).collect();
    (first, inverse, counts)
}

impl Op for Unique {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let (outer, dim, inner, axis) = match self.axis {
            Some(a) => {
                let axis = axis_of(a, x.rank())?;
                let s = x.shape();
                (s[..axis].iter().product(), s[axis], s[axis + 1..].iter().product(), Some(axis))
            }
            None => (1, x.len(), 1, None),
        };
        let (first, inverse, counts) = match order_keys(x.data()) {
            Keys::F32(v) => unique_items(&v, outer, dim, inner, self.sorted),
            Keys::F64(v) => unique_items(v, outer, dim, inner, self.sorted),
            Keys::I64(v) => unique_items(&v, outer, dim, inner, self.sorted),
            Keys::U64(v) => unique_items(&v, outer, dim, inner, self.sorted),
            Keys::Str(v) => unique_items(v, outer, dim, inner, self.sorted),
        };
        let u = first.len();
        let y = take_data(x.data(), outer, dim, inner, &first);
        let yshape = match axis {
            Some(a) => {
                let mut s = x.shape().to_vec();
                s[a] = u;
                s
            }
            None => vec![u],
        };
        let first_i: Vec<i64> = first.iter().map(|&f| f as i64).collect();
        Ok(vec![
            Value::Tensor(tensor(yshape, y)?),
            Value::Tensor(Tensor::from_vec(vec![u], first_i)?),
            Value::Tensor(Tensor::from_vec(vec![dim], inverse)?),
            Value::Tensor(Tensor::from_vec(vec![u], counts)?),
        ])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let yshape = match (self.axis, shape) {
            (None, _) => Some(super::unknown_shape(1)),
            (Some(a), Some(s)) => {
                let axis = axis_of(a, s.rank()).ok()?;
                let mut d = s.0.clone();
                d[axis] = Dim::unknown();
                Some(Shape(d))
            }
            (Some(_), None) => None,
        };
        let v = |s| ValueType::Tensor { dtype: DType::I64, shape: Some(s) };
        Some(vec![
            ValueType::Tensor { dtype: dt, shape: yshape },
            v(super::unknown_shape(1)),
            v(super::unknown_shape(1)),
            v(super::unknown_shape(1)),
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// CumSum / CumProd

struct Cum {
    product: bool,
    exclusive: bool,
    reverse: bool,
}

fn cum<T: E>(v: &[T], outer: usize, dim: usize, inner: usize, c: &Cum) -> OpResult<Vec<T>> {
    let bad = || OpError(format!("{} does not support {} tensors", if c.product { "CumProd" } else { "CumSum" }, T::DTYPE));
    let init = if c.product { T::one().ok_or_else(bad)? } else { T::default() };
    let mut out = v.to_vec();
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = init.clone();
            for step in 0..dim {
                let j = if c.reverse { dim - 1 - step } else { step };
                let p = (o * dim + j) * inner + i;
                let next = if c.product { acc.mul(&v[p]) } else { acc.add(&v[p]) }.ok_or_else(bad)?;
                out[p] = if c.exclusive { acc.clone() } else { next.clone() };
                acc = next;
            }
        }
    }
    Ok(out)
}

impl Op for Cum {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let a = inputs.tensor(1)?;
        ensure!(a.len() == 1, "axis must be a scalar, got shape {:?}", a.shape());
        ensure!(!matches!(x.dtype(), DType::Bool | DType::String), "{} tensors are not supported", x.dtype());
        let axis = axis_of(a.to_i64_vec()?[0], x.rank())?;
        let s = x.shape();
        let (outer, dim, inner) = (s[..axis].iter().product(), s[axis], s[axis + 1..].iter().product());
        // Narrower integers accumulate in i64/u64 and wrap back: the same result as wrapping in
        // their own width, with one loop for all of them (code size).
        fn narrow<W: Copy, T>(v: Vec<W>, f: fn(W) -> T) -> Vec<T> {
            v.into_iter().map(f).collect()
        }
        use TensorData as D;
        let data = match x.data() {
            D::F32(v) => D::F32(cum(v, outer, dim, inner, self)?),
            D::F64(v) => D::F64(cum(v, outer, dim, inner, self)?),
            D::F16(v) => D::F16(cum(v, outer, dim, inner, self)?),
            D::BF16(v) => D::BF16(cum(v, outer, dim, inner, self)?),
            D::I64(v) => D::I64(cum(v, outer, dim, inner, self)?),
            D::U64(v) => D::U64(cum(v, outer, dim, inner, self)?),
            d @ (D::I8(_) | D::I16(_) | D::I32(_)) => {
                let Keys::I64(w) = order_keys(d) else { bail!("internal: {} did not widen to int64", d.dtype()) };
                let r = cum(&w, outer, dim, inner, self)?;
                match d {
                    D::I8(_) => D::I8(narrow(r, |x| x as i8)),
                    D::I16(_) => D::I16(narrow(r, |x| x as i16)),
                    _ => D::I32(narrow(r, |x| x as i32)),
                }
            }
            d @ (D::U8(_) | D::U16(_) | D::U32(_)) => {
                let Keys::U64(w) = order_keys(d) else { bail!("internal: {} did not widen to uint64", d.dtype()) };
                let r = cum(&w, outer, dim, inner, self)?;
                match d {
                    D::U8(_) => D::U8(narrow(r, |x| x as u8)),
                    D::U16(_) => D::U16(narrow(r, |x| x as u16)),
                    _ => D::U32(narrow(r, |x| x as u32)),
                }
            }
            other => bail!("{} does not support {} tensors", if self.product { "CumProd" } else { "CumSum" }, other.dtype()),
        };
        one_out(tensor(s.to_vec(), data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        Some(tensor_type(dt, shape.cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_ties_prefer_lower_index() {
        let x = [3i32, 1, 3, 2];
        let vals = |p: Vec<usize>| p.into_iter().map(|p| x[p]).collect::<Vec<_>>();
        let (p, i) = topk(&x, 1, 4, 1, 2, true);
        assert_eq!((vals(p), i), (vec![3, 3], vec![0, 2]));
        let (p, i) = topk(&x, 1, 4, 1, 3, false);
        assert_eq!((vals(p), i), (vec![1, 2, 3], vec![1, 3, 0]));
    }

    #[test]
    fn unique_spec_example_1() {
        let (first, inv, counts) = unique_items(&[2i32, 1, 1, 3, 4, 3], 1, 6, 1, false);
        assert_eq!(first, vec![0, 1, 3, 4]);
        assert_eq!(inv, vec![0, 1, 1, 2, 3, 2]);
        assert_eq!(counts, vec![1, 2, 2, 1]);
    }

    #[test]
    fn cumsum_exclusive_reverse() {
        let c = Cum { product: false, exclusive: true, reverse: true };
        assert_eq!(cum(&[1i64, 2, 3], 1, 3, 1, &c).unwrap(), vec![5, 3, 0]);
        let p = Cum { product: true, exclusive: false, reverse: false };
        assert_eq!(cum(&[1.0f32, 2.0, 3.0], 1, 3, 1, &p).unwrap(), vec![1.0, 2.0, 6.0]);
    }
}
