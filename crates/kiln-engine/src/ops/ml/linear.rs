//! Linear and kernel models: LinearClassifier, LinearRegressor, SVMClassifier, SVMRegressor,
//! with onnxruntime's label and score conventions (binary single-score models, votes, Platt
//! probabilities).

use kiln_tensor::{DType, Dim, Shape, Tensor, Value, ValueType};

use super::{probit, rows_cols, second_class, to_f32, transform_row, PostTransform};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

#[derive(Clone)]
enum Labels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Labels {
    fn from_attrs(n: &NodeInfo, ints_name: &str) -> OpResult<Option<Labels>> {
        if let Some(s) = n.attr_strings("classlabels_strings")? {
            if !s.is_empty() {
                return Ok(Some(Labels::Str(s)));
            }
        }
        if let Some(i) = n.attr_ints(ints_name)? {
            if !i.is_empty() {
                return Ok(Some(Labels::Int(i)));
            }
        }
        Ok(None)
    }
    fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }
    fn dtype(&self) -> DType {
        match self {
            Labels::Int(_) => DType::I64,
            Labels::Str(_) => DType::String,
        }
    }
}

/// A label choice: an index into the class labels, or the literal positive/negative label
/// ("1"/"0" or 1/0) onnxruntime uses when the labels do not say.
#[derive(Clone, Copy)]
enum Pick {
    Index(usize),
    Literal(bool),
}

fn labels_tensor(labels: &Labels, picks: &[Pick]) -> OpResult<Tensor> {
    let n = picks.len();
    Ok(match labels {
        Labels::Int(l) => {
            let mut v = Vec::with_capacity(n);
            for p in picks {
                v.push(match *p {
                    Pick::Index(i) => *l.get(i).ok_or_else(|| OpError(format!("class index {i} has no label")))?,
                    Pick::Literal(b) => b as i64,
                });
            }
            Tensor::from_vec(vec![n], v)?
        }
        Labels::Str(l) => {
            let mut v = Vec::with_capacity(n);
            for p in picks {
                v.push(match *p {
                    Pick::Index(i) => l.get(i).ok_or_else(|| OpError(format!("class index {i} has no label")))?.clone(),
                    Pick::Literal(b) => if b { "1" } else { "0" }.to_string(),
                });
            }
            Tensor::from_vec(vec![n], v)?
        }
    })
}

