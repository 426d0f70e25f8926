//! Unary elementwise operators: float math and activations, Abs/Neg/Sign/Relu/Shrink on all
//! numeric types, IsNaN/IsInf, Not/BitwiseNot and Clip.

use kiln_tensor::{DType, Tensor, TensorData, Value, ValueType};

use kiln_kernels::elementwise::FloatUnary as F;

use super::kernels::{FloatElem, Num};
use super::{infer_unary, single};
use crate::error::OpResult;
use crate::op::{with_first, Inputs, NodeInfo, Op};
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    macro_rules! float_op {
        ($name:literal, $since:expr, $kind:expr) => {
            r.add($name, $since, |_| Ok(Box::new(FloatUnary { kind: $kind, name: $name })));
        };
    }
    float_op!("Sqrt", 1, F::Sqrt);
    float_op!("Reciprocal", 1, F::Reciprocal);
    float_op!("Exp", 1, F::Exp);
    float_op!("Log", 1, F::Log);
    float_op!("Sin", 7, F::Sin);
    float_op!("Cos", 7, F::Cos);
    float_op!("Tan", 7, F::Tan);
    float_op!("Asin", 7, F::Asin);
    float_op!("Acos", 7, F::Acos);
    float_op!("Atan", 7, F::Atan);
    float_op!("Sinh", 9, F::Sinh);
    float_op!("Cosh", 9, F::Cosh);
    float_op!("Tanh", 1, F::Tanh);
    float_op!("Asinh", 9, F::Asinh);
    float_op!("Acosh", 9, F::Acosh);
    float_op!("Atanh", 9, F::Atanh);
    float_op!("Erf", 9, F::Erf);
    float_op!("Floor", 1, F::Floor);
    float_op!("Ceil", 1, F::Ceil);
    float_op!("Round", 11, F::Round);
    float_op!("Sigmoid", 1, F::Sigmoid);
    float_op!("HardSwish", 14, F::HardSwish);
    float_op!("Softplus", 1, F::Softplus);
    float_op!("Softsign", 1, F::Softsign);
    float_op!("Mish", 18, F::Mish);
    r.add("LeakyRelu", 1, |n| float_with(n, "LeakyRelu", F::LeakyRelu(n.attr_float_or("alpha", 0.01)?)));
    r.add("Elu", 1, |n| float_with(n, "Elu", F::Elu(n.attr_float_or("alpha", 1.0)?)));
    r.add("Selu", 1, |n| {
        let alpha = n.attr_float_or("alpha", 1.673_263_2)?;
        let gamma = n.attr_float_or("gamma", 1.050_701)?;
        float_with(n, "Selu", F::Selu(alpha, gamma))
    });
    r.add("Celu", 12, |n| float_with(n, "Celu", F::Celu(n.attr_float_or("alpha", 1.0)?)));
    r.add("HardSigmoid", 1, |n| {
        let alpha = n.attr_float_or("alpha", 0.2)?;
        let beta = n.attr_float_or("beta", 0.5)?;
        float_with(n, "HardSigmoid", F::HardSigmoid(alpha, beta))
    });
    r.add("ThresholdedRelu", 1, |n| {
        float_with(n, "ThresholdedRelu", F::ThresholdedRelu(n.attr_float_or("alpha", 1.0)?))
    });
    r.add("Swish", 1, |n| float_with(n, "Swish", F::Swish(n.attr_float_or("alpha", 1.0)?)));
    r.add("Gelu", 20, |n| {
        let tanh = match n.attr_string_or("approximate", "none")?.as_str() {
            "none" => false,
            "tanh" => true,
            other => bail!("Gelu approximate must be 'none' or 'tanh', got '{other}'"),
        };
        float_with(n, "Gelu", F::Gelu(tanh))
    });

    macro_rules! num_op {
        ($name:literal, $since:expr, $kind:expr) => {
            r.add($name, $since, |_| Ok(Box::new(NumUnary { kind: $kind, name: $name })));
        };
    }
    num_op!("Abs", 1, N::Abs);
    num_op!("Neg", 1, N::Neg);
    num_op!("Sign", 9, N::Sign);
    num_op!("Relu", 1, N::Relu);
    r.add("Shrink", 9, |n| {
        let lambd = n.attr_float_or("lambd", 0.5)?;
        let bias = n.attr_float_or("bias", 0.0)?;
        Ok(Box::new(NumUnary { kind: N::Shrink(lambd, bias), name: "Shrink" }))
    });
    num_op!("Not", 1, N::Not);
    num_op!("BitwiseNot", 18, N::BitwiseNot);
    r.add("IsNaN", 9, |_| Ok(Box::new(FloatTest { nan: true, neg: false, pos: false })));
    r.add("IsInf", 10, |n| {
        Ok(Box::new(FloatTest {
            nan: false,
            neg: n.attr_int_or("detect_negative", 1)? != 0,
            pos: n.attr_int_or("detect_positive", 1)? != 0,
        }))
    });
    r.add("Clip", 1, build_clip);
}

