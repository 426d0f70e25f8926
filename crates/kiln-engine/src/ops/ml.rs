//! ai.onnx.ml operators: registration and the helpers they share (post transforms as
//! onnxruntime computes them, reading feature matrices, attributes given as lists or tensors).

mod linear;
mod transform;
mod tree;

use kiln_tensor::{Tensor, TensorData};

use crate::error::{OpError, OpResult};
use crate::op::NodeInfo;
use crate::registry::Registry;
use crate::bail;

const ML: &str = "ai.onnx.ml";

pub fn register(r: &mut Registry) {
    r.add_in(ML, "TreeEnsembleClassifier", 1, tree::build_classifier);
    r.add_in(ML, "TreeEnsembleRegressor", 1, tree::build_regressor);
    r.add_in(ML, "TreeEnsemble", 5, tree::build_v5);
    r.add_in(ML, "LinearClassifier", 1, linear::build_linear_classifier);
    r.add_in(ML, "LinearRegressor", 1, linear::build_linear_regressor);
    r.add_in(ML, "SVMClassifier", 1, linear::build_svm_classifier);
    r.add_in(ML, "SVMRegressor", 1, linear::build_svm_regressor);
    r.add_in(ML, "Scaler", 1, transform::build_scaler);
    r.add_in(ML, "Normalizer", 1, transform::build_normalizer);
    r.add_in(ML, "Binarizer", 1, transform::build_binarizer);
    r.add_in(ML, "Imputer", 1, transform::build_imputer);
    r.add_in(ML, "OneHotEncoder", 1, transform::build_one_hot_encoder);
    r.add_in(ML, "LabelEncoder", 1, transform::build_label_encoder);
    r.add_in(ML, "CategoryMapper", 1, transform::build_category_mapper);
    r.add_in(ML, "DictVectorizer", 1, transform::build_dict_vectorizer);
    r.add_in(ML, "FeatureVectorizer", 1, transform::build_feature_vectorizer);
    r.add_in(ML, "ArrayFeatureExtractor", 1, transform::build_array_feature_extractor);
    r.add_in(ML, "ZipMap", 1, transform::build_zipmap);
}

/// Score post-processing of the classifiers and regressors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PostTransform {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub(crate) fn parse(s: &str) -> OpResult<PostTransform> {
        Ok(match s {
            "NONE" => PostTransform::None,
            "SOFTMAX" => PostTransform::Softmax,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => {
                return Err(OpError(format!(
                    "unsupported post_transform '{other}' (expected NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO or PROBIT)"
                )))
            }
        })
    }
    /// The integer encoding of TreeEnsemble (opset 5).
    pub(crate) fn from_code(c: i64) -> OpResult<PostTransform> {
        Ok(match c {
            0 => PostTransform::None,
            1 => PostTransform::Softmax,
            2 => PostTransform::Logistic,
            3 => PostTransform::SoftmaxZero,
            4 => PostTransform::Probit,
            other => bail!("unsupported post_transform {other} (expected 0..4)"),
        })
    }
    pub(crate) fn from_attr(n: &NodeInfo) -> OpResult<PostTransform> {
        PostTransform::parse(&n.attr_string_or("post_transform", "NONE")?)
    }
}

pub(crate) fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 {
        1.0 - e
    } else {
        e
    }
}

fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

pub(crate) fn probit(v: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * v - 1.0)
}

pub(crate) fn softmax(v: &mut [f32]) {
    let mut m = -f32::MAX;
    for &x in v.iter() {
        if x > m {
            m = x;
        }
    }
    let mut s = 0.0f32;
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    for x in v.iter_mut() {
        *x /= s;
    }
}

pub(crate) fn softmax_zero(v: &mut [f32]) {
    let mut m = -f32::MAX;
    for &x in v.iter() {
        if x > m {
            m = x;
        }
    }
    let e = (-m).exp();
    let mut s = 0.0f32;
    for x in v.iter_mut() {
        if *x > 1e-7 || *x < -1e-7 {
            *x = (*x - m).exp();
            s += *x;
        } else {
            *x *= e;
        }
    }
    for x in v.iter_mut() {
        *x /= s;
    }
}

