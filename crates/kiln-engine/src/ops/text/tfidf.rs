//! TfIdfVectorizer: counts pooled n-grams (with skips) in each row of an int or string tensor.

use std::collections::HashMap;
use std::hash::Hash;

use kiln_tensor::{DType, Dim, Shape, Tensor, TensorData, Value, ValueType};

use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Tf,
    Idf,
    TfIdf,
}

/// A prefix tree of the pooled n-grams. Node 0 is the root; `id` is 1 + the n-gram's position
/// in the pool (0: no n-gram ends here).
struct Trie<K> {
    nodes: Vec<TrieNode<K>>,
}

struct TrieNode<K> {
    id: usize,
    children: HashMap<K, usize>,
}

impl<K: Hash + Eq + Clone> Trie<K> {
    fn new() -> Trie<K> {
        Trie { nodes: vec![TrieNode { id: 0, children: HashMap::new() }] }
    }

    fn insert(&mut self, gram: &[K], id: usize) {
        let mut node = 0;
        for k in gram {
            node = match self.nodes[node].children.get(k) {
                Some(&c) => c,
                None => {
                    let c = self.nodes.len();
                    self.nodes.push(TrieNode { id: 0, children: HashMap::new() });
                    self.nodes[node].children.insert(k.clone(), c);
                    c
                }
            };
        }
        self.nodes[node].id = id;
    }

    fn child(&self, node: usize, k: &K) -> Option<usize> {
        self.nodes[node].children.get(k).copied()
    }

    fn is_empty(&self) -> bool {
        self.nodes[0].children.is_empty()
    }
}

enum Pool {
    Ints(Trie<i64>),
    Strings(Trie<String>),
}

struct TfIdfOp {
    mode: Mode,
    min_gram: usize,
    max_gram: usize,
    max_skip: usize,
    /// Output column of each pooled n-gram.
    ngram_indexes: Vec<usize>,
    output_size: usize,
    /// Weight of each output column (the weight of the pooled n-gram mapped to it); empty when
    /// no weights are given.
    weights: Vec<f32>,
    pool: Pool,
}

fn nonneg(v: i64, what: &str) -> OpResult<usize> {
    usize::try_from(v).map_err(|_| OpError(format!("TfIdfVectorizer {what} must not be negative, got {v}")))
}

/// Inserts the n-grams of the pool into a trie, numbering them in pool order across all sizes.
fn build_trie<K: Hash + Eq + Clone>(
    pool: &[K],
    counts: &[usize],
    min_gram: usize,
    max_gram: usize,
) -> OpResult<(Trie<K>, usize)> {
    let mut trie = Trie::new();
    let mut next_id = 1usize;
    for (level, &start) in counts.iter().enumerate() {
        let size = level + 1;
        let end = counts.get(level + 1).copied().unwrap_or(pool.len());
        ensure!(
            start <= end && end <= pool.len(),
            "TfIdfVectorizer ngram_counts {counts:?} do not fit a pool of {} items",
            pool.len()
        );
        let grams = &pool[start..end];
        ensure!(
            grams.len().is_multiple_of(size),
            "TfIdfVectorizer pool section of {size}-grams has {} items, not a multiple of {size}",
            grams.len()
        );
        for gram in grams.chunks(size) {
            if size >= min_gram && size <= max_gram {
                trie.insert(gram, next_id);
            }
            next_id += 1;
        }
    }
    Ok((trie, next_id - 1))
}

/// Moves per-n-gram weights to the output columns the n-grams are counted in.
fn column_weights(pool_weights: &[f32], ngram_indexes: &[usize], output_size: usize) -> Vec<f32> {
    if pool_weights.is_empty() {
        return Vec::new();
    }
    let mut w = vec![0.0; output_size];
    for (&col, &wt) in ngram_indexes.iter().zip(pool_weights) {
        w[col] = wt;
    }
    w
}

