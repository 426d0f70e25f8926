//! GridSample (nearest/linear/cubic, zeros/border/reflection padding, any spatial rank) and
//! AffineGrid (2-D and 3-D).

use kiln_tensor::{Dim, Shape, Tensor, Value, ValueType};

use super::{ensure_float, numel, real_dispatch, Real};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

pub(super) struct GridSampleOp {
    mode: Mode,
    padding: Padding,
    align_corners: bool,
}

pub(super) fn build_grid_sample(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let default_mode = if n.opset >= 20 { "linear" } else { "bilinear" };
    let mode = match n.attr_string_or("mode", default_mode)?.as_str() {
        "bilinear" | "linear" => Mode::Linear,
        "bicubic" | "cubic" => Mode::Cubic,
        "nearest" => Mode::Nearest,
        other => bail!("GridSample mode '{other}' is not supported (linear, cubic, nearest)"),
    };
    let padding = match n.attr_string_or("padding_mode", "zeros")?.as_str() {
        "zeros" => Padding::Zeros,
        "border" => Padding::Border,
        "reflection" => Padding::Reflection,
        other => bail!("GridSample padding_mode '{other}' is not supported (zeros, border, reflection)"),
    };
    let align_corners = n.attr_int_or("align_corners", 0)? != 0;
    Ok(Box::new(GridSampleOp { mode, padding, align_corners }))
}

/// Reflects `x` by the nearest border until it lies within `[lo, hi]`.
#[inline]
fn reflect<R: Real>(x: R, lo: R, hi: R) -> R {
    let range = hi - lo;
    if !(range > R::c(0.0)) {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / range).f64().trunc();
        let r = dx - R::c(n) * range;
        if n % 2.0 == 0.0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / range).f64().trunc();
        let r = dx - R::c(n) * range;
        if n % 2.0 == 0.0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

/// Keys cubic convolution weights (alpha = -0.75) for taps at -1, 0, 1, 2 around `t` in [0, 1).
#[inline]
fn cubic_coeffs<R: Real>(t: R) -> [R; 4] {
    let a = R::c(-0.75);
    let one = R::c(1.0);
    let two = R::c(2.0);
    let three = R::c(3.0);
    let four = R::c(4.0);
    let five = R::c(5.0);
    let eight = R::c(8.0);
    let x = t.abs();
    let x1 = x + one;
    let y = one - x;
    let y1 = two - x;
    [
        ((a * x1 - five * a) * x1 + eight * a) * x1 - four * a,
        ((a + two) * x - (a + three)) * x * x + one,
        ((a + two) * y - (a + three)) * y * y + one,
        ((a * y1 - five * a) * y1 + eight * a) * y1 - four * a,
    ]
}

/// Sampling geometry of one spatial axis.
struct Axis<R> {
    size: usize,
    lo: R,
    hi: R,
}

impl GridSampleOp {
    /// Index of pixel `i` along `axis` after padding, or None for a zero (outside) pixel.
    #[inline]
    fn pixel<R: Real>(&self, i: i64, axis: &Axis<R>) -> Option<usize> {
        let d = axis.size as i64;
        if d == 0 {
            return None;
        }
        match self.padding {
            Padding::Zeros => (i >= 0 && i < d).then_some(i as usize),
            Padding::Border => Some(i.clamp(0, d - 1) as usize),
            Padding::Reflection => {
                let r = reflect(R::c(i as f64), axis.lo, axis.hi).f64() as i64;
                Some(r.clamp(0, d - 1) as usize)
            }
        }
    }

    /// The (pixel index, weight) taps along one axis for normalized coordinate `g`; returns the count.
    #[inline]
    fn axis_taps<R: Real>(&self, g: R, axis: &Axis<R>, taps: &mut [(usize, R); 4]) -> usize {
        let one = R::c(1.0);
        let len = R::c(axis.size as f64);
        let mut x = if self.align_corners {
            (g + one) / R::c(2.0) * (len - one)
        } else {
            ((g + one) * len - one) / R::c(2.0)
        };
        if self.mode == Mode::Nearest {
            x = x.round_even();
        }
        if x < axis.lo || x > axis.hi {
            match self.padding {
                Padding::Border => {
                    let hi = len - one;
                    x = if x < R::c(0.0) {
                        R::c(0.0)
                    } else if x > hi {
                        hi
                    } else {
                        x
                    };
                }
                Padding::Reflection => x = reflect(x, axis.lo, axis.hi),
                Padding::Zeros => {}
            }
        }
        let mut n = 0;
        let mut push = |i: i64, w: R, n: &mut usize| {
            if let Some(p) = self.pixel(i, axis) {
                taps[*n] = (p, w);
                *n += 1;
            }
        };
        match self.mode {
            Mode::Nearest => push(x.f64() as i64, one, &mut n),
            Mode::Linear => {
                let x0 = x.floor();
                let t = x - x0;
                let i0 = x0.f64() as i64;
                push(i0, one - t, &mut n);
                push(i0.saturating_add(1), t, &mut n);
            }
            Mode::Cubic => {
                let x0 = x.floor();
                let c = cubic_coeffs(x - x0);
                let i0 = x0.f64() as i64;
                for (k, w) in c.into_iter().enumerate() {
                    push(i0.saturating_add(k as i64 - 1), w, &mut n);
                }
            }
        }
        n
    }

