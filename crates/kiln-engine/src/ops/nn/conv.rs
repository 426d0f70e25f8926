//! Convolutions: Conv (im2col + GEMM, direct 1x1 and depthwise paths), ConvTranspose (GEMM +
//! col2im) and ConvInteger.

use std::mem::MaybeUninit;

use kiln_kernels::convdirect::{self, DirectWeights};
use kiln_kernels::winograd::{self, WinogradWeights};
use kiln_kernels::gemm::prefer_transposed;
use kiln_kernels::{conv2d_gemm, depthwise_conv2d, sgemm_ex, sgemm_new, Activation, Conv2dGeometry, Epilogue, Lhs, MatRef, PackedA, PackedB, Rhs};
use kiln_tensor::{DType, Dim, Shape, Tensor, Value, ValueType};

use super::{nc_shape, AutoPad, Geometry, WindowAttrs};
use crate::error::OpResult;
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::matmul::{num_threads, par_each, par_gemm, real_tensor, widen_i32, GemmElem, Real};
use crate::registry::Registry;
use crate::{bail, ensure, real_dispatch};

pub(super) fn register(r: &mut Registry) {
    r.add("Conv", 1, build_conv);
    r.add("ConvInteger", 10, build_conv_integer);
    r.add("ConvTranspose", 1, build_conv_transpose);
}

struct ConvOp {
    attrs: WindowAttrs,
    group: usize,
    /// Constant float32 weights packed per group at load (not for depthwise convolutions).
    packed: Option<PackedWeights>,
    /// Applied to the output (fused from a following activation node); after the residual when
    /// there is one.
    act: Activation,
    /// Input 3 is added to the output before the activation (fused from a following Add, see
    /// `fuse::fuse_conv_residual`).
    residual: bool,
    /// Constant 3×3 weights transformed at load for the Winograd path, when it pays.
    wino: Option<WinogradWeights>,
    /// Constant weights laid out at load for the direct path (shallow convolutions), when it pays.
    direct: Option<DirectWeights>,
}

/// Weights W [M, C/group, k...] prepacked at load for the GEMM paths.
struct PackedWeights {
    shape: Vec<usize>,
    form: PackedForm,
}

/// How the GEMM paths multiply by the prepacked weights.
enum PackedForm {
    /// One packed left operand [M/group × C/group·K] per group: Y = W · X.
    Rows(Vec<PackedA>),
    /// Wᵀ [C·K × M] as the packed right operand (group 1 only): Y is computed as Yᵀ = Xᵀ · Wᵀ,
    /// output pixels being the kernels' rows, for outputs whose few pixels per image would leave
    /// a narrow last column panel (7×7 planes), see `kiln_kernels::gemm::prefer_transposed`.
    Cols(PackedB),
}

impl PackedWeights {
    /// `out_pixels`: the output's pixels per image when known at load.
    fn new(w: &Tensor, group: usize, out_pixels: Option<usize>) -> Option<PackedWeights> {
        let data = w.as_slice::<f32>().ok()?;
        let s = w.shape();
        if s.len() < 3 || group == 0 || s[0] % group != 0 || (s[1] == 1 && group > 1) {
            return None;
        }
        let mg = s[0] / group;
        let kdim: usize = s[1..].iter().product();
        if mg == 0 || kdim == 0 || data.len() != s[0] * kdim {
            return None;
        }
        let form = if group == 1 && out_pixels.is_some_and(|o| prefer_transposed(mg, o)) {
            // Wᵀ: element (p, j) at data[j·kdim + p].
            PackedForm::Cols(PackedB::new(kdim, mg, MatRef::new(data, 1, kdim as isize)))
        } else {
            PackedForm::Rows(
                (0..group).map(|g| PackedA::new(mg, kdim, MatRef::new(&data[g * mg * kdim..(g + 1) * mg * kdim], kdim as isize, 1))).collect(),
            )
        };
        Some(PackedWeights { shape: s.to_vec(), form })
    }
}

fn build_conv(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let group = n.attr_int_or("group", 1)?;
    ensure!(group >= 1, "group must be >= 1, got {group}");
    let group = group as usize;
    let attrs = WindowAttrs::parse(n)?;
    let act = fused_activation(n)?;
    let residual = n.attr_int_or(crate::fuse::CONV_RESIDUAL, 0)? != 0;
    // The Winograd kernels fuse no activation other than Relu (a residual's is applied after).
    let wino_act = residual || matches!(act, Activation::Identity | Activation::Relu);
    let wino = if group == 1 && wino_act { n.const_tensor(1).and_then(|w| winograd_weights(n, &attrs, w)) } else { None };
    let direct = if group == 1 && wino.is_none() { n.const_tensor(1).and_then(direct_weights) } else { None };
    // With Winograd or direct weights the GEMM path only runs for unexpected shapes; it then
    // packs per call.
    let packed = if wino.is_some() || direct.is_some() {
        None
    } else {
        n.const_tensor(1).and_then(|w| PackedWeights::new(w, group, static_out_pixels(n, &attrs, w)))
    };
    Ok(Box::new(ConvOp { attrs, group, packed, act, residual, wino, direct }))
}

/// Output pixels per image of a convolution whose input's spatial size is fixed in the model.
fn static_out_pixels(n: &NodeInfo, attrs: &WindowAttrs, w: &Tensor) -> Option<usize> {
    let x = n.input_shape(0)?;
    let spatial: Vec<usize> = x.0.get(2..)?.iter().map(|d| d.fixed()).collect::<Option<_>>()?;
    let kernel = w.shape().get(2..)?;
    Some(attrs.geometry(&spatial, kernel).ok()?.out_size())
}

/// The activation a fused Conv applies (see `fuse::fuse_conv_activations`).
fn fused_activation(n: &NodeInfo) -> OpResult<Activation> {
    let Some(name) = n.attr_string(crate::fuse::CONV_ACTIVATION)? else { return Ok(Activation::Identity) };
    let p = n.attr_floats(crate::fuse::CONV_ACTIVATION_PARAMS)?.unwrap_or_default();
    Ok(match (name.as_str(), p.as_slice()) {
        ("Relu", []) => Activation::Relu,
        ("HardSwish", []) => Activation::HardSwish,
        ("Sigmoid", []) => Activation::Sigmoid,
        ("HardSigmoid", &[a, b]) => Activation::HardSigmoid(a, b),
        ("Swish", &[a]) => Activation::Swish(a),
        _ => bail!("unsupported fused Conv activation {name} with parameters {p:?}"),
    })
}

/// Winograd weights for a float32 [M, C, 3, 3] constant weight when the convolution has unit
/// strides and dilations and, if the input's spatial size is known, a variant pays for that size.
fn winograd_weights(n: &NodeInfo, attrs: &WindowAttrs, w: &Tensor) -> Option<WinogradWeights> {
    let s = w.shape();
    let unit = |v: &Option<Vec<usize>>| v.as_ref().map_or(true, |v| v.iter().all(|&x| x == 1));
    if s.len() != 4 || s[2] != 3 || s[3] != 3 || !unit(&attrs.strides) || !unit(&attrs.dilations) {
        return None;
    }
    let (m, c) = (s[0], s[1]);
    let spatial = n.input_shape(0).filter(|x| x.rank() == 4).and_then(|x| x.0[2..].iter().map(|d| d.fixed()).collect::<Option<Vec<usize>>>());
    let tile = match spatial {
        Some(sp) => attrs.geometry(&sp, &[3, 3]).ok().and_then(|g| winograd::choose(m, c, g.output[0], g.output[1]))?,
        None => winograd::choose(m, c, 16, 16)?,
    };
    WinogradWeights::new(tile, m, c, w.as_slice::<f32>().ok()?)
}

/// Direct-path weights for a float32 [M, C, kh, kw] constant weight of a 2-D convolution, when
/// the direct kernel pays for its shape.
fn direct_weights(w: &Tensor) -> Option<DirectWeights> {
    let s = w.shape();
    if s.len() != 4 {
        return None;
    }
    let (m, k) = (s[0], s[1] * s[2] * s[3]);
    if !convdirect::pays(m, k) {
        return None;
    }
    DirectWeights::new(m, k, w.as_slice::<f32>().ok()?)
}

fn build_conv_integer(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let group = n.attr_int_or("group", 1)?;
    ensure!(group >= 1, "group must be >= 1, got {group}");
    Ok(Box::new(ConvIntegerOp(ConvOp { attrs: WindowAttrs::parse(n)?, group: group as usize, packed: None, act: Activation::Identity, residual: false, wino: None, direct: None })))
}

/// Validated dims of a convolution: X [N, C, in...], W [M, C/group, k...].
struct ConvDims {
    n: usize,
    c: usize,
    m: usize,
    geo: Geometry,
}

