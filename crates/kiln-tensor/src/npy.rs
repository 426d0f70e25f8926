//! NumPy `.npy` files ↔ [`Tensor`].
//!
//! Reads format versions 1.0, 2.0 and 3.0, little- and big-endian data, C order (and Fortran
//! order when at most one dimension exceeds 1, where the layouts coincide). Supported dtypes: `f2 f4 f8`,
//! `i1 i2 i4 i8`, `u1 u2 u4 u8`, `b1`, and unicode `U<n>` (read also: byte strings `S<n>` holding
//! UTF-8), which map to string tensors. Writes version 1.0 (2.0 when the header does not fit),
//! little-endian, C order. `bfloat16` has no standard NumPy dtype, so writing it is an error.
//!
//! Malformed input never panics: every problem is an [`NpyError`].

use std::fmt;

use crate::{checked_numel, f16, DType, Tensor, TensorData};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// What went wrong reading or writing a `.npy` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NpyError {
    /// The bytes do not start with `\x93NUMPY`.
    BadMagic,
    /// A format version other than 1.0, 2.0 or 3.0.
    UnsupportedVersion(u8, u8),
    /// The file ends before the header or the data does.
    Truncated { needed: u64, available: u64 },
    /// The header dictionary could not be parsed or lacks a required key.
    BadHeader(String),
    /// A dtype Kiln does not read or write (structured, object, complex, bfloat16 on write...).
    UnsupportedDtype(String),
    /// A Fortran-ordered array of rank ≥ 2.
    FortranOrder,
    /// The declared shape is too large to allocate.
    TooLarge(String),
    /// The data section holds values the dtype cannot represent (invalid unicode code points...).
    BadData(String),
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NpyError::BadMagic => f.write_str("not a .npy file (missing \\x93NUMPY magic)"),
            NpyError::UnsupportedVersion(a, b) => {
                write!(f, ".npy format version {a}.{b} is not supported (1.0, 2.0 and 3.0 are)")
            }
            NpyError::Truncated { needed, available } => {
                write!(f, ".npy file is truncated: needs {needed} bytes, has {available}")
            }
            NpyError::BadHeader(m) => write!(f, "bad .npy header: {m}"),
            NpyError::UnsupportedDtype(d) => write!(f, "unsupported .npy dtype {d}"),
            NpyError::FortranOrder => {
                f.write_str("Fortran-ordered .npy arrays are not supported; save with np.ascontiguousarray")
            }
            NpyError::TooLarge(m) => write!(f, ".npy array is too large: {m}"),
            NpyError::BadData(m) => write!(f, "bad .npy data: {m}"),
        }
    }
}

impl std::error::Error for NpyError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Uint,
    Bool,
    Unicode,
    Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Descr {
    kind: Kind,
    /// Bytes per element (for unicode: 4 × characters).
    size: usize,
    big_endian: bool,
}

/// Parses a dtype string such as `<f4`, `|b1`, `>i8`, `<U7`.
fn parse_descr(s: &str) -> Result<Descr, NpyError> {
    let unsupported = || NpyError::UnsupportedDtype(format!("'{s}'"));
    let mut chars = s.chars();
    let (big_endian, rest) = match chars.next() {
        Some('<') | Some('=') | Some('|') => (false, chars.as_str()),
        Some('>') | Some('!') => (true, chars.as_str()),
        _ => (false, s),
    };
    let mut rc = rest.chars();
    let kind_ch = rc.next().ok_or_else(unsupported)?;
    let digits = rc.as_str();
    let n: usize = if digits.is_empty() {
        match kind_ch {
            '?' => 1,
            _ => return Err(unsupported()),
        }
    } else {
        if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 12 {
            return Err(unsupported());
        }
        digits.parse().map_err(|_| unsupported())?
    };
    let (kind, size) = match (kind_ch, n) {
        ('f', 2 | 4 | 8) => (Kind::Float, n),
        ('i', 1 | 2 | 4 | 8) => (Kind::Int, n),
        ('u', 1 | 2 | 4 | 8) => (Kind::Uint, n),
        ('b', 1) | ('?', 1) => (Kind::Bool, 1),
        ('U', n) => (Kind::Unicode, n.checked_mul(4).ok_or_else(unsupported)?),
        ('S', n) | ('a', n) => (Kind::Bytes, n),
        _ => return Err(unsupported()),
    };
    Ok(Descr { kind, size, big_endian })
}

