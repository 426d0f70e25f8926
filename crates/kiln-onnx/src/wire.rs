//! Protobuf wire format: a bounds-checked reader for tags, varints, fixed-width scalars and
//! length-delimited fields, plus the error type that records where decoding failed.
//!
//! Every read checks the remaining input first, so malformed bytes produce a `DecodeError`
//! (message, byte offset and field path) and never a panic or an oversized allocation.

use std::fmt;

use crate::proto::{RawData, SharedBytes};

/// How deeply messages may nest (graphs in attributes in graphs, types in types, ...).
pub const MAX_DEPTH: u32 = 64;

/// A decoding failure: what went wrong, at which absolute byte offset, and the field path
/// (innermost segment first, so callers can push context cheaply as the error propagates).
#[derive(Debug)]
pub struct DecodeError {
    msg: String,
    at: usize,
    path: Vec<String>,
}

impl DecodeError {
    pub fn new(msg: impl Into<String>, at: usize) -> DecodeError {
        DecodeError {
            msg: msg.into(),
            at,
            path: Vec::new(),
        }
    }

    /// Renders the error with the root message name, e.g.
    /// "truncated varint at byte 1234 in ModelProto.graph.node[3]".
    pub fn render(&self, root: &str) -> String {
        let mut s = format!("{} at byte {} in {}", self.msg, self.at, root);
        for seg in self.path.iter().rev() {
            s.push('.');
            s.push_str(seg);
        }
        s
    }
}

/// Adds field context to a decoding error as it propagates outwards.
pub trait Context<T> {
    fn ctx(self, field: &str) -> Result<T, DecodeError>;
    fn ctx_at(self, field: &str, index: usize) -> Result<T, DecodeError>;
}

impl<T> Context<T> for Result<T, DecodeError> {
    fn ctx(self, field: &str) -> Result<T, DecodeError> {
        self.map_err(|mut e| {
            e.path.push(field.to_string());
            e
        })
    }
    fn ctx_at(self, field: &str, index: usize) -> Result<T, DecodeError> {
        self.map_err(|mut e| {
            e.path.push(format!("{field}[{index}]"));
            e
        })
    }
}

/// The four wire types Kiln accepts (groups, 3 and 4, are rejected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::Len => "length-delimited",
            WireType::Fixed32 => "fixed32",
        }
    }
}

impl fmt::Display for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field key: field number, wire type and the offset of the key itself.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub number: u32,
    pub wire: WireType,
    pub at: usize,
}

