//! Einsum: equation parsing (explicit/implicit output, ellipsis), diagonals, reductions, and
//! pairwise contraction mapped onto batched GEMM.

use kiln_tensor::{DType, Tensor, Value, ValueType};

use super::{par_each, real_tensor, GemmElem, Real};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let eq = n.attr_string("equation")?.ok_or_else(|| OpError::new("Einsum needs an 'equation' attribute"))?;
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    // Validate the syntax now; dims are resolved at run time.
    parse_terms(&eq)?;
    Ok(Box::new(EinsumOp { eq }))
}

struct EinsumOp {
    eq: String,
}

/// One side of the equation: letters (as label ids) with an optional ellipsis position.
#[derive(Clone, Debug)]
struct Term {
    letters: Vec<u32>,
    ellipsis_at: Option<usize>,
}

fn letter_id(c: char) -> OpResult<u32> {
    match c {
        'a'..='z' => Ok(c as u32 - 'a' as u32),
        'A'..='Z' => Ok(26 + c as u32 - 'A' as u32),
        _ => bail!("Einsum: invalid character '{c}' in equation"),
    }
}

fn parse_term(s: &str) -> OpResult<Term> {
    let mut letters = Vec::new();
    let mut ellipsis_at = None;
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            ensure!(ellipsis_at.is_none(), "Einsum: term '{s}' has more than one ellipsis");
            ellipsis_at = Some(letters.len());
            rest = r;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            letters.push(letter_id(c)?);
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(Term { letters, ellipsis_at })
}

fn parse_terms(eq: &str) -> OpResult<(Vec<Term>, Option<Term>)> {
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq, None),
    };
    let inputs = lhs.split(',').map(parse_term).collect::<OpResult<Vec<_>>>()?;
    let out = rhs.map(parse_term).transpose()?;
    Ok((inputs, out))
}

const ELL_BASE: u32 = 1000;

/// An operand with one label per axis.
struct Operand<T> {
    labels: Vec<u32>,
    shape: Vec<usize>,
    data: Vec<T>,
}

/// Copies `src` viewed with `strides` (per output axis, in elements, possibly 0) into a contiguous
/// buffer of `shape`.
fn gather_strided<T: Copy>(src: &[T], shape: &[usize], strides: &[usize]) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    if shape.is_empty() {
        out.push(src[0]);
        return out;
    }
    let r = shape.len();
    let last = shape[r - 1];
    let ls = strides[r - 1];
    let mut idx = vec![0usize; r];
    let mut base = 0usize;
    loop {
        for j in 0..last {
            out.push(src[base + j * ls]);
        }
        // advance outer dims
        let mut d = r - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            base += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            base -= strides[d] * idx[d];
            idx[d] = 0;
        }
    }
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    kiln_tensor::strides_of(shape)
}

impl<T: GemmElem> Operand<T> {
    /// Takes diagonals of repeated labels and expands size-1 dims to the global sizes.
    fn normalize(self, sizes: &dyn Fn(u32) -> usize) -> Operand<T> {
        let st = contiguous_strides(&self.shape);
        let mut labels: Vec<u32> = Vec::new();
        let mut strides: Vec<usize> = Vec::new();
        let mut shape: Vec<usize> = Vec::new();
        for (i, &l) in self.labels.iter().enumerate() {
            let s = if self.shape[i] == 1 && sizes(l) != 1 { 0 } else { st[i] };
            if let Some(p) = labels.iter().position(|&x| x == l) {
                strides[p] += s;
            } else {
                labels.push(l);
                strides.push(s);
                shape.push(sizes(l));
            }
        }
        let identity = labels.len() == self.labels.len() && strides == st && shape == self.shape;
        let data = if identity { self.data } else { gather_strided(&self.data, &shape, &strides) };
        Operand { labels, shape, data }
    }

