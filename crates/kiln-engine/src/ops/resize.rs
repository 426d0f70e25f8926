//! Resize (opsets 10–19: nearest/linear/cubic, every coordinate transformation, roi, axes,
//! keep_aspect_ratio_policy, antialias) and Upsample (opsets 7/9).

use kiln_tensor::{bf16, f16, DType, Shape, Tensor, TensorData, Value, ValueType};

use crate::bail;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::util::norm_axis;
use crate::registry::Registry;

pub fn register(r: &mut Registry) {
    r.add("Resize", 10, build_resize);
    r.add("Upsample", 7, build_upsample);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Opset < 11 behaviour: floor when upsampling, ceil when downsampling.
    Simple,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Nearest(NearestMode),
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Stretch,
    NotLarger,
    NotSmaller,
}

struct ResizeOp {
    mode: Mode,
    coord: Coord,
    cubic_a: f64,
    exclude_outside: bool,
    extrapolation: f64,
    antialias: bool,
    axes: Option<Vec<i64>>,
    policy: Policy,
    /// Scales fixed by attribute (Upsample-7).
    scales_attr: Option<Vec<f32>>,
    roi_idx: Option<usize>,
    scales_idx: Option<usize>,
    sizes_idx: Option<usize>,
}

fn parse_mode(s: &str, nearest: NearestMode) -> OpResult<Mode> {
    Ok(match s {
        "nearest" => Mode::Nearest(nearest),
        "linear" | "bilinear" | "trilinear" => Mode::Linear,
        "cubic" | "bicubic" => Mode::Cubic,
        other => bail!("unknown resize mode '{other}'"),
    })
}

fn build_resize(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    if n.opset < 11 {
        let mode = parse_mode(&n.attr_string_or("mode", "nearest")?, NearestMode::Simple)?;
        if mode == Mode::Cubic {
            bail!("Resize-10 supports only nearest and linear modes");
        }
        return Ok(Box::new(legacy(mode, None, Some(1))));
    }
    let nearest = match n.attr_string_or("nearest_mode", "round_prefer_floor")?.as_str() {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        other => bail!("unknown nearest_mode '{other}'"),
    };
    let mode = parse_mode(&n.attr_string_or("mode", "nearest")?, nearest)?;
    let coord = match n.attr_string_or("coordinate_transformation_mode", "half_pixel")?.as_str() {
        "half_pixel" => Coord::HalfPixel,
        "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coord::PytorchHalfPixel,
        "align_corners" => Coord::AlignCorners,
        "asymmetric" => Coord::Asymmetric,
        "tf_crop_and_resize" => Coord::TfCropAndResize,
        "tf_half_pixel_for_nn" => Coord::HalfPixel,
        other => bail!("unknown coordinate_transformation_mode '{other}'"),
    };
    let policy = match n.attr_string_or("keep_aspect_ratio_policy", "stretch")?.as_str() {
        "stretch" => Policy::Stretch,
        "not_larger" => Policy::NotLarger,
        "not_smaller" => Policy::NotSmaller,
        other => bail!("unknown keep_aspect_ratio_policy '{other}'"),
    };
    let antialias = n.attr_int_or("antialias", 0)? != 0;
    if antialias && matches!(mode, Mode::Nearest(_)) {
        bail!("antialias is not supported with nearest mode");
    }
    Ok(Box::new(ResizeOp {
        mode,
        coord,
        cubic_a: n.attr_float_or("cubic_coeff_a", -0.75)? as f64,
        exclude_outside: n.attr_int_or("exclude_outside", 0)? != 0,
        extrapolation: n.attr_float_or("extrapolation_value", 0.0)? as f64,
        antialias,
        axes: n.attr_ints("axes")?,
        policy,
        scales_attr: None,
        roi_idx: Some(1),
        scales_idx: Some(2),
        sizes_idx: Some(3),
    }))
}

