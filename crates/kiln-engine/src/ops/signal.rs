//! Signal operators: DFT, STFT, the Hann/Hamming/Blackman windows, MelWeightMatrix, BitCast.

mod dft;
mod fft;

use std::f64::consts::PI;

use kiln_tensor::{bf16, f16, DType, Dim, Shape, Tensor, TensorData, Value, ValueType};

use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("DFT", 17, dft::build_dft);
    r.add("STFT", 17, dft::build_stft);
    r.add("HannWindow", 17, |n| build_window(n, WindowKind::Hann));
    r.add("HammingWindow", 17, |n| build_window(n, WindowKind::Hamming));
    r.add("BlackmanWindow", 17, |n| build_window(n, WindowKind::Blackman));
    r.add("MelWeightMatrix", 17, build_mel);
    r.add("BitCast", 26, build_bitcast);
}

/// The single value of a scalar (or one-element) integer tensor.
pub(crate) fn scalar_i64(t: &Tensor, what: &str) -> OpResult<i64> {
    ensure!(t.len() == 1 && t.rank() <= 1, "{what} must be a scalar, got shape {:?}", t.shape());
    let v = t.to_i64_vec()?;
    Ok(v[0])
}

/// The single value of a scalar (or one-element) numeric tensor, as f64.
fn scalar_f64(t: &Tensor, what: &str) -> OpResult<f64> {
    ensure!(t.len() == 1 && t.rank() <= 1, "{what} must be a scalar, got shape {:?}", t.shape());
    let v = t.to_f64_vec()?;
    Ok(v[0])
}

/// Converts f64 values to a tensor of `dtype` (integers truncate toward zero and saturate).
pub(crate) fn from_f64(v: Vec<f64>, dtype: DType) -> OpResult<TensorData> {
    Ok(match dtype {
        DType::F64 => TensorData::F64(v),
        DType::F32 => TensorData::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F16 => TensorData::F16(v.iter().map(|&x| f16::from_f64(x)).collect()),
        DType::BF16 => TensorData::BF16(v.iter().map(|&x| bf16::from_f64(x)).collect()),
        DType::I8 => TensorData::I8(v.iter().map(|&x| x as i8).collect()),
        DType::I16 => TensorData::I16(v.iter().map(|&x| x as i16).collect()),
        DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
        DType::I64 => TensorData::I64(v.iter().map(|&x| x as i64).collect()),
        DType::U8 => TensorData::U8(v.iter().map(|&x| x as u8).collect()),
        DType::U16 => TensorData::U16(v.iter().map(|&x| x as u16).collect()),
        DType::U32 => TensorData::U32(v.iter().map(|&x| x as u32).collect()),
        DType::U64 => TensorData::U64(v.iter().map(|&x| x as u64).collect()),
        DType::Bool => TensorData::Bool(v.iter().map(|&x| x != 0.0).collect()),
        other => bail!("cannot produce a {other} tensor here"),
    })
}

/// Reads an `output_datatype` attribute (default float) and checks it is numeric.
fn output_datatype(n: &NodeInfo) -> OpResult<DType> {
    let code = n.attr_int_or("output_datatype", DType::F32 as i64)?;
    let dt = i32::try_from(code).ok().and_then(DType::from_onnx).ok_or_else(|| {
        OpError(format!(
            "output_datatype {code} ({}) is not supported",
            DType::onnx_code_name(i32::try_from(code).unwrap_or(-1))
        ))
    })?;
    ensure!(dt != DType::String && dt != DType::Bool, "output_datatype {dt} is not allowed");
    Ok(dt)
}

#[derive(Clone, Copy, Debug)]
enum WindowKind {
    Hann,
    Hamming,
    Blackman,
}

struct WindowOp {
    kind: WindowKind,
    periodic: bool,
    dtype: DType,
}

fn build_window(n: &NodeInfo, kind: WindowKind) -> OpResult<Box<dyn Op>> {
    let periodic = n.attr_int_or("periodic", 1)?;
    ensure!(matches!(periodic, 0 | 1), "periodic must be 0 or 1, got {periodic}");
    Ok(Box::new(WindowOp { kind, periodic: periodic == 1, dtype: output_datatype(n)? }))
}

