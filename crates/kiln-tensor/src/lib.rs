//! kiln-tensor: the value types every other Kiln crate speaks.
//!
//! `DType` (element types, with their ONNX codes), `Dim`/`Shape` (static and symbolic dimensions),
//! `Tensor` (a dense, row-major, owned n-d array) and `Value` (tensor, sequence, map or optional —
//! what flows along a graph edge). Depends only on `half` (and `libc` on Linux, for memory hints); no I/O, no kernels.

use std::fmt;

pub use half::{bf16, f16};

mod lowp;
mod mem;
mod value;
pub mod npy;
pub use lowp::{E8M0Round, F4E2M1, F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, F8E8M0, I2, I4, U2, U4};
pub use mem::prefault;
pub use value::{MapKey, Value, ValueType};

/// Element type of a tensor. The discriminants are the ONNX `TensorProto.DataType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32 = 1,
    U8 = 2,
    I8 = 3,
    U16 = 4,
    I16 = 5,
    I32 = 6,
    I64 = 7,
    String = 8,
    Bool = 9,
    F16 = 10,
    F64 = 11,
    U32 = 12,
    U64 = 13,
    BF16 = 16,
    F8E4M3FN = 17,
    F8E4M3FNUZ = 18,
    F8E5M2 = 19,
    F8E5M2FNUZ = 20,
    U4 = 21,
    I4 = 22,
    F4E2M1 = 23,
    F8E8M0 = 24,
    U2 = 25,
    I2 = 26,
}

impl DType {
    pub const ALL: [DType; 24] = [
        DType::F32,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::String,
        DType::Bool,
        DType::F16,
        DType::F64,
        DType::U32,
        DType::U64,
        DType::BF16,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::U4,
        DType::I4,
        DType::F4E2M1,
        DType::F8E8M0,
        DType::U2,
        DType::I2,
    ];

