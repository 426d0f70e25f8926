//! Attention (opset 23–25): scaled dot-product attention with GQA, masks, causal and sliding-window
//! restrictions, softcap, KV cache (past/present), nonpad_kv_seqlen and the qk_matmul_output debug output.

use kiln_tensor::{DType, Dim, Shape, Tensor, TensorData, Value, ValueType};

use super::{dim_add, dim_div, dim_mul, heads_attr, round_all, store, Prec, Work};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let q_heads = heads_attr(n.attr_int("q_num_heads")?, "q_num_heads", "Attention")?;
    let kv_heads = heads_attr(n.attr_int("kv_num_heads")?, "kv_num_heads", "Attention")?;
    let scale = n.attr_float("scale")?;
    let softcap = n.attr_float_or("softcap", 0.0)?;
    let mode = n.attr_int_or("qk_matmul_output_mode", 0)?;
    ensure!((0..=3).contains(&mode), "Attention: qk_matmul_output_mode must be 0..3, got {mode}");
    let softmax_prec = match n.attr_int("softmax_precision")? {
        None => None,
        Some(code) => {
            let p = i32::try_from(code).ok().and_then(DType::from_onnx).and_then(Prec::of);
            Some(p.ok_or_else(|| {
                OpError(format!("Attention: softmax_precision {code} is not a float type"))
            })?)
        }
    };
    let left = n.attr_int_or("left_window_size", -1)?;
    let right = n.attr_int_or("right_window_size", -1)?;
    ensure!(left >= -1, "Attention: left_window_size must be -1 or nonnegative, got {left}");
    ensure!(right >= -1, "Attention: right_window_size must be -1 or nonnegative, got {right}");
    Ok(Box::new(AttentionOp {
        q_heads,
        kv_heads,
        scale,
        causal: n.attr_int_or("is_causal", 0)? != 0,
        softcap,
        mode,
        softmax_prec,
        left,
        right,
        num_outputs: n.num_outputs.clamp(1, 4),
        num_inputs: n.num_inputs,
    }))
}

struct AttentionOp {
    q_heads: Option<usize>,
    kv_heads: Option<usize>,
    scale: Option<f32>,
    causal: bool,
    softcap: f32,
    mode: i64,
    softmax_prec: Option<Prec>,
    left: i64,
    right: i64,
    num_outputs: usize,
    num_inputs: usize,
}

/// Element offsets of a logical (batch, head, seq, dim) tensor stored as 4-D (B, H, S, D) or as
/// 3-D (B, S, H·D).
#[derive(Clone, Copy, Debug)]
struct Layout {
    heads: usize,
    seq: usize,
    dim: usize,
    sb: usize,
    sh: usize,
    ss: usize,
}

impl Layout {
    fn four(h: usize, s: usize, d: usize) -> Layout {
        Layout { heads: h, seq: s, dim: d, sb: h * s * d, sh: s * d, ss: d }
    }
    fn three(h: usize, s: usize, d: usize) -> Layout {
        Layout { heads: h, seq: s, dim: d, sb: s * h * d, sh: d, ss: h * d }
    }
    fn base(&self, b: usize, h: usize) -> usize {
        b * self.sb + h * self.sh
    }
}

/// Splits a Q/K/V tensor into its batch and per-head layout.
fn layout_of(t: &Tensor, heads: Option<usize>, what: &str) -> OpResult<(usize, Layout)> {
    let s = t.shape();
    match s.len() {
        4 => Ok((s[0], Layout::four(s[1], s[2], s[3]))),
        3 => {
            let h = heads.ok_or_else(|| {
                OpError(format!("Attention: 3-D {what} needs the q_num_heads and kv_num_heads attributes"))
            })?;
            ensure!(
                s[2].is_multiple_of(h),
                "Attention: {what} hidden size {} is not divisible by its {} heads",
                s[2],
                h
            );
            Ok((s[0], Layout::three(h, s[1], s[2] / h)))
        }
        r => bail!("Attention: {what} must be 3-D or 4-D, got rank {r}"),
    }
}