    fn compute<R: Real>(&self, x: &Tensor, grid: &Tensor) -> OpResult<Tensor> {
        let xs = x.shape();
        let gs = grid.shape();
        ensure!(xs.len() >= 3, "GridSample input X must have rank >= 3, got shape {xs:?}");
        let k = xs.len() - 2;
        ensure!(
            gs.len() == xs.len(),
            "GridSample grid must have the same rank as X ({}), got shape {gs:?}",
            xs.len()
        );
        ensure!(gs[0] == xs[0], "GridSample grid batch {} does not match X batch {}", gs[0], xs[0]);
        ensure!(gs[k + 1] == k, "GridSample grid last dimension must be {k}, got {}", gs[k + 1]);
        ensure!(k <= 8, "GridSample supports up to 8 spatial dimensions, got {k}");
        let (batch, channels) = (xs[0], xs[1]);
        let dims = &xs[2..];
        let out_sp = &gs[1..k + 1];
        let mut out_shape = vec![batch, channels];
        out_shape.extend_from_slice(out_sp);
        let total = numel(&out_shape)?;
        if total == 0 {
            return R::write(x.dtype(), out_shape, Vec::new());
        }
        let npts = numel(out_sp)?;
        let in_plane = numel(dims)?;
        let data = R::read(x)?;
        let gv = R::read(grid)?;
        // Spatial strides of X.
        let mut strides = vec![1usize; k];
        for i in (0..k.saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * dims[i + 1];
        }
        let axes: Vec<Axis<R>> = dims
            .iter()
            .map(|&d| {
                let len = R::c(d as f64);
                if self.align_corners {
                    Axis { size: d, lo: R::c(0.0), hi: len - R::c(1.0) }
                } else {
                    Axis { size: d, lo: R::c(-0.5), hi: len - R::c(0.5) }
                }
            })
            .collect();
        let mut out = vec![R::default(); total];
        let mut axis_taps = vec![[(0usize, R::default()); 4]; k];
        let mut counts = vec![0usize; k];
        let mut taps: Vec<(usize, R)> = Vec::with_capacity(4usize.pow(k.min(6) as u32));
        let mut idx = vec![0usize; k];
        for n in 0..batch {
            let x_base = n * channels * in_plane;
            for p in 0..npts {
                let g = &gv[(n * npts + p) * k..(n * npts + p + 1) * k];
                let mut any_empty = false;
                for i in 0..k {
                    counts[i] = self.axis_taps(g[k - 1 - i], &axes[i], &mut axis_taps[i]);
                    any_empty |= counts[i] == 0;
                }
                taps.clear();
                if !any_empty {
                    idx.iter_mut().for_each(|v| *v = 0);
                    loop {
                        let mut off = 0usize;
                        let mut w = R::c(1.0);
                        for i in 0..k {
                            let (pi, wi) = axis_taps[i][idx[i]];
                            off += pi * strides[i];
                            w = w * wi;
                        }
                        taps.push((off, w));
                        let mut d = k;
                        let mut done = true;
                        while d > 0 {
                            d -= 1;
                            idx[d] += 1;
                            if idx[d] < counts[d] {
                                done = false;
                                break;
                            }
                            idx[d] = 0;
                        }
                        if done {
                            break;
                        }
                    }
                }
                for c in 0..channels {
                    let plane = &data[x_base + c * in_plane..x_base + (c + 1) * in_plane];
                    let mut acc = R::default();
                    for &(off, w) in &taps {
                        acc += w * plane[off];
                    }
                    out[(n * channels + c) * npts + p] = acc;
                }
            }
        }
        R::write(x.dtype(), out_shape, out)
    }
}