/// Window values w[k], k < size. The denominator is `size` (periodic) or `size - 1` (symmetric);
/// a symmetric window of length 1 is [1].
fn window_values(kind: WindowKind, size: usize, periodic: bool) -> Vec<f64> {
    let denom = if periodic { size } else { size.saturating_sub(1) };
    if denom == 0 {
        return vec![1.0; size];
    }
    let d = denom as f64;
    (0..size)
        .map(|k| {
            let t = 2.0 * PI * k as f64 / d;
            match kind {
                WindowKind::Hann => 0.5 - 0.5 * t.cos(),
                WindowKind::Hamming => 25.0 / 46.0 - (21.0 / 46.0) * t.cos(),
                WindowKind::Blackman => 0.42 - 0.5 * t.cos() + 0.08 * (2.0 * t).cos(),
            }
        })
        .collect()
}

impl Op for WindowOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let size = scalar_i64(inputs.tensor(0)?, "window size")?;
        ensure!(size >= 0, "window size must be non-negative, got {size}");
        kiln_tensor::checked_numel(&[size as usize])?;
        let size = size as usize;
        let v = window_values(self.kind, size, self.periodic);
        Ok(vec![Value::Tensor(Tensor::new(vec![size], from_f64(v, self.dtype)?)?)])
    }
    fn infer(&self, _: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let dim = match consts.first().copied().flatten().map(|t| scalar_i64(t, "size")) {
            Some(Ok(s)) if s >= 0 => Dim::Fixed(s as usize),
            _ => Dim::unknown(),
        };
        Some(vec![ValueType::Tensor { dtype: self.dtype, shape: Some(Shape(vec![dim])) }])
    }
}

struct MelOp {
    dtype: DType,
}

fn build_mel(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(MelOp { dtype: output_datatype(n)? }))
}

/// Hertz → mel: 2595·log10(1 + f/700).
fn hz_to_mel_f32(f: f32) -> f32 {
    2595.0 * (f / 700.0).ln_1p() / std::f32::consts::LN_10
}

/// The triangular filterbank matrix [dft_length/2 + 1, num_mel_bins]. The band edges are computed
/// in the precision of the edge inputs (f64 for double, f32 otherwise), the bin positions in f64.
fn mel_matrix(
    num_mel: usize,
    dft_length: usize,
    sample_rate: i64,
    lower: f64,
    upper: f64,
    edges_f64: bool,
) -> OpResult<Vec<f64>> {
    let bins = dft_length / 2 + 1;
    let (low_mel, mel_step) = if edges_f64 {
        let lo = 2595.0 * (lower / 700.0).ln_1p() / std::f64::consts::LN_10;
        let hi = 2595.0 * (upper / 700.0).ln_1p() / std::f64::consts::LN_10;
        (lo, (hi - lo) / (num_mel + 2) as f64)
    } else {
        let lo = hz_to_mel_f32(lower as f32);
        let hi = hz_to_mel_f32(upper as f32);
        (lo as f64, ((hi - lo) / (num_mel + 2) as f32) as f64)
    };
    let sr = sample_rate as f64;
    let mut edges = Vec::with_capacity(num_mel + 2);
    for i in 0..num_mel + 2 {
        let mel = i as f64 * mel_step + low_mel;
        let hz = 700.0 * (mel / 2595.0 * std::f64::consts::LN_10).exp_m1();
        let b = ((dft_length as f64 + 1.0) * hz / sr).floor();
        ensure!(
            b.is_finite() && b >= 0.0 && b < bins as f64,
            "MelWeightMatrix: band edge {hz} Hz falls outside the {bins} spectrogram bins \
             (check lower/upper_edge_hertz against sample_rate)"
        );
        edges.push(b as usize);
    }
    let mut out = vec![0f64; bins * num_mel];
    for i in 0..num_mel {
        let (lo, c, hi) = (edges[i], edges[i + 1], edges[i + 2]);
        if c <= lo {
            // Degenerate rising edge (lo == c) gives a peak of 1; a falling one is impossible here.
            if c == lo {
                out[c * num_mel + i] = 1.0;
            }
        } else {
            for j in lo..=c {
                out[j * num_mel + i] = (j - lo) as f64 / (c - lo) as f64;
            }
        }
        if hi > c {
            for j in c..hi {
                out[j * num_mel + i] = (hi - j) as f64 / (hi - c) as f64;
            }
        }
    }
    Ok(out)
}

