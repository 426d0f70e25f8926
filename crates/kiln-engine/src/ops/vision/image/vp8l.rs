//! WebP lossless (VP8L, RFC 9649 section 3) decoding into ARGB pixels: prefix codes (simple and
//! code-length coded), colour cache, LZ77 backward references with the 2-D distance map, meta
//! prefix codes and the predictor, cross-colour, subtract-green and colour-indexing transforms.
//! Reading past the end of the data is an error, as in libwebp.

use super::inflate::{Bits, Huffman};
use super::webp::bad;
use super::zeroed;
use crate::error::OpResult;

/// Order in which the code-length code lengths are stored.
const CODE_LENGTH_ORDER: [u8; 19] = [17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// Distance codes 1..=120: (dy << 4) | (8 - dx) of the 2-D neighbourhood they stand for.
const DISTANCE_MAP: [u8; 120] = [
    0x18, 0x07, 0x17, 0x19, 0x28, 0x06, 0x27, 0x29, 0x16, 0x1a, 0x26, 0x2a, 0x38, 0x05, 0x37, 0x39, 0x15, 0x1b,
    0x36, 0x3a, 0x25, 0x2b, 0x48, 0x04, 0x47, 0x49, 0x14, 0x1c, 0x35, 0x3b, 0x46, 0x4a, 0x24, 0x2c, 0x58, 0x45,
    0x4b, 0x34, 0x3c, 0x03, 0x57, 0x59, 0x13, 0x1d, 0x56, 0x5a, 0x23, 0x2d, 0x44, 0x4c, 0x55, 0x5b, 0x33, 0x3d,
    0x68, 0x02, 0x67, 0x69, 0x12, 0x1e, 0x66, 0x6a, 0x22, 0x2e, 0x54, 0x5c, 0x43, 0x4d, 0x65, 0x6b, 0x32, 0x3e,
    0x78, 0x01, 0x77, 0x79, 0x53, 0x5d, 0x11, 0x1f, 0x64, 0x6c, 0x42, 0x4e, 0x76, 0x7a, 0x21, 0x2f, 0x75, 0x7b,
    0x31, 0x3f, 0x63, 0x6d, 0x52, 0x5e, 0x00, 0x74, 0x7c, 0x41, 0x4f, 0x10, 0x20, 0x62, 0x6e, 0x30, 0x73, 0x7d,
    0x51, 0x5f, 0x40, 0x72, 0x7e, 0x61, 0x6f, 0x50, 0x71, 0x7f, 0x60, 0x70,
];

/// The prefix codes of one group: green + length + cache, red, blue, alpha, distance.
type Group = [Huffman; 5];

enum Transform {
    /// Predictor or cross-colour (kind 0 or 1): block size bits and the block image.
    Blocks { kind: u8, bits: u32, data: Vec<u32> },
    SubtractGreen,
    /// Colour indexing: the palette (padded to 256 entries with transparent black) and the
    /// bundling bits (pixels per byte = 1 << bits).
    Palette { bits: u32, colors: Vec<u32> },
}

struct Decoder<'a> {
    br: Bits<'a>,
    len: usize,
}

fn div_round_up(n: usize, bits: u32) -> usize {
    (n + (1 << bits) - 1) >> bits
}

/// Adds two pixels channel by channel, modulo 256.
fn add(a: u32, b: u32) -> u32 {
    (((a & 0xff00ff00).wrapping_add(b & 0xff00ff00)) & 0xff00ff00) | (((a & 0x00ff00ff) + (b & 0x00ff00ff)) & 0x00ff00ff)
}

