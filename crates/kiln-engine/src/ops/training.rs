//! Optimizer operators of the ai.onnx.preview.training domain: Adagrad, Momentum (standard and
//! Nesterov), Adam. Each node updates n tensors at once: inputs are R, T, then n X's, n G's and n
//! of each state (H for Adagrad, V for Momentum, V then H for Adam); outputs are the n new X's
//! followed by the n new values of each state. Gradient (autodiff of a subgraph) is not provided.

use kiln_tensor::{DType, Tensor, Value, ValueType};

use super::signal::from_f64;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;
use crate::{bail, ensure};

const DOMAIN: &str = "ai.onnx.preview.training";

pub fn register(r: &mut Registry) {
    r.add_in(DOMAIN, "Adagrad", 1, build_adagrad);
    r.add_in(DOMAIN, "Momentum", 1, build_momentum);
    r.add_in(DOMAIN, "Adam", 1, build_adam);
}

#[derive(Clone, Copy, Debug)]
enum Algo {
    Adagrad { decay: f64, eps: f64, norm: f64 },
    Momentum { alpha: f64, beta: f64, nesterov: bool, norm: f64 },
    Adam { alpha: f64, beta: f64, eps: f64, norm: f64, norm_post: f64 },
}

impl Algo {
    fn name(&self) -> &'static str {
        match self {
            Algo::Adagrad { .. } => "Adagrad",
            Algo::Momentum { .. } => "Momentum",
            Algo::Adam { .. } => "Adam",
        }
    }
    /// Number of state tensors per optimized tensor.
    fn states(&self) -> usize {
        match self {
            Algo::Adam { .. } => 2,
            _ => 1,
        }
    }
}

struct OptimizerOp {
    algo: Algo,
    /// Number of tensors optimized by the node.
    n: usize,
}

fn tensor_count(n: &NodeInfo, algo: Algo) -> OpResult<usize> {
    let per = 2 + algo.states();
    let rest = n.num_inputs.saturating_sub(2);
    ensure!(
        n.num_inputs > 2 && rest.is_multiple_of(per),
        "{} takes R, T and {per} inputs per optimized tensor; got {} inputs",
        algo.name(),
        n.num_inputs
    );
    let count = rest / per;
    ensure!(
        n.num_outputs <= count * (1 + algo.states()),
        "{} optimizing {count} tensor(s) has at most {} outputs, the node declares {}",
        algo.name(),
        count * (1 + algo.states()),
        n.num_outputs
    );
    Ok(count)
}

fn required_float(n: &NodeInfo, name: &str, op: &str) -> OpResult<f64> {
    Ok(n.attr_float(name)?.ok_or_else(|| OpError(format!("{op} needs the '{name}' attribute")))? as f64)
}

fn build_adagrad(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let algo = Algo::Adagrad {
        decay: n.attr_float_or("decay_factor", 0.0)? as f64,
        eps: n.attr_float_or("epsilon", 1e-6)? as f64,
        norm: n.attr_float_or("norm_coefficient", 0.0)? as f64,
    };
    Ok(Box::new(OptimizerOp { algo, n: tensor_count(n, algo)? }))
}

fn build_momentum(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let mode = n.attr_string("mode")?.ok_or_else(|| OpError::new("Momentum needs the 'mode' attribute"))?;
    let nesterov = match mode.as_str() {
        "standard" => false,
        "nesterov" => true,
        other => bail!("Momentum mode must be 'standard' or 'nesterov', got '{other}'"),
    };
    let algo = Algo::Momentum {
        alpha: required_float(n, "alpha", "Momentum")?,
        beta: required_float(n, "beta", "Momentum")?,
        nesterov,
        norm: required_float(n, "norm_coefficient", "Momentum")?,
    };
    Ok(Box::new(OptimizerOp { algo, n: tensor_count(n, algo)? }))
}

fn build_adam(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let algo = Algo::Adam {
        alpha: n.attr_float_or("alpha", 0.9)? as f64,
        beta: n.attr_float_or("beta", 0.999)? as f64,
        eps: n.attr_float_or("epsilon", 1e-6)? as f64,
        norm: n.attr_float_or("norm_coefficient", 0.0)? as f64,
        norm_post: n.attr_float_or("norm_coefficient_post", 0.0)? as f64,
    };
    Ok(Box::new(OptimizerOp { algo, n: tensor_count(n, algo)? }))
}

