//! Elementwise operators: unary math and activations, broadcasting binary/variadic arithmetic,
//! comparisons and logic, Where, Clip, PRelu, Cast and CastLike.

use kiln_tensor::{DType, Elem, Shape, Tensor, Value, ValueType};

use crate::error::OpResult;
use crate::ops::util::broadcast_symbolic;
use crate::registry::Registry;

/// `dispatch!(group data, "Op", |v: T| body)`: matches `data` (a `&TensorData`) on the dtypes of
/// `group` (float, signed, num, int), binding `v: &Vec<T>` and the type alias `T`; other dtypes
/// are an error naming the op.
macro_rules! dispatch {
    (@arms $data:expr, $name:expr, |$v:ident : $T:ident| $body:expr, [$($var:ident => $ty:ty),*]) => {{
        #[allow(unused_imports)]
        use kiln_tensor::{bf16, f16, TensorData as TD};
        #[allow(unreachable_patterns)]
        match $data {
            $( TD::$var($v) => { #[allow(dead_code)] type $T = $ty; $body } )*
            other => $crate::bail!("{} does not support {} tensors", $name, other.dtype()),
        }
    }};
    (float $data:expr, $name:expr, |$v:ident : $T:ident| $body:expr) => {
        dispatch!(@arms $data, $name, |$v: $T| $body, [F32 => f32, F64 => f64, F16 => f16, BF16 => bf16])
    };
    (signed $data:expr, $name:expr, |$v:ident : $T:ident| $body:expr) => {
        dispatch!(@arms $data, $name, |$v: $T| $body, [F32 => f32, F64 => f64, F16 => f16, BF16 => bf16,
            I8 => i8, I16 => i16, I32 => i32, I64 => i64])
    };
    (num $data:expr, $name:expr, |$v:ident : $T:ident| $body:expr) => {
        dispatch!(@arms $data, $name, |$v: $T| $body, [F32 => f32, F64 => f64, F16 => f16, BF16 => bf16,
            I8 => i8, I16 => i16, I32 => i32, I64 => i64, U8 => u8, U16 => u16, U32 => u32, U64 => u64])
    };
    (int $data:expr, $name:expr, |$v:ident : $T:ident| $body:expr) => {
        dispatch!(@arms $data, $name, |$v: $T| $body, [I8 => i8, I16 => i16, I32 => i32, I64 => i64,
            U8 => u8, U16 => u16, U32 => u32, U64 => u64])
    };
    (all $data:expr, $name:expr, |$v:ident : $T:ident| $body:expr) => {
        dispatch!(@arms $data, $name, |$v: $T| $body, [F32 => f32, F64 => f64, F16 => f16, BF16 => bf16,
            I8 => i8, I16 => i16, I32 => i32, I64 => i64, U8 => u8, U16 => u16, U32 => u32, U64 => u64,
            Bool => bool, String => String])
    };
}

mod binary;
pub(crate) use binary::add_tensors;
mod cast;
pub(crate) mod kernels;
mod unary;

pub fn register(r: &mut Registry) {
    unary::register(r);
    binary::register(r);
    cast::register(r);
}

/// One output tensor from a shape and its elements.
fn single<T: Elem>(shape: Vec<usize>, v: Vec<T>) -> OpResult<Vec<Value>> {
    Ok(vec![Value::Tensor(Tensor::from_vec(shape, v)?)])
}

/// Output type of a shape-preserving op: input 0's shape, with `dtype` or input 0's dtype.
fn infer_unary(inputs: &[Option<&ValueType>], dtype: Option<DType>) -> Option<Vec<ValueType>> {
    let t = inputs.first().copied().flatten()?;
    let in_dt = t.tensor_dtype()?;
    Some(vec![ValueType::tensor(dtype.unwrap_or(in_dt), t.tensor_shape().cloned())])
}

/// Output type of a broadcasting op over all `inputs` (shape unknown if any input's is).
fn infer_broadcast(inputs: &[Option<&ValueType>], dtype: DType) -> Option<Vec<ValueType>> {
    let mut shape = Some(Shape(Vec::new()));
    for t in inputs {
        shape = match (shape, t.and_then(|t| t.tensor_shape())) {
            (Some(s), Some(x)) => broadcast_symbolic(&s, x),
            _ => None,
        };
    }
    Some(vec![ValueType::tensor(dtype, shape)])
}

/// The dtype of input `i`, if known.
fn in_dtype(inputs: &[Option<&ValueType>], i: usize) -> Option<DType> {
    inputs.get(i).copied().flatten()?.tensor_dtype()
}
