//! WebP container (RIFF, RFC 9649): simple lossy ("VP8 ") and lossless ("VP8L") files and the
//! extended format ("VP8X") with an ALPH chunk or an animation, decoded into RGB the way
//! Pillow's `Image.open(f).convert("RGB")` sees them through libwebp: alpha is dropped; of an
//! animation, the first frame is returned on its canvas (outside the frame: black, the
//! transparent black of libwebp's animation decoder).
//!
//! The alpha plane is decoded (raw or VP8L-compressed) so that corrupt alpha data is an error as
//! in libwebp, but its spatial filter and pre-processing are not applied: they only change alpha.

use super::{check_dims, vp8, vp8l, Image, Pixels};
use crate::error::{OpError, OpResult};

pub(super) fn bad(what: &str) -> OpError {
    OpError(format!("ImageDecoder: invalid WebP: {what}"))
}

fn u24(b: &[u8], at: usize) -> usize {
    b[at] as usize | (b[at + 1] as usize) << 8 | (b[at + 2] as usize) << 16
}

type Chunk<'a> = (&'a [u8], &'a [u8]);

/// The chunks of a RIFF body: (FourCC, payload). A chunk running past the end is an error.
fn chunks(mut data: &[u8]) -> OpResult<Vec<Chunk<'_>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let head = data.get(..8).ok_or_else(|| bad("chunk header is truncated"))?;
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let payload = data.get(8..).and_then(|d| d.get(..size)).ok_or_else(|| bad("chunk is truncated"))?;
        out.push((&head[..4], payload));
        data = data.get(8 + size + (size & 1)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Checks an ALPH chunk for a `w` x `h` image: header, and raw samples or a VP8L stream.
fn check_alpha(alph: &[u8], w: usize, h: usize) -> OpResult<()> {
    let [head, data @ ..] = alph else {
        return Err(bad("ALPH chunk is empty"));
    };
    // Compression method 0 (raw) or 1 (VP8L), any filter, pre-processing 0 or 1, reserved 0.
    let method = head & 3;
    if method > 1 || head >> 4 > 1 {
        return Err(bad("invalid ALPH header"));
    }
    if method == 0 {
        if data.len() < w * h {
            return Err(bad("ALPH data is truncated"));
        }
    } else {
        vp8l::decode_stream(data, w, h)?;
    }
    Ok(())
}

/// Decodes the image of a chunk sequence ([ALPH], "VP8 " or "VP8L"; other chunks before the
/// image are skipped): (width, height, RGB samples).
fn frame(list: &[Chunk]) -> OpResult<(usize, usize, Vec<u8>)> {
    let mut alpha = None;
    for &(tag, payload) in list {
        match tag {
            b"ALPH" => {
                alpha = alpha.or(Some(payload));
            }
            b"VP8 " => {
                let (w, h, rgb) = vp8::decode(payload)?;
                if let Some(a) = alpha {
                    check_alpha(a, w, h)?;
                }
                return Ok((w, h, rgb));
            }
            b"VP8L" => {
                let (w, h, argb) = vp8l::decode(payload)?;
                let mut rgb = super::zeroed(w * h * 3)?;
                for (o, &p) in rgb.chunks_exact_mut(3).zip(&argb) {
                    o.copy_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
                }
                return Ok((w, h, rgb));
            }
            _ => {}
        }
    }
    Err(bad("no image data"))
}

/// Decodes a RIFF WebP file.
pub(crate) fn decode(bytes: &[u8]) -> OpResult<Image> {
    let size = bytes.get(4..8).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let body = bytes.get(12..size.saturating_add(8)).ok_or_else(|| bad("file is truncated"))?;
    let list = chunks(body)?;
    let (width, height, pixels) = match list.first() {
        Some((b"VP8X", x)) => {
            if x.len() < 10 {
                return Err(bad("VP8X chunk is truncated"));
            }
            let (cw, ch) = (u24(x, 4) + 1, u24(x, 7) + 1);
            check_dims(cw, ch)?;
            if x[0] & 2 == 0 {
                let (w, h, rgb) = frame(&list[1..])?;
                if (w, h) != (cw, ch) {
                    return Err(bad("image size differs from the canvas size"));
                }
                (w, h, rgb)
            } else {
                // Animation: the first frame, placed on a transparent (here black) canvas.
                let anmf = list.iter().find(|c| c.0 == b"ANMF").ok_or_else(|| bad("animation has no frames"))?.1;
                if anmf.len() < 16 {
                    return Err(bad("ANMF chunk is truncated"));
                }
                let (fx, fy) = (2 * u24(anmf, 0), 2 * u24(anmf, 3));
                let (w, h, rgb) = frame(&chunks(&anmf[16..])?)?;
                if (w, h) != (u24(anmf, 6) + 1, u24(anmf, 9) + 1) || fx + w > cw || fy + h > ch {
                    return Err(bad("animation frame does not fit its canvas"));
                }
                let mut canvas = super::zeroed(cw * ch * 3)?;
                for (y, src) in rgb.chunks_exact(w * 3).enumerate() {
                    let at = ((fy + y) * cw + fx) * 3;
                    canvas[at..at + w * 3].copy_from_slice(src);
                }
                (cw, ch, canvas)
            }
        }
        Some(_) => frame(&list)?,
        None => return Err(bad("file has no chunks")),
    };
    Ok(Image { width, height, pixels: Pixels::Rgb(pixels) })
}

#[cfg(test)]
mod tests {
    use super::super::testdata;
    use super::*;

    fn fixtures() -> Vec<(String, Vec<u8>)> {
        testdata::fixtures("webp", "webp", 40)
    }

    #[test]
    fn decodes_fixtures_like_libwebp() {
        testdata::check_fixtures("webp", &fixtures(), "libwebp", ("invalid_", "invalid WebP"), |d| {
            let img = super::super::decode(d)?;
            assert!(matches!(img.pixels, Pixels::Rgb(_)), "not RGB");
            Ok(img)
        });
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        for (name, data) in fixtures() {
            if !["lossy_q75", "lossy_alpha", "lossless_m6_q100", "lossless_11colors", "anim_offset", "lossy_partitions"]
                .contains(&name.as_str())
            {
                continue;
            }
            testdata::corrupt(&data, 400, |m| {
                if let Ok(img) = super::super::decode(m) {
                    assert!(img.check().is_ok());
                }
            });
        }
    }
}
