//! Baseline (sequential Huffman, 8-bit) JPEG decoding that reproduces libjpeg's default output
//! bit for bit: accurate integer IDCT (jidctint), "fancy" triangle upsampling of chroma and the
//! fixed-point YCbCr → RGB tables. Returns None for files outside that subset (progressive,
//! arithmetic coding, multi-scan, CMYK), which the caller decodes another way.

use super::{check_dims, Image, Pixels};
use crate::error::{OpError, OpResult};
use crate::{bail, ensure};

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    td: usize,
    ta: usize,
}

/// Canonical Huffman table: lookup by (length, code).
#[derive(Clone, Default)]
struct Huffman {
    maxcode: [i32; 18],
    valptr: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> OpResult<Huffman> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        ensure!(total <= values.len() && total <= 256, "ImageDecoder: bad JPEG Huffman table");
        let mut h = Huffman { maxcode: [-1; 18], valptr: [0; 17], mincode: [0; 17], values };
        let mut code = 0i32;
        let mut k = 0i32;
        for l in 1..=16 {
            let n = counts[l - 1] as i32;
            if n > 0 {
                h.valptr[l] = k;
                h.mincode[l] = code;
                code += n;
                k += n;
                h.maxcode[l] = code - 1;
            }
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX;
        Ok(h)
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    bits: u32,
    marker_hit: bool,
}

impl BitReader<'_> {
    fn fill(&mut self) {
        while self.bits <= 56 {
            let mut byte = 0u8;
            if !self.marker_hit && self.pos < self.data.len() {
                byte = self.data[self.pos];
                if byte == 0xFF {
                    let next = self.data.get(self.pos + 1).copied().unwrap_or(0xD9);
                    if next == 0x00 {
                        self.pos += 2;
                    } else {
                        self.marker_hit = true;
                        byte = 0;
                    }
                } else {
                    self.pos += 1;
                }
            }
            self.acc |= (byte as u64) << (56 - self.bits);
            self.bits += 8;
        }
    }
    fn get(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if self.bits < n {
            self.fill();
        }
        let v = (self.acc >> (64 - n)) as u32;
        self.acc <<= n;
        self.bits -= n;
        v
    }
    fn decode(&mut self, h: &Huffman) -> OpResult<u8> {
        let mut code = 0i32;
        for l in 1..=16 {
            code = (code << 1) | self.get(1) as i32;
            if code <= h.maxcode[l] {
                let idx = (h.valptr[l] + code - h.mincode[l]) as usize;
                return h.values.get(idx).copied().ok_or_else(|| OpError::new("ImageDecoder: bad JPEG Huffman code"));
            }
        }
        bail!("ImageDecoder: corrupt JPEG entropy data")
    }
    fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.get(s) as i32;
        if v < (1 << (s - 1)) {
            v - (1 << s) + 1
        } else {
            v
        }
    }
    /// Skips to the next RSTn marker after a restart interval.
    fn restart(&mut self) {
        self.acc = 0;
        self.bits = 0;
        self.marker_hit = false;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                self.pos += 2;
                return;
            }
            self.pos += 1;
        }
    }
}

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
    21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53,
    60, 61, 54, 47, 55, 62, 63,
];

/// Sample after the IDCT: libjpeg's post-IDCT range-limit table (centered, wrapping mod 1024).
#[inline]
fn idct_limit(v: i64) -> u8 {
    let i = (v & 1023) as usize;
    if i < 128 {
        (i + 128) as u8
    } else if i < 512 {
        255
    } else if i < 896 {
        0
    } else {
        (i - 896) as u8
    }
}

