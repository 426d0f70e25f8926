//! LinearAttention (opset 27): recurrent linear attention with the linear, gated, delta and
//! gated-delta update rules, GQA, and a (B, H_kv, d_k, d_v) carried state.

use kiln_tensor::{DType, Dim, Shape, Tensor, Value, ValueType};

use super::{dim_div, heads_attr, store, Work};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let q_heads = heads_attr(n.attr_int("q_num_heads")?, "q_num_heads", "LinearAttention")?
        .ok_or_else(|| OpError::new("LinearAttention: the q_num_heads attribute is required"))?;
    let kv_heads = heads_attr(n.attr_int("kv_num_heads")?, "kv_num_heads", "LinearAttention")?
        .ok_or_else(|| OpError::new("LinearAttention: the kv_num_heads attribute is required"))?;
    ensure!(
        q_heads % kv_heads == 0,
        "LinearAttention: q_num_heads ({q_heads}) must be a multiple of kv_num_heads ({kv_heads})"
    );
    let rule = n.attr_string_or("update_rule", "gated_delta")?;
    let (gated, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        other => bail!("LinearAttention: unsupported update_rule '{other}' (expected linear, gated, delta or gated_delta)"),
    };
    Ok(Box::new(LinearAttentionOp {
        q_heads,
        kv_heads,
        scale: n.attr_float_or("scale", 0.0)?,
        gated,
        delta,
        rule,
    }))
}

struct LinearAttentionOp {
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
    gated: bool,
    delta: bool,
    rule: String,
}

/// Checked geometry of one call.
struct Geo {
    b: usize,
    t: usize,
    dk: usize,
    dv: usize,
    /// decay values per (b, t, head): 1 (per head) or d_k (per key channel).
    decay_w: usize,
    /// beta values per (b, t): kv heads or 1.
    beta_w: usize,
}

impl Op for LinearAttentionOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let q = inputs.tensor(0)?;
        let k = inputs.tensor(1)?;
        let v = inputs.tensor(2)?;
        let past = inputs.opt_tensor(3)?;
        let decay = inputs.opt_tensor(4)?;
        let beta = inputs.opt_tensor(5)?;
        let rule = &self.rule;
        ensure!(
            decay.is_some() == self.gated,
            "LinearAttention: update_rule '{rule}' {} the decay input",
            if self.gated { "requires" } else { "forbids" }
        );
        ensure!(
            beta.is_some() == self.delta,
            "LinearAttention: update_rule '{rule}' {} the beta input",
            if self.delta { "requires" } else { "forbids" }
        );
        for (t, name) in [(Some(q), "query"), (Some(k), "key"), (Some(v), "value"), (decay, "decay"), (beta, "beta")] {
            if let Some(t) = t {
                super::ensure_float(t, name, "LinearAttention")?;
                ensure!(t.rank() == 3, "LinearAttention: {name} must be rank 3 (B, T, H·D), got shape {:?}", t.shape());
                ensure!(t.dtype() == q.dtype(), "LinearAttention: {name} is {} but query is {}", t.dtype(), q.dtype());
            }
        }
        let (b, t, qh) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        let (hq, hkv) = (self.q_heads, self.kv_heads);
        ensure!(qh % hq == 0, "LinearAttention: query last dim {qh} is not divisible by q_num_heads {hq}");
        let dk = qh / hq;
        ensure!(
            k.shape() == [b, t, hkv * dk],
            "LinearAttention: key has shape {:?}, expected ({b}, {t}, {})",
            k.shape(),
            hkv * dk
        );
        let vs = v.shape();
        ensure!(
            vs[0] == b && vs[1] == t && vs[2] % hkv == 0,
            "LinearAttention: value has shape {vs:?}, expected ({b}, {t}, kv_num_heads·d_v)"
        );
        let dv = vs[2] / hkv;
        let decay_w = match decay {
            None => 0,
            Some(d) => {
                let s = d.shape();
                ensure!(s[0] == b && s[1] == t, "LinearAttention: decay has shape {s:?}, expected ({b}, {t}, ·)");
                if s[2] == hkv {
                    1
                } else if s[2] == hkv * dk {
                    dk
                } else {
                    bail!("LinearAttention: decay last dim {} must be kv_num_heads ({hkv}) or kv_num_heads·d_k ({})", s[2], hkv * dk)
                }
            }
        };
        let beta_w = match beta {
            None => 0,
            Some(bt) => {
                let s = bt.shape();
                ensure!(
                    s[0] == b && s[1] == t && (s[2] == hkv || s[2] == 1),
                    "LinearAttention: beta has shape {s:?}, expected ({b}, {t}, {hkv} or 1)"
                );
                s[2]
            }
        };
        if let Some(p) = past {
            ensure!(
                p.shape() == [b, hkv, dk, dv],
                "LinearAttention: past_state has shape {:?}, expected ({b}, {hkv}, {dk}, {dv})",
                p.shape()
            );
            super::ensure_float(p, "past_state", "LinearAttention")?;
        }
        let geo = Geo { b, t, dk, dv, decay_w, beta_w };
        let wide = q.dtype() == DType::F64;
        let (y, state) = if wide {
            self.compute::<f64>(q, k, v, past, decay, beta, &geo)?
        } else {
            self.compute::<f32>(q, k, v, past, decay, beta, &geo)?
        };
        Ok(vec![Value::Tensor(y), Value::Tensor(state)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let get = |i: usize| match inputs.get(i).copied().flatten() {
            Some(ValueType::Tensor { dtype, shape }) => Some((*dtype, shape.clone())),
            _ => None,
        };
        let (qdt, qs) = get(0)?;
        let (_, vs) = get(2)?;
        let state_dt = get(3).map(|(d, _)| d).unwrap_or(qdt);
        let (qs, vs) = (qs?, vs?);
        if qs.rank() != 3 || vs.rank() != 3 {
            return None;
        }
        let dk = dim_div(&qs.0[2], self.q_heads);
        let dv = dim_div(&vs.0[2], self.kv_heads);
        let out_last = match &dv {
            Dim::Fixed(d) => Dim::Fixed(d * self.q_heads),
            _ => Dim::unknown(),
        };
        Some(vec![
            ValueType::Tensor { dtype: qdt, shape: Some(Shape(vec![qs.0[0].clone(), qs.0[1].clone(), out_last])) },
            ValueType::Tensor {
                dtype: state_dt,
                shape: Some(Shape(vec![qs.0[0].clone(), Dim::Fixed(self.kv_heads), dk, dv])),
            },
        ])
    }
}

