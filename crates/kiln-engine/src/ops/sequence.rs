//! Sequence and optional operators: SequenceEmpty/Construct/At/Insert/Erase/Length,
//! SplitToSequence, ConcatFromSequence, Optional, OptionalHasElement, OptionalGetElement.

use kiln_tensor::{DType, Shape, Tensor, TensorData, Value, ValueType};

use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::util::norm_axis;
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("SequenceEmpty", 11, build_sequence_empty);
    r.add("SequenceConstruct", 11, |_| Ok(Box::new(SequenceConstructOp)));
    r.add("SequenceAt", 11, |_| Ok(Box::new(SequenceAtOp)));
    r.add("SequenceInsert", 11, |_| Ok(Box::new(SequenceInsertOp)));
    r.add("SequenceErase", 11, |_| Ok(Box::new(SequenceEraseOp)));
    r.add("SequenceLength", 11, |_| Ok(Box::new(SequenceLengthOp)));
    r.add("SplitToSequence", 11, build_split_to_sequence);
    r.add("ConcatFromSequence", 11, build_concat_from_sequence);
    r.add("Optional", 15, build_optional);
    r.add("OptionalHasElement", 15, |_| Ok(Box::new(OptionalHasElementOp)));
    r.add("OptionalGetElement", 15, |_| Ok(Box::new(OptionalGetElementOp)));
}

/// Element type recorded for a sequence of tensors of `dtype` (shapes may differ per item).
fn tensor_elem(dtype: DType) -> ValueType {
    ValueType::Tensor { dtype, shape: None }
}

/// The element type a value contributes when stored in a sequence or optional.
fn elem_type_of(v: &Value) -> ValueType {
    match v {
        Value::Tensor(t) => tensor_elem(t.dtype()),
        other => other.value_type(),
    }
}

/// Input `i` as a sequence: (element type, items).
fn sequence_input<'a>(inputs: &Inputs<'a>, i: usize) -> OpResult<(&'a ValueType, &'a [Value])> {
    match inputs.value(i) {
        Some(Value::Sequence { elem, items }) => Ok((elem, items)),
        Some(other) => bail!("input {i} should be a sequence, got {}", other.describe()),
        None => bail!("required input {i} (a sequence) is missing"),
    }
}

/// A position input: a scalar (or one-element) int32/int64 tensor.
fn position_input(inputs: &Inputs, i: usize) -> OpResult<Option<i64>> {
    let Some(t) = inputs.opt_tensor(i)? else { return Ok(None) };
    ensure!(
        matches!(t.dtype(), DType::I32 | DType::I64),
        "position must be an int32 or int64 tensor, got {}",
        t.dtype()
    );
    let v = t.to_i64_vec()?;
    ensure!(v.len() == 1, "position must be a scalar, got shape {:?}", t.shape());
    Ok(Some(v[0]))
}

/// Resolves a position in `[-n, n + extra - 1]` (extra = 1 for insertion points).
fn resolve_position(pos: i64, n: usize, extra: usize, what: &str) -> OpResult<usize> {
    let n_i = n as i64;
    let p = if pos < 0 { pos + n_i } else { pos };
    if p < 0 || p >= n_i + extra as i64 {
        bail!("{what} position {pos} is out of range for a sequence of {n} items");
    }
    Ok(p as usize)
}

fn check_item_fits(elem: &ValueType, v: &Value) -> OpResult<()> {
    if let (Some(want), Value::Tensor(t)) = (elem.tensor_dtype(), v) {
        ensure!(t.dtype() == want, "cannot put a {} tensor into a sequence of {want} tensors", t.dtype());
    }
    Ok(())
}

fn input_seq_type<'a>(inputs: &[Option<&'a ValueType>], i: usize) -> Option<&'a ValueType> {
    match inputs.get(i).copied().flatten()? {
        t @ ValueType::Sequence(_) => Some(t),
        _ => None,
    }
}

// ---------------------------------------------------------------- SequenceEmpty

struct SequenceEmptyOp(DType);

fn build_sequence_empty(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let code = n.attr_int_or("dtype", DType::F32 as i64)?;
    let dtype = i32::try_from(code).ok().and_then(DType::from_onnx).ok_or_else(|| {
        OpError(format!("SequenceEmpty dtype {code} ({}) is not supported", DType::onnx_code_name(code as i32)))
    })?;
    Ok(Box::new(SequenceEmptyOp(dtype)))
}

