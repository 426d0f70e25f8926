//! Control flow with subgraphs: If, Loop, Scan (opset 8 and 9+), SequenceMap.
//!
//! Subgraphs are compiled once at load (`Subgraph::compile`); the values they read from outer
//! scopes arrive after the node's declared inputs (see `NodeInfo::implicit_inputs`).

use kiln_tensor::{DType, Tensor, TensorData, Value, ValueType};

use super::util::norm_axis;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::plan::Subgraph;
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("If", 1, build_if);
    r.add("Loop", 1, build_loop);
    r.add("Scan", 8, build_scan);
    r.add("SequenceMap", 17, build_sequence_map);
}

fn subgraph(n: &NodeInfo, attr: &str) -> OpResult<Subgraph> {
    let g = n.attr_graph(attr)?.ok_or_else(|| OpError(format!("missing graph attribute '{attr}'")))?;
    Subgraph::compile(n, g)
}

/// The implicit (outer-scope) inputs that follow the `n_decl` declared ones.
fn implicit<'a>(inputs: &Inputs<'a>, n_decl: usize) -> &'a [Option<&'a Value>] {
    inputs.values.get(n_decl..).unwrap_or(&[])
}

fn scalar_bool(t: &Tensor, what: &str) -> OpResult<bool> {
    ensure!(t.len() == 1, "{what} must have one element, got shape {:?}", t.shape());
    Ok(match t.data() {
        TensorData::Bool(v) => v[0],
        _ => t.to_f64_vec()?.first().copied().unwrap_or(0.0) != 0.0,
    })
}

/// Element `idx` along `axis` (the axis is removed).
pub(crate) fn slice_axis(t: &Tensor, axis: usize, idx: usize) -> OpResult<Tensor> {
    let shape = t.shape();
    ensure!(axis < shape.len() && idx < shape[axis], "index {idx} out of range on axis {axis} of {shape:?}");
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    let mut data = TensorData::with_capacity(t.dtype(), outer * inner);
    for o in 0..outer {
        let start = (o * n + idx) * inner;
        data.extend_from(t.data(), start..start + inner);
    }
    let mut out_shape = shape.to_vec();
    out_shape.remove(axis);
    Ok(Tensor::new(out_shape, data)?)
}

/// Stacks equal-shaped tensors along a new `axis`.
pub(crate) fn stack(items: &[Tensor], axis: usize) -> OpResult<Tensor> {
    let first = items.first().ok_or_else(|| OpError::new("nothing to stack"))?;
    let s = first.shape();
    ensure!(axis <= s.len(), "stack axis {axis} out of range for rank {}", s.len());
    for t in items {
        ensure!(t.shape() == s && t.dtype() == first.dtype(), "scan outputs differ in shape or dtype: {:?} vs {:?}", t.shape(), s);
    }
    let outer: usize = s[..axis].iter().product();
    let inner: usize = s[axis..].iter().product();
    let mut data = TensorData::with_capacity(first.dtype(), outer * inner * items.len());
    for o in 0..outer {
        for t in items {
            data.extend_from(t.data(), o * inner..(o + 1) * inner);
        }
    }
    let mut shape = s.to_vec();
    shape.insert(axis, items.len());
    Ok(Tensor::new(shape, data)?)
}

/// An empty scan output (zero iterations), shaped from the body's declared output type.
fn empty_scan_output(ty: Option<&ValueType>) -> OpResult<Tensor> {
    let (dtype, rest) = match ty {
        Some(ValueType::Tensor { dtype, shape }) => {
            let rest = shape.as_ref().and_then(|s| s.as_fixed()).unwrap_or_default();
            (*dtype, rest)
        }
        _ => (DType::F32, Vec::new()),
    };
    let mut shape = vec![0];
    shape.extend(rest);
    Ok(Tensor::zeros(dtype, shape)?)
}

// ---------------------------------------------------------------- If

struct IfOp {
    then_branch: Subgraph,
    else_branch: Subgraph,
    n_decl: usize,
}

fn build_if(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(IfOp {
        then_branch: subgraph(n, "then_branch")?,
        else_branch: subgraph(n, "else_branch")?,
        n_decl: n.num_inputs,
    }))
}

