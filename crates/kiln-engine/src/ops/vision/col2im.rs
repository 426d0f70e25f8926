//! Col2Im: scatter-adds sliding blocks of columns back into an N-d image (inverse of im2col).

use kiln_tensor::{bf16, f16, Dim, Shape, Tensor, TensorData, Value, ValueType};

use super::numel;
use crate::ops::shape::{unwords, words};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

pub(super) struct Col2ImOp {
    dilations: Option<Vec<i64>>,
    pads: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
}

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(Col2ImOp {
        dilations: n.attr_ints("dilations")?,
        pads: n.attr_ints("pads")?,
        strides: n.attr_ints("strides")?,
    }))
}

/// Element types Col2Im can sum.
trait Acc: Copy {
    fn add(self, o: Self) -> Self;
}
macro_rules! acc_int {
    ($($t:ty),*) => { $(impl Acc for $t { #[inline(always)] fn add(self, o: Self) -> Self { self.wrapping_add(o) } })* };
}
acc_int!(u8, u16, u32, u64);
impl Acc for f32 {
    #[inline(always)]
    fn add(self, o: f32) -> f32 {
        self + o
    }
}
impl Acc for f64 {
    #[inline(always)]
    fn add(self, o: f64) -> f64 {
        self + o
    }
}
impl Acc for f16 {
    #[inline(always)]
    fn add(self, o: f16) -> f16 {
        f16::from_f32(self.to_f32() + o.to_f32())
    }
}
impl Acc for bf16 {
    #[inline(always)]
    fn add(self, o: bf16) -> bf16 {
        bf16::from_f32(self.to_f32() + o.to_f32())
    }
}
impl Acc for bool {
    #[inline(always)]
    fn add(self, o: bool) -> bool {
        self || o
    }
}

/// Geometry of one Col2Im call, validated.
struct Geom {
    image: Vec<usize>,
    block: Vec<usize>,
    dil: Vec<usize>,
    pad_begin: Vec<usize>,
    stride: Vec<usize>,
    cols: Vec<usize>,
}

fn positive(v: &[i64], what: &str) -> OpResult<Vec<usize>> {
    v.iter()
        .map(|&x| {
            if x > 0 {
                Ok(x as usize)
            } else {
                Err(OpError(format!("Col2Im {what} must be positive, got {v:?}")))
            }
        })
        .collect()
}

impl Col2ImOp {
    fn geometry(&self, image: &[i64], block: &[i64]) -> OpResult<Geom> {
        let k = image.len();
        ensure!(k > 0, "Col2Im image_shape must not be empty");
        ensure!(block.len() == k, "Col2Im block_shape {block:?} and image_shape {image:?} differ in length");
        let image_u: Vec<usize> = image
            .iter()
            .map(|&x| usize::try_from(x).map_err(|_| OpError(format!("Col2Im image_shape must be non-negative, got {image:?}"))))
            .collect::<OpResult<_>>()?;
        let block_u = positive(block, "block_shape")?;
        let dil = positive(self.dilations.as_deref().unwrap_or(&vec![1; k]), "dilations")?;
        let stride = positive(self.strides.as_deref().unwrap_or(&vec![1; k]), "strides")?;
        let pads = self.pads.clone().unwrap_or_else(|| vec![0; 2 * k]);
        ensure!(dil.len() == k, "Col2Im dilations must have {k} values, got {dil:?}");
        ensure!(stride.len() == k, "Col2Im strides must have {k} values, got {stride:?}");
        ensure!(pads.len() == 2 * k, "Col2Im pads must have {} values, got {pads:?}", 2 * k);
        ensure!(pads.iter().all(|&p| p >= 0), "Col2Im pads must be non-negative, got {pads:?}");
        let mut cols = Vec::with_capacity(k);
        for i in 0..k {
            let span = (dil[i] as i128) * (block_u[i] as i128 - 1) + 1;
            let room = image_u[i] as i128 + pads[i] as i128 + pads[i + k] as i128 - span;
            ensure!(
                room >= 0,
                "Col2Im block {block:?} with dilations {dil:?} does not fit image {image:?} with pads {pads:?}"
            );
            cols.push((room / stride[i] as i128 + 1) as usize);
        }
        Ok(Geom {
            image: image_u,
            block: block_u,
            dil,
            pad_begin: pads[..k].iter().map(|&p| p as usize).collect(),
            stride,
            cols,
        })
    }
}

fn col2im<T: Acc + Default>(data: &[T], n: usize, c: usize, g: &Geom) -> OpResult<Vec<T>> {
    let k = g.image.len();
    let kernel = numel(&g.block)?;
    let ncols = numel(&g.cols)?;
    let plane = numel(&g.image)?;
    let mut out = vec![T::default(); numel(&[n, c, plane])?];
    let mut koff = vec![0usize; k];
    let mut cidx = vec![0usize; k];
    for nc in 0..n * c {
        let src = &data[nc * kernel * ncols..(nc + 1) * kernel * ncols];
        let dst = &mut out[nc * plane..(nc + 1) * plane];
        for kk in 0..kernel {
            let mut r = kk;
            for d in (0..k).rev() {
                koff[d] = r % g.block[d];
                r /= g.block[d];
            }
            cidx.iter_mut().for_each(|v| *v = 0);
            for l in 0..ncols {
                if l > 0 {
                    let mut d = k;
                    while d > 0 {
                        d -= 1;
                        cidx[d] += 1;
                        if cidx[d] < g.cols[d] {
                            break;
                        }
                        cidx[d] = 0;
                    }
                }
                let mut flat = 0usize;
                let mut inside = true;
                for d in 0..k {
                    let pos = cidx[d] * g.stride[d] + koff[d] * g.dil[d];
                    if pos < g.pad_begin[d] || pos - g.pad_begin[d] >= g.image[d] {
                        inside = false;
                        break;
                    }
                    flat = flat * g.image[d] + (pos - g.pad_begin[d]);
                }
                if inside {
                    dst[flat] = dst[flat].add(src[kk * ncols + l]);
                }
            }
        }
    }
    Ok(out)
}

impl Op for Col2ImOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let image = inputs.tensor(1)?.to_i64_vec().map_err(|e| OpError(format!("Col2Im image_shape: {e}")))?;
        let block = inputs.tensor(2)?.to_i64_vec().map_err(|e| OpError(format!("Col2Im block_shape: {e}")))?;
        let g = self.geometry(&image, &block)?;
        let xs = x.shape();
        ensure!(xs.len() == 3, "Col2Im input must be 3-D [N, C*prod(block), L], got shape {xs:?}");
        let kernel = numel(&g.block)?;
        ensure!(
            xs[1] % kernel == 0,
            "Col2Im input dimension 1 ({}) is not divisible by the block size {kernel}",
            xs[1]
        );
        let ncols = numel(&g.cols)?;
        ensure!(
            xs[2] == ncols,
            "Col2Im input dimension 2 ({}) does not match the number of sliding blocks {:?} = {ncols}",
            xs[2],
            g.cols
        );
        let (n, c) = (xs[0], xs[1] / kernel);
        let mut shape = vec![n, c];
        shape.extend_from_slice(&g.image);
        let data = match x.data() {
            TensorData::F32(v) => TensorData::F32(col2im(v, n, c, &g)?),
            TensorData::F64(v) => TensorData::F64(col2im(v, n, c, &g)?),
            TensorData::F16(v) => TensorData::F16(col2im(v, n, c, &g)?),
            TensorData::BF16(v) => TensorData::BF16(col2im(v, n, c, &g)?),
            // Signed integers add (wrapping) as the unsigned words of their width, so they share
            // the unsigned loops (code size).
            // SAFETY (each `unwords`): every word is valid as the signed type of its width.
            TensorData::I8(v) => TensorData::I8(unsafe { unwords::<i8, u8>(col2im(words::<i8, u8>(v), n, c, &g)?) }),
            TensorData::I16(v) => TensorData::I16(unsafe { unwords::<i16, u16>(col2im(words::<i16, u16>(v), n, c, &g)?) }),
            TensorData::I32(v) => TensorData::I32(unsafe { unwords::<i32, u32>(col2im(words::<i32, u32>(v), n, c, &g)?) }),
            TensorData::I64(v) => TensorData::I64(unsafe { unwords::<i64, u64>(col2im(words::<i64, u64>(v), n, c, &g)?) }),
            TensorData::U8(v) => TensorData::U8(col2im(v, n, c, &g)?),
            TensorData::U16(v) => TensorData::U16(col2im(v, n, c, &g)?),
            TensorData::U32(v) => TensorData::U32(col2im(v, n, c, &g)?),
            TensorData::U64(v) => TensorData::U64(col2im(v, n, c, &g)?),
            TensorData::Bool(v) => TensorData::Bool(col2im(v, n, c, &g)?),
            other => bail!("Col2Im does not support {} tensors", other.dtype()),
        };
        Ok(vec![Value::Tensor(Tensor::new(shape, data)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let xt = inputs.first().copied().flatten()?;
        let dtype = xt.tensor_dtype()?;
        let image = consts.get(1).copied().flatten()?.to_i64_vec().ok()?;
        let block = consts.get(2).copied().flatten()?.to_i64_vec().ok()?;
        let g = self.geometry(&image, &block).ok()?;
        let kernel: usize = g.block.iter().product();
        let xs = xt.tensor_shape()?;
        if xs.rank() != 3 {
            return None;
        }
        let c = match &xs.0[1] {
            Dim::Fixed(v) if v % kernel == 0 => Dim::Fixed(v / kernel),
            Dim::Fixed(_) => return None,
            Dim::Sym(_) => Dim::unknown(),
        };
        let mut dims = vec![xs.0[0].clone(), c];
        dims.extend(g.image.iter().map(|&d| Dim::Fixed(d)));
        Some(vec![ValueType::tensor(dtype, Some(Shape(dims)))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_blocks_sum() {
        // 1-D image of 3 with block 2, stride 1: columns [[a0, a1], [b0, b1]] (kernel x positions);
        // image[0] = a0, image[1] = a1 + b0, image[2] = b1.
        let op = Col2ImOp { dilations: None, pads: None, strides: None };
        let g = op.geometry(&[3], &[2]).unwrap();
        assert_eq!(g.cols, vec![2]);
        let out = col2im(&[1f32, 2., 10., 20.], 1, 1, &g).unwrap();
        assert_eq!(out, vec![1.0, 12.0, 20.0]);
    }

    #[test]
    fn pads_drop_outside_positions() {
        // Image 2, block 1, pads 1+1 -> 4 columns; the first and last fall in the padding.
        let op = Col2ImOp { dilations: None, pads: Some(vec![1, 1]), strides: None };
        let g = op.geometry(&[2], &[1]).unwrap();
        let out = col2im(&[5u32, 6, 7, 8], 1, 1, &g).unwrap();
        assert_eq!(out, vec![6, 7]);
    }

    #[test]
    fn block_larger_than_image_is_an_error() {
        let op = Col2ImOp { dilations: None, pads: None, strides: None };
        assert!(op.geometry(&[2], &[3]).is_err());
    }
}
