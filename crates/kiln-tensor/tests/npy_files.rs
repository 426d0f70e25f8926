//! Reads the .npy files numpy wrote (tests/data/make.py) and checks them against expected.json.

use std::path::PathBuf;

use kiln_tensor::npy::{read_npy, write_npy, NpyError};
use kiln_tensor::{Tensor, TensorData};

/// A minimal JSON value; numbers keep their source text so 64-bit integers stay exact.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            other => panic!("expected an array, got {other:?}"),
        }
    }
}

fn parse_json(text: &str) -> Json {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let v = p.value();
    p.ws();
    assert_eq!(p.i, p.s.len(), "trailing text in JSON");
    v
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.s[self.i], c, "JSON: expected '{}' at {}", c as char, self.i);
        self.i += 1;
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(items);
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value() else { panic!("JSON: object key is not a string") };
                    self.eat(b':');
                    let v = self.value();
                    items.push((k, v));
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b'}' {
                        return Json::Obj(items);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(items);
                }
                loop {
                    items.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b']' {
                        return Json::Arr(items);
                    }
                }
            }
            b'"' => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let c = self.s[self.i];
                    self.i += 1;
                    match c {
                        b'"' => return Json::Str(out),
                        b'\\' => {
                            let e = self.s[self.i];
                            self.i += 1;
                            match e {
                                b'n' => out.push('\n'),
                                b't' => out.push('\t'),
                                b'r' => out.push('\r'),
                                b'b' => out.push('\u{8}'),
                                b'f' => out.push('\u{c}'),
                                b'u' => {
                                    let hex = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                                    self.i += 4;
                                    let mut cp = u32::from_str_radix(hex, 16).unwrap();
                                    if (0xD800..0xDC00).contains(&cp) && self.s[self.i] == b'\\' {
                                        let lo = std::str::from_utf8(&self.s[self.i + 2..self.i + 6]).unwrap();
                                        let lo = u32::from_str_radix(lo, 16).unwrap();
                                        self.i += 6;
                                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                    }
                                    out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                                }
                                other => out.push(other as char),
                            }
                        }
                        _ => {
                            // copy one UTF-8 sequence
                            let start = self.i - 1;
                            let mut end = self.i;
                            while end < self.s.len() && (self.s[end] & 0xC0) == 0x80 {
                                end += 1;
                            }
                            out.push_str(std::str::from_utf8(&self.s[start..end]).unwrap());
                            self.i = end;
                        }
                    }
                }
            }
            b't' => {
                self.i += 4;
                Json::Bool(true)
            }
            b'f' => {
                self.i += 5;
                Json::Bool(false)
            }
            b'n' => {
                self.i += 4;
                Json::Null
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    self.i += 1;
                }
                Json::Num(std::str::from_utf8(&self.s[start..self.i]).unwrap().to_string())
            }
        }
    }
}

fn float_of(v: &Json) -> f64 {
    match v {
        Json::Num(s) => s.parse().unwrap(),
        Json::Str(s) if s == "nan" => f64::NAN,
        Json::Str(s) if s == "inf" => f64::INFINITY,
        Json::Str(s) if s == "-inf" => f64::NEG_INFINITY,
        other => panic!("not a float: {other:?}"),
    }
}

fn num<T: std::str::FromStr>(v: &Json) -> T
where
    T::Err: std::fmt::Debug,
{
    match v {
        Json::Num(s) => s.parse().unwrap(),
        other => panic!("not a number: {other:?}"),
    }
}

fn same_float(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a == b && a.is_sign_negative() == b.is_sign_negative())
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("data")
}