fn float_with(_n: &NodeInfo, name: &'static str, kind: F) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(FloatUnary { kind, name }))
}

struct FloatUnary {
    kind: F,
    name: &'static str,
}

impl Op for FloatUnary {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let shape = x.shape().to_vec();
        dispatch!(float x.data(), self.name, |v: T| single(shape, float_unary::<T>(self.kind, v)))
    }
    fn reuses_input0(&self) -> bool {
        true
    }
    fn run_reusing(&self, first: Value, inputs: &Inputs) -> OpResult<Vec<Value>> {
        match first {
            Value::Tensor(mut t) if t.dtype() == DType::F32 => {
                float_unary_in_place::<f32>(self.kind, t.as_slice_mut::<f32>()?);
                Ok(vec![Value::Tensor(t)])
            }
            other => with_first(&other, inputs, |all| self.run(all)),
        }
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        infer_unary(inputs, None)
    }
}


fn float_unary<T: FloatElem>(kind: F, x: &[T]) -> Vec<T> {
    let mut out = x.to_vec();
    float_unary_in_place(kind, &mut out);
    out
}

/// Applies the function in place: vectorised for the CPU's widest ISA, split over the run's
/// threads when large.
fn float_unary_in_place<T: FloatElem>(kind: F, x: &mut [T]) {
    kiln_kernels::par::split_mut(x, 1, 1 << 16, |_, part| T::unary(kind, part));
}


/// Unary functions over several dtype groups.
#[derive(Clone, Copy, Debug)]
enum N {
    Abs,
    Neg,
    Sign,
    Relu,
    Shrink(f32, f32),
    Not,
    BitwiseNot,
}

struct NumUnary {
    kind: N,
    name: &'static str,
}

fn map<T: Copy, O>(x: &[T], f: impl Fn(T) -> O) -> Vec<O> {
    x.iter().map(|&v| f(v)).collect()
}

impl Op for NumUnary {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let shape = x.shape().to_vec();
        let d = x.data();
        let name = self.name;
        match self.kind {
            N::Abs => dispatch!(num d, name, |v: T| single(shape, map(v, T::n_abs))),
            N::Neg => dispatch!(signed d, name, |v: T| single(shape, map(v, T::n_neg))),
            N::Sign => dispatch!(num d, name, |v: T| single(shape, map(v, T::n_sign))),
            N::Relu => dispatch!(signed d, name, |v: T| {
                let z = T::zero();
                single(shape, map(v, |a: T| if a < z { z } else { a }))
            }),
            N::Shrink(l, b) => dispatch!(num d, name, |v: T| {
                let (l, b) = (l as f64, b as f64);
                let z = T::zero();
                let out = map(v, |a: T| {
                    let f = a.to_f64();
                    if f < -l {
                        T::from_f64(f + b)
                    } else if f > l {
                        T::from_f64(f - b)
                    } else {
                        z
                    }
                });
                single(shape, out)
            }),
            N::Not => match d {
                kiln_tensor::TensorData::Bool(v) => single(shape, map(v, |a: bool| !a)),
                other => bail!("Not needs a bool tensor, got {}", other.dtype()),
            },
            N::BitwiseNot => dispatch!(int d, name, |v: T| single(shape, map(v, |a: T| !a))),
        }
    }
    fn reuses_input0(&self) -> bool {
        matches!(self.kind, N::Relu)
    }
    fn run_reusing(&self, first: Value, inputs: &Inputs) -> OpResult<Vec<Value>> {
        match first {
            Value::Tensor(mut t) if t.dtype() == DType::F32 && matches!(self.kind, N::Relu) => {
                t.as_slice_mut::<f32>()?.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
                Ok(vec![Value::Tensor(t)])
            }
            other => with_first(&other, inputs, |all| self.run(all)),
        }
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        infer_unary(inputs, None)
    }
}

/// IsNaN and IsInf.
struct FloatTest {
    nan: bool,
    neg: bool,
    pos: bool,
}

impl Op for FloatTest {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let shape = x.shape().to_vec();
        let name = if self.nan { "IsNaN" } else { "IsInf" };
        if let (true, TensorData::F32(v)) = (self.nan, x.data()) {
            return single(shape, kiln_kernels::elementwise::is_nan_f32(v));
        }
        dispatch!(float x.data(), name, |v: T| {
            let out: Vec<bool> = if self.nan {
                map(v, |a: T| a.is_nan_())
            } else {
                let (neg, pos) = (self.neg, self.pos);
                map(v, |a: T| {
                    let f = a.to_f64();
                    f.is_infinite() && ((pos && f > 0.0) || (neg && f < 0.0))
                })
            };
            single(shape, out)
        })
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        infer_unary(inputs, Some(DType::Bool))
    }
}