impl ConvOp {
    fn dims(&self, x: &[usize], w: &[usize]) -> OpResult<ConvDims> {
        ensure!(x.len() >= 3, "Conv input must have rank >= 3 ([N, C, spatial...]), got {x:?}");
        ensure!(w.len() == x.len(), "Conv weight rank {} differs from input rank {}", w.len(), x.len());
        let g = self.group;
        let (n, c, m) = (x[0], x[1], w[0]);
        ensure!(c % g == 0 && m % g == 0, "channels C={c} and M={m} must be divisible by group {g}");
        ensure!(w[1] * g == c, "weight has {} input channels per group but input has {c} channels and group {g}", w[1]);
        let kernel = match &self.attrs.kernel_shape {
            Some(k) => {
                ensure!(k[..] == w[2..], "kernel_shape {k:?} disagrees with weight shape {w:?}");
                k.clone()
            }
            None => w[2..].to_vec(),
        };
        let geo = self.attrs.geometry(&x[2..], &kernel)?;
        Ok(ConvDims { n, c, m, geo })
    }

    fn infer_shape(&self, x: &Shape, w: &Shape) -> Option<Shape> {
        if x.rank() < 3 || w.rank() != x.rank() {
            return None;
        }
        let kernel: Vec<usize> = match &self.attrs.kernel_shape {
            Some(k) => k.clone(),
            None => w.0[2..].iter().map(Dim::fixed).collect::<Option<Vec<_>>>()?,
        };
        let sp = self.attrs.infer_spatial(&x.0[2..], &kernel)?;
        Some(nc_shape(x, w.0[0].clone(), sp))
    }

    /// The activation the convolution kernels apply: none when a residual comes first.
    fn kernel_act(&self) -> Activation {
        if self.residual {
            Activation::Identity
        } else {
            self.act
        }
    }

    /// `y` with the fused residual (input 3) added and the activation applied, when this Conv has
    /// a residual; `y` unchanged otherwise. The residual broadcasts as the Add it came from
    /// would.
    fn add_residual(&self, y: Tensor, inputs: &Inputs) -> OpResult<Tensor> {
        if !self.residual {
            return Ok(y);
        }
        let r = inputs.tensor(3)?;
        let mut y = y;
        if y.dtype() == DType::F32 && r.dtype() == DType::F32 && r.shape() == y.shape() {
            self.act.add_apply(y.as_slice_mut::<f32>()?, r.as_slice::<f32>()?);
            return Ok(y);
        }
        let sum = crate::ops::elementwise::add_tensors(&y, r)?;
        if self.act == Activation::Identity {
            return Ok(sum);
        }
        let dt = sum.dtype();
        Ok(real_dispatch!(dt, "Conv", |T| {
            let mut v = T::cow(&sum)?.into_owned();
            v.iter_mut().for_each(|x| *x = T::from_f64(self.act.eval_f64(x.to_f64())));
            real_tensor(sum.shape().to_vec(), v, dt)?
        }))
    }
}

/// Unfolds the [c, in...] image into col [c·K, out] (zero outside the input).

fn im2col<T: Copy + Default + Send + Sync>(x: &[T], c: usize, geo: &Geometry, col: &mut [T]) {
    let ksz = geo.kernel_size();
    let osz = geo.out_size();
    let isz = geo.in_size();
    if osz == 0 {
        return;
    }
    let chunks: Vec<(usize, &mut [T])> = col.chunks_mut(ksz * osz).enumerate().take(c).collect();
    let r = geo.input.len();
    let in_strides = kiln_tensor::strides_of(&geo.input);
    let work = move |(ci, rows): (usize, &mut [T])| {
        let xc = &x[ci * isz..(ci + 1) * isz];
        let mut kidx = vec![0usize; r];
        for row in rows.chunks_mut(osz) {
            fill_row(xc, geo, &in_strides, &kidx, row);
            for d in (0..r).rev() {
                kidx[d] += 1;
                if kidx[d] < geo.kernel[d] {
                    break;
                }
                kidx[d] = 0;
            }
        }
    };
    if c * ksz * osz >= 1 << 16 {
        par_each(chunks, work);
    } else {
        chunks.into_iter().for_each(work);
    }
}

/// One im2col row: input values at kernel offset `kidx` for every output position.
fn fill_row<T: Copy + Default>(xc: &[T], geo: &Geometry, in_strides: &[usize], kidx: &[usize], row: &mut [T]) {
    let r = geo.input.len();
    let last = r - 1;
    let ol = geo.output[last];
    let s_l = geo.strides[last];
    let off_l = (kidx[last] * geo.dilations[last]) as isize - geo.pad_begin[last] as isize;
    let in_l = geo.input[last] as isize;
    // valid output range along the last dim: 0 <= o*s + off < in
    let lo = if off_l >= 0 { 0 } else { ((-off_l) as usize).div_ceil(s_l) };
    let hi = if in_l - off_l <= 0 { 0 } else { (((in_l - off_l) as usize).div_ceil(s_l)).min(ol) };
    let lo = lo.min(hi);
    // Output index over the outer dims (on the stack for up to 8 of them).
    let (mut small, mut heap) = ([0usize; 8], Vec::new());
    let oidx: &mut [usize] = if last <= small.len() {
        &mut small[..last]
    } else {
        heap.resize(last, 0);
        &mut heap
    };
    for seg in row.chunks_mut(ol) {
        // offset of the outer dims
        let mut base: isize = 0;
        let mut valid = true;
        for d in 0..last {
            let i = (oidx[d] * geo.strides[d] + kidx[d] * geo.dilations[d]) as isize - geo.pad_begin[d] as isize;
            if i < 0 || i >= geo.input[d] as isize {
                valid = false;
                break;
            }
            base += i * in_strides[d] as isize;
        }
        if !valid || lo >= hi {
            seg.iter_mut().for_each(|v| *v = T::default());
        } else {
            seg[..lo].iter_mut().for_each(|v| *v = T::default());
            seg[hi..].iter_mut().for_each(|v| *v = T::default());
            let start = base + lo as isize * s_l as isize + off_l;
            let src = &xc[start as usize..];
            if s_l == 1 {
                seg[lo..hi].copy_from_slice(&src[..hi - lo]);
            } else {
                for (j, v) in seg[lo..hi].iter_mut().enumerate() {
                    *v = src[j * s_l];
                }
            }
        }
        for d in (0..last).rev() {
            oidx[d] += 1;
            if oidx[d] < geo.output[d] {
                break;
            }
            oidx[d] = 0;
        }
    }
}