fn legacy(mode: Mode, scales_attr: Option<Vec<f32>>, scales_idx: Option<usize>) -> ResizeOp {
    ResizeOp {
        mode,
        coord: Coord::Asymmetric,
        cubic_a: -0.75,
        exclude_outside: false,
        extrapolation: 0.0,
        antialias: false,
        axes: None,
        policy: Policy::Stretch,
        scales_attr,
        roi_idx: None,
        scales_idx,
        sizes_idx: None,
    }
}

fn build_upsample(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let mode = parse_mode(&n.attr_string_or("mode", "nearest")?, NearestMode::Simple)?;
    if mode == Mode::Cubic {
        bail!("Upsample supports only nearest and linear modes");
    }
    if n.opset < 9 {
        let scales = n.attr_floats("scales")?.ok_or_else(|| OpError::new("Upsample-7 needs the scales attribute"))?;
        Ok(Box::new(legacy(mode, Some(scales), None)))
    } else {
        Ok(Box::new(legacy(mode, None, Some(1))))
    }
}

/// Per-dimension geometry of one resize call.
struct Geometry {
    out_shape: Vec<usize>,
    scales: Vec<f64>,
    /// (start, end) of the region of interest, normalised, per dimension.
    roi: Vec<(f64, f64)>,
}

impl ResizeOp {
    fn opt_nonempty<'a>(&self, inputs: &Inputs<'a>, idx: Option<usize>) -> OpResult<Option<&'a Tensor>> {
        match idx {
            None => Ok(None),
            Some(i) => Ok(inputs.opt_tensor(i)?.filter(|t| !t.is_empty())),
        }
    }

    fn geometry(&self, inputs: &Inputs, in_shape: &[usize]) -> OpResult<Geometry> {
        let r = in_shape.len();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => {
                let mut out = Vec::with_capacity(a.len());
                for &x in a {
                    let x = norm_axis(x, r)?;
                    if out.contains(&x) {
                        bail!("axis {x} is given twice");
                    }
                    out.push(x);
                }
                out
            }
            None => (0..r).collect(),
        };
        let na = axes.len();
        let mut scales = vec![1.0f64; r];
        let mut out_shape = in_shape.to_vec();
        let scales_given: Option<Vec<f64>> = match &self.scales_attr {
            Some(s) => Some(s.iter().map(|&x| x as f64).collect()),
            None => match self.opt_nonempty(inputs, self.scales_idx)? {
                Some(t) => {
                    ensure_float_tensor(t, "scales")?;
                    Some(t.to_f64_vec()?)
                }
                None => None,
            },
        };
        if let Some(s) = scales_given {
            if s.len() != na {
                bail!("scales has {} values but {} axes are resized", s.len(), na);
            }
            for (i, &d) in axes.iter().enumerate() {
                let sc = s[i];
                if !sc.is_finite() || sc <= 0.0 {
                    bail!("scale {sc} for axis {d} must be positive and finite");
                }
                scales[d] = sc;
                let o = (sc * in_shape[d] as f64).floor();
                if o > kiln_tensor::MAX_ELEMENTS as f64 {
                    bail!("resize output dim {o} is too large");
                }
                out_shape[d] = o as usize;
            }
        } else if let Some(t) = self.opt_nonempty(inputs, self.sizes_idx)? {
            let sz = t.to_i64_vec()?;
            if sz.len() != na {
                bail!("sizes has {} values but {} axes are resized", sz.len(), na);
            }
            let mut sizes = Vec::with_capacity(na);
            for &v in &sz {
                sizes.push(usize::try_from(v).map_err(|_| OpError(format!("sizes must be non-negative, got {v}")))?);
            }
            for (i, &d) in axes.iter().enumerate() {
                if in_shape[d] == 0 {
                    bail!("cannot resize an empty axis {d} to size {}", sizes[i]);
                }
                scales[d] = sizes[i] as f64 / in_shape[d] as f64;
                out_shape[d] = sizes[i];
            }
            if self.policy != Policy::Stretch && na > 0 {
                let it = axes.iter().map(|&d| scales[d]);
                let s = if self.policy == Policy::NotLarger {
                    it.fold(f64::INFINITY, f64::min)
                } else {
                    it.fold(f64::NEG_INFINITY, f64::max)
                };
                for &d in &axes {
                    scales[d] = s;
                    out_shape[d] = (s * in_shape[d] as f64 + 0.5) as usize;
                }
            }
        } else {
            bail!("Resize needs either scales or sizes");
        }
        kiln_tensor::checked_numel(&out_shape)?;
        let mut roi = vec![(0.0f64, 1.0f64); r];
        if self.coord == Coord::TfCropAndResize {
            if let Some(t) = self.opt_nonempty(inputs, self.roi_idx)? {
                let v = t.to_f64_vec()?;
                if v.len() != 2 * na {
                    bail!("roi has {} values, expected {}", v.len(), 2 * na);
                }
                for (i, &d) in axes.iter().enumerate() {
                    roi[d] = (v[i], v[na + i]);
                }
            }
        }
        Ok(Geometry { out_shape, scales, roi })
    }

    /// Source coordinate of output index `y` along one axis, and whether it is extrapolated.
    fn source_coord(&self, y: usize, scale: f64, in_len: usize, out_len: usize, roi: (f64, f64)) -> (f64, bool) {
        let y = y as f64;
        let inf = in_len as f64;
        let out_w = scale * inf;
        match self.coord {
            Coord::AlignCorners => (if out_w == 1.0 { 0.0 } else { y * (inf - 1.0) / (out_w - 1.0) }, false),
            Coord::Asymmetric => (y / scale, false),
            Coord::TfCropAndResize => {
                let x = if out_w == 1.0 {
                    (roi.1 - roi.0) * (inf - 1.0) / 2.0
                } else {
                    y * (roi.1 - roi.0) * (inf - 1.0) / (out_w - 1.0)
                } + roi.0 * (inf - 1.0);
                (x, x < 0.0 || x > inf - 1.0)
            }
            Coord::PytorchHalfPixel => (if out_w == 1.0 { -0.5 } else { (y + 0.5) / scale - 0.5 }, false),
            Coord::HalfPixel => ((y + 0.5) / scale - 0.5, false),
            Coord::HalfPixelSymmetric => {
                let adjustment = out_len as f64 / out_w;
                let offset = inf / 2.0 * (1.0 - adjustment);
                (offset + (y + 0.5) / scale - 0.5, false)
            }
        }
    }

    /// Interpolation weights for one axis: `n` taps per output position (indices clamped).
    fn taps(&self, scale: f64, in_len: usize, out_len: usize, roi: (f64, f64)) -> Taps {
        let mut t = Taps { n: 0, idx: Vec::new(), w: Vec::new(), extrapolated: Vec::with_capacity(out_len) };
        let mut coeffs: Vec<f64> = Vec::new();
        for y in 0..out_len {
            let (x, ext) = self.source_coord(y, scale, in_len, out_len, roi);
            t.extrapolated.push(ext);
            let p = x.floor();
            let integer = x == p;
            let ratio = if integer { 1.0 } else { x - p };
            coeffs.clear();
            match self.mode {
                Mode::Linear if self.antialias => linear_aa(ratio, scale, &mut coeffs),
                Mode::Linear => coeffs.extend([1.0 - ratio, ratio]),
                Mode::Cubic if self.antialias => cubic_aa(ratio, scale, self.cubic_a, &mut coeffs),
                Mode::Cubic => cubic(ratio, self.cubic_a, &mut coeffs),
                Mode::Nearest(_) => coeffs.push(1.0),
            }
            let n = coeffs.len();
            t.n = n;
            let half = (n / 2) as i64;
            let p = p as i64;
            let start = if integer { p - half } else { p - half + 1 };
            let last = in_len as i64 - 1;
            if self.exclude_outside {
                let mut sum = 0.0;
                for (k, c) in coeffs.iter_mut().enumerate() {
                    let i = start + k as i64;
                    if i < 0 || i > last {
                        *c = 0.0;
                    }
                    sum += *c;
                }
                if sum != 0.0 {
                    coeffs.iter_mut().for_each(|c| *c /= sum);
                }
            }
            for (k, &c) in coeffs.iter().enumerate() {
                t.idx.push((start + k as i64).clamp(0, last.max(0)) as usize);
                t.w.push(c);
            }
        }
        t
    }

    /// Source index of output `y` for nearest mode.
    fn nearest_index(&self, nm: NearestMode, x: f64, scale: f64, in_len: usize) -> usize {
        let f = x.floor();
        let frac = x - f;
        let i = match nm {
            NearestMode::RoundPreferFloor => {
                if frac <= 0.5 {
                    f
                } else {
                    f + 1.0
                }
            }
            NearestMode::RoundPreferCeil => {
                if frac < 0.5 {
                    f
                } else {
                    f + 1.0
                }
            }
            NearestMode::Floor => f,
            NearestMode::Ceil => x.ceil(),
            NearestMode::Simple => {
                if scale < 1.0 {
                    x.ceil()
                } else {
                    x.trunc()
                }
            }
        };
        (i.max(0.0) as usize).min(in_len.saturating_sub(1))
    }
}

