//! PNG (png) and WebP (image-webp) decoding into 8-bit gray or RGB.

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

pub(crate) fn decode_png(bytes: &[u8]) -> OpResult<Image> {
    let err = |e: png::DecodingError| OpError(format!("ImageDecoder: invalid PNG: {e}"));
    let mut dec = png::Decoder::new(Cursor::new(bytes));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(err)?;
    let (w, h) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    check_dims(w, h)?;
    let size = reader.output_buffer_size().ok_or_else(|| OpError::new("ImageDecoder: PNG is too large"))?;
    let mut buf = vec![0u8; size];
    let out = reader.next_frame(&mut buf).map_err(err)?;
    ensure!(out.bit_depth == png::BitDepth::Eight, "ImageDecoder: unexpected PNG output bit depth");
    let channels = out.color_type.samples();
    // Rows may be padded to line_size; compact them.
    let row = w * channels;
    if out.line_size != row {
        let mut packed = Vec::with_capacity(row * h);
        for y in 0..h {
            packed.extend_from_slice(&buf[y * out.line_size..y * out.line_size + row]);
        }
        buf = packed;
    }
    from_channels(w, h, buf, channels)
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