/// Depthwise 2-D convolution (one input channel per group): direct accumulation per channel.
fn depthwise_2d<T: GemmElem>(x: &[T], w: &[T], dims: &ConvDims, group: usize, y: &mut [T]) {
    let geo = &dims.geo;
    let (ih, iw) = (geo.input[0], geo.input[1]);
    let (oh, ow) = (geo.output[0], geo.output[1]);
    let (kh, kw) = (geo.kernel[0], geo.kernel[1]);
    let (sh, sw) = (geo.strides[0], geo.strides[1]);
    let (dh, dw) = (geo.dilations[0], geo.dilations[1]);
    let (ph, pw) = (geo.pad_begin[0] as isize, geo.pad_begin[1] as isize);
    let mult = dims.m / group;
    let isz = ih * iw;
    let osz = oh * ow;
    if osz == 0 {
        return;
    }
    // Valid output column range per kernel column, and where its first input sits.
    let ranges: Vec<(usize, usize, usize)> = (0..kw)
        .map(|b| {
            let off = (b * dw) as isize - pw;
            let lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(sw) };
            let hi = if iw as isize - off <= 0 { 0 } else { ((iw as isize - off) as usize).div_ceil(sw).min(ow) };
            let lo = lo.min(hi);
            (lo, hi, (lo as isize * sw as isize + off).max(0) as usize)
        })
        .collect();
    // With stride s, each input row is split into s phases (columns p, p+s, ...) so every
    // kernel tap reads a contiguous run.
    let pw_len = iw.div_ceil(sw);
    let lo3 = ranges.iter().map(|r| r.0).max().unwrap_or(0);
    let hi3 = ranges.iter().map(|r| r.1).min().unwrap_or(0);
    let chunks: Vec<(usize, &mut [T])> = y.chunks_mut(osz).enumerate().collect();
    let work = |(idx, out): (usize, &mut [T])| {
        let nimg = idx / dims.m;
        let m = idx % dims.m;
        let ci = m / mult;
        let xc = &x[(nimg * dims.c + ci) * isz..][..isz];
        let wk = &w[m * kh * kw..][..kh * kw];
        out.iter_mut().for_each(|v| *v = T::zero());
        let phased: Vec<T>;
        let (src, row_len): (&[T], usize) = if sw == 1 {
            (xc, iw)
        } else {
            let mut ph = vec![T::zero(); sw * ih * pw_len];
            for r in 0..ih {
                let xrow = &xc[r * iw..][..iw];
                for p in 0..sw.min(iw) {
                    let dst = &mut ph[(p * ih + r) * pw_len..][..pw_len];
                    for (d, &v) in dst.iter_mut().zip(xrow[p..].iter().step_by(sw)) {
                        *d = v;
                    }
                }
            }
            phased = ph;
            (&phased, pw_len)
        };
        for o_r in 0..oh {
            let orow = &mut out[o_r * ow..][..ow];
            for a in 0..kh {
                let i_r = (o_r * sh + a * dh) as isize - ph;
                if i_r < 0 || i_r >= ih as isize {
                    continue;
                }
                let i_r = i_r as usize;
                if kw == 3 && lo3 < hi3 {
                    // Three taps fused over the columns where all are valid; edges below.
                    let n3 = hi3 - lo3;
                    let tap = |b: usize| -> &[T] {
                        let (lo, _, q) = ranges[b];
                        let (phase, start) = (q % sw, q / sw);
                        &src[(phase * ih + i_r) * row_len + start + (lo3 - lo)..][..n3]
                    };
                    let (x0, x1, x2) = (tap(0), tap(1), tap(2));
                    let (w0, w1, w2) = (wk[a * 3], wk[a * 3 + 1], wk[a * 3 + 2]);
                    for (((o, &v0), &v1), &v2) in orow[lo3..hi3].iter_mut().zip(x0).zip(x1).zip(x2) {
                        *o = o.add(w0.mul(v0).add(w1.mul(v1)).add(w2.mul(v2)));
                    }
                    for (b, &(lo, hi, q)) in ranges.iter().enumerate() {
                        let wv = wk[a * 3 + b];
                        let (phase, start) = (q % sw, q / sw);
                        let xrow = &src[(phase * ih + i_r) * row_len..][..row_len];
                        for j in (lo..hi.min(lo3)).chain(lo3.max(hi3).max(lo)..hi) {
                            orow[j] = orow[j].add(wv.mul(xrow[start + j - lo]));
                        }
                    }
                    continue;
                }
                for (b, &(lo, hi, q)) in ranges.iter().enumerate() {
                    if lo >= hi {
                        continue;
                    }
                    let wv = wk[a * kw + b];
                    let (phase, start) = (q % sw, q / sw);
                    let xrow = &src[(phase * ih + i_r) * row_len..][..row_len];
                    for (o, &xv) in orow[lo..hi].iter_mut().zip(&xrow[start..start + (hi - lo)]) {
                        *o = o.add(wv.mul(xv));
                    }
                }
            }
        }
    };
    if dims.n * dims.m * osz * kh * kw >= 1 << 15 {
        par_each(chunks, work);
    } else {
        chunks.into_iter().for_each(work);
    }
}

/// Convolution of contiguous buffers; returns Y [N, M, out...] without bias.
fn conv_compute<T: GemmElem>(x: &[T], w: &[T], d: &ConvDims, group: usize) -> OpResult<Vec<T>> {
    let geo = &d.geo;
    let osz = geo.out_size();
    let isz = geo.in_size();
    let ksz = geo.kernel_size();
    let total = kiln_tensor::checked_numel(&[d.n, d.m, osz])?;
    let mut y = vec![T::zero(); total];
    if total == 0 {
        return Ok(y);
    }
    let cg = d.c / group;
    let mg = d.m / group;
    if cg == 1 && geo.input.len() == 2 && group > 1 {
        depthwise_2d(x, w, d, group, &mut y);
        return Ok(y);
    }
    let pointwise = ksz == 1
        && geo.strides.iter().all(|&s| s == 1)
        && geo.pad_begin.iter().chain(&geo.pad_end).all(|&p| p == 0);
    let kdim = cg * ksz;
    let mut col = if pointwise { Vec::new() } else { vec![T::zero(); kiln_tensor::checked_numel(&[kdim, osz])?] };
    for img in 0..d.n {
        for g in 0..group {
            let xg = &x[(img * d.c + g * cg) * isz..][..cg * isz];
            let wg = &w[g * mg * kdim..][..mg * kdim];
            let yg = &mut y[(img * d.m + g * mg) * osz..][..mg * osz];
            let b: &[T] = if pointwise {
                xg
            } else {
                im2col(xg, cg, geo, &mut col);
                &col
            };
            par_gemm(mg, kdim, osz, wg, kdim as isize, 1, b, osz as isize, 1, false, yg);
        }
    }
    Ok(y)
}