/// A value of the header's Python literal dictionary.
#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(u64),
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
    None,
}

struct LitParser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> LitParser<'a> {
    fn err(&self, what: &str) -> NpyError {
        NpyError::BadHeader(format!("{what} at byte {}", self.pos))
    }
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }
    fn expect(&mut self, c: u8) -> Result<(), NpyError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }
    fn value(&mut self) -> Result<Lit, NpyError> {
        self.depth += 1;
        if self.depth > 32 {
            return Err(self.err("nesting too deep"));
        }
        let v = match self.peek() {
            Some(b'\'') | Some(b'"') => self.string().map(Lit::Str),
            Some(b'(') => self.seq(b'(', b')').map(Lit::Tuple),
            Some(b'[') => self.seq(b'[', b']').map(Lit::List),
            Some(b'{') => self.dict(),
            Some(c) if c.is_ascii_digit() => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_') {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    _ => Err(self.err("unexpected name")),
                }
            }
            _ => Err(self.err("expected a value")),
        };
        self.depth -= 1;
        v
    }
    fn string(&mut self) -> Result<String, NpyError> {
        let q = self.s[self.pos];
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(&c) = self.s.get(self.pos) {
            self.pos += 1;
            if c == q {
                return String::from_utf8(out).map_err(|_| self.err("string is not valid text"));
            }
            if c == b'\\' {
                let e = *self.s.get(self.pos).ok_or_else(|| self.err("unterminated string"))?;
                self.pos += 1;
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'0' => 0,
                    other => other,
                });
            } else {
                out.push(c);
            }
        }
        Err(self.err("unterminated string"))
    }
    fn int(&mut self) -> Result<Lit, NpyError> {
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("bad integer"))?;
        let v: u64 = text.parse().map_err(|_| self.err("integer out of range"))?;
        // Python 2 era files write longs as `3L`.
        if matches!(self.s.get(self.pos), Some(b'L') | Some(b'l')) {
            self.pos += 1;
        }
        Ok(Lit::Int(v))
    }
    fn seq(&mut self, open: u8, close: u8) -> Result<Vec<Lit>, NpyError> {
        self.expect(open)?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(self.err("expected ',' or closing bracket")),
            }
        }
    }
    fn dict(&mut self) -> Result<Lit, NpyError> {
        self.expect(b'{')?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(Lit::Dict(items));
            }
            let k = self.value()?;
            self.expect(b':')?;
            let v = self.value()?;
            items.push((k, v));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }
}

struct Header {
    descr: Descr,
    fortran: bool,
    shape: Vec<usize>,
}

