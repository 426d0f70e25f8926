//! Quantized linear algebra: QLinearMatMul and QLinearConv (integer accumulation, then
//! requantization with the combined scale).

use kiln_tensor::{DType, Tensor, TensorData, Value, ValueType};

use super::{saturate_round, values_f64, values_i64, Prec, QInt};
use crate::error::OpResult;
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::util::{broadcast_binary, broadcast_index_map, broadcast_shapes, to_usize};
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("QLinearMatMul", 10, |_| Ok(Box::new(QLinearMatMulOp)));
    r.add("QLinearConv", 10, build_qlinear_conv);
}

/// 8-bit quantized tensor values widened to i32.
fn q8_values(t: &Tensor, what: &str) -> OpResult<Vec<i32>> {
    Ok(match t.data() {
        TensorData::I8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as i32).collect(),
        other => bail!("{what} must be int8 or uint8, got {}", other.dtype()),
    })
}

/// Scales as f64, all of one float type; returns that type's precision.
fn scale_values(t: &Tensor, what: &str) -> OpResult<(Vec<f64>, Prec)> {
    let p = match t.dtype() {
        DType::F32 => Prec::F32,
        DType::F16 => Prec::F16,
        DType::BF16 => Prec::BF16,
        other => bail!("{what} must be float, float16 or bfloat16, got {other}"),
    };
    Ok((values_f64(t, what)?, p))
}

/// Rounds the quantized accumulators `acc * mult + zp` into the output type of `zp_dtype`.
fn requantize(acc: &[f64], zp: &[i64], zp_shape: &[usize], shape: &[usize], zp_dtype: DType) -> OpResult<TensorData> {
    fn go<Q: QInt>(acc: &[f64], shape: &[usize], zp: &[i64], zp_shape: &[usize]) -> OpResult<Vec<Q>> {
        let (s, v) = broadcast_binary(acc, shape, zp, zp_shape, |a, z| saturate_round::<Q>(a, z))?;
        ensure!(s == shape, "output zero point shape {zp_shape:?} does not broadcast to the output shape {shape:?}");
        Ok(v)
    }
    Ok(match zp_dtype {
        DType::I8 => TensorData::I8(go(acc, shape, zp, zp_shape)?),
        DType::U8 => TensorData::U8(go(acc, shape, zp, zp_shape)?),
        other => bail!("output zero point must be int8 or uint8, got {other}"),
    })
}

// ---------------------------------------------------------------------------------------------
// QLinearMatMul

struct QLinearMatMulOp;

/// Shape a per-row (`row = true`, for `a`) or per-column (for `b`) parameter so that it
/// broadcasts against the 2-D-or-more matrix shape `m`: a 1-D vector becomes [M, 1] / [1, N].
fn param_shape(p: &Tensor, m: &[usize], row: bool, what: &str) -> OpResult<Vec<usize>> {
    let r = m.len();
    let ps = p.shape();
    if p.len() == 1 {
        return Ok(vec![]);
    }
    let shape = if ps.len() == 1 {
        if row {
            vec![ps[0], 1]
        } else {
            vec![1, ps[0]]
        }
    } else {
        ps.to_vec()
    };
    let (fixed, other) = if row { (r - 1, r - 2) } else { (r - 2, r - 1) };
    let ok = shape.len() <= r
        && shape.len() >= 2
        && shape[shape.len() - (r - fixed)] == 1
        && shape[shape.len() - (r - other)] == m[other]
        && broadcast_shapes(&shape, m).map(|s| s == m).unwrap_or(false);
    ensure!(
        ok,
        "{what} shape {ps:?} is neither a scalar nor a per-{} parameter for a matrix of shape {m:?}",
        if row { "row" } else { "column" }
    );
    Ok(shape)
}