/// libjpeg's accurate integer inverse DCT (CONST_BITS 13, PASS1_BITS 2) of a dequantized block.
fn idct_islow(coef: &[i32; 64], out: &mut [u8], stride: usize) {
    const CB: u32 = 13;
    const P1: u32 = 2;
    const F0_298: i64 = 2446;
    const F0_390: i64 = 3196;
    const F0_541: i64 = 4433;
    const F0_765: i64 = 6270;
    const F0_899: i64 = 7373;
    const F1_175: i64 = 9633;
    const F1_501: i64 = 12299;
    const F1_847: i64 = 15137;
    const F1_961: i64 = 16069;
    const F2_053: i64 = 16819;
    const F2_562: i64 = 20995;
    const F3_072: i64 = 25172;
    #[inline(always)]
    fn descale(x: i64, n: u32) -> i64 {
        (x + (1 << (n - 1))) >> n
    }
    /// One 1-D pass over 8 values `s`; returns the 8 outputs before descaling and the shift.
    #[inline(always)]
    fn pass(s: [i64; 8]) -> [i64; 8] {
        let (z2, z3) = (s[2], s[6]);
        let z1 = (z2 + z3) * F0_541;
        let tmp2 = z1 + z3 * -F1_847;
        let tmp3 = z1 + z2 * F0_765;
        let tmp0 = (s[0] + s[4]) << CB;
        let tmp1 = (s[0] - s[4]) << CB;
        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;
        let (mut t0, mut t1, mut t2, mut t3) = (s[7], s[5], s[3], s[1]);
        let z1 = t0 + t3;
        let z2 = t1 + t2;
        let z3 = t0 + t2;
        let z4 = t1 + t3;
        let z5 = (z3 + z4) * F1_175;
        t0 *= F0_298;
        t1 *= F2_053;
        t2 *= F3_072;
        t3 *= F1_501;
        let z1 = z1 * -F0_899;
        let z2 = z2 * -F2_562;
        let z3 = z3 * -F1_961 + z5;
        let z4 = z4 * -F0_390 + z5;
        t0 += z1 + z3;
        t1 += z2 + z4;
        t2 += z2 + z3;
        t3 += z1 + z4;
        [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]
    }
    let mut ws = [0i64; 64];
    for c in 0..8 {
        let col: [i64; 8] = std::array::from_fn(|r| coef[r * 8 + c] as i64);
        if col[1..].iter().all(|&v| v == 0) {
            let dc = col[0] << P1;
            for r in 0..8 {
                ws[r * 8 + c] = dc;
            }
            continue;
        }
        let o = pass(col);
        for r in 0..8 {
            ws[r * 8 + c] = descale(o[r], CB - P1);
        }
    }
    for r in 0..8 {
        let row: [i64; 8] = std::array::from_fn(|c| ws[r * 8 + c]);
        let dst = &mut out[r * stride..r * stride + 8];
        if row[1..].iter().all(|&v| v == 0) {
            let v = idct_limit(descale(row[0], P1 + 3));
            dst.iter_mut().for_each(|d| *d = v);
            continue;
        }
        let o = pass(row);
        for c in 0..8 {
            dst[c] = idct_limit(descale(o[c], CB + P1 + 3));
        }
    }
}

/// A decoded component plane (padded to whole blocks).
struct Plane {
    data: Vec<u8>,
    stride: usize,
    /// Size of the component's real samples (libjpeg's downsampled_width/height).
    w: usize,
    h: usize,
}

impl Plane {
    #[inline]
    fn at(&self, x: usize, y: usize) -> i32 {
        self.data[y * self.stride + x] as i32
    }
}

/// Upsamples a plane by (hf, vf) to `w`×`h` the way libjpeg does with fancy upsampling on.
fn upsample(p: &Plane, hf: usize, vf: usize, w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; w * h];
    let (pw, ph) = (p.w.max(1), p.h.max(1));
    match (hf, vf) {
        (1, 1) => {
            for y in 0..h {
                for x in 0..w {
                    out[y * w + x] = p.at(x.min(pw - 1), y.min(ph - 1)) as u8;
                }
            }
        }
        (2, 1) => {
            for y in 0..h {
                let yy = y.min(ph - 1);
                let row: Vec<u8> = h2v1_row(|x| p.at(x, yy), pw);
                out[y * w..(y + 1) * w].copy_from_slice(&row[..w.min(row.len())]);
            }
        }
        (1, 2) => {
            for y in 0..h {
                let inrow = (y / 2).min(ph - 1);
                let (far, bias) = if y % 2 == 0 { (inrow.saturating_sub(1), 1) } else { ((inrow + 1).min(ph - 1), 2) };
                for x in 0..w {
                    let xx = x.min(pw - 1);
                    out[y * w + x] = ((p.at(xx, inrow) * 3 + p.at(xx, far) + bias) >> 2) as u8;
                }
            }
        }
        (2, 2) => {
            for y in 0..h {
                let inrow = (y / 2).min(ph - 1);
                let far = if y % 2 == 0 { inrow.saturating_sub(1) } else { (inrow + 1).min(ph - 1) };
                let colsum = |x: usize| p.at(x, inrow) * 3 + p.at(x, far);
                let dst = &mut out[y * w..(y + 1) * w];
                let mut put = |i: usize, v: i32| {
                    if i < w {
                        dst[i] = (v >> 4) as u8;
                    }
                };
                if pw == 1 {
                    let t = colsum(0);
                    put(0, t * 4 + 8);
                    put(1, t * 4 + 7);
                    continue;
                }
                let mut this = colsum(0);
                let mut next = colsum(1);
                put(0, this * 4 + 8);
                put(1, this * 3 + next + 7);
                let mut last = this;
                this = next;
                for c in 1..pw - 1 {
                    next = colsum(c + 1);
                    put(2 * c, this * 3 + last + 8);
                    put(2 * c + 1, this * 3 + next + 7);
                    last = this;
                    this = next;
                }
                put(2 * (pw - 1), this * 3 + last + 8);
                put(2 * (pw - 1) + 1, this * 4 + 7);
            }
        }
        _ => {
            for y in 0..h {
                for x in 0..w {
                    out[y * w + x] = p.at((x / hf).min(pw - 1), (y / vf).min(ph - 1)) as u8;
                }
            }
        }
    }
    out
}

