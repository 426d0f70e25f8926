//! Region-of-interest pooling: RoiAlign (avg/max, half_pixel/output_half_pixel) and MaxRoiPool.

use kiln_tensor::{Dim, Shape, Tensor, Value, ValueType};

use super::{numel, real_dispatch, Real};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

pub(super) struct RoiAlignOp {
    max: bool,
    out_h: usize,
    out_w: usize,
    sampling_ratio: i64,
    spatial_scale: f32,
    half_pixel: bool,
}

pub(super) fn build_roi_align(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let max = match n.attr_string_or("mode", "avg")?.as_str() {
        "avg" => false,
        "max" => true,
        other => bail!("RoiAlign mode '{other}' is not supported (avg, max)"),
    };
    // Opset 10 had no attribute and behaved like output_half_pixel.
    let default_ctm = if n.opset >= 16 { "half_pixel" } else { "output_half_pixel" };
    let half_pixel = match n.attr_string_or("coordinate_transformation_mode", default_ctm)?.as_str() {
        "half_pixel" => true,
        "output_half_pixel" => false,
        other => bail!("RoiAlign coordinate_transformation_mode '{other}' is not supported"),
    };
    let out_h = n.attr_int_or("output_height", 1)?;
    let out_w = n.attr_int_or("output_width", 1)?;
    ensure!(out_h > 0 && out_w > 0, "RoiAlign output_height/output_width must be positive");
    let sampling_ratio = n.attr_int_or("sampling_ratio", 0)?;
    ensure!(sampling_ratio >= 0, "RoiAlign sampling_ratio must be non-negative, got {sampling_ratio}");
    Ok(Box::new(RoiAlignOp {
        max,
        out_h: out_h as usize,
        out_w: out_w as usize,
        sampling_ratio,
        spatial_scale: n.attr_float_or("spatial_scale", 1.0)?,
        half_pixel,
    }))
}

/// Bilinear sample of one point: four flat positions and weights.
#[derive(Clone, Copy, Default)]
struct Sample<R> {
    pos: [usize; 4],
    w: [R; 4],
}

fn check_batch_indices(bi: &[i64], n: usize) -> OpResult<()> {
    for &b in bi {
        ensure!(b >= 0 && (b as usize) < n, "batch index {b} is out of range for batch size {n}");
    }
    Ok(())
}

