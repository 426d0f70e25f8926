//! JPEG decoding (Huffman-coded baseline, extended sequential and progressive, 8-bit samples)
//! that reproduces libjpeg's default output bit for bit: accurate integer IDCT (jidctint),
//! "fancy" triangle upsampling of chroma and the fixed-point YCbCr → RGB tables. CMYK and YCCK
//! files are converted to RGB the way PIL converts the CMYK image libjpeg returns.
//!
//! Every scan is decoded into a buffer of quantized coefficients first (progressive and
//! multi-scan files refine it scan by scan); the IDCT, upsampling and colour conversion run once
//! all scans are in. A progressive file whose scans leave low-frequency coefficient bits
//! unsent is decoded without libjpeg's inter-block smoothing of such blocks, so only complete
//! progressions (what encoders write) match libjpeg exactly. Arithmetic coding, lossless,
//! hierarchical and 12-bit files are rejected as unsupported.

use super::{check_dims, zeroed, Image, Pixels};
use crate::error::{OpError, OpResult};

fn bad(what: &str) -> OpError {
    OpError(format!("ImageDecoder: invalid JPEG: {what}"))
}

fn unsupported(what: &str) -> OpError {
    OpError(format!("ImageDecoder: unsupported JPEG: {what}"))
}

macro_rules! check {
    ($c:expr, $what:expr) => {
        if !$c {
            return Err(bad($what));
        }
    };
}

/// Bits resolved by one lookup in `Huffman::fast`.
const FAST: usize = 9;

/// Canonical Huffman table.
struct Huffman {
    /// Indexed by the next FAST bits: (code length << 8) | symbol, 0 when the code is longer.
    fast: Vec<u16>,
    /// Largest code of each length (-1: none), and the offset from a code to its symbol index.
    maxcode: [i32; 17],
    delta: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8], values: &[u8]) -> OpResult<Huffman> {
        let mut h = Huffman { fast: vec![0; 1 << FAST], maxcode: [-1; 17], delta: [0; 17], values: values.to_vec() };
        let (mut code, mut k) = (0usize, 0usize);
        for l in 1..=16 {
            let n = counts[l - 1] as usize;
            h.delta[l] = k as i32 - code as i32;
            for _ in 0..n {
                check!(code < 1 << l, "bad Huffman table");
                if l <= FAST {
                    let s = code << (FAST - l);
                    h.fast[s..s + (1 << (FAST - l))].fill(((l as u16) << 8) | values[k] as u16);
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                h.maxcode[l] = code as i32 - 1;
            }
            code <<= 1;
        }
        Ok(h)
    }
}

/// Entropy-coded data reader. Past a marker the data reads as zeros (as in libjpeg) and sets
/// `padded`; reading past the end of the file sets `truncated`.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    bits: u32,
    padded: bool,
    truncated: bool,
}

impl BitReader<'_> {
    fn fill(&mut self) {
        while self.bits <= 56 {
            let Some(&b) = self.data.get(self.pos) else { return };
            if b == 0xFF {
                if self.data.get(self.pos + 1) != Some(&0) {
                    return;
                }
                self.pos += 1;
            }
            self.pos += 1;
            self.acc |= (b as u64) << (56 - self.bits);
            self.bits += 8;
        }
    }
    /// The next `n` (1..=16) bits without consuming them.
    fn peek(&mut self, n: u32) -> u32 {
        if self.bits < n {
            self.fill();
        }
        (self.acc >> (64 - n)) as u32
    }
    fn skip(&mut self, n: u32) {
        if n > self.bits {
            if self.pos + 1 >= self.data.len() {
                self.truncated = true;
            } else {
                self.padded = true;
            }
        }
        self.acc <<= n;
        self.bits = self.bits.saturating_sub(n);
    }
    fn get(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n);
        self.skip(n);
        v
    }
    /// An `s`-bit magnitude category value (JPEG's RECEIVE + EXTEND).
    fn extend(&mut self, s: u32) -> i32 {
        let v = self.get(s) as i32;
        if s > 0 && v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }
    fn decode(&mut self, h: &Huffman) -> OpResult<u8> {
        let look = self.peek(16);
        let f = h.fast[(look >> (16 - FAST)) as usize];
        if f != 0 {
            self.skip((f >> 8) as u32);
            return Ok(f as u8);
        }
        for l in FAST + 1..=16 {
            let code = (look >> (16 - l)) as i32;
            if code <= h.maxcode[l] {
                self.skip(l as u32);
                return h.values.get((code + h.delta[l]) as usize).copied().ok_or_else(|| bad("bad Huffman code"));
            }
        }
        Err(bad("corrupt entropy-coded data"))
    }
    /// Moves past the RSTn marker that ends a restart interval. Any other marker stays for the
    /// marker parser and the rest of the scan reads as zeros.
    fn restart(&mut self) {
        self.acc = 0;
        self.bits = 0;
        self.padded = false;
        while let Some(&b) = self.data.get(self.pos) {
            if b == 0xFF {
                match self.data.get(self.pos + 1) {
                    Some(0xD0..=0xD7) => {
                        self.pos += 2;
                        return;
                    }
                    Some(0 | 0xFF) => {}
                    _ => return,
                }
            }
            self.pos += 1;
        }
    }
}

