//! Netpbm decoding: P1–P6 (bitmap, graymap, pixmap; ASCII and binary; 8- and 16-bit samples).

use super::{check_dims, Image, Pixels};
use crate::error::{OpError, OpResult};
use crate::ensure;

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn skip_space(&mut self) {
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b'#' => {
                    while self.pos < self.data.len() && self.data[self.pos] != b'\n' && self.data[self.pos] != b'\r' {
                        self.pos += 1;
                    }
                }
                c if c.is_ascii_whitespace() => self.pos += 1,
                _ => break,
            }
        }
    }
    fn number(&mut self) -> OpResult<usize> {
        self.skip_space();
        let start = self.pos;
        while self.pos < self.data.len() && self.data[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        ensure!(self.pos > start, "ImageDecoder: malformed PNM header or data");
        std::str::from_utf8(&self.data[start..self.pos])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| OpError::new("ImageDecoder: PNM number is out of range"))
    }
    /// The next ASCII bitmap digit (P1 allows digits without separators).
    fn bit(&mut self) -> OpResult<usize> {
        self.skip_space();
        match self.data.get(self.pos) {
            Some(&c @ (b'0' | b'1')) => {
                self.pos += 1;
                Ok((c - b'0') as usize)
            }
            _ => Err(OpError::new("ImageDecoder: malformed PBM data")),
        }
    }
}

fn scale(v: usize, maxval: usize) -> u8 {
    if maxval == 255 {
        v.min(255) as u8
    } else {
        ((v.min(maxval) * 255 + maxval / 2) / maxval) as u8
    }
}

pub(crate) fn decode(data: &[u8]) -> OpResult<Image> {
    let kind = data[1];
    let mut r = Reader { data, pos: 2 };
    let w = r.number()?;
    let h = r.number()?;
    check_dims(w, h)?;
    let maxval = if kind == b'1' || kind == b'4' { 1 } else { r.number()? };
    ensure!((1..=65535).contains(&maxval), "ImageDecoder: PNM maxval {maxval} is invalid");
    let channels = if kind == b'3' || kind == b'6' { 3 } else { 1 };
    let n = w * h * channels;
    let mut out = Vec::with_capacity(n.min(data.len() * 8));
    match kind {
        b'1' => {
            for _ in 0..n {
                out.push(if r.bit()? == 1 { 0 } else { 255 });
            }
        }
        b'2' | b'3' => {
            for _ in 0..n {
                out.push(scale(r.number()?, maxval));
            }
        }
        b'4' => {
            // One whitespace byte separates the header from the raster.
            let start = r.pos + 1;
            let row_bytes = w.div_ceil(8);
            let raster = data
                .get(start..start + row_bytes * h)
                .ok_or_else(|| OpError::new("ImageDecoder: PBM data is truncated"))?;
            for y in 0..h {
                for x in 0..w {
                    let bit = (raster[y * row_bytes + x / 8] >> (7 - x % 8)) & 1;
                    out.push(if bit == 1 { 0 } else { 255 });
                }
            }
        }
        _ => {
            let start = r.pos + 1;
            let bps = if maxval > 255 { 2 } else { 1 };
            let raster = data
                .get(start..start + n * bps)
                .ok_or_else(|| OpError::new("ImageDecoder: PNM data is truncated"))?;
            if bps == 1 {
                out.extend(raster.iter().map(|&v| scale(v as usize, maxval)));
            } else {
                out.extend(raster.chunks_exact(2).map(|c| scale(u16::from_be_bytes([c[0], c[1]]) as usize, maxval)));
            }
        }
    }
    let pixels = if channels == 3 { Pixels::Rgb(out) } else { Pixels::Gray(out) };
    Ok(Image { width: w, height: h, pixels })
}
