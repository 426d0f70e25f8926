//! Matrix products: MatMul, Gemm, MatMulInteger, Einsum, Det, and the numeric element traits
//! (`GemmElem`, `Real`) that the nn family shares.

mod einsum;

use std::borrow::Cow;

use kiln_kernels::{sgemm_ex, sgemm_new, Epilogue, Gelu, Lhs, MatRef, PackedB, Rhs};
use kiln_tensor::{bf16, f16, DType, Shape, Tensor, TensorData, Value, ValueType};

use crate::error::OpResult;
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::util::broadcast_shapes;
use crate::registry::Registry;
use crate::{bail, ensure};

pub fn register(r: &mut Registry) {
    r.add("MatMul", 1, build_matmul);
    r.add("Gemm", 1, build_gemm);
    r.add("MatMulInteger", 10, |_| Ok(Box::new(MatMulIntegerOp)));
    r.add("Einsum", 12, einsum::build);
    r.add("Det", 11, |_| Ok(Box::new(DetOp)));
}

// ---------------------------------------------------------------------------------------------
// Element traits
// ---------------------------------------------------------------------------------------------

/// Element types with a matrix product: f32/f64 through the packed kernels, integers naively.
pub(crate) trait GemmElem: Copy + Default + Send + Sync + 'static {
    fn zero() -> Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// C[m×n] = A[m×k]·B[k×n] (+ C when `accumulate`), strides in elements.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize, k: usize, n: usize,
        a: &[Self], rsa: isize, csa: isize,
        b: &[Self], rsb: isize, csb: isize,
        accumulate: bool, c: &mut [Self], rsc: isize, csc: isize,
    );
    /// Like `gemm` into a contiguous C, splitting the work across up to `threads` threads itself.
    /// Returns false (computing nothing) for types without a threaded kernel.
    #[allow(clippy::too_many_arguments)]
    fn gemm_threaded(
        _m: usize, _k: usize, _n: usize,
        _a: &[Self], _rsa: isize, _csa: isize,
        _b: &[Self], _rsb: isize, _csb: isize,
        _accumulate: bool, _c: &mut [Self], _threads: usize,
    ) -> bool {
        false
    }
}

impl GemmElem for f32 {
    fn zero() -> Self { 0.0 }
    fn add(self, o: Self) -> Self { self + o }
    fn mul(self, o: Self) -> Self { self * o }
    fn gemm(m: usize, k: usize, n: usize, a: &[f32], rsa: isize, csa: isize, b: &[f32], rsb: isize, csb: isize, acc: bool, c: &mut [f32], rsc: isize, csc: isize) {
        if k == 0 {
            if !acc { zero_strided(m, n, c, rsc, csc); }
            return;
        }
        kiln_kernels::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, if acc { 1.0 } else { 0.0 }, c, rsc, csc)
    }
    fn gemm_threaded(m: usize, k: usize, n: usize, a: &[f32], rsa: isize, csa: isize, b: &[f32], rsb: isize, csb: isize, acc: bool, c: &mut [f32], threads: usize) -> bool {
        if m == 1 || rsa < 0 || csa < 0 || rsb < 0 || csb < 0 {
            return false;
        }
        let ep = Epilogue { beta: if acc { 1.0 } else { 0.0 }, ..Epilogue::default() };
        sgemm_ex(m, k, n, Lhs::Strided(MatRef::new(a, rsa, csa)), Rhs::Strided(MatRef::new(b, rsb, csb)), c, n as isize, 1, &ep, threads);
        true
    }
}

impl GemmElem for f64 {
    fn zero() -> Self { 0.0 }
    fn add(self, o: Self) -> Self { self + o }
    fn mul(self, o: Self) -> Self { self * o }
    fn gemm(m: usize, k: usize, n: usize, a: &[f64], rsa: isize, csa: isize, b: &[f64], rsb: isize, csb: isize, acc: bool, c: &mut [f64], rsc: isize, csc: isize) {
        if k == 0 {
            if !acc { zero_strided(m, n, c, rsc, csc); }
            return;
        }
        kiln_kernels::dgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, if acc { 1.0 } else { 0.0 }, c, rsc, csc)
    }
}

fn zero_strided<T: Default + Copy>(m: usize, n: usize, c: &mut [T], rsc: isize, csc: isize) {
    for i in 0..m {
        for j in 0..n {
            c[(i as isize * rsc + j as isize * csc) as usize] = T::default();
        }
    }
}

