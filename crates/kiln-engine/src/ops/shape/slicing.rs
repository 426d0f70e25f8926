//! Joining, splitting and cropping operators: Concat, Split, Slice, Pad, CenterCropPad, Compress,
//! ReverseSequence.

use kiln_tensor::{Dim, Shape, Tensor, TensorData, Value, ValueType};

use super::{
    attr_or_const, attr_or_input, axis_of, axis_map_indices, gather_with_fill, in_type, istrides, move_data_n, numel,
    one_out, strided_data, take_data, tensor, tensor_type, Fill, MoverN,
};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("Concat", 1, |n| Ok(Box::new(Concat { axis: n.attr_int_or("axis", 1)? })));
    r.add("Split", 1, build_split);
    r.add("Slice", 1, build_slice);
    r.add("Pad", 1, build_pad);
    r.add("CenterCropPad", 18, |n| Ok(Box::new(CenterCropPad { axes: n.attr_ints("axes")? })));
    r.add("Compress", 9, |n| Ok(Box::new(Compress { axis: n.attr_int("axis")? })));
    r.add("ReverseSequence", 10, |n| {
        Ok(Box::new(ReverseSequence {
            batch_axis: n.attr_int_or("batch_axis", 1)?,
            time_axis: n.attr_int_or("time_axis", 0)?,
        }))
    });
}

/// Splits a shape around `axis` into (outer, dim, inner) element counts.
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

// ---------------------------------------------------------------------------------------------
// Concat

struct Concat {
    axis: i64,
}

impl Op for Concat {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let ts = inputs.tensors()?;
        let first = *ts.first().ok_or_else(|| OpError::new("Concat needs at least one input"))?;
        let rank = first.rank();
        let axis = axis_of(self.axis, rank)?;
        let mut out_shape = first.shape().to_vec();
        out_shape[axis] = 0;
        for t in &ts {
            ensure!(t.dtype() == first.dtype(), "Concat inputs mix {} and {}", first.dtype(), t.dtype());
            ensure!(
                t.rank() == rank
                    && t.shape().iter().zip(first.shape()).enumerate().all(|(i, (a, b))| i == axis || a == b),
                "Concat inputs {:?} and {:?} differ outside axis {axis}",
                first.shape(),
                t.shape()
            );
            out_shape[axis] += t.shape()[axis];
        }
        let n = numel(&out_shape)?;
        if ts.len() == 1 {
            return one_out(first.clone());
        }
        let outer: usize = out_shape[..axis].iter().product();
        let inner: usize = out_shape[axis + 1..].iter().product();
        let blocks: Vec<usize> = ts.iter().map(|t| t.shape()[axis] * inner).collect();
        struct M<'a>(&'a [usize], usize, usize);
        impl MoverN for M<'_> {
            fn run<T: Clone + Default + Send + Sync>(&self, parts: &[&[T]]) -> OpResult<Vec<T>> {
                Ok(concat(parts, self.0, self.1, self.2))
            }
        }
        let datas: Vec<&TensorData> = ts.iter().map(|t| t.data()).collect();
        let data = move_data_n(&datas, &M(&blocks, outer, n))?;
        one_out(tensor(out_shape, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, _) = in_type(inputs, 0)?;
        let shapes: Vec<&Shape> = inputs.iter().map(|t| t.and_then(|t| t.tensor_shape())).collect::<Option<_>>()?;
        let rank = shapes.first()?.rank();
        if shapes.iter().any(|s| s.rank() != rank) {
            return None;
        }
        let axis = axis_of(self.axis, rank).ok()?;
        let mut dims = Vec::with_capacity(rank);
        for i in 0..rank {
            if i == axis {
                let sum = shapes.iter().map(|s| s.0[i].fixed()).try_fold(0usize, |a, d| d.map(|d| a + d));
                dims.push(sum.map_or_else(Dim::unknown, Dim::Fixed));
            } else {
                let known = shapes.iter().find_map(|s| s.0[i].fixed().map(Dim::Fixed));
                dims.push(known.unwrap_or_else(|| shapes[0].0[i].clone()));
            }
        }
        Some(tensor_type(dt, Some(Shape(dims))))
    }
}

