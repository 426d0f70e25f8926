//! Windows BMP decoding: 1/4/8-bit palette, 16/24/32-bit (BI_RGB and BI_BITFIELDS), uncompressed.

use super::{check_dims, Bytes, Image, Pixels};
use crate::error::OpResult;
use crate::{bail, ensure};

/// Extracts the channel selected by `mask` from `v`, scaled to 8 bits.
fn channel(v: u32, mask: u32) -> u8 {
    if mask == 0 {
        return 0;
    }
    let shift = mask.trailing_zeros();
    let bits = (mask >> shift).count_ones();
    let x = (v & mask) >> shift;
    if bits >= 8 {
        (x >> (bits - 8)) as u8
    } else {
        let max = (1u32 << bits) - 1;
        ((x * 255 + max / 2) / max) as u8
    }
}

pub(crate) fn decode(data: &[u8]) -> OpResult<Image> {
    let b = Bytes { data, big_endian: false };
    let pix_off = b.u32(10)? as usize;
    let dib = b.u32(14)? as usize;
    let (width, height, bpp, compression) = if dib == 12 {
        (b.u16(18)? as i64, b.u16(20)? as i64, b.u16(24)?, 0)
    } else {
        ensure!(dib >= 40, "ImageDecoder: unsupported BMP header size {dib}");
        (b.u32(18)? as i32 as i64, b.u32(22)? as i32 as i64, b.u16(28)?, b.u32(30)?)
    };
    let top_down = height < 0;
    let w = usize::try_from(width).map_err(|_| crate::OpError::new("ImageDecoder: bad BMP width"))?;
    let h = height.unsigned_abs() as usize;
    check_dims(w, h)?;
    // Channel masks for 16/32-bit images.
    let (rm, gm, bm) = match (compression, bpp) {
        (0, 16) => (0x7C00, 0x03E0, 0x001F),
        (0, _) => (0x00FF_0000, 0x0000_FF00, 0x0000_00FF),
        (3, 16) | (3, 32) | (6, 16) | (6, 32) => {
            if dib >= 52 {
                (b.u32(54)?, b.u32(58)?, b.u32(62)?)
            } else {
                (b.u32(14 + dib)?, b.u32(18 + dib)?, b.u32(22 + dib)?)
            }
        }
        (c, _) => bail!("ImageDecoder: BMP compression {c} is not supported"),
    };
    let palette: Vec<[u8; 3]> = if bpp <= 8 {
        let entry = if dib == 12 { 3 } else { 4 };
        let used = if dib >= 40 { b.u32(46)? as usize } else { 0 };
        let count = if used == 0 { 1usize << bpp } else { used.min(256) };
        let start = 14 + dib + if compression == 3 && dib == 40 { 12 } else { 0 };
        (0..count)
            .map(|i| {
                let p = b.slice(start + i * entry, 3)?;
                Ok([p[2], p[1], p[0]])
            })
            .collect::<OpResult<_>>()?
    } else {
        Vec::new()
    };
    let row_bytes = (w * bpp as usize).div_ceil(32) * 4;
    b.slice(pix_off, row_bytes * h)?;
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        let src_row = if top_down { y } else { h - 1 - y };
        let row = b.slice(pix_off + src_row * row_bytes, row_bytes)?;
        let dst = &mut out[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            let px: [u8; 3] = match bpp {
                1 | 2 | 4 | 8 => {
                    let bits = bpp as usize;
                    let bit = x * bits;
                    let byte = row[bit / 8];
                    let idx = (byte >> (8 - bits - bit % 8)) & ((1u16 << bits) - 1) as u8;
                    *palette.get(idx as usize).ok_or_else(|| crate::OpError::new("ImageDecoder: BMP palette index out of range"))?
                }
                24 => [row[x * 3 + 2], row[x * 3 + 1], row[x * 3]],
                16 => {
                    let v = u16::from_le_bytes([row[x * 2], row[x * 2 + 1]]) as u32;
                    [channel(v, rm), channel(v, gm), channel(v, bm)]
                }
                32 => {
                    let v = u32::from_le_bytes([row[x * 4], row[x * 4 + 1], row[x * 4 + 2], row[x * 4 + 3]]);
                    [channel(v, rm), channel(v, gm), channel(v, bm)]
                }
                other => bail!("ImageDecoder: BMP with {other} bits per pixel is not supported"),
            };
            dst[x * 3..x * 3 + 3].copy_from_slice(&px);
        }
    }
    Ok(Image { width: w, height: h, pixels: Pixels::Rgb(out) })
}