macro_rules! int_gemm_elem {
    ($($t:ty),*) => {$(
        impl GemmElem for $t {
            fn zero() -> Self { 0 }
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn gemm(m: usize, k: usize, n: usize, a: &[$t], rsa: isize, csa: isize, b: &[$t], rsb: isize, csb: isize, acc: bool, c: &mut [$t], rsc: isize, csc: isize) {
                naive_gemm(m, k, n, a, rsa, csa, b, rsb, csb, acc, c, rsc, csc)
            }
        }
    )*};
}
int_gemm_elem!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Straightforward i-p-j loop order GEMM for element types without a packed kernel.
#[allow(clippy::too_many_arguments)]
fn naive_gemm<T: GemmElem>(
    m: usize, k: usize, n: usize,
    a: &[T], rsa: isize, csa: isize,
    b: &[T], rsb: isize, csb: isize,
    acc: bool, c: &mut [T], rsc: isize, csc: isize,
) {
    let at = |i: usize, p: usize| a[(i as isize * rsa + p as isize * csa) as usize];
    let bt = |p: usize, j: usize| b[(p as isize * rsb + j as isize * csb) as usize];
    let mut row = vec![T::zero(); n];
    for i in 0..m {
        row.iter_mut().for_each(|x| *x = T::zero());
        for p in 0..k {
            let av = at(i, p);
            for (j, r) in row.iter_mut().enumerate() {
                *r = r.add(av.mul(bt(p, j)));
            }
        }
        for (j, r) in row.iter().enumerate() {
            let ci = (i as isize * rsc + j as isize * csc) as usize;
            c[ci] = if acc { c[ci].add(*r) } else { *r };
        }
    }
}

/// f32/f64 with the math the nn kernels need. f16/bf16 tensors are computed as f32.
pub(crate) trait Real:
    GemmElem
    + PartialOrd
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
{
    const ONE: Self;
    const NEG_INF: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, p: Self) -> Self;
    /// The tensor's elements as Self (borrowed when the dtype matches, converted otherwise).
    fn cow(t: &Tensor) -> OpResult<Cow<'_, [Self]>>;
    /// Wraps computed values as a tensor payload of `dtype` (converting when it differs).
    fn into_data(v: Vec<Self>, dtype: DType) -> OpResult<TensorData>;
}

macro_rules! real_impl {
    ($t:ty, $var:ident) => {
        impl Real for $t {
            const ONE: Self = 1.0;
            const NEG_INF: Self = <$t>::NEG_INFINITY;
            fn from_f64(x: f64) -> Self { x as $t }
            fn to_f64(self) -> f64 { self as f64 }
            fn exp(self) -> Self { <$t>::exp(self) }
            fn ln(self) -> Self { <$t>::ln(self) }
            fn sqrt(self) -> Self { <$t>::sqrt(self) }
            fn abs(self) -> Self { <$t>::abs(self) }
            fn powf(self, p: Self) -> Self { <$t>::powf(self, p) }
            fn cow(t: &Tensor) -> OpResult<Cow<'_, [Self]>> {
                #[allow(unreachable_patterns)]
                Ok(match t.data() {
                    TensorData::$var(v) => Cow::Borrowed(v.as_slice()),
                    TensorData::F32(v) => Cow::Owned(v.iter().map(|&x| x as $t).collect()),
                    TensorData::F64(v) => Cow::Owned(v.iter().map(|&x| x as $t).collect()),
                    TensorData::F16(v) => Cow::Owned(v.iter().map(|x| x.to_f32() as $t).collect()),
                    TensorData::BF16(v) => Cow::Owned(v.iter().map(|x| x.to_f32() as $t).collect()),
                    other => bail!("expected a float tensor, got {}", other.dtype()),
                })
            }
            fn into_data(v: Vec<Self>, dtype: DType) -> OpResult<TensorData> {
                #[allow(unreachable_patterns)]
                Ok(match dtype {
                    DType::$var => TensorData::$var(v),
                    DType::F32 => TensorData::F32(v.into_iter().map(|x| x as f32).collect()),
                    DType::F64 => TensorData::F64(v.into_iter().map(|x| x as f64).collect()),
                    DType::F16 => TensorData::F16(v.into_iter().map(|x| f16::from_f32(x as f32)).collect()),
                    DType::BF16 => TensorData::BF16(v.into_iter().map(|x| bf16::from_f32(x as f32)).collect()),
                    d => bail!("cannot store float results as {d}"),
                })
            }
        }
    };
}
real_impl!(f32, F32);
real_impl!(f64, F64);

/// Builds a tensor from computed values, converting to `dtype`.
pub(crate) fn real_tensor<T: Real>(shape: Vec<usize>, v: Vec<T>, dtype: DType) -> OpResult<Tensor> {
    Ok(Tensor::new(shape, T::into_data(v, dtype)?)?)
}

/// Calls `$body` with `$T` = f64 for double tensors and f32 for float/float16/bfloat16.
#[macro_export]
macro_rules! real_dispatch {
    ($dtype:expr, $name:expr, |$T:ident| $body:expr) => {{
        match $dtype {
            kiln_tensor::DType::F64 => { type $T = f64; $body }
            kiln_tensor::DType::F32 | kiln_tensor::DType::F16 | kiln_tensor::DType::BF16 => { type $T = f32; $body }
            other => return Err($crate::OpError(format!("{} does not support {} tensors", $name, other))),
        }
    }};
}