pub fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let mode = match n.attr_string("mode")?.as_deref() {
        Some("TF") => Mode::Tf,
        Some("IDF") => Mode::Idf,
        Some("TFIDF") => Mode::TfIdf,
        Some(other) => bail!("TfIdfVectorizer mode must be TF, IDF or TFIDF, got '{other}'"),
        None => bail!("TfIdfVectorizer needs the 'mode' attribute"),
    };
    let req = |name: &str| -> OpResult<i64> {
        n.attr_int(name)?.ok_or_else(|| OpError(format!("TfIdfVectorizer needs the '{name}' attribute")))
    };
    let min_gram = nonneg(req("min_gram_length")?, "min_gram_length")?;
    let max_gram = nonneg(req("max_gram_length")?, "max_gram_length")?;
    let max_skip = nonneg(req("max_skip_count")?, "max_skip_count")?;
    ensure!(
        min_gram >= 1 && min_gram <= max_gram,
        "TfIdfVectorizer needs 1 <= min_gram_length <= max_gram_length, got {min_gram} and {max_gram}"
    );
    let counts = n
        .attr_ints("ngram_counts")?
        .ok_or_else(|| OpError::new("TfIdfVectorizer needs the 'ngram_counts' attribute"))?
        .into_iter()
        .map(|c| nonneg(c, "ngram_counts"))
        .collect::<OpResult<Vec<_>>>()?;
    let ngram_indexes = n
        .attr_ints("ngram_indexes")?
        .ok_or_else(|| OpError::new("TfIdfVectorizer needs the 'ngram_indexes' attribute"))?
        .into_iter()
        .map(|c| nonneg(c, "ngram_indexes"))
        .collect::<OpResult<Vec<_>>>()?;
    let output_size = ngram_indexes.iter().max().map_or(0, |m| m + 1);

    let ints = n.attr_ints("pool_int64s")?;
    let strings = n.attr_strings("pool_strings")?;
    let (pool, num_grams) = match (ints, strings) {
        (Some(p), None) => {
            let (t, g) = build_trie(&p, &counts, min_gram, max_gram)?;
            (Pool::Ints(t), g)
        }
        (None, Some(p)) => {
            let (t, g) = build_trie(&p, &counts, min_gram, max_gram)?;
            (Pool::Strings(t), g)
        }
        (Some(_), Some(_)) => bail!("TfIdfVectorizer takes pool_int64s or pool_strings, not both"),
        (None, None) => bail!("TfIdfVectorizer needs pool_int64s or pool_strings"),
    };
    ensure!(
        ngram_indexes.len() >= num_grams,
        "TfIdfVectorizer pool holds {num_grams} n-grams but ngram_indexes has {} entries",
        ngram_indexes.len()
    );
    let pool_weights = n.attr_floats("weights")?.unwrap_or_default();
    ensure!(
        pool_weights.is_empty() || pool_weights.len() == ngram_indexes.len(),
        "TfIdfVectorizer has {} weights but {} ngram_indexes",
        pool_weights.len(),
        ngram_indexes.len()
    );
    let weights = column_weights(&pool_weights, &ngram_indexes, output_size);
    Ok(Box::new(TfIdfOp { mode, min_gram, max_gram, max_skip, ngram_indexes, output_size, weights, pool }))
}

impl TfIdfOp {
    /// Adds the n-gram counts of one row to `freq` (one entry per output column).
    fn count_row<K: Hash + Eq + Clone>(&self, trie: &Trie<K>, row: &[K], freq: &mut [u32]) {
        let len = row.len();
        let mut start_size = self.min_gram;
        for skip in 1..=self.max_skip + 1 {
            for start in 0..len {
                if start + skip * (start_size - 1) >= len {
                    break;
                }
                let mut node = 0;
                let mut item = start;
                let mut size = 1;
                while size <= self.max_gram && item < len {
                    let Some(c) = trie.child(node, &row[item]) else { break };
                    let id = trie.nodes[c].id;
                    if size >= start_size && id != 0 {
                        freq[self.ngram_indexes[id - 1]] += 1;
                    }
                    if trie.nodes[c].children.is_empty() {
                        break;
                    }
                    node = c;
                    size += 1;
                    item += skip;
                }
            }
            // Unigrams do not depend on the skip distance: count them once.
            if start_size == 1 {
                start_size = 2;
                if start_size > self.max_gram {
                    break;
                }
            }
        }
    }

    fn count_all<K: Hash + Eq + Clone>(&self, trie: &Trie<K>, data: &[K], rows: usize, cols: usize) -> Vec<u32> {
        let mut freq = vec![0u32; rows * self.output_size];
        if trie.is_empty() || cols == 0 || self.output_size == 0 {
            return freq;
        }
        for (r, out) in freq.chunks_mut(self.output_size).enumerate() {
            self.count_row(trie, &data[r * cols..(r + 1) * cols], out);
        }
        freq
    }
}