    /// Sums out every axis whose label is not in `keep`.
    fn sum_except(self, keep: &dyn Fn(u32) -> bool) -> Operand<T> {
        let kept: Vec<usize> = (0..self.labels.len()).filter(|&i| keep(self.labels[i])).collect();
        if kept.len() == self.labels.len() {
            return self;
        }
        let summed: Vec<usize> = (0..self.labels.len()).filter(|&i| !keep(self.labels[i])).collect();
        let perm: Vec<usize> = kept.iter().chain(&summed).copied().collect();
        let p = self.permute(&perm);
        let inner: usize = summed.iter().map(|&i| self.shape[i]).product();
        let outer: usize = kept.iter().map(|&i| self.shape[i]).product();
        let mut data = Vec::with_capacity(outer);
        if inner == 0 {
            data.resize(outer, T::zero());
        } else {
            for ch in p.chunks(inner) {
                data.push(ch.iter().fold(T::zero(), |a, &b| a.add(b)));
            }
        }
        Operand {
            labels: kept.iter().map(|&i| self.labels[i]).collect(),
            shape: kept.iter().map(|&i| self.shape[i]).collect(),
            data,
        }
    }

    /// Data with axes reordered by `perm`.
    fn permute(&self, perm: &[usize]) -> Vec<T> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return self.data.clone();
        }
        let st = contiguous_strides(&self.shape);
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let strides: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
        gather_strided(&self.data, &shape, &strides)
    }
}

/// Contracts two operands, keeping the labels `keep` accepts.
fn contract<T: GemmElem>(a: Operand<T>, b: Operand<T>, keep: &dyn Fn(u32) -> bool) -> Operand<T> {
    let (a_labels, b_labels) = (a.labels.clone(), b.labels.clone());
    let in_b = |l: u32| b_labels.contains(&l);
    let in_a = |l: u32| a_labels.contains(&l);
    let a = a.sum_except(&|l| keep(l) || in_b(l));
    let b = b.sum_except(&|l| keep(l) || in_a(l));
    let pos = |o: &Operand<T>, l: u32| o.labels.iter().position(|&x| x == l).unwrap_or(0);
    let size = |o: &Operand<T>, l: u32| o.shape[pos(o, l)];
    let batch: Vec<u32> = a.labels.iter().copied().filter(|&l| b.labels.contains(&l) && keep(l)).collect();
    let contracted: Vec<u32> = a.labels.iter().copied().filter(|&l| b.labels.contains(&l) && !keep(l)).collect();
    let a_only: Vec<u32> = a.labels.iter().copied().filter(|&l| !b.labels.contains(&l)).collect();
    let b_only: Vec<u32> = b.labels.iter().copied().filter(|&l| !a.labels.contains(&l)).collect();
    let nb: usize = batch.iter().map(|&l| size(&a, l)).product();
    let m: usize = a_only.iter().map(|&l| size(&a, l)).product();
    let k: usize = contracted.iter().map(|&l| size(&a, l)).product();
    let n: usize = b_only.iter().map(|&l| size(&b, l)).product();
    let pa: Vec<usize> = batch.iter().chain(&a_only).chain(&contracted).map(|&l| pos(&a, l)).collect();
    let pb: Vec<usize> = batch.iter().chain(&contracted).chain(&b_only).map(|&l| pos(&b, l)).collect();
    let ad = a.permute(&pa);
    let bd = b.permute(&pb);
    let mut out = vec![T::zero(); nb * m * n];
    if m * n > 0 {
        let chunks: Vec<(usize, &mut [T])> = out.chunks_mut(m * n).enumerate().collect();
        par_each(chunks, |(bi, c)| {
            T::gemm(m, k, n, &ad[bi * m * k..], k as isize, 1, &bd[bi * k * n..], n as isize, 1, false, c, n as isize, 1);
        });
    }
    let labels: Vec<u32> = batch.iter().chain(&a_only).chain(&b_only).copied().collect();
    let shape: Vec<usize> = batch
        .iter()
        .map(|&l| size(&a, l))
        .chain(a_only.iter().map(|&l| size(&a, l)))
        .chain(b_only.iter().map(|&l| size(&b, l)))
        .collect();
    Operand { labels, shape, data: out }
}