/// Applies a post transform to a row of two or more scores (onnxruntime's `write_scores`).
pub(crate) fn transform_row(v: &mut [f32], pt: PostTransform) {
    match pt {
        PostTransform::None => {}
        PostTransform::Probit => v.iter_mut().for_each(|x| *x = probit(*x)),
        PostTransform::Logistic => v.iter_mut().for_each(|x| *x = logistic(*x)),
        PostTransform::Softmax => softmax(v),
        PostTransform::SoftmaxZero => softmax_zero(v),
    }
}

/// Expands a single binary score into two columns (onnxruntime's "add second class" rules):
/// mode 0/1: [1 - s, s]; mode 2/3: [L(-s), L(s)] with LOGISTIC, else [-s, s].
pub(crate) fn second_class(s: f32, mode: i32, pt: PostTransform) -> [f32; 2] {
    match mode {
        0 | 1 => [1.0 - s, s],
        _ if pt == PostTransform::Logistic => [logistic(-s), logistic(s)],
        _ => [-s, s],
    }
}

/// A feature matrix: `rows` × `cols`, as f32 (for models computing in float).
pub(crate) struct Rows {
    pub rows: usize,
    pub cols: usize,
}

/// Shape of X as (rows, features): 1-D is one row, 2-D is [N, F], higher ranks flatten the tail.
pub(crate) fn rows_cols(x: &Tensor) -> OpResult<Rows> {
    match x.shape() {
        [] => bail!("input X must have at least one dimension"),
        [f] => Ok(Rows { rows: 1, cols: *f }),
        [n, rest @ ..] => Ok(Rows { rows: *n, cols: rest.iter().product() }),
    }
}

/// The numeric elements of X as f32 (float, double, int32, int64 inputs).
pub(crate) fn to_f32(x: &Tensor) -> OpResult<std::borrow::Cow<'_, [f32]>> {
    use std::borrow::Cow;
    Ok(match x.data() {
        TensorData::F32(v) => Cow::Borrowed(v.as_slice()),
        TensorData::F64(v) => Cow::Owned(v.iter().map(|&a| a as f32).collect()),
        TensorData::I64(v) => Cow::Owned(v.iter().map(|&a| a as f32).collect()),
        TensorData::I32(v) => Cow::Owned(v.iter().map(|&a| a as f32).collect()),
        TensorData::F16(v) => Cow::Owned(v.iter().map(|a| a.to_f32()).collect()),
        other => bail!("input X has unsupported type {} (expected float, double, int32 or int64)", other.dtype()),
    })
}

/// A float list attribute given either as `name` (floats) or `name_as_tensor`, as f64.
pub(crate) fn floats_or_tensor(n: &NodeInfo, name: &str) -> OpResult<Option<Vec<f64>>> {
    if let Some(v) = n.attr_floats(name)? {
        return Ok(Some(v.into_iter().map(f64::from).collect()));
    }
    let tname = format!("{name}_as_tensor");
    if let Some(t) = n.attr_tensor(&tname)? {
        return Ok(Some(t.to_f64_vec()?));
    }
    Ok(None)
}

pub(crate) fn ints_or_empty(n: &NodeInfo, name: &str) -> OpResult<Vec<i64>> {
    Ok(n.attr_ints(name)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_and_softmax() {
        assert!((logistic(0.0) - 0.5).abs() < 1e-7);
        assert!((logistic(2.0) - 0.880_797_1).abs() < 1e-6);
        assert!((logistic(-2.0) - 0.119_202_92).abs() < 1e-6);
        let mut v = [1.0f32, 2.0, 3.0];
        softmax(&mut v);
        assert!((v[0] - 0.090_030_57).abs() < 1e-6 && (v[2] - 0.665_240_94).abs() < 1e-6);
        // SOFTMAX_ZERO leaves zeros at zero weight (scaled, not exponentiated).
        let mut z = [0.0f32, 1.0, 1.0];
        softmax_zero(&mut z);
        assert_eq!(z[0], 0.0);
        assert!((z[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn probit_is_inverse_normal_cdf() {
        assert!(probit(0.5).abs() < 1e-6);
        // Phi^-1(0.975) = 1.95996; the approximation is good to ~2e-3.
        assert!((probit(0.975) - 1.959_964).abs() < 5e-3);
    }

    #[test]
    fn unknown_post_transform_is_an_error() {
        assert!(PostTransform::parse("SIGMOID").is_err());
        assert!(PostTransform::from_code(7).is_err());
    }
}
