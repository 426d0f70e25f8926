//! Conversions from decoded protobuf messages to kiln-tensor values: `TensorProto` (raw,
//! typed and external data) to `Tensor`, `SequenceProto`/`MapProto`/`OptionalProto` to `Value`,
//! and `TypeProto` to `ValueType`.
//!
//! Sizes declared by the input are checked against the data actually present before anything
//! is allocated, so a tensor claiming billions of elements costs nothing but an error.

use std::path::Path;

use kiln_tensor::{
    bf16, checked_numel, f16, DType, Dim, MapKey, Shape, Tensor, TensorData, Value, ValueType,
    F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4,
};

use crate::proto::{
    DataLocation, DimProto, MapProto, OptionalProto, SequenceProto, TensorProto, TypeProto,
    TypeValue,
};
use crate::wire::MAX_DEPTH;
use crate::OnnxError;

type Result<T> = std::result::Result<T, OnnxError>;

/// `SequenceProto.DataType` / `OptionalProto.DataType` codes.
const ELEM_UNDEFINED: i32 = 0;
const ELEM_TENSOR: i32 = 1;
const ELEM_SPARSE_TENSOR: i32 = 2;
const ELEM_SEQUENCE: i32 = 3;
const ELEM_MAP: i32 = 4;
const ELEM_OPTIONAL: i32 = 5;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(OnnxError(msg.into()))
}

fn check_depth(depth: u32) -> Result<()> {
    if depth > MAX_DEPTH {
        return err(format!("value nests deeper than {MAX_DEPTH} levels"));
    }
    Ok(())
}

/// The dtype for an ONNX data type code, or an error naming the unsupported type.
fn dtype_of(code: i32, what: impl FnOnce() -> String) -> Result<DType> {
    DType::from_onnx(code).ok_or_else(|| {
        let name = DType::onnx_code_name(code);
        OnnxError(match (code, name) {
            (0, _) => format!("{} has no data type (undefined)", what()),
            (_, "unknown") => format!("{} has unknown data type code {code}", what()),
            _ => format!(
                "{} has data type {name}, which Kiln does not support",
                what()
            ),
        })
    })
}

fn tensor_label(t: &TensorProto) -> String {
    if t.name.is_empty() {
        "unnamed tensor".to_string()
    } else {
        format!("tensor '{}'", t.name)
    }
}

/// Converts a `TensorProto` to a `Tensor`. `base_dir` is the directory of the model file, used
/// to resolve external data; without it, a tensor with external data is an error.
pub fn tensor_from_proto(t: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    let label = tensor_label(t);
    let dtype = dtype_of(t.data_type, || label.clone())?;
    let shape = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                OnnxError(format!("{label} has invalid dimension {d} in {:?}", t.dims))
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let numel = checked_numel(&shape).map_err(|_| {
        OnnxError(format!(
            "{label} declares shape {shape:?}, which is too large to allocate"
        ))
    })?;

    let data = if t.data_location == DataLocation::External {
        if dtype == DType::String {
            return err(format!(
                "{label} is a string tensor with external data, which ONNX does not allow"
            ));
        }
        #[cfg(target_endian = "little")]
        {
            let r = external_range(t, &label, dtype, numel)?;
            if let Some(data) = memory_external::read(r.location, r.offset, r.length, dtype, numel, &label) {
                return Tensor::new(shape, data?).map_err(|e| OnnxError(format!("{label}: {e}")));
            }
        }
        let bytes = read_external(t, &label, dtype, numel, base_dir)?;
        from_raw(&bytes, dtype, numel, &label, "external data")?
    } else if !t.raw_data.is_empty() {
        if dtype == DType::String {
            return err(format!(
                "{label} is a string tensor but stores raw_data; strings must use string_data"
            ));
        }
        t.raw_data.prefetch();
        from_raw(&t.raw_data, dtype, numel, &label, "raw_data")?
    } else {
        from_typed(t, dtype, numel, &label)?
    };
    Tensor::new(shape, data).map_err(|e| OnnxError(format!("{label}: {e}")))
}

/// Decodes little-endian element bytes (any alignment) after checking their size.
fn from_raw(
    bytes: &[u8],
    dtype: DType,
    numel: usize,
    label: &str,
    source: &str,
) -> Result<TensorData> {
    let expected = dtype.packed_bytes(numel);
    if expected != Some(bytes.len()) {
        return err(format!(
            "{label} has {} bytes of {source}, but its shape needs {numel} {dtype} elements ({} bytes)",
            bytes.len(),
            expected.map_or_else(|| "too many".to_string(), |n| n.to_string()),
        ));
    }
    fn le<T: LeBytes, const N: usize>(bytes: &[u8], conv: fn([u8; N]) -> T) -> Vec<T> {
        let n = bytes.len() / N;
        #[cfg(target_endian = "little")]
        if std::mem::size_of::<T>() == N {
            let mut v: Vec<T> = Vec::with_capacity(n);
            kiln_tensor::prefault(v.spare_capacity_mut());
            // SAFETY: `LeBytes` types are plain integers or float bit patterns of N bytes, valid
            // for every bit pattern, whose in-memory form on a little-endian target is their
            // little-endian encoding (what `conv` decodes); `v` has room for `n` elements and
            // `bytes` holds at least `n * N` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), n * N);
                v.set_len(n);
            }
            return v;
        }
        let mut v = Vec::with_capacity(n);
        v.extend(bytes.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            conv(a)
        }));
        v
    }
    Ok(match dtype {
        DType::F32 => TensorData::F32(le(bytes, f32::from_le_bytes)),
        DType::F64 => TensorData::F64(le(bytes, f64::from_le_bytes)),
        DType::F16 => TensorData::F16(le(bytes, |b| f16::from_bits(u16::from_le_bytes(b)))),
        DType::BF16 => TensorData::BF16(le(bytes, |b| bf16::from_bits(u16::from_le_bytes(b)))),
        DType::I8 => TensorData::I8(le(bytes, i8::from_le_bytes)),
        DType::I16 => TensorData::I16(le(bytes, i16::from_le_bytes)),
        DType::I32 => TensorData::I32(le(bytes, i32::from_le_bytes)),
        DType::I64 => TensorData::I64(le(bytes, i64::from_le_bytes)),
        DType::U8 => TensorData::U8(bytes.to_vec()),
        DType::U16 => TensorData::U16(le(bytes, u16::from_le_bytes)),
        DType::U32 => TensorData::U32(le(bytes, u32::from_le_bytes)),
        DType::U64 => TensorData::U64(le(bytes, u64::from_le_bytes)),
        DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        DType::String => {
            return err(format!(
                "{label} is a string tensor and cannot use {source}"
            ))
        }
        _ => low_precision(bytes.iter().copied(), dtype, numel),
    })
}