    /// Maps an ONNX `TensorProto.DataType` code to a dtype Kiln supports.
    pub fn from_onnx(code: i32) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| *d as i32 == code)
    }

    pub fn onnx_code(self) -> i32 {
        self as i32
    }

    /// Name of an ONNX data type code, also for codes Kiln does not support (for error messages).
    pub fn onnx_code_name(code: i32) -> &'static str {
        match code {
            0 => "undefined",
            1 => "float",
            2 => "uint8",
            3 => "int8",
            4 => "uint16",
            5 => "int16",
            6 => "int32",
            7 => "int64",
            8 => "string",
            9 => "bool",
            10 => "float16",
            11 => "double",
            12 => "uint32",
            13 => "uint64",
            14 => "complex64",
            15 => "complex128",
            16 => "bfloat16",
            17 => "float8e4m3fn",
            18 => "float8e4m3fnuz",
            19 => "float8e5m2",
            20 => "float8e5m2fnuz",
            21 => "uint4",
            22 => "int4",
            23 => "float4e2m1",
            24 => "float8e8m0",
            25 => "uint2",
            26 => "int2",
            _ => "unknown",
        }
    }

    /// The ONNX-style lowercase name ("float", "int64", ...).
    pub fn name(self) -> &'static str {
        DType::onnx_code_name(self as i32)
    }

    /// Name as numpy spells it ("float32", "int64", "bool", ...).
    pub fn numpy_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
            DType::String => "string",
            DType::F8E4M3FN => "float8_e4m3fn",
            DType::F8E4M3FNUZ => "float8_e4m3fnuz",
            DType::F8E5M2 => "float8_e5m2",
            DType::F8E5M2FNUZ => "float8_e5m2fnuz",
            DType::U4 => "uint4",
            DType::I4 => "int4",
            DType::F4E2M1 => "float4_e2m1fn",
            DType::F8E8M0 => "float8_e8m0fnu",
            DType::U2 => "uint2",
            DType::I2 => "int2",
        }
    }

    /// Size in bytes of one element (strings: size of the in-memory handle).
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            // Low-precision types hold one unpacked element per byte in memory.
            DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0
            | DType::F4E2M1
            | DType::I4
            | DType::U4
            | DType::I2
            | DType::U2 => 1,
            DType::String => std::mem::size_of::<String>(),
        }
    }

    /// Bits one element occupies in packed storage (ONNX raw_data): 4 for the 4-bit types, 2 for
    /// the 2-bit ones, 8 * size otherwise (strings: not meaningful).
    pub fn storage_bits(self) -> usize {
        match self {
            DType::I4 | DType::U4 | DType::F4E2M1 => 4,
            DType::I2 | DType::U2 => 2,
            d => 8 * d.size(),
        }
    }

    /// Bytes `numel` elements take in packed storage (sub-byte types rounded up to whole bytes).
    pub fn packed_bytes(self, numel: usize) -> Option<usize> {
        let bits = self.storage_bits();
        if bits >= 8 {
            numel.checked_mul(bits / 8)
        } else {
            let per_byte = 8 / bits;
            Some(numel / per_byte + usize::from(numel % per_byte != 0))
        }
    }

    /// Floating-point types, including the float8 and float4 formats.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16) || self.is_low_float()
    }

    /// The float8 and float4 formats.
    pub fn is_low_float(self) -> bool {
        matches!(
            self,
            DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 | DType::F4E2M1
        )
    }

    /// The 4-bit and 2-bit integer types.
    pub fn is_low_int(self) -> bool {
        matches!(self, DType::I4 | DType::U4 | DType::I2 | DType::U2)
    }

    /// Integer types, including the 4-bit and 2-bit ones.
    pub fn is_int(self) -> bool {
        matches!(
            self,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8 | DType::U16 | DType::U32 | DType::U64
        ) || self.is_low_int()
    }

    pub fn is_signed(self) -> bool {
        matches!(self, DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::I4 | DType::I2)
            || (self.is_float() && self != DType::F8E8M0)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension of a declared shape: a known size or a symbol such as `batch` (`?` when unnamed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(usize),
    Sym(String),
}

impl Dim {
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
    pub fn unknown() -> Dim {
        Dim::Sym("?".to_string())
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// A declared shape, possibly with symbolic dims.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// All dims known: the concrete shape.
    pub fn as_fixed(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::fixed).collect()
    }
    /// Does a concrete shape fit this declared one? Symbols match anything.
    pub fn accepts(&self, dims: &[usize]) -> bool {
        self.0.len() == dims.len()
            && self.0.iter().zip(dims).all(|(d, &n)| match d {
                Dim::Fixed(m) => *m == n,
                Dim::Sym(_) => true,
            })
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The elements of a tensor, one variant per dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    F8E4M3FN(Vec<F8E4M3FN>),
    F8E4M3FNUZ(Vec<F8E4M3FNUZ>),
    F8E5M2(Vec<F8E5M2>),
    F8E5M2FNUZ(Vec<F8E5M2FNUZ>),
    U4(Vec<U4>),
    I4(Vec<I4>),
    F4E2M1(Vec<F4E2M1>),
    F8E8M0(Vec<F8E8M0>),
    U2(Vec<U2>),
    I2(Vec<I2>),
}

/// Dispatches `$body` with `$v` bound to the inner `Vec<T>` of a `TensorData`, for every dtype.
#[macro_export]
macro_rules! match_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::TensorData::F32($v) => $body,
            $crate::TensorData::F64($v) => $body,
            $crate::TensorData::F16($v) => $body,
            $crate::TensorData::BF16($v) => $body,
            $crate::TensorData::I8($v) => $body,
            $crate::TensorData::I16($v) => $body,
            $crate::TensorData::I32($v) => $body,
            $crate::TensorData::I64($v) => $body,
            $crate::TensorData::U8($v) => $body,
            $crate::TensorData::U16($v) => $body,
            $crate::TensorData::U32($v) => $body,
            $crate::TensorData::U64($v) => $body,
            $crate::TensorData::Bool($v) => $body,
            $crate::TensorData::String($v) => $body,
            $crate::TensorData::F8E4M3FN($v) => $body,
            $crate::TensorData::F8E4M3FNUZ($v) => $body,
            $crate::TensorData::F8E5M2($v) => $body,
            $crate::TensorData::F8E5M2FNUZ($v) => $body,
            $crate::TensorData::U4($v) => $body,
            $crate::TensorData::I4($v) => $body,
            $crate::TensorData::F4E2M1($v) => $body,
            $crate::TensorData::F8E8M0($v) => $body,
            $crate::TensorData::U2($v) => $body,
            $crate::TensorData::I2($v) => $body,
        }
    };
}

