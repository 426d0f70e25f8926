//! Loss operators: SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss.

use std::ops::{Add, Div, Mul, Neg, Sub};

use kiln_tensor::{bf16, f16, Dim, Elem, Shape, Tensor, Value, ValueType};

use crate::error::OpResult;
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;
use crate::{bail, ensure, float_dispatch};

pub fn register(r: &mut Registry) {
    r.add("SoftmaxCrossEntropyLoss", 12, |n| build(n, true));
    r.add("NegativeLogLikelihoodLoss", 12, |n| build(n, false));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

struct LossOp {
    /// SoftmaxCrossEntropyLoss (log-softmax first) rather than NegativeLogLikelihoodLoss.
    softmax: bool,
    reduction: Reduction,
    ignore_index: Option<i64>,
    /// Whether the second output (log_prob) is requested.
    want_log_prob: bool,
}

fn build(n: &NodeInfo, softmax: bool) -> OpResult<Box<dyn Op>> {
    let reduction = match n.attr_string_or("reduction", "mean")?.as_str() {
        "none" => Reduction::None,
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        other => bail!("reduction must be 'none', 'sum' or 'mean', got '{other}'"),
    };
    ensure!(n.num_inputs >= 2 && n.num_inputs <= 3, "{} takes 2 or 3 inputs, got {}", n.op_type, n.num_inputs);
    let max_out = if softmax { 2 } else { 1 };
    ensure!(n.num_outputs >= 1 && n.num_outputs <= max_out, "{} has at most {max_out} outputs, got {}", n.op_type, n.num_outputs);
    Ok(Box::new(LossOp {
        softmax,
        reduction,
        ignore_index: n.attr_int("ignore_index")?,
        want_log_prob: softmax && n.num_outputs == 2,
    }))
}

/// Float type used for the arithmetic (f32 or f64).
trait Real:
    Copy + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    const NEG_INFINITY: f32 = f32::NEG_INFINITY;
    fn exp(self) -> f32 {
        f32::exp(self)
    }
    fn ln(self) -> f32 {
        f32::ln(self)
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    const NEG_INFINITY: f64 = f64::NEG_INFINITY;
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    fn ln(self) -> f64 {
        f64::ln(self)
    }
}

/// Tensor element types the losses accept, with the type they compute in.
trait LossElem: Elem + Copy {
    type R: Real;
    fn up(self) -> Self::R;
    fn down(r: Self::R) -> Self;
}

impl LossElem for f32 {
    type R = f32;
    fn up(self) -> f32 {
        self
    }
    fn down(r: f32) -> f32 {
        r
    }
}
impl LossElem for f64 {
    type R = f64;
    fn up(self) -> f64 {
        self
    }
    fn down(r: f64) -> f64 {
        r
    }
}
impl LossElem for f16 {
    type R = f32;
    fn up(self) -> f32 {
        self.to_f32()
    }
    fn down(r: f32) -> f16 {
        f16::from_f32(r)
    }
}
impl LossElem for bf16 {
    type R = f32;
    fn up(self) -> f32 {
        self.to_f32()
    }
    fn down(r: f32) -> bf16 {
        bf16::from_f32(r)
    }
}

/// Validated geometry: input [N, C, d1, ...] viewed as [N, C, D].
struct Geometry {
    n: usize,
    c: usize,
    d: usize,
}

fn check_shapes(x: &Tensor, target: &Tensor, weight: Option<&Tensor>) -> OpResult<Geometry> {
    let xs = x.shape();
    ensure!(xs.len() >= 2, "input must have shape [N, C, d1, ...] (rank >= 2), got {xs:?}");
    let ts = target.shape();
    let expected: Vec<usize> = std::iter::once(xs[0]).chain(xs[2..].iter().copied()).collect();
    ensure!(ts == expected.as_slice(), "target shape {ts:?} does not match input shape {xs:?} (expected {expected:?})");
    ensure!(target.dtype().is_int(), "target must be an integer tensor, got {}", target.dtype());
    if let Some(w) = weight {
        ensure!(w.shape() == [xs[1]], "weight must have shape [C] = [{}], got {:?}", xs[1], w.shape());
        ensure!(w.dtype() == x.dtype(), "weight dtype {} differs from input dtype {}", w.dtype(), x.dtype());
    }
    Ok(Geometry { n: xs[0], c: xs[1], d: xs[2..].iter().product() })
}

/// Log-softmax over the class axis of a [N, C, D] array, in the compute type.
fn log_softmax<T: LossElem>(x: &[T], g: &Geometry) -> Vec<T::R> {
    let mut out: Vec<T::R> = x.iter().map(|v| v.up()).collect();
    let (c, d) = (g.c, g.d);
    for i in 0..g.n {
        let base = i * c * d;
        for j in 0..d {
            let mut max = T::R::NEG_INFINITY;
            for k in 0..c {
                let v = out[base + k * d + j];
                if v > max {
                    max = v;
                }
            }
            let mut sum = T::R::ZERO;
            for k in 0..c {
                sum = sum + (out[base + k * d + j] - max).exp();
            }
            let lse = max + sum.ln();
            for k in 0..c {
                let p = base + k * d + j;
                out[p] = out[p] - lse;
            }
        }
    }
    out
}

/// Negative log-likelihood of `logp` ([N, C, D], compute type) at the targets; returns the
/// per-position losses (weighted) and the sum of the weights that took part.
fn nll<T: LossElem>(
    logp: &[T::R],
    g: &Geometry,
    target: &[i64],
    weight: Option<&[T]>,
    ignore_index: Option<i64>,
) -> OpResult<(Vec<T::R>, T::R)> {
    let (c, d) = (g.c, g.d);
    let mut loss = Vec::with_capacity(g.n * d);
    let mut wsum = T::R::ZERO;
    for i in 0..g.n {
        for j in 0..d {
            let t = target[i * d + j];
            if Some(t) == ignore_index {
                loss.push(T::R::ZERO);
                continue;
            }
            if t < 0 || t as u64 >= c as u64 {
                bail!("target value {t} is out of range for {c} classes");
            }
            let t = t as usize;
            let w = weight.map_or(T::R::ONE, |w| w[t].up());
            loss.push(-(logp[i * c * d + t * d + j]) * w);
            wsum = wsum + w;
        }
    }
    Ok((loss, wsum))
}

impl LossOp {
    fn compute<T: LossElem>(
        &self,
        x: &Tensor,
        xv: &[T],
        target: &Tensor,
        weight: Option<&Tensor>,
        g: &Geometry,
    ) -> OpResult<Vec<Value>> {
        let weight = match weight {
            Some(w) => Some(w.as_slice::<T>()?),
            None => None,
        };
        let targets = target.to_i64_vec()?;
        let logp: Vec<T::R> =
            if self.softmax { log_softmax(xv, g) } else { xv.iter().map(|v| v.up()).collect() };
        let (loss, wsum) = nll::<T>(&logp, g, &targets, weight, self.ignore_index)?;
        let loss_t = match self.reduction {
            Reduction::None => {
                Tensor::from_vec(target.shape().to_vec(), loss.into_iter().map(T::down).collect::<Vec<T>>())?
            }
            Reduction::Sum | Reduction::Mean => {
                let mut s = T::R::ZERO;
                for &v in &loss {
                    s = s + v;
                }
                if self.reduction == Reduction::Mean {
                    s = s / wsum;
                }
                Tensor::scalar(T::down(s))
            }
        };
        let mut outs = vec![Value::Tensor(loss_t)];
        if self.want_log_prob {
            let lp: Vec<T> = logp.into_iter().map(T::down).collect();
            outs.push(Value::Tensor(Tensor::from_vec(x.shape().to_vec(), lp)?));
        }
        Ok(outs)
    }
}

impl Op for LossOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let target = inputs.tensor(1)?;
        let weight = inputs.opt_tensor(2)?;
        let g = check_shapes(x, target, weight)?;
        if self.softmax {
            float_dispatch!(x, "SoftmaxCrossEntropyLoss", |v: T| self.compute::<T>(x, v, target, weight, &g))
        } else {
            float_dispatch!(x, "NegativeLogLikelihoodLoss", |v: T| self.compute::<T>(x, v, target, weight, &g))
        }
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let xt = inputs.first().copied().flatten()?;
        let dtype = xt.tensor_dtype()?;
        if !dtype.is_float() {
            return None;
        }
        let xshape = xt.tensor_shape();
        let loss_shape = match self.reduction {
            Reduction::None => {
                let s = xshape?;
                if s.rank() < 2 {
                    return None;
                }
                Some(Shape(std::iter::once(s.0[0].clone()).chain(s.0[2..].iter().cloned()).collect::<Vec<Dim>>()))
            }
            _ => Some(Shape(vec![])),
        };
        let mut out = vec![ValueType::Tensor { dtype, shape: loss_shape }];
        if self.want_log_prob {
            out.push(ValueType::Tensor { dtype, shape: xshape.cloned() });
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &LossOp, inputs: Vec<Tensor>) -> OpResult<Vec<Tensor>> {
        let vals: Vec<Value> = inputs.into_iter().map(Value::Tensor).collect();
        let refs: Vec<Option<&Value>> = vals.iter().map(Some).collect();
        let out = op.run(&Inputs::new(&refs))?;
        Ok(out.into_iter().filter_map(Value::into_tensor).collect())
    }

    fn op(softmax: bool, reduction: Reduction, ignore_index: Option<i64>, want_log_prob: bool) -> LossOp {
        LossOp { softmax, reduction, ignore_index, want_log_prob }
    }

    #[test]
    fn nll_none_and_weighted_mean() {
        // x = [[-1, -2], [-3, -4]], targets [1, 0], weights [2, 3]
        let x = Tensor::from_vec(vec![2, 2], vec![-1f32, -2., -3., -4.]).unwrap();
        let t = Tensor::from_vec(vec![2], vec![1i64, 0]).unwrap();
        let w = Tensor::from_vec(vec![2], vec![2f32, 3.]).unwrap();
        let out = run(&op(false, Reduction::None, None, false), vec![x.clone(), t.clone()]).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[2.0, 3.0]);
        // weighted: 3*2 + 2*3 = 12, weights 3 + 2 = 5
        let out = run(&op(false, Reduction::Mean, None, false), vec![x.clone(), t.clone(), w]).unwrap();
        assert!((out[0].as_slice::<f32>().unwrap()[0] - 12.0 / 5.0).abs() < 1e-6);
        // ignore target 0: mean over the remaining one element
        let out = run(&op(false, Reduction::Mean, Some(0), false), vec![x, t]).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[2.0]);
    }

    #[test]
    fn sce_uniform_logits() {
        // Equal logits over 4 classes: loss = ln 4 everywhere, log_prob = -ln 4.
        let x = Tensor::from_vec(vec![1, 4, 2], vec![0.5f64; 8]).unwrap();
        let t = Tensor::from_vec(vec![1, 2], vec![3i32, -7]).unwrap();
        let out = run(&op(true, Reduction::Sum, Some(-7), true), vec![x, t]).unwrap();
        let l = out[0].as_slice::<f64>().unwrap()[0];
        assert!((l - 4f64.ln()).abs() < 1e-12);
        assert_eq!(out[1].shape(), &[1, 4, 2]);
        assert!(out[1].as_slice::<f64>().unwrap().iter().all(|v| (v + 4f64.ln()).abs() < 1e-12));
    }

    #[test]
    fn bad_target_is_an_error() {
        let x = Tensor::from_vec(vec![1, 2], vec![0f32, 0.]).unwrap();
        let t = Tensor::from_vec(vec![1], vec![5i64]).unwrap();
        assert!(run(&op(true, Reduction::Mean, None, false), vec![x.clone(), t]).is_err());
        let t = Tensor::from_vec(vec![2], vec![0i64, 0]).unwrap();
        assert!(run(&op(true, Reduction::Mean, None, false), vec![x, t]).is_err());
    }
}