fn h2v1_row(at: impl Fn(usize) -> i32, pw: usize) -> Vec<u8> {
    let mut row = vec![0u8; 2 * pw];
    if pw == 1 {
        row[0] = at(0) as u8;
        row[1] = at(0) as u8;
        return row;
    }
    let v0 = at(0);
    row[0] = v0 as u8;
    row[1] = ((v0 * 3 + at(1) + 2) >> 2) as u8;
    for c in 1..pw - 1 {
        let v = at(c) * 3;
        row[2 * c] = ((v + at(c - 1) + 1) >> 2) as u8;
        row[2 * c + 1] = ((v + at(c + 1) + 2) >> 2) as u8;
    }
    let v = at(pw - 1);
    row[2 * (pw - 1)] = ((v * 3 + at(pw - 2) + 1) >> 2) as u8;
    row[2 * (pw - 1) + 1] = v as u8;
    row
}

fn be16(d: &[u8], i: usize) -> OpResult<usize> {
    match d.get(i..i + 2) {
        Some(b) => Ok(((b[0] as usize) << 8) | b[1] as usize),
        None => Err(OpError::new("ImageDecoder: JPEG is truncated")),
    }
}

/// Decodes a baseline JPEG exactly like libjpeg, or returns None when the file uses features
/// this decoder leaves to the general decoder.
pub(crate) fn decode(d: &[u8]) -> OpResult<Option<Image>> {
    let mut qt = [[0u16; 64]; 4];
    let mut dc_tables: [Option<Huffman>; 4] = Default::default();
    let mut ac_tables: [Option<Huffman>; 4] = Default::default();
    let mut comps: Vec<Component> = Vec::new();
    let (mut width, mut height) = (0usize, 0usize);
    let mut restart_interval = 0usize;
    let mut adobe_transform: Option<u8> = None;
    let mut jfif = false;
    let mut pos = 2;
    loop {
        // Find the next marker.
        while pos < d.len() && d[pos] != 0xFF {
            pos += 1;
        }
        while pos < d.len() && d[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = d.get(pos) else { bail!("ImageDecoder: JPEG has no image data") };
        pos += 1;
        if marker == 0xD8 || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            continue;
        }
        if marker == 0xD9 {
            bail!("ImageDecoder: JPEG has no scan");
        }
        let len = be16(d, pos)?;
        ensure!(len >= 2, "ImageDecoder: bad JPEG segment length");
        let seg = d.get(pos + 2..pos + len).ok_or_else(|| OpError::new("ImageDecoder: JPEG is truncated"))?;
        match marker {
            0xC0 | 0xC1 => {
                ensure!(seg.len() >= 6, "ImageDecoder: bad JPEG frame header");
                if seg[0] != 8 {
                    return Ok(None);
                }
                height = be16(seg, 1)?;
                width = be16(seg, 3)?;
                let n = seg[5] as usize;
                ensure!(seg.len() >= 6 + 3 * n, "ImageDecoder: bad JPEG frame header");
                for i in 0..n {
                    let c = &seg[6 + 3 * i..9 + 3 * i];
                    let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
                    ensure!((1..=4).contains(&h) && (1..=4).contains(&v), "ImageDecoder: bad JPEG sampling factors");
                    ensure!(c[2] < 4, "ImageDecoder: bad JPEG quantization table index");
                    comps.push(Component { id: c[0], h, v, tq: c[2] as usize, td: 0, ta: 0 });
                }
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
            0xC4 => {
                let mut i = 0;
                while i + 17 <= seg.len() {
                    let (class, id) = (seg[i] >> 4, (seg[i] & 15) as usize);
                    ensure!(class < 2 && id < 4, "ImageDecoder: bad JPEG Huffman table id");
                    let counts: [u8; 16] = std::array::from_fn(|k| seg[i + 1 + k]);
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let vals = seg.get(i + 17..i + 17 + total).ok_or_else(|| OpError::new("ImageDecoder: JPEG is truncated"))?;
                    let t = Huffman::new(&counts, vals.to_vec())?;
                    if class == 0 {
                        dc_tables[id] = Some(t);
                    } else {
                        ac_tables[id] = Some(t);
                    }
                    i += 17 + total;
                }
            }
            0xDB => {
                let mut i = 0;
                while i < seg.len() {
                    let (prec, id) = (seg[i] >> 4, (seg[i] & 15) as usize);
                    ensure!(id < 4, "ImageDecoder: bad JPEG quantization table id");
                    let size = if prec == 0 { 64 } else { 128 };
                    let t = seg.get(i + 1..i + 1 + size).ok_or_else(|| OpError::new("ImageDecoder: JPEG is truncated"))?;
                    for k in 0..64 {
                        qt[id][ZIGZAG[k]] = if prec == 0 { t[k] as u16 } else { ((t[2 * k] as u16) << 8) | t[2 * k + 1] as u16 };
                    }
                    i += 1 + size;
                }
            }
            0xDD => restart_interval = be16(seg, 0)?,
            0xE0 => jfif |= seg.starts_with(b"JFIF\0"),
            0xEE => {
                if seg.starts_with(b"Adobe") && seg.len() >= 12 {
                    adobe_transform = Some(seg[11]);
                }
            }
            0xDA => {
                pos += len;
                let ns = *seg.first().ok_or_else(|| OpError::new("ImageDecoder: bad JPEG scan header"))? as usize;
                if comps.is_empty() || ns != comps.len() || !(comps.len() == 1 || comps.len() == 3) {
                    // Multi-scan sequential files and CMYK go to the general decoder.
                    return Ok(None);
                }
                ensure!(seg.len() >= 1 + 2 * ns, "ImageDecoder: bad JPEG scan header");
                for k in 0..ns {
                    let (cid, t) = (seg[1 + 2 * k], seg[2 + 2 * k]);
                    let c = comps
                        .iter_mut()
                        .find(|c| c.id == cid)
                        .ok_or_else(|| OpError::new("ImageDecoder: JPEG scan names an unknown component"))?;
                    c.td = (t >> 4) as usize;
                    c.ta = (t & 15) as usize;
                    ensure!(c.td < 4 && c.ta < 4, "ImageDecoder: bad JPEG Huffman table selector");
                }
                break;
            }
            _ => {}
        }
        pos += len;
    }
    check_dims(width, height)?;
    let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
    let single = comps.len() == 1;
    let mcux = width.div_ceil(8 * hmax);
    let mcuy = height.div_ceil(8 * vmax);
    let mut planes: Vec<Plane> = comps
        .iter()
        .map(|c| {
            let (bw, bh) = if single { (width.div_ceil(8), height.div_ceil(8)) } else { (mcux * c.h, mcuy * c.v) };
            Plane {
                data: vec![0u8; bw * 8 * bh * 8],
                stride: bw * 8,
                w: (width * c.h).div_ceil(hmax),
                h: (height * c.v).div_ceil(vmax),
            }
        })
        .collect();
    let mut br = BitReader { data: d, pos, acc: 0, bits: 0, marker_hit: false };
    let mut pred = vec![0i32; comps.len()];
    let (units_x, units_y) = if single { (width.div_ceil(8), height.div_ceil(8)) } else { (mcux, mcuy) };
    let mut coef = [0i32; 64];
    let mut mcu_count = 0usize;
    for my in 0..units_y {
        for mx in 0..units_x {
            if restart_interval > 0 && mcu_count > 0 && mcu_count % restart_interval == 0 {
                br.restart();
                pred.iter_mut().for_each(|p| *p = 0);
            }
            mcu_count += 1;
            for (ci, c) in comps.iter().enumerate() {
                let (bh, bv) = if single { (1, 1) } else { (c.h, c.v) };
                let dc = dc_tables[c.td].as_ref().ok_or_else(|| OpError::new("ImageDecoder: JPEG DC table missing"))?;
                let ac = ac_tables[c.ta].as_ref().ok_or_else(|| OpError::new("ImageDecoder: JPEG AC table missing"))?;
                let q = &qt[c.tq];
                for by in 0..bv {
                    for bx in 0..bh {
                        coef.iter_mut().for_each(|v| *v = 0);
                        let s = br.decode(dc)? as u32;
                        ensure!(s <= 16, "ImageDecoder: corrupt JPEG DC coefficient");
                        pred[ci] = pred[ci].wrapping_add(br.receive_extend(s));
                        coef[0] = pred[ci].wrapping_mul(q[0] as i32);
                        let mut k = 1;
                        while k < 64 {
                            let rs = br.decode(ac)?;
                            let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
                            if s == 0 {
                                if r != 15 {
                                    break;
                                }
                                k += 16;
                                continue;
                            }
                            k += r;
                            if k > 63 {
                                break;
                            }
                            let z = ZIGZAG[k];
                            coef[z] = br.receive_extend(s).wrapping_mul(q[z] as i32);
                            k += 1;
                        }
                        let p = &mut planes[ci];
                        let x0 = (mx * bh + bx) * 8;
                        let y0 = (my * bv + by) * 8;
                        let off = y0 * p.stride + x0;
                        let stride = p.stride;
                        idct_islow(&coef, &mut p.data[off..], stride);
                    }
                }
            }
        }
    }
    if single {
        let p = &planes[0];
        let mut out = Vec::with_capacity(width * height);
        for y in 0..height {
            out.extend_from_slice(&p.data[y * p.stride..y * p.stride + width]);
        }
        return Ok(Some(Image { width, height, pixels: Pixels::Gray(out) }));
    }
    let full: Vec<Vec<u8>> = comps
        .iter()
        .zip(&planes)
        .map(|(c, p)| upsample(p, hmax / c.h, vmax / c.v, width, height))
        .collect();
    let n = width * height;
    let mut rgb = vec![0u8; n * 3];
    // JFIF or no Adobe marker saying otherwise: YCbCr. Adobe transform 0 means RGB.
    let is_rgb = !jfif && (adobe_transform == Some(0) || (adobe_transform.is_none() && comps[0].id == b'R' && comps[1].id == b'G'));
    if is_rgb {
        for i in 0..n {
            rgb[3 * i] = full[0][i];
            rgb[3 * i + 1] = full[1][i];
            rgb[3 * i + 2] = full[2][i];
        }
    } else {
        const ONE_HALF: i32 = 1 << 15;
        let fix = |x: f64| (x * 65536.0 + 0.5) as i32;
        let mut cr_r = [0i32; 256];
        let mut cb_b = [0i32; 256];
        let mut cr_g = [0i32; 256];
        let mut cb_g = [0i32; 256];
        for i in 0..256 {
            let x = i as i32 - 128;
            cr_r[i] = (fix(1.40200) * x + ONE_HALF) >> 16;
            cb_b[i] = (fix(1.77200) * x + ONE_HALF) >> 16;
            cr_g[i] = -fix(0.71414) * x;
            cb_g[i] = -fix(0.34414) * x + ONE_HALF;
        }
        let clamp = |v: i32| v.clamp(0, 255) as u8;
        for i in 0..n {
            let y = full[0][i] as i32;
            let cb = full[1][i] as usize;
            let cr = full[2][i] as usize;
            rgb[3 * i] = clamp(y + cr_r[cr]);
            rgb[3 * i + 1] = clamp(y + ((cb_g[cb] + cr_g[cr]) >> 16));
            rgb[3 * i + 2] = clamp(y + cb_b[cb]);
        }
    }
    Ok(Some(Image { width, height, pixels: Pixels::Rgb(rgb) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idct_of_dc_only_block_is_flat() {
        // DC coefficient 80 (dequantized) → 80 / 8 = 10 above mid-grey.
        let mut coef = [0i32; 64];
        coef[0] = 80;
        let mut out = [0u8; 64];
        idct_islow(&coef, &mut out, 8);
        assert!(out.iter().all(|&v| v == 138));
    }

    #[test]
    fn range_limit_clamps_and_centers() {
        assert_eq!(idct_limit(0), 128);
        assert_eq!(idct_limit(-128), 0);
        assert_eq!(idct_limit(127), 255);
        assert_eq!(idct_limit(300), 255);
        assert_eq!(idct_limit(-300), 0);
    }

    #[test]
    fn h2v1_fancy_upsampling_weights() {
        // Samples [0, 100]: outputs 0, (0*3+100+2)/4=25, (300+0+1)/4=75, 100.
        let row = h2v1_row(|x| [0, 100][x], 2);
        assert_eq!(row, vec![0, 25, 75, 100]);
    }
}