/// Clip: bounds from attributes (opset < 11) or from optional scalar inputs.
struct Clip {
    attr_bounds: Option<(f32, f32)>,
}

fn build_clip(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let attr_bounds = if n.opset < 11 {
        Some((n.attr_float_or("min", f32::NEG_INFINITY)?, n.attr_float_or("max", f32::INFINITY)?))
    } else {
        None
    };
    Ok(Box::new(Clip { attr_bounds }))
}

fn clip_bound<T: Num>(t: Option<&Tensor>, what: &str) -> OpResult<Option<T>> {
    let Some(t) = t else { return Ok(None) };
    let s = t.as_slice::<T>().map_err(|e| crate::OpError(format!("Clip {what}: {e}")))?;
    ensure!(s.len() == 1, "Clip {what} must be a scalar, got shape {:?}", t.shape());
    Ok(Some(s[0]))
}

impl Clip {
    /// The bounds for element type `T` (None: unbounded on that side).
    fn bounds<T: Num>(&self, inputs: &Inputs) -> OpResult<(Option<T>, Option<T>)> {
        Ok(match self.attr_bounds {
            Some((lo, hi)) => (
                (lo != f32::NEG_INFINITY).then(|| T::from_f64(lo as f64)),
                (hi != f32::INFINITY).then(|| T::from_f64(hi as f64)),
            ),
            None => (clip_bound::<T>(inputs.opt_tensor(1)?, "min")?, clip_bound::<T>(inputs.opt_tensor(2)?, "max")?),
        })
    }
}

/// `a` limited to [lo, hi] (NaN passes through).
#[inline(always)]
fn clip_one<T: PartialOrd + Copy>(a: T, lo: Option<T>, hi: Option<T>) -> T {
    let t = match lo {
        Some(lo) if a < lo => lo,
        _ => a,
    };
    match hi {
        Some(hi) if t > hi => hi,
        _ => t,
    }
}

impl Op for Clip {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let shape = x.shape().to_vec();
        dispatch!(num x.data(), "Clip", |v: T| {
            let (lo, hi) = self.bounds::<T>(inputs)?;
            single(shape, map(v, |a: T| clip_one(a, lo, hi)))
        })
    }
    fn reuses_input0(&self) -> bool {
        true
    }
    fn run_reusing(&self, first: Value, inputs: &Inputs) -> OpResult<Vec<Value>> {
        match first {
            Value::Tensor(mut t) if t.dtype() == DType::F32 => {
                let (lo, hi) = self.bounds::<f32>(inputs)?;
                t.as_slice_mut::<f32>()?.iter_mut().for_each(|a| *a = clip_one(*a, lo, hi));
                Ok(vec![Value::Tensor(t)])
            }
            other => with_first(&other, inputs, |all| self.run(all)),
        }
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        infer_unary(inputs, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_by_hand() {
        let x = [-2.0f32, -0.5, 0.0, 1.5];
        assert_eq!(float_unary(F::LeakyRelu(0.1), &x), vec![-0.2, -0.05, 0.0, 1.5]);
        assert_eq!(float_unary(F::ThresholdedRelu(1.0), &x), vec![0.0, 0.0, 0.0, 1.5]);
        let h = float_unary(F::HardSigmoid(0.2, 0.5), &x);
        for (a, b) in h.iter().zip([0.1f32, 0.4, 0.5, 0.8]) {
            assert!((a - b).abs() < 1e-6, "{h:?}");
        }
        let s = float_unary(F::Sigmoid, &[0.0f32, 2.0]);
        assert!((s[0] - 0.5).abs() < 1e-7 && (s[1] - 0.880_797_1).abs() < 1e-6);
        let g = float_unary(F::Gelu(false), &[1.0f64, -1.0]);
        assert!((g[0] - 0.8413447460685429).abs() < 1e-12 && (g[1] + 0.15865525393145707).abs() < 1e-12);
        let r = float_unary(F::Round, &[0.5f32, 1.5, 2.5, -0.5, -1.5]);
        assert_eq!(r, vec![0.0, 2.0, 2.0, -0.0, -2.0]);
        let sp = float_unary(F::Softplus, &[0.0f64, 100.0, -100.0]);
        assert!((sp[0] - std::f64::consts::LN_2).abs() < 1e-12 && sp[1] == 100.0 && sp[2] > 0.0);
    }
}
