//! FlexAttention (ai.onnx.preview 1): scaled dot-product attention over rank-4 inputs with
//! optional score_mod / prob_mod subgraphs.

use kiln_onnx::proto::GraphProto;
use kiln_tensor::{DType, Tensor, Value, ValueType};

use super::{round_all, store, Prec, Work};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::plan::Subgraph;
use crate::{bail, ensure};

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let softmax_prec = match n.attr_int("softmax_precision")? {
        None => None,
        Some(code) => {
            let p = i32::try_from(code).ok().and_then(DType::from_onnx).filter(|d| d.is_float());
            Some(p.ok_or_else(|| OpError(format!("FlexAttention: softmax_precision {code} is not a float type")))?)
        }
    };
    let score_mod = match n.attr_graph("score_mod")? {
        Some(g) => Some(Modifier::new(g, n, "score_mod")?),
        None => None,
    };
    let prob_mod = match n.attr_graph("prob_mod")? {
        Some(g) => Some(Modifier::new(g, n, "prob_mod")?),
        None => None,
    };
    Ok(Box::new(FlexAttentionOp {
        scale: n.attr_float("scale")?,
        softmax_prec,
        score_mod,
        prob_mod,
        n_decl: n.num_inputs,
    }))
}

/// A modifier subgraph: one tensor in, one tensor out.
struct Modifier {
    graph: Subgraph,
    what: &'static str,
}

impl Modifier {
    fn new(g: &GraphProto, n: &NodeInfo, what: &'static str) -> OpResult<Modifier> {
        let graph = Subgraph::compile(n, g).map_err(|e| OpError(format!("FlexAttention: {what}: {e}")))?;
        ensure!(graph.num_inputs() == 1, "FlexAttention: {what} must have exactly 1 input, has {}", graph.num_inputs());
        ensure!(graph.num_outputs() == 1, "FlexAttention: {what} must have exactly 1 output, has {}", graph.num_outputs());
        Ok(Modifier { graph, what })
    }

    fn apply(&self, t: Tensor, implicit: &[Option<&Value>]) -> OpResult<Tensor> {
        let shape = t.shape().to_vec();
        let dtype = t.dtype();
        let out = self
            .graph
            .run(vec![Value::Tensor(t)], implicit)
            .map_err(|e| OpError(format!("FlexAttention: {} failed: {e}", self.what)))?;
        let t = match out.into_iter().next() {
            Some(Value::Tensor(t)) => t,
            _ => bail!("FlexAttention: {} must produce one tensor", self.what),
        };
        ensure!(
            t.shape() == shape.as_slice() && t.dtype() == dtype,
            "FlexAttention: {} must return a {dtype} tensor of shape {shape:?}, got {} {:?}",
            self.what,
            t.dtype(),
            t.shape()
        );
        Ok(t)
    }
}

struct FlexAttentionOp {
    scale: Option<f32>,
    softmax_prec: Option<DType>,
    score_mod: Option<Modifier>,
    prob_mod: Option<Modifier>,
    /// Declared inputs; outer-scope values read by the modifiers follow them.
    n_decl: usize,
}

impl Op for FlexAttentionOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let q = inputs.tensor(0)?;
        let k = inputs.tensor(1)?;
        let v = inputs.tensor(2)?;
        for (t, name) in [(q, "Q"), (k, "K"), (v, "V")] {
            super::ensure_float(t, name, "FlexAttention")?;
            ensure!(t.rank() == 4, "FlexAttention: {name} must be rank 4, got shape {:?}", t.shape());
        }
        ensure!(k.dtype() == q.dtype(), "FlexAttention: K is {} but Q is {}", k.dtype(), q.dtype());
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        ensure!(ks[0] == qs[0] && vs[0] == qs[0], "FlexAttention: batch sizes differ");
        ensure!(ks[1] == vs[1], "FlexAttention: key and value must have the same number of heads");
        ensure!(ks[2] == vs[2], "FlexAttention: key and value must have the same sequence length");
        ensure!(ks[3] == qs[3], "FlexAttention: query and key must have the same head size");
        ensure!(
            ks[1] > 0 && qs[1] % ks[1] == 0,
            "FlexAttention: q heads ({}) must be a multiple of kv heads ({})",
            qs[1],
            ks[1]
        );
        let implicit = inputs.values.get(self.n_decl..).unwrap_or(&[]);
        let compute = match self.softmax_prec {
            Some(d) => d,
            None if q.dtype() == DType::F64 => DType::F64,
            None => DType::F32,
        };
        let y = if compute == DType::F64 {
            self.compute::<f64>(q, k, v, compute, implicit)?
        } else {
            self.compute::<f32>(q, k, v, compute, implicit)?
        };
        Ok(vec![Value::Tensor(y)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let get = |i: usize| match inputs.get(i).copied().flatten() {
            Some(ValueType::Tensor { dtype, shape }) => Some((*dtype, shape.clone())),
            _ => None,
        };
        let (_, qs) = get(0)?;
        let (vdt, vs) = get(2)?;
        let (qs, vs) = (qs?, vs?);
        if qs.rank() != 4 || vs.rank() != 4 {
            return None;
        }
        let mut s = qs.clone();
        s.0[3] = vs.0[3].clone();
        Some(vec![ValueType::Tensor { dtype: vdt, shape: Some(s) }])
    }
}

