//! DeformConv (2-D): convolution sampling the input at learned offsets (bilinear, zero outside),
//! with optional modulation mask, groups, offset groups, dilations, pads, strides and bias.

use kiln_tensor::{Dim, Shape, Tensor, Value, ValueType};

use super::{numel, real_dispatch, Real};
use crate::error::OpResult;
use crate::op::{Inputs, NodeInfo, Op};
use crate::ensure;

pub(super) struct DeformConvOp {
    dilations: Option<Vec<i64>>,
    group: usize,
    kernel_shape: Option<Vec<i64>>,
    offset_group: usize,
    pads: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
}

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let group = n.attr_int_or("group", 1)?;
    ensure!(group > 0, "DeformConv group must be positive, got {group}");
    let offset_group = n.attr_int_or("offset_group", 1)?;
    ensure!(offset_group > 0, "DeformConv offset_group must be positive, got {offset_group}");
    Ok(Box::new(DeformConvOp {
        dilations: n.attr_ints("dilations")?,
        group: group as usize,
        kernel_shape: n.attr_ints("kernel_shape")?,
        offset_group: offset_group as usize,
        pads: n.attr_ints("pads")?,
        strides: n.attr_ints("strides")?,
    }))
}

fn pair(v: &Option<Vec<i64>>, len: usize, default: i64, what: &str, min: i64) -> OpResult<Vec<usize>> {
    let v = v.clone().unwrap_or_else(|| vec![default; len]);
    ensure!(v.len() == len, "DeformConv {what} must have {len} values, got {v:?}");
    ensure!(v.iter().all(|&x| x >= min), "DeformConv {what} must be >= {min}, got {v:?}");
    Ok(v.into_iter().map(|x| x as usize).collect())
}

/// Validated geometry.
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oc: usize,
    cpg: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    dil: Vec<usize>,
    pads: Vec<usize>,
    strides: Vec<usize>,
}