impl Op for TfIdfOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let (rows, cols, out_shape) = match *x.shape() {
            [] => (1, 1, vec![self.output_size]),
            [c] => (1, c, vec![self.output_size]),
            [b, c] => (b, c, vec![b, self.output_size]),
            _ => bail!("TfIdfVectorizer accepts [C] or [N, C] input, got shape {:?}", x.shape()),
        };
        kiln_tensor::checked_numel(&out_shape)?;
        let freq = match (&self.pool, x.data()) {
            (Pool::Ints(t), TensorData::I64(v)) => self.count_all(t, v, rows, cols),
            (Pool::Ints(t), TensorData::I32(v)) => {
                let v: Vec<i64> = v.iter().map(|&e| e as i64).collect();
                self.count_all(t, &v, rows, cols)
            }
            (Pool::Strings(t), TensorData::String(v)) => self.count_all(t, v, rows, cols),
            (Pool::Ints(_), _) => {
                bail!("TfIdfVectorizer with pool_int64s needs an int32 or int64 input, got {}", x.dtype())
            }
            (Pool::Strings(_), _) => bail!("TfIdfVectorizer with pool_strings needs a string input, got {}", x.dtype()),
        };
        let w = &self.weights;
        let cols_out = self.output_size.max(1);
        let y: Vec<f32> = freq
            .iter()
            .enumerate()
            .map(|(p, &f)| {
                let col = p % cols_out;
                match self.mode {
                    Mode::Tf => f as f32,
                    Mode::Idf if w.is_empty() => (f > 0) as u8 as f32,
                    Mode::Idf => {
                        if f > 0 {
                            w[col]
                        } else {
                            0.0
                        }
                    }
                    Mode::TfIdf if w.is_empty() => f as f32,
                    Mode::TfIdf => w[col] * f as f32,
                }
            })
            .collect();
        Ok(vec![Value::Tensor(Tensor::from_vec(out_shape, y)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let shape = match inputs.first().copied().flatten()? {
            ValueType::Tensor { shape: Some(s), dtype: DType::I32 | DType::I64 | DType::String } => s,
            _ => return None,
        };
        let out = match shape.rank() {
            0 | 1 => Shape(vec![Dim::Fixed(self.output_size)]),
            2 => Shape(vec![shape.0[0].clone(), Dim::Fixed(self.output_size)]),
            _ => return None,
        };
        Some(vec![ValueType::tensor(DType::F32, Some(out))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(mode: Mode, min: usize, max: usize, skip: usize, weights: Vec<f32>) -> TfIdfOp {
        // Pool: unigrams [2, 3], bigrams [(2, 3), (3, 4)]; columns 0..4 in pool order.
        let (trie, _) = build_trie(&[2i64, 3, 2, 3, 3, 4], &[0, 2], min, max).unwrap();
        TfIdfOp {
            mode,
            min_gram: min,
            max_gram: max,
            max_skip: skip,
            ngram_indexes: vec![0, 1, 2, 3],
            output_size: 4,
            weights,
            pool: Pool::Ints(trie),
        }
    }

    fn run(op: &TfIdfOp, shape: &[usize], x: &[i64]) -> Vec<f32> {
        let v = Value::Tensor(Tensor::from_vec(shape.to_vec(), x.to_vec()).unwrap());
        let refs = [Some(&v)];
        op.run(&Inputs::new(&refs)).unwrap().remove(0).into_tensor().unwrap().into_vec().unwrap()
    }

    #[test]
    fn counts_unigrams_and_bigrams() {
        // x = [2, 3, 4, 2, 3]: unigram 2 twice, 3 twice; bigram (2,3) twice, (3,4) once.
        assert_eq!(run(&op(Mode::Tf, 1, 2, 0, vec![]), &[5], &[2, 3, 4, 2, 3]), vec![2., 2., 2., 1.]);
        assert_eq!(run(&op(Mode::Tf, 2, 2, 0, vec![]), &[5], &[2, 3, 4, 2, 3]), vec![0., 0., 2., 1.]);
    }

    #[test]
    fn skips_find_distant_pairs() {
        // x = [2, 9, 3]: (2, 3) only with one skipped item.
        assert_eq!(run(&op(Mode::Tf, 2, 2, 0, vec![]), &[3], &[2, 9, 3]), vec![0., 0., 0., 0.]);
        assert_eq!(run(&op(Mode::Tf, 2, 2, 1, vec![]), &[3], &[2, 9, 3]), vec![0., 0., 1., 0.]);
    }

    #[test]
    fn idf_and_tfidf_weights_per_row() {
        let w = vec![0.5, 2.0, 3.0, 4.0];
        let x = [2, 2, 3, 3, 3, 4];
        assert_eq!(run(&op(Mode::Idf, 1, 1, 0, w.clone()), &[2, 3], &x), vec![0.5, 2., 0., 0., 0., 2., 0., 0.]);
        assert_eq!(run(&op(Mode::TfIdf, 1, 1, 0, w), &[2, 3], &x), vec![1.0, 2., 0., 0., 0., 4., 0., 0.]);
    }

    #[test]
    fn weights_follow_their_ngram_to_its_column() {
        // n-gram 0 is counted in column 2, n-gram 1 in column 0; column 1 holds no n-gram.
        assert_eq!(column_weights(&[0.1, 0.2], &[2, 0], 3), vec![0.2, 0.0, 0.1]);
        assert!(column_weights(&[], &[2, 0], 3).is_empty());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let o = op(Mode::Tf, 1, 2, 0, vec![]);
        let v = Value::Tensor(Tensor::from_vec(vec![1, 1, 1], vec![2i64]).unwrap());
        assert!(o.run(&Inputs::new(&[Some(&v)])).is_err());
        let s = Value::Tensor(Tensor::from_vec(vec![1], vec!["a".to_string()]).unwrap());
        assert!(o.run(&Inputs::new(&[Some(&s)])).is_err());
        assert!(build_trie(&[1i64, 2, 3], &[0, 2], 1, 2).is_err());
    }
}
