//! zlib (RFC 1950) and DEFLATE (RFC 1951) decompression for the PNG and TIFF decoders: stored,
//! fixed-Huffman and dynamic-Huffman blocks, Adler-32 checked, output capped by the caller.
//! The canonical Huffman decoder and the LSB-first bit reader also serve the WebP lossless
//! decoder, whose bit order and code construction are the same.

/// Error text; the image decoders prefix it with the format.
pub(crate) type Error = &'static str;

/// Codes of up to this many bits are decoded with one table lookup, longer ones bit by bit.
const FAST_BITS: usize = 9;

/// Base match length and extra bits of length symbols 257..=285.
const LEN_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
/// Base distance and extra bits of distance symbols 0..=29.
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
/// Order in which code-length code lengths are stored in a dynamic block header.
const CLEN_ORDER: [u8; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// Marks a `Huffman::fast` entry where a code longer than FAST_BITS starts.
const LONG: u16 = 15;

/// A canonical Huffman code (code lengths at most 15).
pub(super) struct Huffman {
    /// `symbol << 4 | length` for codes of at most FAST_BITS bits, indexed by the next FAST_BITS
    /// input bits (codes are stored bit-reversed); LONG where a longer code starts.
    fast: [u16; 1 << FAST_BITS],
    /// Number of codes of each length.
    count: [u16; 16],
    /// Symbols in code order.
    symbol: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman, Error> {
        let mut h = Huffman { fast: [LONG; 1 << FAST_BITS], count: [0; 16], symbol: Vec::new() };
        for &l in lengths {
            if l > 15 {
                return Err("invalid Huffman code length");
            }
            h.count[l as usize] += 1;
        }
        h.count[0] = 0;
        h.symbol = vec![0; h.count.iter().map(|&c| c as usize).sum()];
        // First index into `symbol` and first canonical code of each length.
        let (mut offset, mut next) = ([0u16; 16], [0u16; 16]);
        let mut left = 1i32;
        for len in 1..16 {
            left = (left << 1) - h.count[len] as i32;
            if left < 0 {
                return Err("over-subscribed Huffman code");
            }
            offset[len] = offset[len - 1] + h.count[len - 1];
            next[len] = (next[len - 1] + h.count[len - 1]) << 1;
        }
        for (s, &l) in lengths.iter().enumerate() {
            let l = l as usize;
            if l == 0 {
                continue;
            }
            h.symbol[offset[l] as usize] = s as u16;
            offset[l] += 1;
            if l <= FAST_BITS {
                let mut i = (next[l].reverse_bits() >> (16 - l)) as usize;
                while i < 1 << FAST_BITS {
                    h.fast[i] = (s << 4 | l) as u16;
                    i += 1 << l;
                }
            }
            next[l] += 1;
        }
        Ok(h)
    }

    /// A code as WebP lossless requires it: complete (every bit pattern decodes), or a single
    /// symbol, which is coded with zero bits.
    pub(super) fn complete(lengths: &[u8]) -> Result<Huffman, Error> {
        let mut used = lengths.iter().enumerate().filter(|(_, &l)| l > 0);
        if let (Some((s, _)), None) = (used.next(), used.next()) {
            return Ok(Huffman { fast: [(s << 4) as u16; 1 << FAST_BITS], count: [0; 16], symbol: vec![s as u16] });
        }
        let h = Huffman::new(lengths)?;
        let kraft: u32 = (1..16).map(|l| (h.count[l] as u32) << (15 - l)).sum();
        if kraft != 1 << 15 {
            return Err("incomplete Huffman code");
        }
        Ok(h)
    }
}

/// LSB-first bit reader; reads past the end yield zeros and are caught by [`Bits::check`].
pub(super) struct Bits<'a> {
    data: &'a [u8],
    /// Next byte to load into `buf`.
    pos: usize,
    buf: u64,
    /// Valid bits in `buf`.
    n: u32,
}

