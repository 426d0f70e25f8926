//! Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare, ArgMax, ArgMin.

use kiln_tensor::{bf16, f16, DType, Dim, Shape, Tensor, TensorData, Value, ValueType};

use crate::error::{OpError, OpResult};
use crate::bail;
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::shape::Keys;
use crate::ops::util::norm_axis;
use crate::registry::Registry;

pub fn register(r: &mut Registry) {
    r.add("ReduceSum", 1, |n| build_reduce(n, Kind::Sum));
    r.add("ReduceMean", 1, |n| build_reduce(n, Kind::Mean));
    r.add("ReduceMax", 1, |n| build_reduce(n, Kind::Max));
    r.add("ReduceMin", 1, |n| build_reduce(n, Kind::Min));
    r.add("ReduceProd", 1, |n| build_reduce(n, Kind::Prod));
    r.add("ReduceL1", 1, |n| build_reduce(n, Kind::L1));
    r.add("ReduceL2", 1, |n| build_reduce(n, Kind::L2));
    r.add("ReduceLogSum", 1, |n| build_reduce(n, Kind::LogSum));
    r.add("ReduceLogSumExp", 1, |n| build_reduce(n, Kind::LogSumExp));
    r.add("ReduceSumSquare", 1, |n| build_reduce(n, Kind::SumSquare));
    r.add("ArgMax", 1, |n| build_arg(n, true));
    r.add("ArgMin", 1, |n| build_arg(n, false));
}

// ---------------------------------------------------------------------------------------------
// Numeric plumbing: element types map to a compute type (f32 for f32/f16/bf16, f64, i64, u64).

/// Arithmetic of the compute type.
pub(crate) trait Calc: Copy + PartialOrd + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn abs(self) -> Self;
    fn sqrt(self) -> Self;
    fn ln(self) -> Self;
    fn exp(self) -> Self;
    fn div_count(self, n: usize) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! calc_float {
    ($t:ty) => {
        impl Calc for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn add(self, o: Self) -> Self { self + o }
            #[inline(always)]
            fn sub(self, o: Self) -> Self { self - o }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self * o }
            #[inline(always)]
            fn abs(self) -> Self { <$t>::abs(self) }
            #[inline(always)]
            fn sqrt(self) -> Self { <$t>::sqrt(self) }
            #[inline(always)]
            fn ln(self) -> Self { <$t>::ln(self) }
            #[inline(always)]
            fn exp(self) -> Self { <$t>::exp(self) }
            #[inline(always)]
            fn div_count(self, n: usize) -> Self { self / n as $t }
            #[inline(always)]
            fn is_nan(self) -> bool { <$t>::is_nan(self) }
        }
    };
}
calc_float!(f32);
calc_float!(f64);

macro_rules! calc_int {
    ($t:ty, $abs:expr) => {
        impl Calc for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            #[inline(always)]
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline(always)]
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline(always)]
            fn abs(self) -> Self { $abs(self) }
            fn sqrt(self) -> Self { (self as f64).sqrt() as $t }
            fn ln(self) -> Self { (self as f64).ln() as $t }
            fn exp(self) -> Self { (self as f64).exp() as $t }
            fn div_count(self, n: usize) -> Self { if n == 0 { 0 } else { self / n as $t } }
            #[inline(always)]
            fn is_nan(self) -> bool { false }
        }
    };
}
calc_int!(i64, |x: i64| x.wrapping_abs());
calc_int!(u64, |x: u64| x);

/// A tensor element type with its compute type and extreme values.
pub(crate) trait Num: Copy + Send + Sync + 'static {
    type C: Calc;
    /// Smallest value (−∞ for floats).
    const LOWEST: Self;
    /// Largest value (+∞ for floats).
    const HIGHEST: Self;
    fn to_c(self) -> Self::C;
    fn from_c(c: Self::C) -> Self;
    fn wrap(v: Vec<Self>) -> TensorData;
}