/// `past` (B, H, P, D) followed by `cur` along the sequence axis, as a contiguous 4-D tensor.
fn concat_cache(past: Option<&Tensor>, cur: &Tensor, b: usize, lay: &Layout, what: &str) -> OpResult<Tensor> {
    let p = match past {
        Some(t) => {
            let s = t.shape();
            ensure!(
                s.len() == 4 && s[0] == b && s[1] == lay.heads && s[3] == lay.dim,
                "Attention: past_{what} has shape {s:?}, expected ({b}, {}, past_len, {})",
                lay.heads,
                lay.dim
            );
            ensure!(
                t.dtype() == cur.dtype(),
                "Attention: past_{what} is {} but {what} is {}",
                t.dtype(),
                cur.dtype()
            );
            s[2]
        }
        None => 0,
    };
    let total = p + lay.seq;
    let mut data = TensorData::with_capacity(cur.dtype(), b * lay.heads * total * lay.dim);
    for bi in 0..b {
        for h in 0..lay.heads {
            if let Some(t) = past {
                let start = (bi * lay.heads + h) * p * lay.dim;
                data.extend_from(t.data(), start..start + p * lay.dim);
            }
            let base = lay.base(bi, h);
            if lay.ss == lay.dim {
                data.extend_from(cur.data(), base..base + lay.seq * lay.dim);
            } else {
                for s in 0..lay.seq {
                    let o = base + s * lay.ss;
                    data.extend_from(cur.data(), o..o + lay.dim);
                }
            }
        }
    }
    Ok(Tensor::new(vec![b, lay.heads, total, lay.dim], data)?)
}

/// The attention mask as working values broadcast against (B, Hq, Sq, ·): 4 strides for the
/// leading axes and the unpadded key length.
struct Mask<W> {
    vals: Vec<W>,
    strides: [usize; 3],
    kv: usize,
}

impl AttentionOp {
    fn mask<W: Work>(&self, t: &Tensor, b: usize, hq: usize, sq: usize, total: usize) -> OpResult<Mask<W>> {
        let s = t.shape();
        ensure!(
            (1..=4).contains(&s.len()),
            "Attention: attn_mask must have rank 1 to 4, got shape {s:?}"
        );
        let kv = s[s.len() - 1];
        ensure!(
            kv <= total,
            "Attention: attn_mask has {kv} key positions but there are only {total} keys"
        );
        let target = [b, hq, sq];
        let mut strides = [0usize; 3];
        let mut stride = kv;
        // Leading mask axes, right-aligned against (B, Hq, Sq).
        let lead = &s[..s.len() - 1];
        for (k, &d) in lead.iter().enumerate().rev() {
            let axis = 3 - (lead.len() - k);
            ensure!(
                d == 1 || d == target[axis],
                "Attention: attn_mask shape {s:?} does not broadcast to ({b}, {hq}, {sq}, {total})"
            );
            strides[axis] = if d == 1 { 0 } else { stride };
            stride *= d;
        }
        let vals: Vec<W> = match t.data() {
            TensorData::Bool(v) => v.iter().map(|&x| if x { W::ZERO } else { W::NEG_INF }).collect(),
            _ if t.dtype().is_float() => W::load(t)?.into_owned(),
            _ => bail!("Attention: attn_mask must be bool or float, got {}", t.dtype()),
        };
        Ok(Mask { vals, strides, kv })
    }
}

