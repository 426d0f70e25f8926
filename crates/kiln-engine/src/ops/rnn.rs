//! Recurrent operators: LSTM, GRU and RNN (all directions, activations, clip, peepholes,
//! sequence_lens, initial states, both layouts). Single precision runs through [`fast`].

mod fast;

use std::borrow::Cow;
use std::ops::{Add, Mul, Neg, Sub};

use kiln_tensor::{bf16, f16, DType, Dim, Elem, Shape, Tensor, TensorData, Value, ValueType};

use crate::bail;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;

pub fn register(r: &mut Registry) {
    r.add("LSTM", 1, |n| build(n, Cell::Lstm));
    r.add("GRU", 1, |n| build(n, Cell::Gru));
    r.add("RNN", 1, |n| build(n, Cell::Rnn));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    Lstm,
    Gru,
    Rnn,
}

impl Cell {
    fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "LSTM",
            Cell::Gru => "GRU",
            Cell::Rnn => "RNN",
        }
    }
    /// Number of gate blocks in W/R.
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }
    /// Number of activation functions per direction.
    fn num_acts(self) -> usize {
        match self {
            Cell::Lstm => 3,
            Cell::Gru => 2,
            Cell::Rnn => 1,
        }
    }
    fn default_acts(self) -> &'static [&'static str] {
        match self {
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Rnn => &["Tanh"],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Float plumbing.

/// f32 or f64, with the GEMM of its precision.
trait Fl:
    Copy
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
    + Elem
{
    const ZERO: Self;
    const ONE: Self;
    fn of(x: f32) -> Self;
    fn of_f64(x: f64) -> Self;
    fn to_f32(self) -> f32;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn ln_1p(self) -> Self;
    fn abs(self) -> Self;
    fn div(self, o: Self) -> Self;
    /// xs[i] = sigmoid(xs[i]).
    fn sigmoid_slice(xs: &mut [Self]);
    /// xs[i] = tanh(xs[i]).
    fn tanh_slice(xs: &mut [Self]);
    /// Runs every direction of `op` (see [`run_dirs_generic`]).
    fn run_dirs(op: &RnnOp, a: &DirsIn<'_, Self>, h_all: &mut [Self], c_all: &mut [Self], y: &mut [Self]);
    /// C[m×n] = A[m×k]·B[k×n] + beta·C with strides.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize, k: usize, n: usize,
        a: &[Self], rsa: isize, csa: isize,
        b: &[Self], rsb: isize, csb: isize,
        beta: Self, c: &mut [Self], rsc: isize,
    );
}

macro_rules! impl_fl {
    ($t:ty, $gemm:path, $sig:path, $tanh:path, $dirs:path) => {
        impl Fl for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn of(x: f32) -> Self { x as $t }
            #[inline(always)]
            fn of_f64(x: f64) -> Self { x as $t }
            #[inline(always)]
            fn to_f32(self) -> f32 { self as f32 }
            #[inline(always)]
            fn exp(self) -> Self { <$t>::exp(self) }
            #[inline(always)]
            fn tanh(self) -> Self { <$t>::tanh(self) }
            #[inline(always)]
            fn ln_1p(self) -> Self { <$t>::ln_1p(self) }
            #[inline(always)]
            fn abs(self) -> Self { <$t>::abs(self) }
            #[inline(always)]
            fn div(self, o: Self) -> Self { self / o }
            fn sigmoid_slice(xs: &mut [Self]) { $sig(xs) }
            fn tanh_slice(xs: &mut [Self]) { $tanh(xs) }
            fn run_dirs(op: &RnnOp, a: &DirsIn<'_, Self>, h_all: &mut [Self], c_all: &mut [Self], y: &mut [Self]) {
                $dirs(op, a, h_all, c_all, y)
            }
            fn gemm(
                m: usize, k: usize, n: usize,
                a: &[Self], rsa: isize, csa: isize,
                b: &[Self], rsb: isize, csb: isize,
                beta: Self, c: &mut [Self], rsc: isize,
            ) {
                $gemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, 1);
            }
        }
    };
}
impl_fl!(f32, kiln_kernels::sgemm, kiln_kernels::vmath::sigmoid, kiln_kernels::vmath::tanh, run_dirs_f32);
impl_fl!(f64, kiln_kernels::dgemm, sigmoid_slice_scalar, tanh_slice_scalar, run_dirs_generic);

fn sigmoid_slice_scalar<F: Fl>(xs: &mut [F]) {
    xs.iter_mut().for_each(|x| *x = sigmoid(*x));
}

fn tanh_slice_scalar<F: Fl>(xs: &mut [F]) {
    xs.iter_mut().for_each(|x| *x = x.tanh());
}

fn run_dirs_f32(op: &RnnOp, a: &DirsIn<'_, f32>, h_all: &mut [f32], c_all: &mut [f32], y: &mut [f32]) {
    let run = fast::Run { d: a.d, x: a.x, w: a.w, r: a.r, b: a.b, lens: a.lens, peep: a.peep };
    fast::run_dirs(op, &run, h_all, c_all, y);
}