impl Op for IfOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let cond = scalar_bool(inputs.tensor(0)?, "If condition")?;
        let branch = if cond { &self.then_branch } else { &self.else_branch };
        branch.run(Vec::new(), implicit(inputs, self.n_decl))
    }
}

// ---------------------------------------------------------------- Loop

struct LoopOp {
    body: Subgraph,
    n_decl: usize,
    n_carried: usize,
}

fn build_loop(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let body = subgraph(n, "body")?;
    ensure!(n.num_inputs >= 2, "Loop needs at least the M and cond inputs (possibly empty)");
    let n_carried = n.num_inputs - 2;
    ensure!(body.num_inputs() == n_carried + 2, "Loop body takes {} inputs, expected {}", body.num_inputs(), n_carried + 2);
    ensure!(body.num_outputs() > n_carried, "Loop body has {} outputs, expected at least {}", body.num_outputs(), n_carried + 1);
    Ok(Box::new(LoopOp { body, n_decl: n.num_inputs, n_carried }))
}

impl Op for LoopOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let max_trips = match inputs.opt_tensor(0)? {
            Some(t) => Some(t.to_i64_vec()?.first().copied().ok_or_else(|| OpError::new("M is empty"))?),
            None => None,
        };
        let cond_given = inputs.opt_tensor(1)?;
        let mut cond = match cond_given {
            Some(t) => scalar_bool(t, "Loop cond")?,
            None => true,
        };
        let mut carried: Vec<Value> = (0..self.n_carried)
            .map(|k| inputs.value(2 + k).cloned().ok_or_else(|| OpError(format!("loop-carried input {k} is missing"))))
            .collect::<OpResult<_>>()?;
        let n_scan = self.body.num_outputs() - 1 - self.n_carried;
        let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); n_scan];
        let ext = implicit(inputs, self.n_decl);
        let mut i: i64 = 0;
        while max_trips.is_none_or(|m| i < m) && cond {
            let mut feeds = Vec::with_capacity(2 + self.n_carried);
            feeds.push(Value::Tensor(Tensor::scalar(i)));
            feeds.push(Value::Tensor(Tensor::scalar(cond)));
            feeds.append(&mut carried);
            let mut outs = self.body.run(feeds, ext)?.into_iter();
            let cond_out = outs.next().ok_or_else(|| OpError::new("Loop body returned no condition"))?;
            if cond_given.is_some() {
                match cond_out {
                    Value::Tensor(t) => cond = scalar_bool(&t, "Loop body condition")?,
                    other => bail!("Loop body condition is {}", other.describe()),
                }
            }
            carried = outs.by_ref().take(self.n_carried).collect();
            for (k, v) in outs.enumerate() {
                match v {
                    Value::Tensor(t) => scans[k].push(t),
                    other => bail!("Loop scan output {k} is {}, not a tensor", other.describe()),
                }
            }
            i += 1;
        }
        let types = self.body.output_types();
        let mut result = carried;
        for (k, items) in scans.into_iter().enumerate() {
            let t = if items.is_empty() {
                empty_scan_output(types.get(1 + self.n_carried + k).and_then(|t| t.as_ref()))?
            } else {
                stack(&items, 0)?
            };
            result.push(Value::Tensor(t));
        }
        Ok(result)
    }
}

// ---------------------------------------------------------------- Scan

struct ScanOp {
    body: Subgraph,
    n_decl: usize,
    n_state: usize,
    n_scan_in: usize,
    in_axes: Vec<i64>,
    in_reverse: Vec<bool>,
    out_axes: Vec<i64>,
    out_reverse: Vec<bool>,
    /// Opset 8: inputs have a leading batch dim and a first `sequence_lens` input.
    batched: bool,
}