impl Op for AttentionOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let q = inputs.tensor(0)?;
        let k = inputs.tensor(1)?;
        let v = inputs.tensor(2)?;
        let mask = inputs.opt_tensor(3)?;
        let past_k = inputs.opt_tensor(4)?;
        let past_v = inputs.opt_tensor(5)?;
        let nonpad = inputs.opt_tensor(6)?;
        for (t, name) in [(q, "Q"), (k, "K"), (v, "V")] {
            super::ensure_float(t, name, "Attention")?;
        }
        ensure!(
            q.rank() == k.rank() && q.rank() == v.rank(),
            "Attention: Q, K and V must have the same rank, got {}, {} and {}",
            q.rank(),
            k.rank(),
            v.rank()
        );
        ensure!(k.dtype() == q.dtype(), "Attention: K is {} but Q is {}", k.dtype(), q.dtype());
        ensure!(past_k.is_some() == past_v.is_some(), "Attention: past_key and past_value must be given together");
        ensure!(
            !(nonpad.is_some() && past_k.is_some()),
            "Attention: nonpad_kv_seqlen cannot be combined with past_key/past_value"
        );
        if q.rank() == 4 {
            for (attr, t, name) in [(self.q_heads, q, "q_num_heads"), (self.kv_heads, k, "kv_num_heads")] {
                if let Some(h) = attr {
                    ensure!(
                        h == t.shape()[1],
                        "Attention: {name} is {h} but the 4-D input has {} heads",
                        t.shape()[1]
                    );
                }
            }
        }
        let (b, ql) = layout_of(q, self.q_heads, "Q")?;
        let (bk, kl) = layout_of(k, self.kv_heads, "K")?;
        let (bv, vl) = layout_of(v, self.kv_heads, "V")?;
        ensure!(
            bk == b && bv == b,
            "Attention: batch sizes differ: Q {b}, K {bk}, V {bv}"
        );
        ensure!(
            kl.dim == ql.dim,
            "Attention: Q head size {} differs from K head size {}",
            ql.dim,
            kl.dim
        );
        ensure!(
            kl.heads == vl.heads && kl.seq == vl.seq,
            "Attention: K has {} heads × {} positions but V has {} × {}",
            kl.heads,
            kl.seq,
            vl.heads,
            vl.seq
        );
        ensure!(
            kl.heads > 0 && ql.heads % kl.heads == 0,
            "Attention: q heads ({}) must be a multiple of kv heads ({})",
            ql.heads,
            kl.heads
        );
        let nonpad = match nonpad {
            None => None,
            Some(t) => {
                let vals = t.to_i64_vec()?;
                ensure!(
                    vals.len() == b,
                    "Attention: nonpad_kv_seqlen must have one entry per batch ({b}), got shape {:?}",
                    t.shape()
                );
                Some(vals)
            }
        };
        // Present caches (also the keys/values attended to when a past is given).
        let want_present = self.num_outputs > 1 || past_k.is_some();
        let present = if want_present {
            Some((concat_cache(past_k, k, b, &kl, "key")?, concat_cache(past_v, v, b, &vl, "value")?))
        } else {
            None
        };
        let wide = q.dtype() == DType::F64 || self.softmax_prec == Some(Prec::F64);
        let (y, qk) = if wide {
            self.compute::<f64>(q, k, v, mask, past_k, present.as_ref(), nonpad.as_deref(), b, ql, kl, vl)?
        } else {
            self.compute::<f32>(q, k, v, mask, past_k, present.as_ref(), nonpad.as_deref(), b, ql, kl, vl)?
        };
        let mut out = vec![Value::Tensor(y)];
        if self.num_outputs > 1 {
            let (pk, pv) = present.ok_or_else(|| OpError::new("Attention: present cache missing"))?;
            out.push(Value::Tensor(pk));
            out.push(Value::Tensor(pv));
        }
        if self.num_outputs > 3 {
            out.truncate(3);
            out.push(Value::Tensor(qk.ok_or_else(|| OpError::new("Attention: qk output missing"))?));
        }
        Ok(out)
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let get = |i: usize| inputs.get(i).copied().flatten();
        let (qdt, qs) = split(get(0)?)?;
        let (_, ks) = split(get(1)?)?;
        let (vdt, vs) = split(get(2)?)?;
        let rank = qs.as_ref()?.rank();
        let (qs, ks, vs) = (qs?, ks?, vs?);
        if ks.rank() != rank || vs.rank() != rank {
            return None;
        }
        // (B, Hq, Sq, Hkv, Skv, Dk, Dv) as dims.
        let (bdim, hq, sq, hkv, skv, dk, dv) = match rank {
            4 => (
                qs.0[0].clone(),
                qs.0[1].clone(),
                qs.0[2].clone(),
                ks.0[1].clone(),
                ks.0[2].clone(),
                ks.0[3].clone(),
                vs.0[3].clone(),
            ),
            3 => {
                let (nq, nkv) = (self.q_heads?, self.kv_heads?);
                (
                    qs.0[0].clone(),
                    Dim::Fixed(nq),
                    qs.0[1].clone(),
                    Dim::Fixed(nkv),
                    ks.0[1].clone(),
                    dim_div(&ks.0[2], nkv),
                    dim_div(&vs.0[2], nkv),
                )
            }
            _ => return None,
        };
        let total = match get(4).and_then(split) {
            Some((_, Some(p))) if p.rank() == 4 => dim_add(&p.0[2], &skv),
            None if self.num_inputs <= 4 => skv.clone(),
            _ => Dim::unknown(),
        };
        let y_shape = if rank == 4 {
            Shape(vec![bdim.clone(), hq.clone(), sq.clone(), dv.clone()])
        } else {
            Shape(vec![bdim.clone(), sq.clone(), dim_mul(&hq, &dv)])
        };
        let mut out = vec![ValueType::Tensor { dtype: qdt, shape: Some(y_shape) }];
        if self.num_outputs > 1 {
            out.push(ValueType::Tensor {
                dtype: qdt,
                shape: Some(Shape(vec![bdim.clone(), hkv.clone(), total.clone(), dk])),
            });
            out.push(ValueType::Tensor {
                dtype: vdt,
                shape: Some(Shape(vec![bdim.clone(), hkv, total.clone(), dv])),
            });
        }
        if self.num_outputs > 3 {
            out.push(ValueType::Tensor { dtype: qdt, shape: Some(Shape(vec![bdim, hq, sq, total])) });
        }
        Some(out)
    }
}

