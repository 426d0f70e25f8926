//! Random generators: RandomNormal, RandomUniform, RandomNormalLike, RandomUniformLike, Bernoulli,
//! Multinomial. A node with a `seed` attribute owns a generator seeded from it (its sequence of
//! runs is reproducible); without one each run draws a fresh seed from a process-wide source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use kiln_tensor::{DType, Shape, Tensor, Value, ValueType};

use super::signal::from_f64;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("RandomNormal", 1, |n| build_random(n, Dist::normal(n)?, false));
    r.add("RandomUniform", 1, |n| build_random(n, Dist::uniform(n)?, false));
    r.add("RandomNormalLike", 1, |n| build_random(n, Dist::normal(n)?, true));
    r.add("RandomUniformLike", 1, |n| build_random(n, Dist::uniform(n)?, true));
    r.add("Bernoulli", 15, build_bernoulli);
    r.add("Multinomial", 7, build_multinomial);
}

/// splitmix64 step: used to expand seeds.
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** generator.
pub(crate) struct Rng {
    s: [u64; 4],
    /// Second value of the last Box–Muller pair, not yet returned.
    spare_normal: Option<f64>,
}

impl Rng {
    pub(crate) fn from_seed(seed: u64) -> Rng {
        let mut x = seed;
        let s = [splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x)];
        Rng { s, spare_normal: None }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        // 1 - u lies in (0, 1], so the log is finite.
        let r = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * self.uniform();
        self.spare_normal = Some(r * theta.sin());
        r * theta.cos()
    }
}

/// A fresh seed from the process-wide source: a per-process random base mixed with a counter.
fn global_seed() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        h.write_u64(nanos);
        h.finish()
    });
    let mut x = base ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    splitmix64(&mut x)
}

/// Where a node's random numbers come from.
enum Source {
    Seeded(Mutex<Rng>),
    Global,
}

impl Source {
    fn from_node(n: &NodeInfo) -> OpResult<Source> {
        Ok(match n.attr_float("seed")? {
            Some(s) => Source::Seeded(Mutex::new(Rng::from_seed((s as f64).to_bits()))),
            None => Source::Global,
        })
    }
    fn with<R>(&self, f: impl FnOnce(&mut Rng) -> R) -> R {
        match self {
            Source::Seeded(m) => {
                let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut g)
            }
            Source::Global => f(&mut Rng::from_seed(global_seed())),
        }
    }
}

/// Reads an optional dtype attribute.
fn dtype_attr(n: &NodeInfo, name: &str) -> OpResult<Option<DType>> {
    match n.attr_int(name)? {
        None => Ok(None),
        Some(code) => i32::try_from(code)
            .ok()
            .and_then(DType::from_onnx)
            .map(Some)
            .ok_or_else(|| OpError(format!("{name} {code} is not a supported data type"))),
    }
}

fn check_float_out(dt: DType) -> OpResult<DType> {
    ensure!(dt.is_float(), "random values can only be produced as float types, not {dt}");
    Ok(dt)
}

#[derive(Clone, Copy, Debug)]
enum Dist {
    Normal { mean: f64, scale: f64 },
    Uniform { low: f64, high: f64 },
}

impl Dist {
    fn normal(n: &NodeInfo) -> OpResult<Dist> {
        Ok(Dist::Normal { mean: n.attr_float_or("mean", 0.0)? as f64, scale: n.attr_float_or("scale", 1.0)? as f64 })
    }
    fn uniform(n: &NodeInfo) -> OpResult<Dist> {
        let low = n.attr_float_or("low", 0.0)? as f64;
        let high = n.attr_float_or("high", 1.0)? as f64;
        if low.is_nan() || high.is_nan() || low > high {
            bail!("need low <= high, got low {low} and high {high}");
        }
        Ok(Dist::Uniform { low, high })
    }
    fn sample(&self, rng: &mut Rng, count: usize) -> Vec<f64> {
        match *self {
            Dist::Normal { mean, scale } => (0..count).map(|_| mean + scale * rng.normal()).collect(),
            Dist::Uniform { low, high } => (0..count).map(|_| low + (high - low) * rng.uniform()).collect(),
        }
    }
}

/// RandomNormal/RandomUniform (fixed shape) and their *Like variants (shape of the input).
struct RandomOp {
    dist: Dist,
    /// Output shape (None: the input's shape).
    shape: Option<Vec<usize>>,
    /// Output dtype (None: the input's dtype).
    dtype: Option<DType>,
    src: Source,
}