impl<'a> Bits<'a> {
    pub(super) fn new(data: &'a [u8]) -> Bits<'a> {
        Bits { data, pos: 0, buf: 0, n: 0 }
    }

    /// Ensures at least 32 bits are buffered.
    #[inline(always)]
    fn need(&mut self) {
        if self.n < 32 {
            self.refill();
        }
    }

    fn refill(&mut self) {
        if let Some(&w) = self.data.get(self.pos..).and_then(|d| d.first_chunk::<8>()) {
            self.buf |= u64::from_le_bytes(w) << self.n;
            self.pos += (63 - self.n as usize) >> 3;
            self.n |= 56;
        } else {
            while self.n <= 56 {
                self.buf |= (self.data.get(self.pos).copied().unwrap_or(0) as u64) << self.n;
                self.pos += 1;
                self.n += 8;
            }
        }
    }

    #[inline]
    fn consume(&mut self, k: u32) {
        self.buf >>= k;
        self.n -= k;
    }

    /// Reads `k` <= 32 bits.
    #[inline]
    pub(super) fn bits(&mut self, k: u32) -> usize {
        self.need();
        let v = (self.buf & ((1 << k) - 1)) as usize;
        self.consume(k);
        v
    }

    /// Number of bits consumed, including zeros read past the end.
    pub(super) fn consumed(&self) -> usize {
        self.pos * 8 - self.n as usize
    }

    /// Index of the first byte not yet consumed (rounding partly consumed bytes up).
    fn byte_pos(&self) -> usize {
        self.pos - (self.n / 8) as usize
    }

    /// Fails if more bits were consumed than the input holds.
    fn check(&self) -> Result<(), Error> {
        if self.byte_pos() > self.data.len() {
            return Err("compressed data is truncated");
        }
        Ok(())
    }

    #[inline(always)]
    pub(super) fn decode(&mut self, h: &Huffman) -> Result<usize, Error> {
        self.need();
        let e = h.fast[self.buf as usize & ((1 << FAST_BITS) - 1)];
        if e == LONG {
            return self.decode_long(h);
        }
        self.consume(e as u32 & 15);
        Ok(e as usize >> 4)
    }

    /// Canonical decoding one bit at a time, for codes longer than FAST_BITS: `code - first`
    /// indexes the codes of length `len`.
    #[inline(never)]
    fn decode_long(&mut self, h: &Huffman) -> Result<usize, Error> {
        let (mut code, mut first, mut index) = (0usize, 0usize, 0usize);
        for len in 1..16 {
            code |= (self.buf >> (len - 1)) as usize & 1;
            let count = h.count[len] as usize;
            if code - first < count {
                self.consume(len as u32);
                return Ok(h.symbol[index + code - first] as usize);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("invalid Huffman code")
    }

    /// Decodes the symbols of one Huffman-coded block into `out`.
    fn block(&mut self, out: &mut Vec<u8>, limit: usize, lit: &Huffman, dist: &Huffman) -> Result<(), Error> {
        const TOO_LONG: Error = "decompressed data is longer than expected";
        loop {
            let sym = self.decode(lit)?;
            if sym < 256 {
                if out.len() >= limit {
                    return Err(TOO_LONG);
                }
                out.push(sym as u8);
                continue;
            }
            if sym == 256 {
                return Ok(());
            }
            let i = sym - 257;
            if i >= 29 {
                return Err("invalid length symbol");
            }
            let len = LEN_BASE[i] as usize + self.bits(LEN_EXTRA[i] as u32);
            let d = self.decode(dist)?;
            if d >= 30 {
                return Err("invalid distance symbol");
            }
            let d = DIST_BASE[d] as usize + self.bits(DIST_EXTRA[d] as u32);
            if d > out.len() {
                return Err("distance is too far back");
            }
            if len > limit - out.len() {
                return Err(TOO_LONG);
            }
            let start = out.len() - d;
            if d >= len {
                out.extend_from_within(start..start + len);
            } else {
                for k in start..start + len {
                    out.push(out[k]);
                }
            }
        }
    }

    /// Reads the code tables of a dynamic block.
    fn dynamic_tables(&mut self) -> Result<(Huffman, Huffman), Error> {
        let nlit = self.bits(5) + 257;
        let ndist = self.bits(5) + 1;
        let nclen = self.bits(4) + 4;
        if nlit > 286 || ndist > 30 {
            return Err("too many length or distance codes");
        }
        let mut clen = [0u8; 19];
        for &i in &CLEN_ORDER[..nclen] {
            clen[i as usize] = self.bits(3) as u8;
        }
        let clen = Huffman::new(&clen)?;
        let mut lengths = [0u8; 286 + 30];
        let mut i = 0;
        while i < nlit + ndist {
            let sym = self.decode(&clen)?;
            let (value, repeat) = match sym {
                0..=15 => (sym as u8, 1),
                16 if i > 0 => (lengths[i - 1], 3 + self.bits(2)),
                17 => (0, 3 + self.bits(3)),
                18 => (0, 11 + self.bits(7)),
                _ => return Err("invalid code length repeat"),
            };
            if i + repeat > nlit + ndist {
                return Err("code lengths overflow the table");
            }
            lengths[i..i + repeat].fill(value);
            i += repeat;
        }
        if lengths[256] == 0 {
            return Err("no end-of-block code");
        }
        Ok((Huffman::new(&lengths[..nlit])?, Huffman::new(&lengths[nlit..nlit + ndist])?))
    }
}

/// Adler-32 of `data`.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 is the longest run for which `b` cannot overflow before the reduction.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    b << 16 | a
}

/// Decompresses a zlib stream of at most `limit` bytes; a longer stream is an error.
/// Bytes after the Adler-32 trailer are ignored.
pub(crate) fn zlib(data: &[u8], limit: usize) -> Result<Vec<u8>, Error> {
    let [cmf, flg, ..] = *data else {
        return Err("compressed data is truncated");
    };
    if cmf & 15 != 8 || cmf >> 4 > 7 || !(cmf as u16 * 256 + flg as u16).is_multiple_of(31) || flg & 0x20 != 0 {
        return Err("invalid zlib header");
    }
    let mut r = Bits { pos: 2, ..Bits::new(data) };
    // Deflate's worst case expands 1032:1; never reserve more than the input can produce.
    let mut out = Vec::with_capacity(limit.min(data.len().saturating_mul(1032)));
    loop {
        r.check()?;
        let header = r.bits(3);
        match header >> 1 {
            0 => {
                // Stored: byte-aligned LEN, NLEN, then LEN raw bytes.
                let start = r.byte_pos();
                let hdr = data.get(start..start + 4).ok_or("compressed data is truncated")?;
                let len = u16::from_le_bytes([hdr[0], hdr[1]]) as usize;
                if len != !u16::from_le_bytes([hdr[2], hdr[3]]) as usize {
                    return Err("stored block length mismatch");
                }
                let raw = data.get(start + 4..start + 4 + len).ok_or("compressed data is truncated")?;
                if len > limit - out.len() {
                    return Err("decompressed data is longer than expected");
                }
                out.extend_from_slice(raw);
                r = Bits { pos: start + 4 + len, ..Bits::new(data) };
            }
            1 => {
                let mut lengths = [8u8; 288 + 30];
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                lengths[288..].fill(5);
                r.block(&mut out, limit, &Huffman::new(&lengths[..288])?, &Huffman::new(&lengths[288..])?)?;
            }
            2 => {
                let (lit, dist) = r.dynamic_tables()?;
                r.block(&mut out, limit, &lit, &dist)?;
            }
            _ => return Err("invalid block type"),
        }
        if header & 1 != 0 {
            break;
        }
    }
    r.check()?;
    let end = r.byte_pos();
    let sum = data.get(end..end + 4).ok_or("zlib checksum is missing")?;
    if u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]) != adler32(&out) {
        return Err("zlib checksum mismatch");
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use miniz_oxide::deflate::core::{
        compress_to_output, create_comp_flags_from_zip_params, CompressionStrategy, CompressorOxide, TDEFLFlush,
        TDEFLStatus,
    };

    /// Deterministic pseudo-random bytes with the statistics of image data: skewed byte values
    /// (long Huffman codes), short runs and copies from up to 32 KiB back (matches of every
    /// length and distance class), and stretches of noise.
    pub(crate) fn sample_data(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut v = Vec::with_capacity(n + 300);
        while v.len() < n {
            let r = next();
            match r % 4 {
                0 if v.len() > 3 => {
                    let d = 1 + (next() as usize % v.len().min(1 << (1 + r as usize / 4 % 15)));
                    let len = 3 + (next() as usize % [8, 30, 258][r as usize / 64 % 3]);
                    let start = v.len() - d;
                    for k in 0..len {
                        v.push(v[start + k]);
                    }
                }
                1 => v.extend(std::iter::repeat_n(r as u8, (r >> 8) as usize % 20)),
                _ => {
                    for _ in 0..1 + (r >> 8) % 40 {
                        // Value with a geometric-like distribution over all 256 bytes.
                        let x = next();
                        v.push((x >> (56 + (x % 8))) as u8 ^ (x as u8 & 1));
                    }
                }
            }
        }
        v.truncate(n);
        v
    }

    /// miniz_oxide's zlib stream at `level` with `strategy`; `sync` splits the input with a sync
    /// flush (which ends a block and adds an empty stored block) at each given offset.
    pub(crate) fn compress(data: &[u8], level: i32, strategy: CompressionStrategy, sync: &[usize]) -> Vec<u8> {
        let mut c = CompressorOxide::new(create_comp_flags_from_zip_params(level, 15, strategy as i32));
        let mut out = Vec::new();
        let mut start = 0;
        for &end in sync.iter().chain(&[data.len()]) {
            let flush = if end == data.len() { TDEFLFlush::Finish } else { TDEFLFlush::Sync };
            let (status, used) = compress_to_output(&mut c, &data[start..end], flush, |b| {
                out.extend_from_slice(b);
                true
            });
            assert!(status == TDEFLStatus::Okay || status == TDEFLStatus::Done);
            assert_eq!(used, end - start);
            start = end;
        }
        out
    }

    const STRATEGIES: [CompressionStrategy; 5] = [
        CompressionStrategy::Default,
        CompressionStrategy::Fixed,
        CompressionStrategy::HuffmanOnly,
        CompressionStrategy::RLE,
        CompressionStrategy::Filtered,
    ];

    fn inputs() -> Vec<Vec<u8>> {
        let mut noise = sample_data(70_000, 7);
        let mut s = 1u32;
        for b in &mut noise {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (s >> 24) as u8;
        }
        vec![
            Vec::new(),
            vec![42],
            b"abcabcabcabcabcabcabc".to_vec(),
            sample_data(1000, 1),
            sample_data(150_000, 2),
            vec![9; 100_000],
            noise,
        ]
    }

    #[test]
    fn round_trips_every_block_kind_and_strategy() {
        for data in inputs() {
            for level in [0, 1, 6, 9] {
                for strategy in STRATEGIES {
                    let sync: Vec<usize> = if data.len() > 10 { vec![1, data.len() / 3] } else { vec![] };
                    for sync in [&[][..], &sync] {
                        let z = compress(&data, level, strategy, sync);
                        let got = zlib(&z, data.len());
                        assert!(got.as_deref() == Ok(&data[..]), "len {} level {level} {strategy:?}", data.len());
                        // One byte less room than the data needs is an error, not a short result.
                        if !data.is_empty() {
                            assert!(zlib(&z, data.len() - 1).is_err());
                        }
                        // Trailing bytes after the checksum are ignored.
                        let mut padded = z.clone();
                        padded.extend_from_slice(&[1, 2, 3]);
                        assert!(zlib(&padded, data.len()).as_deref() == Ok(&data[..]));
                    }
                }
            }
        }
    }

    #[test]
    fn adler32_matches_definition() {
        let data = sample_data(20_000, 3);
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &data {
            a = (a + x as u64) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32(&data) as u64, b << 16 | a);
    }

    #[test]
    fn truncated_and_corrupt_streams_are_errors_not_panics() {
        let data = sample_data(3000, 4);
        for (level, strategy) in
            [(0, CompressionStrategy::Default), (6, CompressionStrategy::Fixed), (9, CompressionStrategy::Default)]
        {
            let z = compress(&data, level, strategy, &[]);
            for n in 0..z.len() {
                assert!(zlib(&z[..n], data.len()).is_err(), "prefix of {n} bytes accepted");
            }
            let mut s = 0x1234_5678u32;
            for _ in 0..3000 {
                let mut bad = z.clone();
                for _ in 0..1 + s % 3 {
                    s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let bit = (s >> 8) as usize % (bad.len() * 8);
                    bad[bit / 8] ^= 1 << (bit % 8);
                }
                if let Ok(out) = zlib(&bad, data.len()) {
                    assert!(out.len() <= data.len());
                }
            }
        }
        assert!(zlib(&[0x78], 10).is_err());
        // Preset dictionary, bad check bits, unknown method.
        assert!(zlib(&[0x78, 0xBB, 3, 0, 0, 0, 0, 1], 10).is_err());
        assert!(zlib(&[0x78, 0x9D, 3, 0, 0, 0, 0, 1], 10).is_err());
        assert!(zlib(&[0x79, 0x9C, 3, 0, 0, 0, 0, 1], 10).is_err());
        // The empty stream is accepted; block type 3 is not.
        assert!(zlib(&[0x78, 0x9C, 3, 0, 0, 0, 0, 1], 10).is_ok_and(|v| v.is_empty()));
        assert!(zlib(&[0x78, 0x9C, 7, 0, 0, 0, 0, 1], 10).is_err());
    }
}
