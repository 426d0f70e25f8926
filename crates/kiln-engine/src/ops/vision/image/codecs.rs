//! WebP (image-webp) decoding into 8-bit gray or RGB.

use std::io::Cursor;

use super::{check_dims, Image, Pixels};
use crate::error::{OpError, OpResult};
use crate::{bail, ensure};

/// Builds an image from interleaved 8-bit samples with 1 (gray), 2 (gray+alpha), 3 (RGB) or
/// 4 (RGBA) channels; alpha is dropped.
fn from_channels(width: usize, height: usize, buf: Vec<u8>, channels: usize) -> OpResult<Image> {
    check_dims(width, height)?;
    ensure!(
        buf.len() >= width * height * channels,
        "ImageDecoder: decoder returned {} bytes for a {width}x{height}x{channels} image",
        buf.len()
    );
    let n = width * height;
    let pixels = match channels {
        1 => Pixels::Gray(buf[..n].to_vec()),
        2 => Pixels::Gray(buf.chunks_exact(2).take(n).map(|p| p[0]).collect()),
        3 => {
            let mut buf = buf;
            buf.truncate(n * 3);
            Pixels::Rgb(buf)
        }
        4 => Pixels::Rgb(buf.chunks_exact(4).take(n).flat_map(|p| [p[0], p[1], p[2]]).collect()),
        c => bail!("ImageDecoder: {c}-channel images are not supported"),
    };
    Ok(Image { width, height, pixels })
}

pub(crate) fn decode_webp(bytes: &[u8]) -> OpResult<Image> {
    let err = |e: image_webp::DecodingError| OpError(format!("ImageDecoder: invalid WebP: {e}"));
    let mut dec = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(err)?;
    let (w, h) = dec.dimensions();
    let (w, h) = (w as usize, h as usize);
    check_dims(w, h)?;
    let channels = if dec.has_alpha() { 4 } else { 3 };
    let size = dec.output_buffer_size().ok_or_else(|| OpError::new("ImageDecoder: WebP is too large"))?;
    let mut buf = vec![0u8; size];
    dec.read_image(&mut buf).map_err(err)?;
    from_channels(w, h, buf, channels)
}
