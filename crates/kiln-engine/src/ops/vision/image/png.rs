//! PNG decoding: every colour type and bit depth, Adam7 interlacing, chunk CRCs checked.
//! Output as the `png` crate's `normalize_to_color8` gives it with alpha dropped: 16-bit samples
//! keep their high byte, low-depth gray is scaled to 0..=255, palette indices map to RGB (black
//! past the end of PLTE), gray(+alpha) stays gray.

use super::{check_dims, inflate, Image, Pixels};
use crate::error::{OpError, OpResult};

type Error = inflate::Error;

fn invalid(e: Error) -> OpError {
    OpError(format!("ImageDecoder: invalid PNG: {e}"))
}

/// Pass origins and steps (x0, y0, dx, dy) of Adam7 interlacing.
const ADAM7: [(usize, usize, usize, usize); 7] =
    [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

/// PLTE entries, black past the end of the chunk.
type Palette = [[u8; 3]; 256];

struct Header {
    width: usize,
    height: usize,
    depth: usize,
    color: u8,
    interlaced: bool,
}

impl Header {
    fn channels(&self) -> usize {
        [1, 0, 3, 1, 2, 0, 4][self.color as usize]
    }

    /// The passes (x0, y0, dx, dy, width, height) that hold pixels.
    fn passes(&self) -> impl Iterator<Item = (usize, usize, usize, usize, usize, usize)> + '_ {
        let all: &[_] = if self.interlaced { &ADAM7 } else { &[(0, 0, 1, 1)] };
        all.iter().filter_map(|&(x0, y0, dx, dy)| {
            let pw = self.width.saturating_sub(x0).div_ceil(dx);
            let ph = self.height.saturating_sub(y0).div_ceil(dy);
            (pw > 0 && ph > 0).then_some((x0, y0, dx, dy, pw, ph))
        })
    }

    /// Bytes in a filtered row of `pw` pixels, filter-type byte excluded.
    fn stride(&self, pw: usize) -> u64 {
        (pw as u64 * (self.channels() * self.depth) as u64).div_ceil(8)
    }
}

/// CRC-32 tables for four bytes at a time: `t[k][n]` is the CRC of byte `n` followed by `k` zeros.
fn crc_tables() -> [[u32; 256]; 4] {
    let mut t = [[0u32; 256]; 4];
    for (n, e) in t[0].iter_mut().enumerate() {
        *e = (0..8).fold(n as u32, |c, _| if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 });
    }
    for k in 1..4 {
        for n in 0..256 {
            t[k][n] = (t[k - 1][n] >> 8) ^ t[0][(t[k - 1][n] & 255) as usize];
        }
    }
    t
}