impl Op for QLinearMatMulOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let a = inputs.tensor(0)?;
        let a_scale = inputs.tensor(1)?;
        let a_zp = inputs.opt_tensor(2)?;
        let b = inputs.tensor(3)?;
        let b_scale = inputs.tensor(4)?;
        let b_zp = inputs.opt_tensor(5)?;
        let y_scale = inputs.tensor(6)?;
        let y_zp = inputs.opt_tensor(7)?;

        ensure!(a.rank() >= 1 && b.rank() >= 1, "QLinearMatMul inputs must have rank >= 1");
        // Matrices as at least 2-D.
        let a_shape: Vec<usize> = if a.rank() == 1 { vec![1, a.shape()[0]] } else { a.shape().to_vec() };
        let b_shape: Vec<usize> = if b.rank() == 1 { vec![b.shape()[0], 1] } else { b.shape().to_vec() };
        let (ra, rb) = (a_shape.len(), b_shape.len());
        let (m, k, n) = (a_shape[ra - 2], a_shape[ra - 1], b_shape[rb - 1]);
        ensure!(b_shape[rb - 2] == k, "QLinearMatMul inner dimensions differ: a {:?}, b {:?}", a.shape(), b.shape());

        // Zero-point-adjusted integer operands.
        let av = q8_values(a, "a")?;
        let bv = q8_values(b, "b")?;
        let sub_zp = |v: Vec<i32>, shape: &[usize], zp: Option<&Tensor>, src: &Tensor, row: bool, what: &str| -> OpResult<Vec<i32>> {
            let Some(z) = zp else { return Ok(v) };
            ensure!(z.dtype() == src.dtype(), "{what} type {} differs from its input type {}", z.dtype(), src.dtype());
            let zs = param_shape(z, shape, row, what)?;
            let zv = q8_values(z, what)?;
            Ok(broadcast_binary(&v, shape, &zv, &zs, |x, z| x - z)?.1)
        };
        let av = sub_zp(av, &a_shape, a_zp, a, true, "a_zero_point")?;
        let bv = sub_zp(bv, &b_shape, b_zp, b, false, "b_zero_point")?;

        // Batched integer product with numpy batch broadcasting.
        let batch = broadcast_shapes(&a_shape[..ra - 2], &b_shape[..rb - 2])?;
        let ia = broadcast_index_map(&a_shape[..ra - 2], &batch);
        let ib = broadcast_index_map(&b_shape[..rb - 2], &batch);
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        let total = kiln_tensor::checked_numel(&out_shape)?;
        let mut acc = vec![0i32; total];
        for (bi, (&pa, &pb)) in ia.iter().zip(&ib).enumerate() {
            let am = &av[pa * m * k..(pa + 1) * m * k];
            let bm = &bv[pb * k * n..(pb + 1) * k * n];
            let cm = &mut acc[bi * m * n..(bi + 1) * m * n];
            for i in 0..m {
                let crow = &mut cm[i * n..(i + 1) * n];
                for p in 0..k {
                    let x = am[i * k + p];
                    if x == 0 {
                        continue;
                    }
                    for (c, &y) in crow.iter_mut().zip(&bm[p * n..(p + 1) * n]) {
                        *c = c.wrapping_add(x.wrapping_mul(y));
                    }
                }
            }
        }

        // Requantization multiplier a_scale * b_scale / y_scale, rounded in the scale type.
        let (sa, pa) = scale_values(a_scale, "a_scale")?;
        let (sb, pb) = scale_values(b_scale, "b_scale")?;
        let (sy, py) = scale_values(y_scale, "y_scale")?;
        ensure!(pa == pb && pb == py, "QLinearMatMul scales must share one type");
        let sa_shape = param_shape(a_scale, &a_shape, true, "a_scale")?;
        let sb_shape = param_shape(b_scale, &b_shape, false, "b_scale")?;
        let (ab_shape, ab) = broadcast_binary(&sa, &sa_shape, &sb, &sb_shape, |x, y| pa.round(x * y))?;
        let (mult_shape, mult) = broadcast_binary(&ab, &ab_shape, &sy, y_scale.shape(), |x, y| pa.round(x / y))?;
        let acc_f: Vec<f64> = acc.iter().map(|&v| v as f64).collect();
        let (s, scaled) = broadcast_binary(&acc_f, &out_shape, &mult, &mult_shape, |c, f| c * f)?;
        ensure!(s == out_shape, "QLinearMatMul scales do not broadcast to the output shape {out_shape:?}");

        let (zy, zy_shape, zy_dtype) = match y_zp {
            Some(z) => (values_i64(z, "y_zero_point")?, z.shape().to_vec(), z.dtype()),
            None => (vec![0], vec![], a.dtype()),
        };
        let data = requantize(&scaled, &zy, &zy_shape, &out_shape, zy_dtype)?;
        let mut final_shape = batch;
        if a.rank() > 1 {
            final_shape.push(m);
        }
        if b.rank() > 1 {
            final_shape.push(n);
        }
        Ok(vec![Value::Tensor(Tensor::new(final_shape, data)?)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let dtype = inputs.get(7).copied().flatten()?.tensor_dtype()?;
        Some(vec![ValueType::Tensor { dtype, shape: None }])
    }
}