macro_rules! num_prim {
    ($t:ty, $c:ty, $var:ident, $lo:expr, $hi:expr) => {
        impl Num for $t {
            type C = $c;
            const LOWEST: Self = $lo;
            const HIGHEST: Self = $hi;
            #[inline(always)]
            fn to_c(self) -> $c { self as $c }
            #[inline(always)]
            fn from_c(c: $c) -> Self { c as $t }
            fn wrap(v: Vec<Self>) -> TensorData { TensorData::$var(v) }
        }
    };
}
num_prim!(f32, f32, F32, f32::NEG_INFINITY, f32::INFINITY);
num_prim!(f64, f64, F64, f64::NEG_INFINITY, f64::INFINITY);
num_prim!(i8, i64, I8, i8::MIN, i8::MAX);
num_prim!(i16, i64, I16, i16::MIN, i16::MAX);
num_prim!(i32, i64, I32, i32::MIN, i32::MAX);
num_prim!(i64, i64, I64, i64::MIN, i64::MAX);
num_prim!(u8, u64, U8, u8::MIN, u8::MAX);
num_prim!(u16, u64, U16, u16::MIN, u16::MAX);
num_prim!(u32, u64, U32, u32::MIN, u32::MAX);
num_prim!(u64, u64, U64, u64::MIN, u64::MAX);

macro_rules! num_half {
    ($t:ty, $var:ident) => {
        impl Num for $t {
            type C = f32;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            #[inline(always)]
            fn to_c(self) -> f32 { self.to_f32() }
            #[inline(always)]
            fn from_c(c: f32) -> Self { <$t>::from_f32(c) }
            fn wrap(v: Vec<Self>) -> TensorData { TensorData::$var(v) }
        }
    };
}
num_half!(f16, F16);
num_half!(bf16, BF16);

// ---------------------------------------------------------------------------------------------
// Reducers.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sum => "ReduceSum",
            Kind::Mean => "ReduceMean",
            Kind::Max => "ReduceMax",
            Kind::Min => "ReduceMin",
            Kind::Prod => "ReduceProd",
            Kind::L1 => "ReduceL1",
            Kind::L2 => "ReduceL2",
            Kind::LogSum => "ReduceLogSum",
            Kind::LogSumExp => "ReduceLogSumExp",
            Kind::SumSquare => "ReduceSumSquare",
        }
    }
    /// Opset from which `axes` is an input rather than an attribute.
    fn axes_input_since(self) -> i64 {
        if self == Kind::Sum {
            13
        } else {
            18
        }
    }
}

/// One reduction: an accumulator, a step per element and a final value from the count.
trait Reducer<E: Num>: Copy {
    type Acc: Copy;
    fn init(&self) -> Self::Acc;
    fn step(&self, acc: Self::Acc, x: E::C) -> Self::Acc;
    fn finish(&self, acc: Self::Acc, n: usize) -> E;
}

macro_rules! simple_reducer {
    ($name:ident, $init:expr, |$a:ident, $x:ident| $step:expr, |$f:ident, $n:ident| $fin:expr) => {
        #[derive(Clone, Copy)]
        struct $name;
        impl<E: Num> Reducer<E> for $name {
            type Acc = E::C;
            #[inline(always)]
            fn init(&self) -> E::C {
                $init
            }
            #[inline(always)]
            fn step(&self, $a: E::C, $x: E::C) -> E::C {
                $step
            }
            #[inline(always)]
            #[allow(unused_variables)]
            fn finish(&self, $f: E::C, $n: usize) -> E {
                E::from_c($fin)
            }
        }
    };
}

simple_reducer!(RSum, E::C::ZERO, |a, x| a.add(x), |a, n| a);
simple_reducer!(RMean, E::C::ZERO, |a, x| a.add(x), |a, n| a.div_count(n));
simple_reducer!(RProd, E::C::ONE, |a, x| a.mul(x), |a, n| a);
simple_reducer!(RL1, E::C::ZERO, |a, x| a.add(x.abs()), |a, n| a);
simple_reducer!(RL2, E::C::ZERO, |a, x| a.add(x.mul(x)), |a, n| a.sqrt());
simple_reducer!(RLogSum, E::C::ZERO, |a, x| a.add(x), |a, n| a.ln());
simple_reducer!(RSumSquare, E::C::ZERO, |a, x| a.add(x.mul(x)), |a, n| a);
simple_reducer!(
    RMax,
    E::LOWEST.to_c(),
    |a, x| if x > a || x.is_nan() { x } else { a },
    |a, n| a
);
simple_reducer!(
    RMin,
    E::HIGHEST.to_c(),
    |a, x| if x < a || x.is_nan() { x } else { a },
    |a, n| a
);

