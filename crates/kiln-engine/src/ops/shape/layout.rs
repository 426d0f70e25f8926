//! Shape and layout operators: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Shape, Size,
//! ConstantOfShape, Expand, Tile, DepthToSpace, SpaceToDepth, EyeLike, Range, Trilu.

use kiln_tensor::{DType, Dim, Shape, Tensor, TensorData, Value, ValueType};

use super::{
    attr_or_const, attr_or_input, axis_of, in_type, istrides, numel, one_out, permute, strided_data, tensor,
    tensor_type, unknown_shape, E,
};
use crate::error::{OpError, OpResult};
use crate::op::{with_first, Inputs, NodeInfo, Op};
use crate::ops::util::broadcast_shapes;
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("Reshape", 1, build_reshape);
    r.add("Flatten", 1, |n| Ok(Box::new(Flatten { axis: n.attr_int_or("axis", 1)? })));
    r.add("Squeeze", 1, |n| Ok(Box::new(Squeeze { axes: n.attr_ints("axes")? })));
    r.add("Unsqueeze", 1, |n| Ok(Box::new(Unsqueeze { axes: n.attr_ints("axes")? })));
    r.add("Transpose", 1, |n| Ok(Box::new(Transpose { perm: n.attr_ints("perm")? })));
    r.add("Shape", 1, |n| {
        Ok(Box::new(ShapeOp { start: n.attr_int_or("start", 0)?, end: n.attr_int("end")? }))
    });
    r.add("Size", 1, |_| Ok(Box::new(SizeOp)));
    r.add("ConstantOfShape", 9, build_constant_of_shape);
    r.add("Expand", 8, |_| Ok(Box::new(Expand)));
    r.add("Tile", 6, |_| Ok(Box::new(Tile)));
    r.add("DepthToSpace", 1, |n| build_space(n, true));
    r.add("SpaceToDepth", 1, |n| build_space(n, false));
    r.add("EyeLike", 9, build_eyelike);
    r.add("Range", 11, |_| Ok(Box::new(Range)));
    r.add("Trilu", 14, |n| Ok(Box::new(Trilu { upper: n.attr_int_or("upper", 1)? != 0 })));
}

// ---------------------------------------------------------------------------------------------
// Reshape

struct Reshape {
    shape_attr: Option<Vec<i64>>,
    allowzero: bool,
}

fn build_reshape(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(Reshape {
        shape_attr: n.attr_ints("shape")?,
        allowzero: n.attr_int_or("allowzero", 0)? != 0,
    }))
}

/// Resolves a Reshape target (0 = copy the input dim unless `allowzero`, -1 = inferred).
fn reshape_dims(input: &[usize], spec: &[i64], allowzero: bool) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, &d) in spec.iter().enumerate() {
        if d == -1 {
            ensure!(infer_at.is_none(), "Reshape target {spec:?} has more than one -1");
            infer_at = Some(i);
            out.push(1);
        } else if d == 0 && !allowzero {
            let Some(&k) = input.get(i) else {
                bail!("Reshape target {spec:?} copies dim {i} (0) but the input {input:?} has rank {}", input.len())
            };
            out.push(k);
        } else if d < 0 {
            bail!("Reshape target {spec:?} has an invalid dim {d}");
        } else {
            out.push(d as usize);
        }
    }
    let total = numel(input)?;
    if let Some(i) = infer_at {
        let known = out.iter().enumerate().filter(|(j, _)| *j != i).try_fold(1usize, |a, (_, &d)| a.checked_mul(d));
        let Some(known) = known else { bail!("Reshape target {spec:?} is too large") };
        ensure!(known != 0, "Reshape target {spec:?} has a -1 next to a zero dim: the size is ambiguous");
        ensure!(total % known == 0, "cannot reshape {input:?} ({total} elements) to {spec:?}");
        out[i] = total / known;
    }
    let n = kiln_tensor::checked_numel(&out).map_err(|_| OpError(format!("Reshape target {spec:?} is too large")))?;
    ensure!(n == total, "cannot reshape {input:?} ({total} elements) to {out:?} ({n} elements)");
    Ok(out)
}