/// Float32 convolution through the packed GEMM (weights prepacked or packed per call), with the
/// bias fused into the GEMM epilogue. Not for depthwise convolutions.
#[allow(clippy::too_many_arguments)]
fn conv_f32(
    x: &[f32], w: &[f32], packed: Option<&PackedForm>, wino: Option<&WinogradWeights>, direct: Option<&DirectWeights>, d: &ConvDims,
    group: usize, bias: Option<&[f32]>, act: Activation,
) -> OpResult<Vec<f32>> {
    let geo = &d.geo;
    let osz = geo.out_size();
    let isz = geo.in_size();
    let ksz = geo.kernel_size();
    let total = kiln_tensor::checked_numel(&[d.n, d.m, osz])?;
    if let Some(b) = bias {
        ensure!(b.len() == d.m, "bias has {} elements; expected {}", b.len(), d.m);
    }
    if total == 0 {
        return Ok(Vec::new());
    }
    let cg = d.c / group;
    let mg = d.m / group;
    let kdim = cg * ksz;
    ensure!(w.len() == d.m * kdim, "weight has {} elements; expected {}", w.len(), d.m * kdim);
    ensure!(x.len() == d.n * d.c * isz, "input has {} elements; expected {}", x.len(), d.n * d.c * isz);
    let fits = match packed {
        None => true,
        Some(PackedForm::Rows(p)) => p.len() == group && p.iter().all(|pa| pa.rows() == mg && pa.depth() == kdim),
        Some(PackedForm::Cols(pb)) => group == 1 && pb.depth() == kdim && pb.cols() == mg,
    };
    ensure!(fits, "packed weights do not match the convolution");
    let no_pad = geo.pad_begin.iter().chain(&geo.pad_end).all(|&p| p == 0);
    let pointwise = ksz == 1 && geo.strides.iter().all(|&s| s == 1) && no_pad;
    if ksz == 1 && no_pad && !pointwise && geo.input.len() == 2 && geo.strides.iter().all(|&s| s > 0) {
        // A strided 1×1 convolution (a residual shortcut) is a pointwise one on the pixels it
        // reads: gather them (a quarter of the input at stride 2) instead of running the
        // general paths over the whole input.
        let (iw, (oh, ow), (sh, sw)) = (geo.input[1], (geo.output[0], geo.output[1]), (geo.strides[0], geo.strides[1]));
        let mut xs = Vec::with_capacity(d.n * d.c * osz);
        for plane in x.chunks_exact(isz) {
            for r in 0..oh {
                let row = &plane[r * sh * iw..];
                xs.extend((0..ow).map(|q| row[q * sw]));
            }
        }
        let d1 = ConvDims {
            n: d.n,
            c: d.c,
            m: d.m,
            geo: Geometry {
                input: geo.output.clone(),
                kernel: geo.kernel.clone(),
                strides: vec![1; 2],
                dilations: vec![1; 2],
                pad_begin: vec![0; 2],
                pad_end: vec![0; 2],
                output: geo.output.clone(),
            },
        };
        return conv_f32(&xs, w, packed, None, direct, &d1, group, bias, act);
    }
    let threads = num_threads();
    let valid_geo = geo.kernel.iter().all(|&k| k > 0) && geo.strides.iter().chain(&geo.dilations).all(|&s| s > 0);
    let geo2 = (geo.input.len() == 2 && valid_geo).then(|| Conv2dGeometry {
        c: cg, ih: geo.input[0], iw: geo.input[1], oh: geo.output[0], ow: geo.output[1],
        kh: geo.kernel[0], kw: geo.kernel[1], sh: geo.strides[0], sw: geo.strides[1],
        dh: geo.dilations[0], dw: geo.dilations[1], ph: geo.pad_begin[0], pw: geo.pad_begin[1],
    });
    if let (Some(PackedForm::Cols(pb)), Some(cg2), false) = (packed, geo2, pointwise) {
        // Yᵀ = im2col(X)ᵀ · Wᵀ per image, packed from the image without materialising im2col.
        let ep = Epilogue { row_bias: None, col_bias: bias, ..epilogue(None, act) };
        let mut y: Vec<f32> = Vec::with_capacity(total);
        for (xi, yi) in x.chunks_exact(d.c * isz).zip(y.spare_capacity_mut()[..total].chunks_exact_mut(d.m * osz)) {
            kiln_kernels::convgemm::conv2d_transposed(&cg2, xi, pb, yi, &ep, threads);
        }
        // SAFETY: the images' blocks cover all `total` elements and each product writes all
        // d.m · osz elements of its block.
        unsafe { y.set_len(total) };
        return Ok(y);
    }
    if let Some(PackedForm::Cols(pb)) = packed {
        // Yᵀ = Xᵀ · Wᵀ per image, Xᵀ being the input (pointwise) or its im2col matrix read
        // column-major, written straight into Y's layout.
        let ep = Epilogue { row_bias: None, col_bias: bias, ..epilogue(None, act) };
        let cols = if pointwise { 0 } else { kiln_tensor::checked_numel(&[kdim, osz])? };
        let mut y: Vec<f32> = Vec::with_capacity(total);
        // The im2col matrix goes in the thread's work buffer (im2col writes every element).
        kiln_kernels::convgemm::with_work(|col| {
            if col.len() < cols {
                col.resize(cols, 0.0);
            }
            for (xi, yi) in x.chunks_exact(d.c * isz).zip(y.spare_capacity_mut()[..total].chunks_exact_mut(d.m * osz)) {
                let xt: &[f32] = if pointwise {
                    xi
                } else {
                    im2col(xi, d.c, geo, &mut col[..cols]);
                    &col[..cols]
                };
                kiln_kernels::gemm::sgemm_into_col_major(osz, kdim, d.m, Lhs::Strided(MatRef::new(xt, 1, osz as isize)), Rhs::Packed(pb), yi, &ep, threads);
            }
        });
        // SAFETY: the images' blocks cover all `total` elements and each product writes all
        // d.m · osz elements of its block.
        unsafe { y.set_len(total) };
        return Ok(y);
    }
    let packed = match packed {
        Some(PackedForm::Rows(p)) => Some(p.as_slice()),
        _ => None,
    };
    if let (Some(cg2), false) = (geo2, pointwise) {
        // Y starts uninitialised: these kernels write every element.
        let mut y: Vec<f32> = Vec::with_capacity(total);
        if let Some(ww) = wino.filter(|ww| {
            group == 1 && winograd::applies(&cg2) && (ww.out_channels(), ww.in_channels()) == (mg, cg) && winograd::choose(mg, cg, cg2.oh, cg2.ow) == Some(ww.tile())
        }) {
            winograd::conv3x3_winograd(&cg2, d.n, x, ww, &mut y.spare_capacity_mut()[..total], bias, act == Activation::Relu, threads);
            // SAFETY: the Winograd kernel writes all d.n · d.m · osz = total elements.
            unsafe { y.set_len(total) };
            return Ok(y);
        }
        if let Some(dw) = direct.filter(|dw| group == 1 && (dw.rows(), dw.depth()) == (mg, kdim)) {
            let spare = &mut y.spare_capacity_mut()[..total];
            for (img, yi) in spare.chunks_exact_mut(d.m * osz).enumerate() {
                convdirect::conv2d_direct(&cg2, &x[img * d.c * isz..][..d.c * isz], dw, bias, act, yi, threads);
            }
            // SAFETY: `conv2d_direct` writes every element of each image's d.m · osz block, and
            // the blocks cover all `total` elements.
            unsafe { y.set_len(total) };
            return Ok(y);
        }
        let owned: Vec<PackedA>;
        let pw: &[PackedA] = match packed {
            Some(p) => p,
            None => {
                owned = (0..group)
                    .map(|g| PackedA::new(mg, kdim, MatRef::new(&w[g * mg * kdim..(g + 1) * mg * kdim], kdim as isize, 1)))
                    .collect();
                &owned
            }
        };
        let spare = &mut y.spare_capacity_mut()[..total];
        for img in 0..d.n {
            for (g, pa) in pw.iter().enumerate() {
                let xg = &x[(img * d.c + g * cg) * isz..][..cg * isz];
                let yg = &mut spare[(img * d.m + g * mg) * osz..][..mg * osz];
                let ep = epilogue(bias.map(|b| &b[g * mg..(g + 1) * mg]), act);
                conv2d_gemm(&cg2, xg, pa, yg, &ep, threads);
            }
        }
        // SAFETY: the (image, group) blocks cover all `total` elements and `conv2d_gemm` writes
        // every element of its mg · osz block.
        unsafe { y.set_len(total) };
        return Ok(y);
    }
    if pointwise && d.n == 1 && group == 1 {
        // Few pixels (1×1 images in squeeze-and-excitation blocks) go to the matrix-vector kernels.
        if let Some(dw) = direct.filter(|dw| (dw.rows(), dw.depth()) == (mg, kdim) && osz >= 64) {
            let mut y: Vec<f32> = Vec::with_capacity(total);
            convdirect::pointwise_direct(kdim, osz, x, dw, bias, act, &mut y.spare_capacity_mut()[..total], threads);
            // SAFETY: `pointwise_direct` writes all mg · osz = total elements.
            unsafe { y.set_len(total) };
            return Ok(y);
        }
        // One product writing every element of a fresh Y (not zero-filled first).
        let lhs = match packed {
            Some(p) => Lhs::Packed(&p[0]),
            None => Lhs::Strided(MatRef::new(w, kdim as isize, 1)),
        };
        return Ok(sgemm_new(mg, kdim, osz, lhs, Rhs::Strided(MatRef::new(x, osz as isize, 1)), &epilogue(bias, act), threads));
    }
    let mut y = vec![0f32; total];
    let mut col = if pointwise { Vec::new() } else { vec![0f32; kiln_tensor::checked_numel(&[kdim, osz])?] };
    for img in 0..d.n {
        for g in 0..group {
            let xg = &x[(img * d.c + g * cg) * isz..][..cg * isz];
            let yg = &mut y[(img * d.m + g * mg) * osz..][..mg * osz];
            let b: &[f32] = if pointwise {
                xg
            } else {
                im2col(xg, cg, geo, &mut col);
                &col
            };
            let lhs = match packed {
                Some(p) => Lhs::Packed(&p[g]),
                None => Lhs::Strided(MatRef::new(&w[g * mg * kdim..(g + 1) * mg * kdim], kdim as isize, 1)),
            };
            let ep = epilogue(bias.map(|b| &b[g * mg..(g + 1) * mg]), act);
            sgemm_ex(mg, kdim, osz, lhs, Rhs::Strided(MatRef::new(b, osz as isize, 1)), yg, osz as isize, 1, &ep, threads);
        }
    }
    Ok(y)
}

/// The GEMM epilogue adding `bias` per row and applying `act` (Relu through the kernels' own flag).
fn epilogue(bias: Option<&[f32]>, act: Activation) -> Epilogue<'_> {
    match act {
        Activation::Relu => Epilogue { row_bias: bias, relu: true, ..Epilogue::default() },
        act => Epilogue { row_bias: bias, act, ..Epilogue::default() },
    }
}

/// Float32 depthwise 2-D convolution (one input channel per group) with the bias and activation
/// fused.
fn depthwise_f32(x: &[f32], w: &[f32], d: &ConvDims, group: usize, bias: Option<&[f32]>, act: Activation) -> OpResult<Vec<f32>> {
    let geo = &d.geo;
    let (osz, isz) = (geo.out_size(), geo.in_size());
    let (kh, kw) = (geo.kernel[0], geo.kernel[1]);
    let total = kiln_tensor::checked_numel(&[d.n, d.m, osz])?;
    if let Some(b) = bias {
        ensure!(b.len() == d.m, "bias has {} elements; expected {}", b.len(), d.m);
    }
    ensure!(w.len() == d.m * kh * kw, "weight has {} elements; expected {}", w.len(), d.m * kh * kw);
    ensure!(x.len() == d.n * d.c * isz, "input has {} elements; expected {}", x.len(), d.n * d.c * isz);
    if total == 0 {
        return Ok(vec![0f32; total]);
    }
    // Every output element is written below (the planes cover Y), so Y starts uninitialised.
    let mut y: Vec<f32> = Vec::with_capacity(total);
    let g = geo.window_2d();
    let mult = d.m / group;
    // Whole channels per part, and only when the work outweighs waking the pool; larger
    // convolutions get up to four parts per thread, so a thread that falls behind is helped.
    let planes = d.n * d.m;
    let (threads, work) = (num_threads(), total * kh * kw);
    let parts = if threads > 1 && work >= 1 << 18 { (threads * (work >> 18).min(4)).min(planes) } else { 1 };
    // Whole blocks of eight channels per part where that keeps the parts (the kernel takes
    // channels in blocks of eight on some machines).
    let per = planes.div_ceil(parts);
    let per = if per >= 8 && parts > 1 { per.next_multiple_of(8) } else { per };
    let chunks: Vec<(usize, &mut [MaybeUninit<f32>])> = y.spare_capacity_mut()[..total].chunks_mut(osz * per).enumerate().collect();
    let ksz = kh * kw;
    let work = |(part, outs): (usize, &mut [MaybeUninit<f32>])| {
        let first = part * per;
        let count = outs.len() / osz;
        if mult == 1 && first % d.m + count <= d.m {
            // Consecutive channels of one image: input plane i feeds output plane i.
            let (img, m) = (first / d.m, first % d.m);
            let xs = &x[(img * d.c + m) * isz..(img * d.c + m + count) * isz];
            let b = bias.map(|b| &b[m..m + count]);
            depthwise_conv2d(&g, count, xs, &w[m * ksz..(m + count) * ksz], b, act, outs);
            return;
        }
        for (k, out) in outs.chunks_mut(osz).enumerate() {
            let idx = first + k;
            let (img, m) = (idx / d.m, idx % d.m);
            let ci = m / mult;
            let xc = &x[(img * d.c + ci) * isz..(img * d.c + ci + 1) * isz];
            let b = bias.map(|b| &b[m..m + 1]);
            depthwise_conv2d(&g, 1, xc, &w[m * ksz..(m + 1) * ksz], b, act, out);
        }
    };
    if chunks.len() > 1 {
        par_each(chunks, work);
    } else {
        chunks.into_iter().for_each(work);
    }
    // SAFETY: the chunks cover the first `total` elements and `depthwise_conv2d` writes every
    // element of each plane it is given (d.n·d.m planes of osz in all).
    unsafe { y.set_len(total) };
    Ok(y)
}