struct Taps {
    n: usize,
    idx: Vec<usize>,
    w: Vec<f64>,
    extrapolated: Vec<bool>,
}

fn cubic(r: f64, a: f64, out: &mut Vec<f64>) {
    let s = 1.0 - r;
    out.extend([
        ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
        ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
        ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
        ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
    ]);
}

fn cubic_aa(ratio: f64, scale: f64, a: f64, out: &mut Vec<f64>) {
    let scale = scale.min(1.0);
    let coeff = |x: f64| {
        let x = x.abs();
        let (x2, x3) = (x * x, x * x * x);
        if x <= 1.0 {
            (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
        } else if x < 2.0 {
            a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
        } else {
            0.0
        }
    };
    let start = (-2.0 / scale).floor() as i64 + 1;
    let end = 2 - start;
    let base = out.len();
    for i in start..end {
        out.push(coeff(scale * (i as f64 - ratio)));
    }
    normalise(&mut out[base..]);
}

fn linear_aa(ratio: f64, scale: f64, out: &mut Vec<f64>) {
    let scale = scale.min(1.0);
    let start = (-1.0 / scale).floor() as i64 + 1;
    let footprint = 2 - 2 * start;
    let base = out.len();
    for i in start..start + footprint {
        out.push((1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0));
    }
    normalise(&mut out[base..]);
}

fn normalise(c: &mut [f64]) {
    let s: f64 = c.iter().sum();
    if s != 0.0 {
        c.iter_mut().for_each(|x| *x /= s);
    }
}

fn ensure_float_tensor(t: &Tensor, what: &str) -> OpResult<()> {
    if !t.dtype().is_float() {
        bail!("{what} must be a float tensor, got {}", t.dtype());
    }
    Ok(())
}

/// Compute type for interpolation.
trait RF: Copy + Send + Sync + 'static {
    fn of(x: f64) -> Self;
    fn mul_add(self, w: Self, acc: Self) -> Self;
    fn zero() -> Self;
}
impl RF for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn mul_add(self, w: Self, acc: Self) -> Self {
        acc + self * w
    }
    fn zero() -> Self {
        0.0
    }
}
impl RF for f64 {
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn mul_add(self, w: Self, acc: Self) -> Self {
        acc + self * w
    }
    fn zero() -> Self {
        0.0
    }
}