/// Prediction of predictor-transform `mode` from the left, top, top-left and top-right pixels.
fn predict(mode: u32, l: u32, t: u32, tl: u32, tr: u32) -> u32 {
    let ch = |p: u32, i: u32| (p >> (8 * i) & 0xff) as i32;
    match mode {
        1 => l,
        2 => t,
        3 => tr,
        4 => tl,
        5..=13 => {
            if mode == 11 {
                // Select: the neighbour closer (Manhattan distance) to the gradient estimate.
                let d: i32 = (0..4).map(|i| (ch(l, i) - ch(tl, i)).abs() - (ch(t, i) - ch(tl, i)).abs()).sum();
                return if d <= 0 { t } else { l };
            }
            // The rest work channel by channel; averages round down.
            (0..4).fold(0, |acc, i| {
                let (l, t, tl, tr) = (ch(l, i), ch(t, i), ch(tl, i), ch(tr, i));
                let avg = |a: i32, b: i32| (a + b) >> 1;
                let v = match mode {
                    5 => avg(avg(l, tr), t),
                    6 => avg(l, tl),
                    7 => avg(l, t),
                    8 => avg(tl, t),
                    9 => avg(t, tr),
                    10 => avg(avg(l, tl), avg(t, tr)),
                    12 => l + t - tl,
                    _ => avg(l, t) + (avg(l, t) - tl) / 2,
                };
                acc | (v.clamp(0, 255) as u32) << (8 * i)
            })
        }
        // 0, and 14 and 15, which libwebp treats as 0.
        _ => 0xff000000,
    }
}

/// Decoded value of a length or distance prefix symbol.
fn prefix_value(br: &mut Bits, sym: usize) -> usize {
    if sym < 4 {
        return sym + 1;
    }
    let extra = (sym as u32 - 2) >> 1;
    let offset = (2 + (sym & 1)) << extra;
    offset + br.bits(extra) + 1
}