/// Log-sum-exp with a running maximum: the accumulator is (max so far, sum of exp(x − max)).
#[derive(Clone, Copy)]
struct RLogSumExp;
impl<E: Num> Reducer<E> for RLogSumExp {
    type Acc = (E::C, E::C, bool);
    #[inline(always)]
    fn init(&self) -> Self::Acc {
        (E::C::ZERO, E::C::ZERO, false)
    }
    #[inline(always)]
    fn step(&self, (m, s, seen): Self::Acc, x: E::C) -> Self::Acc {
        if !seen {
            (x, E::C::ONE, true)
        } else if x > m {
            (x, s.mul(m.sub(x).exp()).add(E::C::ONE), true)
        } else if x.is_nan() || m.is_nan() {
            (x.add(m), x.add(m), true)
        } else if x == m {
            (m, s.add(E::C::ONE), true)
        } else {
            (m, s.add(x.sub(m).exp()), true)
        }
    }
    fn finish(&self, (m, s, seen): Self::Acc, _n: usize) -> E {
        if seen {
            E::from_c(s.ln().add(m))
        } else {
            E::LOWEST
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels.

/// The input shape viewed as alternating kept/reduced blocks.
struct Plan {
    /// Merged dims and whether each is reduced.
    dims: Vec<(usize, bool)>,
    out_len: usize,
    red_len: usize,
}

fn make_plan(shape: &[usize], reduced: &[bool]) -> Plan {
    let mut dims: Vec<(usize, bool)> = Vec::new();
    for (&d, &r) in shape.iter().zip(reduced) {
        if d == 1 {
            continue;
        }
        match dims.last_mut() {
            Some(last) if last.1 == r => last.0 *= d,
            _ => dims.push((d, r)),
        }
    }
    let out_len = dims.iter().filter(|d| !d.1).map(|d| d.0).product();
    let red_len = dims.iter().filter(|d| d.1).map(|d| d.0).product();
    Plan { dims, out_len, red_len }
}

fn reduce_with<E: Num, R: Reducer<E>>(x: &[E], plan: &Plan, r: R) -> Vec<E> {
    let n = plan.red_len;
    let mut out = Vec::with_capacity(plan.out_len);
    if plan.out_len == 0 {
        return out;
    }
    if n == 0 || x.is_empty() {
        let v = r.finish(r.init(), 0);
        out.resize(plan.out_len, v);
        return out;
    }
    let d = &plan.dims;
    // [outer?, R, inner?] with at most one reduced block. Only f32 gets these specialised loops;
    // other types take the general loop below (one loop per type and reducer keeps code small).
    let nred = d.iter().filter(|b| b.1).count();
    if nred <= 1 && std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() {
        let pos = d.iter().position(|b| b.1);
        let (outer, inner) = match pos {
            None => (x.len(), 1),
            Some(p) => (d[..p].iter().map(|b| b.0).product(), d[p + 1..].iter().map(|b| b.0).product()),
        };
        if inner == 1 {
            for row in x.chunks_exact(n).take(outer) {
                let mut a = r.init();
                for &v in row {
                    a = r.step(a, v.to_c());
                }
                out.push(r.finish(a, n));
            }
        } else {
            let mut accs = vec![r.init(); inner];
            for block in x.chunks_exact(n * inner).take(outer) {
                accs.iter_mut().for_each(|a| *a = r.init());
                for row in block.chunks_exact(inner) {
                    for (a, &v) in accs.iter_mut().zip(row) {
                        *a = r.step(*a, v.to_c());
                    }
                }
                out.extend(accs.iter().map(|&a| r.finish(a, n)));
            }
        }
        return out;
    }
    // General case: offsets of every reduced position and of every output base.
    let mut strides = vec![0usize; d.len()];
    let mut s = 1usize;
    for i in (0..d.len()).rev() {
        strides[i] = s;
        s *= d[i].0;
    }
    let offsets = |want_reduced: bool| -> Vec<usize> {
        let mut offs = vec![0usize];
        for (i, &(len, red)) in d.iter().enumerate() {
            if red != want_reduced {
                continue;
            }
            let mut next = Vec::with_capacity(offs.len() * len);
            for &o in &offs {
                for k in 0..len {
                    next.push(o + k * strides[i]);
                }
            }
            offs = next;
        }
        offs
    };
    let red_offs = offsets(true);
    let bases = offsets(false);
    for &b in &bases {
        let mut a = r.init();
        for &o in &red_offs {
            a = r.step(a, x[b + o].to_c());
        }
        out.push(r.finish(a, n));
    }
    out
}

fn reduce_typed<E: Num>(x: &[E], plan: &Plan, kind: Kind) -> TensorData {
    E::wrap(reduce_vec(x, plan, kind))
}

/// Reduces in the compute type, so the loops of f32, i64 and u64 serve every type: 16-bit
/// floats compute in f32 and narrower integers in i64/u64 (wrapping), exactly as their own
/// loops would. Only the value of an empty Max/Min/LogSumExp depends on the element type.
fn reduce_via_c<E: Num>(x: &[E], plan: &Plan, kind: Kind) -> TensorData
where
    E::C: Num,
{
    if plan.out_len > 0 && (plan.red_len == 0 || x.is_empty()) {
        match kind {
            Kind::Max | Kind::LogSumExp => return E::wrap(vec![E::LOWEST; plan.out_len]),
            Kind::Min => return E::wrap(vec![E::HIGHEST; plan.out_len]),
            _ => {}
        }
    }
    let xc: Vec<E::C> = x.iter().map(|&v| v.to_c()).collect();
    let r: Vec<E::C> = reduce_vec(&xc, plan, kind);
    E::wrap(r.into_iter().map(E::from_c).collect())
}

fn reduce_vec<E: Num>(x: &[E], plan: &Plan, kind: Kind) -> Vec<E> {
    match kind {
        Kind::Sum => reduce_with(x, plan, RSum),
        Kind::Mean => reduce_with(x, plan, RMean),
        Kind::Max => reduce_with(x, plan, RMax),
        Kind::Min => reduce_with(x, plan, RMin),
        Kind::Prod => reduce_with(x, plan, RProd),
        Kind::L1 => reduce_with(x, plan, RL1),
        Kind::L2 => reduce_with(x, plan, RL2),
        Kind::LogSum => reduce_with(x, plan, RLogSum),
        Kind::LogSumExp => reduce_with(x, plan, RLogSumExp),
        Kind::SumSquare => reduce_with(x, plan, RSumSquare),
    }
}

/// Reduces `x` over `axes` (already normalised; empty = no reduction).
fn reduce_tensor(x: &Tensor, axes: &[usize], keepdims: bool, kind: Kind) -> OpResult<Tensor> {
    let shape = x.shape();
    let mut reduced = vec![false; shape.len()];
    for &a in axes {
        reduced[a] = true;
    }
    let out_shape: Vec<usize> = shape
        .iter()
        .zip(&reduced)
        .filter_map(|(&d, &r)| if r { keepdims.then_some(1) } else { Some(d) })
        .collect();
    let plan = make_plan(shape, &reduced);
    let data = match x.data() {
        TensorData::F32(v) => reduce_typed(v, &plan, kind),
        TensorData::F64(v) => reduce_typed(v, &plan, kind),
        TensorData::F16(v) => reduce_via_c(v, &plan, kind),
        TensorData::BF16(v) => reduce_via_c(v, &plan, kind),
        TensorData::I8(v) => reduce_via_c(v, &plan, kind),
        TensorData::I16(v) => reduce_via_c(v, &plan, kind),
        TensorData::I32(v) => reduce_via_c(v, &plan, kind),
        TensorData::I64(v) => reduce_typed(v, &plan, kind),
        TensorData::U8(v) => reduce_via_c(v, &plan, kind),
        TensorData::U16(v) => reduce_via_c(v, &plan, kind),
        TensorData::U32(v) => reduce_via_c(v, &plan, kind),
        TensorData::U64(v) => reduce_typed(v, &plan, kind),
        TensorData::Bool(v) if matches!(kind, Kind::Max | Kind::Min) => {
            let bytes: Vec<u8> = v.iter().map(|&b| b as u8).collect();
            match reduce_via_c(&bytes, &plan, kind) {
                TensorData::U8(r) => TensorData::Bool(r.into_iter().map(|b| b != 0).collect()),
                _ => return Err(OpError::new("internal: bool reduction produced a non-u8 result")),
            }
        }
        other => bail!("{} does not support {} tensors", kind.name(), other.dtype()),
    };
    Ok(Tensor::new(out_shape, data)?)
}

// ---------------------------------------------------------------------------------------------
// Reduce op.

/// Where the axes come from.
enum AxesSrc {
    /// Known at build time (attribute or constant input); empty = all or none per noop.
    Fixed(Vec<i64>),
    /// Input 1 at run time (may be omitted).
    Input,
}

struct ReduceOp {
    kind: Kind,
    axes: AxesSrc,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

impl ReduceOp {
    /// Normalised axes for a given rank; None = reduce nothing.
    fn resolve(&self, axes: &[i64], rank: usize) -> OpResult<Vec<usize>> {
        if axes.is_empty() {
            return Ok(if self.noop_with_empty_axes { Vec::new() } else { (0..rank).collect() });
        }
        let mut out = Vec::with_capacity(axes.len());
        for &a in axes {
            let a = norm_axis(a, rank)?;
            if rank == 0 {
                continue;
            }
            if !out.contains(&a) {
                out.push(a);
            }
        }
        Ok(out)
    }
}

impl Op for ReduceOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let axes_owned;
        let axes: &[i64] = match &self.axes {
            AxesSrc::Fixed(a) => a,
            AxesSrc::Input => match inputs.opt_tensor(1)? {
                Some(t) => {
                    axes_owned = t.to_i64_vec()?;
                    &axes_owned
                }
                None => &[],
            },
        };
        let axes = self.resolve(axes, x.rank())?;
        Ok(vec![Value::Tensor(reduce_tensor(x, &axes, self.keepdims, self.kind)?)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], consts: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let t = inputs.first().copied().flatten()?;
        let dtype = t.tensor_dtype()?;
        let shape = t.tensor_shape()?;
        let axes: Vec<i64> = match &self.axes {
            AxesSrc::Fixed(a) => a.clone(),
            AxesSrc::Input => match (inputs.get(1).copied().flatten(), consts.get(1).copied().flatten()) {
                (_, Some(c)) => c.to_i64_vec().ok()?,
                (None, None) => Vec::new(),
                (Some(_), None) => return None,
            },
        };
        let axes = self.resolve(&axes, shape.rank()).ok()?;
        let dims = shape
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                if axes.contains(&i) {
                    self.keepdims.then_some(Dim::Fixed(1))
                } else {
                    Some(d.clone())
                }
            })
            .collect();
        Some(vec![ValueType::tensor(dtype, Some(Shape(dims)))])
    }
}

fn build_reduce(n: &NodeInfo, kind: Kind) -> OpResult<Box<dyn Op>> {
    let keepdims = n.attr_int_or("keepdims", 1)? != 0;
    let noop_with_empty_axes = n.attr_int_or("noop_with_empty_axes", 0)? != 0;
    let axes = if n.opset < kind.axes_input_since() {
        AxesSrc::Fixed(n.attr_ints("axes")?.unwrap_or_default())
    } else if n.num_inputs < 2 {
        AxesSrc::Fixed(Vec::new())
    } else if let Some(t) = n.const_tensor(1) {
        AxesSrc::Fixed(t.to_i64_vec()?)
    } else {
        AxesSrc::Input
    };
    Ok(Box::new(ReduceOp { kind, axes, keepdims, noop_with_empty_axes }))
}

// ---------------------------------------------------------------------------------------------
// ArgMax / ArgMin.

struct ArgOp {
    max: bool,
    axis: i64,
    keepdims: bool,
    last: bool,
}

/// Index of the extreme along the middle axis of [outer, n, inner]; NaN counts as the extreme.
fn arg_typed<E: Num>(x: &[E], outer: usize, n: usize, inner: usize, max: bool, last: bool) -> Vec<i64> {
    let mut out = vec![0i64; outer * inner];
    if n == 0 {
        return out;
    }
    let better = |v: E::C, best: E::C| -> bool {
        if best.is_nan() {
            return last && v.is_nan();
        }
        if v.is_nan() {
            return true;
        }
        match (max, last) {
            (true, false) => v > best,
            (true, true) => v >= best,
            (false, false) => v < best,
            (false, true) => v <= best,
        }
    };
    let mut best: Vec<E::C> = Vec::with_capacity(inner);
    for o in 0..outer {
        let block = &x[o * n * inner..(o + 1) * n * inner];
        let res = &mut out[o * inner..(o + 1) * inner];
        best.clear();
        best.extend(block[..inner].iter().map(|v| v.to_c()));
        for k in 1..n {
            let row = &block[k * inner..(k + 1) * inner];
            for j in 0..inner {
                let v = row[j].to_c();
                if better(v, best[j]) {
                    best[j] = v;
                    res[j] = k as i64;
                }
            }
        }
    }
    out
}

impl Op for ArgOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let shape = x.shape();
        let axis = norm_axis(self.axis, shape.len())?;
        let (outer, n, inner) = if shape.is_empty() {
            (1, 1, 1)
        } else {
            (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product::<usize>())
        };
        let name = if self.max { "ArgMax" } else { "ArgMin" };
        if n == 0 && outer * inner > 0 {
            bail!("{name} over an empty axis {axis} of shape {shape:?}");
        }
        let (m, l) = (self.max, self.last);
        let out = match x.data() {
            // Other types run the f32/i64/u64 loops on exact, order-preserving copies.
            TensorData::F32(_)
            | TensorData::F64(_)
            | TensorData::F16(_)
            | TensorData::BF16(_)
            | TensorData::I8(_)
            | TensorData::I16(_)
            | TensorData::I32(_)
            | TensorData::I64(_)
            | TensorData::U8(_)
            | TensorData::U16(_)
            | TensorData::U32(_)
            | TensorData::U64(_)
            | TensorData::Bool(_) => match crate::ops::shape::order_keys(x.data()) {
                Keys::F32(v) => arg_typed(&v, outer, n, inner, m, l),
                Keys::F64(v) => arg_typed(v, outer, n, inner, m, l),
                Keys::I64(v) => arg_typed(&v, outer, n, inner, m, l),
                Keys::U64(v) => arg_typed(&v, outer, n, inner, m, l),
                Keys::Str(_) => bail!("{name} does not support {} tensors", x.dtype()),
            },
            other => bail!("{name} does not support {} tensors", other.dtype()),
        };
        let mut out_shape = shape.to_vec();
        if !out_shape.is_empty() {
            if self.keepdims {
                out_shape[axis] = 1;
            } else {
                out_shape.remove(axis);
            }
        }
        Ok(vec![Value::Tensor(Tensor::from_vec(out_shape, out)?)])
    }

    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let shape = inputs.first().copied().flatten()?.tensor_shape()?;
        let mut dims = shape.0.clone();
        if !dims.is_empty() {
            let axis = norm_axis(self.axis, dims.len()).ok()?;
            if self.keepdims {
                dims[axis] = Dim::Fixed(1);
            } else {
                dims.remove(axis);
            }
        }
        Some(vec![ValueType::tensor(DType::I64, Some(Shape(dims)))])
    }
}