/// Element types stored in raw data as their own little-endian bytes.
trait LeBytes: Copy {}
impl LeBytes for f32 {}
impl LeBytes for f64 {}
impl LeBytes for f16 {}
impl LeBytes for bf16 {}
impl LeBytes for i8 {}
impl LeBytes for i16 {}
impl LeBytes for i32 {}
impl LeBytes for i64 {}
impl LeBytes for u16 {}
impl LeBytes for u32 {}
impl LeBytes for u64 {}

/// Decodes float8 (one byte each), 4-bit (two per byte, low nibble first) and 2-bit (four per
/// byte, lowest bits first) elements from their storage bytes; `bytes` must hold enough.
fn low_precision(bytes: impl Iterator<Item = u8>, dtype: DType, numel: usize) -> TensorData {
    fn unpack<T>(bytes: impl Iterator<Item = u8>, bits: u32, numel: usize, f: fn(u8) -> T) -> Vec<T> {
        let per_byte = 8 / bits;
        let mask = ((1u32 << bits) - 1) as u8;
        bytes
            .flat_map(|b| (0..per_byte).map(move |k| (b >> (k * bits)) & mask))
            .take(numel)
            .map(f)
            .collect()
    }
    match dtype {
        DType::F8E4M3FN => TensorData::F8E4M3FN(bytes.take(numel).map(F8E4M3FN).collect()),
        DType::F8E4M3FNUZ => TensorData::F8E4M3FNUZ(bytes.take(numel).map(F8E4M3FNUZ).collect()),
        DType::F8E5M2 => TensorData::F8E5M2(bytes.take(numel).map(F8E5M2).collect()),
        DType::F8E5M2FNUZ => TensorData::F8E5M2FNUZ(bytes.take(numel).map(F8E5M2FNUZ).collect()),
        DType::F8E8M0 => TensorData::F8E8M0(bytes.take(numel).map(F8E8M0).collect()),
        DType::F4E2M1 => TensorData::F4E2M1(unpack(bytes, 4, numel, F4E2M1::from_bits)),
        DType::U4 => TensorData::U4(unpack(bytes, 4, numel, U4::from_bits)),
        DType::I4 => TensorData::I4(unpack(bytes, 4, numel, I4::from_bits)),
        DType::U2 => TensorData::U2(unpack(bytes, 2, numel, U2::from_bits)),
        DType::I2 => TensorData::I2(unpack(bytes, 2, numel, I2::from_bits)),
        // Only called for the low-precision dtypes.
        other => TensorData::zeros(other, 0),
    }
}

/// Decodes the type-specific repeated field that holds `dtype` per the ONNX spec.
fn from_typed(t: &TensorProto, dtype: DType, numel: usize, label: &str) -> Result<TensorData> {
    fn take<S: Copy, T>(
        src: &[S],
        numel: usize,
        label: &str,
        field: &str,
        conv: fn(S) -> T,
    ) -> Result<Vec<T>> {
        if src.len() != numel {
            return err(format!(
                "{label} has {} values in {field}, but its shape needs {numel}",
                src.len()
            ));
        }
        Ok(src.iter().map(|&x| conv(x)).collect())
    }
    let i32s = &t.int32_data;
    Ok(match dtype {
        DType::F32 => TensorData::F32(take(&t.float_data, numel, label, "float_data", |x| x)?),
        DType::F64 => TensorData::F64(take(&t.double_data, numel, label, "double_data", |x| x)?),
        DType::I64 => TensorData::I64(take(&t.int64_data, numel, label, "int64_data", |x| x)?),
        DType::I32 => TensorData::I32(take(i32s, numel, label, "int32_data", |x| x)?),
        DType::I16 => TensorData::I16(take(i32s, numel, label, "int32_data", |x| x as i16)?),
        DType::I8 => TensorData::I8(take(i32s, numel, label, "int32_data", |x| x as i8)?),
        DType::U16 => TensorData::U16(take(i32s, numel, label, "int32_data", |x| x as u16)?),
        DType::U8 => TensorData::U8(take(i32s, numel, label, "int32_data", |x| x as u8)?),
        DType::Bool => TensorData::Bool(take(i32s, numel, label, "int32_data", |x| x != 0)?),
        DType::F16 => TensorData::F16(take(i32s, numel, label, "int32_data", |x| {
            f16::from_bits(x as u16)
        })?),
        DType::BF16 => TensorData::BF16(take(i32s, numel, label, "int32_data", |x| {
            bf16::from_bits(x as u16)
        })?),
        DType::U32 => TensorData::U32(take(&t.uint64_data, numel, label, "uint64_data", |x| {
            x as u32
        })?),
        DType::U64 => TensorData::U64(take(&t.uint64_data, numel, label, "uint64_data", |x| x)?),
        d @ (DType::F8E4M3FN
        | DType::F8E4M3FNUZ
        | DType::F8E5M2
        | DType::F8E5M2FNUZ
        | DType::F8E8M0
        | DType::F4E2M1
        | DType::U4
        | DType::I4
        | DType::U2
        | DType::I2) => {
            // Each int32_data entry holds one storage byte: one float8, two 4-bit or four 2-bit elements.
            let n = d.packed_bytes(numel).unwrap_or(usize::MAX);
            if i32s.len() != n {
                return err(format!(
                    "{label} has {} values in int32_data, but its {numel} {d} elements need {n}",
                    i32s.len()
                ));
            }
            low_precision(i32s.iter().map(|&x| x as u8), d, numel)
        }
        DType::String => {
            if t.string_data.len() != numel {
                return err(format!(
                    "{label} has {} values in string_data, but its shape needs {numel}",
                    t.string_data.len()
                ));
            }
            let strings = t
                .string_data
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    String::from_utf8(s.clone()).map_err(|_| {
                        OnnxError(format!("{label} has invalid UTF-8 in string element {i}"))
                    })
                })
                .collect::<Result<Vec<String>>>()?;
            TensorData::String(strings)
        }
    })
}

/// Checks an external data location: relative, and never leaving the model directory.
fn checked_location<'p>(location: &'p str, label: &str) -> Result<&'p Path> {
    use std::path::Component;
    let path = Path::new(location);
    if location.is_empty() {
        return err(format!("{label} has external data with an empty location"));
    }
    let escapes = location.starts_with('/')
        || location.starts_with('\\')
        || path.is_absolute()
        || path.components().any(|c| {
            matches!(
                c,
                Component::RootDir | Component::Prefix(_) | Component::ParentDir
            )
        })
        || location.split(['/', '\\']).any(|seg| seg == "..");
    if escapes {
        return err(format!(
            "{label} has external data location '{location}', which must be a relative path inside the model directory"
        ));
    }
    Ok(path)
}

fn external_entry<'t>(t: &'t TensorProto, key: &str) -> Option<&'t str> {
    t.external_data
        .iter()
        .rev()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

fn parse_u64(v: Option<&str>, key: &str, label: &str) -> Result<Option<u64>> {
    v.map(|s| {
        s.trim().parse::<u64>().map_err(|_| {
            OnnxError(format!(
                "{label} has external data {key} '{s}', which is not a byte count"
            ))
        })
    })
    .transpose()
}

