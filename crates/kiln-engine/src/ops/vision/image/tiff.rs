//! Baseline TIFF decoding: first image, 8-bit chunky gray/RGB(A)/palette, uncompressed or PackBits,
//! optional horizontal predictor.

use super::{check_dims, Bytes, Image, Pixels};
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
        let strip = b.slice(off as usize, cnt as usize)?;
        match compression {
            1 => raw.extend_from_slice(strip),
            32773 => packbits(strip, &mut raw, want),
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