impl Op for SequenceEmptyOp {
    fn run(&self, _inputs: &Inputs) -> OpResult<Vec<Value>> {
        Ok(vec![Value::Sequence { elem: tensor_elem(self.0), items: Vec::new() }])
    }
    fn infer(&self, _: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![ValueType::Sequence(Box::new(tensor_elem(self.0)))])
    }
}

// ---------------------------------------------------------------- SequenceConstruct

struct SequenceConstructOp;

impl Op for SequenceConstructOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let ts = inputs.tensors()?;
        let first = ts.first().ok_or_else(|| OpError::new("SequenceConstruct needs at least one input"))?;
        let dtype = first.dtype();
        for (i, t) in ts.iter().enumerate() {
            ensure!(
                t.dtype() == dtype,
                "SequenceConstruct inputs must share one dtype: input 0 is {dtype}, input {i} is {}",
                t.dtype()
            );
        }
        let items = ts.into_iter().map(|t| Value::Tensor(t.clone())).collect();
        Ok(vec![Value::Sequence { elem: tensor_elem(dtype), items }])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let dtype = inputs.first().copied().flatten()?.tensor_dtype()?;
        Some(vec![ValueType::Sequence(Box::new(tensor_elem(dtype)))])
    }
}

// ---------------------------------------------------------------- SequenceAt

struct SequenceAtOp;

impl Op for SequenceAtOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (_, items) = sequence_input(inputs, 0)?;
        let pos = position_input(inputs, 1)?.ok_or_else(|| OpError::new("SequenceAt needs a position"))?;
        let p = resolve_position(pos, items.len(), 0, "SequenceAt")?;
        Ok(vec![items[p].clone()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        match input_seq_type(inputs, 0)? {
            ValueType::Sequence(e) => Some(vec![(**e).clone()]),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- SequenceInsert

struct SequenceInsertOp;

impl Op for SequenceInsertOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (elem, items) = sequence_input(inputs, 0)?;
        let v = inputs.value(1).ok_or_else(|| OpError::new("SequenceInsert needs a tensor to insert"))?;
        check_item_fits(elem, v)?;
        let p = match position_input(inputs, 2)? {
            Some(pos) => resolve_position(pos, items.len(), 1, "SequenceInsert")?,
            None => items.len(),
        };
        let mut out = Vec::with_capacity(items.len() + 1);
        out.extend_from_slice(&items[..p]);
        out.push(v.clone());
        out.extend_from_slice(&items[p..]);
        Ok(vec![Value::Sequence { elem: elem.clone(), items: out }])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![input_seq_type(inputs, 0)?.clone()])
    }
}

// ---------------------------------------------------------------- SequenceErase

struct SequenceEraseOp;

impl Op for SequenceEraseOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (elem, items) = sequence_input(inputs, 0)?;
        ensure!(!items.is_empty(), "SequenceErase on an empty sequence");
        let p = match position_input(inputs, 1)? {
            Some(pos) => resolve_position(pos, items.len(), 0, "SequenceErase")?,
            None => items.len() - 1,
        };
        let mut out = items.to_vec();
        out.remove(p);
        Ok(vec![Value::Sequence { elem: elem.clone(), items: out }])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![input_seq_type(inputs, 0)?.clone()])
    }
}

// ---------------------------------------------------------------- SequenceLength

struct SequenceLengthOp;

impl Op for SequenceLengthOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (_, items) = sequence_input(inputs, 0)?;
        Ok(vec![Value::Tensor(Tensor::scalar(items.len() as i64))])
    }
    fn infer(&self, _: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![ValueType::tensor(DType::I64, Some(Shape::fixed(&[])))])
    }
}

// ---------------------------------------------------------------- SplitToSequence

struct SplitToSequenceOp {
    axis: i64,
    keepdims: bool,
}

fn build_split_to_sequence(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(SplitToSequenceOp { axis: n.attr_int_or("axis", 0)?, keepdims: n.attr_int_or("keepdims", 1)? != 0 }))
}

/// Copies the slab `[start, start + len)` along the axis with `outer`/`dim`/`inner` layout.
fn take_slab(data: &TensorData, outer: usize, dim: usize, inner: usize, start: usize, len: usize) -> TensorData {
    let mut out = TensorData::with_capacity(data.dtype(), outer * len * inner);
    for o in 0..outer {
        let from = (o * dim + start) * inner;
        out.extend_from(data, from..from + len * inner);
    }
    out
}