/// The elements of a float tensor in compute precision, owned.
fn load<F: Fl>(t: &Tensor, what: &str) -> OpResult<Vec<F>> {
    Ok(load_ref::<F>(t, what)?.into_owned())
}

/// The elements of a float tensor in compute precision (borrowed when the dtype already matches).
fn load_ref<'a, F: Fl>(t: &'a Tensor, what: &str) -> OpResult<Cow<'a, [F]>> {
    ensure_float(t, what)?;
    Ok(match F::slice(t.data()) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(t.to_f64_vec()?.into_iter().map(F::of_f64).collect()),
    })
}

fn ensure_float(t: &Tensor, what: &str) -> OpResult<()> {
    if !t.dtype().is_float() {
        bail!("{what} must be a float tensor, got {}", t.dtype());
    }
    Ok(())
}

/// Converts compute-precision results back to the model's dtype.
fn store<F: Fl>(v: Vec<F>, dtype: DType) -> OpResult<TensorData> {
    if dtype == F::DTYPE {
        return Ok(F::wrap(v));
    }
    let as_f32 = |x: F| x.to_f32();
    Ok(match dtype {
        DType::F16 => TensorData::F16(v.into_iter().map(|x| f16::from_f32(as_f32(x))).collect()),
        DType::BF16 => TensorData::BF16(v.into_iter().map(|x| bf16::from_f32(as_f32(x))).collect()),
        other => bail!("unsupported output dtype {other}"),
    })
}

// ---------------------------------------------------------------------------------------------
// Activations.

#[derive(Clone, Copy, Debug, PartialEq)]
enum ActKind {
    Relu,
    Tanh,
    Sigmoid,
    Affine,
    LeakyRelu,
    ThresholdedRelu,
    ScaledTanh,
    HardSigmoid,
    Elu,
    Softsign,
    Softplus,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Act {
    kind: ActKind,
    alpha: f32,
    beta: f32,
}

/// Parses activation names, taking alpha/beta values in order for the activations that use them.
fn parse_acts(names: &[String], alphas: &[f32], betas: &[f32]) -> OpResult<Vec<Act>> {
    let (mut ai, mut bi) = (0usize, 0usize);
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let (kind, da, db) = match name.to_ascii_lowercase().as_str() {
            "relu" => (ActKind::Relu, None, None),
            "tanh" => (ActKind::Tanh, None, None),
            "sigmoid" => (ActKind::Sigmoid, None, None),
            "affine" => (ActKind::Affine, Some(1.0), Some(0.0)),
            "leakyrelu" => (ActKind::LeakyRelu, Some(0.01), None),
            "thresholdedrelu" => (ActKind::ThresholdedRelu, Some(1.0), None),
            "scaledtanh" => (ActKind::ScaledTanh, Some(1.0), Some(1.0)),
            "hardsigmoid" => (ActKind::HardSigmoid, Some(0.2), Some(0.5)),
            "elu" => (ActKind::Elu, Some(1.0), None),
            "softsign" => (ActKind::Softsign, None, None),
            "softplus" => (ActKind::Softplus, None, None),
            _ => bail!("unsupported activation '{name}'"),
        };
        let take = |d: Option<f32>, list: &[f32], i: &mut usize| -> f32 {
            match d {
                None => 0.0,
                Some(d) => {
                    let v = list.get(*i).copied().unwrap_or(d);
                    *i += 1;
                    v
                }
            }
        };
        let alpha = take(da, alphas, &mut ai);
        let beta = take(db, betas, &mut bi);
        out.push(Act { kind, alpha, beta });
    }
    Ok(out)
}

impl Act {
    /// Applies the activation in place.
    fn apply<F: Fl>(&self, xs: &mut [F]) {
        let a = F::of(self.alpha);
        let b = F::of(self.beta);
        let (zero, one) = (F::ZERO, F::ONE);
        match self.kind {
            ActKind::Relu => xs.iter_mut().for_each(|x| *x = if *x > zero { *x } else { zero }),
            ActKind::Tanh => F::tanh_slice(xs),
            ActKind::Sigmoid => F::sigmoid_slice(xs),
            ActKind::Affine => xs.iter_mut().for_each(|x| *x = a * *x + b),
            ActKind::LeakyRelu => xs.iter_mut().for_each(|x| *x = if *x >= zero { *x } else { a * *x }),
            ActKind::ThresholdedRelu => xs.iter_mut().for_each(|x| *x = if *x > a { *x } else { zero }),
            ActKind::ScaledTanh => xs.iter_mut().for_each(|x| *x = a * (b * *x).tanh()),
            ActKind::HardSigmoid => xs.iter_mut().for_each(|x| {
                let v = a * *x + b;
                *x = if v < zero { zero } else if v > one { one } else { v }
            }),
            ActKind::Elu => xs.iter_mut().for_each(|x| *x = if *x >= zero { *x } else { a * (x.exp() - one) }),
            ActKind::Softsign => xs.iter_mut().for_each(|x| *x = x.div(one + x.abs())),
            ActKind::Softplus => xs.iter_mut().for_each(|x| {
                // ln(1 + e^x), stable for large x.
                *x = if *x > zero { *x + (-*x).exp().ln_1p() } else { x.exp().ln_1p() }
            }),
        }
    }
}