fn build_random(n: &NodeInfo, dist: Dist, like: bool) -> OpResult<Box<dyn Op>> {
    let src = Source::from_node(n)?;
    if like {
        let dtype = dtype_attr(n, "dtype")?.map(check_float_out).transpose()?;
        return Ok(Box::new(RandomOp { dist, shape: None, dtype, src }));
    }
    let dims = n.attr_ints("shape")?.ok_or_else(|| OpError::new("the 'shape' attribute is required"))?;
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| OpError(format!("shape dims must be non-negative, got {dims:?}"))))
        .collect::<OpResult<Vec<usize>>>()?;
    kiln_tensor::checked_numel(&shape)?;
    let dtype = check_float_out(dtype_attr(n, "dtype")?.unwrap_or(DType::F32))?;
    Ok(Box::new(RandomOp { dist, shape: Some(shape), dtype: Some(dtype), src }))
}

impl Op for RandomOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (shape, dtype) = match &self.shape {
            Some(s) => (s.clone(), self.dtype.unwrap_or(DType::F32)),
            None => {
                let x = inputs.tensor(0)?;
                (x.shape().to_vec(), check_float_out(self.dtype.unwrap_or(x.dtype()))?)
            }
        };
        let count = kiln_tensor::checked_numel(&shape)?;
        let v = self.src.with(|rng| self.dist.sample(rng, count));
        Ok(vec![Value::Tensor(Tensor::new(shape, from_f64(v, dtype)?)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        match &self.shape {
            Some(s) => Some(vec![ValueType::Tensor { dtype: self.dtype?, shape: Some(Shape::fixed(s)) }]),
            None => match inputs.first().copied().flatten()? {
                ValueType::Tensor { dtype, shape } => {
                    let dt = self.dtype.unwrap_or(*dtype);
                    dt.is_float().then(|| vec![ValueType::Tensor { dtype: dt, shape: shape.clone() }])
                }
                _ => None,
            },
        }
    }
    fn is_deterministic(&self) -> bool {
        false
    }
}

struct BernoulliOp {
    dtype: Option<DType>,
    src: Source,
}

fn build_bernoulli(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let dtype = dtype_attr(n, "dtype")?;
    if let Some(dt) = dtype {
        ensure!(dt != DType::String, "Bernoulli cannot produce string tensors");
    }
    Ok(Box::new(BernoulliOp { dtype, src: Source::from_node(n)? }))
}

impl Op for BernoulliOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        ensure!(x.dtype().is_float(), "Bernoulli needs float probabilities, got {}", x.dtype());
        let p = x.to_f64_vec()?;
        if let Some(bad) = p.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            bail!("Bernoulli probabilities must lie in [0, 1], got {bad}");
        }
        let draws = self.src.with(|rng| p.iter().map(|&p| if rng.uniform() < p { 1.0 } else { 0.0 }).collect());
        let dtype = self.dtype.unwrap_or(x.dtype());
        Ok(vec![Value::Tensor(Tensor::new(x.shape().to_vec(), from_f64(draws, dtype)?)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        match inputs.first().copied().flatten()? {
            ValueType::Tensor { dtype, shape } => {
                Some(vec![ValueType::Tensor { dtype: self.dtype.unwrap_or(*dtype), shape: shape.clone() }])
            }
            _ => None,
        }
    }
    fn is_deterministic(&self) -> bool {
        false
    }
}

struct MultinomialOp {
    dtype: DType,
    sample_size: usize,
    src: Source,
}

fn build_multinomial(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let dtype = dtype_attr(n, "dtype")?.unwrap_or(DType::I32);
    ensure!(matches!(dtype, DType::I32 | DType::I64), "Multinomial output must be int32 or int64, not {dtype}");
    let s = n.attr_int_or("sample_size", 1)?;
    ensure!(s >= 0, "sample_size must be non-negative, got {s}");
    Ok(Box::new(MultinomialOp { dtype, sample_size: s as usize, src: Source::from_node(n)? }))
}

/// Draws `count` class indices from the softmax of one row of logits.
fn sample_row(logits: &[f64], count: usize, rng: &mut Rng, cdf: &mut Vec<f64>, out: &mut Vec<f64>) -> OpResult<()> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    ensure!(max.is_finite(), "Multinomial logits must contain a finite maximum (got {max})");
    cdf.clear();
    let mut acc = 0.0;
    for &l in logits {
        ensure!(!l.is_nan(), "Multinomial logits contain NaN");
        acc += (l - max).exp();
        cdf.push(acc);
    }
    for _ in 0..count {
        let u = rng.uniform() * acc;
        // First class whose cumulative weight exceeds u.
        let k = cdf.partition_point(|&c| c <= u).min(logits.len() - 1);
        out.push(k as f64);
    }
    Ok(())
}