// ---------------------------------------------------------------------------------------------
// QLinearConv

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AutoPad {
    NotSet,
    Valid,
    SameUpper,
    SameLower,
}

struct QLinearConvOp {
    auto_pad: AutoPad,
    dilations: Option<Vec<usize>>,
    group: usize,
    kernel_shape: Option<Vec<usize>>,
    pads: Option<Vec<usize>>,
    strides: Option<Vec<usize>>,
}

fn usize_list(v: Option<Vec<i64>>, what: &str) -> OpResult<Option<Vec<usize>>> {
    v.map(|v| v.iter().map(|&d| to_usize(d, what)).collect()).transpose()
}

fn build_qlinear_conv(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let auto_pad = match n.attr_string_or("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" => AutoPad::NotSet,
        "VALID" => AutoPad::Valid,
        "SAME_UPPER" => AutoPad::SameUpper,
        "SAME_LOWER" => AutoPad::SameLower,
        other => bail!("unknown auto_pad '{other}'"),
    };
    let group = to_usize(n.attr_int_or("group", 1)?, "group")?;
    ensure!(group >= 1, "group must be at least 1");
    let op = QLinearConvOp {
        auto_pad,
        dilations: usize_list(n.attr_ints("dilations")?, "dilations")?,
        group,
        kernel_shape: usize_list(n.attr_ints("kernel_shape")?, "kernel_shape")?,
        pads: usize_list(n.attr_ints("pads")?, "pads")?,
        strides: usize_list(n.attr_ints("strides")?, "strides")?,
    };
    if let Some(d) = &op.dilations {
        ensure!(d.iter().all(|&v| v >= 1), "dilations must be positive, got {d:?}");
    }
    if let Some(s) = &op.strides {
        ensure!(s.iter().all(|&v| v >= 1), "strides must be positive, got {s:?}");
    }
    Ok(Box::new(op))
}

/// Output size and leading pad of each spatial dimension.
struct ConvGeom {
    out: Vec<usize>,
    pad_begin: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    kernel: Vec<usize>,
}

impl QLinearConvOp {
    fn geometry(&self, in_sp: &[usize], kernel: &[usize]) -> OpResult<ConvGeom> {
        let nd = in_sp.len();
        let get = |v: &Option<Vec<usize>>, what: &str, len: usize, default: usize| -> OpResult<Vec<usize>> {
            match v {
                Some(v) => {
                    ensure!(v.len() == len, "{what} has {} values, expected {len}", v.len());
                    Ok(v.clone())
                }
                None => Ok(vec![default; len]),
            }
        };
        let strides = get(&self.strides, "strides", nd, 1)?;
        let dilations = get(&self.dilations, "dilations", nd, 1)?;
        let pads = get(&self.pads, "pads", 2 * nd, 0)?;
        if let Some(ks) = &self.kernel_shape {
            ensure!(ks.as_slice() == kernel, "kernel_shape {ks:?} differs from the weight's spatial shape {kernel:?}");
        }
        let mut out = Vec::with_capacity(nd);
        let mut pad_begin = Vec::with_capacity(nd);
        for d in 0..nd {
            let ext = (kernel[d].max(1) - 1) * dilations[d] + 1;
            let (o, pb) = match self.auto_pad {
                AutoPad::NotSet => {
                    let padded = in_sp[d] + pads[d] + pads[d + nd];
                    ensure!(
                        padded >= ext,
                        "kernel extent {ext} exceeds the padded input size {padded} in spatial dim {d}"
                    );
                    ((padded - ext) / strides[d] + 1, pads[d])
                }
                AutoPad::Valid => {
                    ensure!(in_sp[d] >= ext, "kernel extent {ext} exceeds the input size {} in spatial dim {d}", in_sp[d]);
                    ((in_sp[d] - ext) / strides[d] + 1, 0)
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = in_sp[d].div_ceil(strides[d]);
                    let total = ((o.max(1) - 1) * strides[d] + ext).saturating_sub(in_sp[d]);
                    let pb = if self.auto_pad == AutoPad::SameUpper { total / 2 } else { total - total / 2 };
                    (o, pb)
                }
            };
            out.push(o);
            pad_begin.push(pb);
        }
        Ok(ConvGeom { out, pad_begin, strides, dilations, kernel: kernel.to_vec() })
    }
}