impl Reshape {
    fn out_dims(&self, inputs: &Inputs) -> OpResult<Vec<usize>> {
        let x = inputs.tensor(0)?;
        let spec = attr_or_input(&self.shape_attr, inputs, 1)?.ok_or_else(|| OpError::new("Reshape needs a shape"))?;
        reshape_dims(x.shape(), &spec, self.allowzero)
    }
}

impl Reshape {
    fn infer_types(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let Some(Some(spec)) = attr_or_const(&self.shape_attr, consts, 1) else {
            // Rank is known from the shape input's length.
            let rank = in_type(inputs, 1).and_then(|(_, s)| s).and_then(|s| s.as_fixed()).filter(|s| s.len() == 1)?[0];
            return Some(tensor_type(dt, Some(unknown_shape(rank))));
        };
        if let Some(fixed) = shape.and_then(|s| s.as_fixed()) {
            let out = reshape_dims(&fixed, &spec, self.allowzero).ok()?;
            return Some(tensor_type(dt, Some(Shape::fixed(&out))));
        }
        let mut dims = Vec::with_capacity(spec.len());
        for (i, &d) in spec.iter().enumerate() {
            dims.push(match d {
                -1 => Dim::unknown(),
                0 if !self.allowzero => shape?.0.get(i)?.clone(),
                d if d >= 0 => Dim::Fixed(d as usize),
                _ => return None,
            });
        }
        Some(tensor_type(dt, Some(Shape(dims))))
    }
}

shape_only_op!(Reshape);

// ---------------------------------------------------------------------------------------------
// Flatten

struct Flatten {
    axis: i64,
}

fn flatten_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    ensure!(a >= 0 && a <= rank as i64, "Flatten axis {axis} is out of range for rank {rank}");
    Ok(a as usize)
}

impl Flatten {
    fn out_dims(&self, inputs: &Inputs) -> OpResult<Vec<usize>> {
        let x = inputs.tensor(0)?;
        let a = flatten_axis(self.axis, x.rank())?;
        let outer: usize = x.shape()[..a].iter().product();
        let inner: usize = x.shape()[a..].iter().product();
        Ok(vec![outer, inner])
    }
}

impl Flatten {
    fn infer_types(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let Some(s) = shape else { return Some(tensor_type(dt, Some(unknown_shape(2)))) };
        let a = flatten_axis(self.axis, s.rank()).ok()?;
        let d = |dims: &[Dim]| match super::fixed_product(dims) {
            Some(p) => Dim::Fixed(p),
            None if dims.len() == 1 => dims[0].clone(),
            None => Dim::unknown(),
        };
        Some(tensor_type(dt, Some(Shape(vec![d(&s.0[..a]), d(&s.0[a..])]))))
    }
}

shape_only_op!(Flatten);

// ---------------------------------------------------------------------------------------------
// Squeeze / Unsqueeze

struct Squeeze {
    axes: Option<Vec<i64>>,
}

fn squeeze_keep(rank: usize, axes: Option<&[i64]>, dim_is_one: impl Fn(usize) -> Option<bool>) -> OpResult<Vec<bool>> {
    let mut keep = vec![true; rank];
    match axes {
        Some(axes) => {
            for &a in axes {
                let k = axis_of(a, rank)?;
                match dim_is_one(k) {
                    Some(true) | None => keep[k] = false,
                    Some(false) => bail!("Squeeze axis {a} does not have size 1"),
                }
            }
        }
        None => {
            for (k, keep) in keep.iter_mut().enumerate() {
                match dim_is_one(k) {
                    Some(true) => *keep = false,
                    Some(false) => {}
                    None => bail!("cannot tell whether dim {k} is 1"),
                }
            }
        }
    }
    Ok(keep)
}