#[inline(always)]
fn sigmoid<F: Fl>(x: F) -> F {
    if x >= F::ZERO {
        F::ONE.div(F::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e.div(F::ONE + e)
    }
}

// ---------------------------------------------------------------------------------------------
// The op.

struct RnnOp {
    cell: Cell,
    hidden: usize,
    /// Directions: false = forward, true = reverse.
    dirs: Vec<bool>,
    /// `cell.num_acts()` activations per direction.
    acts: Vec<Act>,
    clip: Option<f32>,
    input_forget: bool,
    linear_before_reset: bool,
    batch_first: bool,
    /// Constant f32 weights packed at build time.
    packed: Option<fast::Packed>,
}

fn build(n: &NodeInfo, cell: Cell) -> OpResult<Box<dyn Op>> {
    let hidden = n.attr_int("hidden_size")?.ok_or_else(|| OpError::new("hidden_size is required"))?;
    let hidden = usize::try_from(hidden)
        .ok()
        .filter(|&h| h > 0)
        .ok_or_else(|| OpError(format!("hidden_size must be positive, got {hidden}")))?;
    let direction = n.attr_string_or("direction", "forward")?;
    let dirs = match direction.as_str() {
        "forward" => vec![false],
        "reverse" => vec![true],
        "bidirectional" => vec![false, true],
        other => bail!("unknown direction '{other}'"),
    };
    let names: Vec<String> = match n.attr_strings("activations")? {
        Some(v) if !v.is_empty() => v,
        _ => cell.default_acts().iter().map(|s| s.to_string()).collect(),
    };
    let k = cell.num_acts();
    let names = if names.len() == k && dirs.len() == 2 {
        names.iter().chain(names.iter()).cloned().collect()
    } else {
        names
    };
    if names.len() != k * dirs.len() {
        bail!(
            "{} with {} direction(s) needs {} activations, got {}",
            cell.name(),
            dirs.len(),
            k * dirs.len(),
            names.len()
        );
    }
    let alphas = n.attr_floats("activation_alpha")?.unwrap_or_default();
    let betas = n.attr_floats("activation_beta")?.unwrap_or_default();
    let acts = parse_acts(&names, &alphas, &betas)?;
    let clip = n.attr_float("clip")?;
    if let Some(c) = clip {
        if c.is_nan() || c <= 0.0 {
            bail!("clip must be positive, got {c}");
        }
    }
    let mut op = RnnOp {
        cell,
        hidden,
        dirs,
        acts,
        clip,
        input_forget: n.attr_int_or("input_forget", 0)? != 0,
        linear_before_reset: n.attr_int_or("linear_before_reset", 0)? != 0,
        batch_first: n.attr_int_or("layout", 0)? != 0,
        packed: None,
    };
    if let (Some(w), Some(r)) = (n.const_tensor(1), n.const_tensor(2)) {
        // A bias that is present but not constant is detected at run time (the packing then
        // does not fit and the run packs its own).
        op.packed = fast::prepack(&op, w, r, n.const_tensor(3));
    }
    Ok(Box::new(op))
}

/// Run-time dimensions.
struct Dims {
    seq: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    nd: usize,
}

impl Op for RnnOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        match x.dtype() {
            DType::F64 => self.run_typed::<f64>(inputs),
            DType::F32 | DType::F16 | DType::BF16 => self.run_typed::<f32>(inputs),
            other => bail!("{} does not support {} inputs", self.cell.name(), other),
        }
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let t = inputs.first().copied().flatten()?;
        let dtype = t.tensor_dtype()?;
        let s = t.tensor_shape()?;
        if s.rank() != 3 {
            return None;
        }
        let (seq, batch) = if self.batch_first { (&s.0[1], &s.0[0]) } else { (&s.0[0], &s.0[1]) };
        let nd = Dim::Fixed(self.dirs.len());
        let h = Dim::Fixed(self.hidden);
        let y = if self.batch_first {
            vec![batch.clone(), seq.clone(), nd.clone(), h.clone()]
        } else {
            vec![seq.clone(), nd.clone(), batch.clone(), h.clone()]
        };
        let yh = if self.batch_first { vec![batch.clone(), nd, h] } else { vec![nd, batch.clone(), h] };
        let mut out = vec![
            ValueType::tensor(dtype, Some(Shape(y))),
            ValueType::tensor(dtype, Some(Shape(yh.clone()))),
        ];
        if self.cell == Cell::Lstm {
            out.push(ValueType::tensor(dtype, Some(Shape(yh))));
        }
        Some(out)
    }
}

impl RnnOp {
    fn check_shape(&self, t: &Tensor, want: &[usize], what: &str) -> OpResult<()> {
        if t.shape() != want {
            bail!("{} input {what} should have shape {want:?}, got {:?}", self.cell.name(), t.shape());
        }
        Ok(())
    }