/// Resamples [outer, in_len, inner] to [outer, out_len, inner] with the taps of one axis.
fn apply_axis<F: RF>(x: &[F], outer: usize, in_len: usize, inner: usize, taps: &Taps, extrap: F) -> Vec<F> {
    let out_len = taps.extrapolated.len();
    let n = taps.n;
    let w: Vec<F> = taps.w.iter().map(|&v| F::of(v)).collect();
    let mut out = vec![F::zero(); outer * out_len * inner];
    for o in 0..outer {
        let src = &x[o * in_len * inner..][..in_len * inner];
        let dst = &mut out[o * out_len * inner..][..out_len * inner];
        for y in 0..out_len {
            let row = &mut dst[y * inner..][..inner];
            if taps.extrapolated[y] {
                row.iter_mut().for_each(|v| *v = extrap);
                continue;
            }
            for k in 0..n {
                let i = taps.idx[y * n + k];
                let wk = w[y * n + k];
                let s = &src[i * inner..][..inner];
                for (d, &v) in row.iter_mut().zip(s) {
                    *d = v.mul_add(wk, *d);
                }
            }
        }
    }
    out
}

impl ResizeOp {
    fn interpolate<F: RF>(&self, mut data: Vec<F>, in_shape: &[usize], g: &Geometry) -> Vec<F> {
        let mut shape = in_shape.to_vec();
        for d in 0..shape.len() {
            let identity = (g.scales[d] - 1.0).abs() < 1e-9
                && g.out_shape[d] == shape[d]
                && g.roi[d].0.abs() < 1e-9
                && (g.roi[d].1 - 1.0).abs() < 1e-9;
            if identity {
                continue;
            }
            let taps = self.taps(g.scales[d], shape[d], g.out_shape[d], g.roi[d]);
            let outer: usize = shape[..d].iter().product();
            let inner: usize = shape[d + 1..].iter().product();
            data = apply_axis(&data, outer, shape[d], inner, &taps, F::of(self.extrapolation));
            shape[d] = g.out_shape[d];
        }
        data
    }