/// Lays the zero-point-adjusted input of one image and group out as columns:
/// `col[(c * ksize + kidx) * out_len + j]` is the input under kernel offset `kidx` of channel `c`
/// at output position `j` (0 in the padding).
fn im2col(x: &[i32], channels: usize, in_sp: &[usize], g: &ConvGeom, col: &mut [i32]) {
    let nd = in_sp.len();
    let ksize: usize = g.kernel.iter().product();
    let out_len: usize = g.out.iter().product();
    let in_len: usize = in_sp.iter().product();
    let in_strides = kiln_tensor::strides_of(in_sp);
    let mut kidx = vec![0usize; nd];
    let mut oidx = vec![0usize; nd];
    for kf in 0..ksize {
        // Multi-index of the kernel offset.
        let mut rem = kf;
        for d in (0..nd).rev() {
            kidx[d] = rem % g.kernel[d];
            rem /= g.kernel[d];
        }
        // Input coordinate table per dim for each output coordinate (None when in the padding).
        let coords: Vec<Vec<Option<usize>>> = (0..nd)
            .map(|d| {
                (0..g.out[d])
                    .map(|o| {
                        let p = (o * g.strides[d] + kidx[d] * g.dilations[d]) as isize - g.pad_begin[d] as isize;
                        (p >= 0 && (p as usize) < in_sp[d]).then_some(p as usize)
                    })
                    .collect()
            })
            .collect();
        for c in 0..channels {
            let xin = &x[c * in_len..(c + 1) * in_len];
            let dst = &mut col[(c * ksize + kf) * out_len..(c * ksize + kf + 1) * out_len];
            oidx.iter_mut().for_each(|v| *v = 0);
            for slot in dst.iter_mut() {
                let mut flat = 0usize;
                let mut inside = true;
                for d in 0..nd {
                    match coords[d][oidx[d]] {
                        Some(p) => flat += p * in_strides[d],
                        None => {
                            inside = false;
                            break;
                        }
                    }
                }
                *slot = if inside { xin[flat] } else { 0 };
                let mut d = nd;
                while d > 0 {
                    d -= 1;
                    oidx[d] += 1;
                    if oidx[d] < g.out[d] {
                        break;
                    }
                    oidx[d] = 0;
                }
            }
        }
    }
}

/// Per-tensor (scalar) or per-output-channel parameter values, expanded to `m` entries.
fn per_channel<T: Clone>(v: Vec<T>, shape: &[usize], m: usize, what: &str) -> OpResult<Vec<T>> {
    if v.len() == 1 && shape.len() <= 1 {
        return Ok(vec![v[0].clone(); m]);
    }
    ensure!(shape == [m], "{what} must be a scalar or have shape [{m}], got {shape:?}");
    Ok(v)
}

fn scalar_param<T: Clone>(v: Vec<T>, shape: &[usize], what: &str) -> OpResult<T> {
    ensure!(v.len() == 1 && shape.len() <= 1, "{what} must be a scalar, got shape {shape:?}");
    Ok(v[0].clone())
}

