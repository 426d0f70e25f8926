//! Baseline TIFF decoding: first image, 8-bit chunky gray/RGB(A)/palette, uncompressed, PackBits or
//! Deflate, optional horizontal predictor.

use super::{check_dims, inflate, Bytes, Image, Pixels};
use crate::error::{OpError, OpResult};
use crate::{bail, ensure};

/// Values of one IFD entry, widened to u32.
fn entry_values(b: &Bytes, entry: usize) -> OpResult<Vec<u32>> {
    let ty = b.u16(entry + 2)?;
    let count = b.u32(entry + 4)? as usize;
    let size = match ty {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 => 4,
        _ => return Ok(Vec::new()),
    };
    ensure!(count <= 1 << 24, "ImageDecoder: TIFF tag has too many values");
    let total = size * count;
    let base = if total <= 4 { entry + 8 } else { b.u32(entry + 8)? as usize };
    (0..count)
        .map(|i| match size {
            1 => b.u8(base + i).map(u32::from),
            2 => b.u16(base + 2 * i).map(u32::from),
            _ => b.u32(base + 4 * i),
        })
        .collect()
}

fn packbits(src: &[u8], out: &mut Vec<u8>, want: usize) {
    let mut i = 0;
    while i < src.len() && out.len() < want {
        let n = src[i] as i8;
        i += 1;
        if n >= 0 {
            let len = n as usize + 1;
            let end = (i + len).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if n != -128 {
            if let Some(&v) = src.get(i) {
                out.extend(std::iter::repeat(v).take(1 - n as isize as usize));
            }
            i += 1;
        }
    }
}

pub(crate) fn decode(data: &[u8]) -> OpResult<Image> {
    let b = Bytes { data, big_endian: data[0] == b'M' };
    let ifd = b.u32(4)? as usize;
    let n = b.u16(ifd)? as usize;
    let mut width = 0;
    let mut height = 0;
    let mut bits = vec![1u32];
    let mut compression = 1;
    let mut photometric = None;
    let mut offsets = Vec::new();
    let mut counts = Vec::new();
    let mut spp = 1usize;
    let mut rows_per_strip = u32::MAX;
    let mut planar = 1;
    let mut predictor = 1;
    let mut colormap = Vec::new();
    for i in 0..n {
        let e = ifd + 2 + i * 12;
        let tag = b.u16(e)?;
        let first = || -> OpResult<u32> {
            entry_values(&b, e)?.first().copied().ok_or_else(|| OpError(format!("ImageDecoder: TIFF tag {tag} is empty")))
        };
        match tag {
            256 => width = first()? as usize,
            257 => height = first()? as usize,
            258 => bits = entry_values(&b, e)?,
            259 => compression = first()?,
            262 => photometric = Some(first()?),
            273 => offsets = entry_values(&b, e)?,
            277 => spp = first()? as usize,
            278 => rows_per_strip = first()?,
            279 => counts = entry_values(&b, e)?,
            284 => planar = first()?,
            317 => predictor = first()?,
            320 => colormap = entry_values(&b, e)?,
            _ => {}
        }
    }
    check_dims(width, height)?;
    ensure!(bits.iter().all(|&v| v == 8), "ImageDecoder: only 8-bit TIFF images are supported, got {bits:?} bits");
    ensure!(planar == 1 || spp == 1, "ImageDecoder: planar TIFF images are not supported");
    ensure!((1..=4).contains(&spp), "ImageDecoder: TIFF with {spp} samples per pixel is not supported");
    ensure!(offsets.len() == counts.len() && !offsets.is_empty(), "ImageDecoder: TIFF strip tables are inconsistent");
    let want = width * height * spp;
    let mut raw = Vec::new();
    for (&off, &cnt) in offsets.iter().zip(&counts) {
        if raw.len() >= want {
            break;
        }
        let strip = b.slice(off as usize, cnt as usize)?;
        match compression {
            1 => raw.extend_from_slice(strip),
            32773 => packbits(strip, &mut raw, want),
            8 | 32946 => {
                raw.extend(inflate::zlib(strip, want).map_err(|e| OpError(format!("ImageDecoder: invalid TIFF: {e}")))?)
            }
            c => bail!("ImageDecoder: TIFF compression {c} is not supported"),
        }
    }
    let _ = rows_per_strip;
    ensure!(raw.len() >= want, "ImageDecoder: TIFF image data is truncated");
    raw.truncate(want);
    if predictor == 2 {
        for row in raw.chunks_exact_mut(width * spp) {
            for i in spp..row.len() {
                row[i] = row[i].wrapping_add(row[i - spp]);
            }
        }
    }
    let photometric = photometric.unwrap_or(if spp >= 3 { 2 } else { 1 });
    let pixels = match (photometric, spp) {
        (0, 1) => Pixels::Gray(raw.iter().map(|&v| 255 - v).collect()),
        (1, 1) => Pixels::Gray(raw),
        (0 | 1, 2) => Pixels::Gray(raw.chunks_exact(2).map(|p| if photometric == 0 { 255 - p[0] } else { p[0] }).collect()),
        (2, 3) => Pixels::Rgb(raw),
        (2, 4) => Pixels::Rgb(raw.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()),
        (3, 1) => {
            ensure!(colormap.len() == 3 * 256, "ImageDecoder: TIFF palette image has no valid ColorMap");
            Pixels::Rgb(
                raw.iter()
                    .flat_map(|&i| {
                        let i = i as usize;
                        [(colormap[i] >> 8) as u8, (colormap[256 + i] >> 8) as u8, (colormap[512 + i] >> 8) as u8]
                    })
                    .collect(),
            )
        }
        (p, s) => bail!("ImageDecoder: TIFF photometric {p} with {s} samples is not supported"),
    };
    Ok(Image { width, height, pixels })
}

#[cfg(test)]
mod tests {
    use super::super::inflate::tests::{compress, sample_data};
    use super::*;
    use miniz_oxide::deflate::core::CompressionStrategy;

    /// A little-endian 8-bit RGB TIFF of `w`x`h` in strips of `rows` rows, each strip a
    /// separate zlib stream (compression 8).
    fn deflate_tiff(w: usize, h: usize, rows: usize, pixels: &[u8]) -> Vec<u8> {
        let strips: Vec<Vec<u8>> = pixels
            .chunks(w * 3 * rows)
            .enumerate()
            .map(|(i, s)| compress(s, [0, 1, 6][i % 3], CompressionStrategy::Default, &[]))
            .collect();
        let mut v = b"II*\0".to_vec();
        v.extend_from_slice(&8u32.to_le_bytes());
        let n = strips.len() as u32;
        // IFD, then the strip offset and count arrays, then the strips.
        let entries: [(u16, u16, u32, u32); 9] = [
            (256, 4, 1, w as u32),
            (257, 4, 1, h as u32),
            (258, 3, 1, 8),
            (259, 3, 1, 8),
            (262, 3, 1, 2),
            (273, 4, n, 0),
            (277, 3, 1, 3),
            (278, 4, 1, rows as u32),
            (279, 4, n, 0),
        ];
        let arrays = 8 + 2 + 12 * entries.len() + 4;
        let data = arrays + 8 * strips.len();
        v.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (tag, ty, count, value) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&ty.to_le_bytes());
            v.extend_from_slice(&count.to_le_bytes());
            let value = match tag {
                273 if n > 1 => arrays as u32,
                273 => data as u32,
                279 if n > 1 => (arrays + 4 * strips.len()) as u32,
                279 => strips[0].len() as u32,
                _ => value,
            };
            v.extend_from_slice(&value.to_le_bytes());
        }
        v.extend_from_slice(&0u32.to_le_bytes());
        let mut off = data;
        for s in &strips {
            v.extend_from_slice(&(off as u32).to_le_bytes());
            off += s.len();
        }
        for s in &strips {
            v.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        for s in &strips {
            v.extend_from_slice(s);
        }
        v
    }

    #[test]
    fn deflate_strips_decode_to_the_compressed_pixels() {
        for (w, h, rows) in [(1, 1, 1), (7, 5, 2), (33, 17, 17), (16, 9, 4)] {
            let pixels = sample_data(w * h * 3, (w * h) as u64);
            let tiff = deflate_tiff(w, h, rows, &pixels);
            let img = decode(&tiff).unwrap();
            assert_eq!((img.width, img.height), (w, h));
            assert!(matches!(&img.pixels, Pixels::Rgb(v) if *v == pixels), "{w}x{h} in strips of {rows}");
            for n in 8..tiff.len() {
                assert!(decode(&tiff[..n]).is_err(), "{w}x{h}: prefix of {n} bytes accepted");
            }
        }
    }
}