fn split(t: &ValueType) -> Option<(DType, Option<Shape>)> {
    match t {
        ValueType::Tensor { dtype, shape } => Some((*dtype, shape.clone())),
        _ => None,
    }
}

impl AttentionOp {
    #[allow(clippy::too_many_arguments)]
    fn compute<W: Work>(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        past_k: Option<&Tensor>,
        present: Option<&(Tensor, Tensor)>,
        nonpad: Option<&[i64]>,
        b: usize,
        ql: Layout,
        kl: Layout,
        vl: Layout,
    ) -> OpResult<(Tensor, Option<Tensor>)> {
        let t_dtype = q.dtype();
        let tp = Prec::of(t_dtype).ok_or_else(|| OpError::new("Attention: Q must be float"))?;
        let rt = W::rounder(tp);
        let sp = self.softmax_prec.unwrap_or(tp);
        let rp = W::rounder(sp);
        let seq_round = sp == Prec::BF16;

        // Keys and values attended to: the present caches when a past is given.
        let past_len = past_k.map(|t| t.shape()[2]).unwrap_or(0);
        let (k_src, kl, v_src, vl) = match (past_k, present) {
            (Some(_), Some((pk, pv))) => {
                let total = past_len + kl.seq;
                (pk, Layout::four(kl.heads, total, kl.dim), pv, Layout::four(vl.heads, total, vl.dim))
            }
            _ => (k, kl, v, vl),
        };
        let (hq, sq, d) = (ql.heads, ql.seq, ql.dim);
        let (hkv, skv, dv) = (kl.heads, kl.seq, vl.dim);
        let group = hq / hkv;

        // Q and K scaled by sqrt(scale) each, rounded to the storage type.
        let scale = match self.scale {
            Some(s) => s as f64,
            None => 1.0 / (d as f64).sqrt(),
        };
        let mut sq_scale = W::from_f64(scale.sqrt());
        if let Some(r) = rt {
            sq_scale = r(sq_scale);
        }
        let scaled = |t: &Tensor| -> OpResult<Vec<W>> {
            let mut x: Vec<W> = W::load(t)?.iter().map(|&x| x * sq_scale).collect();
            round_all(&mut x, rt);
            Ok(x)
        };
        let qs = scaled(q)?;
        let ks = scaled(k_src)?;
        let vs = W::load(v_src)?;

        let mask = match mask {
            Some(m) => Some(self.mask::<W>(m, b, hq, sq, skv)?),
            None => None,
        };
        let window = self.left >= 0 || self.right >= 0;
        let has_bias = mask.is_some() || self.causal || window || nonpad.is_some();

        let y_lay = if q.rank() == 4 { Layout::four(hq, sq, dv) } else { Layout::three(hq, sq, dv) };
        let y_len = b * hq * sq * dv;
        let mut y = vec![W::ZERO; y_len];
        let mut qk_out = if self.num_outputs > 3 { Some(vec![W::ZERO; b * hq * sq * skv]) } else { None };

        let mut scores = vec![W::ZERO; sq * skv];
        let mut bias = vec![W::ZERO; if has_bias { sq * skv } else { 0 }];
        let mut masked_rows = vec![false; sq];
        let softcap = W::from_f64(self.softcap as f64);

        for bi in 0..b {
            let offset: i64 = match nonpad {
                Some(np) if past_k.is_none() => np[bi].saturating_sub(sq as i64),
                _ => past_len as i64,
            };
            for h in 0..hq {
                let hk = h / group;
                let qb = ql.base(bi, h);
                let kb = kl.base(bi, hk);
                let vb = vl.base(bi, hk);
                // scores = Qs · Ksᵀ
                W::gemm(
                    sq, d, skv,
                    tail(&qs, qb), ql.ss as isize, 1,
                    tail(&ks, kb), 1, kl.ss as isize,
                    &mut scores, skv as isize, 1,
                );
                round_all(&mut scores, rt);
                if self.softcap > 0.0 {
                    for x in scores.iter_mut() {
                        let mut t = *x / softcap;
                        if let Some(r) = rt {
                            t = r(t);
                        }
                        t = t.tanh();
                        if let Some(r) = rt {
                            t = r(t);
                        }
                        t = t * softcap;
                        if let Some(r) = rt {
                            t = r(t);
                        }
                        *x = t;
                    }
                }
                let qk_base = (bi * hq + h) * sq * skv;
                if let (Some(out), 0 | 1) = (qk_out.as_mut(), self.mode) {
                    out[qk_base..qk_base + sq * skv].copy_from_slice(&scores);
                }
                if has_bias {
                    self.fill_bias(&mut bias, mask.as_ref(), bi, h, sq, skv, offset, nonpad.map(|np| np[bi]));
                    for (x, &bv) in scores.iter_mut().zip(&bias) {
                        *x = *x + bv;
                    }
                    round_all(&mut scores, rt);
                    for (i, row) in bias.chunks(skv.max(1)).enumerate().take(sq) {
                        masked_rows[i] = row.iter().all(|&x| x == W::NEG_INF);
                    }
                }
                if let (Some(out), 2) = (qk_out.as_mut(), self.mode) {
                    out[qk_base..qk_base + sq * skv].copy_from_slice(&scores);
                }
                if skv > 0 {
                    for (i, row) in scores.chunks_mut(skv).enumerate() {
                        if has_bias && masked_rows[i] {
                            row.fill(W::ZERO);
                        } else {
                            softmax_row(row, rp, seq_round);
                        }
                    }
                }
                round_all(&mut scores, rt);
                if let (Some(out), 3) = (qk_out.as_mut(), self.mode) {
                    out[qk_base..qk_base + sq * skv].copy_from_slice(&scores);
                }
                // Y[b, h] = P · V
                let yb = y_lay.base(bi, h);
                W::gemm(
                    sq, skv, dv,
                    &scores, skv as isize, 1,
                    tail(&vs, vb), vl.ss as isize, 1,
                    y.get_mut(yb..).unwrap_or(&mut []), y_lay.ss as isize, 1,
                );
            }
        }
        let y_shape = if q.rank() == 4 { vec![b, hq, sq, dv] } else { vec![b, sq, hq * dv] };
        let y = store(y, t_dtype, y_shape)?;
        let qk = match qk_out {
            Some(v) => Some(store(v, t_dtype, vec![b, hq, sq, skv])?),
            None => None,
        };
        Ok((y, qk))
    }