    /// Reads an optional [nd, batch, H] state (layout-aware) into [nd][batch][H] order.
    fn load_state<F: Fl>(&self, t: Option<&Tensor>, d: &Dims, what: &str) -> OpResult<Vec<F>> {
        let n = d.nd * d.batch * d.hidden;
        let Some(t) = t else { return Ok(vec![F::ZERO; n]) };
        if self.batch_first {
            self.check_shape(t, &[d.batch, d.nd, d.hidden], what)?;
            let v = load_ref::<F>(t, what)?;
            let mut out = vec![F::ZERO; n];
            for b in 0..d.batch {
                for k in 0..d.nd {
                    let src = &v[(b * d.nd + k) * d.hidden..][..d.hidden];
                    out[(k * d.batch + b) * d.hidden..][..d.hidden].copy_from_slice(src);
                }
            }
            Ok(out)
        } else {
            self.check_shape(t, &[d.nd, d.batch, d.hidden], what)?;
            load::<F>(t, what)
        }
    }

    fn run_typed<F: Fl>(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let name = self.cell.name();
        let x = inputs.tensor(0)?;
        let dtype = x.dtype();
        if x.rank() != 3 {
            bail!("{name} input X must have rank 3, got shape {:?}", x.shape());
        }
        let xs = x.shape();
        let (seq, batch) = if self.batch_first { (xs[1], xs[0]) } else { (xs[0], xs[1]) };
        let d = Dims { seq, batch, input: xs[2], hidden: self.hidden, nd: self.dirs.len() };
        let g = self.cell.gates();
        let gh = g * d.hidden;

        let w_t = inputs.tensor(1)?;
        self.check_shape(w_t, &[d.nd, gh, d.input], "W")?;
        let r_t = inputs.tensor(2)?;
        self.check_shape(r_t, &[d.nd, gh, d.hidden], "R")?;
        let w = load_ref::<F>(w_t, "W")?;
        let r = load_ref::<F>(r_t, "R")?;
        let bias: Vec<F> = match inputs.opt_tensor(3)? {
            Some(t) => {
                self.check_shape(t, &[d.nd, 2 * gh], "B")?;
                load::<F>(t, "B")?
            }
            None => vec![F::ZERO; d.nd * 2 * gh],
        };
        let lens: Vec<usize> = match inputs.opt_tensor(4)? {
            Some(t) => {
                self.check_shape(t, &[d.batch], "sequence_lens")?;
                let v = t.to_i64_vec()?;
                v.iter()
                    .map(|&l| {
                        usize::try_from(l).ok().filter(|&l| l <= d.seq).ok_or_else(|| {
                            OpError(format!("{name}: sequence length {l} is outside 0..={}", d.seq))
                        })
                    })
                    .collect::<OpResult<_>>()?
            }
            None => vec![d.seq; d.batch],
        };
        let mut h_all = self.load_state::<F>(inputs.opt_tensor(5)?, &d, "initial_h")?;
        let mut c_all = if self.cell == Cell::Lstm {
            self.load_state::<F>(inputs.opt_tensor(6)?, &d, "initial_c")?
        } else {
            Vec::new()
        };
        let peep: Option<Vec<F>> = if self.cell == Cell::Lstm {
            match inputs.opt_tensor(7)? {
                Some(t) => {
                    self.check_shape(t, &[d.nd, 3 * d.hidden], "P")?;
                    Some(load::<F>(t, "P")?)
                }
                None => None,
            }
        } else {
            None
        };

        // X as [seq, batch, input].
        let xv = load_ref::<F>(x, "X")?;
        let xv: Cow<[F]> = if self.batch_first {
            let mut t = vec![F::ZERO; xv.len()];
            for b in 0..d.batch {
                for s in 0..d.seq {
                    let src = &xv[(b * d.seq + s) * d.input..][..d.input];
                    t[(s * d.batch + b) * d.input..][..d.input].copy_from_slice(src);
                }
            }
            Cow::Owned(t)
        } else {
            xv
        };

        // Y in [seq, nd, batch, H] order.
        let mut y = vec![F::ZERO; d.seq * d.nd * d.batch * d.hidden];
        let b_in = match inputs.opt_tensor(3)? {
            Some(_) => Some(&bias[..]),
            None => None,
        };
        let a = DirsIn { d: &d, x: &xv, w: &w, r: &r, b: b_in, bias: &bias, lens: &lens, peep: peep.as_deref() };
        F::run_dirs(self, &a, &mut h_all, &mut c_all, &mut y);

        // Outputs in the requested layout.
        let (y_shape, y) = if self.batch_first {
            let mut t = vec![F::ZERO; y.len()];
            for s in 0..d.seq {
                for k in 0..d.nd {
                    for b in 0..d.batch {
                        let src = &y[((s * d.nd + k) * d.batch + b) * d.hidden..][..d.hidden];
                        t[((b * d.seq + s) * d.nd + k) * d.hidden..][..d.hidden].copy_from_slice(src);
                    }
                }
            }
            (vec![d.batch, d.seq, d.nd, d.hidden], t)
        } else {
            (vec![d.seq, d.nd, d.batch, d.hidden], y)
        };
        let state_out = |v: Vec<F>| -> OpResult<Value> {
            let (shape, v) = if self.batch_first {
                let mut t = vec![F::ZERO; v.len()];
                for k in 0..d.nd {
                    for b in 0..d.batch {
                        let src = &v[(k * d.batch + b) * d.hidden..][..d.hidden];
                        t[(b * d.nd + k) * d.hidden..][..d.hidden].copy_from_slice(src);
                    }
                }
                (vec![d.batch, d.nd, d.hidden], t)
            } else {
                (vec![d.nd, d.batch, d.hidden], v)
            };
            Ok(Value::Tensor(Tensor::new(shape, store(v, dtype)?)?))
        };
        let mut out = vec![Value::Tensor(Tensor::new(y_shape, store(y, dtype)?)?), state_out(h_all)?];
        if self.cell == Cell::Lstm {
            out.push(state_out(c_all)?);
        }
        Ok(out)
    }
}

