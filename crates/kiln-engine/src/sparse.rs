//! Sparse tensors (sparse initializers, `sparse_value` attributes) expanded to dense ones.

use std::path::Path;

use kiln_onnx::proto::SparseTensorProto;
use kiln_onnx::tensor::tensor_from_proto;
use kiln_tensor::{checked_numel, Tensor, TensorData};

use crate::error::{OpError, OpResult};

/// Expands a COO sparse tensor (indices either [NNZ] linear or [NNZ, rank]) to a dense tensor.
pub fn densify(st: &SparseTensorProto, base_dir: Option<&Path>) -> OpResult<Tensor> {
    let values = st.values.as_ref().ok_or_else(|| OpError::new("sparse tensor has no values"))?;
    let values = tensor_from_proto(values, base_dir)?;
    let dims: Vec<usize> = st
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| OpError(format!("negative dim {d}"))))
        .collect::<OpResult<_>>()?;
    let n = checked_numel(&dims)?;
    let nnz = values.len();
    let indices = match &st.indices {
        Some(i) => tensor_from_proto(i, base_dir)?.to_i64_vec()?,
        None => Vec::new(),
    };
    let linear: Vec<usize> = if indices.len() == nnz {
        indices.iter().map(|&i| i as usize).collect()
    } else if !dims.is_empty() && indices.len() == nnz * dims.len() {
        let strides = kiln_tensor::strides_of(&dims);
        indices
            .chunks(dims.len())
            .map(|c| c.iter().zip(&strides).map(|(&i, &s)| (i as usize).wrapping_mul(s)).sum())
            .collect()
    } else {
        return Err(OpError(format!(
            "sparse tensor has {nnz} values but {} indices for shape {dims:?}",
            indices.len()
        )));
    };
    let mut dense = TensorData::zeros(values.dtype(), n);
    let src = values.data();
    for (k, &pos) in linear.iter().enumerate() {
        if pos >= n {
            return Err(OpError(format!("sparse index {pos} is outside shape {dims:?}")));
        }
        set_from(&mut dense, pos, src, k);
    }
    Ok(Tensor::new(dims, dense)?)
}

fn set_from(dst: &mut TensorData, i: usize, src: &TensorData, k: usize) {
    macro_rules! arm {
        ($($var:ident),*) => {
            match (dst, src) {
                $( (TensorData::$var(a), TensorData::$var(b)) => a[i] = b[k].clone(), )*
                _ => {}
            }
        };
    }
    arm!(F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool, String)
}