impl DeformConvOp {
    fn geometry(&self, xs: &[usize], ws: &[usize]) -> OpResult<Geom> {
        ensure!(xs.len() == 4, "DeformConv supports 2-D inputs [N, C, H, W], got shape {xs:?}");
        ensure!(ws.len() == 4, "DeformConv W must be [oC, C/group, kH, kW], got shape {ws:?}");
        let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let (oc, cpg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
        if let Some(ks) = &self.kernel_shape {
            ensure!(
                ks.len() == 2 && ks[0] as usize == kh && ks[1] as usize == kw,
                "DeformConv kernel_shape {ks:?} does not match W shape {ws:?}"
            );
        }
        ensure!(
            cpg * self.group == c && oc % self.group == 0,
            "DeformConv X channels {c}, W shape {ws:?} and group {} are inconsistent",
            self.group
        );
        ensure!(
            c % self.offset_group == 0,
            "DeformConv input channels {c} are not divisible by offset_group {}",
            self.offset_group
        );
        let dil = pair(&self.dilations, 2, 1, "dilations", 1)?;
        let strides = pair(&self.strides, 2, 1, "strides", 1)?;
        let pads = pair(&self.pads, 4, 0, "pads", 0)?;
        let out = |size: usize, k: usize, d: usize, p0: usize, p1: usize, s: usize| -> OpResult<usize> {
            let span = (k.max(1) - 1) as i128 * d as i128 + 1;
            let room = size as i128 + p0 as i128 + p1 as i128 - span;
            ensure!(k > 0 && room >= 0, "DeformConv kernel {ws:?} does not fit input {xs:?} with the given pads");
            Ok((room / s as i128 + 1) as usize)
        };
        let oh = out(h, kh, dil[0], pads[0], pads[2], strides[0])?;
        let ow = out(w, kw, dil[1], pads[1], pads[3], strides[1])?;
        Ok(Geom { n, c, h, w, oc, cpg, kh, kw, oh, ow, dil, pads, strides })
    }
}

#[inline]
fn bilinear<R: Real>(plane: &[R], h: usize, w: usize, y: R, x: R) -> R {
    let y0f = y.floor();
    let x0f = x.floor();
    let ly = y - y0f;
    let lx = x - x0f;
    let one = R::c(1.0);
    let y0 = y0f.f64() as i64;
    let x0 = x0f.f64() as i64;
    let mut acc = R::c(0.0);
    for (yy, wy) in [(y0, one - ly), (y0.saturating_add(1), ly)] {
        if yy < 0 || yy >= h as i64 {
            continue;
        }
        for (xx, wx) in [(x0, one - lx), (x0.saturating_add(1), lx)] {
            if xx < 0 || xx >= w as i64 {
                continue;
            }
            acc += wy * wx * plane[yy as usize * w + xx as usize];
        }
    }
    acc
}

fn deform_conv<R: Real>(
    op: &DeformConvOp,
    x: &Tensor,
    wt: &Tensor,
    offset: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
) -> OpResult<Tensor> {
    let g = op.geometry(x.shape(), wt.shape())?;
    let og = op.offset_group;
    let kk = g.kh * g.kw;
    let npix = g.oh * g.ow;
    let want_off = [g.n, og * kk * 2, g.oh, g.ow];
    ensure!(
        offset.shape() == want_off,
        "DeformConv offset must have shape {want_off:?}, got {:?}",
        offset.shape()
    );
    if let Some(m) = mask {
        let want = [g.n, og * kk, g.oh, g.ow];
        ensure!(m.shape() == want, "DeformConv mask must have shape {want:?}, got {:?}", m.shape());
    }
    if let Some(b) = bias {
        ensure!(b.shape() == [g.oc], "DeformConv B must have shape [{}], got {:?}", g.oc, b.shape());
    }
    let out_shape = vec![g.n, g.oc, g.oh, g.ow];
    let total = numel(&out_shape)?;
    let xv = R::read(x)?;
    let wv = R::read(wt)?;
    let ov = R::read(offset)?;
    let mv = mask.map(R::read).transpose()?;
    let bv = bias.map(R::read).transpose()?;
    let mut out = vec![R::default(); total];
    if total == 0 {
        return R::write(x.dtype(), out_shape, out);
    }
    let rows = numel(&[g.c, kk])?;
    let mut cols = vec![R::default(); numel(&[rows, npix])?];
    let cpog = g.c / og;
    let ocpg = g.oc / op.group;
    let plane = g.h * g.w;
    let (pt, pl) = (g.pads[0] as f64, g.pads[1] as f64);
    for b in 0..g.n {
        for ci in 0..g.c {
            let ogi = ci / cpog;
            let xp = &xv[(b * g.c + ci) * plane..(b * g.c + ci + 1) * plane];
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let kidx = (ogi * g.kh + ki) * g.kw + kj;
                    let off_h = &ov[((b * og * kk + kidx) * 2) * npix..((b * og * kk + kidx) * 2 + 1) * npix];
                    let off_w = &ov[((b * og * kk + kidx) * 2 + 1) * npix..((b * og * kk + kidx) * 2 + 2) * npix];
                    let mrow = mv.as_ref().map(|m| &m[(b * og * kk + kidx) * npix..(b * og * kk + kidx + 1) * npix]);
                    let row = &mut cols[((ci * g.kh + ki) * g.kw + kj) * npix..((ci * g.kh + ki) * g.kw + kj + 1) * npix];
                    for oy in 0..g.oh {
                        let base_y = R::c((oy * g.strides[0] + ki * g.dil[0]) as f64 - pt);
                        for ox in 0..g.ow {
                            let p = oy * g.ow + ox;
                            let base_x = R::c((ox * g.strides[1] + kj * g.dil[1]) as f64 - pl);
                            let mut v = bilinear(xp, g.h, g.w, base_y + off_h[p], base_x + off_w[p]);
                            if let Some(m) = mrow {
                                v = v * m[p];
                            }
                            row[p] = v;
                        }
                    }
                }
            }
        }
        for gi in 0..op.group {
            let k = g.cpg * kk;
            let a = &wv[gi * ocpg * k..(gi + 1) * ocpg * k];
            let bm = &cols[gi * k * npix..(gi + 1) * k * npix];
            let c = &mut out[(b * g.oc + gi * ocpg) * npix..(b * g.oc + (gi + 1) * ocpg) * npix];
            R::gemm_acc(ocpg, k, npix, a, bm, c);
        }
        if let Some(bv) = &bv {
            for o in 0..g.oc {
                let bo = bv[o];
                for v in &mut out[(b * g.oc + o) * npix..(b * g.oc + o + 1) * npix] {
                    *v += bo;
                }
            }
        }
    }
    R::write(x.dtype(), out_shape, out)
}