/// C = A·B for row-major A[m×k] (row stride `lda`), B[k×n] (strides given), C[m×n] contiguous;
/// splits the rows of C across threads when the product is large.
#[allow(clippy::too_many_arguments)]
pub(crate) fn par_gemm<T: GemmElem>(
    m: usize, k: usize, n: usize,
    a: &[T], rsa: isize, csa: isize,
    b: &[T], rsb: isize, csb: isize,
    accumulate: bool, c: &mut [T],
) {
    if m == 0 || n == 0 {
        return;
    }
    let work = m.saturating_mul(n).saturating_mul(k.max(1));
    let threads = num_threads();
    if T::gemm_threaded(m, k, n, a, rsa, csa, b, rsb, csb, accumulate, c, threads) {
        return;
    }
    if threads <= 1 || work < (1 << 18) || m < 2 * threads {
        T::gemm(m, k, n, a, rsa, csa, b, rsb, csb, accumulate, c, n as isize, 1);
        return;
    }
    let rows = m.div_ceil(threads);
    let chunks: Vec<(usize, &mut [T])> =
        c[..m * n].chunks_mut(rows * n).enumerate().map(|(i, ch)| (i * rows, ch)).collect();
    par_each(chunks, |(r0, ch)| {
        let mr = ch.len() / n;
        let aoff = (r0 as isize * rsa) as usize;
        T::gemm(mr, k, n, &a[aoff..], rsa, csa, b, rsb, csb, accumulate, ch, n as isize, 1);
    });
}

/// Parts to split a kernel into on this thread (see `kiln_kernels::par`).
pub(crate) fn num_threads() -> usize {
    kiln_kernels::par::threads()
}

/// Runs `f` on every item, in parallel where the run has a thread pool.
pub(crate) fn par_each<I: Send, F: Fn(I) + Sync + Send>(items: Vec<I>, f: F) {
    kiln_kernels::par::for_each(items, f);
}

// ---------------------------------------------------------------------------------------------
// MatMul
// ---------------------------------------------------------------------------------------------

/// Output shape of numpy matmul, plus (batch shape, m, k, n) and the operands' batch shapes.
struct MatMulDims {
    out: Vec<usize>,
    batch: Vec<usize>,
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
}

fn matmul_dims(a: &[usize], b: &[usize]) -> OpResult<MatMulDims> {
    ensure!(!a.is_empty() && !b.is_empty(), "MatMul inputs must have rank >= 1, got {a:?} and {b:?}");
    let (a_batch, m, ka) = if a.len() == 1 { (vec![], 1, a[0]) } else { (a[..a.len() - 2].to_vec(), a[a.len() - 2], a[a.len() - 1]) };
    let (b_batch, kb, n) = if b.len() == 1 { (vec![], b[0], 1) } else { (b[..b.len() - 2].to_vec(), b[b.len() - 2], b[b.len() - 1]) };
    ensure!(ka == kb, "MatMul inner dimensions differ: {a:?} x {b:?}");
    let batch = broadcast_shapes(&a_batch, &b_batch)?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(MatMulDims { out, batch, a_batch, b_batch, m, k: ka, n })
}

/// Flat offsets (in matrices) into an operand with batch shape `sub` for each index of `full`.
fn batch_offsets(sub: &[usize], full: &[usize]) -> Vec<usize> {
    crate::ops::util::broadcast_index_map(sub, full)
}

/// Numpy matmul of row-major buffers.
pub(crate) fn matmul_generic<T: GemmElem>(a: &[T], ashape: &[usize], b: &[T], bshape: &[usize]) -> OpResult<(Vec<usize>, Vec<T>)> {
    let d = matmul_dims(ashape, bshape)?;
    let total = kiln_tensor::checked_numel(&d.out)?;
    let mut out = vec![T::zero(); total];
    let (m, k, n) = (d.m, d.k, d.n);
    if total == 0 {
        return Ok((d.out, out));
    }
    let b_mats: usize = d.b_batch.iter().product();
    if b_mats == 1 && d.batch == d.a_batch {
        // B is one matrix: fold A's batch into the rows of a single GEMM.
        let rows = d.batch.iter().product::<usize>() * m;
        par_gemm(rows, k, n, a, k as isize, 1, b, n as isize, 1, false, &mut out);
        return Ok((d.out, out));
    }
    let ia = batch_offsets(&d.a_batch, &d.batch);
    let ib = batch_offsets(&d.b_batch, &d.batch);
    let mats = ia.len();
    let threads = num_threads();
    let work = mats.saturating_mul(m).saturating_mul(n).saturating_mul(k.max(1));
    if threads <= 1 || mats == 0 || work < BATCH_PAR_MIN_WORK {
        for (bi, c) in out.chunks_mut(m * n).enumerate() {
            T::gemm(m, k, n, &a[ia[bi] * m * k..], k as isize, 1, &b[ib[bi] * k * n..], n as isize, 1, false, c, n as isize, 1);
        }
        return Ok((d.out, out));
    }
    // Row blocks of every matrix, as many per matrix as make the total a multiple of the threads.
    let split = (threads / gcd(mats, threads)).min(m).max(1);
    let rows = m.div_ceil(split);
    let jobs: Vec<(usize, usize, &mut [T])> = out
        .chunks_mut(m * n)
        .enumerate()
        .flat_map(|(bi, c)| c.chunks_mut(rows * n).enumerate().map(move |(r, cc)| (bi, r * rows, cc)))
        .collect();
    par_each(jobs, |(bi, r0, c)| {
        let aoff = ia[bi] * m * k + r0 * k;
        let boff = ib[bi] * k * n;
        T::gemm(c.len() / n, k, n, &a[aoff..], k as isize, 1, &b[boff..], n as isize, 1, false, c, n as isize, 1);
    });
    Ok((d.out, out))
}