/// One optimized tensor with its gradient and states, as f64.
struct Slot<'a> {
    x: &'a Tensor,
    g: Vec<f64>,
    states: Vec<(&'a Tensor, Vec<f64>)>,
}

/// Updates x and the states in place for a learning rate `r` and update count `t`.
fn update(algo: Algo, r: f64, t: i64, x: &mut [f64], g: &[f64], states: &mut [Vec<f64>]) {
    match algo {
        Algo::Adagrad { decay, eps, norm } => {
            let r = r / (1.0 + t as f64 * decay);
            let h = &mut states[0];
            for i in 0..x.len() {
                let gr = norm * x[i] + g[i];
                h[i] += gr * gr;
                x[i] -= r * gr / (h[i].sqrt() + eps);
            }
        }
        Algo::Momentum { alpha, beta, nesterov, norm } => {
            let beta = if t > 0 { beta } else { 1.0 };
            let v = &mut states[0];
            for i in 0..x.len() {
                let gr = norm * x[i] + g[i];
                v[i] = alpha * v[i] + beta * gr;
                x[i] -= if nesterov { r * (gr + alpha * v[i]) } else { r * v[i] };
            }
        }
        Algo::Adam { alpha, beta, eps, norm, norm_post } => {
            let r = if t > 0 {
                let t = t.min(i32::MAX as i64) as i32;
                r * (1.0 - beta.powi(t)).sqrt() / (1.0 - alpha.powi(t))
            } else {
                r
            };
            let (vs, hs) = states.split_at_mut(1);
            let (v, h) = (&mut vs[0], &mut hs[0]);
            for i in 0..x.len() {
                let gr = norm * x[i] + g[i];
                v[i] = alpha * v[i] + (1.0 - alpha) * gr;
                h[i] = beta * h[i] + (1.0 - beta) * gr * gr;
                let moved = x[i] - r * (v[i] / (h[i].sqrt() + eps));
                x[i] = (1.0 - norm_post) * moved;
            }
        }
    }
}

fn float_input<'a>(inputs: &Inputs<'a>, i: usize, what: &str, op: &str) -> OpResult<&'a Tensor> {
    let t = inputs.tensor(i)?;
    ensure!(
        matches!(t.dtype(), DType::F32 | DType::F64),
        "{op}: {what} must be a float or double tensor, got {}",
        t.dtype()
    );
    Ok(t)
}

fn scalar(t: &Tensor, what: &str) -> OpResult<()> {
    ensure!(t.len() == 1 && t.rank() <= 1, "{what} must be a scalar, got shape {:?}", t.shape());
    Ok(())
}