    fn run_nearest(&self, nm: NearestMode, x: &Tensor, g: &Geometry) -> OpResult<Tensor> {
        let in_shape = x.shape();
        let r = in_shape.len();
        // Per-axis source index (None = extrapolated).
        let mut maps: Vec<Vec<Option<usize>>> = Vec::with_capacity(r);
        for d in 0..r {
            let (inl, outl) = (in_shape[d], g.out_shape[d]);
            let m = (0..outl)
                .map(|y| {
                    let (xc, ext) = self.source_coord(y, g.scales[d], inl, outl, g.roi[d]);
                    (!ext).then(|| self.nearest_index(nm, xc, g.scales[d], inl))
                })
                .collect();
            maps.push(m);
        }
        let n: usize = g.out_shape.iter().product();
        let in_strides = kiln_tensor::strides_of(in_shape);
        let mut idx = Vec::with_capacity(n);
        let mut extrapolated = Vec::new();
        if n > 0 && !x.is_empty() {
            // Odometer over output coordinates.
            let mut pos = vec![0usize; r];
            for flat in 0..n {
                let mut src = 0usize;
                let mut ext = false;
                for d in 0..r {
                    match maps[d][pos[d]] {
                        Some(i) => src += i * in_strides[d],
                        None => ext = true,
                    }
                }
                if ext {
                    extrapolated.push(flat);
                }
                idx.push(src);
                let mut d = r;
                while d > 0 {
                    d -= 1;
                    pos[d] += 1;
                    if pos[d] < g.out_shape[d] {
                        break;
                    }
                    pos[d] = 0;
                }
            }
        } else if n > 0 {
            bail!("cannot resize an empty tensor of shape {in_shape:?} to {:?}", g.out_shape);
        }
        let mut data = x.data().gather(&idx);
        if !extrapolated.is_empty() {
            fill_positions(&mut data, &extrapolated, self.extrapolation)?;
        }
        Ok(Tensor::new(g.out_shape.clone(), data)?)
    }
}

