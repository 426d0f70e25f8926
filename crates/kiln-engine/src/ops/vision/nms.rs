//! NonMaxSuppression: greedy per-batch, per-class box selection by score and IoU.

use kiln_tensor::{DType, Dim, Shape, Tensor, Value, ValueType};

use super::{real_dispatch, Real};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::ensure;

pub(super) struct NmsOp {
    center_point_box: bool,
}

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let c = n.attr_int_or("center_point_box", 0)?;
    ensure!(c == 0 || c == 1, "NonMaxSuppression center_point_box must be 0 or 1, got {c}");
    Ok(Box::new(NmsOp { center_point_box: c == 1 }))
}

/// A box as (y_min, x_min, y_max, x_max).
#[derive(Clone, Copy)]
struct BoxC<R> {
    y0: R,
    x0: R,
    y1: R,
    x1: R,
}

fn ordered<R: Real>(a: R, b: R) -> (R, R) {
    if a >= b {
        (b, a)
    } else {
        (a, b)
    }
}

fn corners<R: Real>(b: &[R], center: bool) -> BoxC<R> {
    if center {
        let two = R::c(2.0);
        let (hw, hh) = (b[2] / two, b[3] / two);
        BoxC { y0: b[1] - hh, x0: b[0] - hw, y1: b[1] + hh, x1: b[0] + hw }
    } else {
        let (y0, y1) = ordered(b[0], b[2]);
        let (x0, x1) = ordered(b[1], b[3]);
        BoxC { y0, x0, y1, x1 }
    }
}

fn max<R: Real>(a: R, b: R) -> R {
    if a > b {
        a
    } else {
        b
    }
}
fn min<R: Real>(a: R, b: R) -> R {
    if a < b {
        a
    } else {
        b
    }
}

/// True when the IoU of `a` and `b` exceeds `thr`.
fn suppresses<R: Real>(a: &BoxC<R>, b: &BoxC<R>, thr: R) -> bool {
    let ix0 = max(a.x0, b.x0);
    let ix1 = min(a.x1, b.x1);
    if ix1 <= ix0 {
        return false;
    }
    let iy0 = max(a.y0, b.y0);
    let iy1 = min(a.y1, b.y1);
    if iy1 <= iy0 {
        return false;
    }
    let zero = R::c(0.0);
    let inter = (ix1 - ix0) * (iy1 - iy0);
    if !(inter > zero) {
        return false;
    }
    let area_a = (a.x1 - a.x0) * (a.y1 - a.y0);
    let area_b = (b.x1 - b.x0) * (b.y1 - b.y0);
    let union = area_a + area_b - inter;
    if !(area_a > zero) || !(area_b > zero) || !(union > zero) {
        return false;
    }
    inter / union > thr
}

struct Params {
    max_out: usize,
    iou: f64,
    score: Option<f64>,
}

fn nms<R: Real>(center: bool, boxes: &Tensor, scores: &Tensor, p: &Params) -> OpResult<Vec<i64>> {
    let bs = boxes.shape();
    let ss = scores.shape();
    ensure!(
        bs.len() == 3 && bs[2] == 4,
        "NonMaxSuppression boxes must have shape [batches, boxes, 4], got {bs:?}"
    );
    ensure!(
        ss.len() == 3,
        "NonMaxSuppression scores must have shape [batches, classes, boxes], got {ss:?}"
    );
    ensure!(
        ss[0] == bs[0] && ss[2] == bs[1],
        "NonMaxSuppression boxes {bs:?} and scores {ss:?} disagree on batches or boxes"
    );
    let (nb, nc, n) = (ss[0], ss[1], ss[2]);
    let mut out = Vec::new();
    if p.max_out == 0 || n == 0 {
        return Ok(out);
    }
    let bv = R::read(boxes)?;
    let sv = R::read(scores)?;
    let thr = R::c(p.iou);
    let score_thr = p.score.map(R::c);
    let mut cand: Vec<(R, usize)> = Vec::with_capacity(n);
    let mut sel: Vec<usize> = Vec::new();
    let mut bx: Vec<BoxC<R>> = Vec::with_capacity(n);
    for b in 0..nb {
        bx.clear();
        bx.extend((0..n).map(|i| corners(&bv[(b * n + i) * 4..(b * n + i + 1) * 4], center)));
        for c in 0..nc {
            let s = &sv[(b * nc + c) * n..(b * nc + c + 1) * n];
            cand.clear();
            for (i, &v) in s.iter().enumerate() {
                if score_thr.map_or(true, |t| v > t) {
                    cand.push((v, i));
                }
            }
            // Highest score first; equal scores keep the lower box index first.
            cand.sort_by(|a, b| b.0.f64().total_cmp(&a.0.f64()).then(a.1.cmp(&b.1)));
            sel.clear();
            for &(_, i) in &cand {
                if sel.len() >= p.max_out {
                    break;
                }
                if sel.iter().all(|&j| !suppresses(&bx[i], &bx[j], thr)) {
                    sel.push(i);
                    out.extend_from_slice(&[b as i64, c as i64, i as i64]);
                }
            }
        }
    }
    Ok(out)
}