fn concat<T: Clone + Send + Sync>(parts: &[&[T]], blocks: &[usize], outer: usize, n: usize) -> Vec<T> {
    let threads = crate::ops::matmul::num_threads();
    if threads < 2 || n * std::mem::size_of::<T>() < PAR_CONCAT_BYTES {
        let mut out = Vec::with_capacity(n);
        for o in 0..outer {
            for (p, &b) in parts.iter().zip(blocks) {
                out.extend_from_slice(&p[o * b..(o + 1) * b]);
            }
        }
        return out;
    }
    // Large outputs: the (outer index, input) runs split over the threads in groups of about
    // equal size, each written straight into its place in the output.
    let mut out: Vec<T> = Vec::with_capacity(n);
    let mut runs: Vec<(&mut [std::mem::MaybeUninit<T>], &[T])> = Vec::with_capacity(outer * parts.len());
    let mut rest = &mut out.spare_capacity_mut()[..n];
    for o in 0..outer {
        for (p, &b) in parts.iter().zip(blocks) {
            let (dst, tail) = std::mem::take(&mut rest).split_at_mut(b);
            runs.push((dst, &p[o * b..(o + 1) * b]));
            rest = tail;
        }
    }
    // Runs larger than a group's share are split so the groups come out even.
    let share = n.div_ceil(threads * 2).max(1);
    let mut pieces = Vec::with_capacity(runs.len() + threads * 2);
    for (dst, src) in runs {
        for (d, s) in dst.chunks_mut(share).zip(src.chunks(share)) {
            pieces.push((d, s));
        }
    }
    let mut groups: Vec<Vec<(&mut [std::mem::MaybeUninit<T>], &[T])>> = Vec::new();
    let mut size = share;
    for piece in pieces {
        if size + piece.1.len() > share {
            groups.push(Vec::new());
            size = 0;
        }
        size += piece.1.len();
        if let Some(g) = groups.last_mut() {
            g.push(piece);
        }
    }
    crate::ops::matmul::par_each(groups, |group| {
        for (dst, src) in group {
            for (d, s) in dst.iter_mut().zip(src) {
                d.write(s.clone());
            }
        }
    });
    // SAFETY: the runs cover the first n elements (the blocks of every outer index, in order,
    // sum to n) and every run was written above.
    unsafe { out.set_len(n) };
    out
}

/// Outputs from this size (bytes) are copied by several threads.
const PAR_CONCAT_BYTES: usize = 256 << 10;

// ---------------------------------------------------------------------------------------------
// Split

struct Split {
    axis: i64,
    split_attr: Option<Vec<i64>>,
    num_outputs: Option<i64>,
    outputs: usize,
}

fn build_split(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(Split {
        axis: n.attr_int_or("axis", 0)?,
        split_attr: n.attr_ints("split")?,
        num_outputs: n.attr_int("num_outputs")?,
        outputs: n.num_outputs,
    }))
}

impl Split {
    fn sizes(&self, dim: usize, split: Option<Vec<i64>>) -> OpResult<Vec<usize>> {
        if let Some(s) = split {
            let sizes: Vec<usize> = s
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| OpError(format!("Split sizes {s:?} contain a negative value"))))
                .collect::<OpResult<_>>()?;
            ensure!(sizes.iter().sum::<usize>() == dim, "Split sizes {s:?} do not add up to the dim {dim}");
            return Ok(sizes);
        }
        let n = match self.num_outputs {
            Some(k) => usize::try_from(k).ok().filter(|&k| k > 0).ok_or_else(|| OpError(format!("num_outputs {k} is invalid")))?,
            None => self.outputs.max(1),
        };
        let chunk = dim.div_ceil(n);
        let last = dim
            .checked_sub(chunk * (n - 1))
            .ok_or_else(|| OpError(format!("cannot split a dim of {dim} into {n} parts")))?;
        let mut v = vec![chunk; n - 1];
        v.push(last);
        Ok(v)
    }
}