impl Squeeze {
    fn out_dims(&self, inputs: &Inputs) -> OpResult<Vec<usize>> {
        let x = inputs.tensor(0)?;
        let axes = attr_or_input(&self.axes, inputs, 1)?;
        let keep = squeeze_keep(x.rank(), axes.as_deref(), |k| Some(x.shape()[k] == 1))?;
        Ok(x.shape().iter().zip(&keep).filter(|(_, &k)| k).map(|(&d, _)| d).collect())
    }
}

impl Squeeze {
    fn infer_types(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let s = shape?;
        let axes = if self.axes.is_none() && inputs.get(1).copied().flatten().is_none() {
            None
        } else {
            Some(attr_or_const(&self.axes, consts, 1)??)
        };
        let keep = squeeze_keep(s.rank(), axes.as_deref(), |k| s.0[k].fixed().map(|d| d == 1)).ok()?;
        let dims = s.0.iter().zip(&keep).filter(|(_, &k)| k).map(|(d, _)| d.clone()).collect();
        Some(tensor_type(dt, Some(Shape(dims))))
    }
}

shape_only_op!(Squeeze);

struct Unsqueeze {
    axes: Option<Vec<i64>>,
}

/// For each output position, Some(input dim index) or None for an inserted 1.
fn unsqueeze_plan(rank: usize, axes: &[i64]) -> OpResult<Vec<Option<usize>>> {
    let out_rank = rank + axes.len();
    let mut ins = vec![false; out_rank];
    for &a in axes {
        let k = axis_of(a, out_rank)?;
        ensure!(!ins[k], "Unsqueeze axis {a} is given twice");
        ins[k] = true;
    }
    let mut next = 0;
    Ok(ins
        .iter()
        .map(|&i| {
            if i {
                None
            } else {
                next += 1;
                Some(next - 1)
            }
        })
        .collect())
}

impl Unsqueeze {
    fn out_dims(&self, inputs: &Inputs) -> OpResult<Vec<usize>> {
        let x = inputs.tensor(0)?;
        let axes = attr_or_input(&self.axes, inputs, 1)?.ok_or_else(|| OpError::new("Unsqueeze needs axes"))?;
        let plan = unsqueeze_plan(x.rank(), &axes)?;
        Ok(plan.iter().map(|p| p.map_or(1, |i| x.shape()[i])).collect())
    }
}

impl Unsqueeze {
    fn infer_types(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let s = shape?;
        let axes = attr_or_const(&self.axes, consts, 1)??;
        let plan = unsqueeze_plan(s.rank(), &axes).ok()?;
        let dims = plan.iter().map(|p| p.map_or(Dim::Fixed(1), |i| s.0[i].clone())).collect();
        Some(tensor_type(dt, Some(Shape(dims))))
    }
}

shape_only_op!(Unsqueeze);

// ---------------------------------------------------------------------------------------------
// Transpose

struct Transpose {
    perm: Option<Vec<i64>>,
}

impl Transpose {
    fn perm(&self, rank: usize) -> OpResult<Vec<usize>> {
        let Some(p) = &self.perm else { return Ok((0..rank).rev().collect()) };
        ensure!(p.len() == rank, "Transpose perm {p:?} does not match rank {rank}");
        let mut seen = vec![false; rank];
        let mut out = Vec::with_capacity(rank);
        for &a in p {
            let k = axis_of(a, rank)?;
            ensure!(!seen[k], "Transpose perm {p:?} is not a permutation");
            seen[k] = true;
            out.push(k);
        }
        Ok(out)
    }
}

impl Op for Transpose {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let perm = self.perm(x.rank())?;
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return one_out(x.clone());
        }
        let (shape, data) = permute(x.data(), x.shape(), &perm);
        one_out(tensor(shape, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let s = shape?;
        let perm = self.perm(s.rank()).ok()?;
        Some(tensor_type(dt, Some(Shape(perm.iter().map(|&p| s.0[p].clone()).collect()))))
    }
}