fn roi_align<R: Real>(op: &RoiAlignOp, x: &Tensor, rois: &Tensor, bi: &[i64]) -> OpResult<Tensor> {
    let xs = x.shape();
    ensure!(xs.len() == 4, "RoiAlign X must be 4-D, got shape {:?}", xs);
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let rs = rois.shape();
    ensure!(rs.len() == 2 && rs[1] == 4, "RoiAlign rois must have shape [num_rois, 4], got {rs:?}");
    let num_rois = rs[0];
    ensure!(
        bi.len() == num_rois,
        "RoiAlign batch_indices has {} entries but there are {num_rois} rois",
        bi.len()
    );
    check_batch_indices(bi, n)?;
    let (ph_n, pw_n) = (op.out_h, op.out_w);
    let out_shape = vec![num_rois, c, ph_n, pw_n];
    let total = numel(&out_shape)?;
    if total == 0 {
        return R::write(x.dtype(), out_shape, Vec::new());
    }
    let data = R::read(x)?;
    let rv = R::read(rois)?;
    let scale = R::c(op.spatial_scale as f64);
    let offset = R::c(if op.half_pixel { 0.5 } else { 0.0 });
    let one = R::c(1.0);
    let zero = R::c(0.0);
    let (hf, wf) = (R::c(h as f64), R::c(w as f64));
    let plane = h * w;
    let mut out = vec![R::default(); total];
    let mut pre: Vec<Sample<R>> = Vec::new();
    for r in 0..num_rois {
        let roi = &rv[r * 4..r * 4 + 4];
        let start_w = roi[0] * scale - offset;
        let start_h = roi[1] * scale - offset;
        let end_w = roi[2] * scale - offset;
        let end_h = roi[3] * scale - offset;
        let mut roi_w = end_w - start_w;
        let mut roi_h = end_h - start_h;
        if !op.half_pixel {
            if !(roi_w > one) {
                roi_w = one;
            }
            if !(roi_h > one) {
                roi_h = one;
            }
        }
        let bin_h = roi_h / R::c(ph_n as f64);
        let bin_w = roi_w / R::c(pw_n as f64);
        let grid = |v: R| -> OpResult<usize> {
            if op.sampling_ratio > 0 {
                return Ok(op.sampling_ratio as usize);
            }
            let g = v.ceil().f64();
            if g.is_nan() || g <= 0.0 {
                Ok(0)
            } else if g > 1e6 {
                Err(OpError(format!("RoiAlign roi is too large to sample ({g} points per bin)")))
            } else {
                Ok(g as usize)
            }
        };
        let grid_h = grid(bin_h)?;
        let grid_w = grid(bin_w)?;
        let count = (grid_h * grid_w).max(1);
        let n_samples = numel(&[ph_n, pw_n, grid_h, grid_w])?;
        ensure!(
            n_samples <= 1 << 26,
            "RoiAlign needs {n_samples} sampling points for one roi; too many (sampling_ratio {})",
            op.sampling_ratio
        );
        pre.clear();
        pre.reserve(n_samples);
        for ph in 0..ph_n {
            for pw in 0..pw_n {
                for iy in 0..grid_h {
                    let yy = start_h
                        + R::c(ph as f64) * bin_h
                        + R::c(iy as f64 + 0.5) * bin_h / R::c(grid_h as f64);
                    for ix in 0..grid_w {
                        let xx = start_w
                            + R::c(pw as f64) * bin_w
                            + R::c(ix as f64 + 0.5) * bin_w / R::c(grid_w as f64);
                        let (mut y, mut xq) = (yy, xx);
                        if y < -one || y > hf || xq < -one || xq > wf || h == 0 || w == 0 {
                            pre.push(Sample::default());
                            continue;
                        }
                        if y < zero {
                            y = zero;
                        }
                        if xq < zero {
                            xq = zero;
                        }
                        let mut y_low = y.f64() as usize;
                        let mut x_low = xq.f64() as usize;
                        let y_high;
                        let x_high;
                        if y_low >= h - 1 {
                            y_low = h - 1;
                            y_high = h - 1;
                            y = R::c(y_low as f64);
                        } else {
                            y_high = y_low + 1;
                        }
                        if x_low >= w - 1 {
                            x_low = w - 1;
                            x_high = w - 1;
                            xq = R::c(x_low as f64);
                        } else {
                            x_high = x_low + 1;
                        }
                        let ly = y - R::c(y_low as f64);
                        let lx = xq - R::c(x_low as f64);
                        let hy = one - ly;
                        let hx = one - lx;
                        pre.push(Sample {
                            pos: [
                                y_low * w + x_low,
                                y_low * w + x_high,
                                y_high * w + x_low,
                                y_high * w + x_high,
                            ],
                            w: [hy * hx, hy * lx, ly * hx, ly * lx],
                        });
                    }
                }
            }
        }
        let per_bin = grid_h * grid_w;
        let batch = bi[r] as usize;
        for ch in 0..c {
            let src = &data[(batch * c + ch) * plane..(batch * c + ch + 1) * plane];
            let dst = &mut out[(r * c + ch) * ph_n * pw_n..(r * c + ch + 1) * ph_n * pw_n];
            for (b, o) in dst.iter_mut().enumerate() {
                let samples = &pre[b * per_bin..(b + 1) * per_bin];
                if op.max {
                    let mut acc: Option<R> = None;
                    for s in samples {
                        let mut v = s.w[0] * src[s.pos[0]];
                        for k in 1..4 {
                            let t = s.w[k] * src[s.pos[k]];
                            if t > v {
                                v = t;
                            }
                        }
                        acc = Some(match acc {
                            Some(a) if a >= v => a,
                            _ => v,
                        });
                    }
                    *o = acc.unwrap_or(zero);
                } else {
                    let mut acc = zero;
                    for s in samples {
                        acc += s.w[0] * src[s.pos[0]]
                            + s.w[1] * src[s.pos[1]]
                            + s.w[2] * src[s.pos[2]]
                            + s.w[3] * src[s.pos[3]];
                    }
                    *o = acc / R::c(count as f64);
                }
            }
        }
    }
    R::write(x.dtype(), out_shape, out)
}