fn check_values(name: &str, t: &Tensor, values: &[Json]) {
    assert_eq!(t.len(), values.len(), "{name}: element count");
    match t.data() {
        TensorData::F32(v) => {
            for (i, (a, e)) in v.iter().zip(values).enumerate() {
                assert!(same_float(*a as f64, float_of(e)), "{name}[{i}]: {a} vs {e:?}");
            }
        }
        TensorData::F64(v) => {
            for (i, (a, e)) in v.iter().zip(values).enumerate() {
                assert!(same_float(*a, float_of(e)), "{name}[{i}]: {a} vs {e:?}");
            }
        }
        TensorData::F16(v) => {
            for (i, (a, e)) in v.iter().zip(values).enumerate() {
                assert!(same_float(a.to_f64(), float_of(e)), "{name}[{i}]: {a} vs {e:?}");
            }
        }
        TensorData::I8(v) => assert!(v.iter().zip(values).all(|(a, e)| *a == num::<i8>(e)), "{name}"),
        TensorData::I16(v) => assert!(v.iter().zip(values).all(|(a, e)| *a == num::<i16>(e)), "{name}"),
        TensorData::I32(v) => assert!(v.iter().zip(values).all(|(a, e)| *a == num::<i32>(e)), "{name}"),
        TensorData::I64(v) => assert!(v.iter().zip(values).all(|(a, e)| *a == num::<i64>(e)), "{name}"),
        TensorData::U8(v) => assert!(v.iter().zip(values).all(|(a, e)| *a == num::<u8>(e)), "{name}"),
        TensorData::U16(v) => assert!(v.iter().zip(values).all(|(a, e)| *a == num::<u16>(e)), "{name}"),
        TensorData::U32(v) => assert!(v.iter().zip(values).all(|(a, e)| *a == num::<u32>(e)), "{name}"),
        TensorData::U64(v) => assert!(v.iter().zip(values).all(|(a, e)| *a == num::<u64>(e)), "{name}"),
        TensorData::Bool(v) => {
            assert!(v.iter().zip(values).all(|(a, e)| matches!(e, Json::Bool(b) if b == a)), "{name}")
        }
        TensorData::String(v) => {
            for (a, e) in v.iter().zip(values) {
                assert_eq!(a, e.str(), "{name}");
            }
        }
        TensorData::BF16(_) => panic!("{name}: numpy has no bfloat16"),
        other => panic!("{name}: numpy has no {}", other.dtype()),
    }
}

#[test]
fn numpy_written_files_read_back_exactly() {
    let dir = data_dir();
    let expected = parse_json(&std::fs::read_to_string(dir.join("expected.json")).unwrap());
    let files = expected.get("files").unwrap().arr();
    assert!(files.len() >= 20);
    for entry in files {
        let name = entry.get("file").unwrap().str();
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let result = read_npy(&bytes);
        if let Some(err) = entry.get("error") {
            let e = result.expect_err(name);
            let kind = match e {
                NpyError::FortranOrder => "FortranOrder",
                NpyError::UnsupportedDtype(_) => "UnsupportedDtype",
                _ => "other",
            };
            assert_eq!(kind, err.str(), "{name}: {e}");
            continue;
        }
        let t = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.dtype().numpy_name(), entry.get("dtype").unwrap().str(), "{name}: dtype");
        let shape: Vec<usize> = entry.get("shape").unwrap().arr().iter().map(num::<usize>).collect();
        assert_eq!(t.shape(), &shape[..], "{name}: shape");
        check_values(name, &t, entry.get("values").unwrap().arr());

        // Writing gives back what numpy wrote for little-endian version 1.0 files of the dtypes
        // Kiln writes, and reading what was written gives the same tensor for every file.
        let written = write_npy(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
        let descr = entry.get("numpy_descr").unwrap().str();
        let v1 = bytes[6] == 1;
        if v1 && !descr.starts_with('>') && !descr.starts_with("|S") {
            assert_eq!(written, bytes, "{name}: write_npy differs from numpy's bytes");
        }
        let back = read_npy(&written).unwrap();
        assert_eq!(back.shape(), t.shape(), "{name}");
        check_values(name, &back, entry.get("values").unwrap().arr());
    }
}