const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
    21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53,
    60, 61, 54, 47, 55, 62, 63,
];

/// Position of the `k`-th coefficient in zigzag order; like libjpeg, indices past the end of the
/// block (from corrupt run lengths) land on the last coefficient.
#[inline]
fn zz(k: usize) -> usize {
    ZIGZAG[k.min(63)] as usize
}

/// Scan parameters: spectral selection `ss..=se`, successive approximation bits `ah`/`al`.
#[derive(Clone, Copy)]
struct Band {
    progressive: bool,
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
}

/// Decodes one block's share of a scan into `blk` (quantized coefficients, natural order).
/// `dc` is the DC table of a DC first or sequential scan, `ac` the AC table of an AC or
/// sequential scan.
fn decode_block(
    br: &mut BitReader,
    blk: &mut [i16],
    dc: Option<&Huffman>,
    ac: Option<&Huffman>,
    pred: &mut i32,
    eobrun: &mut u32,
    b: Band,
) -> OpResult<()> {
    if b.ss == 0 {
        if let Some(dc) = dc {
            let s = br.decode(dc)? as u32;
            check!(s <= 15, "bad DC coefficient");
            *pred = pred.wrapping_add(br.extend(s));
            blk[0] = ((*pred as u32) << b.al) as i16;
        } else if br.get(1) != 0 {
            blk[0] |= 1 << b.al;
        }
    }
    let Some(ac) = ac else { return Ok(()) };
    let mut k = b.ss.max(1);
    if b.ah == 0 {
        if *eobrun > 0 {
            *eobrun -= 1;
            return Ok(());
        }
        while k <= b.se {
            let rs = br.decode(ac)?;
            let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
            if s != 0 {
                k += r;
                blk[zz(k)] = (br.extend(s) << b.al) as i16;
            } else if r == 15 {
                k += 15;
            } else {
                if b.progressive {
                    *eobrun = (1 << r) + br.get(r as u32) - 1;
                }
                break;
            }
            k += 1;
        }
        return Ok(());
    }
    // Successive approximation refinement of AC coefficients.
    let (p1, m1) = (1i16 << b.al, -1i16 << b.al);
    let refine = |br: &mut BitReader, c: &mut i16| {
        if *c != 0 && br.get(1) != 0 && *c & p1 == 0 {
            *c = c.wrapping_add(if *c >= 0 { p1 } else { m1 });
        }
    };
    if *eobrun == 0 {
        while k <= b.se {
            let rs = br.decode(ac)?;
            let (mut r, s) = ((rs >> 4) as i32, rs & 15);
            let mut new = 0;
            if s != 0 {
                new = if br.get(1) != 0 { p1 } else { m1 };
            } else if r != 15 {
                *eobrun = (1 << r) + br.get(r as u32);
                break;
            }
            // Skip `r` still-zero coefficients, refining the nonzero ones passed on the way.
            while k <= b.se {
                let c = &mut blk[zz(k)];
                if *c != 0 {
                    refine(br, c);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if new != 0 {
                blk[zz(k)] = new;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= b.se {
            refine(br, &mut blk[zz(k)]);
            k += 1;
        }
        *eobrun -= 1;
    }
    Ok(())
}

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

/// libjpeg's accurate integer inverse DCT (CONST_BITS 13, PASS1_BITS 2) of a quantized block
/// (natural order) with its quantization table.
fn idct_islow(coef: &[i16], q: &[u16; 64], out: &mut [u8], stride: usize) {
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
    /// One 1-D pass over 8 values `s`; returns the 8 outputs before descaling.
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
        let col: [i64; 8] = std::array::from_fn(|r| coef[r * 8 + c] as i64 * q[r * 8 + c] as i64);
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

/// A frame component: sampling factors, quantization and its coefficient buffer.
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Quantization table, taken when the component's first scan starts (as libjpeg does).
    q: Option<[u16; 64]>,
    /// Size of the coefficient buffer in blocks (whole MCUs).
    bw: usize,
    bh: usize,
    /// Size of the component's real samples (libjpeg's downsampled_width/height).
    w: usize,
    rows: usize,
    coef: Vec<i16>,
    pred: i32,
}

/// A decoded component plane (whole blocks).
struct Plane {
    data: Vec<u8>,
    stride: usize,
    w: usize,
    h: usize,
}

impl Component {
    /// Runs the IDCT over the blocks holding real samples.
    fn to_plane(&self) -> OpResult<Plane> {
        let (wb, hb) = (self.w.div_ceil(8), self.rows.div_ceil(8));
        let stride = wb * 8;
        let mut data = zeroed(stride * hb * 8)?;
        let q = self.q.unwrap_or([0; 64]);
        for by in 0..hb {
            for bx in 0..wb {
                let b = (by * self.bw + bx) * 64;
                idct_islow(&self.coef[b..b + 64], &q, &mut data[by * 8 * stride + bx * 8..], stride);
            }
        }
        Ok(Plane { data, stride, w: self.w, h: self.rows })
    }
}

/// Upsamples a plane by (hf, vf) to `w`×`h` the way libjpeg does with fancy upsampling on:
/// triangle filters for 2×1 (planes wider than 2 samples), 1×2 and 2×2 (wider than 2 samples),
/// sample replication otherwise.
fn upsample(p: &Plane, hf: usize, vf: usize, w: usize, h: usize) -> OpResult<Vec<u8>> {
    let mut out = zeroed(w * h)?;
    let (pw, ph) = (p.w.max(1), p.h.max(1));
    let at = |x: usize, y: usize| p.data[y * p.stride + x] as i32;
    let hfancy = hf == 2 && vf <= 2 && pw > 2;
    let vfancy = vf == 2 && (hf == 1 || hfancy);
    for (y, dst) in out.chunks_exact_mut(w).enumerate() {
        let near = (y / vf).min(ph - 1);
        let odd = y % 2 == 1;
        let far = if !vfancy {
            near
        } else if odd {
            (near + 1).min(ph - 1)
        } else {
            near.saturating_sub(1)
        };
        // Column value: 3 × nearer row + farther row when filtering vertically.
        let col = |x: usize| if vfancy { 3 * at(x, near) + at(x, far) } else { at(x, near) };
        for (x, d) in dst.iter_mut().enumerate() {
            let v = if hfancy {
                let c = x / 2;
                let right = x % 2 == 1;
                let n = if right { (c + 1).min(pw - 1) } else { c.saturating_sub(1) };
                let s = 3 * col(c) + col(n);
                if vfancy {
                    (s + 8 - right as i32) >> 4
                } else {
                    (s + 1 + right as i32) >> 2
                }
            } else if vfancy {
                (col(x) + 1 + odd as i32) >> 2
            } else {
                col((x / hf).min(pw - 1))
            };
            *d = v as u8;
        }
    }
    Ok(out)
}

/// libjpeg's fixed-point YCbCr → RGB conversion.
struct Ycc {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
}

impl Ycc {
    fn new() -> Ycc {
        const ONE_HALF: i32 = 1 << 15;
        let fix = |x: f64| (x * 65536.0 + 0.5) as i32;
        let mut t = Ycc { cr_r: [0; 256], cb_b: [0; 256], cr_g: [0; 256], cb_g: [0; 256] };
        for i in 0..256 {
            let x = i as i32 - 128;
            t.cr_r[i] = (fix(1.40200) * x + ONE_HALF) >> 16;
            t.cb_b[i] = (fix(1.77200) * x + ONE_HALF) >> 16;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + ONE_HALF;
        }
        t
    }
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (y, cb, cr) = (y as i32, cb as usize, cr as usize);
        let clamp = |v: i32| v.clamp(0, 255) as u8;
        [clamp(y + self.cr_r[cr]), clamp(y + ((self.cb_g[cb] + self.cr_g[cr]) >> 16)), clamp(y + self.cb_b[cb])]
    }
}

fn be16(d: &[u8], i: usize) -> OpResult<usize> {
    match d.get(i..i + 2) {
        Some(b) => Ok(((b[0] as usize) << 8) | b[1] as usize),
        None => Err(bad("truncated")),
    }
}

/// The next marker at or after `pos`, skipping fill bytes and stray data as libjpeg does.
fn next_marker(d: &[u8], pos: &mut usize) -> Option<u8> {
    while *pos + 1 < d.len() {
        let (a, b) = (d[*pos], d[*pos + 1]);
        *pos += 1;
        if a == 0xFF && b != 0 && b != 0xFF {
            *pos += 1;
            return Some(b);
        }
    }
    None
}

/// Frame geometry shared by every scan.
struct Frame {
    width: usize,
    height: usize,
    progressive: bool,
    mcux: usize,
    mcuy: usize,
    comps: Vec<Component>,
    /// Units left that may be decoded from the zeros past a premature marker: one image's
    /// worth, so corrupt multi-scan files cannot make every scan decode the whole image from
    /// nothing.
    pad_budget: usize,
}

fn parse_frame(seg: &[u8], progressive: bool) -> OpResult<Frame> {
    check!(seg.len() >= 6, "bad frame header");
    if seg[0] != 8 {
        return Err(unsupported(&format!("{}-bit samples", seg[0])));
    }
    let (height, width, n) = (be16(seg, 1)?, be16(seg, 3)?, seg[5] as usize);
    if !matches!(n, 1 | 3 | 4) {
        return Err(unsupported(&format!("{n} colour components")));
    }
    check!(seg.len() >= 6 + 3 * n, "bad frame header");
    check_dims(width, height)?;
    let mut comps = Vec::with_capacity(n);
    for c in seg[6..6 + 3 * n].chunks_exact(3) {
        let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
        check!((1..=4).contains(&h) && (1..=4).contains(&v), "bad sampling factors");
        check!(c[2] < 4, "bad quantization table index");
        check!(comps.iter().all(|o: &Component| o.id != c[0]), "duplicate component id");
        let comp = Component { id: c[0], h, v, tq: c[2] as usize, q: None, bw: 0, bh: 0, w: 0, rows: 0, coef: Vec::new(), pred: 0 };
        comps.push(comp);
    }
    let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
    if comps.iter().any(|c| hmax % c.h != 0 || vmax % c.v != 0) {
        return Err(unsupported("fractional sampling factors"));
    }
    let (mcux, mcuy) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
    let mut pad_budget = 0;
    for c in &mut comps {
        c.bw = mcux * c.h;
        c.bh = mcuy * c.v;
        c.w = (width * c.h).div_ceil(hmax);
        c.rows = (height * c.v).div_ceil(vmax);
        c.coef = zeroed(c.bw * c.bh * 64)?;
        pad_budget += c.bw * c.bh;
    }
    Ok(Frame { width, height, progressive, mcux, mcuy, comps, pad_budget })
}

type Tables = [Option<Huffman>; 4];

/// Scans accepted per image: far more than any encoder writes (libjpeg's progressive script has
/// 10 for colour images), few enough to bound the work a small hostile file can cause.
const MAX_SCANS: usize = 1000;

/// Table `id` of `tables` when the scan uses it.
fn table(tables: &Tables, id: u8, used: bool) -> OpResult<Option<&Huffman>> {
    if !used {
        return Ok(None);
    }
    tables.get(id as usize).and_then(|t| t.as_ref()).map(Some).ok_or_else(|| bad("missing Huffman table"))
}

/// Decodes one scan (header `seg`, entropy-coded data from `pos`) into the coefficient buffers
/// and returns the position after the data read.
fn decode_scan(
    f: &mut Frame,
    seg: &[u8],
    d: &[u8],
    pos: usize,
    (dc_tables, ac_tables): (&Tables, &Tables),
    qt: &[Option<[u16; 64]>; 4],
    restart_interval: usize,
) -> OpResult<usize> {
    let ns = *seg.first().ok_or_else(|| bad("bad scan header"))? as usize;
    check!((1..=4).contains(&ns) && seg.len() >= 4 + 2 * ns, "bad scan header");
    let p = &seg[1 + 2 * ns..];
    let band = if f.progressive {
        let b = Band { progressive: true, ss: p[0] as usize, se: p[1] as usize, ah: (p[2] >> 4) as u32, al: (p[2] & 15) as u32 };
        // The progression rules libjpeg enforces.
        let ok = if b.ss == 0 { b.se == 0 } else { b.ss <= b.se && b.se < 64 && ns == 1 };
        check!(ok && (b.ah == 0 || b.al + 1 == b.ah) && b.al <= 13, "bad progressive scan parameters");
        b
    } else {
        Band { progressive: false, ss: 0, se: 63, ah: 0, al: 0 }
    };
    // (component index, DC table, AC table) of each scan component.
    let mut sc: Vec<(usize, Option<&Huffman>, Option<&Huffman>)> = Vec::with_capacity(ns);
    for k in 0..ns {
        let (cid, t) = (seg[1 + 2 * k], seg[2 + 2 * k]);
        let ci = f.comps.iter().position(|c| c.id == cid).ok_or_else(|| bad("scan names an unknown component"))?;
        check!(sc.iter().all(|s| s.0 != ci), "scan names a component twice");
        let dc = table(dc_tables, t >> 4, band.ss == 0 && band.ah == 0)?;
        let ac = table(ac_tables, t & 15, band.se > 0)?;
        sc.push((ci, dc, ac));
        let c = &mut f.comps[ci];
        if c.q.is_none() {
            c.q = Some(qt[c.tq].ok_or_else(|| bad("missing quantization table"))?);
        }
        c.pred = 0;
    }
    let single = ns == 1;
    if !single {
        check!(sc.iter().map(|s| f.comps[s.0].h * f.comps[s.0].v).sum::<usize>() <= 10, "too many blocks per MCU");
    }
    // Units: MCUs of an interleaved scan, blocks of a single component's real samples otherwise.
    let (ux, uy) = match single {
        true => (f.comps[sc[0].0].w.div_ceil(8), f.comps[sc[0].0].rows.div_ceil(8)),
        false => (f.mcux, f.mcuy),
    };
    let mut br = BitReader { data: d, pos, acc: 0, bits: 0, padded: false, truncated: false };
    let mut eobrun = 0u32;
    let mut count = 0usize;
    for my in 0..uy {
        for mx in 0..ux {
            if restart_interval > 0 && count > 0 && count.is_multiple_of(restart_interval) {
                br.restart();
                eobrun = 0;
                for s in &sc {
                    f.comps[s.0].pred = 0;
                }
            }
            count += 1;
            for &(ci, dc, ac) in &sc {
                let c = &mut f.comps[ci];
                let (bh, bv) = if single { (1, 1) } else { (c.h, c.v) };
                for by in 0..bv {
                    for bx in 0..bh {
                        let b = ((my * bv + by) * c.bw + mx * bh + bx) * 64;
                        decode_block(&mut br, &mut c.coef[b..b + 64], dc, ac, &mut c.pred, &mut eobrun, band)?;
                    }
                }
            }
            if br.padded {
                check!(f.pad_budget > 0, "entropy-coded data ends early");
                f.pad_budget -= 1;
            }
        }
        check!(!br.truncated, "truncated");
    }
    Ok(br.pos)
}

/// Decodes a JPEG exactly like libjpeg with its default settings.
pub(crate) fn decode(d: &[u8]) -> OpResult<Image> {
    let mut qt: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc_tables: Tables = Default::default();
    let mut ac_tables: Tables = Default::default();
    let mut frame: Option<Frame> = None;
    let mut scans = 0;
    let mut restart_interval = 0usize;
    let mut adobe_transform: Option<u8> = None;
    let mut jfif = false;
    let mut pos = 0;
    while let Some(marker) = next_marker(d, &mut pos) {
        match marker {
            0xD9 => break,
            0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let len = be16(d, pos)?;
        check!(len >= 2, "bad segment length");
        let seg = d.get(pos + 2..pos + len).ok_or_else(|| bad("truncated"))?;
        pos += len;
        match marker {
            0xC0..=0xC2 => {
                check!(frame.is_none(), "more than one frame");
                frame = Some(parse_frame(seg, marker == 0xC2)?);
            }
            0xC3 | 0xC7 | 0xCB | 0xCF => return Err(unsupported("lossless coding")),
            0xC5 | 0xC6 | 0xCD | 0xCE => return Err(unsupported("hierarchical coding")),
            0xC9 | 0xCA => return Err(unsupported("arithmetic coding")),
            0xC4 => {
                let mut i = 0;
                while i + 17 <= seg.len() {
                    let (class, id) = (seg[i] >> 4, (seg[i] & 15) as usize);
                    check!(class < 2 && id < 4, "bad Huffman table id");
                    let counts = &seg[i + 1..i + 17];
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let vals = seg.get(i + 17..i + 17 + total).ok_or_else(|| bad("truncated"))?;
                    let t = Some(Huffman::new(counts, vals)?);
                    if class == 0 {
                        dc_tables[id] = t;
                    } else {
                        ac_tables[id] = t;
                    }
                    i += 17 + total;
                }
            }
            0xDB => {
                let mut i = 0;
                while i < seg.len() {
                    let (prec, id) = (seg[i] >> 4, (seg[i] & 15) as usize);
                    check!(id < 4 && prec < 2, "bad quantization table");
                    let size = 64 << prec;
                    let t = seg.get(i + 1..i + 1 + size).ok_or_else(|| bad("truncated"))?;
                    let mut q = [0u16; 64];
                    for k in 0..64 {
                        q[ZIGZAG[k] as usize] = if prec == 0 { t[k] as u16 } else { u16::from_be_bytes([t[2 * k], t[2 * k + 1]]) };
                    }
                    qt[id] = Some(q);
                    i += 1 + size;
                }
            }
            0xDD => restart_interval = be16(seg, 0)?,
            0xE0 => jfif |= seg.len() >= 14 && seg.starts_with(b"JFIF\0"),
            0xEE if seg.len() >= 12 && seg.starts_with(b"Adobe") => adobe_transform = Some(seg[11]),
            0xDA => {
                let f = frame.as_mut().ok_or_else(|| bad("scan before frame header"))?;
                check!(scans < MAX_SCANS, "too many scans");
                pos = decode_scan(f, seg, d, pos, (&dc_tables, &ac_tables), &qt, restart_interval)?;
                scans += 1;
            }
            _ => {}
        }
    }
    let f = match frame {
        Some(f) if scans > 0 => f,
        _ => return Err(bad("no image data")),
    };
    let (width, height) = (f.width, f.height);
    let hmax = f.comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = f.comps.iter().map(|c| c.v).max().unwrap_or(1);
    let ids: Vec<u8> = f.comps.iter().map(|c| c.id).collect();
    // One component at a time: IDCT, then upsampling to full size; its coefficients are freed
    // before the next one.
    let mut full = Vec::with_capacity(ids.len());
    for c in f.comps {
        let p = c.to_plane()?;
        drop(c.coef);
        full.push(if ids.len() == 1 {
            let mut out = zeroed(width * height)?;
            for (y, row) in out.chunks_exact_mut(width).enumerate() {
                row.copy_from_slice(&p.data[y * p.stride..y * p.stride + width]);
            }
            out
        } else {
            upsample(&p, hmax / c.h, vmax / c.v, width, height)?
        });
    }
    if ids.len() == 1 {
        return Ok(Image { width, height, pixels: Pixels::Gray(full.swap_remove(0)) });
    }
    let mut rgb = zeroed(width * height * 3)?;
    let ycc = Ycc::new();
    let px = rgb.chunks_exact_mut(3).enumerate();
    if ids.len() == 3 {
        // libjpeg's colour space guess: JFIF means YCbCr, then the Adobe transform, then the
        // component ids.
        let is_rgb = !jfif && adobe_transform.map_or(ids == b"RGB", |t| t == 0);
        for (i, px) in px {
            let (a, b, c) = (full[0][i], full[1][i], full[2][i]);
            px.copy_from_slice(&if is_rgb { [a, b, c] } else { ycc.rgb(a, b, c) });
        }
    } else {
        // CMYK as stored by Adobe (inverted), or YCCK: libjpeg turns YCC into inverted CMY.
        // PIL then converts CMYK to RGB as R = (255 - C)·(255 - K)/255 in its rounding.
        let ycck = adobe_transform.is_some_and(|t| t != 0);
        for (i, px) in px {
            let (a, b, c) = (full[0][i], full[1][i], full[2][i]);
            let cmy = if ycck { ycc.rgb(a, b, c).map(|v| 255 - v) } else { [a, b, c] };
            let k = full[3][i] as u32;
            for (o, v) in px.iter_mut().zip(cmy) {
                let t = (255 - v as u32) * k + 128;
                *o = (k - (((t >> 8) + t) >> 8)) as u8;
            }
        }
    }
    Ok(Image { width, height, pixels: Pixels::Rgb(rgb) })
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::testdata;

    fn fixtures() -> Vec<(String, Vec<u8>)> {
        testdata::fixtures("jpeg", "jpg", 20)
    }

    #[test]
    fn decodes_fixtures_like_libjpeg() {
        testdata::check_fixtures("jpeg", &fixtures(), "libjpeg", ("unsupported_", "unsupported JPEG"), decode);
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        for (_, data) in fixtures() {
            testdata::corrupt(&data, 500, |m| {
                if let Ok(img) = decode(m) {
                    assert!(img.check().is_ok());
                }
            });
        }
    }

    /// A `size`×`size` progressive grayscale file with the tables of a fixture and `scans`
    /// copies of `scan` (a scan header and its data), or of the fixture's DC first scan header
    /// without data when `scan` is empty.
    fn with_scans(size: u8, scan: &[u8], scans: usize) -> Vec<u8> {
        let data = fixtures().into_iter().find(|f| f.0 == "prog_gray_q85").unwrap().1;
        let find = |m: u8| data.windows(2).position(|w| w == [0xFF, m]).unwrap();
        let (sof, sos) = (find(0xC2), find(0xDA));
        let mut out = data[..sos].to_vec();
        out[sof + 5..sof + 9].copy_from_slice(&[0, size, 0, size]);
        let first = &data[sos..sos + 2 + be16(&data, sos + 2).unwrap()];
        for _ in 0..scans {
            out.extend_from_slice(if scan.is_empty() { first } else { scan });
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    #[test]
    fn scan_work_is_bounded() {
        // One scan decoded from the zeros past the next marker is tolerated (libjpeg does so
        // for corrupt files); more are an error instead of more work.
        let img = decode(&with_scans(255, &[], 1)).unwrap();
        assert_eq!((img.width, img.height), (255, 255));
        let err = decode(&with_scans(255, &[], 3)).err().unwrap();
        assert!(err.0.contains("ends early"), "{}", err.0);
        // DC refinement scans with one bit of data each (component 1, one block).
        let refine = [0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0, 0x10, 0x00];
        assert!(decode(&with_scans(8, &refine, MAX_SCANS)).is_ok());
        let err = decode(&with_scans(8, &refine, MAX_SCANS + 1)).err().unwrap();
        assert!(err.0.contains("too many scans"), "{}", err.0);
    }

    #[test]
    fn idct_of_dc_only_block_is_flat() {
        // DC coefficient 10 with quantizer 8 → 80 / 8 = 10 above mid-grey.
        let mut coef = [0i16; 64];
        coef[0] = 10;
        let mut q = [1u16; 64];
        q[0] = 8;
        let mut out = [0u8; 64];
        idct_islow(&coef, &q, &mut out, 8);
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
}