impl Op for Split {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let axis = axis_of(self.axis, x.rank())?;
        let (outer, dim, inner) = around(x.shape(), axis);
        let sizes = self.sizes(dim, attr_or_input(&self.split_attr, inputs, 1)?)?;
        let mut outs = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for &s in &sizes {
            let mut shape = x.shape().to_vec();
            shape[axis] = s;
            let data = if s == 0 || inner == 0 {
                TensorData::zeros(x.dtype(), 0)
            } else {
                let sel: Vec<usize> = (at..at + s).collect();
                take_data(x.data(), outer, dim, inner, &sel)
            };
            at += s;
            outs.push(Value::Tensor(tensor(shape, data)?));
        }
        Ok(outs)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let s = shape?;
        let axis = axis_of(self.axis, s.rank()).ok()?;
        let split = if self.split_attr.is_none() && inputs.get(1).copied().flatten().is_none() {
            None
        } else {
            Some(attr_or_const(&self.split_attr, consts, 1)??)
        };
        let sizes: Vec<Dim> = match s.0[axis].fixed() {
            Some(dim) => self.sizes(dim, split).ok()?.into_iter().map(Dim::Fixed).collect(),
            None => (0..self.outputs).map(|_| Dim::unknown()).collect(),
        };
        Some(
            sizes
                .into_iter()
                .map(|d| {
                    let mut dims = s.0.clone();
                    dims[axis] = d;
                    ValueType::Tensor { dtype: dt, shape: Some(Shape(dims)) }
                })
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Slice

struct Slice {
    starts: Option<Vec<i64>>,
    ends: Option<Vec<i64>>,
    axes: Option<Vec<i64>>,
}

fn build_slice(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(Slice { starts: n.attr_ints("starts")?, ends: n.attr_ints("ends")?, axes: n.attr_ints("axes")? }))
}

/// Start index and length of one sliced axis (numpy semantics: negative indices count from the
/// end, out-of-range indices clamp).
fn slice_axis(dim: usize, start: i64, end: i64, step: i64) -> (usize, usize) {
    let dim = dim as i128;
    let (s, e, step) = (start as i128, end as i128, step as i128);
    let adj = |v: i128| if v < 0 { v + dim } else { v };
    let (s, e) = (adj(s), adj(e));
    if step > 0 {
        let (s, e) = (s.clamp(0, dim), e.clamp(0, dim));
        let len = if e > s { (e - s + step - 1) / step } else { 0 };
        (if len > 0 { s as usize } else { 0 }, len as usize)
    } else {
        let (s, e) = (s.clamp(-1, dim - 1), e.clamp(-1, dim - 1));
        let len = if s > e { (s - e - step - 1) / -step } else { 0 };
        (if len > 0 { s as usize } else { 0 }, len as usize)
    }
}

struct SliceParams {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
}

impl SliceParams {
    /// (axis, start, end, step) per sliced axis, validated against `rank`.
    fn per_axis(&self, rank: usize) -> OpResult<Vec<(usize, i64, i64, i64)>> {
        let n = self.starts.len();
        ensure!(self.ends.len() == n, "Slice starts {:?} and ends {:?} differ in length", self.starts, self.ends);
        let axes: Vec<i64> = self.axes.clone().unwrap_or_else(|| (0..n as i64).collect());
        ensure!(axes.len() == n, "Slice axes {axes:?} do not match starts {:?}", self.starts);
        let steps = self.steps.clone().unwrap_or_else(|| vec![1; n]);
        ensure!(steps.len() == n, "Slice steps {steps:?} do not match starts {:?}", self.starts);
        let mut seen = vec![false; rank];
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let a = axis_of(axes[i], rank)?;
            ensure!(!seen[a], "Slice axis {} is given twice", axes[i]);
            seen[a] = true;
            ensure!(steps[i] != 0, "Slice step must not be zero");
            out.push((a, self.starts[i], self.ends[i], steps[i]));
        }
        Ok(out)
    }
}