fn parse_header(text: &[u8]) -> Result<Header, NpyError> {
    let mut p = LitParser { s: text, pos: 0, depth: 0 };
    let lit = p.value()?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(NpyError::BadHeader("unexpected text after the header dictionary".into()));
    }
    let Lit::Dict(items) = lit else {
        return Err(NpyError::BadHeader("header is not a dictionary".into()));
    };
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| matches!(k, Lit::Str(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| NpyError::BadHeader(format!("missing key '{key}'")))
    };
    let descr = match get("descr")? {
        Lit::Str(s) => parse_descr(s)?,
        other => return Err(NpyError::UnsupportedDtype(format!("{other:?} (structured dtypes are not supported)"))),
    };
    let fortran = match get("fortran_order")? {
        Lit::Bool(b) => *b,
        _ => return Err(NpyError::BadHeader("'fortran_order' is not a bool".into())),
    };
    let shape = match get("shape")? {
        Lit::Tuple(v) | Lit::List(v) => v
            .iter()
            .map(|d| match d {
                Lit::Int(n) => usize::try_from(*n).map_err(|_| NpyError::TooLarge(format!("dimension {n}"))),
                _ => Err(NpyError::BadHeader("'shape' holds a non-integer".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(NpyError::BadHeader("'shape' is not a tuple".into())),
    };
    Ok(Header { descr, fortran, shape })
}

/// Parses a `.npy` file.
pub fn read_npy(bytes: &[u8]) -> Result<Tensor, NpyError> {
    let avail = bytes.len() as u64;
    if bytes.len() < 8 {
        if bytes.len() < 6 && !MAGIC.starts_with(bytes) {
            return Err(NpyError::BadMagic);
        }
        if bytes.len() >= 6 && &bytes[..6] != MAGIC {
            return Err(NpyError::BadMagic);
        }
        return Err(NpyError::Truncated { needed: 10, available: avail });
    }
    if &bytes[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2usize, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => return Err(NpyError::UnsupportedVersion(major, minor)),
    };
    let header_start = 8 + len_bytes;
    if bytes.len() < header_start {
        return Err(NpyError::Truncated { needed: header_start as u64, available: avail });
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as u64
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as u64
    };
    let data_start = header_start as u64 + header_len;
    if data_start > avail {
        return Err(NpyError::Truncated { needed: data_start, available: avail });
    }
    let data_start = data_start as usize;
    let raw_header = &bytes[header_start..data_start];
    let header_text: Vec<u8> = if utf8 {
        std::str::from_utf8(raw_header)
            .map_err(|_| NpyError::BadHeader("version 3.0 header is not valid UTF-8".into()))?;
        raw_header.to_vec()
    } else {
        // latin-1: every byte is a code point; only ASCII matters for the dictionary syntax,
        // so map the rest to UTF-8 to keep string parsing simple.
        let s: String = raw_header.iter().map(|&b| b as char).collect();
        s.into_bytes()
    };
    let h = parse_header(&header_text)?;
    // Fortran and C order coincide when at most one dimension exceeds 1.
    if h.fortran && h.shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(NpyError::FortranOrder);
    }
    let numel = checked_numel(&h.shape).map_err(|e| NpyError::TooLarge(e.0))?;
    let nbytes = (numel as u64)
        .checked_mul(h.descr.size as u64)
        .ok_or_else(|| NpyError::TooLarge(format!("shape {:?}", h.shape)))?;
    let available = (bytes.len() - data_start) as u64;
    if nbytes > available {
        return Err(NpyError::Truncated { needed: data_start as u64 + nbytes, available: avail });
    }
    let data = &bytes[data_start..data_start + nbytes as usize];
    let td = decode(h.descr, data, numel)?;
    Tensor::new(h.shape, td).map_err(|e| NpyError::BadData(e.0))
}

fn chunks<const N: usize>(data: &[u8], big: bool) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N).map(move |c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        if big {
            a.reverse();
        }
        a
    })
}

fn decode(d: Descr, data: &[u8], numel: usize) -> Result<TensorData, NpyError> {
    let be = d.big_endian;
    Ok(match (d.kind, d.size) {
        (Kind::Float, 2) => TensorData::F16(chunks::<2>(data, be).map(|b| f16::from_bits(u16::from_le_bytes(b))).collect()),
        (Kind::Float, 4) => TensorData::F32(chunks::<4>(data, be).map(f32::from_le_bytes).collect()),
        (Kind::Float, 8) => TensorData::F64(chunks::<8>(data, be).map(f64::from_le_bytes).collect()),
        (Kind::Int, 1) => TensorData::I8(data.iter().map(|&b| b as i8).collect()),
        (Kind::Int, 2) => TensorData::I16(chunks::<2>(data, be).map(i16::from_le_bytes).collect()),
        (Kind::Int, 4) => TensorData::I32(chunks::<4>(data, be).map(i32::from_le_bytes).collect()),
        (Kind::Int, 8) => TensorData::I64(chunks::<8>(data, be).map(i64::from_le_bytes).collect()),
        (Kind::Uint, 1) => TensorData::U8(data.to_vec()),
        (Kind::Uint, 2) => TensorData::U16(chunks::<2>(data, be).map(u16::from_le_bytes).collect()),
        (Kind::Uint, 4) => TensorData::U32(chunks::<4>(data, be).map(u32::from_le_bytes).collect()),
        (Kind::Uint, 8) => TensorData::U64(chunks::<8>(data, be).map(u64::from_le_bytes).collect()),
        (Kind::Bool, 1) => TensorData::Bool(data.iter().map(|&b| b != 0).collect()),
        (Kind::Unicode, size) => {
            let mut out = Vec::with_capacity(numel);
            if size == 0 {
                out.resize(numel, String::new());
            } else {
                for elem in data.chunks_exact(size) {
                    let mut s = String::new();
                    let units: Vec<u32> = chunks::<4>(elem, be).map(u32::from_le_bytes).collect();
                    let end = units.iter().rposition(|&u| u != 0).map_or(0, |i| i + 1);
                    for &u in &units[..end] {
                        let c = char::from_u32(u)
                            .ok_or_else(|| NpyError::BadData(format!("invalid unicode code point {u:#x}")))?;
                        s.push(c);
                    }
                    out.push(s);
                }
            }
            TensorData::String(out)
        }
        (Kind::Bytes, size) => {
            let mut out = Vec::with_capacity(numel);
            if size == 0 {
                out.resize(numel, String::new());
            } else {
                for elem in data.chunks_exact(size) {
                    let end = elem.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                    let s = std::str::from_utf8(&elem[..end])
                        .map_err(|_| NpyError::BadData("byte string is not valid UTF-8".into()))?;
                    out.push(s.to_string());
                }
            }
            TensorData::String(out)
        }
        _ => return Err(NpyError::UnsupportedDtype(format!("{d:?}"))),
    })
}