/// What [`Fl::run_dirs`] reads.
struct DirsIn<'a, F> {
    d: &'a Dims,
    /// X as [seq, batch, input].
    x: &'a [F],
    w: &'a [F],
    r: &'a [F],
    /// B as given (None when absent).
    b: Option<&'a [F]>,
    /// B, zeros when absent.
    bias: &'a [F],
    lens: &'a [usize],
    peep: Option<&'a [F]>,
}

/// Runs every direction with a per-direction input-projection GEMM and plain recurrence
/// products (the double-precision path).
fn run_dirs_generic<F: Fl>(op: &RnnOp, a: &DirsIn<'_, F>, h_all: &mut [F], c_all: &mut [F], y: &mut [F]) {
    let d = a.d;
    let g = op.cell.gates();
    let gh = g * d.hidden;
    let rows = d.seq * d.batch;
    let mut xw = vec![F::ZERO; rows * gh];
    for (k, &reverse) in op.dirs.iter().enumerate() {
        let wk = &a.w[k * gh * d.input..][..gh * d.input];
        let rk = &a.r[k * gh * d.hidden..][..gh * d.hidden];
        let bk = &a.bias[k * 2 * gh..][..2 * gh];
        // Input projection for every step at once: XW = X · Wᵀ + biases.
        F::gemm(rows, d.input, gh, a.x, d.input as isize, 1, wk, 1, d.input as isize, F::ZERO, &mut xw, gh as isize);
        let skip_rbh = op.cell == Cell::Gru && op.linear_before_reset;
        let mut add_bias = vec![F::ZERO; gh];
        for j in 0..gh {
            let rb = if skip_rbh && j >= 2 * d.hidden { F::ZERO } else { bk[gh + j] };
            add_bias[j] = bk[j] + rb;
        }
        for row in xw.chunks_exact_mut(gh) {
            for (v, &b) in row.iter_mut().zip(&add_bias) {
                *v = *v + b;
            }
        }
        let acts = &op.acts[k * op.cell.num_acts()..][..op.cell.num_acts()];
        let h = &mut h_all[k * d.batch * d.hidden..][..d.batch * d.hidden];
        let ctx = StepCtx {
            d,
            k,
            reverse,
            lens: a.lens,
            xw: &xw,
            xw_stride: gh,
            xw_off: 0,
            r: rk,
            rbh: if op.cell == Cell::Gru { &bk[gh + 2 * d.hidden..] } else { &[] },
            acts,
            clip: op.clip.map(F::of),
        };
        match op.cell {
            Cell::Lstm => {
                let c = &mut c_all[k * d.batch * d.hidden..][..d.batch * d.hidden];
                let p = a.peep.map(|p| &p[k * 3 * d.hidden..][..3 * d.hidden]);
                lstm_dir(&ctx, h, c, p, op.input_forget, y);
            }
            Cell::Gru => gru_dir(&ctx, h, op.linear_before_reset, y),
            Cell::Rnn => rnn_dir(&ctx, h, y),
        }
    }
}

/// What one direction's recurrence needs.
struct StepCtx<'a, F: Fl> {
    d: &'a Dims,
    k: usize,
    reverse: bool,
    lens: &'a [usize],
    /// Precomputed input projections plus biases: step t, batch row b at
    /// `xw[(t·batch + b)·xw_stride + xw_off..][..G·H]`.
    xw: &'a [F],
    xw_stride: usize,
    xw_off: usize,
    /// Recurrence weights of this direction, [G·H, H].
    r: &'a [F],
    /// Recurrence bias of the GRU candidate gate (used with linear_before_reset).
    rbh: &'a [F],
    acts: &'a [Act],
    clip: Option<F>,
}

/// Time index of batch row `b` (sequence length `lens[b]`) at step `s` of a direction, if the
/// row is still running.
#[inline]
fn step_time(lens: &[usize], reverse: bool, s: usize, b: usize) -> Option<usize> {
    let l = lens[b];
    if s >= l {
        None
    } else if reverse {
        Some(l - 1 - s)
    } else {
        Some(s)
    }
}

impl<'a, F: Fl> StepCtx<'a, F> {
    /// Time index handled by batch row `b` at step `s`, if that row is still running.
    #[inline]
    fn time(&self, s: usize, b: usize) -> Option<usize> {
        step_time(self.lens, self.reverse, s, b)
    }