impl Slice {
    fn params(&self, inputs: &Inputs) -> OpResult<SliceParams> {
        let need = |v: Option<Vec<i64>>, w: &str| v.ok_or_else(|| OpError(format!("Slice needs {w}")));
        Ok(SliceParams {
            starts: need(attr_or_input(&self.starts, inputs, 1)?, "starts")?,
            ends: need(attr_or_input(&self.ends, inputs, 2)?, "ends")?,
            axes: attr_or_input(&self.axes, inputs, 3)?,
            steps: if self.starts.is_some() { None } else { attr_or_input(&None, inputs, 4)? },
        })
    }
    fn const_params(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<SliceParams> {
        let opt = |attr: &Option<Vec<i64>>, i: usize| -> Option<Option<Vec<i64>>> {
            if attr.is_none() && inputs.get(i).copied().flatten().is_none() {
                Some(None)
            } else {
                attr_or_const(attr, consts, i)
            }
        };
        Some(SliceParams {
            starts: attr_or_const(&self.starts, consts, 1)??,
            ends: attr_or_const(&self.ends, consts, 2)??,
            axes: opt(&self.axes, 3)?,
            steps: if self.starts.is_some() { None } else { opt(&None, 4)? },
        })
    }
}

impl Op for Slice {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let p = self.params(inputs)?;
        let st = istrides(x.shape());
        let mut shape = x.shape().to_vec();
        let mut strides = st.clone();
        let mut offset = 0usize;
        for (a, s, e, step) in p.per_axis(x.rank())? {
            let (start, len) = slice_axis(x.shape()[a], s, e, step);
            shape[a] = len;
            strides[a] = st[a] * step as isize;
            offset += start * st[a] as usize;
        }
        if shape == x.shape() && strides == st {
            return one_out(x.clone());
        }
        let data = strided_data(x.data(), offset, &shape, &strides);
        one_out(tensor(shape, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let s = shape?;
        let Some(p) = self.const_params(inputs, consts) else {
            return Some(tensor_type(dt, Some(super::unknown_shape(s.rank()))));
        };
        let mut dims = s.0.clone();
        for (a, st, e, step) in p.per_axis(s.rank()).ok()? {
            dims[a] = match &s.0[a] {
                Dim::Fixed(d) => Dim::Fixed(slice_axis(*d, st, e, step).1),
                Dim::Sym(_) if st == 0 && step == 1 && e >= i32::MAX as i64 => s.0[a].clone(),
                Dim::Sym(_) => Dim::unknown(),
            };
        }
        Some(tensor_type(dt, Some(Shape(dims))))
    }
}

// ---------------------------------------------------------------------------------------------
// Pad

#[derive(Clone, Copy, PartialEq)]
enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

struct Pad {
    mode: PadMode,
    pads_attr: Option<Vec<i64>>,
    value_attr: Option<f64>,
}

fn build_pad(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let mode = match n.attr_string_or("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        m => bail!("unknown Pad mode '{m}'"),
    };
    let pads_attr = match n.attr_ints("pads")? {
        Some(p) => Some(p),
        None => n.attr_ints("paddings")?,
    };
    Ok(Box::new(Pad { mode, pads_attr, value_attr: n.attr_float("value")?.map(f64::from) }))
}

/// Source index for output position `o` of an axis padded by `before`, or None for fill.
fn pad_src(mode: PadMode, o: usize, before: i64, dim: usize) -> Option<usize> {
    let src = o as i64 - before;
    let d = dim as i64;
    if (0..d).contains(&src) {
        return Some(src as usize);
    }
    match mode {
        PadMode::Constant => None,
        PadMode::Edge => Some(src.clamp(0, d - 1) as usize),
        PadMode::Wrap => Some(src.rem_euclid(d) as usize),
        PadMode::Reflect => {
            if d == 1 {
                return Some(0);
            }
            let period = 2 * (d - 1);
            let x = src.rem_euclid(period);
            Some(if x >= d { period - x } else { x } as usize)
        }
    }
}

impl Op for Pad {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let rank = x.rank();
        let pads = attr_or_input(&self.pads_attr, inputs, 1)?.ok_or_else(|| OpError::new("Pad needs pads"))?;
        let axes: Vec<usize> = match inputs.opt_tensor(3)? {
            Some(t) => super::super::util::norm_axes(&t.to_i64_vec()?, rank)?,
            None => (0..rank).collect(),
        };
        ensure!(pads.len() == 2 * axes.len(), "Pad pads {pads:?} must have 2 entries per padded axis ({} axes)", axes.len());
        let mut before = vec![0i64; rank];
        let mut after = vec![0i64; rank];
        for (i, &a) in axes.iter().enumerate() {
            before[a] = pads[i];
            after[a] = pads[i + axes.len()];
        }
        if before.iter().chain(&after).all(|&p| p == 0) {
            return one_out(x.clone());
        }
        let mut shape = Vec::with_capacity(rank);
        for a in 0..rank {
            let dim = x.shape()[a];
            let out = (dim as i128) + before[a] as i128 + after[a] as i128;
            ensure!(out >= 0, "Pad removes more than the {dim} elements of axis {a}");
            let out = usize::try_from(out).map_err(|_| OpError(format!("Pad output axis {a} is too large")))?;
            if self.mode != PadMode::Constant && dim == 0 && out > 0 {
                bail!("Pad cannot extend empty axis {a} in this mode");
            }
            shape.push(out);
        }
        numel(&shape)?;
        let maps: Vec<Vec<Option<usize>>> = (0..rank)
            .map(|a| (0..shape[a]).map(|o| pad_src(self.mode, o, before[a], x.shape()[a])).collect())
            .collect();
        let idx = axis_map_indices(x.shape(), &maps)?;
        let fill = match (inputs.opt_tensor(2)?, self.value_attr) {
            (Some(t), _) => Fill::Tensor(t),
            (None, Some(v)) => Fill::Float(v),
            (None, None) => Fill::Zero,
        };
        let data = gather_with_fill(x.data(), &idx, &fill)?;
        one_out(tensor(shape, data)?)
    }
    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let (dt, shape) = in_type(inputs, 0)?;
        let s = shape?;
        let pads = match attr_or_const(&self.pads_attr, consts, 1) {
            Some(Some(p)) => p,
            _ => return Some(tensor_type(dt, Some(super::unknown_shape(s.rank())))),
        };
        if inputs.get(3).copied().flatten().is_some() || pads.len() != 2 * s.rank() {
            return Some(tensor_type(dt, Some(super::unknown_shape(s.rank()))));
        }
        let r = s.rank();
        let dims = (0..r)
            .map(|a| match &s.0[a] {
                Dim::Fixed(d) => {
                    let n = *d as i64 + pads[a] + pads[a + r];
                    if n >= 0 {
                        Dim::Fixed(n as usize)
                    } else {
                        Dim::unknown()
                    }
                }
                d if pads[a] == 0 && pads[a + r] == 0 => d.clone(),
                _ => Dim::unknown(),
            })
            .collect();
        Some(tensor_type(dt, Some(Shape(dims))))
    }
}