impl Op for MelOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let num_mel = scalar_i64(inputs.tensor(0)?, "num_mel_bins")?;
        let dft_length = scalar_i64(inputs.tensor(1)?, "dft_length")?;
        let sample_rate = scalar_i64(inputs.tensor(2)?, "sample_rate")?;
        let lo_t = inputs.tensor(3)?;
        let hi_t = inputs.tensor(4)?;
        ensure!(lo_t.dtype().is_float(), "lower_edge_hertz must be a float tensor, got {}", lo_t.dtype());
        ensure!(hi_t.dtype().is_float(), "upper_edge_hertz must be a float tensor, got {}", hi_t.dtype());
        let lower = scalar_f64(lo_t, "lower_edge_hertz")?;
        let upper = scalar_f64(hi_t, "upper_edge_hertz")?;
        ensure!(num_mel >= 0, "num_mel_bins must be non-negative, got {num_mel}");
        ensure!(dft_length >= 1, "dft_length must be positive, got {dft_length}");
        ensure!(sample_rate > 0, "sample_rate must be positive, got {sample_rate}");
        ensure!(
            lower >= 0.0 && lower <= upper,
            "need 0 <= lower_edge_hertz <= upper_edge_hertz, got {lower} and {upper}"
        );
        let shape = vec![dft_length as usize / 2 + 1, num_mel as usize];
        kiln_tensor::checked_numel(&shape)?;
        let m = mel_matrix(
            num_mel as usize,
            dft_length as usize,
            sample_rate,
            lower,
            upper,
            lo_t.dtype() == DType::F64,
        )?;
        Ok(vec![Value::Tensor(Tensor::new(shape, from_f64(m, self.dtype)?)?)])
    }
}

struct BitCastOp {
    to: DType,
}

fn build_bitcast(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let code = n.attr_int("to")?.ok_or_else(|| OpError::new("BitCast needs the 'to' attribute"))?;
    let to = i32::try_from(code).ok().and_then(DType::from_onnx).ok_or_else(|| {
        OpError(format!(
            "BitCast to {} (code {code}) is not supported",
            DType::onnx_code_name(i32::try_from(code).unwrap_or(-1))
        ))
    })?;
    ensure!(to != DType::String, "BitCast to string is not allowed");
    if let Some(from) = n.input_dtype(0) {
        check_bitcast(from, to)?;
    }
    Ok(Box::new(BitCastOp { to }))
}

fn check_bitcast(from: DType, to: DType) -> OpResult<()> {
    ensure!(from != DType::String, "BitCast from string is not allowed");
    ensure!(
        from.size() == to.size(),
        "BitCast needs types of the same width: {from} is {} bits, {to} is {} bits",
        from.size() * 8,
        to.size() * 8
    );
    Ok(())
}

/// The little-endian bytes of every element.
fn le_bytes(d: &TensorData) -> OpResult<Vec<u8>> {
    macro_rules! bytes {
        ($v:expr) => {
            $v.iter().flat_map(|x| x.to_le_bytes()).collect()
        };
    }
    Ok(match d {
        TensorData::F32(v) => bytes!(v),
        TensorData::F64(v) => bytes!(v),
        TensorData::F16(v) => bytes!(v),
        TensorData::BF16(v) => bytes!(v),
        TensorData::I8(v) => bytes!(v),
        TensorData::I16(v) => bytes!(v),
        TensorData::I32(v) => bytes!(v),
        TensorData::I64(v) => bytes!(v),
        TensorData::U8(v) => v.clone(),
        TensorData::U16(v) => bytes!(v),
        TensorData::U32(v) => bytes!(v),
        TensorData::U64(v) => bytes!(v),
        TensorData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        other => bail!("BitCast from {} is not supported", other.dtype()),
    })
}