/// Where a tensor's external data is: location (checked), offset and length (checked against
/// the shape).
struct ExternalRange<'t> {
    location: &'t str,
    rel: &'t Path,
    offset: u64,
    length: u64,
}

fn external_range<'t>(t: &'t TensorProto, label: &str, dtype: DType, numel: usize) -> Result<ExternalRange<'t>> {
    let location = external_entry(t, "location").ok_or_else(|| {
        OnnxError(format!(
            "{label} has external data without a 'location' entry"
        ))
    })?;
    let rel = checked_location(location, label)?;
    let offset = parse_u64(external_entry(t, "offset"), "offset", label)?.unwrap_or(0);
    let expected = dtype
        .packed_bytes(numel)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| OnnxError(format!("{label} is too large to read")))?;
    let length = parse_u64(external_entry(t, "length"), "length", label)?.unwrap_or(expected);
    if length != expected {
        return err(format!(
            "{label} has external data length {length}, but its shape needs {numel} {dtype} elements ({expected} bytes)"
        ));
    }
    Ok(ExternalRange { location, rel, offset, length })
}

/// Reads a tensor's external data bytes, checking location, range and size first.
fn read_external(
    t: &TensorProto,
    label: &str,
    dtype: DType,
    numel: usize,
    base_dir: Option<&Path>,
) -> Result<Vec<u8>> {
    let ExternalRange { location, rel, offset, length } = external_range(t, label, dtype, numel)?;
    let Some(dir) = base_dir else {
        return err(format!(
            "{label} stores its data in external file '{location}', but the model was not loaded from a file, so there is no directory to find it in"
        ));
    };
    read_file_range(&dir.join(rel), offset, length, label)
}

#[cfg(not(target_arch = "wasm32"))]
fn read_file_range(path: &Path, offset: u64, length: u64, label: &str) -> Result<Vec<u8>> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        OnnxError(format!(
            "{label}: cannot open external data file '{shown}': {e}"
        ))
    })?;
    let file_len = file
        .metadata()
        .map_err(|e| {
            OnnxError(format!(
                "{label}: cannot read external data file '{shown}': {e}"
            ))
        })?
        .len();
    let end = offset.checked_add(length).filter(|&e| e <= file_len).ok_or_else(|| {
        OnnxError(format!(
            "{label} needs bytes {offset}..{} of external data file '{shown}', which has only {file_len} bytes",
            offset.saturating_add(length)
        ))
    })?;
    if length == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the map is read-only and only borrowed for this copy. As with any file-backed
    // map, another process truncating the file meanwhile is outside what Kiln can guard against.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| {
        OnnxError(format!(
            "{label}: cannot map external data file '{shown}': {e}"
        ))
    })?;
    let range = usize::try_from(offset).ok().zip(usize::try_from(end).ok());
    range
        .and_then(|(s, e)| map.get(s..e))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            OnnxError(format!(
                "{label}: external data file '{shown}' changed while reading it"
            ))
        })
}

#[cfg(target_arch = "wasm32")]
fn read_file_range(path: &Path, _offset: u64, _length: u64, label: &str) -> Result<Vec<u8>> {
    err(format!(
        "{label} stores its data in external file '{}', and external data is not supported on wasm",
        path.display()
    ))
}

/// Initializer bytes held by the caller rather than in a file: on WebAssembly, the JavaScript
/// buffer the model was given in, so the weights stay outside the module's memory until each
/// tensor is converted. While a reader is installed,
/// external data whose location is the reader's name is copied by it straight into the tensor's
/// storage; every other location is handled as before.
#[cfg(target_endian = "little")]
pub mod memory_external {
    use std::cell::RefCell;
    use std::mem::MaybeUninit;

    use kiln_tensor::{DType, TensorData};

    /// Fills `dst` with the bytes at `offset` of the named buffer (all of them when it returns
    /// `Ok`).
    pub type Reader = Box<dyn Fn(u64, &mut [MaybeUninit<u8>]) -> Result<(), String>>;

    thread_local! {
        static READER: RefCell<Option<(String, Reader)>> = const { RefCell::new(None) };
    }

    /// Installs `reader` for the external data location `name` until the returned guard drops.
    ///
    /// # Safety
    /// Whenever `reader` returns `Ok`, it must have written every byte of the slice it was given.
    pub unsafe fn install(name: String, reader: Reader) -> Guard {
        READER.with(|r| *r.borrow_mut() = Some((name, reader)));
        Guard(())
    }

    /// Removes the installed reader when dropped.
    pub struct Guard(());

    impl Drop for Guard {
        fn drop(&mut self) {
            READER.with(|r| *r.borrow_mut() = None);
        }
    }

    /// `n` elements read by `reader` into fresh storage.
    fn filled<T: Copy>(n: usize, length: u64, offset: u64, reader: &Reader) -> Result<Vec<T>, String> {
        let bytes = n.checked_mul(std::mem::size_of::<T>()).filter(|&b| b as u64 == length);
        let Some(bytes) = bytes else { return Err(format!("external data length {length} does not fit {n} elements")) };
        let mut v: Vec<T> = Vec::new();
        v.try_reserve_exact(n).map_err(|_| format!("cannot allocate {length} bytes"))?;
        // SAFETY: the spare capacity holds at least `bytes` bytes; viewing it as uninitialised
        // bytes is valid for any `T`.
        let dst = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<MaybeUninit<u8>>(), bytes) };
        reader(offset, dst)?;
        // SAFETY: the reader initialised all `bytes` bytes (the contract of `install`), and `T`
        // (plain numbers and float bit patterns) is valid for every bit pattern; the target is
        // little-endian (the module's cfg), the byte order of ONNX data.
        unsafe { v.set_len(n) };
        Ok(v)
    }

    /// The tensor data at `location`, when that is the installed reader's buffer.
    pub(crate) fn read(
        location: &str,
        offset: u64,
        length: u64,
        dtype: DType,
        numel: usize,
        label: &str,
    ) -> Option<super::Result<TensorData>> {
        READER.with(|r| {
            let r = r.borrow();
            let (name, reader) = r.as_ref()?;
            if name != location {
                return None;
            }
            let data = match dtype {
                DType::F32 => filled(numel, length, offset, reader).map(TensorData::F32),
                DType::F64 => filled(numel, length, offset, reader).map(TensorData::F64),
                DType::F16 => filled(numel, length, offset, reader).map(TensorData::F16),
                DType::BF16 => filled(numel, length, offset, reader).map(TensorData::BF16),
                DType::I8 => filled(numel, length, offset, reader).map(TensorData::I8),
                DType::I16 => filled(numel, length, offset, reader).map(TensorData::I16),
                DType::I32 => filled(numel, length, offset, reader).map(TensorData::I32),
                DType::I64 => filled(numel, length, offset, reader).map(TensorData::I64),
                DType::U8 => filled(numel, length, offset, reader).map(TensorData::U8),
                DType::U16 => filled(numel, length, offset, reader).map(TensorData::U16),
                DType::U32 => filled(numel, length, offset, reader).map(TensorData::U32),
                DType::U64 => filled(numel, length, offset, reader).map(TensorData::U64),
                _ => {
                    // Booleans and the packed low-precision types: decoded from the bytes.
                    let n = usize::try_from(length).unwrap_or(usize::MAX);
                    return Some(
                        filled::<u8>(n, length, offset, reader)
                            .map_err(|e| crate::OnnxError(format!("{label}: {e}")))
                            .and_then(|b| super::from_raw(&b, dtype, numel, label, "external data")),
                    );
                }
            };
            Some(data.map_err(|e| crate::OnnxError(format!("{label}: {e}"))))
        })
    }
}