/// Like `match_data!` but maps each variant to the same variant (`$body` yields a `Vec<T>`).
#[macro_export]
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::TensorData::F32($v) => $crate::TensorData::F32($body),
            $crate::TensorData::F64($v) => $crate::TensorData::F64($body),
            $crate::TensorData::F16($v) => $crate::TensorData::F16($body),
            $crate::TensorData::BF16($v) => $crate::TensorData::BF16($body),
            $crate::TensorData::I8($v) => $crate::TensorData::I8($body),
            $crate::TensorData::I16($v) => $crate::TensorData::I16($body),
            $crate::TensorData::I32($v) => $crate::TensorData::I32($body),
            $crate::TensorData::I64($v) => $crate::TensorData::I64($body),
            $crate::TensorData::U8($v) => $crate::TensorData::U8($body),
            $crate::TensorData::U16($v) => $crate::TensorData::U16($body),
            $crate::TensorData::U32($v) => $crate::TensorData::U32($body),
            $crate::TensorData::U64($v) => $crate::TensorData::U64($body),
            $crate::TensorData::Bool($v) => $crate::TensorData::Bool($body),
            $crate::TensorData::String($v) => $crate::TensorData::String($body),
            $crate::TensorData::F8E4M3FN($v) => $crate::TensorData::F8E4M3FN($body),
            $crate::TensorData::F8E4M3FNUZ($v) => $crate::TensorData::F8E4M3FNUZ($body),
            $crate::TensorData::F8E5M2($v) => $crate::TensorData::F8E5M2($body),
            $crate::TensorData::F8E5M2FNUZ($v) => $crate::TensorData::F8E5M2FNUZ($body),
            $crate::TensorData::U4($v) => $crate::TensorData::U4($body),
            $crate::TensorData::I4($v) => $crate::TensorData::I4($body),
            $crate::TensorData::F4E2M1($v) => $crate::TensorData::F4E2M1($body),
            $crate::TensorData::F8E8M0($v) => $crate::TensorData::F8E8M0($body),
            $crate::TensorData::U2($v) => $crate::TensorData::U2($body),
            $crate::TensorData::I2($v) => $crate::TensorData::I2($body),
        }
    };
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I8(_) => DType::I8,
            TensorData::I16(_) => DType::I16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::U8(_) => DType::U8,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::String(_) => DType::String,
            TensorData::F8E4M3FN(_) => DType::F8E4M3FN,
            TensorData::F8E4M3FNUZ(_) => DType::F8E4M3FNUZ,
            TensorData::F8E5M2(_) => DType::F8E5M2,
            TensorData::F8E5M2FNUZ(_) => DType::F8E5M2FNUZ,
            TensorData::U4(_) => DType::U4,
            TensorData::I4(_) => DType::I4,
            TensorData::F4E2M1(_) => DType::F4E2M1,
            TensorData::F8E8M0(_) => DType::F8E8M0,
            TensorData::U2(_) => DType::U2,
            TensorData::I2(_) => DType::I2,
        }
    }
    pub fn len(&self) -> usize {
        match_data!(self, v => v.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `n` default (zero / false / empty) elements of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::F64 => TensorData::F64(vec![0.0; n]),
            DType::F16 => TensorData::F16(vec![f16::ZERO; n]),
            DType::BF16 => TensorData::BF16(vec![bf16::ZERO; n]),
            DType::I8 => TensorData::I8(vec![0; n]),
            DType::I16 => TensorData::I16(vec![0; n]),
            DType::I32 => TensorData::I32(vec![0; n]),
            DType::I64 => TensorData::I64(vec![0; n]),
            DType::U8 => TensorData::U8(vec![0; n]),
            DType::U16 => TensorData::U16(vec![0; n]),
            DType::U32 => TensorData::U32(vec![0; n]),
            DType::U64 => TensorData::U64(vec![0; n]),
            DType::Bool => TensorData::Bool(vec![false; n]),
            DType::String => TensorData::String(vec![String::new(); n]),
            DType::F8E4M3FN => TensorData::F8E4M3FN(vec![F8E4M3FN::default(); n]),
            DType::F8E4M3FNUZ => TensorData::F8E4M3FNUZ(vec![F8E4M3FNUZ::default(); n]),
            DType::F8E5M2 => TensorData::F8E5M2(vec![F8E5M2::default(); n]),
            DType::F8E5M2FNUZ => TensorData::F8E5M2FNUZ(vec![F8E5M2FNUZ::default(); n]),
            DType::U4 => TensorData::U4(vec![U4::default(); n]),
            DType::I4 => TensorData::I4(vec![I4::default(); n]),
            DType::F4E2M1 => TensorData::F4E2M1(vec![F4E2M1::default(); n]),
            DType::F8E8M0 => TensorData::F8E8M0(vec![F8E8M0::default(); n]),
            DType::U2 => TensorData::U2(vec![U2::default(); n]),
            DType::I2 => TensorData::I2(vec![I2::default(); n]),
        }
    }
    /// Empty vector of `dtype` with room for `n` elements.
    pub fn with_capacity(dtype: DType, n: usize) -> TensorData {
        let mut d = TensorData::zeros(dtype, 0);
        match_data!(&mut d, v => v.reserve(n));
        d
    }
    /// Gathers elements at `indices` (each < len) into a new vector of the same dtype.
    pub fn gather(&self, indices: &[usize]) -> TensorData {
        map_data!(self, v => indices.iter().map(|&i| v[i].clone()).collect())
    }
    /// Appends element `i` of `other` (same dtype) to `self`. Panics on dtype mismatch: internal use.
    pub fn push_from(&mut self, other: &TensorData, i: usize) {
        macro_rules! arm {
            ($($var:ident),*) => {
                match (self, other) {
                    $( (TensorData::$var(a), TensorData::$var(b)) => a.push(b[i].clone()), )*
                    _ => unreachable!("push_from: dtype mismatch"),
                }
            };
        }
        arm!(F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool, String,
            F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, U4, I4, F4E2M1, F8E8M0, U2, I2)
    }
    /// Appends a range of `other` (same dtype).
    pub fn extend_from(&mut self, other: &TensorData, range: std::ops::Range<usize>) {
        macro_rules! arm {
            ($($var:ident),*) => {
                match (self, other) {
                    $( (TensorData::$var(a), TensorData::$var(b)) => a.extend_from_slice(&b[range]), )*
                    _ => unreachable!("extend_from: dtype mismatch"),
                }
            };
        }
        arm!(F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool, String,
            F8E4M3FN, F8E4M3FNUZ, F8E5M2, F8E5M2FNUZ, U4, I4, F4E2M1, F8E8M0, U2, I2)
    }
}