/// Evaluates the equation on operands of one element type.
fn einsum<T: GemmElem>(eq: &str, ops: Vec<(Vec<usize>, Vec<T>)>) -> OpResult<(Vec<usize>, Vec<T>)> {
    let (terms, out_term) = parse_terms(eq)?;
    ensure!(terms.len() == ops.len(), "Einsum equation has {} operands but {} inputs were given", terms.len(), ops.len());
    // Ellipsis rank.
    let mut ell_rank = 0usize;
    for (t, (s, _)) in terms.iter().zip(&ops) {
        match t.ellipsis_at {
            Some(_) => {
                ensure!(s.len() >= t.letters.len(), "Einsum operand of rank {} is too small for its term", s.len());
                ell_rank = ell_rank.max(s.len() - t.letters.len());
            }
            None => ensure!(s.len() == t.letters.len(), "Einsum operand has rank {} but its term has {} labels", s.len(), t.letters.len()),
        }
    }
    let full_labels = |t: &Term, rank: usize| -> Vec<u32> {
        match t.ellipsis_at {
            None => t.letters.clone(),
            Some(p) => {
                let er = rank - t.letters.len();
                let mut v = t.letters[..p].to_vec();
                v.extend((ell_rank - er..ell_rank).map(|j| ELL_BASE + j as u32));
                v.extend_from_slice(&t.letters[p..]);
                v
            }
        }
    };
    let mut operands: Vec<Operand<T>> = Vec::with_capacity(ops.len());
    let mut sizes: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (t, (shape, data)) in terms.iter().zip(ops) {
        let labels = full_labels(t, shape.len());
        for (&l, &d) in labels.iter().zip(&shape) {
            let e = sizes.entry(l).or_insert(d);
            if *e == 1 {
                *e = d;
            } else if d != 1 && *e != d {
                bail!("Einsum: label has inconsistent sizes {} and {}", *e, d);
            }
        }
        operands.push(Operand { labels, shape, data });
    }
    let out_labels: Vec<u32> = match &out_term {
        Some(t) => {
            let mut v = t.letters[..t.ellipsis_at.unwrap_or(t.letters.len())].to_vec();
            if t.ellipsis_at.is_some() {
                v.extend((0..ell_rank).map(|j| ELL_BASE + j as u32));
                v.extend_from_slice(&t.letters[t.ellipsis_at.unwrap_or(0)..]);
            }
            for &l in &v {
                ensure!(sizes.contains_key(&l), "Einsum: output label does not appear in any input");
            }
            v
        }
        None => {
            let mut count: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
            for o in &operands {
                for &l in &o.labels {
                    if l < ELL_BASE {
                        *count.entry(l).or_default() += 1;
                    }
                }
            }
            let mut letters: Vec<u32> = count.into_iter().filter(|&(_, c)| c == 1).map(|(l, _)| l).collect();
            // numpy orders implicit output letters alphabetically (uppercase before lowercase).
            letters.sort_by_key(|&l| if l >= 26 { l - 26 } else { l + 26 });
            let mut v: Vec<u32> = (0..ell_rank).map(|j| ELL_BASE + j as u32).collect();
            v.extend(letters);
            v
        }
    };
    let size_of = |l: u32| sizes.get(&l).copied().unwrap_or(1);
    let mut operands: Vec<Operand<T>> = operands.into_iter().map(|o| o.normalize(&size_of)).collect();
    let mut cur = operands.remove(0);
    let rest = operands;
    {
        let needed_later: Vec<u32> = rest.iter().flat_map(|o| o.labels.iter().copied()).collect();
        cur = cur.sum_except(&|l| out_labels.contains(&l) || needed_later.contains(&l));
    }
    let mut rest = rest.into_iter();
    let mut remaining: Vec<Operand<T>> = rest.by_ref().collect();
    while !remaining.is_empty() {
        let next = remaining.remove(0);
        let later: Vec<u32> = remaining.iter().flat_map(|o| o.labels.iter().copied()).collect();
        cur = contract(cur, next, &|l| out_labels.contains(&l) || later.contains(&l));
    }
    let cur = cur.sum_except(&|l| out_labels.contains(&l));
    let perm: Vec<usize> = out_labels.iter().map(|l| cur.labels.iter().position(|x| x == l).unwrap_or(0)).collect();
    let data = cur.permute(&perm);
    let shape: Vec<usize> = out_labels.iter().map(|&l| size_of(l)).collect();
    Ok((shape, data))
}