impl Op for SplitToSequenceOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        ensure!(x.rank() > 0, "SplitToSequence needs an input of rank >= 1");
        let axis = norm_axis(self.axis, x.rank())?;
        let shape = x.shape();
        let dim = shape[axis];
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();

        // Chunk lengths, and whether the split axis is kept.
        let (lens, keep): (Vec<usize>, bool) = match inputs.opt_tensor(1)? {
            None => (vec![1; dim], self.keepdims),
            Some(s) => {
                ensure!(
                    matches!(s.dtype(), DType::I32 | DType::I64),
                    "split must be an int32 or int64 tensor, got {}",
                    s.dtype()
                );
                let v = s.to_i64_vec()?;
                match s.rank() {
                    0 => {
                        let c = v[0];
                        ensure!(c > 0, "split must be positive, got {c}");
                        let c = c as usize;
                        let mut lens = vec![c; dim / c];
                        if dim % c != 0 {
                            lens.push(dim % c);
                        }
                        (lens, true)
                    }
                    1 => {
                        let mut lens = Vec::with_capacity(v.len());
                        let mut total: u64 = 0;
                        for &c in &v {
                            ensure!(c >= 0, "split lengths must not be negative, got {v:?}");
                            total = total.saturating_add(c as u64);
                            lens.push(c as usize);
                        }
                        ensure!(
                            total == dim as u64,
                            "split lengths {v:?} sum to {total} but axis {axis} has size {dim}"
                        );
                        (lens, true)
                    }
                    r => bail!("split must be a scalar or 1-D tensor, got rank {r}"),
                }
            }
        };

        let mut items = Vec::with_capacity(lens.len());
        let mut start = 0;
        for len in lens {
            let data = take_slab(x.data(), outer, dim, inner, start, len);
            let mut s = shape.to_vec();
            if keep {
                s[axis] = len;
            } else {
                s.remove(axis);
            }
            items.push(Value::Tensor(Tensor::new(s, data)?));
            start += len;
        }
        Ok(vec![Value::Sequence { elem: tensor_elem(x.dtype()), items }])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let dtype = inputs.first().copied().flatten()?.tensor_dtype()?;
        Some(vec![ValueType::Sequence(Box::new(tensor_elem(dtype)))])
    }
}

// ---------------------------------------------------------------- ConcatFromSequence

struct ConcatFromSequenceOp {
    axis: i64,
    new_axis: bool,
}

fn build_concat_from_sequence(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let axis = n.attr_int("axis")?.ok_or_else(|| OpError::new("ConcatFromSequence needs the 'axis' attribute"))?;
    Ok(Box::new(ConcatFromSequenceOp { axis, new_axis: n.attr_int_or("new_axis", 0)? != 0 }))
}