/// Elements of `dtype` from little-endian bytes (a nonzero byte is `true` for bool).
fn from_le_bytes(b: &[u8], dtype: DType) -> OpResult<TensorData> {
    macro_rules! parse {
        ($t:ty, $var:ident) => {{
            const W: usize = std::mem::size_of::<$t>();
            TensorData::$var(
                b.chunks_exact(W)
                    .map(|c| {
                        let mut a = [0u8; W];
                        a.copy_from_slice(c);
                        <$t>::from_le_bytes(a)
                    })
                    .collect(),
            )
        }};
    }
    Ok(match dtype {
        DType::F32 => parse!(f32, F32),
        DType::F64 => parse!(f64, F64),
        DType::F16 => parse!(f16, F16),
        DType::BF16 => parse!(bf16, BF16),
        DType::I8 => parse!(i8, I8),
        DType::I16 => parse!(i16, I16),
        DType::I32 => parse!(i32, I32),
        DType::I64 => parse!(i64, I64),
        DType::U8 => TensorData::U8(b.to_vec()),
        DType::U16 => parse!(u16, U16),
        DType::U32 => parse!(u32, U32),
        DType::U64 => parse!(u64, U64),
        DType::Bool => TensorData::Bool(b.iter().map(|&x| x != 0).collect()),
        other => bail!("BitCast to {other} is not supported"),
    })
}

impl Op for BitCastOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        check_bitcast(x.dtype(), self.to)?;
        let data = if x.dtype() == self.to {
            x.data().clone()
        } else {
            from_le_bytes(&le_bytes(x.data())?, self.to)?
        };
        Ok(vec![Value::Tensor(Tensor::new(x.shape().to_vec(), data)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        match inputs.first().copied().flatten()? {
            ValueType::Tensor { dtype, shape } if check_bitcast(*dtype, self.to).is_ok() => {
                Some(vec![ValueType::Tensor { dtype: self.to, shape: shape.clone() }])
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_match_closed_forms() {
        // Periodic Hann of length 4: sin²(πk/4) = [0, 0.5, 1, 0.5].
        let h = window_values(WindowKind::Hann, 4, true);
        for (a, b) in h.iter().zip([0.0, 0.5, 1.0, 0.5]) {
            assert!((a - b).abs() < 1e-12);
        }
        // Symmetric Hamming of length 3: [2/23, 1, 2/23] with alpha = 25/46.
        let m = window_values(WindowKind::Hamming, 3, false);
        for (a, b) in m.iter().zip([2.0 / 23.0, 1.0, 2.0 / 23.0]) {
            assert!((a - b).abs() < 1e-12);
        }
        // Symmetric Blackman of length 3: [0, 1, 0].
        let bl = window_values(WindowKind::Blackman, 3, false);
        for (a, b) in bl.iter().zip([0.0, 1.0, 0.0]) {
            assert!((a - b).abs() < 1e-12);
        }
        assert_eq!(window_values(WindowKind::Hann, 1, false), vec![1.0]);
        assert!(window_values(WindowKind::Hann, 0, true).is_empty());
    }

    #[test]
    fn bitcast_reinterprets_bits() {
        let b = le_bytes(&TensorData::F32(vec![1.0, -2.0])).unwrap();
        assert_eq!(from_le_bytes(&b, DType::I32).unwrap(), TensorData::I32(vec![0x3f80_0000, 0xc000_0000u32 as i32]));
        let b = le_bytes(&TensorData::I8(vec![-1, 2])).unwrap();
        assert_eq!(from_le_bytes(&b, DType::U8).unwrap(), TensorData::U8(vec![255, 2]));
        assert!(check_bitcast(DType::F32, DType::I64).is_err());
    }

    #[test]
    fn mel_matrix_small_case() {
        // 2 bands over 0..4000 Hz, dft_length 8 at 8000 Hz. Band edges in mel are 0, 536.5, 1073.0
        // (step 2146.06/4), i.e. 0, 426.7, 1113.6 Hz, which fall in bins floor(9·f/8000) = 0, 0, 1.
        // Band 0 (0, 0, 1) peaks at bin 0; band 1 (0, 1, 2) peaks at bin 1.
        let m = mel_matrix(2, 8, 8000, 0.0, 4000.0, true).unwrap();
        assert_eq!(m, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        // An upper edge beyond the Nyquist bins is an error, not a panic.
        assert!(mel_matrix(2, 8, 8000, 0.0, 40000.0, true).is_err());
    }
}