impl Op for RoiAlignOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let rois = inputs.tensor(1)?;
        let bi = inputs.tensor(2)?.to_i64_vec().map_err(|e| OpError(format!("RoiAlign batch_indices: {e}")))?;
        let y = real_dispatch!(x, "RoiAlign", roi_align(self, x, rois, &bi))?;
        Ok(vec![Value::Tensor(y)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let xt = inputs.first().copied().flatten()?;
        let dtype = xt.tensor_dtype()?;
        let c = match xt.tensor_shape() {
            Some(s) if s.rank() == 4 => s.0[1].clone(),
            Some(_) => return None,
            None => Dim::unknown(),
        };
        let r = match inputs.get(1).copied().flatten().and_then(|t| t.tensor_shape()) {
            Some(s) if s.rank() == 2 => s.0[0].clone(),
            Some(_) => return None,
            None => Dim::unknown(),
        };
        let shape = Shape(vec![r, c, Dim::Fixed(self.out_h), Dim::Fixed(self.out_w)]);
        Some(vec![ValueType::tensor(dtype, Some(shape))])
    }
}

pub(super) struct MaxRoiPoolOp {
    pooled_h: usize,
    pooled_w: usize,
    spatial_scale: f32,
}

pub(super) fn build_max_roi_pool(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let ps = n.attr_ints("pooled_shape")?.ok_or_else(|| OpError::new("MaxRoiPool needs pooled_shape"))?;
    ensure!(
        ps.len() == 2 && ps[0] > 0 && ps[1] > 0,
        "MaxRoiPool pooled_shape must be two positive ints, got {ps:?}"
    );
    Ok(Box::new(MaxRoiPoolOp {
        pooled_h: ps[0] as usize,
        pooled_w: ps[1] as usize,
        spatial_scale: n.attr_float_or("spatial_scale", 1.0)?,
    }))
}

fn max_roi_pool<R: Real>(op: &MaxRoiPoolOp, x: &Tensor, rois: &Tensor) -> OpResult<Tensor> {
    let xs = x.shape();
    ensure!(xs.len() == 4, "MaxRoiPool X must be 4-D, got shape {:?}", xs);
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let rs = rois.shape();
    ensure!(rs.len() == 2 && rs[1] == 5, "MaxRoiPool rois must have shape [num_rois, 5], got {rs:?}");
    let num_rois = rs[0];
    let (ph_n, pw_n) = (op.pooled_h, op.pooled_w);
    let out_shape = vec![num_rois, c, ph_n, pw_n];
    let total = numel(&out_shape)?;
    let data = R::read(x)?;
    let rv = R::read(rois)?;
    let scale = op.spatial_scale as f64;
    let mut out = vec![R::default(); total];
    let plane = h * w;
    for r in 0..num_rois {
        let roi: Vec<f64> = rv[r * 5..r * 5 + 5].iter().map(|v| v.f64()).collect();
        let b = roi[0];
        ensure!(
            b >= 0.0 && b < n as f64,
            "MaxRoiPool roi {r} has batch index {b}, out of range for batch size {n}"
        );
        let batch = b as usize;
        let sw = (roi[1] * scale).round() as i64;
        let sh = (roi[2] * scale).round() as i64;
        let ew = (roi[3] * scale).round() as i64;
        let eh = (roi[4] * scale).round() as i64;
        let roi_h = (eh.saturating_sub(sh).saturating_add(1)).max(1) as f64;
        let roi_w = (ew.saturating_sub(sw).saturating_add(1)).max(1) as f64;
        let bin_h = roi_h / ph_n as f64;
        let bin_w = roi_w / pw_n as f64;
        for ch in 0..c {
            let src = &data[(batch * c + ch) * plane..(batch * c + ch + 1) * plane];
            for ph in 0..ph_n {
                let hs = ((ph as f64 * bin_h).floor() as i64).saturating_add(sh).clamp(0, h as i64) as usize;
                let he = (((ph + 1) as f64 * bin_h).ceil() as i64).saturating_add(sh).clamp(0, h as i64) as usize;
                for pw in 0..pw_n {
                    let ws = ((pw as f64 * bin_w).floor() as i64).saturating_add(sw).clamp(0, w as i64) as usize;
                    let we =
                        (((pw + 1) as f64 * bin_w).ceil() as i64).saturating_add(sw).clamp(0, w as i64) as usize;
                    let mut best: Option<R> = None;
                    for yy in hs..he {
                        for xx in ws..we {
                            let v = src[yy * w + xx];
                            if best.map_or(true, |m| v > m) {
                                best = Some(v);
                            }
                        }
                    }
                    out[((r * c + ch) * ph_n + ph) * pw_n + pw] = best.unwrap_or_default();
                }
            }
        }
    }
    R::write(x.dtype(), out_shape, out)
}