impl Op for EinsumOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let ts = inputs.tensors()?;
        ensure!(!ts.is_empty(), "Einsum needs at least one input");
        let dt = ts[0].dtype();
        for t in &ts {
            ensure!(t.dtype() == dt, "Einsum inputs differ in type: {} and {}", dt, t.dtype());
        }
        // Integers are computed in wrapping i64 arithmetic, which agrees with wrapping arithmetic
        // in every narrower type after truncation: one instance serves all of them.
        macro_rules! ints {
            ($t:ty) => {{
                let ops = ts
                    .iter()
                    .map(|t| Ok((t.shape().to_vec(), t.as_slice::<$t>()?.iter().map(|&x| x as i64).collect())))
                    .collect::<OpResult<Vec<_>>>()?;
                let (s, v) = einsum::<i64>(&self.eq, ops)?;
                Tensor::from_vec(s, v.into_iter().map(|x| x as $t).collect::<Vec<$t>>())?
            }};
        }
        let out = match dt {
            DType::I32 => ints!(i32),
            DType::I64 => ints!(i64),
            DType::U32 => ints!(u32),
            DType::U64 => ints!(u64),
            DType::I8 => ints!(i8),
            DType::I16 => ints!(i16),
            DType::U8 => ints!(u8),
            DType::U16 => ints!(u16),
            _ => crate::real_dispatch!(dt, "Einsum", |T| {
                let ops = ts.iter().map(|t| Ok((t.shape().to_vec(), T::cow(t)?.into_owned()))).collect::<OpResult<Vec<_>>>()?;
                let (s, v) = einsum::<T>(&self.eq, ops)?;
                real_tensor(s, v, dt)?
            }),
        };
        Ok(vec![Value::Tensor(out)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let dt = inputs.first().copied().flatten()?.tensor_dtype()?;
        Some(vec![ValueType::tensor(dt, None)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_and_transpose() {
        let a = (vec![2, 2], vec![1.0f32, 2., 3., 4.]);
        let b = (vec![2, 2], vec![5.0f32, 6., 7., 8.]);
        let (s, v) = einsum("ij,jk->ik", vec![a.clone(), b]).unwrap();
        assert_eq!(s, vec![2, 2]);
        assert_eq!(v, vec![19., 22., 43., 50.]);
        let (s, v) = einsum("ij->ji", vec![a.clone()]).unwrap();
        assert_eq!(s, vec![2, 2]);
        assert_eq!(v, vec![1., 3., 2., 4.]);
        let (s, v) = einsum("ii", vec![a]).unwrap();
        assert!(s.is_empty());
        assert_eq!(v, vec![5.]);
    }

    #[test]
    fn ellipsis_diagonal() {
        // [2, 2, 2] batch diagonal: ...ii->...i
        let x = (vec![2, 2, 2], vec![1i64, 2, 3, 4, 5, 6, 7, 8]);
        let (s, v) = einsum("...ii->...i", vec![x]).unwrap();
        assert_eq!(s, vec![2, 2]);
        assert_eq!(v, vec![1, 4, 5, 8]);
    }

    #[test]
    fn implicit_output_is_sorted() {
        let a = (vec![2, 3], vec![0f64; 6]);
        let (s, _) = einsum("ba", vec![a]).unwrap();
        assert_eq!(s, vec![3, 2]);
    }
}