/// Multiply-adds below which a batch of products runs on one thread (waking the pool costs more).
const BATCH_PAR_MIN_WORK: usize = 1 << 18;

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn matmul_infer(a: &Shape, b: &Shape) -> Option<Shape> {
    if a.rank() == 0 || b.rank() == 0 {
        return None;
    }
    let ab = if a.rank() >= 2 { Shape(a.0[..a.rank() - 2].to_vec()) } else { Shape(vec![]) };
    let bb = if b.rank() >= 2 { Shape(b.0[..b.rank() - 2].to_vec()) } else { Shape(vec![]) };
    let mut out = crate::ops::util::broadcast_symbolic(&ab, &bb)?;
    if a.rank() >= 2 {
        out.0.push(a.0[a.rank() - 2].clone());
    }
    if b.rank() >= 2 {
        out.0.push(b.0[b.rank() - 1].clone());
    }
    Some(out)
}

/// A constant 2-D float32 right operand, packed once at load.
struct ConstRhs {
    shape: Vec<usize>,
    packed: PackedB,
}

impl ConstRhs {
    /// Packs B (or Bᵀ when `trans`) of a constant 2-D float32 tensor.
    fn new(b: &Tensor, trans: bool) -> Option<ConstRhs> {
        let data = b.as_slice::<f32>().ok()?;
        let s = b.shape();
        if s.len() != 2 || s[0] == 0 || s[1] == 0 {
            return None;
        }
        let (k, n) = if trans { (s[1], s[0]) } else { (s[0], s[1]) };
        let view = if trans { MatRef::new(data, 1, k as isize) } else { MatRef::new(data, n as isize, 1) };
        Some(ConstRhs { shape: s.to_vec(), packed: PackedB::new(k, n, view) })
    }
}

/// The GELU a fused product applies (the [`crate::fuse::MATMUL_GELU`] attribute).
fn fused_gelu(n: &NodeInfo) -> OpResult<Option<Gelu>> {
    Ok(match n.attr_string(crate::fuse::MATMUL_GELU)?.as_deref() {
        None => None,
        Some("none") => Some(Gelu::Erf),
        Some("tanh") => Some(Gelu::Tanh),
        Some(other) => bail!("unknown fused GELU form '{other}'"),
    })
}

/// Applies a fused GELU to a product computed outside the packed path (always float32: fusion
/// requires a float32 right operand).
fn apply_gelu(mut t: Tensor, gelu: Option<Gelu>) -> OpResult<Tensor> {
    match gelu {
        Some(Gelu::Erf) => kiln_kernels::vmath::gelu(t.as_slice_mut::<f32>()?),
        Some(Gelu::Tanh) => kiln_kernels::vmath::gelu_tanh(t.as_slice_mut::<f32>()?),
        None => {}
    }
    Ok(t)
}

/// `A[..., k] · B[k, n] (+ bias[n])` with B prepacked, when A is float32 with the matching last
/// dimension.
fn matmul_packed(a: &Tensor, rhs: &ConstRhs, bias: Option<&[f32]>, gelu: Option<Gelu>) -> OpResult<Option<Tensor>> {
    let Ok(av) = a.as_slice::<f32>() else { return Ok(None) };
    let (k, n) = (rhs.packed.depth(), rhs.packed.cols());
    if bias.is_some_and(|b| b.len() != n) {
        return Ok(None);
    }
    let s = a.shape();
    if s.is_empty() || s[s.len() - 1] != k {
        return Ok(None);
    }
    let rows: usize = s[..s.len() - 1].iter().product();
    let mut out_shape = s[..s.len() - 1].to_vec();
    out_shape.push(n);
    kiln_tensor::checked_numel(&out_shape)?;
    let ep = Epilogue { col_bias: bias, gelu, ..Epilogue::default() };
    // The output is written by the product without being zeroed first.
    let out = sgemm_new(rows, k, n, Lhs::Strided(MatRef::new(av, k as isize, 1)), Rhs::Packed(&rhs.packed), &ep, num_threads());
    Ok(Some(Tensor::from_vec(out_shape, out)?))
}