/// The descr string and element size in bytes of a tensor's dtype.
fn descr_of(t: &Tensor) -> Result<(String, usize), NpyError> {
    let fixed = |s: &str| Ok((s.to_string(), t.dtype().size()));
    match t.data() {
        TensorData::F16(_) => fixed("<f2"),
        TensorData::F32(_) => fixed("<f4"),
        TensorData::F64(_) => fixed("<f8"),
        TensorData::I8(_) => fixed("|i1"),
        TensorData::I16(_) => fixed("<i2"),
        TensorData::I32(_) => fixed("<i4"),
        TensorData::I64(_) => fixed("<i8"),
        TensorData::U8(_) => fixed("|u1"),
        TensorData::U16(_) => fixed("<u2"),
        TensorData::U32(_) => fixed("<u4"),
        TensorData::U64(_) => fixed("<u8"),
        TensorData::Bool(_) => fixed("|b1"),
        TensorData::String(v) => {
            // numpy gives an array of empty strings the dtype '<U1'
            let n = v.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(1);
            let size = n.checked_mul(4).ok_or_else(|| NpyError::TooLarge("string".into()))?;
            Ok((format!("<U{n}"), size))
        }
        TensorData::BF16(_) => Err(NpyError::UnsupportedDtype(
            "bfloat16 (NumPy has no standard bfloat16 dtype; convert to float32 first)".into(),
        )),
        other => Err(NpyError::UnsupportedDtype(format!(
            "{} (NumPy has no standard dtype for it; convert to float32 or an integer type first)",
            other.dtype()
        ))),
    }
}

/// Serialises a tensor as a `.npy` file (version 1.0, or 2.0 when the header needs it).
pub fn write_npy(t: &Tensor) -> Result<Vec<u8>, NpyError> {
    let (descr, elem_size) = descr_of(t)?;
    let shape = match t.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so the data starts on a 64-byte boundary; the header ends with '\n'.
    let header_len = |len_bytes: usize| {
        let unpadded = MAGIC.len() + 2 + len_bytes + dict.len() + 1;
        dict.len() + (64 - unpadded % 64) % 64 + 1
    };
    let (version, len_bytes) = if header_len(2) <= u16::MAX as usize { (1u8, 2usize) } else { (2, 4) };
    let header_len = header_len(len_bytes);
    let pad = header_len - dict.len() - 1;
    let data_len = t.len().checked_mul(elem_size).ok_or_else(|| NpyError::TooLarge("tensor".into()))?;
    let mut out = Vec::with_capacity(6 + 2 + len_bytes + header_len + data_len);
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.push(0);
    if len_bytes == 2 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        let l = u32::try_from(header_len).map_err(|_| NpyError::TooLarge("header".into()))?;
        out.extend_from_slice(&l.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    match t.data() {
        TensorData::F16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_bits().to_le_bytes())),
        TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I8(v) => v.iter().for_each(|x| out.push(*x as u8)),
        TensorData::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bool(v) => v.iter().for_each(|x| out.push(*x as u8)),
        TensorData::String(v) => {
            let n = elem_size / 4;
            for s in v {
                let mut k = 0;
                for c in s.chars() {
                    out.extend_from_slice(&(c as u32).to_le_bytes());
                    k += 1;
                }
                for _ in k..n {
                    out.extend_from_slice(&0u32.to_le_bytes());
                }
            }
        }
        _ => unreachable!("rejected by descr_of"),
    }
    Ok(out)
}