fn dim_from_proto(d: &DimProto) -> Result<Dim> {
    Ok(match d {
        DimProto::Value(n) if *n >= 0 => Dim::Fixed(
            usize::try_from(*n)
                .map_err(|_| OnnxError(format!("dimension {n} is too large for this platform")))?,
        ),
        DimProto::Param(s) if !s.is_empty() => Dim::Sym(s.clone()),
        _ => Dim::unknown(),
    })
}

/// Converts a declared `TypeProto` to a `ValueType`.
pub fn value_type_from_proto(tp: &TypeProto) -> Result<ValueType> {
    type_from_proto(tp, 0)
}

fn type_from_proto(tp: &TypeProto, depth: u32) -> Result<ValueType> {
    check_depth(depth)?;
    let elem = |e: &Option<Box<TypeProto>>, what: &str| -> Result<ValueType> {
        match e {
            Some(e) => type_from_proto(e, depth + 1),
            None => err(format!("{what} type has no element type")),
        }
    };
    match &tp.value {
        None => err("type has no value (neither tensor, sequence, map nor optional)"),
        Some(TypeValue::Tensor { elem_type, shape }) => Ok(ValueType::Tensor {
            dtype: dtype_of(*elem_type, || "tensor type".to_string())?,
            shape: shape
                .as_ref()
                .map(|dims| {
                    dims.iter()
                        .map(dim_from_proto)
                        .collect::<Result<Vec<Dim>>>()
                        .map(Shape)
                })
                .transpose()?,
        }),
        Some(TypeValue::Sequence(e)) => Ok(ValueType::Sequence(Box::new(elem(e, "sequence")?))),
        Some(TypeValue::Optional(e)) => Ok(ValueType::Optional(Box::new(elem(e, "optional")?))),
        Some(TypeValue::Map {
            key_type,
            value_type,
        }) => {
            let key = map_key_dtype(*key_type, || "map type".to_string())?;
            Ok(ValueType::Map(key, Box::new(elem(value_type, "map")?)))
        }
        Some(TypeValue::SparseTensor { .. }) => {
            err("sparse tensor types are not supported by Kiln")
        }
    }
}

fn map_key_dtype(code: i32, what: impl Fn() -> String) -> Result<DType> {
    let key = dtype_of(code, &what)?;
    if key.is_int() || key == DType::String {
        Ok(key)
    } else {
        err(format!(
            "{} has key type {key}; map keys must be integers or strings",
            what()
        ))
    }
}

fn value_label(kind: &str, name: &str) -> String {
    if name.is_empty() {
        format!("unnamed {kind}")
    } else {
        format!("{kind} '{name}'")
    }
}

/// Placeholder element type when the data does not say (an empty sequence or optional).
fn unknown_elem(elem_type: i32) -> ValueType {
    let tensor = ValueType::Tensor {
        dtype: DType::F32,
        shape: None,
    };
    match elem_type {
        ELEM_SEQUENCE => ValueType::Sequence(Box::new(tensor)),
        ELEM_MAP => ValueType::Map(DType::I64, Box::new(tensor)),
        ELEM_OPTIONAL => ValueType::Optional(Box::new(tensor)),
        _ => tensor,
    }
}

/// The element type of a non-empty collection: tensors keep their dtype, not their shape.
fn elem_type_of(v: &Value) -> ValueType {
    match v {
        Value::Tensor(t) => ValueType::Tensor {
            dtype: t.dtype(),
            shape: None,
        },
        other => other.value_type(),
    }
}

/// Converts a `SequenceProto` to `Value::Sequence`.
pub fn value_from_sequence(s: &SequenceProto) -> Result<Value> {
    sequence_value(s, 0)
}

fn sequence_value(s: &SequenceProto, depth: u32) -> Result<Value> {
    check_depth(depth)?;
    let label = value_label("sequence", &s.name);
    let mut elem_type = s.elem_type;
    if elem_type == ELEM_UNDEFINED {
        let present = [
            (ELEM_TENSOR, s.tensor_values.is_empty()),
            (ELEM_SPARSE_TENSOR, s.sparse_tensor_values.is_empty()),
            (ELEM_SEQUENCE, s.sequence_values.is_empty()),
            (ELEM_MAP, s.map_values.is_empty()),
            (ELEM_OPTIONAL, s.optional_values.is_empty()),
        ];
        let mut kinds = present.iter().filter(|(_, empty)| !empty).map(|(k, _)| *k);
        elem_type = match (kinds.next(), kinds.next()) {
            (None, _) => ELEM_TENSOR,
            (Some(k), None) => k,
            (Some(_), Some(_)) => return err(format!("{label} mixes several kinds of elements")),
        };
    }
    let items = match elem_type {
        ELEM_TENSOR => s
            .tensor_values
            .iter()
            .map(|t| tensor_from_proto(t, None).map(Value::Tensor))
            .collect::<Result<Vec<Value>>>()?,
        ELEM_SEQUENCE => s
            .sequence_values
            .iter()
            .map(|v| sequence_value(v, depth + 1))
            .collect::<Result<_>>()?,
        ELEM_MAP => s
            .map_values
            .iter()
            .map(|v| map_value(v, depth + 1))
            .collect::<Result<_>>()?,
        ELEM_OPTIONAL => s
            .optional_values
            .iter()
            .map(|v| optional_value(v, depth + 1))
            .collect::<Result<_>>()?,
        ELEM_SPARSE_TENSOR => {
            return err(format!(
                "{label} holds sparse tensors, which Kiln does not support"
            ))
        }
        other => return err(format!("{label} has unknown element type code {other}")),
    };
    let elem = match items.first() {
        Some(first) => elem_type_of(first),
        None => unknown_elem(elem_type),
    };
    if let Some(dtype) = elem.tensor_dtype() {
        if let Some(bad) = items
            .iter()
            .filter_map(Value::as_tensor)
            .find(|t| t.dtype() != dtype)
        {
            return err(format!("{label} mixes {dtype} and {} tensors", bad.dtype()));
        }
    }
    Ok(Value::Sequence { elem, items })
}