impl Op for GridSampleOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let grid = inputs.tensor(1)?;
        ensure_float(grid, "GridSample grid")?;
        let y = real_dispatch!(x, "GridSample", compute_gs(self, x, grid))?;
        Ok(vec![Value::Tensor(y)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let xt = inputs.first().copied().flatten()?;
        let dtype = xt.tensor_dtype()?;
        let xs = xt.tensor_shape();
        let gs = inputs.get(1).copied().flatten()?.tensor_shape()?;
        if gs.rank() < 3 {
            return None;
        }
        let k = gs.rank() - 2;
        let c = match xs {
            Some(s) if s.rank() == gs.rank() => s.0[1].clone(),
            Some(_) => return None,
            None => Dim::unknown(),
        };
        let mut dims = vec![gs.0[0].clone(), c];
        dims.extend(gs.0[1..k + 1].iter().cloned());
        Some(vec![ValueType::tensor(dtype, Some(Shape(dims)))])
    }
}

fn compute_gs<R: Real>(op: &GridSampleOp, x: &Tensor, grid: &Tensor) -> OpResult<Tensor> {
    op.compute::<R>(x, grid)
}

pub(super) struct AffineGridOp {
    align_corners: bool,
}

pub(super) fn build_affine_grid(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(AffineGridOp { align_corners: n.attr_int_or("align_corners", 0)? != 0 }))
}

/// Normalized sample positions along an axis of `len` pixels.
fn base_coords(len: usize, align_corners: bool) -> Vec<f64> {
    (0..len)
        .map(|i| {
            if align_corners {
                if len <= 1 {
                    -1.0
                } else {
                    -1.0 + 2.0 * i as f64 / (len - 1) as f64
                }
            } else {
                -1.0 + (2 * i + 1) as f64 / len as f64
            }
        })
        .collect()
}

fn affine_out_shape(size: &[i64], theta_shape: &[usize]) -> OpResult<Vec<usize>> {
    ensure!(
        theta_shape.len() == 3,
        "AffineGrid theta must have shape [N, 2, 3] or [N, 3, 4], got {theta_shape:?}"
    );
    let k = theta_shape[1];
    ensure!(
        (k == 2 || k == 3) && theta_shape[2] == k + 1,
        "AffineGrid theta must have shape [N, 2, 3] or [N, 3, 4], got {theta_shape:?}"
    );
    ensure!(
        size.len() == k + 2,
        "AffineGrid size must have {} elements for a {k}-D theta, got {size:?}",
        k + 2
    );
    let mut sizes = Vec::with_capacity(k + 2);
    for &s in size {
        ensure!(s >= 0, "AffineGrid size must be non-negative, got {size:?}");
        sizes.push(s as usize);
    }
    ensure!(
        sizes[0] == theta_shape[0],
        "AffineGrid size batch {} does not match theta batch {}",
        sizes[0],
        theta_shape[0]
    );
    let mut out = vec![sizes[0]];
    out.extend_from_slice(&sizes[2..]);
    out.push(k);
    Ok(out)
}

fn affine_grid<R: Real>(align: bool, theta: &Tensor, size: &[i64]) -> OpResult<Tensor> {
    let out_shape = affine_out_shape(size, theta.shape())?;
    let total = numel(&out_shape)?;
    let k = theta.shape()[1];
    let n = out_shape[0];
    let sp = &out_shape[1..k + 1];
    let th = R::read(theta)?;
    // Coordinates in (x, y[, z]) order: x runs along the last spatial axis.
    let coords: Vec<Vec<f64>> = sp.iter().rev().map(|&len| base_coords(len, align)).collect();
    let npts = numel(sp)?;
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; k];
    for b in 0..n {
        let t = &th[b * k * (k + 1)..(b + 1) * k * (k + 1)];
        for p in 0..npts {
            // idx over spatial dims (outer to inner), from p.
            let mut rem = p;
            for d in (0..k).rev() {
                idx[d] = rem % sp[d];
                rem /= sp[d];
            }
            for r in 0..k {
                let row = &t[r * (k + 1)..(r + 1) * (k + 1)];
                let mut acc = row[k].f64();
                for c in 0..k {
                    acc += row[c].f64() * coords[c][idx[k - 1 - c]];
                }
                out.push(R::c(acc));
            }
        }
    }
    R::write(theta.dtype(), out_shape, out)
}