fn add_bias<T: GemmElem>(y: &mut [T], bias: &[T], m: usize, osz: usize) -> OpResult<()> {
    ensure!(bias.len() == m, "bias has {} elements; expected {m}", bias.len());
    if osz == 0 {
        return Ok(());
    }
    for (i, ch) in y.chunks_mut(osz).enumerate() {
        let b = bias[i % m];
        ch.iter_mut().for_each(|v| *v = v.add(b));
    }
    Ok(())
}

fn out_shape(d: &ConvDims) -> Vec<usize> {
    let mut s = vec![d.n, d.m];
    s.extend_from_slice(&d.geo.output);
    s
}

impl ConvOp {
    /// The convolution (with the kernels' activation, see [`ConvOp::kernel_act`]).
    fn conv(&self, inputs: &Inputs) -> OpResult<Tensor> {
        let x = inputs.tensor(0)?;
        let w = inputs.tensor(1)?;
        let b = inputs.opt_tensor(2)?;
        let d = self.dims(x.shape(), w.shape())?;
        let dt = x.dtype();
        let depthwise = d.c / self.group == 1 && d.geo.input.len() == 2 && self.group > 1;
        let valid_geo = d.geo.kernel.iter().all(|&k| k > 0)
            && d.geo.strides.iter().chain(&d.geo.dilations).all(|&s| s > 0);
        if dt == DType::F32 && w.dtype() == DType::F32 && depthwise && valid_geo {
            let bias = match b {
                Some(b) => Some(f32::cow(b)?),
                None => None,
            };
            let y = depthwise_f32(x.as_slice::<f32>()?, w.as_slice::<f32>()?, &d, self.group, bias.as_deref(), self.kernel_act())?;
            return Ok(Tensor::from_vec(out_shape(&d), y)?);
        }
        if dt == DType::F32 && w.dtype() == DType::F32 && !depthwise {
            let packed = self.packed.as_ref().filter(|p| p.shape == w.shape()).map(|p| &p.form);
            let bias = match b {
                Some(b) => Some(f32::cow(b)?),
                None => None,
            };
            let wino = self.wino.as_ref().filter(|_| w.shape().get(2..) == Some(&[3, 3][..]));
            let direct = self.direct.as_ref().filter(|_| w.shape().len() == 4);
            let y = conv_f32(x.as_slice::<f32>()?, w.as_slice::<f32>()?, packed, wino, direct, &d, self.group, bias.as_deref(), self.kernel_act())?;
            return Ok(Tensor::from_vec(out_shape(&d), y)?);
        }
        let t = real_dispatch!(dt, "Conv", |T| {
            let xv = T::cow(x)?;
            let wv = T::cow(w)?;
            let mut y = conv_compute::<T>(&xv, &wv, &d, self.group)?;
            if let Some(b) = b {
                add_bias(&mut y, &T::cow(b)?, d.m, d.geo.out_size())?;
            }
            let act = self.kernel_act();
            if act != Activation::Identity {
                y.iter_mut().for_each(|v| *v = T::from_f64(act.eval_f64(v.to_f64())));
            }
            real_tensor(out_shape(&d), y, dt)?
        });
        Ok(t)
    }
}

impl Op for ConvOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let y = self.conv(inputs)?;
        Ok(vec![Value::Tensor(self.add_residual(y, inputs)?)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        let dt = x.tensor_dtype()?;
        let mut shape = match (x.tensor_shape(), inputs.get(1).copied().flatten().and_then(|w| w.tensor_shape())) {
            (Some(xs), Some(ws)) => self.infer_shape(xs, ws),
            _ => None,
        };
        // A residual of another shape broadcasts the output to a shape not worked out here.
        if self.residual && inputs.get(3).copied().flatten().and_then(|r| r.tensor_shape()) != shape.as_ref() {
            shape = None;
        }
        Some(vec![ValueType::tensor(dt, shape)])
    }
}

struct ConvIntegerOp(ConvOp);

/// Subtracts a scalar (or per-channel, when `per` > 0 chunks) zero point.
fn sub_zero_point(v: &mut [i32], z: Option<&Tensor>, channels: usize, what: &str) -> OpResult<()> {
    let Some(z) = z else { return Ok(()) };
    let z = widen_i32(z)?;
    match z.len() {
        0 => {}
        1 => v.iter_mut().for_each(|x| *x -= z[0]),
        l if l == channels && channels > 0 => {
            let per = v.len() / channels;
            if per > 0 {
                for (i, ch) in v.chunks_mut(per).enumerate() {
                    ch.iter_mut().for_each(|x| *x -= z[i % channels]);
                }
            }
        }
        l => bail!("{what} has {l} elements; expected 1 or {channels}"),
    }
    Ok(())
}