    /// Loads the precomputed projections of step `s` into `gates` ([batch, G·H]).
    fn load_gates(&self, s: usize, gates: &mut [F], gh: usize) {
        for b in 0..self.d.batch {
            let dst = &mut gates[b * gh..][..gh];
            match self.time(s, b) {
                Some(t) => dst.copy_from_slice(&self.xw[(t * self.d.batch + b) * self.xw_stride + self.xw_off..][..gh]),
                None => dst.iter_mut().for_each(|v| *v = F::ZERO),
            }
        }
    }

    fn clip(&self, xs: &mut [F]) {
        if let Some(c) = self.clip {
            let lo = -c;
            xs.iter_mut().for_each(|x| *x = if *x > c { c } else if *x < lo { lo } else { *x });
        }
    }

    fn write_y(&self, y: &mut [F], t: usize, b: usize, h: &[F]) {
        let d = self.d;
        y[((t * d.nd + self.k) * d.batch + b) * d.hidden..][..d.hidden].copy_from_slice(h);
    }
}

fn lstm_dir<F: Fl>(ctx: &StepCtx<F>, h: &mut [F], c: &mut [F], p: Option<&[F]>, input_forget: bool, y: &mut [F]) {
    let d = ctx.d;
    let hs = d.hidden;
    let gh = 4 * hs;
    let mut gates = vec![F::ZERO; d.batch * gh];
    let steps = d.seq;
    for s in 0..steps {
        ctx.load_gates(s, &mut gates, gh);
        // gates += H · Rᵀ
        F::gemm(d.batch, hs, gh, h, hs as isize, 1, ctx.r, 1, hs as isize, F::ONE, &mut gates, gh as isize);
        for b in 0..d.batch {
            let Some(t) = ctx.time(s, b) else { continue };
            let hb = &mut h[b * hs..][..hs];
            lstm_cell(&mut gates[b * gh..][..gh], hb, &mut c[b * hs..][..hs], ctx.acts, ctx.clip, p, input_forget);
            ctx.write_y(y, t, b, hb);
        }
    }
}

/// One LSTM cell update of one batch row: `g` holds the pre-activations [i, o, f, c] (and is
/// used as scratch), `hb`/`cb` the state, updated in place.
#[allow(clippy::too_many_arguments)]
fn lstm_cell<F: Fl>(g: &mut [F], hb: &mut [F], cb: &mut [F], acts: &[Act], clip: Option<F>, p: Option<&[F]>, input_forget: bool) {
    let hs = hb.len();
    let default_acts = acts.len() == 3
        && acts[0].kind == ActKind::Sigmoid
        && acts[1].kind == ActKind::Tanh
        && acts[2].kind == ActKind::Tanh;
    if default_acts && clip.is_none() && p.is_none() && !input_forget {
        F::sigmoid_slice(&mut g[..3 * hs]);
        let (ifo, gc) = g.split_at_mut(3 * hs);
        F::tanh_slice(gc);
        let (gi, rest) = ifo.split_at(hs);
        let (go, gf) = rest.split_at(hs);
        for j in 0..hs {
            let cn = gf[j] * cb[j] + gi[j] * gc[j];
            cb[j] = cn;
            gc[j] = cn;
        }
        F::tanh_slice(gc);
        for j in 0..hs {
            hb[j] = go[j] * gc[j];
        }
        return;
    }
    let clip_all = |xs: &mut [F]| {
        if let Some(c) = clip {
            let lo = -c;
            xs.iter_mut().for_each(|x| *x = if *x > c { c } else if *x < lo { lo } else { *x });
        }
    };
    let (gi, rest) = g.split_at_mut(hs);
    let (go, rest) = rest.split_at_mut(hs);
    let (gf, gc) = rest.split_at_mut(hs);
    if let Some(p) = p {
        for j in 0..hs {
            gi[j] = gi[j] + p[j] * cb[j];
            gf[j] = gf[j] + p[2 * hs + j] * cb[j];
        }
    }
    clip_all(gi);
    acts[0].apply(gi);
    if input_forget {
        for j in 0..hs {
            gf[j] = F::ONE - gi[j];
        }
    } else {
        clip_all(gf);
        acts[0].apply(gf);
    }
    clip_all(gc);
    acts[1].apply(gc);
    for j in 0..hs {
        cb[j] = gf[j] * cb[j] + gi[j] * gc[j];
    }
    if let Some(p) = p {
        for j in 0..hs {
            go[j] = go[j] + p[hs + j] * cb[j];
        }
    }
    clip_all(go);
    acts[0].apply(go);
    // h = o ⊙ act_h(C), using gc as scratch.
    gc.copy_from_slice(cb);
    acts[2].apply(gc);
    for j in 0..hs {
        hb[j] = go[j] * gc[j];
    }
}