impl Op for MaxRoiPoolOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let rois = inputs.tensor(1)?;
        let y = real_dispatch!(x, "MaxRoiPool", max_roi_pool(self, x, rois))?;
        Ok(vec![Value::Tensor(y)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let xt = inputs.first().copied().flatten()?;
        let dtype = xt.tensor_dtype()?;
        let c = match xt.tensor_shape() {
            Some(s) if s.rank() == 4 => s.0[1].clone(),
            Some(_) => return None,
            None => Dim::unknown(),
        };
        let r = match inputs.get(1).copied().flatten().and_then(|t| t.tensor_shape()) {
            Some(s) if s.rank() == 2 => s.0[0].clone(),
            Some(_) => return None,
            None => Dim::unknown(),
        };
        let shape = Shape(vec![r, c, Dim::Fixed(self.pooled_h), Dim::Fixed(self.pooled_w)]);
        Some(vec![ValueType::tensor(dtype, Some(shape))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roi_align_avg_constant_image() {
        // A constant image averages to the constant wherever the roi lies inside it.
        let x = Tensor::from_vec(vec![1, 1, 4, 4], vec![3f32; 16]).unwrap();
        let rois = Tensor::from_vec(vec![1, 4], vec![0.5f32, 0.5, 2.5, 2.5]).unwrap();
        let op = RoiAlignOp { max: false, out_h: 2, out_w: 2, sampling_ratio: 2, spatial_scale: 1.0, half_pixel: true };
        let y = roi_align::<f32>(&op, &x, &rois, &[0]).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        for v in y.as_slice::<f32>().unwrap() {
            assert!((v - 3.0).abs() < 1e-6);
        }
    }

    #[test]
    fn roi_align_avg_gradient() {
        // Image value = column index; one bin covering x in [0, 2] (half_pixel shifts by 0.5),
        // samples at x = 0.5 - 0.5 + 0.5 and 1.5: mean column = 1.0.
        let x = Tensor::from_vec(vec![1, 1, 2, 4], vec![0f32, 1., 2., 3., 0., 1., 2., 3.]).unwrap();
        let rois = Tensor::from_vec(vec![1, 4], vec![0.5f32, 0.5, 2.5, 1.5]).unwrap();
        let op = RoiAlignOp { max: false, out_h: 1, out_w: 1, sampling_ratio: 2, spatial_scale: 1.0, half_pixel: true };
        let y = roi_align::<f32>(&op, &x, &rois, &[0]).unwrap();
        assert!((y.as_slice::<f32>().unwrap()[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn roi_align_rejects_bad_batch_index() {
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![0f32; 4]).unwrap();
        let rois = Tensor::from_vec(vec![1, 4], vec![0f32, 0., 1., 1.]).unwrap();
        let op = RoiAlignOp { max: false, out_h: 1, out_w: 1, sampling_ratio: 0, spatial_scale: 1.0, half_pixel: false };
        assert!(roi_align::<f32>(&op, &x, &rois, &[1]).is_err());
    }

    #[test]
    fn max_roi_pool_basic() {
        // 1x1x3x3 image 0..9; roi covers whole image, pooled 1x1 -> max 8; pooled 2x2 windows
        // rows [0,2) x cols [0,2) -> 4, [0,2)x[1,3) -> 5, [1,3)x[0,2) -> 7, [1,3)x[1,3) -> 8.
        let x = Tensor::from_vec(vec![1, 1, 3, 3], (0..9).map(|v| v as f32).collect()).unwrap();
        let rois = Tensor::from_vec(vec![1, 5], vec![0f32, 0., 0., 2., 2.]).unwrap();
        let op = MaxRoiPoolOp { pooled_h: 2, pooled_w: 2, spatial_scale: 1.0 };
        let y = max_roi_pool::<f32>(&op, &x, &rois).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[4.0, 5.0, 7.0, 8.0]);
    }
}