fn build_scan(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let body = subgraph(n, "body")?;
    let n_scan_in = n.attr_int("num_scan_inputs")?.ok_or_else(|| OpError::new("Scan needs num_scan_inputs"))? as usize;
    let batched = n.opset < 9;
    let first = usize::from(batched);
    ensure!(n.num_inputs >= first + n_scan_in, "Scan has {} inputs but num_scan_inputs is {n_scan_in}", n.num_inputs);
    let n_state = n.num_inputs - first - n_scan_in;
    let n_scan_out = body.num_outputs().checked_sub(n_state).ok_or_else(|| OpError::new("Scan body has too few outputs"))?;
    let flags = |name: &str, len: usize| -> OpResult<Vec<bool>> {
        Ok(match n.attr_ints(name)? {
            Some(v) => v.into_iter().map(|d| d != 0).collect(),
            None => vec![false; len],
        })
    };
    let (in_reverse, out_reverse) = if batched {
        (flags("directions", n_scan_in)?, vec![false; n_scan_out])
    } else {
        (flags("scan_input_directions", n_scan_in)?, flags("scan_output_directions", n_scan_out)?)
    };
    Ok(Box::new(ScanOp {
        in_axes: n.attr_ints("scan_input_axes")?.unwrap_or_else(|| vec![0; n_scan_in]),
        out_axes: n.attr_ints("scan_output_axes")?.unwrap_or_else(|| vec![0; n_scan_out]),
        body,
        n_decl: n.num_inputs,
        n_state,
        n_scan_in,
        in_reverse,
        out_reverse,
        batched,
    }))
}

impl ScanOp {
    /// One scan over `states` and `scan_inputs` (no batch dim).
    fn scan(&self, mut states: Vec<Value>, scan_inputs: &[&Tensor], ext: &[Option<&Value>]) -> OpResult<(Vec<Value>, Vec<Tensor>)> {
        let mut axes = Vec::with_capacity(scan_inputs.len());
        let mut len: Option<usize> = None;
        for (j, t) in scan_inputs.iter().enumerate() {
            let a = if self.batched { 0 } else { norm_axis(self.in_axes.get(j).copied().unwrap_or(0), t.rank())? };
            ensure!(t.rank() > a, "scan input {j} has rank {}", t.rank());
            let l = t.shape()[a];
            if let Some(prev) = len {
                ensure!(prev == l, "scan inputs have different lengths ({prev} and {l})");
            }
            len = Some(l);
            axes.push(a);
        }
        let len = len.unwrap_or(0);
        let n_out = self.body.num_outputs() - self.n_state;
        let mut collected: Vec<Vec<Tensor>> = vec![Vec::new(); n_out];
        for t in 0..len {
            let mut feeds = std::mem::take(&mut states);
            for (j, x) in scan_inputs.iter().enumerate() {
                let idx = if self.in_reverse.get(j).copied().unwrap_or(false) { len - 1 - t } else { t };
                feeds.push(Value::Tensor(slice_axis(x, axes[j], idx)?));
            }
            let mut outs = self.body.run(feeds, ext)?.into_iter();
            states = outs.by_ref().take(self.n_state).collect();
            for (k, v) in outs.enumerate() {
                match v {
                    Value::Tensor(t) => collected[k].push(t),
                    other => bail!("Scan output {k} is {}, not a tensor", other.describe()),
                }
            }
        }
        let types = self.body.output_types();
        let mut outs = Vec::with_capacity(n_out);
        for (k, mut items) in collected.into_iter().enumerate() {
            if self.out_reverse.get(k).copied().unwrap_or(false) {
                items.reverse();
            }
            let t = if items.is_empty() {
                empty_scan_output(types.get(self.n_state + k).and_then(|t| t.as_ref()))?
            } else {
                let rank = items[0].rank() + 1;
                let a = if self.batched { 0 } else { norm_axis(self.out_axes.get(k).copied().unwrap_or(0), rank)? };
                stack(&items, a)?
            };
            outs.push(t);
        }
        Ok((states, outs))
    }
}

