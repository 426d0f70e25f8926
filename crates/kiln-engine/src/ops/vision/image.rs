//! ImageDecoder: decodes an encoded image (JPEG, PNG, BMP, PNM, TIFF, WebP) into an
//! [H, W, 3] RGB/BGR or [H, W, 1] grayscale uint8 tensor.

use kiln_tensor::{DType, Dim, Shape, Tensor, Value, ValueType};

use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

mod bmp;
mod inflate;
mod jpeg;
mod png;
mod pnm;
mod tiff;
mod vp8;
mod vp8l;
mod webp;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PixelFormat {
    Rgb,
    Bgr,
    Gray,
}

pub(super) struct ImageDecoderOp {
    format: PixelFormat,
}

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let format = match n.attr_string_or("pixel_format", "RGB")?.as_str() {
        "RGB" => PixelFormat::Rgb,
        "BGR" => PixelFormat::Bgr,
        "Grayscale" => PixelFormat::Gray,
        other => bail!("ImageDecoder pixel_format '{other}' is not supported (RGB, BGR, Grayscale)"),
    };
    Ok(Box::new(ImageDecoderOp { format }))
}

/// A decoded image: 8-bit samples, row-major, interleaved.
pub(crate) struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: Pixels,
}

/// Sample layout of a decoded image.
pub(crate) enum Pixels {
    /// One luma byte per pixel.
    Gray(Vec<u8>),
    /// Three bytes per pixel, R G B.
    Rgb(Vec<u8>),
}

impl Image {
    pub(crate) fn check(&self) -> OpResult<()> {
        let n = self.width.checked_mul(self.height).ok_or_else(|| OpError::new("image is too large"))?;
        let (len, per) = match &self.pixels {
            Pixels::Gray(v) => (v.len(), 1),
            Pixels::Rgb(v) => (v.len(), 3),
        };
        ensure!(len == n * per, "decoded image has {len} samples, expected {}", n * per);
        Ok(())
    }
}

/// Luma as PIL computes it for RGB → L: ITU-R 601-2 weights in 16-bit fixed point, rounded.
#[inline]
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Decodes `bytes` by sniffing the container format.
pub(crate) fn decode(bytes: &[u8]) -> OpResult<Image> {
    let img = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        jpeg::decode(bytes)?
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png::decode(bytes)?
    } else if bytes.starts_with(b"BM") {
        bmp::decode(bytes)?
    } else if bytes.len() >= 2 && bytes[0] == b'P' && (b'1'..=b'6').contains(&bytes[1]) {
        pnm::decode(bytes)?
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        tiff::decode(bytes)?
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        webp::decode(bytes)?
    } else if bytes.starts_with(&[0, 0, 0, 0x0C, b'j', b'P', b' ', b' ']) || bytes.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        bail!("ImageDecoder: JPEG 2000 images are not supported")
    } else {
        bail!("ImageDecoder: unrecognized image format")
    };
    img.check()?;
    Ok(img)
}

fn to_format(img: Image, format: PixelFormat) -> OpResult<Tensor> {
    let (h, w) = (img.height, img.width);
    let out = match (img.pixels, format) {
        (Pixels::Rgb(v), PixelFormat::Rgb) => Tensor::from_vec(vec![h, w, 3], v)?,
        (Pixels::Rgb(mut v), PixelFormat::Bgr) => {
            for px in v.chunks_exact_mut(3) {
                px.swap(0, 2);
            }
            Tensor::from_vec(vec![h, w, 3], v)?
        }
        (Pixels::Rgb(v), PixelFormat::Gray) => {
            let g: Vec<u8> = v.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect();
            Tensor::from_vec(vec![h, w, 1], g)?
        }
        (Pixels::Gray(v), PixelFormat::Gray) => Tensor::from_vec(vec![h, w, 1], v)?,
        (Pixels::Gray(v), _) => {
            let rgb: Vec<u8> = v.iter().flat_map(|&g| [g, g, g]).collect();
            Tensor::from_vec(vec![h, w, 3], rgb)?
        }
    };
    Ok(out)
}

impl Op for ImageDecoderOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let t = inputs.tensor(0)?;
        ensure!(t.rank() == 1, "ImageDecoder input must be a 1-D uint8 tensor, got shape {:?}", t.shape());
        let bytes = t.as_slice::<u8>()?;
        let img = decode(bytes)?;
        Ok(vec![Value::Tensor(to_format(img, self.format)?)])
    }
    fn infer(&self, _: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let c = if self.format == PixelFormat::Gray { 1 } else { 3 };
        let shape = Shape(vec![Dim::unknown(), Dim::unknown(), Dim::Fixed(c)]);
        Some(vec![ValueType::tensor(DType::U8, Some(shape))])
    }
}