impl Op for AffineGridOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let theta = inputs.tensor(0)?;
        let size = inputs.tensor(1)?;
        ensure!(size.rank() == 1, "AffineGrid size must be 1-D, got shape {:?}", size.shape());
        let size = size.to_i64_vec().map_err(|e| OpError(format!("AffineGrid size: {e}")))?;
        let y = real_dispatch!(theta, "AffineGrid", affine_grid(self.align_corners, theta, &size))?;
        Ok(vec![Value::Tensor(y)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let tt = inputs.first().copied().flatten()?;
        let dtype = tt.tensor_dtype()?;
        let size = consts.get(1).copied().flatten()?.to_i64_vec().ok()?;
        let ts = tt.tensor_shape()?.as_fixed()?;
        let shape = affine_out_shape(&size, &ts).ok()?;
        Some(vec![ValueType::tensor(dtype, Some(Shape::fixed(&shape)))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(mode: Mode, padding: Padding, align_corners: bool) -> GridSampleOp {
        GridSampleOp { mode, padding, align_corners }
    }

    #[test]
    fn bilinear_center_and_corners() {
        // 2x2 image [[1, 2], [3, 4]]; align_corners: (-1,-1) is pixel (0,0), (0,0) is the mean.
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1f32, 2., 3., 4.]).unwrap();
        let g = Tensor::from_vec(vec![1, 1, 3, 2], vec![-1f32, -1., 0., 0., 1., -1.]).unwrap();
        let y = op(Mode::Linear, Padding::Zeros, true).compute::<f32>(&x, &g).unwrap();
        assert_eq!(y.shape(), &[1, 1, 1, 3]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, 2.5, 2.0]);
    }

    #[test]
    fn zeros_border_reflection_outside() {
        // 1-D row [10, 20] seen as 1x2 image; x = 2.0 normalized with align_corners=1 is pixel 1.5.
        let x = Tensor::from_vec(vec![1, 1, 1, 2], vec![10f32, 20.]).unwrap();
        let g = Tensor::from_vec(vec![1, 1, 1, 2], vec![2f32, -1.]).unwrap();
        let z = op(Mode::Linear, Padding::Zeros, true).compute::<f32>(&x, &g).unwrap();
        let b = op(Mode::Linear, Padding::Border, true).compute::<f32>(&x, &g).unwrap();
        let r = op(Mode::Linear, Padding::Reflection, true).compute::<f32>(&x, &g).unwrap();
        // Pixel 2.0 (x = 2 maps to 2 with d=2: (2+1)/2*1 = 1.5): zeros: 0.5*20 + 0.5*0 = 10.
        assert_eq!(z.as_slice::<f32>().unwrap(), &[10.0]);
        // Border clamps to pixel 1.
        assert_eq!(b.as_slice::<f32>().unwrap(), &[20.0]);
        // Reflection of 1.5 about [0, 1] is 0.5: mean of 10 and 20.
        assert_eq!(r.as_slice::<f32>().unwrap(), &[15.0]);
    }

    #[test]
    fn nearest_rounds_half_to_even() {
        let x = Tensor::from_vec(vec![1, 1, 1, 4], vec![0f32, 1., 2., 3.]).unwrap();
        // align_corners=0, d=4: x = ((g+1)*4-1)/2; g=-0.25 -> 1.0; g=0 -> 1.5 -> 2; g=-0.5 -> 0.5 -> 0.
        let g = Tensor::from_vec(vec![1, 1, 3, 2], vec![-0.25f32, 0., 0., 0., -0.5, 0.]).unwrap();
        let y = op(Mode::Nearest, Padding::Zeros, false).compute::<f32>(&x, &g).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, 2.0, 0.0]);
    }

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate() {
        let c = cubic_coeffs(0.25f64);
        assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let c0 = cubic_coeffs(0.0f64);
        assert_eq!(c0, [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn affine_identity_2d() {
        let theta = Tensor::from_vec(vec![1, 2, 3], vec![1f32, 0., 0., 0., 1., 0.]).unwrap();
        let g = affine_grid::<f32>(true, &theta, &[1, 1, 2, 3]).unwrap();
        assert_eq!(g.shape(), &[1, 2, 3, 2]);
        assert_eq!(
            g.as_slice::<f32>().unwrap(),
            &[-1.0, -1.0, 0.0, -1.0, 1.0, -1.0, -1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
        );
        let g = affine_grid::<f32>(false, &theta, &[1, 1, 1, 2]).unwrap();
        assert_eq!(g.as_slice::<f32>().unwrap(), &[-0.5, 0.0, 0.5, 0.0]);
    }
}