// ---------------------------------------------------------------------------------------------
// CenterCropPad

struct CenterCropPad {
    axes: Option<Vec<i64>>,
}

impl Op for CenterCropPad {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let target = inputs.tensor(1)?.to_i64_vec()?;
        let rank = x.rank();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => super::super::util::norm_axes(a, rank)?,
            None => (0..rank).collect(),
        };
        ensure!(target.len() == axes.len(), "CenterCropPad shape {target:?} must have one entry per axis ({} axes)", axes.len());
        let mut shape = x.shape().to_vec();
        for (&a, &t) in axes.iter().zip(&target) {
            shape[a] = usize::try_from(t).map_err(|_| OpError(format!("CenterCropPad shape has a negative dim {t}")))?;
        }
        numel(&shape)?;
        let mut maps: Vec<Vec<Option<usize>>> = x.shape().iter().map(|&d| (0..d).map(Some).collect()).collect();
        for &a in &axes {
            let t = shape[a];
            let dim = x.shape()[a];
            maps[a] = if t <= dim {
                let start = (dim - t) / 2;
                (0..t).map(|o| Some(start + o)).collect()
            } else {
                let start = (t - dim) / 2;
                (0..t).map(|o| if o >= start && o < start + dim { Some(o - start) } else { None }).collect()
            };
        }
        let idx = axis_map_indices(x.shape(), &maps)?;
        let data = gather_with_fill(x.data(), &idx, &Fill::Zero)?;
        one_out(tensor(shape, data)?)
    }
}