fn gru_dir<F: Fl>(ctx: &StepCtx<F>, h: &mut [F], linear_before_reset: bool, y: &mut [F]) {
    let d = ctx.d;
    let hs = d.hidden;
    let gh = 3 * hs;
    let mut gates = vec![F::ZERO; d.batch * gh];
    let mut scratch = vec![F::ZERO; d.batch * hs];
    let rh = &ctx.r[2 * hs * hs..];
    for s in 0..d.seq {
        ctx.load_gates(s, &mut gates, gh);
        // z, r gates: += H · R_zrᵀ
        F::gemm(d.batch, hs, 2 * hs, h, hs as isize, 1, ctx.r, 1, hs as isize, F::ONE, &mut gates, gh as isize);
        for b in 0..d.batch {
            let g = &mut gates[b * gh..][..2 * hs];
            ctx.clip(g);
            ctx.acts[0].apply(g);
        }
        if linear_before_reset {
            // scratch = H · R_hᵀ + Rb_h; candidate += r ⊙ scratch
            F::gemm(d.batch, hs, hs, h, hs as isize, 1, rh, 1, hs as isize, F::ZERO, &mut scratch, hs as isize);
            for b in 0..d.batch {
                let g = &mut gates[b * gh..][..gh];
                let sc = &scratch[b * hs..][..hs];
                for j in 0..hs {
                    g[2 * hs + j] = g[2 * hs + j] + g[hs + j] * (sc[j] + ctx.rbh[j]);
                }
            }
        } else {
            // scratch = r ⊙ H; candidate += scratch · R_hᵀ
            for b in 0..d.batch {
                let g = &gates[b * gh..][..gh];
                for j in 0..hs {
                    scratch[b * hs + j] = g[hs + j] * h[b * hs + j];
                }
            }
            let (_, tail) = gates.split_at_mut(2 * hs);
            F::gemm(d.batch, hs, hs, &scratch, hs as isize, 1, rh, 1, hs as isize, F::ONE, tail, gh as isize);
        }
        for b in 0..d.batch {
            let Some(t) = ctx.time(s, b) else { continue };
            let g = &mut gates[b * gh..][..gh];
            let (zr, cand) = g.split_at_mut(2 * hs);
            ctx.clip(cand);
            ctx.acts[1].apply(cand);
            let hb = &mut h[b * hs..][..hs];
            for j in 0..hs {
                let z = zr[j];
                hb[j] = (F::ONE - z) * cand[j] + z * hb[j];
            }
            ctx.write_y(y, t, b, hb);
        }
    }
}