/// Writes `v` (cast to the tensor's dtype) at the given flat positions.
fn fill_positions(data: &mut TensorData, pos: &[usize], v: f64) -> OpResult<()> {
    macro_rules! fill {
        ($vec:expr, $val:expr) => {{
            let val = $val;
            for &p in pos {
                $vec[p] = val;
            }
        }};
    }
    match data {
        TensorData::F32(d) => fill!(d, v as f32),
        TensorData::F64(d) => fill!(d, v),
        TensorData::F16(d) => fill!(d, f16::from_f64(v)),
        TensorData::BF16(d) => fill!(d, bf16::from_f64(v)),
        TensorData::I8(d) => fill!(d, v as i8),
        TensorData::I16(d) => fill!(d, v as i16),
        TensorData::I32(d) => fill!(d, v as i32),
        TensorData::I64(d) => fill!(d, v as i64),
        TensorData::U8(d) => fill!(d, v as u8),
        TensorData::U16(d) => fill!(d, v as u16),
        TensorData::U32(d) => fill!(d, v as u32),
        TensorData::U64(d) => fill!(d, v as u64),
        TensorData::Bool(d) => fill!(d, v != 0.0),
        TensorData::String(_) => bail!("extrapolation is not defined for string tensors"),
        other => bail!("extrapolation is not supported for {} tensors", other.dtype()),
    }
    Ok(())
}