impl Op for ScanOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let ext = implicit(inputs, self.n_decl);
        let first = usize::from(self.batched);
        let states: Vec<Value> = (0..self.n_state)
            .map(|k| inputs.value(first + k).cloned().ok_or_else(|| OpError(format!("state input {k} is missing"))))
            .collect::<OpResult<_>>()?;
        let scan_inputs: Vec<&Tensor> =
            (0..self.n_scan_in).map(|j| inputs.tensor(first + self.n_state + j)).collect::<OpResult<_>>()?;
        if !self.batched {
            let (states, outs) = self.scan(states, &scan_inputs, ext)?;
            let mut r = states;
            r.extend(outs.into_iter().map(Value::Tensor));
            return Ok(r);
        }
        // Opset 8: loop over the batch dim.
        let batch = scan_inputs.first().map(|t| t.shape().first().copied().unwrap_or(0)).unwrap_or(0);
        if let Some(lens) = inputs.opt_tensor(0)? {
            let full = scan_inputs.first().and_then(|t| t.shape().get(1).copied()).unwrap_or(0);
            ensure!(lens.to_i64_vec()?.iter().all(|&l| l as usize == full), "Scan with sequence_lens shorter than the input is not supported");
        }
        let mut state_rows: Vec<Vec<Tensor>> = vec![Vec::new(); self.n_state];
        let mut out_rows: Vec<Vec<Tensor>> = Vec::new();
        for b in 0..batch {
            let st: Vec<Value> = states
                .iter()
                .map(|s| match s {
                    Value::Tensor(t) => slice_axis(t, 0, b).map(Value::Tensor),
                    other => Err(OpError(format!("Scan state is {}", other.describe()))),
                })
                .collect::<OpResult<_>>()?;
            let xs: Vec<Tensor> = scan_inputs.iter().map(|t| slice_axis(t, 0, b)).collect::<OpResult<_>>()?;
            let xr: Vec<&Tensor> = xs.iter().collect();
            let (st, outs) = self.scan(st, &xr, ext)?;
            for (k, s) in st.into_iter().enumerate() {
                match s {
                    Value::Tensor(t) => state_rows[k].push(t),
                    other => bail!("Scan state output is {}", other.describe()),
                }
            }
            if out_rows.is_empty() {
                out_rows = vec![Vec::new(); outs.len()];
            }
            for (k, o) in outs.into_iter().enumerate() {
                out_rows[k].push(o);
            }
        }
        let mut r = Vec::new();
        for rows in state_rows.into_iter().chain(out_rows) {
            r.push(Value::Tensor(stack(&rows, 0)?));
        }
        Ok(r)
    }
}

// ---------------------------------------------------------------- SequenceMap

struct SequenceMapOp {
    body: Subgraph,
    n_decl: usize,
}

fn build_sequence_map(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(SequenceMapOp { body: subgraph(n, "body")?, n_decl: n.num_inputs }))
}

impl Op for SequenceMapOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let ext = implicit(inputs, self.n_decl);
        let items = match inputs.value(0) {
            Some(Value::Sequence { items, .. }) => items,
            Some(other) => bail!("SequenceMap input 0 must be a sequence, got {}", other.describe()),
            None => bail!("SequenceMap input 0 is missing"),
        };
        let n_out = self.body.num_outputs();
        let mut outs: Vec<Vec<Value>> = vec![Vec::new(); n_out];
        for (i, item) in items.iter().enumerate() {
            let mut feeds = vec![item.clone()];
            for k in 1..self.n_decl {
                match inputs.value(k) {
                    Some(Value::Sequence { items: extra, .. }) => feeds.push(
                        extra.get(i).cloned().ok_or_else(|| OpError(format!("additional sequence {k} is shorter than the input")))?,
                    ),
                    Some(v) => feeds.push(v.clone()),
                    None => bail!("SequenceMap input {k} is missing"),
                }
            }
            for (k, v) in self.body.run(feeds, ext)?.into_iter().enumerate() {
                if k < n_out {
                    outs[k].push(v);
                }
            }
        }
        let types = self.body.output_types();
        Ok(outs
            .into_iter()
            .enumerate()
            .map(|(k, items)| {
                let elem = items
                    .first()
                    .map(|v| match v.value_type() {
                        ValueType::Tensor { dtype, .. } => ValueType::Tensor { dtype, shape: None },
                        t => t,
                    })
                    .or_else(|| types.get(k).cloned().flatten())
                    .unwrap_or(ValueType::Tensor { dtype: DType::F32, shape: None });
                Value::Sequence { elem, items }
            })
            .collect())
    }
}