impl Decoder<'_> {
    fn bits(&mut self, n: u32) -> usize {
        self.br.bits(n)
    }

    /// Fails once more bits were consumed than the data holds (libwebp reads up to 64 bits of
    /// zeros after a stream shorter than 8 bytes before it reports the end).
    fn check(&self) -> OpResult<()> {
        if self.br.consumed() > (self.len * 8).max(64) {
            return Err(bad("lossless data is truncated"));
        }
        Ok(())
    }

    fn code(&mut self, alphabet: usize) -> OpResult<Huffman> {
        let mut lengths = vec![0u8; alphabet];
        if self.bits(1) == 1 {
            // Simple code: one or two symbols of code length 1 (or 0 when alone).
            let two = self.bits(1) == 1;
            let first_bits = if self.bits(1) == 1 { 8 } else { 1 };
            let s = self.bits(first_bits);
            if let Some(l) = lengths.get_mut(s) {
                *l = 1;
            }
            if two {
                let s = self.bits(8);
                if let Some(l) = lengths.get_mut(s) {
                    *l = 1;
                }
            }
        } else {
            let mut cl = [0u8; 19];
            for &i in &CODE_LENGTH_ORDER[..self.bits(4) + 4] {
                cl[i as usize] = self.bits(3) as u8;
            }
            let cl = Huffman::complete(&cl).map_err(bad)?;
            let mut max_symbol = alphabet;
            if self.bits(1) == 1 {
                let n = 2 + 2 * self.bits(3) as u32;
                max_symbol = 2 + self.bits(n);
                if max_symbol > alphabet {
                    return Err(bad("prefix code has too many symbols"));
                }
            }
            let (mut i, mut prev) = (0, 8u8);
            while i < alphabet && max_symbol > 0 {
                max_symbol -= 1;
                let c = self.br.decode(&cl).map_err(bad)?;
                if c < 16 {
                    lengths[i] = c as u8;
                    i += 1;
                    if c != 0 {
                        prev = c as u8;
                    }
                } else {
                    let (extra, base, value) = [(2, 3, prev), (3, 3, 0), (7, 11, 0)][c - 16];
                    let n = self.bits(extra) + base;
                    let run = lengths.get_mut(i..i + n).ok_or_else(|| bad("code lengths overflow the alphabet"))?;
                    run.fill(value);
                    i += n;
                }
            }
        }
        self.check()?;
        Huffman::complete(&lengths).map_err(bad)
    }

    /// Decodes an entropy-coded image of `w` x `h` pixels. The main image (`level0`) starts with
    /// its transforms and may use meta prefix codes; these are inverted before returning.
    fn image(&mut self, w: usize, h: usize, level0: bool) -> OpResult<Vec<u32>> {
        let mut transforms = Vec::new();
        let mut xsize = w;
        while level0 && self.bits(1) == 1 {
            let kind = self.bits(2) as u8;
            if transforms.iter().any(|(k, _, _)| *k == kind) {
                return Err(bad("transform used twice"));
            }
            let t = match kind {
                0 | 1 => {
                    let bits = self.bits(3) as u32 + 2;
                    let data = self.image(div_round_up(xsize, bits), div_round_up(h, bits), false)?;
                    Transform::Blocks { kind, bits, data }
                }
                2 => Transform::SubtractGreen,
                _ => {
                    let n = self.bits(8) + 1;
                    let bits = match n {
                        0..=2 => 3,
                        3..=4 => 2,
                        5..=16 => 1,
                        _ => 0,
                    };
                    let mut colors = self.image(n, 1, false)?;
                    for i in 1..n {
                        colors[i] = add(colors[i], colors[i - 1]);
                    }
                    colors.resize(256, 0);
                    Transform::Palette { bits, colors }
                }
            };
            transforms.push((kind, xsize, t));
            if let Some((_, _, Transform::Palette { bits, .. })) = transforms.last() {
                xsize = div_round_up(xsize, *bits);
            }
        }
        let cache_bits = if self.bits(1) == 1 {
            let b = self.bits(4) as u32;
            if !(1..=11).contains(&b) {
                return Err(bad("invalid colour cache size"));
            }
            b
        } else {
            0
        };
        // Meta prefix codes: a sub-image whose green and red channels select the group.
        let mut meta = (0, Vec::new());
        let mut groups = 1;
        if level0 && self.bits(1) == 1 {
            let bits = self.bits(3) as u32 + 2;
            let img = self.image(div_round_up(xsize, bits), div_round_up(h, bits), false)?;
            groups = img.iter().map(|&p| (p >> 8 & 0xffff) as usize + 1).max().unwrap_or(1);
            meta = (bits, img);
        }
        let cache_size = if cache_bits > 0 { 1 << cache_bits } else { 0 };
        let mut codes: Vec<Group> = Vec::new();
        for _ in 0..groups {
            codes.push([
                self.code(256 + 24 + cache_size)?,
                self.code(256)?,
                self.code(256)?,
                self.code(256)?,
                self.code(40)?,
            ]);
        }
        let mut px = self.pixels(xsize, h, cache_bits, &codes, &meta)?;
        for (_, tw, t) in transforms.into_iter().rev() {
            px = inverse(t, px, tw, h)?;
        }
        Ok(px)
    }

    fn pixels(&mut self, w: usize, h: usize, cache_bits: u32, codes: &[Group], meta: &(u32, Vec<u32>)) -> OpResult<Vec<u32>> {
        let n = w.checked_mul(h).ok_or_else(|| bad("image is too large"))?;
        let mut px: Vec<u32> = zeroed(n)?;
        let mut cache = vec![0u32; if cache_bits > 0 { 1 << cache_bits } else { 0 }];
        let meta_w = if meta.0 > 0 { div_round_up(w, meta.0) } else { 0 };
        let (mut i, mut cached, mut x, mut y) = (0, 0, 0, 0);
        while i < n {
            let g = if meta.0 > 0 {
                let m = meta.1.get((y >> meta.0) * meta_w + (x >> meta.0)).copied().unwrap_or(0);
                &codes[(m >> 8 & 0xffff) as usize]
            } else {
                &codes[0]
            };
            let s = self.br.decode(&g[0]).map_err(bad)?;
            let run = if s < 256 {
                let r = self.br.decode(&g[1]).map_err(bad)?;
                let b = self.br.decode(&g[2]).map_err(bad)?;
                let a = self.br.decode(&g[3]).map_err(bad)?;
                px[i] = (a << 24 | r << 16 | s << 8 | b) as u32;
                1
            } else if s < 256 + 24 {
                let len = prefix_value(&mut self.br, s - 256);
                let d = self.br.decode(&g[4]).map_err(bad)?;
                let code = prefix_value(&mut self.br, d);
                let dist = if code > 120 {
                    code - 120
                } else {
                    let m = DISTANCE_MAP[code - 1] as usize;
                    ((m >> 4) * w + 8).saturating_sub(m & 15).max(1)
                };
                if dist > i || len > n - i {
                    return Err(bad("backward reference out of range"));
                }
                for k in i..i + len {
                    px[k] = px[k - dist];
                }
                len
            } else {
                // Cache hit: first insert the pixels decoded since the last one, in order.
                while cached < i {
                    let p = px[cached];
                    cache[(0x1e35a7bd_u32.wrapping_mul(p) >> (32 - cache_bits)) as usize] = p;
                    cached += 1;
                }
                px[i] = *cache.get(s - 280).ok_or_else(|| bad("invalid colour cache index"))?;
                1
            };
            i += run;
            x += run;
            while x >= w {
                x -= w;
                y += 1;
                self.check()?;
            }
        }
        self.check()?;
        Ok(px)
    }
}