/// Little-endian / big-endian readers with bounds checks.
pub(crate) struct Bytes<'a> {
    pub data: &'a [u8],
    pub big_endian: bool,
}

impl<'a> Bytes<'a> {
    pub(crate) fn slice(&self, off: usize, len: usize) -> OpResult<&'a [u8]> {
        off.checked_add(len)
            .and_then(|end| self.data.get(off..end))
            .ok_or_else(|| OpError::new("ImageDecoder: image data is truncated"))
    }
    pub(crate) fn u8(&self, off: usize) -> OpResult<u8> {
        Ok(self.slice(off, 1)?[0])
    }
    pub(crate) fn u16(&self, off: usize) -> OpResult<u16> {
        let b = self.slice(off, 2)?;
        Ok(if self.big_endian { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) })
    }
    pub(crate) fn u32(&self, off: usize) -> OpResult<u32> {
        let b = self.slice(off, 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Ok(if self.big_endian { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
}

/// A zero-filled buffer, or an error instead of an abort when memory runs out.
pub(crate) fn zeroed<T: Clone + Default>(n: usize) -> OpResult<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| OpError::new("ImageDecoder: image is too large to decode"))?;
    v.resize(n, T::default());
    Ok(v)
}

/// Rejects absurd dimensions before allocating.
pub(crate) fn check_dims(w: usize, h: usize) -> OpResult<()> {
    ensure!(w > 0 && h > 0, "ImageDecoder: image has zero width or height");
    ensure!(
        w.checked_mul(h).is_some_and(|n| n <= (1 << 28)),
        "ImageDecoder: image of {w}x{h} pixels is too large"
    );
    Ok(())
}

/// Fixtures of the codec tests in tests/data/<format>, with Pillow's decodings beside them.
#[cfg(test)]
pub(crate) mod testdata {
    use std::path::PathBuf;

    fn dir(format: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(format)
    }

    /// The files `*.ext` of tests/data/`format`, sorted: (stem, bytes); at least `min` of them.
    pub(crate) fn fixtures(format: &str, ext: &str, min: usize) -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(dir(format)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == ext) {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                v.push((name, std::fs::read(&p).unwrap()));
            }
        }
        v.sort();
        assert!(v.len() >= min, "{format} fixtures missing in {}", dir(format).display());
        v
    }

    /// The reference decoding of fixture `name` from its binary PPM or PGM, if there is one:
    /// (width, height, samples).
    pub(crate) fn reference(format: &str, name: &str) -> Option<(usize, usize, Vec<u8>)> {
        let d = dir(format);
        let b = std::fs::read(d.join(format!("{name}.ppm"))).or_else(|_| std::fs::read(d.join(format!("{name}.pgm")))).ok()?;
        // Header: magic, width, height, maxval, each followed by whitespace.
        let mut fields = Vec::new();
        let mut i = 0;
        while fields.len() < 4 {
            while b[i].is_ascii_whitespace() {
                i += 1;
            }
            let start = i;
            while !b[i].is_ascii_whitespace() {
                i += 1;
            }
            fields.push(String::from_utf8_lossy(&b[start..i]).into_owned());
        }
        let channels = match fields[0].as_str() {
            "P5" => 1,
            "P6" => 3,
            m => panic!("{name}: unexpected PNM type {m}"),
        };
        assert_eq!(fields[3], "255");
        let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
        let data = b[i + 1..].to_vec();
        assert_eq!(data.len(), w * h * channels, "{name}: reference size");
        Some((w, h, data))
    }

    /// Decodes every fixture of tests/data/`format` with `decode` and compares it byte for byte
    /// with its reference decoding (made by `reference_by`, e.g. libjpeg through Pillow). Fixtures
    /// without a reference must be named `reject_prefix*` and fail with an error containing
    /// `reject_msg`.
    pub(crate) fn check_fixtures(
        format: &str,
        fixtures: &[(String, Vec<u8>)],
        reference_by: &str,
        (reject_prefix, reject_msg): (&str, &str),
        decode: impl Fn(&[u8]) -> crate::error::OpResult<super::Image>,
    ) {
        for (name, data) in fixtures {
            let Some((w, h, want)) = reference(format, name) else {
                assert!(name.starts_with(reject_prefix), "{name}: no reference decoding");
                let err = decode(data).err().unwrap_or_else(|| panic!("{name}: decoded a file that must be rejected"));
                assert!(err.0.contains(reject_msg), "{name}: {}", err.0);
                continue;
            };
            let img = decode(data).unwrap_or_else(|e| panic!("{name}: {}", e.0));
            assert_eq!((img.width, img.height), (w, h), "{name}: size");
            let got = match img.pixels {
                super::Pixels::Gray(v) | super::Pixels::Rgb(v) => v,
            };
            assert_eq!(got.len(), want.len(), "{name}: channel count");
            let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            let max = got.iter().zip(&want).map(|(&a, &b)| (a as i32 - b as i32).abs()).max().unwrap_or(0);
            assert!(diff == 0, "{name}: {diff} of {} samples differ from {reference_by} (max {max})", want.len());
        }
    }

    /// Calls `f` on every proper prefix of `data` and on `rounds` copies with 1 to 4 bytes
    /// overwritten (0xFF, 0 or a flipped bit) at pseudo-random places.
    pub(crate) fn corrupt(data: &[u8], rounds: usize, f: impl Fn(&[u8])) {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ data.len() as u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for n in 0..data.len() {
            f(&data[..n]);
        }
        for _ in 0..rounds {
            let mut m = data.to_vec();
            for _ in 0..1 + rand() % 4 {
                let i = (rand() % m.len() as u64) as usize;
                m[i] = match rand() % 4 {
                    0 => 0xFF,
                    1 => 0,
                    _ => m[i] ^ (1 << (rand() % 8)),
                };
            }
            f(&m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pil_weights() {
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
        // 0.299 * 100 + 0.587 * 50 + 0.114 * 200 = 82.05
        assert_eq!(luma(100, 50, 200), 82);
    }

    #[test]
    fn formats_convert() {
        let img = Image { width: 1, height: 1, pixels: Pixels::Rgb(vec![10, 20, 30]) };
        let t = to_format(img, PixelFormat::Bgr).unwrap();
        assert_eq!(t.as_slice::<u8>().unwrap(), &[30, 20, 10]);
        let img = Image { width: 2, height: 1, pixels: Pixels::Gray(vec![7, 9]) };
        let t = to_format(img, PixelFormat::Rgb).unwrap();
        assert_eq!(t.shape(), &[1, 2, 3]);
        assert_eq!(t.as_slice::<u8>().unwrap(), &[7, 7, 7, 9, 9, 9]);
    }

    /// A 2x2 24-bit bottom-up BMP: top row red, green; bottom row blue, white.
    fn tiny_bmp() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"BM");
        v.extend_from_slice(&(54u32 + 16).to_le_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&54u32.to_le_bytes());
        v.extend_from_slice(&40u32.to_le_bytes());
        v.extend_from_slice(&2i32.to_le_bytes());
        v.extend_from_slice(&2i32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&24u16.to_le_bytes());
        v.extend_from_slice(&[0; 24]);
        // Bottom row first (BGR), each row padded to 8 bytes.
        v.extend_from_slice(&[255, 0, 0, 255, 255, 255, 0, 0]);
        v.extend_from_slice(&[0, 0, 255, 0, 255, 0, 0, 0]);
        v
    }

    #[test]
    fn bmp_and_pnm_decode() {
        let img = decode(&tiny_bmp()).unwrap();
        let t = to_format(img, PixelFormat::Rgb).unwrap();
        assert_eq!(t.shape(), &[2, 2, 3]);
        assert_eq!(t.as_slice::<u8>().unwrap(), &[255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
        let pnm = b"P3\n# comment\n2 1\n255\n1 2 3 4 5 6\n";
        let t = to_format(decode(pnm).unwrap(), PixelFormat::Bgr).unwrap();
        assert_eq!(t.as_slice::<u8>().unwrap(), &[3, 2, 1, 6, 5, 4]);
        let pgm = b"P5 2 1 255\n\x10\x20";
        let t = to_format(decode(pgm).unwrap(), PixelFormat::Gray).unwrap();
        assert_eq!(t.as_slice::<u8>().unwrap(), &[16, 32]);
    }

    #[test]
    fn truncated_images_are_errors_not_panics() {
        let bmp = tiny_bmp();
        for n in 2..bmp.len() {
            assert!(decode(&bmp[..n]).is_err());
        }
        let pnm = b"P6\n2 2\n255\n0123456789ab";
        for n in 2..pnm.len() {
            assert!(decode(&pnm[..n]).is_err());
        }
    }

    /// Decode time of the image file named by KILN_IMAGE_BENCH (best of KILN_IMAGE_BENCH_RUNS,
    /// default 20).
    #[test]
    #[ignore]
    fn bench_decode() {
        let Ok(path) = std::env::var("KILN_IMAGE_BENCH") else { return };
        let data = std::fs::read(path).unwrap();
        let runs: usize = std::env::var("KILN_IMAGE_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
        let mut best = f64::MAX;
        for _ in 0..runs {
            let t = std::time::Instant::now();
            let img = decode(&data).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            std::hint::black_box(img);
        }
        println!("kiln decode: {:.3} ms (best of {runs})", best * 1e3);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"not an image").is_err());
        assert!(decode(b"").is_err());
    }
}