fn scalar_f64(t: Option<&Tensor>, what: &str) -> OpResult<Option<f64>> {
    match t {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => {
            ensure!(t.len() == 1, "NonMaxSuppression {what} must hold one value, got shape {:?}", t.shape());
            Ok(Some(t.to_f64_vec().map_err(|e| OpError(format!("NonMaxSuppression {what}: {e}")))?[0]))
        }
    }
}

impl Op for NmsOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let boxes = inputs.tensor(0)?;
        let scores = inputs.tensor(1)?;
        let max_out = match inputs.opt_tensor(2)? {
            Some(t) if !t.is_empty() => {
                ensure!(t.len() == 1, "NonMaxSuppression max_output_boxes_per_class must hold one value");
                let v = t.to_i64_vec().map_err(|e| OpError(format!("max_output_boxes_per_class: {e}")))?[0];
                v.max(0) as u64 as usize
            }
            _ => 0,
        };
        let iou = scalar_f64(inputs.opt_tensor(3)?, "iou_threshold")?.unwrap_or(0.0);
        ensure!(
            (0.0..=1.0).contains(&iou),
            "NonMaxSuppression iou_threshold must be in [0, 1], got {iou}"
        );
        let score = scalar_f64(inputs.opt_tensor(4)?, "score_threshold")?;
        let p = Params { max_out, iou, score };
        let sel = real_dispatch!(boxes, "NonMaxSuppression", nms(self.center_point_box, boxes, scores, &p))?;
        let rows = sel.len() / 3;
        Ok(vec![Value::Tensor(Tensor::from_vec(vec![rows, 3], sel)?)])
    }
    fn infer(&self, _: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![ValueType::tensor(DType::I64, Some(Shape(vec![Dim::unknown(), Dim::Fixed(3)])))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(boxes: Vec<f32>, nb: usize, scores: Vec<f32>, nc: usize, p: Params) -> Vec<i64> {
        let n = boxes.len() / 4 / nb;
        let b = Tensor::from_vec(vec![nb, n, 4], boxes).unwrap();
        let s = Tensor::from_vec(vec![nb, nc, n], scores).unwrap();
        nms::<f32>(false, &b, &s, &p).unwrap()
    }

    #[test]
    fn suppresses_overlapping_keeps_disjoint() {
        // Box 0 and 1 overlap with IoU 0.81 (9x9 inside 10x10 shifted); box 2 is far away.
        let boxes = vec![0., 0., 10., 10., 0., 0., 9., 9., 20., 20., 30., 30.];
        let scores = vec![0.9, 0.95, 0.5];
        let out = run(boxes, 1, scores, 1, Params { max_out: 10, iou: 0.5, score: None });
        assert_eq!(out, vec![0, 0, 1, 0, 0, 2]);
    }

    #[test]
    fn score_threshold_and_limit() {
        let boxes = vec![0., 0., 1., 1., 2., 2., 3., 3., 4., 4., 5., 5.];
        let scores = vec![0.1, 0.7, 0.8];
        let out = run(boxes.clone(), 1, scores.clone(), 1, Params { max_out: 1, iou: 0.5, score: None });
        assert_eq!(out, vec![0, 0, 2]);
        let out = run(boxes, 1, scores, 1, Params { max_out: 5, iou: 0.5, score: Some(0.2) });
        assert_eq!(out, vec![0, 0, 2, 0, 0, 1]);
    }

    #[test]
    fn equal_scores_prefer_lower_index() {
        let boxes = vec![0., 0., 1., 1., 0., 0., 1., 1.];
        let out = run(boxes, 1, vec![0.5, 0.5], 1, Params { max_out: 5, iou: 0.5, score: None });
        assert_eq!(out, vec![0, 0, 0]);
    }
}