impl Op for ConcatFromSequenceOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (_, items) = sequence_input(inputs, 0)?;
        let ts: Vec<&Tensor> = items
            .iter()
            .map(|v| {
                v.as_tensor().ok_or_else(|| OpError(format!("ConcatFromSequence needs tensors, got {}", v.describe())))
            })
            .collect::<OpResult<_>>()?;
        let first = ts.first().ok_or_else(|| OpError::new("ConcatFromSequence on an empty sequence"))?;
        let dtype = first.dtype();
        let rank = first.rank();
        // With new_axis each tensor is viewed with a size-1 dim inserted at `axis`.
        let out_rank = if self.new_axis { rank + 1 } else { rank };
        ensure!(out_rank > 0, "ConcatFromSequence cannot concatenate scalars without new_axis");
        let axis = norm_axis(self.axis, out_rank)?;
        let view = |t: &Tensor| -> Vec<usize> {
            let mut s = t.shape().to_vec();
            if self.new_axis {
                s.insert(axis, 1);
            }
            s
        };
        let base = view(first);
        let mut total = 0usize;
        for (i, t) in ts.iter().enumerate() {
            ensure!(t.dtype() == dtype, "sequence item {i} is {} but item 0 is {dtype}", t.dtype());
            let s = view(t);
            ensure!(
                s.len() == base.len() && s.iter().zip(&base).enumerate().all(|(d, (a, b))| d == axis || a == b),
                "sequence item {i} has shape {:?}, incompatible with item 0's {:?} for concatenation on axis {axis}",
                t.shape(),
                first.shape()
            );
            total += s[axis];
        }
        let outer: usize = base[..axis].iter().product();
        let inner: usize = base[axis + 1..].iter().product();
        let mut out_shape = base.clone();
        out_shape[axis] = total;
        let n = kiln_tensor::checked_numel(&out_shape)?;
        let mut data = TensorData::with_capacity(dtype, n);
        for o in 0..outer {
            for t in &ts {
                let block = view(t)[axis] * inner;
                data.extend_from(t.data(), o * block..(o + 1) * block);
            }
        }
        Ok(vec![Value::Tensor(Tensor::new(out_shape, data)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        match input_seq_type(inputs, 0)? {
            ValueType::Sequence(e) => Some(vec![ValueType::tensor(e.tensor_dtype()?, None)]),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- Optional

struct OptionalOp(Option<ValueType>);

fn build_optional(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let declared = match n.attr_raw("type").and_then(|a| a.tp.as_ref()) {
        Some(tp) => Some(kiln_onnx::value_type_from_proto(tp)?),
        None => None,
    };
    let has_input = n.num_inputs > 0;
    ensure!(declared.is_some() || has_input, "Optional without an input needs the 'type' attribute");
    Ok(Box::new(OptionalOp(declared)))
}

impl Op for OptionalOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        match inputs.value(0) {
            Some(v) => {
                let elem = match &self.0 {
                    Some(t) => {
                        check_declared(t, v)?;
                        t.clone()
                    }
                    None => elem_type_of(v),
                };
                Ok(vec![Value::Optional { elem, value: Some(Box::new(v.clone())) }])
            }
            None => match &self.0 {
                Some(t) => Ok(vec![Value::Optional { elem: t.clone(), value: None }]),
                None => bail!("Optional without an input needs the 'type' attribute"),
            },
        }
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let elem = match &self.0 {
            Some(t) => t.clone(),
            None => match inputs.first().copied().flatten()? {
                ValueType::Tensor { dtype, .. } => tensor_elem(*dtype),
                other => other.clone(),
            },
        };
        Some(vec![ValueType::Optional(Box::new(elem))])
    }
}

/// Checks a value against the kind (and tensor dtype) of a declared type.
fn check_declared(t: &ValueType, v: &Value) -> OpResult<()> {
    let ok = match (t, v) {
        (ValueType::Tensor { dtype, .. }, Value::Tensor(x)) => x.dtype() == *dtype,
        (ValueType::Sequence(_), Value::Sequence { .. }) => true,
        (ValueType::Map(..), Value::Map { .. }) => true,
        (ValueType::Optional(_), Value::Optional { .. }) => true,
        _ => false,
    };
    ensure!(ok, "Optional of type {t} cannot hold a {}", v.describe());
    Ok(())
}

// ---------------------------------------------------------------- OptionalHasElement

struct OptionalHasElementOp;

impl Op for OptionalHasElementOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let has = match inputs.value(0) {
            None => false,
            Some(Value::Optional { value, .. }) => value.is_some(),
            Some(_) => true,
        };
        Ok(vec![Value::Tensor(Tensor::scalar(has))])
    }
    fn infer(&self, _: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![ValueType::tensor(DType::Bool, Some(Shape::fixed(&[])))])
    }
}

// ---------------------------------------------------------------- OptionalGetElement

struct OptionalGetElementOp;