impl Op for QLinearConvOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let x_scale = inputs.tensor(1)?;
        let x_zp = inputs.opt_tensor(2)?;
        let w = inputs.tensor(3)?;
        let w_scale = inputs.tensor(4)?;
        let w_zp = inputs.opt_tensor(5)?;
        let y_scale = inputs.tensor(6)?;
        let y_zp = inputs.opt_tensor(7)?;
        let bias = inputs.opt_tensor(8)?;

        let xs = x.shape();
        let ws = w.shape();
        ensure!(xs.len() >= 3, "QLinearConv input must be [N, C, d1, ...], got {xs:?}");
        ensure!(ws.len() == xs.len(), "weight rank {} differs from input rank {}", ws.len(), xs.len());
        let (batch, c_in) = (xs[0], xs[1]);
        let m_out = ws[0];
        let group = self.group;
        ensure!(
            c_in % group == 0 && m_out % group == 0,
            "channels {c_in} and feature maps {m_out} must be divisible by group {group}"
        );
        let cg = c_in / group;
        let mg = m_out / group;
        ensure!(ws[1] == cg, "weight shape {ws:?} expects {} input channels per group, input has {cg}", ws[1]);
        let in_sp = &xs[2..];
        let geom = self.geometry(in_sp, &ws[2..])?;

        // Zero-point-adjusted operands.
        let mut xv = q8_values(x, "x")?;
        if let Some(z) = x_zp {
            ensure!(z.dtype() == x.dtype(), "x_zero_point type {} differs from x type {}", z.dtype(), x.dtype());
            let zp = scalar_param(q8_values(z, "x_zero_point")?, z.shape(), "x_zero_point")?;
            xv.iter_mut().for_each(|v| *v -= zp);
        }
        let mut wv = q8_values(w, "w")?;
        let ksize: usize = geom.kernel.iter().product();
        let wrow = cg * ksize;
        if let Some(z) = w_zp {
            ensure!(z.dtype() == w.dtype(), "w_zero_point type {} differs from w type {}", z.dtype(), w.dtype());
            let zp = per_channel(q8_values(z, "w_zero_point")?, z.shape(), m_out, "w_zero_point")?;
            for (row, &z) in wv.chunks_mut(wrow.max(1)).zip(&zp) {
                row.iter_mut().for_each(|v| *v -= z);
            }
        }
        let bv: Vec<i32> = match bias {
            None => vec![0; m_out],
            Some(b) => {
                ensure!(b.shape() == [m_out], "bias must have shape [{m_out}], got {:?}", b.shape());
                b.as_slice::<i32>()
                    .map_err(|_| crate::OpError(format!("bias must be int32, got {}", b.dtype())))?
                    .to_vec()
            }
        };

        // Requantization multipliers per output channel, in f32 as the scales are.
        let sx = scalar_param(values_f64(x_scale, "x_scale")?, x_scale.shape(), "x_scale")?;
        let sw = per_channel(values_f64(w_scale, "w_scale")?, w_scale.shape(), m_out, "w_scale")?;
        let sy = scalar_param(values_f64(y_scale, "y_scale")?, y_scale.shape(), "y_scale")?;
        let mult: Vec<f64> = sw.iter().map(|&s| Prec::F32.round(Prec::F32.round(sx * s) / sy)).collect();

        let out_len: usize = geom.out.iter().product();
        let in_len: usize = in_sp.iter().product();
        let mut out_shape = vec![batch, m_out];
        out_shape.extend(&geom.out);
        let total = kiln_tensor::checked_numel(&out_shape)?;
        let mut scaled = vec![0f64; total];
        let mut col = vec![0i32; kiln_tensor::checked_numel(&[wrow, out_len])?];
        let mut acc = vec![0i32; out_len];
        for b in 0..batch {
            for g in 0..group {
                let xg = &xv[(b * c_in + g * cg) * in_len..(b * c_in + (g + 1) * cg) * in_len];
                im2col(xg, cg, in_sp, &geom, &mut col);
                for mi in 0..mg {
                    let m = g * mg + mi;
                    acc.iter_mut().for_each(|v| *v = bv[m]);
                    let wr = &wv[m * wrow..(m + 1) * wrow];
                    for (r, &wq) in wr.iter().enumerate() {
                        if wq == 0 {
                            continue;
                        }
                        for (a, &c) in acc.iter_mut().zip(&col[r * out_len..(r + 1) * out_len]) {
                            *a = a.wrapping_add(wq.wrapping_mul(c));
                        }
                    }
                    let dst = &mut scaled[(b * m_out + m) * out_len..(b * m_out + m + 1) * out_len];
                    for (d, &a) in dst.iter_mut().zip(&acc) {
                        *d = a as f64 * mult[m];
                    }
                }
            }
        }

        let (zy, zy_dtype) = match y_zp {
            Some(z) => (scalar_param(values_i64(z, "y_zero_point")?, z.shape(), "y_zero_point")?, z.dtype()),
            None => (0, x.dtype()),
        };
        let data = requantize(&scaled, &[zy], &[], &out_shape, zy_dtype)?;
        Ok(vec![Value::Tensor(Tensor::new(out_shape, data)?)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let dtype = inputs.get(7).copied().flatten()?.tensor_dtype()?;
        Some(vec![ValueType::Tensor { dtype, shape: None }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &dyn Op, inputs: Vec<Option<Tensor>>) -> OpResult<Vec<Tensor>> {
        let vals: Vec<Option<Value>> = inputs.into_iter().map(|t| t.map(Value::Tensor)).collect();
        let refs: Vec<Option<&Value>> = vals.iter().map(|v| v.as_ref()).collect();
        let out = op.run(&Inputs::new(&refs))?;
        Ok(out.into_iter().filter_map(Value::into_tensor).collect())
    }

    #[test]
    fn qlinear_matmul_per_tensor() {
        // a - 1 = [[1, 2]], b - 0 = [[3], [4]] → 11; * (0.5 * 2 / 1) = 11; + 5 = 16
        let out = run(
            &QLinearMatMulOp,
            vec![
                Some(Tensor::from_vec(vec![1, 2], vec![2u8, 3]).unwrap()),
                Some(Tensor::scalar(0.5f32)),
                Some(Tensor::scalar(1u8)),
                Some(Tensor::from_vec(vec![2, 1], vec![3u8, 4]).unwrap()),
                Some(Tensor::scalar(2f32)),
                Some(Tensor::scalar(0u8)),
                Some(Tensor::scalar(1f32)),
                Some(Tensor::scalar(5u8)),
            ],
        )
        .unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_eq!(out[0].as_slice::<u8>().unwrap(), &[16]);
    }

    #[test]
    fn qlinear_conv_padding_and_bias() {
        // 1x1x2x2 input (zero point 1), 1x1x2x2 kernel of ones, pads 1 on every side → 3x3 output.
        let op = QLinearConvOp {
            auto_pad: AutoPad::NotSet,
            dilations: None,
            group: 1,
            kernel_shape: None,
            pads: Some(vec![1, 1, 1, 1]),
            strides: None,
        };
        let out = run(
            &op,
            vec![
                Some(Tensor::from_vec(vec![1, 1, 2, 2], vec![2i8, 3, 4, 5]).unwrap()),
                Some(Tensor::scalar(1f32)),
                Some(Tensor::scalar(1i8)),
                Some(Tensor::from_vec(vec![1, 1, 2, 2], vec![1i8; 4]).unwrap()),
                Some(Tensor::scalar(1f32)),
                Some(Tensor::scalar(0i8)),
                Some(Tensor::scalar(2f32)),
                Some(Tensor::scalar(0i8)),
                Some(Tensor::from_vec(vec![1], vec![1i32]).unwrap()),
            ],
        )
        .unwrap();
        // Adjusted input [[1, 2], [3, 4]]; window sums + bias 1, halved, rounded half to even.
        // sums: [1,3,2 / 4,10,6 / 3,7,4] → +1 → [2,4,3 / 5,11,7 / 4,8,5] → /2 → [1,2,2 / 2,6,4 / 2,4,2]
        assert_eq!(out[0].shape(), &[1, 1, 3, 3]);
        assert_eq!(out[0].as_slice::<i8>().unwrap(), &[1, 2, 2, 2, 6, 4, 2, 4, 2]);
    }
}