// ---------------------------------------------------------------------------------------------
// Shape / Size

struct ShapeOp {
    start: i64,
    end: Option<i64>,
}

impl ShapeOp {
    fn range(&self, rank: usize) -> (usize, usize) {
        let r = rank as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let s = clamp(self.start);
        let e = clamp(self.end.unwrap_or(r));
        (s, e.max(s))
    }
}

impl Op for ShapeOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let (s, e) = self.range(x.rank());
        let dims: Vec<i64> = x.shape()[s..e].iter().map(|&d| d as i64).collect();
        one_out(Tensor::from_vec(vec![dims.len()], dims)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let rank = in_type(inputs, 0)?.1?.rank();
        let (s, e) = self.range(rank);
        Some(tensor_type(DType::I64, Some(Shape::fixed(&[e - s]))))
    }
    fn fold_from_types(&self, inputs: &[Option<&ValueType>]) -> Option<Vec<Value>> {
        let dims = in_type(inputs, 0)?.1?.as_fixed()?;
        let (s, e) = self.range(dims.len());
        let v: Vec<i64> = dims[s..e].iter().map(|&d| d as i64).collect();
        Some(vec![Value::Tensor(Tensor::from_vec(vec![v.len()], v).ok()?)])
    }
}

struct SizeOp;

impl Op for SizeOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        one_out(Tensor::scalar(x.len() as i64))
    }
    fn infer(&self, _: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(tensor_type(DType::I64, Some(Shape(vec![]))))
    }
    fn fold_from_types(&self, inputs: &[Option<&ValueType>]) -> Option<Vec<Value>> {
        let n = numel(&in_type(inputs, 0)?.1?.as_fixed()?).ok()?;
        Some(vec![Value::Tensor(Tensor::scalar(n as i64))])
    }
}

// ---------------------------------------------------------------------------------------------
// ConstantOfShape

struct ConstantOfShape {
    value: Tensor,
}

fn build_constant_of_shape(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let value = match n.attr_tensor("value")? {
        Some(t) => {
            ensure!(t.len() == 1, "ConstantOfShape value must have one element, got {}", t.len());
            t
        }
        None => Tensor::scalar(0f32),
    };
    Ok(Box::new(ConstantOfShape { value }))
}

fn filled<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    vec![v[0].clone(); n]
}

fn shape_from_ints(v: &[i64], what: &str) -> OpResult<Vec<usize>> {
    v.iter()
        .map(|&d| usize::try_from(d).map_err(|_| OpError(format!("{what} has a negative dim {d}"))))
        .collect()
}