// ---------------------------------------------------------------------------------------------
// Compress

struct Compress {
    axis: Option<i64>,
}

impl Op for Compress {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let c = inputs.tensor(1)?;
        ensure!(c.rank() == 1, "Compress condition must be 1-D, got {:?}", c.shape());
        let cond = c.as_slice::<bool>()?;
        let (outer, dim, inner, axis) = match self.axis {
            Some(a) => {
                let axis = axis_of(a, x.rank())?;
                let (o, d, i) = around(x.shape(), axis);
                (o, d, i, Some(axis))
            }
            None => (1, x.len(), 1, None),
        };
        let sel: Vec<usize> = cond.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i).collect();
        if let Some(&last) = sel.last() {
            ensure!(last < dim, "Compress condition selects index {last} but the axis has {dim} elements");
        }
        let data = take_data(x.data(), outer, dim, inner, &sel);
        let shape = match axis {
            Some(a) => {
                let mut s = x.shape().to_vec();
                s[a] = sel.len();
                s
            }
            None => vec![sel.len()],
        };
        one_out(tensor(shape, data)?)
    }
}

// ---------------------------------------------------------------------------------------------
// ReverseSequence

struct ReverseSequence {
    batch_axis: i64,
    time_axis: i64,
}

impl Op for ReverseSequence {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let lens = inputs.tensor(1)?.to_i64_vec()?;
        ensure!(x.rank() >= 2, "ReverseSequence input must have rank >= 2, got {:?}", x.shape());
        let (b, t) = (self.batch_axis, self.time_axis);
        ensure!(
            matches!((b, t), (0, 1) | (1, 0)),
            "ReverseSequence batch_axis/time_axis must be 0 and 1 in some order, got {b} and {t}"
        );
        let (b, t) = (b as usize, t as usize);
        let (nb, nt) = (x.shape()[b], x.shape()[t]);
        ensure!(lens.len() == nb, "sequence_lens has {} entries for a batch of {nb}", lens.len());
        for &l in &lens {
            ensure!(l >= 0 && l as usize <= nt, "sequence length {l} is outside [0, {nt}]");
        }
        let st = kiln_tensor::strides_of(x.shape());
        let (sb, stt) = (st[b], st[t]);
        let idx: Vec<usize> = (0..x.len())
            .map(|o| {
                let bi = (o / sb) % nb;
                let ti = (o / stt) % nt;
                let l = lens[bi] as usize;
                if ti < l {
                    o - ti * stt + (l - 1 - ti) * stt
                } else {
                    o
                }
            })
            .collect();
        one_out(tensor(x.shape().to_vec(), x.data().gather(&idx))?)
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
    fn slice_axis_numpy_rules() {
        // a[1:3] of 5
        assert_eq!(slice_axis(5, 1, 3, 1), (1, 2));
        // a[::-1] with INT64_MIN end
        assert_eq!(slice_axis(5, -1, i64::MIN, -1), (4, 5));
        // a[10:] clamps to empty
        assert_eq!(slice_axis(5, 10, i64::MAX, 1).1, 0);
        // a[0:5:2] -> 0,2,4
        assert_eq!(slice_axis(5, 0, 5, 2), (0, 3));
        // a[4:0:-2] -> 4,2
        assert_eq!(slice_axis(5, 4, 0, -2), (4, 2));
    }