impl Op for OptionalGetElementOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        match inputs.value(0) {
            None => bail!("OptionalGetElement needs an input"),
            Some(Value::Optional { value: Some(v), .. }) => Ok(vec![(**v).clone()]),
            Some(Value::Optional { value: None, .. }) => bail!("OptionalGetElement on an empty optional"),
            Some(v) => Ok(vec![v.clone()]),
        }
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        match inputs.first().copied().flatten()? {
            ValueType::Optional(e) => Some(vec![(**e).clone()]),
            other => Some(vec![other.clone()]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &dyn Op, vals: &[Option<Value>]) -> OpResult<Vec<Value>> {
        let refs: Vec<Option<&Value>> = vals.iter().map(|v| v.as_ref()).collect();
        op.run(&Inputs::new(&refs))
    }

    fn t_f32(shape: &[usize], v: &[f32]) -> Value {
        Value::Tensor(Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap())
    }

    fn seq(items: Vec<Value>) -> Value {
        Value::Sequence { elem: tensor_elem(DType::F32), items }
    }

    fn i64s(v: &Value) -> Vec<i64> {
        v.as_tensor().unwrap().to_i64_vec().unwrap()
    }

    #[test]
    fn split_scalar_leaves_short_tail() {
        let op = SplitToSequenceOp { axis: 1, keepdims: true };
        let x = t_f32(&[2, 5], &[0., 1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let out = run(&op, &[Some(x), Some(Value::Tensor(Tensor::scalar(2i64)))]).unwrap();
        let Value::Sequence { items, .. } = &out[0] else { panic!() };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], t_f32(&[2, 2], &[0., 1., 5., 6.]));
        assert_eq!(items[2], t_f32(&[2, 1], &[4., 9.]));
    }

    #[test]
    fn split_default_without_keepdims_drops_axis() {
        let op = SplitToSequenceOp { axis: -1, keepdims: false };
        let x = t_f32(&[2, 2], &[1., 2., 3., 4.]);
        let out = run(&op, &[Some(x)]).unwrap();
        let Value::Sequence { items, .. } = &out[0] else { panic!() };
        assert_eq!(items, &vec![t_f32(&[2], &[1., 3.]), t_f32(&[2], &[2., 4.])]);
    }

    #[test]
    fn split_lengths_must_sum_to_dim() {
        let op = SplitToSequenceOp { axis: 0, keepdims: true };
        let x = t_f32(&[3], &[1., 2., 3.]);
        let split = Value::Tensor(Tensor::from_vec(vec![2], vec![1i64, 1]).unwrap());
        assert!(run(&op, &[Some(x), Some(split)]).is_err());
    }

    #[test]
    fn concat_and_stack() {
        let s = seq(vec![t_f32(&[1, 2], &[1., 2.]), t_f32(&[1, 2], &[3., 4.])]);
        let cat = ConcatFromSequenceOp { axis: 1, new_axis: false };
        assert_eq!(run(&cat, &[Some(s.clone())]).unwrap()[0], t_f32(&[1, 4], &[1., 2., 3., 4.]));
        let stack = ConcatFromSequenceOp { axis: -1, new_axis: true };
        assert_eq!(run(&stack, &[Some(s)]).unwrap()[0], t_f32(&[1, 2, 2], &[1., 3., 2., 4.]));
    }

    #[test]
    fn insert_erase_at_negative_positions() {
        let s = seq(vec![t_f32(&[1], &[1.]), t_f32(&[1], &[2.])]);
        let pos = |p: i64| Some(Value::Tensor(Tensor::scalar(p)));
        let out = run(&SequenceInsertOp, &[Some(s.clone()), Some(t_f32(&[1], &[9.])), pos(-1)]).unwrap();
        let Value::Sequence { items, .. } = &out[0] else { panic!() };
        assert_eq!(items[1], t_f32(&[1], &[9.]));
        let out = run(&SequenceEraseOp, &[Some(s.clone()), pos(-2)]).unwrap();
        let Value::Sequence { items, .. } = &out[0] else { panic!() };
        assert_eq!(items, &vec![t_f32(&[1], &[2.])]);
        assert!(run(&SequenceAtOp, &[Some(s.clone()), pos(2)]).is_err());
        assert_eq!(run(&SequenceAtOp, &[Some(s.clone()), pos(-1)]).unwrap()[0], t_f32(&[1], &[2.]));
        assert_eq!(i64s(&run(&SequenceLengthOp, &[Some(s)]).unwrap()[0]), vec![2]);
    }

    #[test]
    fn insert_rejects_other_dtype() {
        let s = seq(vec![]);
        let x = Value::Tensor(Tensor::scalar(1i64));
        assert!(run(&SequenceInsertOp, &[Some(s), Some(x)]).is_err());
    }

    #[test]
    fn optional_semantics() {
        let x = t_f32(&[1], &[1.]);
        let empty = Value::Optional { elem: tensor_elem(DType::F32), value: None };
        let has = |v: Option<Value>| run(&OptionalHasElementOp, &[v]).unwrap()[0].clone();
        assert_eq!(has(None), Value::Tensor(Tensor::scalar(false)));
        assert_eq!(has(Some(empty.clone())), Value::Tensor(Tensor::scalar(false)));
        assert_eq!(has(Some(x.clone())), Value::Tensor(Tensor::scalar(true)));
        assert!(run(&OptionalGetElementOp, &[Some(empty)]).is_err());
        assert_eq!(run(&OptionalGetElementOp, &[Some(x.clone())]).unwrap()[0], x);
        let wrapped = run(&OptionalOp(None), &[Some(x.clone())]).unwrap().remove(0);
        assert_eq!(run(&OptionalGetElementOp, &[Some(wrapped)]).unwrap()[0], x);
    }
}