/// The dtype a `.npy` descr string maps to, e.g. `"<f4"` → `F32` (for messages and checks).
pub fn dtype_of_descr(descr: &str) -> Result<DType, NpyError> {
    let d = parse_descr(descr)?;
    Ok(match (d.kind, d.size) {
        (Kind::Float, 2) => DType::F16,
        (Kind::Float, 4) => DType::F32,
        (Kind::Float, 8) => DType::F64,
        (Kind::Int, 1) => DType::I8,
        (Kind::Int, 2) => DType::I16,
        (Kind::Int, 4) => DType::I32,
        (Kind::Int, 8) => DType::I64,
        (Kind::Uint, 1) => DType::U8,
        (Kind::Uint, 2) => DType::U16,
        (Kind::Uint, 4) => DType::U32,
        (Kind::Uint, 8) => DType::U64,
        (Kind::Bool, _) => DType::Bool,
        (Kind::Unicode, _) | (Kind::Bytes, _) => DType::String,
        _ => return Err(NpyError::UnsupportedDtype(descr.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bf16;

    fn roundtrip(t: Tensor) {
        let bytes = write_npy(&t).unwrap();
        assert_eq!(&bytes[..6], MAGIC);
        let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0, "data is 64-byte aligned");
        assert_eq!(bytes[10 + hl - 1], b'\n');
        assert_eq!(read_npy(&bytes).unwrap(), t);
    }

    #[test]
    fn roundtrips_every_writable_dtype() {
        roundtrip(Tensor::from_vec(vec![2, 3], vec![1.5f32, -2.0, 0.0, f32::INFINITY, 3.25, -0.0]).unwrap());
        roundtrip(Tensor::from_vec(vec![2], vec![1.5f64, -1e300]).unwrap());
        roundtrip(Tensor::from_vec(vec![3], vec![f16::from_f32(1.0), f16::from_f32(-0.5), f16::MAX]).unwrap());
        roundtrip(Tensor::from_vec(vec![2], vec![-128i8, 127]).unwrap());
        roundtrip(Tensor::from_vec(vec![2], vec![-300i16, 300]).unwrap());
        roundtrip(Tensor::from_vec(vec![2], vec![i32::MIN, i32::MAX]).unwrap());
        roundtrip(Tensor::from_vec(vec![1, 2], vec![i64::MIN, i64::MAX]).unwrap());
        roundtrip(Tensor::from_vec(vec![2], vec![0u8, 255]).unwrap());
        roundtrip(Tensor::from_vec(vec![2], vec![0u16, 65535]).unwrap());
        roundtrip(Tensor::from_vec(vec![2], vec![0u32, u32::MAX]).unwrap());
        roundtrip(Tensor::from_vec(vec![2], vec![0u64, u64::MAX]).unwrap());
        roundtrip(Tensor::from_vec(vec![3], vec![true, false, true]).unwrap());
        roundtrip(Tensor::from_vec(vec![2, 2], vec!["a".to_string(), "".into(), "héllo".into(), "日本".into()]).unwrap());
        roundtrip(Tensor::from_vec(vec![0], Vec::<String>::new()).unwrap());
        roundtrip(Tensor::scalar(7i64));
        roundtrip(Tensor::from_vec(vec![0, 3], Vec::<f32>::new()).unwrap());
    }

    #[test]
    fn bf16_is_not_written() {
        let t = Tensor::from_vec(vec![1], vec![bf16::from_f32(1.0)]).unwrap();
        assert!(matches!(write_npy(&t), Err(NpyError::UnsupportedDtype(_))));
    }

    #[test]
    fn header_is_what_numpy_writes() {
        let t = Tensor::from_vec(vec![2, 3], vec![0f32; 6]).unwrap();
        let b = write_npy(&t).unwrap();
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
        assert!(h.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        let t = Tensor::from_vec(vec![5], vec![0i64; 5]).unwrap();
        let b = write_npy(&t).unwrap();
        assert!(std::str::from_utf8(&b[10..70]).unwrap().contains("'shape': (5,)"));
    }

    fn file(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.push(version);
        v.push(0);
        if version == 1 {
            v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_big_endian_and_other_versions() {
        let be: Vec<u8> = [1.0f32, -2.5].iter().flat_map(|x| x.to_be_bytes()).collect();
        for v in [1, 2, 3] {
            let f = file(v, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", &be);
            assert_eq!(read_npy(&f).unwrap(), Tensor::from_vec(vec![2], vec![1.0f32, -2.5]).unwrap());
        }
        let be: Vec<u8> = [0x41u32, 0x42].iter().flat_map(|x| x.to_be_bytes()).collect();
        let f = file(1, "{'descr': '>U2', 'fortran_order': False, 'shape': (), }\n", &be);
        assert_eq!(read_npy(&f).unwrap(), Tensor::scalar("AB".to_string()));
    }

    #[test]
    fn tolerant_header_forms() {
        let d: Vec<u8> = [7i64, 8].iter().flat_map(|x| x.to_le_bytes()).collect();
        let f = file(1, "{\"shape\": (2L,), \"fortran_order\": False, \"descr\": \"<i8\"}", &d);
        assert_eq!(read_npy(&f).unwrap(), Tensor::from_vec(vec![2], vec![7i64, 8]).unwrap());
        // Fortran order is harmless for rank 1.
        let f = file(1, "{'descr': '<i8', 'fortran_order': True, 'shape': (2,), }", &d);
        assert!(read_npy(&f).is_ok());
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let ok = write_npy(&Tensor::from_vec(vec![2, 2], vec![1f32, 2., 3., 4.]).unwrap()).unwrap();
        // every truncation is an error, never a panic
        for n in 0..ok.len() {
            assert!(read_npy(&ok[..n]).is_err(), "truncated to {n} bytes");
        }
        assert_eq!(read_npy(b"hello world"), Err(NpyError::BadMagic));
        let mut v = ok.clone();
        v[6] = 4;
        assert_eq!(read_npy(&v), Err(NpyError::UnsupportedVersion(4, 0)));
        let f = file(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", &[0; 16]);
        assert_eq!(read_npy(&f), Err(NpyError::FortranOrder));
        let f = file(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", &[0; 8]);
        assert!(matches!(read_npy(&f), Err(NpyError::UnsupportedDtype(_))));
        let f = file(1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", &[0; 8]);
        assert!(matches!(read_npy(&f), Err(NpyError::UnsupportedDtype(_))));
        let f = file(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", &[0; 4]);
        assert!(matches!(read_npy(&f), Err(NpyError::UnsupportedDtype(_))));
        let f = file(1, "{'descr': '<f4', 'shape': (1,), }", &[0; 4]);
        assert!(matches!(read_npy(&f), Err(NpyError::BadHeader(_))));
        let f = file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", &[0; 4]);
        assert!(matches!(read_npy(&f), Err(NpyError::BadHeader(_))));
        let f = file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", &[]);
        assert!(matches!(read_npy(&f), Err(NpyError::TooLarge(_))));
        let f = file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", &[]);
        assert!(read_npy(&f).is_err());
        let f = file(1, "{'descr': '<U1', 'fortran_order': False, 'shape': (1,), }", &0xD800u32.to_le_bytes());
        assert!(matches!(read_npy(&f), Err(NpyError::BadData(_))));
        let f = file(1, "{'descr': '<U99999999999999999', 'fortran_order': False, 'shape': (1,), }", &[]);
        assert!(read_npy(&f).is_err());
        let deep = format!("{}{}", "(".repeat(10000), ")".repeat(10000));
        let f = file(1, &deep, &[]);
        assert!(matches!(read_npy(&f), Err(NpyError::BadHeader(_))));
        // header length pointing past the end
        let mut v = ok.clone();
        v[8] = 0xff;
        v[9] = 0xff;
        assert!(matches!(read_npy(&v), Err(NpyError::Truncated { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        // a small deterministic fuzz over mutated valid files
        let base = write_npy(&Tensor::from_vec(vec![3], vec!["ab".to_string(), "c".into(), "".into()]).unwrap()).unwrap();
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for _ in 0..5000 {
            let mut v = base.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % v.len();
                v[i] = (x >> 32) as u8;
            }
            let _ = read_npy(&v);
        }
    }

    #[test]
    fn descr_names() {
        assert_eq!(dtype_of_descr("<f4").unwrap(), DType::F32);
        assert_eq!(dtype_of_descr("|b1").unwrap(), DType::Bool);
        assert_eq!(dtype_of_descr("<U3").unwrap(), DType::String);
        assert!(dtype_of_descr("<c16").is_err());
    }
}