impl Op for DeformConvOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let w = inputs.tensor(1)?;
        let offset = inputs.tensor(2)?;
        let bias = inputs.opt_tensor(3)?;
        let mask = inputs.opt_tensor(4)?;
        for (t, name) in [(Some(w), "W"), (Some(offset), "offset"), (bias, "B"), (mask, "mask")] {
            if let Some(t) = t {
                ensure!(
                    t.dtype() == x.dtype(),
                    "DeformConv {name} has dtype {} but X has {}",
                    t.dtype(),
                    x.dtype()
                );
            }
        }
        let y = real_dispatch!(x, "DeformConv", deform_conv(self, x, w, offset, bias, mask))?;
        Ok(vec![Value::Tensor(y)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let xt = inputs.first().copied().flatten()?;
        let dtype = xt.tensor_dtype()?;
        let n = match xt.tensor_shape() {
            Some(s) if s.rank() == 4 => s.0[0].clone(),
            Some(_) => return None,
            None => Dim::unknown(),
        };
        let oc = match inputs.get(1).copied().flatten().and_then(|t| t.tensor_shape()) {
            Some(s) if s.rank() == 4 => s.0[0].clone(),
            Some(_) => return None,
            None => Dim::unknown(),
        };
        let (oh, ow) = match inputs.get(2).copied().flatten().and_then(|t| t.tensor_shape()) {
            Some(s) if s.rank() == 4 => (s.0[2].clone(), s.0[3].clone()),
            Some(_) => return None,
            None => (Dim::unknown(), Dim::unknown()),
        };
        Some(vec![ValueType::tensor(dtype, Some(Shape(vec![n, oc, oh, ow])))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> DeformConvOp {
        DeformConvOp { dilations: None, group: 1, kernel_shape: None, offset_group: 1, pads: None, strides: None }
    }

    #[test]
    fn zero_offsets_is_plain_convolution() {
        // 3x3 input 1..9, 2x2 kernel of ones: each output is the sum of a 2x2 window.
        let x = Tensor::from_vec(vec![1, 1, 3, 3], (1..=9).map(|v| v as f32).collect()).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 2, 2], vec![1f32; 4]).unwrap();
        let off = Tensor::from_vec(vec![1, 8, 2, 2], vec![0f32; 32]).unwrap();
        let y = deform_conv::<f32>(&op(), &x, &w, &off, None, None).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[12.0, 16.0, 24.0, 28.0]);
    }

    #[test]
    fn half_pixel_offset_interpolates_and_mask_bias_apply() {
        // 1x1 kernel on a 1x2 input [2, 4]; offset w=+0.5 samples 3 at x=0 and 2 at x=1 (half outside).
        let x = Tensor::from_vec(vec![1, 1, 1, 2], vec![2f32, 4.]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 1, 1], vec![1f32]).unwrap();
        let off = Tensor::from_vec(vec![1, 2, 1, 2], vec![0f32, 0., 0.5, 0.5]).unwrap();
        let mask = Tensor::from_vec(vec![1, 1, 1, 2], vec![1f32, 0.5]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![10f32]).unwrap();
        let y = deform_conv::<f32>(&op(), &x, &w, &off, Some(&b), Some(&mask)).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[13.0, 11.0]);
    }
}