    /// The additive bias of one (batch, head): mask (padded with -inf), causal frontier,
    /// sliding window and key padding, composed by addition as the reference does.
    #[allow(clippy::too_many_arguments)]
    fn fill_bias<W: Work>(
        &self,
        bias: &mut [W],
        mask: Option<&Mask<W>>,
        bi: usize,
        h: usize,
        sq: usize,
        skv: usize,
        offset: i64,
        nonpad: Option<i64>,
    ) {
        for i in 0..sq {
            let row = &mut bias[i * skv..(i + 1) * skv];
            match mask {
                Some(m) => {
                    let base = bi * m.strides[0] + h * m.strides[1] + i * m.strides[2];
                    row[..m.kv].copy_from_slice(&m.vals[base..base + m.kv]);
                    row[m.kv..].fill(W::NEG_INF);
                }
                None => row.fill(W::ZERO),
            }
            let p = (i as i64).saturating_add(offset);
            for (j, x) in row.iter_mut().enumerate() {
                let j = j as i64;
                if self.causal && j > p {
                    *x = *x + W::NEG_INF;
                }
                let diff = p.saturating_sub(j);
                let outside = (self.left >= 0 && diff > self.left)
                    || (self.right >= 0 && j.saturating_sub(p) > self.right);
                if outside {
                    *x = *x + W::NEG_INF;
                }
                if let Some(n) = nonpad {
                    if j >= n {
                        *x = *x + W::NEG_INF;
                    }
                }
            }
        }
    }
}