/// Rust element types that can live in a tensor.
pub trait Elem: Clone + Default + fmt::Debug + Send + Sync + 'static {
    const DTYPE: DType;
    fn wrap(v: Vec<Self>) -> TensorData;
    fn slice(d: &TensorData) -> Option<&[Self]>;
    fn slice_mut(d: &mut TensorData) -> Option<&mut [Self]>;
    fn into_vec(d: TensorData) -> Option<Vec<Self>>;
}

macro_rules! impl_elem {
    ($t:ty, $var:ident) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$var;
            fn wrap(v: Vec<Self>) -> TensorData {
                TensorData::$var(v)
            }
            fn slice(d: &TensorData) -> Option<&[Self]> {
                match d {
                    TensorData::$var(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(d: &mut TensorData) -> Option<&mut [Self]> {
                match d {
                    TensorData::$var(v) => Some(v),
                    _ => None,
                }
            }
            fn into_vec(d: TensorData) -> Option<Vec<Self>> {
                match d {
                    TensorData::$var(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
impl_elem!(f32, F32);
impl_elem!(f64, F64);
impl_elem!(f16, F16);
impl_elem!(bf16, BF16);
impl_elem!(i8, I8);
impl_elem!(i16, I16);
impl_elem!(i32, I32);
impl_elem!(i64, I64);
impl_elem!(u8, U8);
impl_elem!(u16, U16);
impl_elem!(u32, U32);
impl_elem!(u64, U64);
impl_elem!(bool, Bool);
impl_elem!(String, String);
impl_elem!(F8E4M3FN, F8E4M3FN);
impl_elem!(F8E4M3FNUZ, F8E4M3FNUZ);
impl_elem!(F8E5M2, F8E5M2);
impl_elem!(F8E5M2FNUZ, F8E5M2FNUZ);
impl_elem!(U4, U4);
impl_elem!(I4, I4);
impl_elem!(F4E2M1, F4E2M1);
impl_elem!(F8E8M0, F8E8M0);
impl_elem!(U2, U2);
impl_elem!(I2, I2);


/// Error from a tensor constructor or accessor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorError(pub String);

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TensorError {}

/// Largest element count Kiln will allocate for one tensor (2^40 bytes of f32 would be absurd anyway);
/// guards against declared shapes whose product overflows or cannot be allocated.
#[cfg(target_pointer_width = "64")]
pub const MAX_ELEMENTS: usize = 1 << 36;
/// On 32-bit targets (wasm32) the address space itself is the limit.
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_ELEMENTS: usize = 1 << 30;

/// Number of elements of a shape, or an error if it overflows `MAX_ELEMENTS`.
pub fn checked_numel(shape: &[usize]) -> Result<usize, TensorError> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| TensorError(format!("shape {shape:?} is too large to allocate")))?;
    }
    Ok(n)
}

/// A dense row-major n-d array that owns its elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// Builds a tensor; the element count must equal the product of the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, TensorError> {
        let n = checked_numel(&shape)?;
        if n != data.len() {
            return Err(TensorError(format!(
                "shape {:?} needs {} elements but {} were given",
                shape,
                n,
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }
    pub fn from_vec<T: Elem>(shape: Vec<usize>, v: Vec<T>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, T::wrap(v))
    }
    pub fn scalar<T: Elem>(v: T) -> Tensor {
        Tensor { shape: vec![], data: T::wrap(vec![v]) }
    }
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let n = checked_numel(&shape)?;
        Ok(Tensor { shape, data: TensorData::zeros(dtype, n) })
    }
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn data(&self) -> &TensorData {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut TensorData {
        &mut self.data
    }
    pub fn into_data(self) -> TensorData {
        self.data
    }
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }
    /// The elements as `&[T]`, or an error naming both dtypes.
    pub fn as_slice<T: Elem>(&self) -> Result<&[T], TensorError> {
        T::slice(&self.data).ok_or_else(|| {
            TensorError(format!("expected a {} tensor, got {}", T::DTYPE, self.dtype()))
        })
    }
    pub fn as_slice_mut<T: Elem>(&mut self) -> Result<&mut [T], TensorError> {
        let dt = self.dtype();
        T::slice_mut(&mut self.data)
            .ok_or_else(|| TensorError(format!("expected a {} tensor, got {}", T::DTYPE, dt)))
    }
    pub fn into_vec<T: Elem>(self) -> Result<Vec<T>, TensorError> {
        let dt = self.dtype();
        T::into_vec(self.data)
            .ok_or_else(|| TensorError(format!("expected a {} tensor, got {}", T::DTYPE, dt)))
    }
    /// Same elements, new shape with the same element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, self.data)
    }
    /// Row-major strides of the shape, in elements.
    pub fn strides(&self) -> Vec<usize> {
        strides_of(&self.shape)
    }
    /// Integer tensor values widened to i64 (for shape-like inputs: axes, pads, indices...).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, TensorError> {
        Ok(match &self.data {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I4(v) => v.iter().map(|x| x.to_i64()).collect(),
            TensorData::U4(v) => v.iter().map(|x| x.to_i64()).collect(),
            TensorData::I2(v) => v.iter().map(|x| x.to_i64()).collect(),
            TensorData::U2(v) => v.iter().map(|x| x.to_i64()).collect(),
            other => {
                return Err(TensorError(format!("expected an integer tensor, got {}", other.dtype())))
            }
        })
    }
    /// Numeric tensor values converted to f64 (for scalars like Clip bounds, alpha...).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, TensorError> {
        Ok(match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F8E4M3FN(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F8E4M3FNUZ(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F8E5M2(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F8E5M2FNUZ(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F8E8M0(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F4E2M1(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::String(_) => {
                return Err(TensorError("expected a numeric tensor, got string".into()))
            }
            _ => self.to_i64_vec()?.into_iter().map(|x| x as f64).collect(),
        })
    }
}

/// Row-major strides of a shape, in elements.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_element_count() {
        assert!(Tensor::from_vec(vec![2, 3], vec![0f32; 6]).is_ok());
        assert!(Tensor::from_vec(vec![2, 3], vec![0f32; 5]).is_err());
    }

    #[test]
    fn huge_shapes_are_rejected_not_allocated() {
        assert!(Tensor::zeros(DType::F32, vec![1 << 30, 1 << 30, 1 << 30]).is_err());
    }

    #[test]
    fn dtype_codes_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_onnx(d.onnx_code()), Some(d));
        }
        assert_eq!(DType::from_onnx(14), None);
        assert_eq!(DType::from_onnx(17), Some(DType::F8E4M3FN));
        assert_eq!(DType::from_onnx(26), Some(DType::I2));
        assert_eq!(DType::I4.name(), "int4");
    }

    #[test]
    fn packed_sizes() {
        assert_eq!(DType::I4.packed_bytes(5), Some(3));
        assert_eq!(DType::U2.packed_bytes(5), Some(2));
        assert_eq!(DType::U2.packed_bytes(8), Some(2));
        assert_eq!(DType::F8E5M2.packed_bytes(5), Some(5));
        assert_eq!(DType::F32.packed_bytes(5), Some(20));
    }

    #[test]
    fn strides() {
        assert_eq!(strides_of(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides_of(&[]), Vec::<usize>::new());
    }
}