impl Op for ConstantOfShape {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let shape = shape_from_ints(&inputs.tensor(0)?.to_i64_vec()?, "ConstantOfShape input")?;
        let n = numel(&shape)?;
        let data = kiln_tensor::map_data!(self.value.data(), v => filled(v, n));
        one_out(tensor(shape, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let dt = self.value.dtype();
        if let Some(Some(c)) = consts.first() {
            let shape = shape_from_ints(&c.to_i64_vec().ok()?, "").ok()?;
            return Some(tensor_type(dt, Some(Shape::fixed(&shape))));
        }
        let rank = in_type(inputs, 0).and_then(|(_, s)| s).and_then(|s| s.0.first().and_then(Dim::fixed));
        Some(tensor_type(dt, rank.map(unknown_shape)))
    }
}

// ---------------------------------------------------------------------------------------------
// Expand / Tile

struct Expand;

/// Strides for reading `in_shape` broadcast to `out_shape` (0 on broadcast dims).
fn broadcast_strides(in_shape: &[usize], out_shape: &[usize]) -> Vec<isize> {
    let st = istrides(in_shape);
    let off = out_shape.len() - in_shape.len();
    (0..out_shape.len())
        .map(|i| if i < off || in_shape[i - off] == 1 { 0 } else { st[i - off] })
        .collect()
}

impl Op for Expand {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let target = shape_from_ints(&inputs.tensor(1)?.to_i64_vec()?, "Expand shape")?;
        let out = broadcast_shapes(x.shape(), &target)?;
        numel(&out)?;
        if out == x.shape() {
            return one_out(x.clone());
        }
        let st = broadcast_strides(x.shape(), &out);
        let data = strided_data(x.data(), 0, &out, &st);
        one_out(tensor(out, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let target = match consts.get(1) {
            Some(Some(c)) => shape_from_ints(&c.to_i64_vec().ok()?, "").ok()?,
            _ => {
                let rank = in_type(inputs, 1)?.1?.0.first()?.fixed()?;
                let in_rank = shape?.rank();
                return Some(tensor_type(dt, Some(unknown_shape(rank.max(in_rank)))));
            }
        };
        let out = crate::ops::util::broadcast_symbolic(shape?, &Shape::fixed(&target))?;
        Some(tensor_type(dt, Some(out)))
    }
}

struct Tile;

impl Op for Tile {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let reps = shape_from_ints(&inputs.tensor(1)?.to_i64_vec()?, "Tile repeats")?;
        ensure!(reps.len() == x.rank(), "Tile repeats {reps:?} must have one entry per input dim {:?}", x.shape());
        let st = istrides(x.shape());
        let mut view_shape = Vec::with_capacity(2 * reps.len());
        let mut view_strides = Vec::with_capacity(2 * reps.len());
        let mut out = Vec::with_capacity(reps.len());
        for i in 0..reps.len() {
            view_shape.extend([reps[i], x.shape()[i]]);
            view_strides.extend([0, st[i]]);
            out.push(
                reps[i].checked_mul(x.shape()[i]).ok_or_else(|| OpError::new("Tile output is too large"))?,
            );
        }
        numel(&out)?;
        let data = strided_data(x.data(), 0, &view_shape, &view_strides);
        one_out(tensor(out, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let s = shape?;
        let reps = match consts.get(1) {
            Some(Some(c)) => c.to_i64_vec().ok()?,
            _ => return Some(tensor_type(dt, Some(unknown_shape(s.rank())))),
        };
        if reps.len() != s.rank() {
            return None;
        }
        let dims = s
            .0
            .iter()
            .zip(&reps)
            .map(|(d, &r)| match (d, r) {
                (_, 1) => d.clone(),
                (Dim::Fixed(n), r) if r >= 0 => Dim::Fixed(n * r as usize),
                _ => Dim::unknown(),
            })
            .collect();
        Some(tensor_type(dt, Some(Shape(dims))))
    }
}

// ---------------------------------------------------------------------------------------------
// DepthToSpace / SpaceToDepth

struct SpaceOp {
    to_space: bool,
    crd: bool,
    block: usize,
}

fn build_space(n: &NodeInfo, to_space: bool) -> OpResult<Box<dyn Op>> {
    let block = n.attr_int("blocksize")?.ok_or_else(|| OpError::new("blocksize is required"))?;
    ensure!(block > 0 && block <= 1 << 16, "blocksize {block} is out of range");
    let mode = n.attr_string_or("mode", "DCR")?;
    let crd = match mode.as_str() {
        "DCR" => false,
        "CRD" => true,
        m => bail!("unknown mode '{m}' (expected DCR or CRD)"),
    };
    Ok(Box::new(SpaceOp { to_space, crd, block: block as usize }))
}

impl SpaceOp {
    fn out_shape(&self, s: &[usize]) -> OpResult<Vec<usize>> {
        ensure!(s.len() == 4, "input must be 4-D [N, C, H, W], got {s:?}");
        let b = self.block;
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        if self.to_space {
            ensure!(c % (b * b) == 0, "channels {c} are not divisible by blocksize² {}", b * b);
            let grow = |d: usize| d.checked_mul(b).ok_or_else(|| OpError::new("output is too large"));
            Ok(vec![n, c / (b * b), grow(h)?, grow(w)?])
        } else {
            ensure!(h % b == 0 && w % b == 0, "spatial dims {h}x{w} are not divisible by blocksize {b}");
            let c2 = c.checked_mul(b * b).ok_or_else(|| OpError::new("output is too large"))?;
            Ok(vec![n, c2, h / b, w / b])
        }
    }
}

impl Op for SpaceOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let out = self.out_shape(x.shape())?;
        let s = x.shape();
        let b = self.block;
        let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
        let (tmp, perm): (Vec<usize>, [usize; 6]) = match (self.to_space, self.crd) {
            (true, false) => (vec![n, b, b, c / (b * b), h, w], [0, 3, 4, 1, 5, 2]),
            (true, true) => (vec![n, c / (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3]),
            (false, false) => (vec![n, c, h / b, b, w / b, b], [0, 3, 5, 1, 2, 4]),
            (false, true) => (vec![n, c, h / b, b, w / b, b], [0, 1, 3, 5, 2, 4]),
        };
        let (_, data) = permute(x.data(), &tmp, &perm);
        one_out(tensor(out, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let shape = match shape.and_then(|s| s.as_fixed()) {
            Some(f) => Shape::fixed(&self.out_shape(&f).ok()?),
            None => unknown_shape(4),
        };
        Some(tensor_type(dt, Some(shape)))
    }
}

// ---------------------------------------------------------------------------------------------
// EyeLike

struct EyeLike {
    dtype: Option<DType>,
    k: i64,
}

fn build_eyelike(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let dtype = match n.attr_int("dtype")? {
        Some(code) => Some(
            DType::from_onnx(code as i32)
                .ok_or_else(|| OpError(format!("unsupported dtype {}", DType::onnx_code_name(code as i32))))?,
        ),
        None => None,
    };
    Ok(Box::new(EyeLike { dtype, k: n.attr_int_or("k", 0)? }))
}

fn set_diag<T: E>(v: &mut [T], rows: usize, cols: usize, k: i64) -> OpResult<()> {
    let one = T::one().ok_or_else(|| OpError(format!("EyeLike does not support {}", T::DTYPE)))?;
    for i in 0..rows {
        let j = i as i64 + k;
        if j >= 0 && (j as usize) < cols {
            v[i * cols + j as usize] = one.clone();
        }
    }
    Ok(())
}

impl Op for EyeLike {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        ensure!(x.rank() == 2, "EyeLike input must be 2-D, got {:?}", x.shape());
        let dt = self.dtype.unwrap_or(x.dtype());
        let (rows, cols) = (x.shape()[0], x.shape()[1]);
        let mut out = Tensor::zeros(dt, vec![rows, cols])?;
        kiln_tensor::match_data!(out.data_mut(), v => set_diag(v, rows, cols, self.k)?);
        one_out(out)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        Some(tensor_type(self.dtype.unwrap_or(dt), shape.cloned()))
    }
}

// ---------------------------------------------------------------------------------------------
// Range

struct Range;

fn scalar_f64(t: &Tensor, what: &str) -> OpResult<f64> {
    ensure!(t.len() == 1, "Range {what} must be a scalar, got shape {:?}", t.shape());
    Ok(t.to_f64_vec()?[0])
}

impl Op for Range {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (s, l, d) = (inputs.tensor(0)?, inputs.tensor(1)?, inputs.tensor(2)?);
        ensure!(
            s.dtype() == l.dtype() && s.dtype() == d.dtype(),
            "Range inputs must share a dtype, got {}, {}, {}",
            s.dtype(),
            l.dtype(),
            d.dtype()
        );
        let dt = s.dtype();
        if dt.is_float() {
            let (start, limit, delta) = (scalar_f64(s, "start")?, scalar_f64(l, "limit")?, scalar_f64(d, "delta")?);
            ensure!(delta != 0.0, "Range delta must not be zero");
            let n = ((limit - start) / delta).ceil().max(0.0);
            if n > kiln_tensor::MAX_ELEMENTS as f64 {
                bail!("Range would produce {n} elements");
            }
            let n = n as usize;
            let data = match dt {
                DType::F32 => {
                    let (s0, d0) = (start as f32, delta as f32);
                    TensorData::F32((0..n).map(|i| s0 + i as f32 * d0).collect())
                }
                DType::F64 => TensorData::F64((0..n).map(|i| start + i as f64 * delta).collect()),
                DType::F16 => TensorData::F16(
                    (0..n).map(|i| kiln_tensor::f16::from_f32(start as f32 + i as f32 * delta as f32)).collect(),
                ),
                _ => TensorData::BF16(
                    (0..n).map(|i| kiln_tensor::bf16::from_f32(start as f32 + i as f32 * delta as f32)).collect(),
                ),
            };
            return one_out(tensor(vec![n], data)?);
        }
        let one = |t: &Tensor, w: &str| -> OpResult<i64> {
            ensure!(t.len() == 1, "Range {w} must be a scalar, got shape {:?}", t.shape());
            Ok(t.to_i64_vec()?[0])
        };
        let (start, limit, delta) = (one(s, "start")?, one(l, "limit")?, one(d, "delta")?);
        ensure!(delta != 0, "Range delta must not be zero");
        let span = limit as i128 - start as i128;
        let dl = delta as i128;
        let n = if (span > 0) == (dl > 0) && span != 0 { (span + dl - dl.signum()) / dl } else { 0 };
        ensure!(n <= kiln_tensor::MAX_ELEMENTS as i128, "Range would produce {n} elements");
        let n = n as usize;
        let vals = (0..n).map(|i| start + i as i64 * delta);
        let data = match dt {
            DType::I64 => TensorData::I64(vals.collect()),
            DType::I32 => TensorData::I32(vals.map(|v| v as i32).collect()),
            DType::I16 => TensorData::I16(vals.map(|v| v as i16).collect()),
            other => bail!("Range does not support {other}"),
        };
        one_out(tensor(vec![n], data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, _) = in_type(inputs, 0)?;
        Some(tensor_type(dt, Some(unknown_shape(1))))
    }
}

// ---------------------------------------------------------------------------------------------
// Trilu

struct Trilu {
    upper: bool,
}

fn trilu<T: Clone + Default>(v: &mut [T], rows: usize, cols: usize, k: i64, upper: bool) {
    if rows == 0 || cols == 0 {
        return;
    }
    for m in v.chunks_mut(rows * cols) {
        for i in 0..rows {
            for j in 0..cols {
                let d = j as i64 - i as i64;
                let keep = if upper { d >= k } else { d <= k };
                if !keep {
                    m[i * cols + j] = T::default();
                }
            }
        }
    }
}

impl Op for Trilu {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        ensure!(x.rank() >= 2, "Trilu input must have rank >= 2, got {:?}", x.shape());
        let k = match inputs.opt_tensor(1)? {
            Some(t) => {
                ensure!(t.len() == 1, "Trilu k must be a scalar");
                t.to_i64_vec()?[0]
            }
            None => 0,
        };
        let r = x.rank();
        let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
        let mut out = x.clone();
        kiln_tensor::match_data!(out.data_mut(), v => trilu(v, rows, cols, k, self.upper));
        one_out(out)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        Some(tensor_type(dt, shape.cloned()))
    }
}


/// The `Op` impl of an op that only changes dims (`out_dims`, `infer_types`): the output is input
/// 0's elements under new dims, moved rather than copied when this step reads input 0 last.
macro_rules! shape_only_op {
    ($t:ident) => {
        impl Op for $t {
            fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
                let x = inputs.tensor(0)?;
                one_out(tensor(self.out_dims(inputs)?, x.data().clone())?)
            }
            fn reuses_input0(&self) -> bool {
                true
            }
            fn run_reusing(&self, first: Value, inputs: &Inputs) -> OpResult<Vec<Value>> {
                reshape_moved(first, inputs, |all| self.out_dims(all))
            }
            fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
                self.infer_types(inputs, consts)
            }
        }
    };
}
use shape_only_op;