/// `t + bias` for a float32 product `t` [..., n] and bias [n] (the fused MatMul's third input).
fn add_col_bias(mut t: Tensor, bias: &[f32]) -> OpResult<Tensor> {
    let n = t.shape().last().copied().unwrap_or(1);
    ensure!(bias.len() == n, "MatMul bias has {} elements, the product has {n} columns", bias.len());
    let v = t.as_slice_mut::<f32>()?;
    for row in v.chunks_mut(n.max(1)) {
        row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
    }
    Ok(t)
}

fn build_matmul(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let rhs = n.const_tensor(1).and_then(|b| ConstRhs::new(b, false));
    Ok(Box::new(MatMulOp { rhs, gelu: fused_gelu(n)? }))
}

struct MatMulOp {
    rhs: Option<ConstRhs>,
    /// GELU fused into the product.
    gelu: Option<Gelu>,
}

impl Op for MatMulOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let a = inputs.tensor(0)?;
        // A third input exists only where fusion folded a following bias Add into the product.
        let bias = match inputs.opt_tensor(2)? {
            Some(t) => {
                ensure!(t.dtype() == DType::F32 && t.rank() == 1, "MatMul bias must be a float32 vector, got {} {:?}", t.dtype(), t.shape());
                Some(t.as_slice::<f32>()?)
            }
            None => None,
        };
        let b = match (inputs.opt_tensor(1)?, &self.rhs) {
            (Some(b), _) => b,
            // B was captured at load: only the packed copy exists.
            (None, Some(rhs)) => {
                ensure!(a.dtype() == DType::F32, "MatMul operands differ in type: {} and float32", a.dtype());
                return match matmul_packed(a, rhs, bias, self.gelu)? {
                    Some(t) => Ok(vec![Value::Tensor(t)]),
                    None => bail!("MatMul inner dimensions differ: A {:?} and B {:?} (bias {:?})", a.shape(), rhs.shape, bias.map(|b| b.len())),
                };
            }
            (None, None) => bail!("MatMul needs input B"),
        };
        ensure!(a.dtype() == b.dtype(), "MatMul operands differ in type: {} and {}", a.dtype(), b.dtype());
        if let Some(rhs) = &self.rhs {
            if rhs.shape == b.shape() {
                if let Some(t) = matmul_packed(a, rhs, bias, self.gelu)? {
                    return Ok(vec![Value::Tensor(t)]);
                }
            }
        }
        let t = matmul_tensors(a, b)?;
        let t = match bias {
            Some(bias) => add_col_bias(t, bias)?,
            None => t,
        };
        Ok(vec![Value::Tensor(apply_gelu(t, self.gelu)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let a = inputs.first().copied().flatten()?;
        let dtype = a.tensor_dtype()?;
        let shape = match (a.tensor_shape(), inputs.get(1).copied().flatten().and_then(|t| t.tensor_shape())) {
            (Some(sa), Some(sb)) => matmul_infer(sa, sb),
            _ => None,
        };
        Some(vec![ValueType::tensor(dtype, shape)])
    }
    fn captures_const_input(&self, i: usize) -> bool {
        i == 1 && self.rhs.is_some()
    }
}

pub(crate) fn matmul_tensors(a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    macro_rules! direct {
        ($x:expr, $y:expr) => {{
            let (s, v) = matmul_generic($x, a.shape(), $y, b.shape())?;
            Tensor::from_vec(s, v)?
        }};
    }
    Ok(match (a.data(), b.data()) {
        (TensorData::F32(x), TensorData::F32(y)) => direct!(x, y),
        (TensorData::F64(x), TensorData::F64(y)) => direct!(x, y),
        (TensorData::I32(x), TensorData::I32(y)) => direct!(x, y),
        (TensorData::I64(x), TensorData::I64(y)) => direct!(x, y),
        (TensorData::U32(x), TensorData::U32(y)) => direct!(x, y),
        (TensorData::U64(x), TensorData::U64(y)) => direct!(x, y),
        (TensorData::I16(x), TensorData::I16(y)) => direct!(x, y),
        (TensorData::U16(x), TensorData::U16(y)) => direct!(x, y),
        (TensorData::I8(x), TensorData::I8(y)) => direct!(x, y),
        (TensorData::U8(x), TensorData::U8(y)) => direct!(x, y),
        (TensorData::F16(_), TensorData::F16(_)) | (TensorData::BF16(_), TensorData::BF16(_)) => {
            let x = f32::cow(a)?;
            let y = f32::cow(b)?;
            let (s, v) = matmul_generic(&x, a.shape(), &y, b.shape())?;
            real_tensor(s, v, a.dtype())?
        }
        (x, y) => bail!("MatMul does not support {} x {} tensors", x.dtype(), y.dtype()),
    })
}

// ---------------------------------------------------------------------------------------------
// Gemm
// ---------------------------------------------------------------------------------------------

struct GemmOp {
    alpha: f64,
    beta: f64,
    trans_a: bool,
    trans_b: bool,
    /// Prepacked constant float32 B.
    rhs: Option<ConstRhs>,
    /// Constant C of shape [n] or [1, n] times beta, with C's shape, fused as a column bias.
    col_bias: Option<(Vec<usize>, Vec<f32>)>,
    /// The packed path always applies (no C, or C fused), so the raw B is not kept.
    b_captured: bool,
    /// GELU fused into the product.
    gelu: Option<Gelu>,
}

fn build_gemm(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let alpha = n.attr_float_or("alpha", 1.0)? as f64;
    let beta = n.attr_float_or("beta", 1.0)? as f64;
    let trans_a = n.attr_int_or("transA", 0)? != 0;
    let trans_b = n.attr_int_or("transB", 0)? != 0;
    let rhs = n.const_tensor(1).and_then(|b| ConstRhs::new(b, trans_b));
    let col_bias = match (&rhs, n.const_tensor(2)) {
        (Some(r), Some(c)) => {
            let cols = r.packed.cols();
            let s = c.shape();
            let per_col = (s.len() == 1 && s[0] == cols) || (s.len() == 2 && s[0] == 1 && s[1] == cols);
            match c.as_slice::<f32>() {
                Ok(v) if per_col => Some((s.to_vec(), v.iter().map(|&x| x * beta as f32).collect())),
                _ => None,
            }
        }
        _ => None,
    };
    let b_captured = rhs.is_some() && (n.num_inputs < 3 || col_bias.is_some());
    Ok(Box::new(GemmOp { alpha, beta, trans_a, trans_b, rhs, col_bias, b_captured, gelu: fused_gelu(n)? }))
}

impl GemmOp {
    /// The prepacked float32 path: alpha and a per-column C fused into the kernel's epilogue.
    fn run_packed(&self, a: &Tensor, b: Option<&Tensor>, c: Option<&Tensor>) -> OpResult<Option<Tensor>> {
        let Some(rhs) = &self.rhs else { return Ok(None) };
        let Ok(av) = a.as_slice::<f32>() else { return Ok(None) };
        if b.is_some_and(|b| rhs.shape != b.shape()) || a.rank() != 2 {
            return Ok(None);
        }
        let bias = match (c, &self.col_bias) {
            (None, _) => None,
            (Some(c), Some((cs, v))) if c.shape() == cs.as_slice() => Some(v.as_slice()),
            _ => return Ok(None),
        };
        let (k, n) = (rhs.packed.depth(), rhs.packed.cols());
        let s = a.shape();
        let (m, ka) = if self.trans_a { (s[1], s[0]) } else { (s[0], s[1]) };
        ensure!(ka == k, "Gemm inner dimensions differ: A {s:?} (transA={}) and B {:?} (transB={})", self.trans_a, rhs.shape, self.trans_b);
        let view = if self.trans_a { MatRef::new(av, 1, m as isize) } else { MatRef::new(av, k as isize, 1) };
        kiln_tensor::checked_numel(&[m, n])?;
        let ep = Epilogue { alpha: self.alpha as f32, col_bias: bias, gelu: self.gelu, ..Epilogue::default() };
        let out = sgemm_new(m, k, n, Lhs::Strided(view), Rhs::Packed(&rhs.packed), &ep, num_threads());
        Ok(Some(Tensor::from_vec(vec![m, n], out)?))
    }

    fn compute<T: GemmElem>(
        &self, a: &[T], ashape: &[usize], b: &[T], bshape: &[usize], c: Option<(&[T], &[usize])>,
        alpha: impl Fn(T) -> T, beta: impl Fn(T) -> T, unit_alpha: bool,
    ) -> OpResult<(Vec<usize>, Vec<T>)> {
        ensure!(ashape.len() == 2 && bshape.len() == 2, "Gemm inputs must be 2-D, got {ashape:?} and {bshape:?}");
        let (m, ka) = if self.trans_a { (ashape[1], ashape[0]) } else { (ashape[0], ashape[1]) };
        let (kb, n) = if self.trans_b { (bshape[1], bshape[0]) } else { (bshape[0], bshape[1]) };
        ensure!(ka == kb, "Gemm inner dimensions differ: A {ashape:?} (transA={}) and B {bshape:?} (transB={})", self.trans_a, self.trans_b);
        let k = ka;
        let (rsa, csa) = if self.trans_a { (1, m as isize) } else { (k as isize, 1) };
        let (rsb, csb) = if self.trans_b { (1, k as isize) } else { (n as isize, 1) };
        let mut out = vec![T::zero(); m * n];
        par_gemm(m, k, n, a, rsa, csa, b, rsb, csb, false, &mut out);
        if !unit_alpha {
            out.iter_mut().for_each(|x| *x = alpha(*x));
        }
        if let Some((c, cshape)) = c {
            let full = broadcast_shapes(cshape, &[m, n])?;
            ensure!(full == [m, n], "Gemm C of shape {cshape:?} does not broadcast to [{m}, {n}]");
            if m * n > 0 {
                let idx = crate::ops::util::broadcast_index_map(cshape, &[m, n]);
                for (o, &i) in out.iter_mut().zip(&idx) {
                    *o = o.add(beta(c[i]));
                }
            }
        }
        Ok((vec![m, n], out))
    }
}

impl Op for GemmOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let a = inputs.tensor(0)?;
        let c = inputs.opt_tensor(2)?;
        let c = if self.beta == 0.0 { None } else { c };
        let Some(b) = inputs.opt_tensor(1)? else {
            // B was captured at load: only the packed copy exists.
            ensure!(a.dtype() == DType::F32, "Gemm operands differ in type: {} and float32", a.dtype());
            ensure!(a.rank() == 2, "Gemm inputs must be 2-D, got A of shape {:?}", a.shape());
            return match self.run_packed(a, None, c)? {
                Some(t) => Ok(vec![Value::Tensor(t)]),
                None => bail!("Gemm C of shape {:?} does not match the packed B", c.map(|c| c.shape().to_vec())),
            };
        };
        ensure!(a.dtype() == b.dtype(), "Gemm operands differ in type: {} and {}", a.dtype(), b.dtype());
        if let Some(t) = self.run_packed(a, Some(b), c)? {
            return Ok(vec![Value::Tensor(t)]);
        }
        macro_rules! ints {
            ($t:ty) => {{
                let cs = match c { Some(c) => Some((c.as_slice::<$t>()?, c.shape())), None => None };
                let (al, be) = (self.alpha as $t, self.beta as $t);
                let (s, v) = self.compute(a.as_slice::<$t>()?, a.shape(), b.as_slice::<$t>()?, b.shape(), cs,
                    |x| x.wrapping_mul(al), |x| x.wrapping_mul(be), self.alpha == 1.0)?;
                Tensor::from_vec(s, v)?
            }};
        }
        let t = match a.dtype() {
            DType::I32 => ints!(i32),
            DType::I64 => ints!(i64),
            DType::U32 => ints!(u32),
            DType::U64 => ints!(u64),
            dt => real_dispatch!(dt, "Gemm", |T| {
                let av = T::cow(a)?;
                let bv = T::cow(b)?;
                let cv = match c { Some(c) => Some(T::cow(c)?), None => None };
                let cs = cv.as_deref().zip(c.map(|c| c.shape()));
                let (al, be) = (T::from_f64(self.alpha), T::from_f64(self.beta));
                let (s, v) = self.compute(&av, a.shape(), &bv, b.shape(), cs, |x| x * al, |x| x * be, self.alpha == 1.0)?;
                real_tensor(s, v, dt)?
            }),
        };
        Ok(vec![Value::Tensor(apply_gelu(t, self.gelu)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let a = inputs.first().copied().flatten()?;
        let dtype = a.tensor_dtype()?;
        let shape = (|| {
            let sa = a.tensor_shape()?;
            let sb = inputs.get(1).copied().flatten()?.tensor_shape()?;
            if sa.rank() != 2 || sb.rank() != 2 {
                return None;
            }
            let m = sa.0[if self.trans_a { 1 } else { 0 }].clone();
            let n = sb.0[if self.trans_b { 0 } else { 1 }].clone();
            Some(Shape(vec![m, n]))
        })();
        Some(vec![ValueType::tensor(dtype, shape)])
    }
    fn captures_const_input(&self, i: usize) -> bool {
        i == 1 && self.b_captured
    }
}

// ---------------------------------------------------------------------------------------------
// MatMulInteger
// ---------------------------------------------------------------------------------------------

/// Integer tensor (int8/uint8/...) widened to i32.
pub(crate) fn widen_i32(t: &Tensor) -> OpResult<Vec<i32>> {
    Ok(match t.data() {
        TensorData::U8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::U16(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I16(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I32(v) => v.clone(),
        other => bail!("expected an 8- or 16-bit integer tensor, got {}", other.dtype()),
    })
}

struct MatMulIntegerOp;

impl Op for MatMulIntegerOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let a = inputs.tensor(0)?;
        let b = inputs.tensor(1)?;
        let mut av = widen_i32(a)?;
        let mut bv = widen_i32(b)?;
        let d = matmul_dims(a.shape(), b.shape())?;
        if let Some(z) = inputs.opt_tensor(2)? {
            let z = widen_i32(z)?;
            let (m, k) = (d.m, d.k);
            match z.len() {
                0 => {}
                1 => av.iter_mut().for_each(|x| *x -= z[0]),
                l if l == m && a.rank() >= 2 => {
                    for (r, row) in av.chunks_mut(k.max(1)).enumerate() {
                        let zz = z[r % m];
                        row.iter_mut().for_each(|x| *x -= zz);
                    }
                }
                l => bail!("a_zero_point has {l} elements; expected 1 or {m}"),
            }
        }
        if let Some(z) = inputs.opt_tensor(3)? {
            let z = widen_i32(z)?;
            let n = d.n;
            match z.len() {
                0 => {}
                1 => bv.iter_mut().for_each(|x| *x -= z[0]),
                l if l == n => {
                    for (i, x) in bv.iter_mut().enumerate() {
                        *x -= z[i % n];
                    }
                }
                l => bail!("b_zero_point has {l} elements; expected 1 or {n}"),
            }
        }
        let (s, v) = matmul_generic(&av, a.shape(), &bv, b.shape())?;
        Ok(vec![Value::Tensor(Tensor::from_vec(s, v)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let sa = inputs.first().copied().flatten().and_then(|t| t.tensor_shape());
        let sb = inputs.get(1).copied().flatten().and_then(|t| t.tensor_shape());
        let shape = match (sa, sb) {
            (Some(a), Some(b)) => matmul_infer(a, b),
            _ => None,
        };
        Some(vec![ValueType::tensor(DType::I32, shape)])
    }
}

// ---------------------------------------------------------------------------------------------
// Det
// ---------------------------------------------------------------------------------------------

struct DetOp;

fn det_one<T: Real>(m: &mut [T], n: usize) -> T {
    let mut det = T::ONE;
    for col in 0..n {
        let mut piv = col;
        let mut best = m[col * n + col].abs();
        for r in col + 1..n {
            let v = m[r * n + col].abs();
            if v > best {
                best = v;
                piv = r;
            }
        }
        if best == T::zero() {
            return T::zero();
        }
        if piv != col {
            for j in 0..n {
                m.swap(col * n + j, piv * n + j);
            }
            det = -det;
        }
        let p = m[col * n + col];
        det = det * p;
        for r in col + 1..n {
            let f = m[r * n + col] / p;
            if f != T::zero() {
                for j in col..n {
                    let v = m[col * n + j];
                    m[r * n + j] = m[r * n + j] - f * v;
                }
            }
        }
    }
    det
}

impl Op for DetOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let s = x.shape();
        ensure!(s.len() >= 2 && s[s.len() - 1] == s[s.len() - 2], "Det needs [..., M, M] input, got {s:?}");
        let n = s[s.len() - 1];
        let out_shape = s[..s.len() - 2].to_vec();
        let t = real_dispatch!(x.dtype(), "Det", |T| {
            let v = T::cow(x)?;
            let mut out = Vec::new();
            if n == 0 {
                out = vec![T::ONE; out_shape.iter().product()];
            } else {
                for mat in v.chunks(n * n) {
                    let mut m = mat.to_vec();
                    out.push(det_one(&mut m, n));
                }
            }
            real_tensor(out_shape, out, x.dtype())?
        });
        Ok(vec![Value::Tensor(t)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let a = inputs.first().copied().flatten()?;
        let shape = a.tensor_shape().filter(|s| s.rank() >= 2).map(|s| Shape(s.0[..s.rank() - 2].to_vec()));
        Some(vec![ValueType::tensor(a.tensor_dtype()?, shape)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_broadcast_batches() {
        // a: [2,1,2,2], b: [3,2,1] -> [2,3,2,1]
        let a: Vec<f32> = vec![1., 2., 3., 4., 5., 6., 7., 8.];
        let b: Vec<f32> = vec![1., 0., 0., 1., 1., 1.];
        let (s, v) = matmul_generic(&a, &[2, 1, 2, 2], &b, &[3, 2, 1]).unwrap();
        assert_eq!(s, vec![2, 3, 2, 1]);
        assert_eq!(v, vec![1., 3., 2., 4., 3., 7., 5., 7., 6., 8., 11., 15.]);
    }

    #[test]
    fn batched_products_split_over_threads_match_naive() {
        // Three matrices on two threads: each is split into row blocks.
        let _pool = kiln_kernels::par::enter(kiln_kernels::par::build_pool(2));
        let (bs, m, k, n) = (3usize, 37usize, 41usize, 29usize);
        let a: Vec<f32> = (0..bs * m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
        let b: Vec<f32> = (0..bs * k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
        let (s, v) = matmul_generic(&a, &[bs, m, k], &b, &[bs, k, n]).unwrap();
        assert_eq!(s, vec![bs, m, n]);
        for t in 0..bs {
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| a[(t * m + i) * k + p] as f64 * b[(t * k + p) * n + j] as f64).sum();
                    let got = v[(t * m + i) * n + j] as f64;
                    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "({t},{i},{j}): {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn col_bias_added_per_row() {
        let t = Tensor::from_vec(vec![2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let t = add_col_bias(t, &[10., 20., 30.]).unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[11., 22., 33., 14., 25., 36.]);
        let t = Tensor::from_vec(vec![2, 3], vec![0f32; 6]).unwrap();
        assert!(add_col_bias(t, &[1., 2.]).is_err());
    }

    #[test]
    fn matmul_vectors() {
        let (s, v) = matmul_generic(&[1i64, 2, 3], &[3], &[4i64, 5, 6], &[3]).unwrap();
        assert!(s.is_empty());
        assert_eq!(v, vec![32]);
    }

    #[test]
    fn det_2x2_and_singular() {
        let mut m = vec![1.0f64, 2.0, 3.0, 4.0];
        assert!((det_one(&mut m, 2) + 2.0).abs() < 1e-12);
        let mut s = vec![1.0f64, 2.0, 2.0, 4.0];
        assert_eq!(det_one(&mut s, 2), 0.0);
    }
}