/// Converts a `MapProto` to `Value::Map`.
pub fn value_from_map(m: &MapProto) -> Result<Value> {
    map_value(m, 0)
}

fn map_value(m: &MapProto, depth: u32) -> Result<Value> {
    check_depth(depth)?;
    let label = value_label("map", &m.name);
    let key = map_key_dtype(m.key_type, || label.clone())?;
    let keys: Vec<MapKey> = if key == DType::String {
        m.string_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                String::from_utf8(k.clone())
                    .map(MapKey::Str)
                    .map_err(|_| OnnxError(format!("{label} has invalid UTF-8 in key {i}")))
            })
            .collect::<Result<_>>()?
    } else {
        m.keys.iter().map(|&k| MapKey::Int(k)).collect()
    };
    let (value, items) = match &m.values {
        Some(seq) => match sequence_value(seq, depth + 1)? {
            Value::Sequence { elem, items } => (elem, items),
            _ => return err(format!("{label} has malformed values")),
        },
        None => (unknown_elem(ELEM_TENSOR), Vec::new()),
    };
    if keys.len() != items.len() {
        return err(format!(
            "{label} has {} keys but {} values",
            keys.len(),
            items.len()
        ));
    }
    Ok(Value::Map {
        key,
        value,
        entries: keys.into_iter().zip(items).collect(),
    })
}

/// Converts an `OptionalProto` to `Value::Optional`.
pub fn value_from_optional(o: &OptionalProto) -> Result<Value> {
    optional_value(o, 0)
}

fn optional_value(o: &OptionalProto, depth: u32) -> Result<Value> {
    check_depth(depth)?;
    let label = value_label("optional", &o.name);
    let mut elem_type = o.elem_type;
    if elem_type == ELEM_UNDEFINED {
        elem_type = if o.tensor_value.is_some() {
            ELEM_TENSOR
        } else if o.sparse_tensor_value.is_some() {
            ELEM_SPARSE_TENSOR
        } else if o.sequence_value.is_some() {
            ELEM_SEQUENCE
        } else if o.map_value.is_some() {
            ELEM_MAP
        } else if o.optional_value.is_some() {
            ELEM_OPTIONAL
        } else {
            ELEM_TENSOR
        };
    }
    let inner = match elem_type {
        ELEM_TENSOR => o
            .tensor_value
            .as_ref()
            .map(|t| tensor_from_proto(t, None).map(Value::Tensor)),
        ELEM_SEQUENCE => o
            .sequence_value
            .as_deref()
            .map(|s| sequence_value(s, depth + 1)),
        ELEM_MAP => o.map_value.as_ref().map(|m| map_value(m, depth + 1)),
        ELEM_OPTIONAL => o
            .optional_value
            .as_deref()
            .map(|v| optional_value(v, depth + 1)),
        ELEM_SPARSE_TENSOR => {
            return err(format!(
                "{label} holds a sparse tensor, which Kiln does not support"
            ))
        }
        other => return err(format!("{label} has unknown element type code {other}")),
    }
    .transpose()?;
    let elem = inner
        .as_ref()
        .map_or_else(|| unknown_elem(elem_type), elem_type_of);
    Ok(Value::Optional {
        elem,
        value: inner.map(Box::new),
    })
}

/// Whether a type inferred from data fits a declared one (dtypes and structure agree).
fn fits(inferred: &ValueType, declared: &ValueType) -> bool {
    match (inferred, declared) {
        (ValueType::Tensor { dtype: a, .. }, ValueType::Tensor { dtype: b, .. }) => a == b,
        (ValueType::Sequence(a), ValueType::Sequence(b))
        | (ValueType::Optional(a), ValueType::Optional(b)) => fits(a, b),
        (ValueType::Map(ka, a), ValueType::Map(kb, b)) => ka == kb && fits(a, b),
        _ => false,
    }
}

/// The element type to record: the declared one when there is no data or the data fits it
/// (it may carry a shape), otherwise what the data says, so a mismatch stays visible.
fn choose_elem(first: Option<&Value>, declared: &ValueType) -> ValueType {
    match first.map(elem_type_of) {
        Some(inferred) if !fits(&inferred, declared) => inferred,
        _ => declared.clone(),
    }
}

/// Fills in element types the data could not tell (empty sequences, maps and optionals) from
/// the declared type, where the structure agrees.
fn adopt_declared(v: &mut Value, declared: &ValueType) {
    match (v, declared) {
        (Value::Sequence { elem, items }, ValueType::Sequence(d)) => {
            items.iter_mut().for_each(|i| adopt_declared(i, d));
            *elem = choose_elem(items.first(), d);
        }
        (Value::Optional { elem, value }, ValueType::Optional(d)) => {
            if let Some(i) = value {
                adopt_declared(i, d);
            }
            *elem = choose_elem(value.as_deref(), d);
        }
        (
            Value::Map {
                key,
                value,
                entries,
            },
            ValueType::Map(k, d),
        ) if key == k => {
            entries.iter_mut().for_each(|(_, i)| adopt_declared(i, d));
            *value = choose_elem(entries.first().map(|(_, i)| i), d);
        }
        _ => {}
    }
}