/// The slice from `off` on (empty when `off` is past the end, which only happens for empty
/// operands that the gemm does not read).
fn tail<W>(v: &[W], off: usize) -> &[W] {
    v.get(off..).unwrap_or(&[])
}

/// Softmax of one row, computed with rounding `rp` after each step; an all -inf row gives zeros
/// and NaNs propagate.
fn softmax_row<W: Work>(row: &mut [W], rp: Option<fn(W) -> W>, seq_round: bool) {
    round_all(row, rp);
    let mut max = W::NEG_INF;
    for &x in row.iter() {
        if x.is_nan() || max.is_nan() {
            max = if x.is_nan() { x } else { max };
        } else if x > max {
            max = x;
        }
    }
    let safe = if max == W::NEG_INF { W::ZERO } else { max };
    let mut sum = W::ZERO;
    for x in row.iter_mut() {
        let mut t = *x - safe;
        if let Some(r) = rp {
            t = r(t);
        }
        t = t.exp();
        if let Some(r) = rp {
            t = r(t);
        }
        *x = t;
        sum = sum + t;
        if seq_round {
            if let Some(r) = rp {
                sum = r(sum);
            }
        }
    }
    if let Some(r) = rp {
        sum = r(sum);
    }
    if sum == W::ZERO {
        sum = W::ONE;
    }
    for x in row.iter_mut() {
        *x = *x / sum;
    }
    round_all(row, rp);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(causal: bool) -> AttentionOp {
        AttentionOp {
            q_heads: None,
            kv_heads: None,
            scale: Some(1.0),
            causal,
            softcap: 0.0,
            mode: 0,
            softmax_prec: None,
            left: -1,
            right: -1,
            num_outputs: 1,
            num_inputs: 4,
        }
    }

    fn run(op: &AttentionOp, ins: Vec<Tensor>) -> Vec<f32> {
        let vals: Vec<Value> = ins.into_iter().map(Value::Tensor).collect();
        let refs: Vec<Option<&Value>> = vals.iter().map(Some).collect();
        let out = op.run(&Inputs::new(&refs)).unwrap();
        out[0].as_tensor().unwrap().as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn single_query_weights_values_by_softmax() {
        // q·k = [0, ln 3] → weights [1/4, 3/4]; values [4, 8] → 7.
        let q = Tensor::from_vec(vec![1, 1, 1, 1], vec![1f32]).unwrap();
        let k = Tensor::from_vec(vec![1, 1, 2, 1], vec![0f32, 3f32.ln()]).unwrap();
        let v = Tensor::from_vec(vec![1, 1, 2, 1], vec![4f32, 8.0]).unwrap();
        let y = run(&op(false), vec![q, k, v]);
        assert!((y[0] - 7.0).abs() < 1e-5, "{y:?}");
    }

    #[test]
    fn causal_first_query_sees_only_first_key() {
        let q = Tensor::from_vec(vec![1, 1, 2, 1], vec![1f32, 1.0]).unwrap();
        let k = Tensor::from_vec(vec![1, 1, 2, 1], vec![0f32, 0.0]).unwrap();
        let v = Tensor::from_vec(vec![1, 1, 2, 1], vec![2f32, 6.0]).unwrap();
        let y = run(&op(true), vec![q, k, v]);
        // Row 0 attends key 0 only; row 1 averages both keys.
        assert!((y[0] - 2.0).abs() < 1e-6 && (y[1] - 4.0).abs() < 1e-6, "{y:?}");
    }

    #[test]
    fn fully_masked_row_is_zero() {
        let q = Tensor::from_vec(vec![1, 1, 1, 1], vec![1f32]).unwrap();
        let k = Tensor::from_vec(vec![1, 1, 2, 1], vec![0f32, 1.0]).unwrap();
        let v = Tensor::from_vec(vec![1, 1, 2, 1], vec![2f32, 6.0]).unwrap();
        let m = Tensor::from_vec(vec![1, 2], vec![false, false]).unwrap();
        let y = run(&op(false), vec![q, k, v, m]);
        assert_eq!(y, vec![0.0]);
    }
    #[test]
    fn gqa_shares_kv_heads_and_nonpad_masks_keys() {
        // Two query heads share one kv head; nonpad 1 hides key 1, so Y = V[0] for both heads.
        let q = Tensor::from_vec(vec![1, 2, 1, 1], vec![1f32, -1.0]).unwrap();
        let k = Tensor::from_vec(vec![1, 1, 2, 1], vec![0f32, 5.0]).unwrap();
        let v = Tensor::from_vec(vec![1, 1, 2, 1], vec![3f32, 9.0]).unwrap();
        let np = Tensor::from_vec(vec![1], vec![1i64]).unwrap();
        let vals = [Value::Tensor(q), Value::Tensor(k), Value::Tensor(v), Value::Tensor(np)];
        let ins = [Some(&vals[0]), Some(&vals[1]), Some(&vals[2]), None, None, None, Some(&vals[3])];
        let out = op(false).run(&Inputs::new(&ins)).unwrap();
        assert_eq!(out[0].as_tensor().unwrap().as_slice::<f32>().unwrap(), &[3.0, 3.0]);
    }

    #[test]
    fn empty_and_bad_inputs_do_not_panic() {
        let mut o = op(false);
        o.q_heads = Some(2);
        o.kv_heads = Some(2);
        let q = Tensor::from_vec(vec![1, 0, 4], Vec::<f32>::new()).unwrap();
        let k = Tensor::from_vec(vec![1, 0, 4], Vec::<f32>::new()).unwrap();
        let v = Tensor::from_vec(vec![1, 0, 4], Vec::<f32>::new()).unwrap();
        let y = run(&o, vec![q.clone(), k.clone(), v.clone()]);
        assert!(y.is_empty());
        let q1 = Tensor::from_vec(vec![1, 1, 4], vec![1f32; 4]).unwrap();
        let y = run(&o, vec![q1.clone(), k, v]);
        assert_eq!(y, vec![0.0; 4]);
        // A mask that does not broadcast is an error.
        let k1 = Tensor::from_vec(vec![1, 1, 4], vec![1f32; 4]).unwrap();
        let m = Tensor::from_vec(vec![3, 1], vec![true; 3]).unwrap();
        let vals: Vec<Value> = vec![q1.clone(), k1.clone(), k1, m].into_iter().map(Value::Tensor).collect();
        let refs: Vec<Option<&Value>> = vals.iter().map(Some).collect();
        assert!(o.run(&Inputs::new(&refs)).is_err());
        // Hidden size not divisible by the head count.
        o.q_heads = Some(3);
        let vals: Vec<Value> = vec![q1.clone(), q1.clone(), q1].into_iter().map(Value::Tensor).collect();
        let refs: Vec<Option<&Value>> = vals.iter().map(Some).collect();
        assert!(o.run(&Inputs::new(&refs)).is_err());
    }
}