fn crc32(t: &[[u32; 256]; 4], data: &[u8]) -> u32 {
    let mut c = !0u32;
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        c ^= u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
        c = t[3][(c & 255) as usize]
            ^ t[2][(c >> 8 & 255) as usize]
            ^ t[1][(c >> 16 & 255) as usize]
            ^ t[0][(c >> 24) as usize];
    }
    for &b in quads.remainder() {
        c = t[0][((c ^ b as u32) & 255) as usize] ^ (c >> 8);
    }
    !c
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Walks the chunks up to IEND (or the end of the data): header, palette and the concatenated
/// IDAT payloads.
fn read_chunks(data: &[u8]) -> Result<(Header, Palette, Vec<u8>), Error> {
    let crc_t = crc_tables();
    let mut header = None;
    let mut palette = None;
    let mut idat = Vec::new();
    let mut pos = 8;
    while pos < data.len() {
        let len = data.get(pos..pos + 4).map(be32).ok_or("chunk is truncated")?;
        if len > i32::MAX as u32 {
            return Err("chunk length is out of range");
        }
        let len = len as usize;
        // Chunk type and payload, then the CRC.
        let chunk = data.get(pos + 4..).and_then(|d| d.get(..len + 4)).ok_or("chunk is truncated")?;
        let crc = data.get(pos + 8 + len..pos + 12 + len).map(be32).ok_or("chunk is truncated")?;
        if crc32(&crc_t, chunk) != crc {
            return Err("chunk CRC mismatch");
        }
        pos += 12 + len;
        let (kind, body) = chunk.split_at(4);
        if header.is_none() && kind != b"IHDR" {
            return Err("first chunk is not IHDR");
        }
        match kind {
            b"IHDR" => {
                if body.len() != 13 || header.is_some() {
                    return Err("bad IHDR chunk");
                }
                let (depth, color) = (body[8], body[9]);
                let valid = match color {
                    0 => matches!(depth, 1 | 2 | 4 | 8 | 16),
                    3 => matches!(depth, 1 | 2 | 4 | 8),
                    2 | 4 | 6 => matches!(depth, 8 | 16),
                    _ => false,
                };
                if !valid || body[10] != 0 || body[11] != 0 || body[12] > 1 {
                    return Err("unsupported IHDR colour type, bit depth or method");
                }
                header = Some(Header {
                    width: be32(body) as usize,
                    height: be32(&body[4..]) as usize,
                    depth: depth as usize,
                    color,
                    interlaced: body[12] == 1,
                });
            }
            b"PLTE" => {
                if body.len() % 3 != 0 || body.len() > 768 {
                    return Err("bad PLTE chunk");
                }
                let mut p = [[0u8; 3]; 256];
                for (e, rgb) in p.iter_mut().zip(body.chunks_exact(3)) {
                    e.copy_from_slice(rgb);
                }
                palette = Some(p);
            }
            b"IDAT" => idat.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
    }
    let header = header.ok_or("no IHDR chunk")?;
    let palette = match (palette, header.color) {
        (None, 3) => return Err("palette image without PLTE chunk"),
        (p, _) => p.unwrap_or([[0; 3]; 256]),
    };
    if idat.is_empty() {
        return Err("no IDAT chunk");
    }
    Ok((header, palette, idat))
}

/// Reverses the row filter of `row` in place, given the previous unfiltered row of the pass
/// (zeros for its first row) and the bytes per complete pixel (at least 1).
fn unfilter(filter: u8, row: &mut [u8], prev: &[u8], bpp: usize) -> Result<(), Error> {
    match filter {
        0 => {}
        1 => {
            for i in bpp..row.len() {
                row[i] = row[i].wrapping_add(row[i - bpp]);
            }
        }
        2 => {
            for (x, &b) in row.iter_mut().zip(prev) {
                *x = x.wrapping_add(b);
            }
        }
        3 => {
            for i in 0..row.len() {
                let a = if i >= bpp { row[i - bpp] } else { 0 };
                row[i] = row[i].wrapping_add(((a as u16 + prev[i] as u16) / 2) as u8);
            }
        }
        4 => {
            // The first pixel has zero left and upper-left neighbours: Paeth picks the upper one.
            for i in 0..bpp.min(row.len()) {
                row[i] = row[i].wrapping_add(prev[i]);
            }
            for i in bpp..row.len() {
                let (a, b, c) = (row[i - bpp] as i16, prev[i] as i16, prev[i - bpp] as i16);
                // |p - a|, |p - b|, |p - c| for p = a + b - c.
                let (pa, pb, pc) = ((b - c).abs(), (a - c).abs(), (a + b - 2 * c).abs());
                let pred = if pa <= pb && pa <= pc {
                    a
                } else if pb <= pc {
                    b
                } else {
                    c
                };
                row[i] = row[i].wrapping_add(pred as u8);
            }
        }
        _ => return Err("invalid row filter type"),
    }
    Ok(())
}

/// Unfilters the inflated scanlines of every pass and writes 8-bit gray or RGB pixels.
fn unpack(h: &Header, palette: &Palette, raw: &mut [u8]) -> Result<Image, Error> {
    let (w, depth, channels) = (h.width, h.depth, h.channels());
    let bpp = (channels * depth / 8).max(1);
    let out_ch = if h.color == 2 || h.color == 3 || h.color == 6 { 3 } else { 1 };
    // Low-depth gray scales to 0..=255; 8-bit samples (and high bytes of 16-bit ones) are kept.
    let scale = if h.color == 0 && depth < 8 { 255 / ((1u8 << depth) - 1) } else { 1 };
    let mask = ((1u16 << depth.min(8)) - 1) as u8;
    let sample = |row: &[u8], i: usize| match depth {
        8 => row[i],
        16 => row[2 * i],
        d => {
            let bit = i * d;
            (row[bit / 8] >> (8 - d - bit % 8)) & mask
        }
    };
    let mut out = vec![0u8; w * h.height * out_ch];
    let zeros = vec![0u8; h.stride(w) as usize];
    let mut off = 0;
    for (x0, y0, dx, dy, pw, ph) in h.passes() {
        let stride = h.stride(pw) as usize;
        for r in 0..ph {
            let (done, rest) = raw.split_at_mut(off + 1);
            let prev = if r == 0 { &zeros[..stride] } else { &done[off - stride..off] };
            let row = &mut rest[..stride];
            unfilter(done[off], row, prev, bpp)?;
            let y = y0 + r * dy;
            if depth == 8 && channels == out_ch && dx == 1 {
                // 8-bit gray or RGB rows are the output rows.
                out[y * w * out_ch..][..stride].copy_from_slice(row);
                off += 1 + stride;
                continue;
            }
            for i in 0..pw {
                let o = (y * w + x0 + i * dx) * out_ch;
                let dst = &mut out[o..o + out_ch];
                if h.color == 3 {
                    let rgb = &palette[sample(row, i) as usize];
                    (dst[0], dst[1], dst[2]) = (rgb[0], rgb[1], rgb[2]);
                } else {
                    for (c, d) in dst.iter_mut().enumerate() {
                        *d = sample(row, i * channels + c) * scale;
                    }
                }
            }
            off += 1 + stride;
        }
    }
    let pixels = if out_ch == 3 { Pixels::Rgb(out) } else { Pixels::Gray(out) };
    Ok(Image { width: w, height: h.height, pixels })
}

pub(crate) fn decode(data: &[u8]) -> OpResult<Image> {
    let (header, palette, idat) = read_chunks(data).map_err(invalid)?;
    check_dims(header.width, header.height)?;
    let size: u64 = header.passes().map(|(.., pw, ph)| ph as u64 * (1 + header.stride(pw))).sum();
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= isize::MAX as usize)
        .ok_or_else(|| OpError::new("ImageDecoder: PNG is too large"))?;
    let mut raw = inflate::zlib(&idat, size).map_err(invalid)?;
    if raw.len() != size {
        return Err(invalid("image data is shorter than the image"));
    }
    unpack(&header, &palette, &mut raw).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::super::inflate::tests::{compress, sample_data};
    use super::*;
    use miniz_oxide::deflate::core::CompressionStrategy;

    /// Every valid (colour type, bit depth).
    const FORMATS: [(u8, usize); 15] = [
        (0, 1),
        (0, 2),
        (0, 4),
        (0, 8),
        (0, 16),
        (2, 8),
        (2, 16),
        (3, 1),
        (3, 2),
        (3, 4),
        (3, 8),
        (4, 8),
        (4, 16),
        (6, 8),
        (6, 16),
    ];
    const SIZES: [(usize, usize); 6] = [(1, 1), (3, 5), (33, 17), (64, 3), (5, 70), (9, 9)];

    /// The png crate's decode with `normalize_to_color8`, alpha dropped: (width, height, channels, pixels).
    fn reference(bytes: &[u8]) -> Option<(usize, usize, usize, Vec<u8>)> {
        let mut dec = ::png::Decoder::new(std::io::Cursor::new(bytes));
        dec.set_transformations(::png::Transformations::normalize_to_color8());
        let mut reader = dec.read_info().ok()?;
        let mut buf = vec![0; reader.output_buffer_size()?];
        let info = reader.next_frame(&mut buf).ok()?;
        assert_eq!(info.bit_depth, ::png::BitDepth::Eight);
        let (w, h, ch) = (info.width as usize, info.height as usize, info.color_type.samples());
        let keep = if ch >= 3 { 3 } else { 1 };
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let p = y * info.line_size + x * ch;
                px.extend_from_slice(&buf[p..p + keep]);
            }
        }
        Some((w, h, keep, px))
    }

    fn assert_matches_reference(bytes: &[u8], what: &str) {
        let (w, h, ch, want) = reference(bytes).unwrap_or_else(|| panic!("{what}: the png crate rejects it"));
        let img = decode(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((img.width, img.height), (w, h), "{what}");
        let (got, got_ch) = match img.pixels {
            Pixels::Gray(v) => (v, 1),
            Pixels::Rgb(v) => (v, 3),
        };
        assert_eq!(got_ch, ch, "{what}");
        assert!(got == want, "{what}: pixels differ");
    }

    fn header(w: usize, h: usize, color: u8, depth: usize, interlaced: bool) -> Header {
        Header { width: w, height: h, depth, color, interlaced }
    }

    /// A palette of `n` entries and an alpha table for some of them.
    fn palette(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
        let plte = sample_data(3 * n, seed);
        (plte, sample_data(n / 2, seed + 1))
    }

    #[test]
    fn matches_png_crate_on_its_own_encodings() {
        use ::png::{BitDepth, ColorType, Compression, Filter};
        let compressions = [
            Compression::NoCompression,
            Compression::Fastest,
            Compression::Fast,
            Compression::Balanced,
            Compression::High,
        ];
        let filters = [Filter::NoFilter, Filter::Sub, Filter::Up, Filter::Avg, Filter::Paeth, Filter::Adaptive];
        let mut seed = 100;
        for (color, depth) in FORMATS {
            for (w, h) in SIZES {
                for compression in compressions {
                    for filter in filters {
                        seed += 1;
                        let size = h * header(w, h, color, depth, false).stride(w) as usize;
                        let data = sample_data(size, seed);
                        let mut bytes = Vec::new();
                        let mut enc = ::png::Encoder::new(&mut bytes, w as u32, h as u32);
                        enc.set_color(ColorType::from_u8(color).unwrap());
                        enc.set_depth(BitDepth::from_u8(depth as u8).unwrap());
                        enc.set_compression(compression);
                        enc.set_filter(filter);
                        let (plte, alpha) = palette(1 + seed as usize % (1 << depth.min(8)), seed);
                        if color == 3 {
                            enc.set_palette(plte);
                        }
                        // A tRNS chunk on every other image: alpha per palette entry, or one key colour.
                        if seed % 2 == 0 {
                            match color {
                                3 => enc.set_trns(alpha),
                                0 | 2 => enc.set_trns(sample_data((color as usize + 1) * 2, seed + 2)),
                                _ => {}
                            }
                        }
                        let mut writer = enc.write_header().unwrap();
                        writer.write_image_data(&data).unwrap();
                        writer.finish().unwrap();
                        let what = format!("{w}x{h} colour {color} depth {depth} {compression:?} {filter:?}");
                        assert_matches_reference(&bytes, &what);
                    }
                }
            }
        }
    }

    fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
        png.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(body);
        let crc = crc32fast::hash(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }

    /// Filtered scanlines for `h`: arbitrary bytes after a filter-type byte in 0..=4 (or
    /// `bad_filter` on the last row), so every filter runs on arbitrary data.
    fn scanlines(h: &Header, seed: u64, bad_filter: Option<u8>) -> Vec<u8> {
        let mut raw = Vec::new();
        for (.., pw, ph) in h.passes() {
            let stride = h.stride(pw) as usize;
            for r in 0..ph {
                let row = sample_data(1 + stride, seed + raw.len() as u64);
                raw.push(row[0] % 5);
                raw.extend_from_slice(&row[1..]);
                if r == ph - 1 {
                    if let Some(f) = bad_filter {
                        let at = raw.len() - 1 - stride;
                        raw[at] = f;
                    }
                }
            }
        }
        raw
    }

    /// A PNG around a zlib stream: the stream split over three IDAT chunks (one empty), with
    /// ancillary chunks before and after.
    fn assemble(h: &Header, seed: u64, zlib: &[u8]) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(h.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(h.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[h.depth as u8, h.color, 0, 0, h.interlaced as u8]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"tEXt", b"Comment\0test");
        if h.color == 3 {
            let (plte, alpha) = palette(1 + seed as usize % (1 << h.depth), seed);
            chunk(&mut png, b"PLTE", &plte);
            chunk(&mut png, b"tRNS", &alpha);
        }
        let cut = zlib.len() / 3;
        chunk(&mut png, b"IDAT", &zlib[..cut]);
        chunk(&mut png, b"IDAT", &[]);
        chunk(&mut png, b"IDAT", &zlib[cut..]);
        chunk(&mut png, b"tIME", &[7, 233, 1, 2, 3, 4, 5]);
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn matches_png_crate_on_interlaced_and_split_streams() {
        let codings = [
            (0, CompressionStrategy::Default),
            (1, CompressionStrategy::Default),
            (6, CompressionStrategy::Fixed),
            (9, CompressionStrategy::Default),
            (6, CompressionStrategy::RLE),
        ];
        let mut seed = 5000;
        for (color, depth) in FORMATS {
            for (w, h) in SIZES {
                for interlaced in [false, true] {
                    for (level, strategy) in codings {
                        seed += 1;
                        let hd = header(w, h, color, depth, interlaced);
                        let raw = scanlines(&hd, seed, None);
                        let png = assemble(&hd, seed, &compress(&raw, level, strategy, &[raw.len() / 2]));
                        let what =
                            format!("{w}x{h} colour {color} depth {depth} interlaced {interlaced} level {level}");
                        assert_matches_reference(&png, &what);
                    }
                }
            }
        }
    }

    #[test]
    fn hostile_files_are_errors_not_panics() {
        let mut cases = Vec::new();
        for (i, &(color, depth, w, h, interlaced)) in
            [(2, 8, 33, 17, true), (3, 4, 9, 9, false), (0, 16, 5, 7, true), (6, 8, 20, 3, false)].iter().enumerate()
        {
            let hd = header(w, h, color, depth, interlaced);
            let raw = scanlines(&hd, i as u64, None);
            cases.push((hd, compress(&raw, 6, CompressionStrategy::Default, &[])));
        }
        let mut s = 0x2545_F491u32;
        let mut rand = move |n: usize| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as usize % n
        };
        for (seed, (hd, zlib)) in cases.iter().enumerate() {
            let png = assemble(hd, seed as u64, zlib);
            assert_matches_reference(&png, "uncorrupted");
            // Any cut before the end of the last IDAT chunk loses image data.
            let idat_end = png.len() - 12 - (12 + 7);
            for n in 0..png.len() {
                let r = decode(&png[..n]);
                assert!(n >= idat_end || r.is_err(), "prefix of {n} bytes accepted");
            }
            for _ in 0..2000 {
                // Flipped bits anywhere (mostly caught by the chunk CRCs)...
                let mut bad = png.clone();
                let bit = rand(bad.len() * 8);
                bad[bit / 8] ^= 1 << (bit % 8);
                let _ = decode(&bad);
                // ...and inside the zlib stream, behind valid CRCs.
                let mut bad = zlib.clone();
                for _ in 0..1 + rand(3) {
                    let bit = rand(bad.len() * 8);
                    bad[bit / 8] ^= 1 << (bit % 8);
                }
                let _ = decode(&assemble(hd, seed as u64, &bad));
            }
        }
        // Invalid filter type: both decoders refuse.
        let hd = header(4, 4, 2, 8, false);
        let png = assemble(&hd, 1, &compress(&scanlines(&hd, 1, Some(5)), 6, CompressionStrategy::Default, &[]));
        assert!(reference(&png).is_none() && decode(&png).is_err());
        // A huge declared size with little data fails without allocating the image.
        for (w, h) in [(16000, 16000), (1 << 28, 1), (20000, 20000)] {
            let hd = header(w, h, 6, 16, false);
            let png = assemble(&hd, 1, &compress(&vec![0u8; 5000], 9, CompressionStrategy::Default, &[]));
            let e = decode(&png).err().map(|e| e.0).unwrap_or_default();
            assert!(e.starts_with("ImageDecoder:"), "{w}x{h}: {e}");
        }
        // Bad signature-only and header-only files.
        assert!(decode(b"\x89PNG\r\n\x1a\n").is_err());
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IDAT", &[0x78, 0x9C, 3, 0, 0, 0, 0, 1]);
        assert!(decode(&png).is_err());
    }
}