impl Op for MultinomialOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        ensure!(x.dtype().is_float(), "Multinomial needs float logits, got {}", x.dtype());
        ensure!(x.rank() == 2, "Multinomial input must be [batch_size, class_size], got {:?}", x.shape());
        let (batch, classes) = (x.shape()[0], x.shape()[1]);
        let shape = vec![batch, self.sample_size];
        let total = kiln_tensor::checked_numel(&shape)?;
        ensure!(classes > 0 || total == 0, "Multinomial needs at least one class");
        let logits = x.to_f64_vec()?;
        let mut out = Vec::with_capacity(total);
        if total > 0 {
            self.src.with(|rng| {
                let mut cdf = Vec::with_capacity(classes);
                logits
                    .chunks(classes)
                    .try_for_each(|row| sample_row(row, self.sample_size, rng, &mut cdf, &mut out))
            })?;
        }
        Ok(vec![Value::Tensor(Tensor::new(shape, from_f64(out, self.dtype)?)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let batch = match inputs.first().copied().flatten()? {
            ValueType::Tensor { shape: Some(s), .. } if s.rank() == 2 => s.0[0].clone(),
            _ => return None,
        };
        let dims = vec![batch, kiln_tensor::Dim::Fixed(self.sample_size)];
        Some(vec![ValueType::Tensor { dtype: self.dtype, shape: Some(Shape(dims)) }])
    }
    fn is_deterministic(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &dyn Op, input: Option<Tensor>) -> Tensor {
        let v = input.map(Value::Tensor);
        let vals = [v.as_ref()];
        let n = if v.is_some() { 1 } else { 0 };
        let out = op.run(&Inputs::new(&vals[..n])).unwrap();
        out.into_iter().next().unwrap().into_tensor().unwrap()
    }

    fn seeded(seed: f64) -> Source {
        Source::Seeded(Mutex::new(Rng::from_seed(seed.to_bits())))
    }

    fn mean_var(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (m, v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n)
    }

    #[test]
    fn normal_mean_and_variance() {
        let op = RandomOp {
            dist: Dist::Normal { mean: 3.0, scale: 2.0 },
            shape: Some(vec![200, 500]),
            dtype: Some(DType::F64),
            src: Source::Global,
        };
        let t = run(&op, None);
        assert_eq!(t.shape(), &[200, 500]);
        let (m, v) = mean_var(t.as_slice::<f64>().unwrap());
        // Standard error of the mean is 2/sqrt(1e5) ≈ 0.0063; of the variance ≈ 4·sqrt(2/1e5) ≈ 0.018.
        assert!((m - 3.0).abs() < 0.04, "mean {m}");
        assert!((v - 4.0).abs() < 0.1, "variance {v}");
    }

    #[test]
    fn uniform_range_and_mean() {
        let op = RandomOp {
            dist: Dist::Uniform { low: -2.0, high: 6.0 },
            shape: Some(vec![100_000]),
            dtype: Some(DType::F32),
            src: Source::Global,
        };
        let t = run(&op, None);
        let v: Vec<f64> = t.to_f64_vec().unwrap();
        assert!(v.iter().all(|&x| (-2.0..=6.0).contains(&x)));
        let (m, var) = mean_var(&v);
        assert!((m - 2.0).abs() < 0.05, "mean {m}");
        // Variance of U(a, b) is (b - a)²/12 = 64/12.
        assert!((var - 64.0 / 12.0).abs() < 0.1, "variance {var}");
    }

    #[test]
    fn seed_makes_runs_reproducible() {
        let mk = || RandomOp {
            dist: Dist::Uniform { low: 0.0, high: 1.0 },
            shape: Some(vec![16]),
            dtype: Some(DType::F32),
            src: seeded(5.0),
        };
        let (a, b) = (mk(), mk());
        let (a1, b1) = (run(&a, None), run(&b, None));
        assert_eq!(a1, b1);
        // Successive runs of one node continue the sequence.
        assert_ne!(run(&a, None), a1);
        let c = RandomOp { src: seeded(6.0), ..mk() };
        assert_ne!(run(&c, None), a1);
    }

    #[test]
    fn like_variants_take_shape_and_dtype() {
        let x = Tensor::from_vec(vec![2, 3], vec![1i64; 6]).unwrap();
        let op = RandomOp {
            dist: Dist::Normal { mean: 0.0, scale: 1.0 },
            shape: None,
            dtype: Some(DType::F16),
            src: Source::Global,
        };
        let t = run(&op, Some(x.clone()));
        assert_eq!((t.shape(), t.dtype()), (&[2usize, 3][..], DType::F16));
        // Without dtype the input's dtype is used; it must be a float type.
        let op = RandomOp { dtype: None, ..op };
        let v = Value::Tensor(x);
        assert!(op.run(&Inputs::new(&[Some(&v)])).is_err());
        let xf = Tensor::from_vec(vec![4], vec![0f64; 4]).unwrap();
        let t = run(&op, Some(xf));
        assert_eq!((t.shape(), t.dtype()), (&[4usize][..], DType::F64));
    }

    #[test]
    fn bernoulli_frequencies_follow_probabilities() {
        let probs = [0.0, 0.1, 0.5, 0.9, 1.0];
        let n = 20_000;
        let p: Vec<f32> = (0..n).flat_map(|_| probs.iter().map(|&x| x as f32)).collect();
        let x = Tensor::from_vec(vec![n, probs.len()], p).unwrap();
        let op = BernoulliOp { dtype: Some(DType::Bool), src: seeded(1.0) };
        let t = run(&op, Some(x.clone()));
        assert_eq!((t.shape(), t.dtype()), (&[n, 5usize][..], DType::Bool));
        let b = t.as_slice::<bool>().unwrap();
        for (j, &pj) in probs.iter().enumerate() {
            let freq = (0..n).filter(|&i| b[i * 5 + j]).count() as f64 / n as f64;
            assert!((freq - pj).abs() < 0.015, "p={pj} freq={freq}");
        }
        // Default output dtype is the input's.
        let op = BernoulliOp { dtype: None, src: Source::Global };
        assert_eq!(run(&op, Some(x)).dtype(), DType::F32);
        let bad = Value::Tensor(Tensor::from_vec(vec![1], vec![1.5f32]).unwrap());
        assert!(op.run(&Inputs::new(&[Some(&bad)])).is_err());
    }

    #[test]
    fn multinomial_frequencies_follow_softmax() {
        // Logits ln(1), ln(2), ln(3), ln(4) → probabilities 0.1, 0.2, 0.3, 0.4; second row picks class 2.
        let logits: Vec<f32> = vec![
            0.0,
            2f32.ln(),
            3f32.ln(),
            4f32.ln(),
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            5.0,
            f32::NEG_INFINITY,
        ];
        let x = Tensor::from_vec(vec![2, 4], logits).unwrap();
        let n = 40_000;
        let op = MultinomialOp { dtype: DType::I64, sample_size: n, src: seeded(3.0) };
        let t = run(&op, Some(x));
        assert_eq!((t.shape(), t.dtype()), (&[2usize, n][..], DType::I64));
        let s = t.as_slice::<i64>().unwrap();
        for (k, want) in [0.1, 0.2, 0.3, 0.4].iter().enumerate() {
            let freq = s[..n].iter().filter(|&&c| c == k as i64).count() as f64 / n as f64;
            assert!((freq - want).abs() < 0.01, "class {k}: {freq} vs {want}");
        }
        assert!(s[n..].iter().all(|&c| c == 2));
    }

    #[test]
    fn multinomial_default_dtype_and_bad_rank() {
        let op = MultinomialOp { dtype: DType::I32, sample_size: 3, src: Source::Global };
        let t = run(&op, Some(Tensor::from_vec(vec![1, 2], vec![0f64, 0.0]).unwrap()));
        assert_eq!((t.shape(), t.dtype()), (&[1usize, 3][..], DType::I32));
        let v = Value::Tensor(Tensor::from_vec(vec![2], vec![0f32, 0.0]).unwrap());
        assert!(op.run(&Inputs::new(&[Some(&v)])).is_err());
    }
}