    #[test]
    fn concat_threaded_matches_definition() {
        // Outputs large enough for the threaded copy, with 1 and 2 threads, several outer
        // indices, uneven inputs and strings (a type that is cloned, not copied).
        for threads in [1, 2] {
            let _pool = kiln_kernels::par::enter(kiln_kernels::par::build_pool(threads));
            for (outer, dims, inner) in [(1usize, vec![64usize, 96], 3025usize), (3, vec![5, 1, 9], 40_000), (2, vec![7, 3], 7)] {
                let parts: Vec<Vec<f32>> = dims.iter().enumerate().map(|(q, &d)| (0..outer * d * inner).map(|i| (q * 1_000_000 + i) as f32).collect()).collect();
                let blocks: Vec<usize> = dims.iter().map(|d| d * inner).collect();
                let total: usize = dims.iter().sum::<usize>() * inner * outer;
                let refs: Vec<&[f32]> = parts.iter().map(|p| p.as_slice()).collect();
                let got = concat(&refs, &blocks, outer, total);
                assert_eq!(got.len(), total);
                let axis_len: usize = dims.iter().sum();
                for (idx, &g) in got.iter().enumerate() {
                    // Element (o, a, r) of the output: input q holding axis index a.
                    let (o, a, r) = (idx / (axis_len * inner), idx / inner % axis_len, idx % inner);
                    let (mut q, mut a0) = (0, a);
                    while a0 >= dims[q] {
                        a0 -= dims[q];
                        q += 1;
                    }
                    assert_eq!(g, parts[q][(o * dims[q] + a0) * inner + r], "{threads} threads, outer {outer}, at {idx}");
                }
            }
            let strs: Vec<Vec<String>> = (0..2).map(|q| (0..20_000).map(|i| format!("{q}-{i}")).collect()).collect();
            let refs: Vec<&[String]> = strs.iter().map(|p| p.as_slice()).collect();
            let got = concat(&refs, &[10_000, 10_000], 2, 40_000);
            let want: Vec<String> = (0..2).flat_map(|o| (0..2).flat_map(move |q| (0..10_000).map(move |i| format!("{q}-{}", o * 10_000 + i)))).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn pad_modes() {
        let m = |mode| (0..7).map(|o| pad_src(mode, o, 2, 3)).collect::<Vec<_>>();
        assert_eq!(m(PadMode::Reflect), vec![Some(2), Some(1), Some(0), Some(1), Some(2), Some(1), Some(0)]);
        assert_eq!(m(PadMode::Edge), vec![Some(0), Some(0), Some(0), Some(1), Some(2), Some(2), Some(2)]);
        assert_eq!(m(PadMode::Wrap), vec![Some(1), Some(2), Some(0), Some(1), Some(2), Some(0), Some(1)]);
        assert_eq!(m(PadMode::Constant), vec![None, None, Some(0), Some(1), Some(2), None, None]);
    }
}

#[cfg(test)]
mod infer_tests {
    use super::*;
    use kiln_tensor::DType;

    fn ty(dims: Vec<Dim>) -> ValueType {
        ValueType::Tensor { dtype: DType::F32, shape: Some(Shape(dims)) }
    }

    #[test]
    fn slice_infer_with_symbolic_dim() {
        let op = Slice { starts: None, ends: None, axes: None };
        let x = ty(vec![Dim::Sym("b".into()), Dim::Fixed(10)]);
        let s = Tensor::from_vec(vec![2], vec![0i64, 2]).unwrap();
        let e = Tensor::from_vec(vec![2], vec![i64::MAX, -1]).unwrap();
        let i = ty(vec![Dim::Fixed(2)]);
        let out = op.infer(&[Some(&x), Some(&i), Some(&i)], &[None, Some(&s), Some(&e)]).unwrap();
        assert_eq!(out, vec![ty(vec![Dim::Sym("b".into()), Dim::Fixed(7)])]);
    }

    #[test]
    fn concat_infer() {
        let op = Concat { axis: -1 };
        let a = ty(vec![Dim::Sym("b".into()), Dim::Fixed(3)]);
        let b = ty(vec![Dim::Sym("b".into()), Dim::Fixed(4)]);
        let out = op.infer(&[Some(&a), Some(&b)], &[None, None]).unwrap();
        assert_eq!(out, vec![ty(vec![Dim::Sym("b".into()), Dim::Fixed(7)])]);
    }
}