/// Output of a shape-only op for a moved input 0: the same buffer under the new dims.
fn reshape_moved(first: Value, inputs: &Inputs, dims: impl FnOnce(&Inputs) -> OpResult<Vec<usize>>) -> OpResult<Vec<Value>> {
    let shape = with_first(&first, inputs, dims)?;
    let Value::Tensor(t) = first else {
        return Err(OpError::new("input 0 should be a tensor"));
    };
    one_out(t.reshape(shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_rules() {
        assert_eq!(reshape_dims(&[2, 3, 4], &[0, -1], false).unwrap(), vec![2, 12]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[4, 0, 2], false).unwrap(), vec![4, 3, 2]);
        assert_eq!(reshape_dims(&[0, 3], &[3, 0], true).unwrap(), vec![3, 0]);
        assert!(reshape_dims(&[2, 3], &[4, -1], false).is_err());
        assert!(reshape_dims(&[2, 3], &[-1, -1], false).is_err());
    }

    #[test]
    fn unsqueeze_positions() {
        assert_eq!(unsqueeze_plan(2, &[0, -1]).unwrap(), vec![None, Some(0), Some(1), None]);
    }

    #[test]
    fn trilu_lower() {
        let mut v: Vec<i32> = (1..=9).collect();
        trilu(&mut v, 3, 3, 0, false);
        assert_eq!(v, vec![1, 0, 0, 4, 5, 0, 7, 8, 9]);
    }
}

#[cfg(test)]
mod infer_tests {
    use super::*;

    fn ty(dt: DType, dims: Vec<Dim>) -> ValueType {
        ValueType::Tensor { dtype: dt, shape: Some(Shape(dims)) }
    }

    #[test]
    fn reshape_infer_keeps_symbols() {
        let op = Reshape { shape_attr: None, allowzero: false };
        let x = ty(DType::F32, vec![Dim::Sym("b".into()), Dim::Fixed(12), Dim::Fixed(64)]);
        let spec = Tensor::from_vec(vec![4], vec![0i64, 0, 4, 16]).unwrap();
        let out = op.infer(&[Some(&x), None], &[None, Some(&spec)]).unwrap();
        let want = ty(DType::F32, vec![Dim::Sym("b".into()), Dim::Fixed(12), Dim::Fixed(4), Dim::Fixed(16)]);
        assert_eq!(out, vec![want]);
    }

    #[test]
    fn shape_folds_static_dims() {
        let op = ShapeOp { start: 1, end: None };
        let x = ty(DType::F32, vec![Dim::Fixed(2), Dim::Fixed(3), Dim::Fixed(4)]);
        let v = op.fold_from_types(&[Some(&x)]).unwrap();
        assert_eq!(v, vec![Value::Tensor(Tensor::from_vec(vec![2], vec![3i64, 4]).unwrap())]);
        let sym = ty(DType::F32, vec![Dim::Sym("b".into()), Dim::Fixed(3)]);
        assert!(op.fold_from_types(&[Some(&sym)]).is_none());
        assert_eq!(op.infer(&[Some(&sym)], &[None]).unwrap(), vec![ty(DType::I64, vec![Dim::Fixed(1)])]);
    }

    #[test]
    fn unsqueeze_infer() {
        let op = Unsqueeze { axes: Some(vec![0]) };
        let x = ty(DType::I64, vec![]);
        assert_eq!(op.infer(&[Some(&x)], &[None]).unwrap(), vec![ty(DType::I64, vec![Dim::Fixed(1)])]);
    }
}