/// Undoes one transform on `px` (`w` x `h` before the transform, narrower for bundled palette
/// indices).
fn inverse(t: Transform, mut px: Vec<u32>, w: usize, h: usize) -> OpResult<Vec<u32>> {
    match t {
        Transform::Blocks { kind, bits, data } => {
            let bw = div_round_up(w, bits);
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    let m = data[(y >> bits) * bw + (x >> bits)];
                    if kind == 1 {
                        // Cross-colour: signed 3.5 fixed-point multipliers.
                        let delta = |m: u32, c: u32| ((m as u8 as i8 as i32) * (c as u8 as i8 as i32)) >> 5;
                        let p = px[i];
                        let g = p >> 8;
                        let r = (p >> 16).wrapping_add(delta(m, g) as u32) & 0xff;
                        let b = p.wrapping_add(delta(m >> 8, g) as u32).wrapping_add(delta(m >> 16, r) as u32) & 0xff;
                        px[i] = (p & 0xff00ff00) | r << 16 | b;
                        continue;
                    }
                    let pred = match (x, y) {
                        (0, 0) => 0xff000000,
                        (_, 0) => px[i - 1],
                        (0, _) => px[i - w],
                        _ => predict(m >> 8 & 15, px[i - 1], px[i - w], px[i - w - 1], px[i - w + 1]),
                    };
                    px[i] = add(px[i], pred);
                }
            }
            Ok(px)
        }
        Transform::SubtractGreen => {
            for p in px.iter_mut() {
                let g = *p >> 8 & 0xff;
                *p = add(*p, g << 16 | g);
            }
            Ok(px)
        }
        Transform::Palette { bits, colors } => {
            let pw = div_round_up(w, bits);
            let mut out: Vec<u32> = zeroed(w * h)?;
            let per = 8 >> bits;
            for y in 0..h {
                for x in 0..w {
                    let packed = px[y * pw + (x >> bits)] >> 8;
                    let index = packed >> (per * (x as u32 & ((1 << bits) - 1))) & ((1 << per) - 1);
                    out[y * w + x] = colors[index as usize];
                }
            }
            Ok(out)
        }
    }
}

/// Decodes a VP8L image stream without header (as in an ALPH chunk) of the given size.
pub(super) fn decode_stream(data: &[u8], w: usize, h: usize) -> OpResult<Vec<u32>> {
    let mut d = Decoder { br: Bits::new(data), len: data.len() };
    d.image(w, h, true)
}

/// Decodes a VP8L chunk: (width, height, ARGB pixels).
pub(super) fn decode(data: &[u8]) -> OpResult<(usize, usize, Vec<u32>)> {
    let mut d = Decoder { br: Bits::new(data), len: data.len() };
    if data.len() < 5 || d.bits(8) != 0x2f {
        return Err(bad("bad VP8L signature"));
    }
    let w = d.bits(14) + 1;
    let h = d.bits(14) + 1;
    let _alpha = d.bits(1);
    if d.bits(3) != 0 {
        return Err(bad("unknown VP8L version"));
    }
    super::check_dims(w, h)?;
    let px = d.image(w, h, true)?;
    Ok((w, h, px))
}