fn build_arg(n: &NodeInfo, max: bool) -> OpResult<Box<dyn Op>> {
    Ok(Box::new(ArgOp {
        max,
        axis: n.attr_int_or("axis", 0)?,
        keepdims: n.attr_int_or("keepdims", 1)? != 0,
        last: n.attr_int_or("select_last_index", 0)? != 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(x: Vec<f32>, shape: &[usize], axes: &[usize], keep: bool, kind: Kind) -> (Vec<usize>, Vec<f32>) {
        let t = Tensor::from_vec(shape.to_vec(), x).unwrap();
        let r = reduce_tensor(&t, axes, keep, kind).unwrap();
        (r.shape().to_vec(), r.as_slice::<f32>().unwrap().to_vec())
    }

    #[test]
    fn sum_inner_outer_middle_and_split_axes() {
        let x: Vec<f32> = (0..24).map(|i| i as f32).collect();
        // Innermost axis.
        let (s, v) = red(x.clone(), &[2, 3, 4], &[2], false, Kind::Sum);
        assert_eq!(s, vec![2, 3]);
        assert_eq!(v, vec![6.0, 22.0, 38.0, 54.0, 70.0, 86.0]);
        // Middle axis.
        let (s, v) = red(x.clone(), &[2, 3, 4], &[1], true, Kind::Sum);
        assert_eq!(s, vec![2, 1, 4]);
        assert_eq!(v, vec![12.0, 15.0, 18.0, 21.0, 48.0, 51.0, 54.0, 57.0]);
        // Axes 0 and 2 (not adjacent).
        let (s, v) = red(x, &[2, 3, 4], &[0, 2], false, Kind::Sum);
        assert_eq!(s, vec![3]);
        assert_eq!(v, vec![6.0 + 54.0, 22.0 + 70.0, 38.0 + 86.0]);
    }

    #[test]
    fn empty_sets_and_extremes() {
        let (s, v) = red(vec![], &[2, 0, 3], &[1], true, Kind::Prod);
        assert_eq!((s, v), (vec![2, 1, 3], vec![1.0; 6]));
        let (_, v) = red(vec![], &[2, 0], &[1], false, Kind::Max);
        assert_eq!(v, vec![f32::NEG_INFINITY; 2]);
        let (_, v) = red(vec![], &[2, 0], &[1], false, Kind::LogSumExp);
        assert_eq!(v, vec![f32::NEG_INFINITY; 2]);
        let (s, v) = red(vec![], &[2, 0, 3], &[2], true, Kind::Sum);
        assert_eq!((s, v), (vec![2, 0, 1], vec![]));
    }

    #[test]
    fn l2_logsumexp_mean() {
        let (_, v) = red(vec![3.0, 4.0], &[2], &[0], false, Kind::L2);
        assert_eq!(v, vec![5.0]);
        let (_, v) = red(vec![1000.0, 1000.0], &[2], &[0], false, Kind::LogSumExp);
        assert!((v[0] - (1000.0 + 2f32.ln())).abs() < 1e-3);
        let (_, v) = red(vec![1.0, 2.0, 3.0, 6.0], &[2, 2], &[0], false, Kind::Mean);
        assert_eq!(v, vec![2.0, 4.0]);
    }

    #[test]
    fn int_max_empty_is_type_min() {
        let t = Tensor::from_vec(vec![0, 2], Vec::<i32>::new()).unwrap();
        let r = reduce_tensor(&t, &[0], false, Kind::Max).unwrap();
        assert_eq!(r.as_slice::<i32>().unwrap(), &[i32::MIN, i32::MIN]);
    }

    #[test]
    fn argmax_first_and_last() {
        let x = [2.0f32, 2.0, 3.0, 10.0];
        assert_eq!(arg_typed(&x, 1, 2, 2, true, false), vec![1, 1]);
        assert_eq!(arg_typed(&x, 2, 2, 1, true, false), vec![0, 1]);
        assert_eq!(arg_typed(&x, 2, 2, 1, true, true), vec![1, 1]);
        assert_eq!(arg_typed(&x, 2, 2, 1, false, true), vec![1, 0]);
    }
}