impl Op for ConvIntegerOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let w = inputs.tensor(1)?;
        let d = self.0.dims(x.shape(), w.shape())?;
        let mut xv = widen_i32(x)?;
        let mut wv = widen_i32(w)?;
        sub_zero_point(&mut xv, inputs.opt_tensor(2)?, 1, "x_zero_point")?;
        sub_zero_point(&mut wv, inputs.opt_tensor(3)?, d.m, "w_zero_point")?;
        let y = conv_compute::<i32>(&xv, &wv, &d, self.0.group)?;
        Ok(vec![Value::Tensor(Tensor::from_vec(out_shape(&d), y)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let shape = match (
            inputs.first().copied().flatten().and_then(|t| t.tensor_shape()),
            inputs.get(1).copied().flatten().and_then(|w| w.tensor_shape()),
        ) {
            (Some(xs), Some(ws)) => self.0.infer_shape(xs, ws),
            _ => None,
        };
        Some(vec![ValueType::tensor(DType::I32, shape)])
    }
}

// ---------------------------------------------------------------------------------------------
// ConvTranspose
// ---------------------------------------------------------------------------------------------

struct ConvTransposeOp {
    attrs: WindowAttrs,
    group: usize,
    output_padding: Option<Vec<usize>>,
    output_shape: Option<Vec<usize>>,
}

fn build_conv_transpose(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let group = n.attr_int_or("group", 1)?;
    ensure!(group >= 1, "group must be >= 1, got {group}");
    let list = |name: &str| -> OpResult<Option<Vec<usize>>> {
        n.attr_ints(name)?
            .map(|v| v.iter().map(|&x| crate::ops::util::to_usize(x, name)).collect::<OpResult<Vec<_>>>())
            .transpose()
    };
    Ok(Box::new(ConvTransposeOp {
        attrs: WindowAttrs::parse(n)?,
        group: group as usize,
        output_padding: list("output_padding")?,
        output_shape: list("output_shape")?,
    }))
}

struct TransDims {
    n: usize,
    c: usize,
    m: usize,
    geo: Geometry,
}

impl ConvTransposeOp {
    fn dims(&self, x: &[usize], w: &[usize]) -> OpResult<TransDims> {
        ensure!(x.len() >= 3, "ConvTranspose input must have rank >= 3, got {x:?}");
        ensure!(w.len() == x.len(), "ConvTranspose weight rank {} differs from input rank {}", w.len(), x.len());
        let g = self.group;
        let r = x.len() - 2;
        let (n, c) = (x[0], x[1]);
        ensure!(w[0] == c, "ConvTranspose weight has {} input channels but the input has {c}", w[0]);
        ensure!(c % g == 0, "channels {c} must be divisible by group {g}");
        let m = w[1] * g;
        let kernel = match &self.attrs.kernel_shape {
            Some(k) => {
                ensure!(k[..] == w[2..], "kernel_shape {k:?} disagrees with weight shape {w:?}");
                k.clone()
            }
            None => w[2..].to_vec(),
        };
        let get = |v: &Option<Vec<usize>>, name: &str, def: usize| -> OpResult<Vec<usize>> {
            match v {
                None => Ok(vec![def; r]),
                Some(v) if v.len() == r => Ok(v.clone()),
                Some(v) if v.len() == 2 * r && name == "output_padding" => Ok(v[..r].to_vec()),
                Some(v) => bail!("'{name}' has {} values but the input has {r} spatial dims", v.len()),
            }
        };
        let strides = get(&self.attrs.strides, "strides", 1)?;
        let dilations = get(&self.attrs.dilations, "dilations", 1)?;
        let opad = get(&self.output_padding, "output_padding", 0)?;
        let input = x[2..].to_vec();
        let mut pb = vec![0usize; r];
        let mut pe = vec![0usize; r];
        let mut out = vec![0usize; r];
        let full: Vec<usize> = (0..r)
            .map(|i| strides[i] * (input[i].max(1) - 1) + opad[i] + (kernel[i] - 1) * dilations[i] + 1)
            .collect();
        let target = match (&self.output_shape, self.attrs.auto_pad) {
            (Some(os), _) => {
                let os = if os.len() == r + 2 { os[2..].to_vec() } else { os.clone() };
                ensure!(os.len() == r, "output_shape has {} values; expected {r}", os.len());
                Some(os)
            }
            (None, AutoPad::SameUpper | AutoPad::SameLower) => Some((0..r).map(|i| input[i] * strides[i]).collect()),
            _ => None,
        };
        match target {
            Some(os) => {
                for i in 0..r {
                    let total = full[i] as isize - os[i] as isize;
                    let (b, e) = if total >= 0 {
                        let t = total as usize;
                        if self.attrs.auto_pad == AutoPad::SameUpper { (t / 2, t - t / 2) } else { (t - t / 2, t / 2) }
                    } else {
                        (0, 0)
                    };
                    pb[i] = b;
                    pe[i] = e;
                    out[i] = os[i];
                }
            }
            None => {
                if self.attrs.auto_pad == AutoPad::NotSet {
                    if let Some(p) = &self.attrs.pads {
                        ensure!(p.len() == 2 * r, "'pads' has {} values; expected {}", p.len(), 2 * r);
                        pb.copy_from_slice(&p[..r]);
                        pe.copy_from_slice(&p[r..]);
                    }
                }
                for i in 0..r {
                    ensure!(full[i] >= pb[i] + pe[i], "pads exceed the ConvTranspose output size");
                    out[i] = full[i] - pb[i] - pe[i];
                }
            }
        }
        Ok(TransDims { n, c, m, geo: Geometry { input, kernel, strides, dilations, pad_begin: pb, pad_end: pe, output: out } })
    }
}

/// Scatter-adds col [m·K, in] into the [m, out...] image.
fn col2im<T: GemmElem>(col: &[T], m: usize, geo: &Geometry, y: &mut [T]) {
    let r = geo.input.len();
    let isz = geo.in_size();
    let osz = geo.out_size();
    let ksz = geo.kernel_size();
    let ostr = kiln_tensor::strides_of(&geo.output);
    if isz == 0 || osz == 0 {
        return;
    }
    let work = |(ch, yc): (usize, &mut [T])| {
        let mut kidx = vec![0usize; r];
        let mut iidx = vec![0usize; r];
        for kk in 0..ksz {
            let row = &col[(ch * ksz + kk) * isz..][..isz];
            iidx.iter_mut().for_each(|v| *v = 0);
            for &v in row.iter() {
                let mut off = 0isize;
                let mut ok = true;
                for d in 0..r {
                    let o = (iidx[d] * geo.strides[d] + kidx[d] * geo.dilations[d]) as isize - geo.pad_begin[d] as isize;
                    if o < 0 || o >= geo.output[d] as isize {
                        ok = false;
                        break;
                    }
                    off += o * ostr[d] as isize;
                }
                if ok {
                    let t = &mut yc[off as usize];
                    *t = t.add(v);
                }
                for d in (0..r).rev() {
                    iidx[d] += 1;
                    if iidx[d] < geo.input[d] {
                        break;
                    }
                    iidx[d] = 0;
                }
            }
            for d in (0..r).rev() {
                kidx[d] += 1;
                if kidx[d] < geo.kernel[d] {
                    break;
                }
                kidx[d] = 0;
            }
        }
    };
    let chunks: Vec<(usize, &mut [T])> = y.chunks_mut(osz).take(m).enumerate().collect();
    par_each(chunks, work);
}

fn conv_transpose_compute<T: GemmElem>(x: &[T], w: &[T], d: &TransDims, group: usize) -> OpResult<Vec<T>> {
    let geo = &d.geo;
    let isz = geo.in_size();
    let osz = geo.out_size();
    let ksz = geo.kernel_size();
    let total = kiln_tensor::checked_numel(&[d.n, d.m, osz])?;
    let mut y = vec![T::zero(); total];
    let cg = d.c / group;
    let mg = d.m / group;
    let rows = mg * ksz;
    let mut col = vec![T::zero(); kiln_tensor::checked_numel(&[rows, isz])?];
    if total == 0 {
        return Ok(y);
    }
    for img in 0..d.n {
        for g in 0..group {
            let xg = &x[(img * d.c + g * cg) * isz..][..cg * isz];
            let wg = &w[g * cg * rows..][..cg * rows];
            // col = Wgᵀ [rows × cg] · Xg [cg × isz]
            par_gemm(rows, cg, isz, wg, 1, rows as isize, xg, isz as isize, 1, false, &mut col);
            let yg = &mut y[(img * d.m + g * mg) * osz..][..mg * osz];
            col2im(&col, mg, geo, yg);
        }
    }
    Ok(y)
}

impl Op for ConvTransposeOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let w = inputs.tensor(1)?;
        let b = inputs.opt_tensor(2)?;
        let d = self.dims(x.shape(), w.shape())?;
        let dt = x.dtype();
        let mut shape = vec![d.n, d.m];
        shape.extend_from_slice(&d.geo.output);
        let t = real_dispatch!(dt, "ConvTranspose", |T| {
            let xv = T::cow(x)?;
            let wv = T::cow(w)?;
            let mut y = conv_transpose_compute::<T>(&xv, &wv, &d, self.group)?;
            if let Some(b) = b {
                add_bias(&mut y, &T::cow(b)?, d.m, d.geo.out_size())?;
            }
            real_tensor(shape, y, dt)?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let x = inputs.first().copied().flatten()?;
        let dt = x.tensor_dtype()?;
        let shape = (|| {
            let xs = x.tensor_shape()?.as_fixed()?;
            let ws = inputs.get(1).copied().flatten()?.tensor_shape()?.as_fixed()?;
            let d = self.dims(&xs, &ws).ok()?;
            let mut s = vec![d.n, d.m];
            s.extend_from_slice(&d.geo.output);
            Some(Shape::fixed(&s))
        })();
        Some(vec![ValueType::tensor(dt, shape)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pads: Option<Vec<usize>>, strides: Option<Vec<usize>>) -> WindowAttrs {
        WindowAttrs { auto_pad: AutoPad::NotSet, kernel_shape: None, strides, dilations: None, pads, ceil_mode: false }
    }

    /// A convolution with no fused activation and nothing prepacked (the reference-checked paths
    /// pack on demand).
    fn plain_op(attrs: WindowAttrs, group: usize) -> ConvOp {
        ConvOp { attrs, group, packed: None, act: Activation::Identity, residual: false, wino: None, direct: None }
    }

    #[test]
    fn conv_3x3_padded_matches_hand_sum() {
        // 1x1x3x3 input of ones, 3x3 kernel of ones, pad 1: corner = 4, edge = 6, centre = 9.
        let op = plain_op(attrs(Some(vec![1, 1, 1, 1]), None), 1);
        let d = op.dims(&[1, 1, 3, 3], &[1, 1, 3, 3]).unwrap();
        let y = conv_compute::<f32>(&[1.0; 9], &[1.0; 9], &d, 1).unwrap();
        assert_eq!(y, vec![4., 6., 4., 6., 9., 6., 4., 6., 4.]);
    }

    #[test]
    fn depthwise_matches_hand_sum() {
        // two channels, 2x2 kernel of ones on a 3x3 image with values 0..9, stride 1, no pad.
        let op = plain_op(attrs(None, None), 2);
        let d = op.dims(&[1, 2, 3, 3], &[2, 1, 2, 2]).unwrap();
        let x: Vec<f32> = (0..18).map(|v| v as f32).collect();
        let mut w = vec![1.0f32; 8];
        w[4..].iter_mut().for_each(|v| *v = 2.0);
        let y = conv_compute::<f32>(&x, &w, &d, 2).unwrap();
        assert_eq!(y, vec![8., 12., 20., 24., 2. * 44., 2. * 48., 2. * 56., 2. * 60.]);
    }

    /// Direct definition of a depthwise 2-D convolution, one output per loop nest.
    fn naive_dw(x: &[f64], w: &[f64], c: usize, h: usize, wd: usize, k: usize, s: usize, p: usize) -> Vec<f64> {
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (wd + 2 * p - k) / s + 1;
        let mut y = vec![0.0; c * oh * ow];
        for ch in 0..c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0;
                    for a in 0..k {
                        for b in 0..k {
                            let (r, q) = ((i * s + a) as isize - p as isize, (j * s + b) as isize - p as isize);
                            if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < wd {
                                acc += x[ch * h * wd + r as usize * wd + q as usize] * w[ch * k * k + a * k + b];
                            }
                        }
                    }
                    y[ch * oh * ow + i * ow + j] = acc;
                }
            }
        }
        y
    }

    #[test]
    fn depthwise_strided_matches_definition() {
        for (k, s, p, h, wd) in [(3usize, 1usize, 1usize, 7usize, 9usize), (3, 2, 1, 8, 11), (5, 2, 2, 9, 6), (3, 2, 0, 5, 5)] {
            let c = 3;
            let op = plain_op(attrs(Some(vec![p; 4]), Some(vec![s, s])), c);
            let d = op.dims(&[1, c, h, wd], &[c, 1, k, k]).unwrap();
            let x: Vec<f64> = (0..c * h * wd).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
            let w: Vec<f64> = (0..c * k * k).map(|i| ((i * 5) % 11) as f64 - 5.0).collect();
            let got = conv_compute::<f64>(&x, &w, &d, c).unwrap();
            assert_eq!(got, naive_dw(&x, &w, c, h, wd, k, s, p), "k{k} s{s} p{p}");
        }
    }

    #[test]
    fn f32_gemm_path_matches_generic_path() {
        // group 2 with 2 channels per group, 3x3 kernel, stride 2, pad 1, bias; generic f64 path as reference.
        let op = plain_op(attrs(Some(vec![1; 4]), Some(vec![2, 2])), 2);
        let (n, c, m, h, wd) = (2usize, 4usize, 6usize, 9usize, 7usize);
        let d = op.dims(&[n, c, h, wd], &[m, 2, 3, 3]).unwrap();
        let x: Vec<f32> = (0..n * c * h * wd).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let w: Vec<f32> = (0..m * 2 * 9).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.5).collect();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        let mut want = conv_compute::<f64>(&x64, &w64, &d, 2).unwrap();
        add_bias(&mut want, &bias.iter().map(|&v| v as f64).collect::<Vec<_>>(), m, d.geo.out_size()).unwrap();
        let wt = Tensor::from_vec(vec![m, 2, 3, 3], w.clone()).unwrap();
        let packed = PackedWeights::new(&wt, 2, None).unwrap();
        for p in [None, Some(&packed.form)] {
            let got = conv_f32(&x, &w, p, None, None, &d, 2, Some(&bias), Activation::Identity).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-3, "{g} vs {w}");
            }
        }
    }

    #[test]
    fn f32_transposed_gemm_path_matches_generic_path() {
        // 7×7 outputs (the transposed product Yᵀ = Xᵀ·Wᵀ), 3×3 and pointwise kernels, two
        // images, a depth over several blocks; generic f64 path as reference.
        for (k, pad, stride, h) in [(3usize, 1usize, 1usize, 7usize), (3, 1, 2, 14), (1, 0, 1, 7)] {
            let op = plain_op(attrs(Some(vec![pad; 4]), Some(vec![stride; 2])), 1);
            let (n, c, m) = (2usize, 40usize, 64usize);
            let d = op.dims(&[n, c, h, h], &[m, c, k, k]).unwrap();
            let x: Vec<f32> = (0..n * c * h * h).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
            let w: Vec<f32> = (0..m * c * k * k).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.5 - 3.0).collect();
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
            let mut want = conv_compute::<f64>(&x64, &w64, &d, 1).unwrap();
            add_bias(&mut want, &bias.iter().map(|&v| v as f64).collect::<Vec<_>>(), m, d.geo.out_size()).unwrap();
            let wt = Tensor::from_vec(vec![m, c, k, k], w.clone()).unwrap();
            let packed = PackedWeights::new(&wt, 1, Some(49)).unwrap();
            assert!(matches!(packed.form, PackedForm::Cols(_)), "7×7 outputs use the transposed form");
            // Twice: the second call reuses the thread's im2col buffer.
            for _ in 0..2 {
                let got = conv_f32(&x, &w, Some(&packed.form), None, None, &d, 1, Some(&bias), Activation::Relu).unwrap();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    let w = w.max(0.0);
                    assert!((*g as f64 - w).abs() < 1e-3 * (1.0 + w.abs()), "k{k} s{stride}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn f32_direct_path_matches_generic_path() {
        // Batch 2, 5x5 stride 2 with asymmetric pads, channels not a multiple of the tile; f64 reference.
        let op = plain_op(attrs(Some(vec![2, 1, 1, 2]), Some(vec![2, 2])), 1);
        let (n, c, m, h, wd) = (2usize, 3usize, 11usize, 21usize, 18usize);
        let d = op.dims(&[n, c, h, wd], &[m, c, 5, 5]).unwrap();
        let x: Vec<f32> = (0..n * c * h * wd).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
        let w: Vec<f32> = (0..m * c * 25).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
        let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.5).collect();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        let mut want = conv_compute::<f64>(&x64, &w64, &d, 1).unwrap();
        add_bias(&mut want, &bias.iter().map(|&v| v as f64).collect::<Vec<_>>(), m, d.geo.out_size()).unwrap();
        let wt = Tensor::from_vec(vec![m, c, 5, 5], w.clone()).unwrap();
        let Some(dw) = direct_weights(&wt) else {
            assert!(!convdirect::available());
            return;
        };
        let got = conv_f32(&x, &w, None, None, Some(&dw), &d, 1, Some(&bias), Activation::Identity).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-3 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    #[test]
    fn f32_winograd_path_matches_generic_path() {
        // 3x3, stride 1, asymmetric pads, batch 2, channels past the register blocks; f64 reference.
        let op = plain_op(attrs(Some(vec![1, 0, 0, 1]), None), 1);
        let (n, c, m, h, wd) = (2usize, 19usize, 21usize, 18usize, 17usize);
        let d = op.dims(&[n, c, h, wd], &[m, c, 3, 3]).unwrap();
        let x: Vec<f32> = (0..n * c * h * wd).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
        let w: Vec<f32> = (0..m * c * 9).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
        let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.5).collect();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        let mut want = conv_compute::<f64>(&x64, &w64, &d, 1).unwrap();
        add_bias(&mut want, &bias.iter().map(|&v| v as f64).collect::<Vec<_>>(), m, d.geo.out_size()).unwrap();
        let tile = winograd::choose(m, c, d.geo.output[0], d.geo.output[1]).unwrap();
        let ww = WinogradWeights::new(tile, m, c, &w).unwrap();
        for (act, relu) in [(Activation::Identity, false), (Activation::Relu, true)] {
            let got = conv_f32(&x, &w, None, Some(&ww), None, &d, 1, Some(&bias), act).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                let w = if relu { w.max(0.0) } else { *w };
                assert!((*g as f64 - w).abs() < 1e-3 * (1.0 + w.abs()), "{act:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn depthwise_f32_matches_definition() {
        for (k, s, p, h, wd) in [(3usize, 1usize, 1usize, 7usize, 19usize), (3, 2, 1, 8, 11), (5, 2, 2, 9, 6), (5, 1, 2, 14, 14)] {
            let c = 3;
            let op = plain_op(attrs(Some(vec![p; 4]), Some(vec![s, s])), c);
            let d = op.dims(&[1, c, h, wd], &[c, 1, k, k]).unwrap();
            let x: Vec<f64> = (0..c * h * wd).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
            let w: Vec<f64> = (0..c * k * k).map(|i| ((i * 5) % 11) as f64 - 5.0).collect();
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
            let bias = [1.0f32, -2.0, 0.5];
            let got = depthwise_f32(&x32, &w32, &d, c, Some(&bias), Activation::Identity).unwrap();
            let want = naive_dw(&x, &w, c, h, wd, k, s, p);
            let osz = want.len() / c;
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(*g as f64, w + bias[i / osz] as f64, "k{k} s{s} p{p}");
            }
        }
    }

    /// The activations a fused Conv applies, written out in f64.
    fn act_f64(act: Activation, v: f64) -> f64 {
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        match act {
            Activation::Identity => v,
            Activation::Relu => v.max(0.0),
            Activation::Clip(lo, hi) => v.max(lo as f64).min(hi as f64),
            Activation::HardSigmoid(a, b) => (a as f64 * v + b as f64).clamp(0.0, 1.0),
            Activation::HardSwish => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::Sigmoid => sig(v),
            Activation::Swish(a) => v * sig(a as f64 * v),
        }
    }

    #[test]
    fn fused_activation_matches_definition() {
        let acts = [Activation::Relu, Activation::HardSwish, Activation::HardSigmoid(0.2, 0.5), Activation::Sigmoid, Activation::Swish(1.0)];
        // Pointwise (plain GEMM), 3x3 stride 2 (implicit GEMM), 1x1 spatial (matrix-vector),
        // depthwise (group = channels), 1x1 stride 2 and 3 (gathered pointwise), 7x7 outputs
        // (the transposed product) and batches: (n, c, m, h, w, k, s, p, group).
        let cases = [
            (1usize, 8usize, 20usize, 9usize, 13usize, 1usize, 1usize, 0usize, 1usize),
            (1, 3, 10, 11, 9, 3, 2, 1, 1),
            (1, 24, 12, 1, 1, 1, 1, 0, 1),
            (1, 6, 6, 10, 17, 3, 1, 1, 6),
            (1, 4, 4, 9, 9, 5, 2, 2, 4),
            (1, 8, 20, 9, 13, 1, 2, 0, 1),
            (2, 5, 70, 14, 13, 1, 2, 0, 1),
            (1, 7, 9, 11, 8, 1, 3, 0, 1),
            (1, 16, 70, 7, 7, 1, 1, 0, 1),
            (2, 12, 37, 7, 7, 3, 1, 1, 1),
            (2, 9, 19, 13, 14, 3, 2, 1, 1),
        ];
        for (n, c, m, h, wd, k, s, p, group) in cases {
            let op = plain_op(attrs(Some(vec![p; 4]), Some(vec![s, s])), group);
            let cg = c / group;
            let d = op.dims(&[n, c, h, wd], &[m, cg, k, k]).unwrap();
            let x: Vec<f32> = (0..n * c * h * wd).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
            let w: Vec<f32> = (0..m * cg * k * k).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.25 - 1.0).collect();
            let (oh, ow) = (d.geo.output[0], d.geo.output[1]);
            // y[b, o, i, j] = bias[o] + Σ w[o, ci, a, e] · x[b, g·cg + ci, i·s + a − p, j·s + e − p]
            let mut want = vec![0f64; n * m * oh * ow];
            for b in 0..n {
                for o in 0..m {
                    let g = o / (m / group);
                    for i in 0..oh {
                        for j in 0..ow {
                            let mut acc = bias[o] as f64;
                            for ci in 0..cg {
                                for a in 0..k {
                                    for e in 0..k {
                                        let (r, q) = ((i * s + a) as isize - p as isize, (j * s + e) as isize - p as isize);
                                        if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < wd {
                                            let xv = x[((b * c + g * cg + ci) * h + r as usize) * wd + q as usize] as f64;
                                            acc += xv * w[((o * cg + ci) * k + a) * k + e] as f64;
                                        }
                                    }
                                }
                            }
                            want[((b * m + o) * oh + i) * ow + j] = acc;
                        }
                    }
                }
            }
            let wt = Tensor::from_vec(vec![m, cg, k, k], w.clone()).unwrap();
            let kdim = cg * k * k;
            // Both prepacked forms (group 1): W as the left operand, and Wᵀ as the right one.
            let forms: Vec<PackedForm> = if group == 1 {
                let rows = PackedWeights::new(&wt, 1, None).unwrap().form;
                vec![rows, PackedForm::Cols(PackedB::new(kdim, m, MatRef::new(&w, 1, kdim as isize)))]
            } else {
                Vec::new()
            };
            // The direct kernel where this machine has one (group 1 only).
            let direct = if group == 1 { DirectWeights::new(m, kdim, &w) } else { None };
            for threads in [1, 2] {
                let _pool = kiln_kernels::par::enter(kiln_kernels::par::build_pool(threads));
                for act in acts {
                    let runs = if group > 1 {
                        vec![depthwise_f32(&x, &w, &d, group, Some(&bias), act).unwrap()]
                    } else {
                        let mut r = vec![conv_f32(&x, &w, None, None, None, &d, 1, Some(&bias), act).unwrap()];
                        for f in &forms {
                            r.push(conv_f32(&x, &w, Some(f), None, None, &d, 1, Some(&bias), act).unwrap());
                        }
                        if let Some(dw) = &direct {
                            r.push(conv_f32(&x, &w, None, None, Some(dw), &d, 1, Some(&bias), act).unwrap());
                        }
                        r
                    };
                    for (path, got) in runs.iter().enumerate() {
                        assert_eq!(got.len(), want.len());
                        for (idx, (g, v)) in got.iter().zip(&want).enumerate() {
                            let v = act_f64(act, *v);
                            assert!((*g as f64 - v).abs() < 1e-4 * (1.0 + v.abs()), "{act:?} n{n} c{c} m{m} k{k} s{s} path {path} threads {threads} at {idx}: {g} vs {v}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn depthwise_threads_batches_and_multipliers() {
        // (n, c, mult, h, w, k, s, p): batches whose channel split crosses images, a channel
        // multiplier of 2, odd channel counts, planes smaller than the kernel, and unit-stride
        // planes of more than 256 outputs (the kernels' row path on some machines).
        let cases = [(2usize, 19usize, 1usize, 23usize, 23usize, 3usize, 1usize, 1usize), (2, 11, 2, 21, 17, 5, 2, 2), (1, 37, 1, 30, 30, 3, 2, 1), (3, 9, 1, 2, 3, 5, 1, 2), (1, 33, 1, 7, 7, 5, 1, 2), (1, 32, 1, 56, 57, 3, 1, 1), (2, 17, 1, 29, 33, 5, 1, 2), (1, 7, 1, 40, 9, 3, 1, 0)];
        let acts = [Activation::Identity, Activation::Relu, Activation::HardSwish, Activation::Sigmoid, Activation::Swish(1.0)];
        for (n, c, mult, h, wd, k, s, p) in cases {
            let m = c * mult;
            let op = plain_op(attrs(Some(vec![p; 4]), Some(vec![s, s])), c);
            let d = op.dims(&[n, c, h, wd], &[m, 1, k, k]).unwrap();
            let x: Vec<f32> = (0..n * c * h * wd).map(|i| ((i * 7) % 13) as f32 * 0.25 - 1.5).collect();
            let w: Vec<f32> = (0..m * k * k).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.125 - 1.0).collect();
            let (oh, ow) = (d.geo.output[0], d.geo.output[1]);
            let mut want = vec![0f64; n * m * oh * ow];
            for b in 0..n {
                for o in 0..m {
                    let ci = o / mult;
                    for i in 0..oh {
                        for j in 0..ow {
                            let mut acc = bias[o] as f64;
                            for a in 0..k {
                                for e in 0..k {
                                    let (r, q) = ((i * s + a) as isize - p as isize, (j * s + e) as isize - p as isize);
                                    if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < wd {
                                        acc += x[((b * c + ci) * h + r as usize) * wd + q as usize] as f64 * w[(o * k + a) * k + e] as f64;
                                    }
                                }
                            }
                            want[((b * m + o) * oh + i) * ow + j] = acc;
                        }
                    }
                }
            }
            for threads in [1, 2] {
                let _pool = kiln_kernels::par::enter(kiln_kernels::par::build_pool(threads));
                for act in acts {
                    let got = depthwise_f32(&x, &w, &d, c, Some(&bias), act).unwrap();
                    assert_eq!(got.len(), want.len());
                    for (idx, (g, v)) in got.iter().zip(&want).enumerate() {
                        let v = act_f64(act, *v);
                        assert!((*g as f64 - v).abs() < 1e-5 * (1.0 + v.abs()), "{act:?} n{n} c{c} x{mult} k{k} s{s} threads {threads} at {idx}: {g} vs {v}");
                    }
                }
            }
        }
    }

    #[test]
    fn transpose_stride2() {
        // 1-D: x = [1, 2], w = [1, 1, 1], stride 2 -> length 5: [1, 1, 3, 2, 2]
        let op = ConvTransposeOp { attrs: attrs(None, Some(vec![2])), group: 1, output_padding: None, output_shape: None };
        let d = op.dims(&[1, 1, 2], &[1, 1, 3]).unwrap();
        let y = conv_transpose_compute::<f32>(&[1., 2.], &[1., 1., 1.], &d, 1).unwrap();
        assert_eq!(y, vec![1., 1., 3., 2., 2.]);
    }
}