fn rnn_dir<F: Fl>(ctx: &StepCtx<F>, h: &mut [F], y: &mut [F]) {
    let d = ctx.d;
    let hs = d.hidden;
    let mut gates = vec![F::ZERO; d.batch * hs];
    for s in 0..d.seq {
        ctx.load_gates(s, &mut gates, hs);
        F::gemm(d.batch, hs, hs, h, hs as isize, 1, ctx.r, 1, hs as isize, F::ONE, &mut gates, hs as isize);
        for b in 0..d.batch {
            let Some(t) = ctx.time(s, b) else { continue };
            let g = &mut gates[b * hs..][..hs];
            ctx.clip(g);
            ctx.acts[0].apply(g);
            h[b * hs..][..hs].copy_from_slice(g);
            ctx.write_y(y, t, b, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(cell: Cell, hidden: usize) -> RnnOp {
        let names: Vec<String> = cell.default_acts().iter().map(|s| s.to_string()).collect();
        RnnOp {
            cell,
            hidden,
            dirs: vec![false],
            acts: parse_acts(&names, &[], &[]).unwrap(),
            clip: None,
            input_forget: false,
            linear_before_reset: false,
            batch_first: false,
            packed: None,
        }
    }

    fn run(op: &RnnOp, ins: Vec<Option<Tensor>>) -> Vec<Vec<f32>> {
        let vals: Vec<Option<Value>> = ins.into_iter().map(|t| t.map(Value::Tensor)).collect();
        let refs: Vec<Option<&Value>> = vals.iter().map(|v| v.as_ref()).collect();
        op.run(&Inputs::new(&refs))
            .unwrap()
            .into_iter()
            .map(|v| v.into_tensor().unwrap().into_vec::<f32>().unwrap())
            .collect()
    }

    #[test]
    fn rnn_identity_weights() {
        // hidden 1, W = 1, R = 0.5, Relu: h1 = x1, h2 = x2 + 0.5 h1.
        let mut o = op(Cell::Rnn, 1);
        o.acts = parse_acts(&["Relu".to_string()], &[], &[]).unwrap();
        let x = Tensor::from_vec(vec![2, 1, 1], vec![1.0f32, 2.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 1], vec![1.0f32]).unwrap();
        let r = Tensor::from_vec(vec![1, 1, 1], vec![0.5f32]).unwrap();
        let out = run(&o, vec![Some(x), Some(w), Some(r)]);
        assert_eq!(out[0], vec![1.0, 2.5]);
        assert_eq!(out[1], vec![2.5]);
    }

    #[test]
    fn lstm_one_step_zero_weights() {
        // All weights zero, bias gives i = o = f = sigmoid(0) = 0.5, c~ = tanh(0) = 0;
        // with initial c = 2: C = 0.5·2 = 1, H = 0.5·tanh(1).
        let o = op(Cell::Lstm, 1);
        let x = Tensor::from_vec(vec![1, 1, 1], vec![3.0f32]).unwrap();
        let w = Tensor::from_vec(vec![1, 4, 1], vec![0.0f32; 4]).unwrap();
        let r = Tensor::from_vec(vec![1, 4, 1], vec![0.0f32; 4]).unwrap();
        let c0 = Tensor::from_vec(vec![1, 1, 1], vec![2.0f32]).unwrap();
        let out = run(&o, vec![Some(x), Some(w), Some(r), None, None, None, Some(c0)]);
        assert!((out[2][0] - 1.0).abs() < 1e-6);
        assert!((out[1][0] - 0.5 * 1f32.tanh()).abs() < 1e-6);
    }

    /// Runs `op` on the same data in f32 (packed, vectorised path) and f64 (plain path) and
    /// checks every output agrees.
    fn f32_matches_f64(op: &RnnOp, seq: usize, batch: usize, input: usize, lens: Option<Vec<i64>>, peep: bool) {
        let nd = op.dirs.len();
        let (h, gh) = (op.hidden, op.cell.gates() * op.hidden);
        let val = |n: usize, salt: usize| -> Vec<f64> { (0..n).map(|i| (((i * 7919 + salt * 104_729) % 1000) as f64 / 500.0 - 1.0) * 0.7).collect() };
        let (xs, ss) = if op.batch_first { (vec![batch, seq, input], vec![batch, nd, h]) } else { (vec![seq, batch, input], vec![nd, batch, h]) };
        let shapes: Vec<(Vec<usize>, Vec<f64>)> = vec![
            (xs, val(seq * batch * input, 1)),
            (vec![nd, gh, input], val(nd * gh * input, 2)),
            (vec![nd, gh, h], val(nd * gh * h, 3)),
            (vec![nd, 2 * gh], val(nd * 2 * gh, 4)),
            (ss.clone(), val(nd * batch * h, 5)),
            (ss, val(nd * batch * h, 6)),
            (vec![nd, 3 * h], val(nd * 3 * h, 7)),
        ];
        let make = |f32s: bool| -> Vec<Option<Value>> {
            let mut v: Vec<Option<Value>> = shapes
                .iter()
                .map(|(s, d)| {
                    Some(Value::Tensor(if f32s {
                        Tensor::from_vec(s.clone(), d.iter().map(|&x| x as f32).collect::<Vec<f32>>()).unwrap()
                    } else {
                        Tensor::from_vec(s.clone(), d.clone()).unwrap()
                    }))
                })
                .collect();
            let l = lens.clone().map(|l| Value::Tensor(Tensor::from_vec(vec![batch], l).unwrap()));
            v.insert(4, l);
            if !peep {
                v[7] = None;
            }
            if op.cell != Cell::Lstm {
                v.truncate(6);
            }
            v
        };
        let (a, b) = (make(true), make(false));
        let ra: Vec<Option<&Value>> = a.iter().map(|v| v.as_ref()).collect();
        let rb: Vec<Option<&Value>> = b.iter().map(|v| v.as_ref()).collect();
        let oa = op.run(&Inputs::new(&ra)).unwrap();
        let ob = op.run(&Inputs::new(&rb)).unwrap();
        assert_eq!(oa.len(), ob.len());
        for (x, y) in oa.into_iter().zip(ob) {
            let (x, y) = (x.into_tensor().unwrap(), y.into_tensor().unwrap());
            assert_eq!(x.shape(), y.shape());
            let (x, y) = (x.into_vec::<f32>().unwrap(), y.into_vec::<f64>().unwrap());
            for (i, (&p, &q)) in x.iter().zip(&y).enumerate() {
                assert!((p as f64 - q).abs() < 2e-5, "{:?} output element {i}: f32 {p} vs f64 {q}", op.cell);
            }
        }
    }

    #[test]
    fn f32_path_matches_f64_path() {
        for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
            let mut o = op(cell, 19);
            o.dirs = vec![false, true];
            let names: Vec<String> = cell.default_acts().iter().chain(cell.default_acts()).map(|s| s.to_string()).collect();
            o.acts = parse_acts(&names, &[], &[]).unwrap();
            f32_matches_f64(&o, 5, 1, 3, None, false);
            f32_matches_f64(&o, 5, 3, 4, Some(vec![5, 2, 0]), cell == Cell::Lstm);
            f32_matches_f64(&o, 4, 1, 2, Some(vec![3]), false);
            o.batch_first = true;
            o.clip = Some(0.5);
            o.linear_before_reset = cell == Cell::Gru;
            f32_matches_f64(&o, 3, 2, 2, None, cell == Cell::Lstm);
        }
    }

    #[test]
    fn gru_update_gate_keeps_state() {
        // Large z bias: z ≈ 1, so H stays at its initial value.
        let o = op(Cell::Gru, 1);
        let x = Tensor::from_vec(vec![1, 1, 1], vec![1.0f32]).unwrap();
        let w = Tensor::from_vec(vec![1, 3, 1], vec![1.0f32; 3]).unwrap();
        let r = Tensor::from_vec(vec![1, 3, 1], vec![1.0f32; 3]).unwrap();
        let b = Tensor::from_vec(vec![1, 6], vec![50.0f32, 0.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
        let h0 = Tensor::from_vec(vec![1, 1, 1], vec![0.25f32]).unwrap();
        let out = run(&o, vec![Some(x), Some(w), Some(r), Some(b), None, Some(h0)]);
        assert!((out[1][0] - 0.25).abs() < 1e-6);
    }
}