/// Decodes a backend-test `.pb` file according to the declared type of the graph input or
/// output it belongs to.
pub fn value_from_file_bytes(bytes: &[u8], declared: &TypeProto) -> Result<Value> {
    let mut value = match &declared.value {
        Some(TypeValue::Tensor { .. }) => {
            Value::Tensor(tensor_from_proto(&crate::decode_tensor(bytes)?, None)?)
        }
        Some(TypeValue::Sequence(_)) => value_from_sequence(&crate::decode_sequence(bytes)?)?,
        Some(TypeValue::Map { .. }) => value_from_map(&crate::decode_map(bytes)?)?,
        Some(TypeValue::Optional(_)) => value_from_optional(&crate::decode_optional(bytes)?)?,
        Some(TypeValue::SparseTensor { .. }) => {
            return err("sparse tensor values are not supported by Kiln")
        }
        None => {
            return err(
                "the declared type has no value (neither tensor, sequence, map nor optional)",
            )
        }
    };
    if !matches!(value, Value::Tensor(_)) {
        adopt_declared(&mut value, &value_type_from_proto(declared)?);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::StringStringEntryProto;

    fn proto(name: &str, data_type: DType, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: name.into(),
            data_type: data_type as i32,
            dims: dims.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn raw_data_is_little_endian_at_any_alignment() {
        let values = [1.5f32, -2.0, 3.25];
        let mut buf = vec![0u8];
        buf.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let mut t = proto("w", DType::F32, &[3]);
        t.raw_data = buf[1..].to_vec().into();
        let out = tensor_from_proto(&t, None).unwrap();
        assert_eq!(out.shape(), &[3]);
        assert_eq!(out.as_slice::<f32>().unwrap(), &values);

        let mut t = proto("b", DType::Bool, &[2, 2]);
        t.raw_data = vec![0, 1, 2, 0].into();
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<bool>()
                .unwrap(),
            &[false, true, true, false]
        );

        let mut t = proto("h", DType::F16, &[]);
        t.raw_data = f16::from_f32(0.5).to_bits().to_le_bytes().to_vec().into();
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<f16>()
                .unwrap(),
            &[f16::from_f32(0.5)]
        );

        let mut t = proto("u", DType::U64, &[1]);
        t.raw_data = u64::MAX.to_le_bytes().to_vec().into();
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<u64>()
                .unwrap(),
            &[u64::MAX]
        );
    }

    #[test]
    fn raw_data_size_must_match() {
        let mut t = proto("w", DType::F32, &[2, 2]);
        t.raw_data = vec![0; 12].into();
        let e = tensor_from_proto(&t, None).unwrap_err().0;
        assert!(
            e.contains("tensor 'w' has 12 bytes of raw_data") && e.contains("16 bytes"),
            "{e}"
        );
    }

    #[test]
    fn typed_fields_follow_the_onnx_spec() {
        let mut t = proto("a", DType::I8, &[3]);
        t.int32_data = vec![-1, 127, -128];
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<i8>()
                .unwrap(),
            &[-1, 127, -128]
        );

        let mut t = proto("a", DType::U16, &[1]);
        t.int32_data = vec![65535];
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<u16>()
                .unwrap(),
            &[65535]
        );

        let mut t = proto("a", DType::Bool, &[2]);
        t.int32_data = vec![1, 0];
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<bool>()
                .unwrap(),
            &[true, false]
        );

        let mut t = proto("a", DType::BF16, &[1]);
        t.int32_data = vec![i32::from(bf16::from_f32(-3.0).to_bits())];
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<bf16>()
                .unwrap(),
            &[bf16::from_f32(-3.0)]
        );

        let mut t = proto("a", DType::F16, &[1]);
        t.int32_data = vec![i32::from(f16::from_f32(2.0).to_bits())];
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<f16>()
                .unwrap(),
            &[f16::from_f32(2.0)]
        );

        let mut t = proto("a", DType::U32, &[2]);
        t.uint64_data = vec![7, u64::from(u32::MAX)];
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<u32>()
                .unwrap(),
            &[7, u32::MAX]
        );

        let mut t = proto("a", DType::I64, &[1, 2]);
        t.int64_data = vec![-5, 6];
        let out = tensor_from_proto(&t, None).unwrap();
        assert_eq!(
            (out.shape(), out.as_slice::<i64>().unwrap()),
            (&[1usize, 2][..], &[-5i64, 6][..])
        );

        let mut t = proto("a", DType::F64, &[1]);
        t.double_data = vec![0.25];
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<f64>()
                .unwrap(),
            &[0.25]
        );

        let mut t = proto("s", DType::String, &[2]);
        t.string_data = vec![b"hi".to_vec(), "é".as_bytes().to_vec()];
        assert_eq!(
            tensor_from_proto(&t, None)
                .unwrap()
                .as_slice::<String>()
                .unwrap(),
            &["hi".to_string(), "é".to_string()]
        );
    }

    #[test]
    fn low_precision_raw_data_is_packed() {
        // int4: two per byte, low nibble first; an odd count leaves the last high nibble unused.
        let mut t = proto("a", DType::I4, &[3]);
        t.raw_data = vec![0x87, 0x0f].into();
        let v = tensor_from_proto(&t, None).unwrap();
        assert_eq!(v.as_slice::<I4>().unwrap(), &[I4(7), I4(-8), I4(-1)]);
        let mut t = proto("a", DType::U4, &[2]);
        t.raw_data = vec![0x87].into();
        let v = tensor_from_proto(&t, None).unwrap();
        assert_eq!(v.as_slice::<U4>().unwrap(), &[U4(7), U4(8)]);
        // 2-bit: four per byte, from the lowest bits up (x0 | x1 << 2 | x2 << 4 | x3 << 6).
        let mut t = proto("a", DType::I2, &[5]);
        t.raw_data = vec![0b11_10_01_00, 0b10].into();
        let v = tensor_from_proto(&t, None).unwrap();
        assert_eq!(v.as_slice::<I2>().unwrap(), &[I2(0), I2(1), I2(-2), I2(-1), I2(-2)]);
        let mut t = proto("a", DType::U2, &[4]);
        t.raw_data = vec![0b11_10_01_00].into();
        let v = tensor_from_proto(&t, None).unwrap();
        assert_eq!(v.as_slice::<U2>().unwrap(), &[U2(0), U2(1), U2(2), U2(3)]);
        // float4: two per byte.
        let mut t = proto("a", DType::F4E2M1, &[2]);
        t.raw_data = vec![0xf2].into();
        let v = tensor_from_proto(&t, None).unwrap();
        let f: Vec<f32> = v.as_slice::<F4E2M1>().unwrap().iter().map(|x| x.to_f32()).collect();
        assert_eq!(f, vec![1.0, -6.0]);
        // float8: one byte each.
        let mut t = proto("a", DType::F8E4M3FN, &[2]);
        t.raw_data = vec![0x7e, 0x38].into();
        let v = tensor_from_proto(&t, None).unwrap();
        assert_eq!(v.as_slice::<F8E4M3FN>().unwrap(), &[F8E4M3FN(0x7e), F8E4M3FN(0x38)]);
        // Byte counts are checked against the packed size.
        let mut t = proto("a", DType::I4, &[3]);
        t.raw_data = vec![0x87].into();
        assert!(tensor_from_proto(&t, None).unwrap_err().0.contains("needs 3 int4 elements (2 bytes)"));
    }

    #[test]
    fn low_precision_int32_data_holds_storage_bytes() {
        let mut t = proto("a", DType::I4, &[3]);
        t.int32_data = vec![0x87, 0x0f];
        let v = tensor_from_proto(&t, None).unwrap();
        assert_eq!(v.as_slice::<I4>().unwrap(), &[I4(7), I4(-8), I4(-1)]);
        let mut t = proto("a", DType::F8E5M2, &[2]);
        t.int32_data = vec![0x7b, 0xfc];
        let v = tensor_from_proto(&t, None).unwrap();
        assert_eq!(v.as_slice::<F8E5M2>().unwrap(), &[F8E5M2(0x7b), F8E5M2(0xfc)]);
        let mut t = proto("a", DType::U2, &[5]);
        t.int32_data = vec![0xff];
        assert!(tensor_from_proto(&t, None).unwrap_err().0.contains("need 2"));
    }

    #[test]
    fn typed_field_count_must_match() {
        let mut t = proto("c", DType::F32, &[3]);
        t.float_data = vec![1.0];
        let e = tensor_from_proto(&t, None).unwrap_err().0;
        assert_eq!(
            e,
            "tensor 'c' has 1 values in float_data, but its shape needs 3"
        );
        let empty = proto("e", DType::F32, &[0, 4]);
        assert_eq!(tensor_from_proto(&empty, None).unwrap().shape(), &[0, 4]);
    }

    #[test]
    fn invalid_utf8_string_names_the_tensor() {
        let mut t = proto("names", DType::String, &[1]);
        t.string_data = vec![vec![0xc3]];
        let e = tensor_from_proto(&t, None).unwrap_err().0;
        assert!(e.contains("tensor 'names'") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn huge_or_negative_shapes_are_errors_without_allocating() {
        let t = proto("big", DType::F32, &[1 << 40, 1 << 40]);
        assert!(tensor_from_proto(&t, None)
            .unwrap_err()
            .0
            .contains("too large"));
        let t = proto("big", DType::F64, &[1 << 30, 1 << 5]);
        assert!(tensor_from_proto(&t, None)
            .unwrap_err()
            .0
            .contains("0 values in double_data"));
        let t = proto("neg", DType::F32, &[2, -1]);
        assert!(tensor_from_proto(&t, None)
            .unwrap_err()
            .0
            .contains("invalid dimension -1"));
    }

    #[test]
    fn unsupported_dtypes_are_named() {
        let mut t = proto("w", DType::F32, &[1]);
        t.data_type = 14;
        t.raw_data = vec![0].into();
        assert_eq!(
            tensor_from_proto(&t, None).unwrap_err().0,
            "tensor 'w' has data type complex64, which Kiln does not support"
        );
        t.data_type = 15;
        assert!(tensor_from_proto(&t, None).unwrap_err().0.contains("complex128"));
        t.data_type = 0;
        assert!(tensor_from_proto(&t, None)
            .unwrap_err()
            .0
            .contains("undefined"));
        t.data_type = 1000;
        assert!(tensor_from_proto(&t, None)
            .unwrap_err()
            .0
            .contains("unknown data type code 1000"));
    }

    fn external(location: &str, extra: &[(&str, &str)]) -> TensorProto {
        let mut t = proto("ext", DType::I32, &[2]);
        t.data_location = DataLocation::External;
        t.external_data.push(StringStringEntryProto {
            key: "location".into(),
            value: location.into(),
        });
        for (k, v) in extra {
            t.external_data.push(StringStringEntryProto {
                key: (*k).into(),
                value: (*v).into(),
            });
        }
        t
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn external_data() {
        let dir = std::env::temp_dir().join(format!("kiln-onnx-ext-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let mut bytes = vec![9u8; 3];
        bytes.extend([7i32, -8].iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(dir.join("sub/w.bin"), &bytes).unwrap();

        let t = external("sub/w.bin", &[("offset", "3"), ("length", "8")]);
        let out = tensor_from_proto(&t, Some(&dir)).unwrap();
        assert_eq!(out.as_slice::<i32>().unwrap(), &[7, -8]);
        let t = external("./sub/w.bin", &[("offset", "3")]);
        assert!(tensor_from_proto(&t, Some(&dir)).is_ok());

        let cases = [
            (
                external("sub/w.bin", &[("offset", "4")]),
                "has only 11 bytes",
            ),
            (
                external("sub/w.bin", &[("offset", "18446744073709551615")]),
                "has only 11 bytes",
            ),
            (external("sub/w.bin", &[("length", "4")]), "length 4"),
            (
                external("sub/w.bin", &[("offset", "x")]),
                "not a byte count",
            ),
            (external("../w.bin", &[]), "relative path inside"),
            (external("sub/../../w.bin", &[]), "relative path inside"),
            (external("/etc/passwd", &[]), "relative path inside"),
            (external("", &[]), "empty location"),
            (external("missing.bin", &[]), "cannot open"),
        ];
        for (t, want) in cases {
            let e = tensor_from_proto(&t, Some(&dir)).unwrap_err().0;
            assert!(e.contains(want) && e.contains("tensor 'ext'"), "{e}");
        }
        let e = tensor_from_proto(&external("sub/w.bin", &[]), None)
            .unwrap_err()
            .0;
        assert!(e.contains("not loaded from a file"), "{e}");
        let mut no_location = external("x", &[]);
        no_location.external_data.clear();
        assert!(tensor_from_proto(&no_location, Some(&dir))
            .unwrap_err()
            .0
            .contains("'location'"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn memory_external_data() {
        use std::mem::MaybeUninit;
        // A caller-held buffer: 3 filler bytes, then two little-endian i32 values.
        let mut buf = vec![9u8; 3];
        buf.extend([7i32, -8].iter().flat_map(|v| v.to_le_bytes()));
        let reader = move |offset: u64, dst: &mut [MaybeUninit<u8>]| -> std::result::Result<(), String> {
            let start = usize::try_from(offset).map_err(|e| e.to_string())?;
            let src = buf.get(start..start + dst.len()).ok_or("outside the buffer")?;
            for (d, s) in dst.iter_mut().zip(src) {
                d.write(*s);
            }
            Ok(())
        };
        // SAFETY: on `Ok` the reader wrote every byte of `dst`.
        let guard = unsafe { memory_external::install("mem:0".into(), Box::new(reader)) };
        let t = external("mem:0", &[("offset", "3"), ("length", "8")]);
        let out = tensor_from_proto(&t, None).unwrap();
        assert_eq!(out.as_slice::<i32>().unwrap(), &[7, -8]);
        // The reader's errors name the tensor.
        let e = tensor_from_proto(&external("mem:0", &[("offset", "8"), ("length", "8")]), None)
            .unwrap_err()
            .0;
        assert!(e.contains("outside the buffer") && e.contains("tensor 'ext'"), "{e}");
        // Other locations still go to the file path, which needs a directory here.
        let e = tensor_from_proto(&external("w.bin", &[]), None).unwrap_err().0;
        assert!(e.contains("not loaded from a file"), "{e}");
        drop(guard);
        // Once the guard is dropped the location is no longer served from memory.
        let e = tensor_from_proto(&external("mem:0", &[("offset", "3")]), None)
            .unwrap_err()
            .0;
        assert!(e.contains("not loaded from a file"), "{e}");
    }

    fn tensor_type(dtype: i32, shape: Option<Vec<DimProto>>) -> TypeProto {
        TypeProto {
            value: Some(TypeValue::Tensor {
                elem_type: dtype,
                shape,
            }),
            denotation: String::new(),
        }
    }

    #[test]
    fn value_types() {
        let t = tensor_type(
            1,
            Some(vec![
                DimProto::Value(3),
                DimProto::Param("batch".into()),
                DimProto::Unknown,
                DimProto::Value(-1),
            ]),
        );
        assert_eq!(
            value_type_from_proto(&t).unwrap(),
            ValueType::Tensor {
                dtype: DType::F32,
                shape: Some(Shape(vec![
                    Dim::Fixed(3),
                    Dim::Sym("batch".into()),
                    Dim::unknown(),
                    Dim::unknown()
                ])),
            }
        );
        assert_eq!(
            value_type_from_proto(&tensor_type(7, None)).unwrap(),
            ValueType::Tensor {
                dtype: DType::I64,
                shape: None
            }
        );
        let seq = TypeProto {
            value: Some(TypeValue::Sequence(Some(Box::new(tensor_type(9, None))))),
            ..Default::default()
        };
        let map = TypeProto {
            value: Some(TypeValue::Map {
                key_type: 8,
                value_type: Some(Box::new(seq.clone())),
            }),
            ..Default::default()
        };
        assert_eq!(
            value_type_from_proto(&map).unwrap(),
            ValueType::Map(
                DType::String,
                Box::new(ValueType::Sequence(Box::new(ValueType::Tensor {
                    dtype: DType::Bool,
                    shape: None
                })))
            )
        );
        let bad_key = TypeProto {
            value: Some(TypeValue::Map {
                key_type: 1,
                value_type: Some(Box::new(seq)),
            }),
            ..Default::default()
        };
        assert!(value_type_from_proto(&bad_key)
            .unwrap_err()
            .0
            .contains("key type float"));
        assert!(value_type_from_proto(&tensor_type(14, None))
            .unwrap_err()
            .0
            .contains("complex64"));
        assert!(value_type_from_proto(&TypeProto::default()).is_err());
    }

    fn f32_tensor(name: &str, v: &[f32]) -> TensorProto {
        let mut t = proto(name, DType::F32, &[v.len() as i64]);
        t.float_data = v.to_vec();
        t
    }

    #[test]
    fn sequences() {
        let s = SequenceProto {
            name: "s".into(),
            elem_type: ELEM_TENSOR,
            tensor_values: vec![f32_tensor("a", &[1.0]), f32_tensor("b", &[2.0, 3.0])],
            ..Default::default()
        };
        let Value::Sequence { elem, items } = value_from_sequence(&s).unwrap() else {
            panic!()
        };
        assert_eq!(
            elem,
            ValueType::Tensor {
                dtype: DType::F32,
                shape: None
            }
        );
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1].as_tensor().unwrap().as_slice::<f32>().unwrap(),
            &[2.0, 3.0]
        );

        let empty = SequenceProto {
            elem_type: ELEM_TENSOR,
            ..Default::default()
        };
        assert_eq!(
            value_from_sequence(&empty).unwrap(),
            Value::Sequence {
                elem: ValueType::Tensor {
                    dtype: DType::F32,
                    shape: None
                },
                items: vec![]
            }
        );

        let mut mixed = s.clone();
        let mut i = proto("i", DType::I64, &[1]);
        i.int64_data = vec![1];
        mixed.tensor_values.push(i);
        assert!(value_from_sequence(&mixed)
            .unwrap_err()
            .0
            .contains("mixes float and int64"));

        let nested = SequenceProto {
            elem_type: ELEM_SEQUENCE,
            sequence_values: vec![s, empty],
            ..Default::default()
        };
        let Value::Sequence { elem, items } = value_from_sequence(&nested).unwrap() else {
            panic!()
        };
        assert_eq!(
            elem,
            ValueType::Sequence(Box::new(ValueType::Tensor {
                dtype: DType::F32,
                shape: None
            }))
        );
        assert_eq!(items.len(), 2);

        let sparse = SequenceProto {
            elem_type: ELEM_SPARSE_TENSOR,
            ..Default::default()
        };
        assert!(value_from_sequence(&sparse)
            .unwrap_err()
            .0
            .contains("sparse"));
    }

    #[test]
    fn maps() {
        let values = SequenceProto {
            elem_type: ELEM_TENSOR,
            tensor_values: vec![f32_tensor("", &[1.0]), f32_tensor("", &[2.0])],
            ..Default::default()
        };
        let m = MapProto {
            name: "m".into(),
            key_type: DType::String as i32,
            string_keys: vec![b"a".to_vec(), b"b".to_vec()],
            values: Some(values.clone()),
            ..Default::default()
        };
        let Value::Map {
            key,
            value,
            entries,
        } = value_from_map(&m).unwrap()
        else {
            panic!()
        };
        assert_eq!(key, DType::String);
        assert_eq!(
            value,
            ValueType::Tensor {
                dtype: DType::F32,
                shape: None
            }
        );
        assert_eq!(entries[1].0, MapKey::Str("b".into()));

        let ints = MapProto {
            key_type: DType::I64 as i32,
            keys: vec![5, 6],
            values: Some(values),
            ..Default::default()
        };
        let Value::Map { entries, .. } = value_from_map(&ints).unwrap() else {
            panic!()
        };
        assert_eq!(entries[0].0, MapKey::Int(5));

        let short = MapProto {
            keys: vec![1],
            ..ints
        };
        assert!(value_from_map(&short)
            .unwrap_err()
            .0
            .contains("1 keys but 2 values"));
        let float_keys = MapProto {
            key_type: 1,
            ..Default::default()
        };
        assert!(value_from_map(&float_keys).is_err());
    }

    #[test]
    fn optionals() {
        let some = OptionalProto {
            elem_type: ELEM_TENSOR,
            tensor_value: Some(f32_tensor("x", &[4.0])),
            ..Default::default()
        };
        let Value::Optional { elem, value } = value_from_optional(&some).unwrap() else {
            panic!()
        };
        assert_eq!(
            elem,
            ValueType::Tensor {
                dtype: DType::F32,
                shape: None
            }
        );
        assert!(value.is_some());

        let none = OptionalProto::default();
        assert_eq!(
            value_from_optional(&none).unwrap(),
            Value::Optional {
                elem: ValueType::Tensor {
                    dtype: DType::F32,
                    shape: None
                },
                value: None
            }
        );
    }

    #[test]
    fn file_bytes_follow_the_declared_type() {
        use crate::testenc::Msg;
        // An empty optional whose declared type is optional(seq(tensor(int64))).
        let declared = TypeProto {
            value: Some(TypeValue::Optional(Some(Box::new(TypeProto {
                value: Some(TypeValue::Sequence(Some(Box::new(tensor_type(7, None))))),
                ..Default::default()
            })))),
            ..Default::default()
        };
        let bytes = Msg::new().str(1, "opt").build();
        let v = value_from_file_bytes(&bytes, &declared).unwrap();
        let want = ValueType::Sequence(Box::new(ValueType::Tensor {
            dtype: DType::I64,
            shape: None,
        }));
        assert_eq!(
            v,
            Value::Optional {
                elem: want,
                value: None
            }
        );

        let declared = tensor_type(7, Some(vec![DimProto::Value(2)]));
        let bytes = crate::testenc::tensor("t", 7, &[2])
            .packed_ints(7, &[3, -4])
            .build();
        let v = value_from_file_bytes(&bytes, &declared).unwrap();
        assert_eq!(v.as_tensor().unwrap().as_slice::<i64>().unwrap(), &[3, -4]);
        assert!(value_from_file_bytes(&[0xff], &declared).is_err());
    }
}