impl Op for OptimizerOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let name = self.algo.name();
        let (n, k) = (self.n, self.algo.states());
        let r_t = float_input(inputs, 0, "R", name)?;
        scalar(r_t, "R")?;
        let r = r_t.to_f64_vec()?[0];
        let t_t = inputs.tensor(1)?;
        ensure!(t_t.dtype() == DType::I64, "{name}: T must be an int64 tensor, got {}", t_t.dtype());
        scalar(t_t, "T")?;
        let t = t_t.to_i64_vec()?[0];

        let state_names: &[&str] = match self.algo {
            Algo::Adagrad { .. } => &["H"],
            Algo::Momentum { .. } => &["V"],
            Algo::Adam { .. } => &["V", "H"],
        };
        let mut slots = Vec::with_capacity(n);
        for i in 0..n {
            let x = float_input(inputs, 2 + i, "X", name)?;
            let g = float_input(inputs, 2 + n + i, "G", name)?;
            ensure!(
                g.shape() == x.shape(),
                "{name}: gradient {} has shape {:?} but X {} has shape {:?}",
                i + 1,
                g.shape(),
                i + 1,
                x.shape()
            );
            let mut states = Vec::with_capacity(k);
            for (j, sname) in state_names.iter().enumerate() {
                let s = float_input(inputs, 2 + (2 + j) * n + i, sname, name)?;
                ensure!(
                    s.shape() == x.shape(),
                    "{name}: {sname} {} has shape {:?} but X {} has shape {:?}",
                    i + 1,
                    s.shape(),
                    i + 1,
                    x.shape()
                );
                states.push((s, s.to_f64_vec()?));
            }
            slots.push(Slot { x, g: g.to_f64_vec()?, states });
        }

        let mut new_x = Vec::with_capacity(n);
        let mut new_states: Vec<Vec<Value>> = vec![Vec::with_capacity(n); k];
        for slot in slots {
            let mut x = slot.x.to_f64_vec()?;
            let (tensors, mut vals): (Vec<&Tensor>, Vec<Vec<f64>>) = slot.states.into_iter().unzip();
            update(self.algo, r, t, &mut x, &slot.g, &mut vals);
            let shape = slot.x.shape().to_vec();
            new_x.push(Value::Tensor(Tensor::new(shape.clone(), from_f64(x, slot.x.dtype())?)?));
            for (j, (s, v)) in tensors.into_iter().zip(vals).enumerate() {
                new_states[j].push(Value::Tensor(Tensor::new(shape.clone(), from_f64(v, s.dtype())?)?));
            }
        }
        new_x.extend(new_states.into_iter().flatten());
        Ok(new_x)
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let n = self.n;
        let mut out = Vec::with_capacity(n * (1 + self.algo.states()));
        // New X's take the X types; new states take the state types.
        for i in 0..n {
            out.push(inputs.get(2 + i).copied().flatten()?.clone());
        }
        for j in 0..self.algo.states() {
            for i in 0..n {
                out.push(inputs.get(2 + (2 + j) * n + i).copied().flatten()?.clone());
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn adagrad_step() {
        // r = 1/(1 + 1·1) = 0.5; g_reg = 0 + 2 = 2; H = 0 + 4 = 4; X = 1 - 0.5·2/(2 + 0) = 0.5.
        let (mut x, mut s) = (vec![1.0], vec![vec![0.0]]);
        update(Algo::Adagrad { decay: 1.0, eps: 0.0, norm: 0.0 }, 1.0, 1, &mut x, &[2.0], &mut s);
        assert!(close(x[0], 0.5) && close(s[0][0], 4.0));
    }

    #[test]
    fn momentum_standard_and_nesterov() {
        // T = 0: beta forced to 1. V = 0.5·2 + 1·(0.1·1 + 3) = 4.1; X = 1 - 0.1·4.1 = 0.59.
        let algo = |nesterov| Algo::Momentum { alpha: 0.5, beta: 0.2, nesterov, norm: 0.1 };
        let (mut x, mut s) = (vec![1.0], vec![vec![2.0]]);
        update(algo(false), 0.1, 0, &mut x, &[3.0], &mut s);
        assert!(close(s[0][0], 4.1) && close(x[0], 0.59));
        // T = 1: V = 0.5·2 + 0.2·3.1 = 1.62; Nesterov X = 1 - 0.1·(3.1 + 0.5·1.62) = 0.609.
        let (mut x, mut s) = (vec![1.0], vec![vec![2.0]]);
        update(algo(true), 0.1, 1, &mut x, &[3.0], &mut s);
        assert!(close(s[0][0], 1.62) && close(x[0], 0.609));
    }

    #[test]
    fn adam_step() {
        // T = 1, alpha = 0.5, beta = 0.75: V = 0.5·0 + 0.5·2 = 1; H = 0.25·4 = 1;
        // r = 1·sqrt(0.25)/0.5 = 1; X = (1 - 0.5)·(3 - 1·1/1) = 1.
        let (mut x, mut s) = (vec![3.0], vec![vec![0.0], vec![0.0]]);
        let algo = Algo::Adam { alpha: 0.5, beta: 0.75, eps: 0.0, norm: 0.0, norm_post: 0.5 };
        update(algo, 1.0, 1, &mut x, &[2.0], &mut s);
        assert!(close(s[0][0], 1.0) && close(s[1][0], 1.0) && close(x[0], 1.0));
    }
}