impl Op for ResizeOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let g = self.geometry(inputs, x.shape())?;
        if let Mode::Nearest(nm) = self.mode {
            return Ok(vec![Value::Tensor(self.run_nearest(nm, x, &g)?)]);
        }
        let n_out: usize = g.out_shape.iter().product();
        if x.is_empty() {
            if n_out > 0 {
                bail!("cannot resize an empty tensor of shape {:?} to {:?}", x.shape(), g.out_shape);
            }
            return Ok(vec![Value::Tensor(Tensor::zeros(x.dtype(), g.out_shape.clone())?)]);
        }
        let shape = x.shape();
        macro_rules! via {
            ($F:ty, $v:expr, $to:expr, $back:expr) => {{
                let data: Vec<$F> = $v.iter().map($to).collect();
                let out = self.interpolate::<$F>(data, shape, &g);
                out.into_iter().map($back).collect()
            }};
        }
        fn sat<T: TryFrom<i64> + Copy + Default>(x: f64, lo: f64, hi: f64) -> T {
            let r = x.round_ties_even().clamp(lo, hi);
            T::try_from(r as i64).unwrap_or_default()
        }
        let data = match x.data() {
            TensorData::F32(v) => TensorData::F32(self.interpolate::<f32>(v.clone(), shape, &g)),
            TensorData::F64(v) => TensorData::F64(self.interpolate::<f64>(v.clone(), shape, &g)),
            TensorData::F16(v) => TensorData::F16(via!(f32, v, |x| x.to_f32(), f16::from_f32)),
            TensorData::BF16(v) => TensorData::BF16(via!(f32, v, |x| x.to_f32(), bf16::from_f32)),
            TensorData::U8(v) => TensorData::U8(via!(f32, v, |&x| x as f32, |x| sat::<u8>(x as f64, 0.0, 255.0))),
            TensorData::I8(v) => TensorData::I8(via!(f32, v, |&x| x as f32, |x| sat::<i8>(x as f64, -128.0, 127.0))),
            TensorData::U16(v) => TensorData::U16(via!(f32, v, |&x| x as f32, |x| sat::<u16>(x as f64, 0.0, 65535.0))),
            TensorData::I16(v) => {
                TensorData::I16(via!(f32, v, |&x| x as f32, |x| sat::<i16>(x as f64, -32768.0, 32767.0)))
            }
            TensorData::I32(v) => {
                TensorData::I32(via!(f64, v, |&x| x as f64, |x| sat::<i32>(x, i32::MIN as f64, i32::MAX as f64)))
            }
            TensorData::U32(v) => TensorData::U32(via!(f64, v, |&x| x as f64, |x| sat::<u32>(x, 0.0, u32::MAX as f64))),
            TensorData::I64(v) => TensorData::I64(via!(f64, v, |&x| x as f64, |x: f64| {
                x.round_ties_even().clamp(i64::MIN as f64, i64::MAX as f64) as i64
            })),
            TensorData::U64(v) => TensorData::U64(via!(f64, v, |&x| x as f64, |x: f64| {
                x.round_ties_even().clamp(0.0, u64::MAX as f64) as u64
            })),
            other => bail!("Resize does not support {} tensors in this mode", other.dtype()),
        };
        Ok(vec![Value::Tensor(Tensor::new(g.out_shape, data)?)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let t = inputs.first().copied().flatten()?;
        let dtype: DType = t.tensor_dtype()?;
        let in_shape = t.tensor_shape().and_then(|s| s.as_fixed());
        // Only when the output shape follows from constants and a fixed input shape.
        let shape = in_shape.and_then(|s| {
            let mut owned: Vec<Option<Value>> = vec![None; inputs.len()];
            for (i, c) in consts.iter().enumerate() {
                if Some(i) == self.roi_idx || Some(i) == self.scales_idx || Some(i) == self.sizes_idx {
                    match (c, inputs.get(i).copied().flatten()) {
                        (Some(c), _) => owned[i] = Some(Value::Tensor((*c).clone())),
                        (None, Some(_)) => return None,
                        (None, None) => {}
                    }
                }
            }
            let refs: Vec<Option<&Value>> = owned.iter().map(|v| v.as_ref()).collect();
            let g = self.geometry(&Inputs::new(&refs), &s).ok()?;
            Some(Shape::fixed(&g.out_shape))
        });
        Some(vec![ValueType::tensor(dtype, shape)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(mode: Mode, coord: Coord) -> ResizeOp {
        ResizeOp {
            mode,
            coord,
            cubic_a: -0.75,
            exclude_outside: false,
            extrapolation: 0.0,
            antialias: false,
            axes: None,
            policy: Policy::Stretch,
            scales_attr: None,
            roi_idx: Some(1),
            scales_idx: Some(2),
            sizes_idx: Some(3),
        }
    }

    fn run(o: &ResizeOp, x: Tensor, scales: Vec<f32>) -> Tensor {
        let s = Value::Tensor(Tensor::from_vec(vec![scales.len()], scales).unwrap());
        let x = Value::Tensor(x);
        let refs = [Some(&x), None, Some(&s), None];
        o.run(&Inputs::new(&refs)).unwrap().remove(0).into_tensor().unwrap()
    }

    #[test]
    fn linear_align_corners_1d() {
        // [0, 3] to 4 points with align_corners: 0, 1, 2, 3.
        let o = op(Mode::Linear, Coord::AlignCorners);
        let x = Tensor::from_vec(vec![2], vec![0.0f32, 3.0]).unwrap();
        let y = run(&o, x, vec![2.0]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn linear_half_pixel_1d() {
        // half_pixel, scale 2: x_ori = -0.25, 0.25, 0.75, 1.25 → clamped edges.
        let o = op(Mode::Linear, Coord::HalfPixel);
        let x = Tensor::from_vec(vec![2], vec![0.0f32, 4.0]).unwrap();
        let y = run(&o, x, vec![2.0]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn nearest_upsample_2x3() {
        // asymmetric: x_ori = y / 3 = 0, .33, .67, 1, 1.33, 1.67.
        let o = op(Mode::Nearest(NearestMode::Floor), Coord::Asymmetric);
        let x = Tensor::from_vec(vec![1, 2], vec![1i64, 2]).unwrap();
        let y = run(&o, x.clone(), vec![1.0, 3.0]);
        assert_eq!(y.shape(), &[1, 6]);
        assert_eq!(y.as_slice::<i64>().unwrap(), &[1, 1, 1, 2, 2, 2]);
        let o = op(Mode::Nearest(NearestMode::RoundPreferFloor), Coord::Asymmetric);
        let y = run(&o, x, vec![1.0, 3.0]);
        assert_eq!(y.as_slice::<i64>().unwrap(), &[1, 1, 2, 2, 2, 2]);
    }
}