impl LinearAttentionOp {
    #[allow(clippy::too_many_arguments)]
    fn compute<W: Work>(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        past: Option<&Tensor>,
        decay: Option<&Tensor>,
        beta: Option<&Tensor>,
        g: &Geo,
    ) -> OpResult<(Tensor, Tensor)> {
        let (hq, hkv) = (self.q_heads, self.kv_heads);
        let (b, t, dk, dv) = (g.b, g.t, g.dk, g.dv);
        let group = hq / hkv;
        let scale = if self.scale == 0.0 { 1.0 / (dk as f64).sqrt() } else { self.scale as f64 };
        let scale = W::from_f64(scale);
        let (qs, ks, vs) = (W::load(q)?, W::load(k)?, W::load(v)?);
        let ds = match decay {
            Some(d) => Some(W::load(d)?),
            None => None,
        };
        let bs = match beta {
            Some(x) => Some(W::load(x)?),
            None => None,
        };
        let st = dk * dv;
        let mut state: Vec<W> = match past {
            Some(p) => W::load(p)?.into_owned(),
            None => vec![W::ZERO; b * hkv * st],
        };
        let mut y = vec![W::ZERO; b * t * hq * dv];
        let mut vt = vec![W::ZERO; dv];
        let mut gate = vec![W::ONE; dk];
        for bi in 0..b {
            for ti in 0..t {
                let row = bi * t + ti;
                for h in 0..hkv {
                    let s = &mut state[(bi * hkv + h) * st..(bi * hkv + h + 1) * st];
                    let kt = &ks[row * hkv * dk + h * dk..][..dk];
                    vt.copy_from_slice(&vs[row * hkv * dv + h * dv..][..dv]);
                    if let Some(ds) = &ds {
                        let w = g.decay_w;
                        let gv = &ds[row * hkv * w + h * w..][..w];
                        for (d, x) in gate.iter_mut().enumerate() {
                            *x = gv[if w == 1 { 0 } else { d }].exp();
                        }
                        for (d, srow) in s.chunks_mut(dv).enumerate() {
                            for x in srow.iter_mut() {
                                *x = *x * gate[d];
                            }
                        }
                    }
                    if let Some(bs) = &bs {
                        let bw = g.beta_w;
                        let bt = bs[row * bw + if bw == 1 { 0 } else { h }];
                        for (m, x) in vt.iter_mut().enumerate() {
                            let mut retrieved = W::ZERO;
                            for d in 0..dk {
                                retrieved = retrieved + s[d * dv + m] * kt[d];
                            }
                            *x = bt * (*x - retrieved);
                        }
                    }
                    for (d, srow) in s.chunks_mut(dv).enumerate() {
                        for (x, &vm) in srow.iter_mut().zip(vt.iter()) {
                            *x = *x + kt[d] * vm;
                        }
                    }
                    // Outputs of the query heads sharing this state.
                    for hh in h * group..(h + 1) * group {
                        let qt = &qs[row * hq * dk + hh * dk..][..dk];
                        let out = &mut y[row * hq * dv + hh * dv..][..dv];
                        for (m, o) in out.iter_mut().enumerate() {
                            let mut acc = W::ZERO;
                            for d in 0..dk {
                                acc = acc + qt[d] * s[d * dv + m];
                            }
                            *o = scale * acc;
                        }
                    }
                }
            }
        }
        let state_dt = past.map(|p| p.dtype()).unwrap_or(q.dtype());
        Ok((store(y, q.dtype(), vec![b, t, hq * dv])?, store(state, state_dt, vec![b, hkv, dk, dv])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_rule_accumulates_outer_products() {
        // One head, d_k = d_v = 1, scale 1: S_t = Σ k·v, o_t = q_t · S_t.
        let op = LinearAttentionOp { q_heads: 1, kv_heads: 1, scale: 1.0, gated: false, delta: false, rule: "linear".into() };
        let q = Tensor::from_vec(vec![1, 2, 1], vec![1f32, 2.0]).unwrap();
        let k = Tensor::from_vec(vec![1, 2, 1], vec![3f32, 4.0]).unwrap();
        let v = Tensor::from_vec(vec![1, 2, 1], vec![5f32, 6.0]).unwrap();
        let g = Geo { b: 1, t: 2, dk: 1, dv: 1, decay_w: 0, beta_w: 0 };
        let (y, s) = op.compute::<f32>(&q, &k, &v, None, None, None, &g).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[15.0, 78.0]);
        assert_eq!(s.as_slice::<f32>().unwrap(), &[39.0]);
    }
}