fn batch_dim(inputs: &[Option<&ValueType>]) -> Dim {
    match inputs.first().copied().flatten().and_then(|t| t.tensor_shape()) {
        Some(s) if s.rank() == 1 => Dim::Fixed(1),
        Some(s) if s.rank() >= 2 => s.0[0].clone(),
        _ => Dim::unknown(),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

// ---------------------------------------------------------------------------------------------
// LinearClassifier

struct LinearClassifier {
    coef: Vec<f32>,
    intercepts: Vec<f32>,
    classes: usize,
    labels: Labels,
    pt: PostTransform,
}

pub(crate) fn build_linear_classifier(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let pt = PostTransform::from_attr(n)?;
    let coef = n.attr_floats("coefficients")?.ok_or_else(|| OpError::new("coefficients is required"))?;
    ensure!(!coef.is_empty(), "coefficients is empty");
    let intercepts = n.attr_floats("intercepts")?.unwrap_or_default();
    let labels = Labels::from_attrs(n, "classlabels_ints")?
        .ok_or_else(|| OpError::new("one of classlabels_strings or classlabels_ints is required"))?;
    let classes = if !intercepts.is_empty() { intercepts.len() } else if coef.len() % labels.len() == 0 { labels.len() } else { 1 };
    ensure!(coef.len() % classes == 0, "coefficients ({}) is not a multiple of the class count {classes}", coef.len());
    Ok(Box::new(LinearClassifier { coef, intercepts, classes, labels, pt }))
}

impl Op for LinearClassifier {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let rc = rows_cols(x)?;
        let xv = to_f32(x)?;
        let c = self.classes;
        let f = self.coef.len() / c;
        ensure!(rc.cols == f, "X has {} features, the model expects {f}", rc.cols);
        let mut scores = vec![0f32; rc.rows * c];
        for r in 0..rc.rows {
            let xr = &xv[r * f..(r + 1) * f];
            for k in 0..c {
                scores[r * c + k] = dot(xr, &self.coef[k * f..(k + 1) * f]) + self.intercepts.get(k).copied().unwrap_or(0.0);
            }
        }
        let mut picks = Vec::with_capacity(rc.rows);
        if c == 1 {
            let two = self.labels.len() == 2;
            for &s in &scores {
                picks.push(if two { Pick::Index((s > 0.0) as usize) } else { Pick::Literal(s > 0.0) });
            }
        } else {
            for r in 0..rc.rows {
                let row = &scores[r * c..(r + 1) * c];
                let mut best = 0;
                for k in 1..c {
                    if row[k] > row[best] {
                        best = k;
                    }
                }
                picks.push(Pick::Index(best));
            }
        }
        let add_second = c == 1 && self.labels.len() == 2;
        let z = if add_second {
            let mut z = Vec::with_capacity(rc.rows * 2);
            for &s in &scores {
                if self.pt == PostTransform::Probit {
                    z.extend_from_slice(&[probit(s), 0.0]);
                } else {
                    z.extend_from_slice(&second_class(s, 1, self.pt));
                }
            }
            Tensor::from_vec(vec![rc.rows, 2], z)?
        } else {
            if c == 1 {
                if self.pt == PostTransform::Probit {
                    scores.iter_mut().for_each(|s| *s = probit(*s));
                }
            } else {
                scores.chunks_mut(c).for_each(|row| transform_row(row, self.pt));
            }
            Tensor::from_vec(vec![rc.rows, c], scores)?
        };
        Ok(vec![labels_tensor(&self.labels, &picks)?.into(), z.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let b = batch_dim(inputs);
        let w = if self.classes == 1 && self.labels.len() == 2 { 2 } else { self.classes };
        Some(vec![
            ValueType::tensor(self.labels.dtype(), Some(Shape(vec![b.clone()]))),
            ValueType::tensor(DType::F32, Some(Shape(vec![b, Dim::Fixed(w)]))),
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// LinearRegressor

struct LinearRegressor {
    coef: Vec<f32>,
    intercepts: Option<Vec<f32>>,
    targets: usize,
    pt: PostTransform,
}

pub(crate) fn build_linear_regressor(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let pt = PostTransform::from_attr(n)?;
    let targets = n.attr_int_or("targets", 1)?;
    ensure!(targets > 0, "targets must be positive, got {targets}");
    let targets = targets as usize;
    let coef = n.attr_floats("coefficients")?.ok_or_else(|| OpError::new("coefficients is required"))?;
    ensure!(!coef.is_empty() && coef.len() % targets == 0, "coefficients ({}) is not a multiple of targets {targets}", coef.len());
    let intercepts = n.attr_floats("intercepts")?.filter(|v| v.len() == targets);
    Ok(Box::new(LinearRegressor { coef, intercepts, targets, pt }))
}

impl Op for LinearRegressor {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let rc = rows_cols(x)?;
        let xv = to_f32(x)?;
        let t = self.targets;
        let f = self.coef.len() / t;
        ensure!(rc.cols == f, "X has {} features, the model expects {f}", rc.cols);
        let mut out = vec![0f32; rc.rows * t];
        for r in 0..rc.rows {
            let xr = &xv[r * f..(r + 1) * f];
            for k in 0..t {
                let b = self.intercepts.as_ref().map(|v| v[k]).unwrap_or(0.0);
                out[r * t + k] = dot(xr, &self.coef[k * f..(k + 1) * f]) + b;
            }
        }
        if t == 1 {
            if self.pt == PostTransform::Probit {
                out.iter_mut().for_each(|s| *s = probit(*s));
            }
        } else {
            out.chunks_mut(t).for_each(|row| transform_row(row, self.pt));
        }
        Ok(vec![Tensor::from_vec(vec![rc.rows, t], out)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![ValueType::tensor(DType::F32, Some(Shape(vec![batch_dim(inputs), Dim::Fixed(self.targets)])))])
    }
}

// ---------------------------------------------------------------------------------------------
// SVM kernels

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kernel {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

#[derive(Clone, Copy, Debug)]
struct KernelFn {
    kind: Kernel,
    gamma: f32,
    coef0: f32,
    degree: f32,
}

impl KernelFn {
    fn from_attrs(n: &NodeInfo) -> OpResult<KernelFn> {
        let kind = match n.attr_string_or("kernel_type", "LINEAR")?.as_str() {
            "LINEAR" => Kernel::Linear,
            "POLY" => Kernel::Poly,
            "RBF" => Kernel::Rbf,
            "SIGMOID" => Kernel::Sigmoid,
            other => bail!("unknown kernel_type '{other}'"),
        };
        let p = n.attr_floats("kernel_params")?.unwrap_or_default();
        let (gamma, coef0, degree) = match p.len() {
            0 => (0.0, 0.0, 0.0),
            3 => (p[0], p[1], p[2]),
            k => bail!("kernel_params must have 3 values (gamma, coef0, degree), got {k}"),
        };
        Ok(KernelFn { kind, gamma, coef0, degree })
    }
    /// The kernel between x and v; `c` is the constant a LINEAR kernel adds.
    fn eval(&self, x: &[f32], v: &[f32], c: f32) -> f32 {
        match self.kind {
            Kernel::Rbf => {
                let mut s = 0f32;
                for (a, b) in x.iter().zip(v) {
                    let d = a - b;
                    s += d * d;
                }
                (-self.gamma * s).exp()
            }
            Kernel::Linear => dot(x, v) + c,
            Kernel::Poly => {
                let b = self.gamma * dot(x, v) + self.coef0;
                if self.degree == 2.0 {
                    b * b
                } else if self.degree == 3.0 {
                    b * b * b
                } else {
                    b.powf(self.degree)
                }
            }
            Kernel::Sigmoid => (self.gamma * dot(x, v) + self.coef0).tanh(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SVMClassifier

struct SvmClassifier {
    kernel: KernelFn,
    /// Support vectors (SVC mode) or per-class coefficient rows (linear mode), row-major.
    vectors: Vec<f32>,
    features: usize,
    svc: bool,
    vectors_per_class: Vec<usize>,
    starts: Vec<usize>,
    coef: Vec<f32>,
    rho: Vec<f32>,
    prob_a: Vec<f32>,
    prob_b: Vec<f32>,
    labels: Labels,
    classes: usize,
    all_positive: bool,
    pt: PostTransform,
}

pub(crate) fn build_svm_classifier(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let pt = PostTransform::from_attr(n)?;
    let mut kernel = KernelFn::from_attrs(n)?;
    let vpc: Vec<i64> = n.attr_ints("vectors_per_class")?.unwrap_or_default();
    let sv = n.attr_floats("support_vectors")?.unwrap_or_default();
    let coef = n.attr_floats("coefficients")?.ok_or_else(|| OpError::new("coefficients is required"))?;
    ensure!(!coef.is_empty(), "coefficients is empty");
    let rho = n.attr_floats("rho")?.ok_or_else(|| OpError::new("rho is required"))?;
    let prob_a = n.attr_floats("prob_a")?.unwrap_or_default();
    let prob_b = n.attr_floats("prob_b")?.unwrap_or_default();
    ensure!(prob_a.len() == prob_b.len(), "prob_a and prob_b must have the same length");
    let labels = Labels::from_attrs(n, "classlabels_ints")?
        .ok_or_else(|| OpError::new("one of classlabels_strings or classlabels_ints is required"))?;
    let classes = labels.len();
    ensure!(classes >= 1, "at least one class label is required");
    let mut starts = Vec::with_capacity(vpc.len());
    let mut total = 0usize;
    for &v in &vpc {
        ensure!(v >= 0, "vectors_per_class has a negative entry {v}");
        starts.push(total);
        total += v as usize;
    }
    let vectors_per_class: Vec<usize> = vpc.iter().map(|&v| v as usize).collect();
    let all_positive = coef.iter().all(|&c| c >= 0.0);
    let pairs = classes * (classes - 1) / 2;
    let (svc, vectors, features) = if total > 0 {
        ensure!(sv.len() % total == 0, "support_vectors ({}) is not a multiple of the {total} vectors", sv.len());
        ensure!(vectors_per_class.len() == classes, "vectors_per_class has {} entries for {classes} classes", vectors_per_class.len());
        ensure!(coef.len() >= (classes - 1) * total, "coefficients has {} values, expected {}", coef.len(), (classes - 1) * total);
        ensure!(rho.len() >= pairs, "rho has {} values, expected {pairs}", rho.len());
        ensure!(prob_a.is_empty() || prob_a.len() >= pairs, "prob_a has {} values, expected {pairs}", prob_a.len());
        (true, sv.clone(), sv.len() / total)
    } else {
        ensure!(coef.len() % classes == 0, "coefficients ({}) is not a multiple of the {classes} classes", coef.len());
        ensure!(!rho.is_empty(), "rho must have at least one value");
        kernel.kind = Kernel::Linear;
        (false, coef.clone(), coef.len() / classes)
    };
    Ok(Box::new(SvmClassifier {
        kernel,
        vectors,
        features,
        svc,
        vectors_per_class,
        starts,
        coef,
        rho,
        prob_a,
        prob_b,
        labels,
        classes,
        all_positive,
        pt,
    }))
}

fn sigmoid_probability(score: f32, a: f32, b: f32) -> f32 {
    1.0 - super::logistic(score * a + b)
}

/// Pairwise-coupling probabilities (libsvm's multiclass_probability, as onnxruntime computes it).
fn multiclass_probability(k: usize, r: &[f32], p: &mut [f32]) {
    let mut q = vec![0f32; k * k];
    let mut qp = vec![0f32; k];
    let eps = 0.005 / k as f32;
    for i in 0..k {
        p[i] = 1.0 / k as f32;
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -r[j * k + i] * r[i * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0f32;
        for i in 0..k {
            qp[i] = 0.0;
            for j in 0..k {
                qp[i] += q[i * k + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let mut max_error = 0f32;
        for &v in qp.iter() {
            let e = (v - pqp).abs();
            if e > max_error {
                max_error = e;
            }
        }
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
}

impl SvmClassifier {
    fn out_width(&self) -> usize {
        let pairs = self.classes * (self.classes - 1) / 2;
        if self.svc && self.prob_a.is_empty() {
            if self.classes > 2 {
                pairs
            } else {
                2
            }
        } else {
            self.classes
        }
    }
}

impl Op for SvmClassifier {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let rc = rows_cols(x)?;
        let xv = to_f32(x)?;
        let f = self.features;
        ensure!(rc.cols == f, "X has {} features, the model expects {f}", rc.cols);
        let c = self.classes;
        let pairs = c * (c - 1) / 2;
        let have_proba = !self.prob_a.is_empty();
        let width = self.out_width();
        let mut z = vec![0f32; rc.rows * width];
        let mut picks = Vec::with_capacity(rc.rows);
        let nvec = self.vectors.len() / f.max(1);
        let mut kern = vec![0f32; nvec];
        let mut pair_scores = vec![0f32; pairs];
        let mut votes = vec![0i64; c];
        let mut probsp2 = vec![0f32; c * c];
        let write_additional = if self.svc && !have_proba && c <= 2 {
            if self.pt == PostTransform::None {
                2
            } else {
                0
            }
        } else {
            -1
        };
        for r in 0..rc.rows {
            let xr = &xv[r * f..(r + 1) * f];
            let zr = &mut z[r * width..(r + 1) * width];
            let (maxclass, max_weight, nscores);
            if !self.svc {
                for k in 0..c {
                    zr[k] = self.kernel.eval(xr, &self.vectors[k * f..(k + 1) * f], self.rho[0]);
                }
                let mut best = 0;
                for k in 1..c {
                    if zr[k] > zr[best] {
                        best = k;
                    }
                }
                maxclass = best;
                max_weight = zr[best];
                nscores = c;
            } else {
                for v in 0..nvec {
                    kern[v] = self.kernel.eval(xr, &self.vectors[v * f..(v + 1) * f], 0.0);
                }
                votes.iter_mut().for_each(|v| *v = 0);
                let mut idx = 0;
                for i in 0..c.saturating_sub(1) {
                    let (si, ni) = (self.starts[i], self.vectors_per_class[i]);
                    for j in i + 1..c {
                        let (sj, nj) = (self.starts[j], self.vectors_per_class[j]);
                        let mut sum = 0f64;
                        for m in 0..ni {
                            sum += (self.coef[(j - 1) * nvec + si + m] * kern[si + m]) as f64;
                        }
                        for m in 0..nj {
                            sum += (self.coef[i * nvec + sj + m] * kern[sj + m]) as f64;
                        }
                        sum += self.rho[idx] as f64;
                        pair_scores[idx] = sum as f32;
                        votes[if sum > 0.0 { i } else { j }] += 1;
                        idx += 1;
                    }
                }
                if have_proba {
                    probsp2.iter_mut().for_each(|v| *v = 0.0);
                    let mut index = 0;
                    for i in 0..c - 1 {
                        let mut p1 = i * c + i + 1;
                        let mut p2 = (i + 1) * c + i;
                        for _j in i + 1..c {
                            let v1 = sigmoid_probability(pair_scores[index], self.prob_a[index], self.prob_b[index]);
                            let v2 = v1.max(1.0e-7).min(1.0 - 1.0e-7);
                            probsp2[p1] = v2;
                            probsp2[p2] = 1.0 - v2;
                            p1 += 1;
                            p2 += c;
                            index += 1;
                        }
                    }
                    multiclass_probability(c, &probsp2, &mut zr[..c]);
                    nscores = c;
                } else {
                    zr[..pairs].copy_from_slice(&pair_scores);
                    nscores = pairs;
                }
                let mut best = 0;
                for k in 1..c {
                    if votes[k] > votes[best] {
                        best = k;
                    }
                }
                maxclass = best;
                max_weight = 0.0;
            }
            picks.push(if pairs == 1 {
                if !have_proba {
                    if (self.all_positive && max_weight >= 0.5) || (max_weight > 0.0 && !self.all_positive) {
                        Pick::Index(1)
                    } else {
                        Pick::Index(maxclass)
                    }
                } else {
                    Pick::Index(maxclass)
                }
            } else {
                Pick::Index(maxclass)
            });
            if nscores > 1 {
                transform_row(&mut zr[..nscores], self.pt);
            } else if nscores == 1 {
                if self.pt == PostTransform::Probit {
                    zr[0] = probit(zr[0]);
                } else if write_additional >= 0 {
                    let pair = second_class(zr[0], write_additional, self.pt);
                    zr[..2].copy_from_slice(&pair);
                }
            }
        }
        Ok(vec![labels_tensor(&self.labels, &picks)?.into(), Tensor::from_vec(vec![rc.rows, width], z)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let b = batch_dim(inputs);
        Some(vec![
            ValueType::tensor(self.labels.dtype(), Some(Shape(vec![b.clone()]))),
            ValueType::tensor(DType::F32, Some(Shape(vec![b, Dim::Fixed(self.out_width())]))),
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// SVMRegressor

struct SvmRegressor {
    kernel: KernelFn,
    vectors: Vec<f32>,
    coef: Vec<f32>,
    features: usize,
    svc: bool,
    rho: f32,
    one_class: bool,
}

pub(crate) fn build_svm_regressor(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    PostTransform::from_attr(n)?;
    let mut kernel = KernelFn::from_attrs(n)?;
    let n_supports = n.attr_int_or("n_supports", 0)?;
    ensure!(n_supports >= 0, "n_supports must not be negative");
    let sv = n.attr_floats("support_vectors")?.unwrap_or_default();
    let coef = n.attr_floats("coefficients")?.ok_or_else(|| OpError::new("coefficients is required"))?;
    let rho = n.attr_floats("rho")?.unwrap_or_default();
    ensure!(!rho.is_empty(), "rho must have one value");
    let one_class = n.attr_int_or("one_class", 0)? != 0;
    let (svc, vectors, features) = if n_supports > 0 {
        let ns = n_supports as usize;
        ensure!(sv.len() % ns == 0, "support_vectors ({}) is not a multiple of n_supports {ns}", sv.len());
        ensure!(coef.len() >= ns, "coefficients has {} values for {ns} support vectors", coef.len());
        (true, sv.clone(), sv.len() / ns)
    } else {
        kernel.kind = Kernel::Linear;
        (false, coef.clone(), coef.len())
    };
    Ok(Box::new(SvmRegressor { kernel, vectors, coef, features, svc, rho: rho[0], one_class }))
}

impl Op for SvmRegressor {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let rc = rows_cols(x)?;
        let xv = to_f32(x)?;
        let f = self.features;
        ensure!(rc.cols == f, "X has {} features, the model expects {f}", rc.cols);
        let mut out = vec![0f32; rc.rows];
        for r in 0..rc.rows {
            let xr = &xv[r * f..(r + 1) * f];
            let mut y = if self.svc {
                let nvec = self.vectors.len() / f.max(1);
                let mut s = 0f32;
                for v in 0..nvec {
                    s += self.coef[v] * self.kernel.eval(xr, &self.vectors[v * f..(v + 1) * f], 0.0);
                }
                s + self.rho
            } else {
                self.kernel.eval(xr, &self.vectors, self.rho)
            };
            if self.one_class {
                y = if y > 0.0 { 1.0 } else { -1.0 };
            }
            out[r] = y;
        }
        Ok(vec![Tensor::from_vec(vec![rc.rows, 1], out)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![ValueType::tensor(DType::F32, Some(Shape(vec![batch_dim(inputs), Dim::Fixed(1)])))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_by_hand() {
        let k = KernelFn { kind: Kernel::Rbf, gamma: 0.5, coef0: 0.0, degree: 0.0 };
        // |(1,2)-(0,0)|^2 = 5 → exp(-2.5)
        assert!((k.eval(&[1.0, 2.0], &[0.0, 0.0], 0.0) - (-2.5f32).exp()).abs() < 1e-7);
        let p = KernelFn { kind: Kernel::Poly, gamma: 2.0, coef0: 1.0, degree: 3.0 };
        // (2 * (1*3 + 2*4) + 1)^3 = 23^3
        assert_eq!(p.eval(&[1.0, 2.0], &[3.0, 4.0], 0.0), 12167.0);
    }

    #[test]
    fn two_class_coupling_is_the_pair_probability() {
        let mut p = [0f32; 2];
        // r[0][1] = 0.8 (P(class 0) from the pair), r[1][0] = 0.2
        multiclass_probability(2, &[0.0, 0.8, 0.2, 0.0], &mut p);
        assert!((p[0] - 0.8).abs() < 1e-2 && (p[1] - 0.2).abs() < 1e-2, "{p:?}");
    }
}
