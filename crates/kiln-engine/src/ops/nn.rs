//! Neural-network operators: convolutions, pooling, normalizations, softmax family and Dropout,
//! with the sliding-window geometry (pads, strides, dilations, auto_pad) they share.

mod conv;
mod norm;
mod pool;
mod softmax;

use kiln_tensor::{Dim, Shape};

use crate::error::{OpError, OpResult};
use crate::op::NodeInfo;
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    conv::register(r);
    pool::register(r);
    norm::register(r);
    softmax::register(r);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

/// Window attributes shared by Conv, ConvTranspose and the pools.
#[derive(Clone, Debug)]
pub(crate) struct WindowAttrs {
    pub auto_pad: AutoPad,
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
    pub ceil_mode: bool,
}

fn usize_list(n: &NodeInfo, name: &str, min: i64) -> OpResult<Option<Vec<usize>>> {
    match n.attr_ints(name)? {
        None => Ok(None),
        Some(v) => v
            .iter()
            .map(|&x| {
                if x < min {
                    Err(OpError(format!("attribute '{name}' has invalid value {x} (minimum {min})")))
                } else {
                    Ok(x as usize)
                }
            })
            .collect::<OpResult<Vec<_>>>()
            .map(Some),
    }
}

impl WindowAttrs {
    pub fn parse(n: &NodeInfo) -> OpResult<WindowAttrs> {
        let auto_pad = match n.attr_string_or("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => bail!("unknown auto_pad value '{other}'"),
        };
        Ok(WindowAttrs {
            auto_pad,
            kernel_shape: usize_list(n, "kernel_shape", 1)?,
            strides: usize_list(n, "strides", 1)?,
            dilations: usize_list(n, "dilations", 1)?,
            pads: usize_list(n, "pads", 0)?,
            ceil_mode: n.attr_int_or("ceil_mode", 0)? != 0,
        })
    }

    /// Resolves the geometry for the given spatial input shape and kernel.
    pub fn geometry(&self, input: &[usize], kernel: &[usize]) -> OpResult<Geometry> {
        let r = input.len();
        ensure!(kernel.len() == r, "kernel has {} spatial dims but the input has {}", kernel.len(), r);
        let get = |v: &Option<Vec<usize>>, name: &str| -> OpResult<Vec<usize>> {
            match v {
                None => Ok(vec![1; r]),
                Some(v) if v.len() == r => Ok(v.clone()),
                Some(v) => bail!("'{name}' has {} values but the input has {} spatial dims", v.len(), r),
            }
        };
        let strides = get(&self.strides, "strides")?;
        let dilations = get(&self.dilations, "dilations")?;
        let mut pb = vec![0usize; r];
        let mut pe = vec![0usize; r];
        let mut out = vec![0usize; r];
        for i in 0..r {
            let dk = (kernel[i] - 1) * dilations[i] + 1;
            let s = strides[i];
            match self.auto_pad {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    out[i] = input[i].div_ceil(s);
                    let total = ((out[i].max(1) - 1) * s + dk).saturating_sub(input[i]);
                    let small = total / 2;
                    if self.auto_pad == AutoPad::SameUpper {
                        pb[i] = small;
                        pe[i] = total - small;
                    } else {
                        pb[i] = total - small;
                        pe[i] = small;
                    }
                }
                AutoPad::Valid | AutoPad::NotSet => {
                    if self.auto_pad == AutoPad::NotSet {
                        if let Some(p) = &self.pads {
                            ensure!(p.len() == 2 * r, "'pads' has {} values; expected {}", p.len(), 2 * r);
                            pb[i] = p[i];
                            pe[i] = p[i + r];
                        }
                    }
                    let span = input[i] + pb[i] + pe[i];
                    ensure!(span >= dk, "window of extent {dk} does not fit the padded input size {span}");
                    out[i] = if self.ceil_mode {
                        let mut o = (span - dk).div_ceil(s) + 1;
                        // the last window must start inside the input or left padding
                        if (o - 1) * s >= input[i] + pb[i] {
                            o -= 1;
                        }
                        o
                    } else {
                        (span - dk) / s + 1
                    };
                }
            }
        }
        Ok(Geometry { input: input.to_vec(), kernel: kernel.to_vec(), strides, dilations, pad_begin: pb, pad_end: pe, output: out })
    }

    /// Symbolic output spatial dims for shape inference (unknown where input dims are symbols).
    pub fn infer_spatial(&self, input: &[Dim], kernel: &[usize]) -> Option<Vec<Dim>> {
        let fixed: Option<Vec<usize>> = input.iter().map(Dim::fixed).collect();
        match fixed {
            Some(f) => self.geometry(&f, kernel).ok().map(|g| g.output.into_iter().map(Dim::Fixed).collect()),
            None => Some(vec![Dim::unknown(); input.len()]),
        }
    }
}

/// Resolved sliding-window geometry over the spatial dims.
#[derive(Clone, Debug)]
pub(crate) struct Geometry {
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pad_begin: Vec<usize>,
    pub pad_end: Vec<usize>,
    pub output: Vec<usize>,
}

impl Geometry {
    /// The 2-D window geometry the depthwise and pooling kernels take (begin pads only; the
    /// output size already accounts for the end pads). Panics unless the geometry is 2-D.
    pub fn window_2d(&self) -> kiln_kernels::DwGeometry {
        kiln_kernels::DwGeometry {
            ih: self.input[0],
            iw: self.input[1],
            oh: self.output[0],
            ow: self.output[1],
            kh: self.kernel[0],
            kw: self.kernel[1],
            sh: self.strides[0],
            sw: self.strides[1],
            dh: self.dilations[0],
            dw: self.dilations[1],
            ph: self.pad_begin[0],
            pw: self.pad_begin[1],
        }
    }
    pub fn in_size(&self) -> usize {
        self.input.iter().product()
    }
    pub fn out_size(&self) -> usize {
        self.output.iter().product()
    }
    pub fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }
}

/// Shape with the first two dims copied and the rest replaced.
pub(crate) fn nc_shape(x: &Shape, c: Dim, spatial: Vec<Dim>) -> Shape {
    let mut v = vec![x.0.first().cloned().unwrap_or_else(Dim::unknown), c];
    v.extend(spatial);
    Shape(v)
}