/// Reads protobuf fields from a byte slice; `base` is the absolute offset of `buf[0]`.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    /// The whole input when it is shared: `raw_bytes` then refers to it instead of copying.
    shared: Option<&'a SharedBytes>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            base: 0,
            shared: None,
        }
    }

    /// A reader over the whole of `shared`, whose `raw_bytes` fields refer into it.
    pub fn new_shared(shared: &'a SharedBytes) -> Reader<'a> {
        Reader {
            buf: shared.bytes(),
            pos: 0,
            base: 0,
            shared: Some(shared),
        }
    }

    /// Absolute offset of the next unread byte.
    pub fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn err(&self, msg: impl Into<String>) -> DecodeError {
        DecodeError::new(msg, self.offset())
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e).map(|s| (s, e))) {
            Some((s, e)) => {
                self.pos = e;
                Ok(s)
            }
            None => Err(self.err(format!(
                "truncated {what}: needs {n} bytes, {} remain",
                self.remaining()
            ))),
        }
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.offset();
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DecodeError::new("truncated varint", start));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::new("varint longer than 10 bytes", start))
    }

    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let at = self.offset();
        <[u8; N]>::try_from(self.take(N, what)?)
            .map_err(|_| DecodeError::new(format!("truncated {what}"), at))
    }

    /// The next field key, or `None` at the end of the message.
    pub fn field(&mut self) -> Result<Option<Field>, DecodeError> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let at = self.offset();
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|&n| n != 0 && n < (1 << 29))
            .ok_or_else(|| DecodeError::new(format!("invalid field number {}", key >> 3), at))?;
        let wire = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            3 | 4 => {
                return Err(DecodeError::new(
                    format!(
                    "field {number} uses the deprecated group wire type, which is not supported"
                ),
                    at,
                ))
            }
            w => {
                return Err(DecodeError::new(
                    format!("field {number} has invalid wire type {w}"),
                    at,
                ))
            }
        };
        Ok(Some(Field { number, wire, at }))
    }

    /// Skips the value of a field Kiln does not read.
    pub fn skip(&mut self, f: Field) -> Result<(), DecodeError> {
        match f.wire {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8, "fixed64").map(drop),
            WireType::Fixed32 => self.take(4, "fixed32").map(drop),
            WireType::Len => self.len_delimited().map(drop),
        }
    }

    fn expect(&self, f: Field, wire: WireType) -> Result<(), DecodeError> {
        if f.wire == wire {
            Ok(())
        } else {
            Err(DecodeError::new(
                format!(
                    "field {} has wire type {}, expected {}",
                    f.number, f.wire, wire
                ),
                f.at,
            ))
        }
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.offset();
        let len = self.varint()?;
        let remaining = self.remaining();
        match usize::try_from(len).ok().filter(|&n| n <= remaining) {
            Some(n) => self.take(n, "length-delimited field"),
            None => Err(DecodeError::new(
                format!("length {len} exceeds the {remaining} bytes that remain"),
                at,
            )),
        }
    }

    /// A length-delimited payload as a sub-reader that keeps absolute offsets.
    fn sub(&mut self, f: Field) -> Result<Reader<'a>, DecodeError> {
        self.expect(f, WireType::Len)?;
        let buf = self.len_delimited()?;
        Ok(Reader {
            buf,
            pos: 0,
            base: self.offset().saturating_sub(buf.len()),
            shared: self.shared,
        })
    }

    pub fn bytes(&mut self, f: Field) -> Result<Vec<u8>, DecodeError> {
        self.expect(f, WireType::Len)?;
        Ok(self.len_delimited()?.to_vec())
    }

    /// A bytes field that may be large: a range of the shared input when there is one.
    pub fn raw_bytes(&mut self, f: Field) -> Result<RawData, DecodeError> {
        self.expect(f, WireType::Len)?;
        let b = self.len_delimited()?;
        if let Some(shared) = self.shared {
            let end = self.offset();
            if let Some(raw) = RawData::shared(shared, end.saturating_sub(b.len())..end) {
                return Ok(raw);
            }
        }
        Ok(RawData::from(b.to_vec()))
    }

    pub fn string(&mut self, f: Field) -> Result<String, DecodeError> {
        self.expect(f, WireType::Len)?;
        let at = self.offset();
        let b = self.len_delimited()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::new("string is not valid UTF-8", at))
    }

    pub fn uint64(&mut self, f: Field) -> Result<u64, DecodeError> {
        self.expect(f, WireType::Varint)?;
        self.varint()
    }

    pub fn int64(&mut self, f: Field) -> Result<i64, DecodeError> {
        self.uint64(f).map(|v| v as i64)
    }

    /// `int32` and enum fields: negative values are sign-extended to ten bytes on the wire,
    /// so truncating to the low 32 bits is the protobuf rule.
    pub fn int32(&mut self, f: Field) -> Result<i32, DecodeError> {
        self.uint64(f).map(|v| v as i32)
    }

    pub fn float(&mut self, f: Field) -> Result<f32, DecodeError> {
        self.expect(f, WireType::Fixed32)?;
        self.fixed::<4>("fixed32").map(f32::from_le_bytes)
    }

    /// A nested message: checks the depth limit and merges the payload into `msg`.
    pub fn message<T>(
        &mut self,
        f: Field,
        depth: u32,
        msg: &mut T,
        merge: fn(&mut Reader<'a>, &mut T, u32) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let mut sub = self.sub(f)?;
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(DecodeError::new(
                format!("messages nest deeper than {MAX_DEPTH} levels"),
                f.at,
            ));
        }
        merge(&mut sub, msg, depth)
    }

    /// A nested message decoded into a fresh value.
    pub fn new_message<T: Default>(
        &mut self,
        f: Field,
        depth: u32,
        merge: fn(&mut Reader<'a>, &mut T, u32) -> Result<(), DecodeError>,
    ) -> Result<T, DecodeError> {
        let mut msg = T::default();
        self.message(f, depth, &mut msg, merge)?;
        Ok(msg)
    }

    /// Repeated varint scalars, packed or not; `conv` maps the raw varint to the element.
    fn repeated_varint<T>(
        &mut self,
        f: Field,
        out: &mut Vec<T>,
        conv: fn(u64) -> T,
    ) -> Result<(), DecodeError> {
        match f.wire {
            WireType::Varint => out.push(conv(self.varint()?)),
            WireType::Len => {
                let mut sub = self.sub(f)?;
                out.reserve(sub.buf.iter().filter(|&&b| b & 0x80 == 0).count());
                while sub.remaining() > 0 {
                    out.push(conv(sub.varint()?));
                }
            }
            _ => self.expect(f, WireType::Varint)?,
        }
        Ok(())
    }

    /// Repeated fixed-width scalars, packed or not.
    fn repeated_fixed<T, const N: usize>(
        &mut self,
        f: Field,
        wire: WireType,
        out: &mut Vec<T>,
        conv: fn([u8; N]) -> T,
    ) -> Result<(), DecodeError> {
        if f.wire == wire {
            out.push(conv(self.fixed::<N>(wire.name())?));
            return Ok(());
        }
        if f.wire != WireType::Len {
            return self.expect(f, wire);
        }
        let at = self.offset();
        let mut sub = self.sub(f)?;
        if sub.buf.len() % N != 0 {
            return Err(DecodeError::new(
                format!(
                    "packed {wire} field of {} bytes is not a multiple of {N}",
                    sub.buf.len()
                ),
                at,
            ));
        }
        out.reserve(sub.buf.len() / N);
        while sub.remaining() > 0 {
            out.push(conv(sub.fixed::<N>(wire.name())?));
        }
        Ok(())
    }

    pub fn repeated_int64(&mut self, f: Field, out: &mut Vec<i64>) -> Result<(), DecodeError> {
        self.repeated_varint(f, out, |v| v as i64)
    }

    pub fn repeated_int32(&mut self, f: Field, out: &mut Vec<i32>) -> Result<(), DecodeError> {
        self.repeated_varint(f, out, |v| v as i32)
    }

    pub fn repeated_uint64(&mut self, f: Field, out: &mut Vec<u64>) -> Result<(), DecodeError> {
        self.repeated_varint(f, out, |v| v)
    }

    pub fn repeated_float(&mut self, f: Field, out: &mut Vec<f32>) -> Result<(), DecodeError> {
        self.repeated_fixed(f, WireType::Fixed32, out, f32::from_le_bytes)
    }

    pub fn repeated_double(&mut self, f: Field, out: &mut Vec<f64>) -> Result<(), DecodeError> {
        self.repeated_fixed(f, WireType::Fixed64, out, f64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut r = Reader::new(&[
            0x96, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        assert_eq!(r.varint().unwrap(), 150);
        assert_eq!(r.varint().unwrap(), 0);
        assert_eq!(r.varint().unwrap(), u64::MAX);
        assert!(r.varint().is_err());
        let mut r = Reader::new(&[0x80; 11]);
        assert!(r.varint().unwrap_err().msg.contains("longer than 10"));
    }

    #[test]
    fn length_beyond_input_is_rejected() {
        let mut r = Reader::new(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]);
        let f = r.field().unwrap().unwrap();
        let e = r.bytes(f).unwrap_err();
        assert!(e.msg.contains("exceeds"), "{}", e.msg);
        assert_eq!(e.at, 1);
    }

    #[test]
    fn packed_and_unpacked() {
        // field 1 unpacked 3, field 1 packed [1, 300]
        let mut r = Reader::new(&[0x08, 0x03, 0x0a, 0x03, 0x01, 0xac, 0x02]);
        let mut out = Vec::new();
        while let Some(f) = r.field().unwrap() {
            r.repeated_int64(f, &mut out).unwrap();
        }
        assert_eq!(out, vec![3, 1, 300]);
    }

    #[test]
    fn group_wire_types_are_errors() {
        let mut r = Reader::new(&[0x0b]);
        assert!(r.field().is_err());
        let mut r = Reader::new(&[0x0f]);
        assert!(r.field().is_err());
        let mut r = Reader::new(&[0x00]);
        assert!(r.field().is_err());
    }
}