impl FlexAttentionOp {
    fn compute<W: Work>(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        compute: DType,
        implicit: &[Option<&Value>],
    ) -> OpResult<Tensor> {
        let (b, hq, l, e) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
        let (hkv, s) = (k.shape()[1], k.shape()[2]);
        let ev = v.shape()[3];
        let group = hq / hkv;
        let tp = Prec::of(q.dtype()).ok_or_else(|| OpError::new("FlexAttention: Q must be float"))?;
        let cp = Prec::of(compute).ok_or_else(|| OpError::new("FlexAttention: bad softmax precision"))?;
        let (rt, rc) = (W::rounder(tp), W::rounder(cp));
        let scale = match self.scale {
            Some(x) => x,
            None => (1.0 / (e as f64).sqrt()) as f32,
        };
        let mut sqs = W::from_f64(scale.sqrt() as f64);
        if let Some(r) = rt {
            sqs = r(sqs);
        }
        let scaled = |t: &Tensor| -> OpResult<Vec<W>> {
            let mut x: Vec<W> = W::load(t)?.iter().map(|&x| x * sqs).collect();
            round_all(&mut x, rt);
            Ok(x)
        };
        let (qv, kv) = (scaled(q)?, scaled(k)?);
        let mut vv = W::load(v)?.into_owned();
        round_all(&mut vv, rc);

        let mut scores = vec![W::ZERO; b * hq * l * s];
        for bi in 0..b {
            for h in 0..hq {
                let hk = h / group;
                let qo = (bi * hq + h) * l * e;
                let ko = (bi * hkv + hk) * s * e;
                let so = (bi * hq + h) * l * s;
                W::gemm(l, e, s, &qv[qo..], e as isize, 1, &kv[ko..], 1, e as isize, &mut scores[so..], s as isize, 1);
            }
        }
        round_all(&mut scores, rt);
        round_all(&mut scores, rc);
        let shape = vec![b, hq, l, s];
        if let Some(m) = &self.score_mod {
            let out = m.apply(store(scores, compute, shape.clone())?, implicit)?;
            scores = W::load(&out)?.into_owned();
        }
        if s > 0 {
            for row in scores.chunks_mut(s) {
                let mut max = row[0];
                for &x in row.iter() {
                    if x > max || x.is_nan() {
                        max = x;
                    }
                }
                let mut sum = W::ZERO;
                for x in row.iter_mut() {
                    let mut t = *x - max;
                    if let Some(r) = rc {
                        t = r(t);
                    }
                    t = t.exp();
                    if let Some(r) = rc {
                        t = r(t);
                    }
                    *x = t;
                    sum = sum + t;
                    if cp == Prec::BF16 {
                        if let Some(r) = rc {
                            sum = r(sum);
                        }
                    }
                }
                if let Some(r) = rc {
                    sum = r(sum);
                }
                for x in row.iter_mut() {
                    *x = *x / sum;
                }
            }
            round_all(&mut scores, rc);
        }
        if let Some(m) = &self.prob_mod {
            let out = m.apply(store(scores, compute, shape)?, implicit)?;
            scores = W::load(&out)?.into_owned();
        }
        let mut y = vec![W::ZERO; b * hq * l * ev];
        for bi in 0..b {
            for h in 0..hq {
                let hk = h / group;
                let po = (bi * hq + h) * l * s;
                let vo = (bi * hkv + hk) * s * ev;
                let yo = (bi * hq + h) * l * ev;
                W::gemm(l, s, ev, &scores[po..], s as isize, 1, &vv[vo..], ev as isize, 1, &mut y[yo..], ev as isize, 1);
            }
        }
        round_all(&mut y, rc);
        store(y, v.dtype(), vec![b, hq, l, ev])
    }
}
