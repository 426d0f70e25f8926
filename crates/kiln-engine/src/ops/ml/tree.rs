//! Tree ensembles: TreeEnsembleClassifier, TreeEnsembleRegressor (ai.onnx.ml 1/3) and
//! TreeEnsemble (ai.onnx.ml 5). At load each ensemble is validated (every branch target exists,
//! no cycles) and compiled into one flat node array in breadth-first order where the two children
//! of a node are adjacent, so a step is `next = child + !condition`. A leaf steps to itself (its
//! threshold is NaN, so every comparison is false and `child + 1` is the leaf), which lets several
//! walks advance in lockstep without per-walk branches until none of them moves: groups of rows
//! through one tree for batches, groups of trees for one row otherwise. Per slot, leaves have
//! their folded single-target value and an index into a compact (target, weight) table. Batches
//! are evaluated block by block (trees outer, rows inner, so a tree stays in cache), blocks in
//! parallel.

use std::collections::HashMap;

use kiln_tensor::{f16, DType, Shape, Tensor, TensorData, Value, ValueType, Dim};

use super::{floats_or_tensor, ints_or_empty, rows_cols, second_class, transform_row, probit, PostTransform};
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};
use kiln_kernels::tree::{Agg, Feat, Layout, Mode, Node, MVT};

fn parse_mode(s: &str) -> OpResult<Option<Mode>> {
    Ok(Some(match s {
        "BRANCH_LEQ" => Mode::Leq,
        "BRANCH_LT" => Mode::Lt,
        "BRANCH_GTE" => Mode::Gte,
        "BRANCH_GT" => Mode::Gt,
        "BRANCH_EQ" => Mode::Eq,
        "BRANCH_NEQ" => Mode::Neq,
        "LEAF" => return Ok(None),
        other => bail!("unknown node mode '{other}'"),
    }))
}

fn mode_from_code(c: u8) -> OpResult<Mode> {
    Ok(match c {
        0 => Mode::Leq,
        1 => Mode::Lt,
        2 => Mode::Gte,
        3 => Mode::Gt,
        4 => Mode::Eq,
        5 => Mode::Neq,
        6 => Mode::Member,
        other => bail!("unknown node mode {other}"),
    })
}

/// A branch target in the source description.
#[derive(Clone, Copy, Debug)]
enum Ref {
    Node(usize),
    Leaf(usize),
}

/// A decision node before compilation.
struct Interior {
    name: String,
    feature: usize,
    thr: f64,
    mode: Mode,
    mvt: bool,
    members: Vec<f64>,
    t: Ref,
    f: Ref,
}

/// An ensemble before compilation: decision nodes, leaves with their (target, weight) lists, roots.
struct Source {
    nodes: Vec<Interior>,
    leaves: Vec<Vec<(usize, f64)>>,
    roots: Vec<Ref>,
}





const MAX_SLOTS: usize = 1 << 28;

/// A compiled ensemble (the traversal and its node layout live in `kiln_kernels::tree`).
pub(crate) struct Forest(kiln_kernels::tree::Forest);

impl std::ops::Deref for Forest {
    type Target = kiln_kernels::tree::Forest;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Forest {
    fn compile(src: Source, n_targets: usize, agg: Agg) -> OpResult<Forest> {
        ensure!(n_targets > 0, "n_targets must be positive");
        // Reject cycles (a DAG that shares subtrees is accepted).
        let n = src.nodes.len();
        let mut color = vec![0u8; n];
        for root in &src.roots {
            let Ref::Node(r) = *root else { continue };
            if color[r] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, u8)> = vec![(r, 0)];
            color[r] = 1;
            while let Some(&mut (i, ref mut step)) = stack.last_mut() {
                let next = match *step {
                    0 => Some(src.nodes[i].t),
                    1 => Some(src.nodes[i].f),
                    _ => None,
                };
                *step += 1;
                match next {
                    None => {
                        color[i] = 2;
                        stack.pop();
                    }
                    Some(Ref::Leaf(_)) => {}
                    Some(Ref::Node(j)) => match color[j] {
                        0 => {
                            color[j] = 1;
                            stack.push((j, 0));
                        }
                        1 => bail!("{} is part of a cycle (its branch leads back to it)", src.nodes[j].name),
                        _ => {}
                    },
                }
            }
        }
        for (i, node) in src.nodes.iter().enumerate() {
            ensure!(node.feature < (MVT - 1) as usize, "{} has feature id {} out of range", node.name, node.feature);
            let _ = i;
        }
        for leaf in &src.leaves {
            for &(t, _) in leaf {
                ensure!(t < n_targets, "a leaf weight targets {t} but there are only {n_targets} targets/classes");
            }
        }
        // When every leaf weight goes to the same target, leaves fold to one inline value.
        let mut single: Option<usize> = None;
        let mut one_target = true;
        for &(t, _) in src.leaves.iter().flatten() {
            match single {
                None => single = Some(t),
                Some(k) if k != t => one_target = false,
                _ => {}
            }
        }
        let fold_target = if one_target { single.unwrap_or(0) } else { 0 };
        // Leaf table.
        let mut leaf_start = Vec::with_capacity(src.leaves.len() + 1);
        let mut leaf_target = Vec::new();
        let mut leaf_w64 = Vec::new();
        let mut leaf_has = Vec::with_capacity(src.leaves.len());
        let mut folded = Vec::with_capacity(src.leaves.len());
        for leaf in &src.leaves {
            leaf_start.push(leaf_target.len() as u32);
            leaf_has.push(leaf.iter().any(|&(t, _)| t == fold_target));
            let mut v: Option<f64> = None;
            for &(t, w) in leaf {
                leaf_target.push(t as u32);
                leaf_w64.push(w);
                if t == fold_target {
                    v = Some(match (v, agg) {
                        (None, _) => w,
                        (Some(a), Agg::Sum | Agg::Average) => a + w,
                        (Some(a), Agg::Min) => if w < a { w } else { a },
                        (Some(a), Agg::Max) => if w > a { w } else { a },
                    });
                }
            }
            folded.push(v.unwrap_or(0.0));
        }
        leaf_start.push(leaf_target.len() as u32);
        let dense = matches!(agg, Agg::Sum | Agg::Average)
            && n_targets > 0
            && src.leaves.iter().all(|leaf| leaf.len() == n_targets && leaf.iter().enumerate().all(|(k, &(t, _))| t == k));
        // Breadth-first layout with adjacent children.
        let mixed = {
            let mut it = src.nodes.iter().map(|n| n.mode);
            let first = it.next();
            // NEQ is true against a leaf's NaN threshold, so it needs per-slot modes (leaves: LEQ).
            matches!(first, Some(Mode::Member | Mode::Neq)) || it.any(|m| Some(m) != first)
        };
        let uniform = if mixed { None } else { Some(src.nodes.first().map(|n| n.mode).unwrap_or(Mode::Leq)) };
        let any_mvt = src.nodes.iter().any(|n| n.mvt);
        let mut slots: Vec<Ref> = Vec::new();
        let mut roots = Vec::with_capacity(src.roots.len());
        let mut nodes64: Vec<Node<f64>> = Vec::new();
        let mut leaf_val64: Vec<f64> = Vec::new();
        let mut leaf_of: Vec<u32> = Vec::new();
        let mut modes = Vec::new();
        let mut member_of = Vec::new();
        let mut member_sets: Vec<Vec<f64>> = Vec::new();
        let mut member_index: HashMap<usize, u32> = HashMap::new();
        let mut min_features = 0usize;
        // Depth of each slot below its tree's root, and of each tree's deepest leaf.
        let mut slot_depth: Vec<u32> = Vec::new();
        let mut depth = Vec::with_capacity(src.roots.len());
        // Whether every tree's leaves each hold one weight for the same target (and which).
        let one_each = !one_target && matches!(agg, Agg::Sum | Agg::Average) && src.leaves.iter().all(|l| l.len() == 1);
        let mut tree_target: Vec<u32> = Vec::new();
        let mut per_tree = one_each;
        let mut leaf_one64: Vec<f64> = Vec::new();
        for root in &src.roots {
            roots.push(slots.len() as u32);
            slots.push(*root);
            slot_depth.push(0);
            let mut deepest = 0;
            let mut target: Option<usize> = None;
            let mut q = slots.len() - 1;
            while q < slots.len() {
                deepest = deepest.max(slot_depth[q]);
                ensure!(slots.len() < MAX_SLOTS, "tree ensemble is too large");
                let node = match slots[q] {
                    Ref::Leaf(l) => {
                        leaf_val64.push(folded[l]);
                        if let (true, Some(&(t, w))) = (one_each, src.leaves[l].first()) {
                            leaf_one64.push(w);
                            per_tree &= target.is_none_or(|x| x == t);
                            target = Some(t);
                        }
                        leaf_of.push(l as u32);
                        Node { thr: f64::NAN, feat: 0, child: (q as u32).wrapping_sub(1) }
                    }
                    Ref::Node(i) => {
                        leaf_val64.push(0.0);
                        if one_each {
                            leaf_one64.push(0.0);
                        }
                        leaf_of.push(0);
                        let s = &src.nodes[i];
                        let child = slots.len() as u32;
                        slots.push(s.t);
                        slots.push(s.f);
                        slot_depth.extend([slot_depth[q] + 1; 2]);
                        min_features = min_features.max(s.feature + 1);
                        Node { thr: s.thr, feat: s.feature as u32 | if s.mvt { MVT } else { 0 }, child }
                    }
                };
                // WebAssembly also runs uniform ensembles through the per-slot walk (`block`).
                if mixed || cfg!(target_arch = "wasm32") {
                    let (m, set) = match slots[q] {
                        Ref::Node(i) => {
                            let s = &src.nodes[i];
                            let set = if s.mode == Mode::Member {
                                let next = member_sets.len() as u32;
                                *member_index.entry(i).or_insert_with(|| {
                                    member_sets.push(s.members.clone());
                                    next
                                })
                            } else {
                                0
                            };
                            (s.mode as u8, set)
                        }
                        Ref::Leaf(_) => (0, 0),
                    };
                    modes.push(m);
                    member_of.push(set);
                }
                nodes64.push(node);
                q += 1;
            }
            depth.push(deepest);
            tree_target.push(target.unwrap_or(0) as u32);
        }
        // Leaves then hold their one weight, added to their tree's target.
        let tree_target = if per_tree && one_each {
            leaf_val64 = leaf_one64;
            tree_target
        } else {
            Vec::new()
        };
        let nodes32 = nodes64.iter().map(|n| Node { thr: n.thr as f32, feat: n.feat, child: n.child }).collect();
        let leaf_val32 = leaf_val64.iter().map(|&v| v as f32).collect();
        Ok(Forest(kiln_kernels::tree::Forest {
            fold: if one_target && matches!(agg, Agg::Sum | Agg::Average) { Some(fold_target) } else { None },
            n_targets,
            agg,
            roots,
            depth,
            l32: Layout { nodes: nodes32, leaf_val: leaf_val32, leaf_w: leaf_w64.iter().map(|&w| w as f32).collect() },
            l64: Layout { nodes: nodes64, leaf_val: leaf_val64, leaf_w: leaf_w64 },
            modes,
            uniform,
            any_mvt,
            member_of,
            member_sets,
            leaf_of,
            dense: dense && !one_target,
            tree_target,
            leaf_start,
            leaf_target,
            leaf_has,
            min_features,
            has_interior: !src.nodes.is_empty(),
        }))
    }

    fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Raw aggregated scores (before base values and post transform) and "has a score" flags,
    /// both `rows × n_targets`.
    fn scores<T: Feat>(&self, x: &[T], rows: usize, cols: usize) -> OpResult<(Vec<T>, Vec<bool>)> {
        ensure!(
            cols >= self.min_features,
            "X has {cols} features but the trees use feature {}",
            self.min_features.saturating_sub(1)
        );
        ensure!(x.len() == rows * cols, "X has {} elements, expected {rows} x {cols}", x.len());
        let nt = self.n_targets;
        let mut scores = vec![T::ZERO; rows * nt];
        let mut has = vec![false; rows * nt];
        if rows == 0 {
            return Ok((scores, has));
        }
        const BLOCK: usize = 64;
        let work = |(b, (s, h)): (usize, (&mut [T], &mut [bool]))| {
            let r0 = b * BLOCK;
            let n = s.len() / nt;
            // SAFETY: `compile` builds well-formed forests: every branch target and root is a
            // slot of both layouts, leaves step to themselves, features are below
            // `min_features`, and the per-slot tables have one entry per slot.
            unsafe { T::block(&self.0, &x[r0 * cols..(r0 + n) * cols], cols, s, h) };
        };
        let blocks: Vec<_> = scores.chunks_mut(BLOCK * nt).zip(has.chunks_mut(BLOCK * nt)).enumerate().collect();
        kiln_kernels::par::for_each(blocks, work);
        Ok((scores, has))
    }

    /// Raw scores for any numeric X, as f64 (f32 inputs are computed in f32, double in f64,
    /// integers compared as f32 like onnxruntime).
    fn run_scores(&self, x: &Tensor) -> OpResult<(usize, Vec<f64>, Vec<bool>)> {
        let rc = rows_cols(x)?;
        let (s, h) = match x.data() {
            TensorData::F32(v) => {
                let (s, h) = self.scores::<f32>(v, rc.rows, rc.cols)?;
                (s.into_iter().map(f64::from).collect(), h)
            }
            TensorData::F64(v) => self.scores::<f64>(v, rc.rows, rc.cols)?,
            _ => {
                let v = super::to_f32(x)?;
                let (s, h) = self.scores::<f32>(&v, rc.rows, rc.cols)?;
                (s.into_iter().map(f64::from).collect(), h)
            }
        };
        Ok((rc.rows, s, h))
    }

    /// Regressor finalisation (onnxruntime's FinalizeScores1 / FinalizeScores): base values, the
    /// average, then the post transform (only PROBIT for a single target).
    fn finalize_regression(&self, rows: usize, s: &[f64], h: &[bool], base: &[f64], pt: PostTransform) -> Vec<f32> {
        let nt = self.n_targets;
        let use_base = base.len() == nt;
        let n_trees = self.n_trees() as f64;
        let mut out = vec![0f32; rows * nt];
        for r in 0..rows {
            let o = &mut out[r * nt..(r + 1) * nt];
            for t in 0..nt {
                let i = r * nt + t;
                let mut v = if h[i] || matches!(self.agg, Agg::Sum | Agg::Average) { s[i] } else { 0.0 };
                if self.agg == Agg::Average {
                    v /= n_trees;
                }
                if use_base {
                    v += base[t];
                }
                o[t] = v as f32;
            }
            if nt == 1 {
                if pt == PostTransform::Probit {
                    o[0] = probit(o[0]);
                }
            } else {
                transform_row(o, pt);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Building from the legacy attributes (opset 1/3)

struct Legacy {
    src: Source,
}

fn legacy_source(n: &NodeInfo, prefix: &str) -> OpResult<Legacy> {
    let tree_ids = ints_or_empty(n, "nodes_treeids")?;
    let node_ids = ints_or_empty(n, "nodes_nodeids")?;
    let feat = ints_or_empty(n, "nodes_featureids")?;
    let modes = n.attr_strings("nodes_modes")?.unwrap_or_default();
    let values = floats_or_tensor(n, "nodes_values")?.unwrap_or_default();
    let tids = ints_or_empty(n, "nodes_truenodeids")?;
    let fids = ints_or_empty(n, "nodes_falsenodeids")?;
    let mvt = ints_or_empty(n, "nodes_missing_value_tracks_true")?;
    let cnt = tree_ids.len();
    ensure!(cnt > 0, "the ensemble has no nodes");
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", feat.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", values.len()),
        ("nodes_truenodeids", tids.len()),
        ("nodes_falsenodeids", fids.len()),
    ] {
        ensure!(len == cnt, "{name} has {len} entries but nodes_treeids has {cnt}");
    }
    ensure!(mvt.is_empty() || mvt.len() == cnt, "nodes_missing_value_tracks_true has {} entries, expected {cnt}", mvt.len());
    let w_tree = ints_or_empty(n, &format!("{prefix}_treeids"))?;
    let w_node = ints_or_empty(n, &format!("{prefix}_nodeids"))?;
    let w_id = ints_or_empty(n, &format!("{prefix}_ids"))?;
    let w_val = floats_or_tensor(n, &format!("{prefix}_weights"))?.unwrap_or_default();
    ensure!(
        w_tree.len() == w_node.len() && w_node.len() == w_id.len() && w_id.len() == w_val.len(),
        "{prefix}_treeids/nodeids/ids/weights have different lengths ({}, {}, {}, {})",
        w_tree.len(),
        w_node.len(),
        w_id.len(),
        w_val.len()
    );
    // Position of every (tree, node id); leaves get their own index.
    let mut pos: HashMap<(i64, i64), Ref> = HashMap::with_capacity(cnt);
    let mut parsed = Vec::with_capacity(cnt);
    let mut n_leaves = 0usize;
    let mut n_nodes = 0usize;
    for i in 0..cnt {
        let m = parse_mode(&modes[i]).map_err(|e| OpError(format!("tree {} node {}: {}", tree_ids[i], node_ids[i], e.0)))?;
        let r = match m {
            None => {
                n_leaves += 1;
                Ref::Leaf(n_leaves - 1)
            }
            Some(_) => {
                n_nodes += 1;
                Ref::Node(n_nodes - 1)
            }
        };
        ensure!(
            pos.insert((tree_ids[i], node_ids[i]), r).is_none(),
            "tree {} node {} is defined twice",
            tree_ids[i],
            node_ids[i]
        );
        parsed.push(m);
    }
    let mut leaves = vec![Vec::new(); n_leaves];
    for k in 0..w_id.len() {
        match pos.get(&(w_tree[k], w_node[k])) {
            Some(Ref::Leaf(l)) => {
                ensure!(w_id[k] >= 0, "tree {} node {}: negative target/class id {}", w_tree[k], w_node[k], w_id[k]);
                leaves[*l].push((w_id[k] as usize, w_val[k]));
            }
            Some(Ref::Node(_)) => {}
            None => bail!("a weight refers to tree {} node {}, which does not exist", w_tree[k], w_node[k]),
        }
    }
    let mut nodes = Vec::with_capacity(n_nodes);
    let mut roots = Vec::new();
    let mut seen_trees: HashMap<i64, ()> = HashMap::new();
    for i in 0..cnt {
        let (tree, id) = (tree_ids[i], node_ids[i]);
        if seen_trees.insert(tree, ()).is_none() {
            roots.push(pos[&(tree, id)]);
        }
        let Some(mode) = parsed[i] else { continue };
        let name = format!("tree {tree} node {id}");
        let find = |target: i64, which: &str| -> OpResult<Ref> {
            ensure!(target != id, "{name}: {which} branch points to itself");
            pos.get(&(tree, target))
                .copied()
                .ok_or_else(|| OpError(format!("{name}: {which} branch points to node {target}, which is not in tree {tree}")))
        };
        let t = find(tids[i], "true")?;
        let f = find(fids[i], "false")?;
        ensure!(feat[i] >= 0, "{name}: negative feature id {}", feat[i]);
        nodes.push(Interior {
            name,
            feature: feat[i] as usize,
            thr: values[i],
            mode,
            mvt: mvt.get(i).copied().unwrap_or(0) == 1,
            members: Vec::new(),
            t,
            f,
        });
    }
    Ok(Legacy { src: Source { nodes, leaves, roots } })
}

fn parse_agg(s: &str) -> OpResult<Agg> {
    Ok(match s {
        "SUM" => Agg::Sum,
        "AVERAGE" => Agg::Average,
        "MIN" => Agg::Min,
        "MAX" => Agg::Max,
        other => bail!("unsupported aggregate_function '{other}'"),
    })
}

fn x_check<'a>(inputs: &Inputs<'a>) -> OpResult<&'a Tensor> {
    let x = inputs.tensor(0)?;
    ensure!(
        matches!(x.dtype(), DType::F32 | DType::F64 | DType::I64 | DType::I32 | DType::F16),
        "X must be float, double, int64 or int32, got {}",
        x.dtype()
    );
    Ok(x)
}

// ---------------------------------------------------------------------------------------------
// TreeEnsembleRegressor

struct Regressor {
    forest: Forest,
    base: Vec<f64>,
    pt: PostTransform,
}

pub(crate) fn build_regressor(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let pt = PostTransform::from_attr(n)?;
    let agg = parse_agg(&n.attr_string_or("aggregate_function", "SUM")?)?;
    let n_targets = n.attr_int_or("n_targets", 1)?;
    ensure!(n_targets > 0, "n_targets must be positive, got {n_targets}");
    let base = floats_or_tensor(n, "base_values")?.unwrap_or_default();
    let l = legacy_source(n, "target")?;
    let forest = Forest::compile(l.src, n_targets as usize, agg)?;
    Ok(Box::new(Regressor { forest, base, pt }))
}

impl Op for Regressor {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = x_check(inputs)?;
        let (rows, s, h) = self.forest.run_scores(x)?;
        let out = self.forest.finalize_regression(rows, &s, &h, &self.base, self.pt);
        Ok(vec![Tensor::from_vec(vec![rows, self.forest.n_targets], out)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        Some(vec![ValueType::tensor(DType::F32, Some(Shape(vec![batch_dim(inputs), Dim::Fixed(self.forest.n_targets)])))])
    }
}

fn batch_dim(inputs: &[Option<&ValueType>]) -> Dim {
    match inputs.first().copied().flatten().and_then(|t| t.tensor_shape()) {
        Some(s) if s.rank() == 1 => Dim::Fixed(1),
        Some(s) if s.rank() >= 2 => s.0[0].clone(),
        _ => Dim::unknown(),
    }
}

// ---------------------------------------------------------------------------------------------
// TreeEnsembleClassifier

enum Labels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

pub(crate) struct Classifier {
    forest: Forest,
    base: Vec<f64>,
    pt: PostTransform,
    labels: Labels,
    binary_case: bool,
    all_positive: bool,
}

pub(crate) fn build_classifier(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let pt = PostTransform::from_attr(n)?;
    let base = floats_or_tensor(n, "base_values")?.unwrap_or_default();
    let labels = match (n.attr_strings("classlabels_strings")?, n.attr_ints("classlabels_int64s")?) {
        (Some(s), _) if !s.is_empty() => Labels::Str(s),
        (_, Some(i)) if !i.is_empty() => Labels::Int(i),
        _ => bail!("one of classlabels_strings or classlabels_int64s is required"),
    };
    let n_classes = match &labels {
        Labels::Int(v) => v.len(),
        Labels::Str(v) => v.len(),
    };
    let class_ids = ints_or_empty(n, "class_ids")?;
    let weights = floats_or_tensor(n, "class_weights")?.unwrap_or_default();
    let mut distinct: Vec<i64> = class_ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let binary_case = n_classes == 2 && distinct.len() == 1;
    let all_positive = weights.iter().all(|&w| w >= 0.0);
    let l = legacy_source(n, "class")?;
    let forest = Forest::compile(l.src, n_classes, Agg::Sum)?;
    Ok(Box::new(Classifier { forest, base, pt, labels, binary_case, all_positive }))
}

impl Classifier {
    /// onnxruntime's `_set_score_binary`: label index (or literal 0/1) and the second-class mode.
    fn binary_label(&self, s0: f64, h0: bool, s1: f64, h1: bool, mode: &mut i32) -> (bool, i64) {
        // Returns (is_index, value): an index into the labels, or a literal label.
        let pos = if h1 {
            s1
        } else if h0 {
            s0
        } else {
            0.0
        };
        if self.binary_case {
            if self.all_positive {
                if pos > 0.5 {
                    *mode = 0;
                    (true, 1)
                } else {
                    *mode = 1;
                    (true, 0)
                }
            } else if pos > 0.0 {
                *mode = 2;
                (true, 1)
            } else {
                *mode = 3;
                (true, 0)
            }
        } else {
            (false, if pos > 0.0 { 1 } else { 0 })
        }
    }

    /// Scores and labels of one row: writes `z` (n_classes wide) and returns the label choice.
    fn finalize_row(&self, s: &mut [f64], h: &mut [bool], z: &mut [f32]) -> (bool, i64) {
        let nc = s.len();
        let base = &self.base;
        let mut mode = -1i32;
        if nc > 2 {
            for k in 0..base.len().min(nc) {
                if !h[k] {
                    h[k] = true;
                    s[k] = base[k];
                } else {
                    s[k] += base[k];
                }
            }
            let mut best: Option<(usize, f64)> = None;
            for k in 0..nc {
                if h[k] && best.map(|(_, w)| s[k] > w).unwrap_or(true) {
                    best = Some((k, s[k]));
                }
            }
            let label = best.map(|b| b.0).unwrap_or(0) as i64;
            for k in 0..nc {
                z[k] = if h[k] { s[k] as f32 } else { 0.0 };
            }
            transform_row(z, self.pt);
            return (true, label);
        }
        if nc == 1 {
            // A single class: onnxruntime's one-output path.
            let mut sc = s[0];
            let label;
            let mut row;
            if base.len() == 2 {
                sc += base[1];
                label = self.binary_label(-sc, true, sc, true, &mut mode);
                row = vec![-sc as f32, sc as f32];
            } else {
                if base.len() == 1 {
                    sc += base[0];
                }
                label = self.binary_label(sc, true, 0.0, false, &mut mode);
                row = vec![sc as f32];
            }
            write_scores(&mut row, self.pt, mode);
            z[0] = row[0];
            return label;
        }
        // Two classes.
        let mut len = 2;
        if base.len() == 2 {
            if h[1] {
                s[1] = base[1] + s[0];
                s[0] = -s[1];
                h[1] = true;
            } else {
                s[1] += base[1];
                s[0] += base[0];
            }
        } else if base.len() == 1 {
            s[0] += base[0];
            if !h[1] {
                len = 1;
            }
        } else if base.is_empty() {
            mode = 3;
            if !h[1] {
                len = 1;
            }
        }
        let label = if len == 2 && h[1] {
            self.binary_label(s[0], h[0], s[1], h[1], &mut mode)
        } else {
            self.binary_label(s[0], h[0], 0.0, false, &mut mode)
        };
        let mut row: Vec<f32> = (0..len).map(|k| if h[k] { s[k] as f32 } else { 0.0 }).collect();
        write_scores(&mut row, self.pt, mode);
        z[..row.len().min(2)].copy_from_slice(&row[..row.len().min(2)]);
        label
    }
}

/// onnxruntime's `write_scores` on one row: two or more scores get the transform; a single
/// score gets PROBIT or is expanded to two columns by the "add second class" mode.
fn write_scores(row: &mut Vec<f32>, pt: PostTransform, mode: i32) {
    if row.len() >= 2 {
        transform_row(row, pt);
    } else if row.len() == 1 {
        if pt == PostTransform::Probit {
            row[0] = probit(row[0]);
        } else if mode >= 0 {
            let [a, b] = second_class(row[0], mode, pt);
            *row = vec![a, b];
        }
    }
}

impl Op for Classifier {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = x_check(inputs)?;
        let (rows, mut s, mut h) = self.forest.run_scores(x)?;
        let nc = self.forest.n_targets;
        let mut z = vec![0f32; rows * nc];
        let mut picks = Vec::with_capacity(rows);
        for r in 0..rows {
            picks.push(self.finalize_row(
                &mut s[r * nc..(r + 1) * nc],
                &mut h[r * nc..(r + 1) * nc],
                &mut z[r * nc..(r + 1) * nc],
            ));
        }
        let label = match &self.labels {
            Labels::Int(l) => {
                let v: Vec<i64> = picks
                    .iter()
                    .map(|&(idx, v)| if idx { l.get(v as usize).copied().unwrap_or(v) } else { v })
                    .collect();
                Tensor::from_vec(vec![rows], v)?
            }
            Labels::Str(l) => {
                let v: Vec<String> = picks.iter().map(|&(_, v)| l.get(v as usize).cloned().unwrap_or_default()).collect();
                Tensor::from_vec(vec![rows], v)?
            }
        };
        Ok(vec![label.into(), Tensor::from_vec(vec![rows, nc], z)?.into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let b = batch_dim(inputs);
        let ldt = if matches!(self.labels, Labels::Int(_)) { DType::I64 } else { DType::String };
        Some(vec![
            ValueType::tensor(ldt, Some(Shape(vec![b.clone()]))),
            ValueType::tensor(DType::F32, Some(Shape(vec![b, Dim::Fixed(self.forest.n_targets)]))),
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// TreeEnsemble (opset 5)

struct V5 {
    forest: Forest,
    pt: PostTransform,
}

fn tensor_f64(n: &NodeInfo, name: &str) -> OpResult<Vec<f64>> {
    Ok(match n.attr_tensor(name)? {
        Some(t) => t.to_f64_vec()?,
        None => Vec::new(),
    })
}

pub(crate) fn build_v5(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let pt = PostTransform::from_code(n.attr_int_or("post_transform", 0)?)?;
    let agg = match n.attr_int_or("aggregate_function", 1)? {
        0 => Agg::Average,
        1 => Agg::Sum,
        2 => Agg::Min,
        3 => Agg::Max,
        other => bail!("unsupported aggregate_function {other}"),
    };
    let n_targets = n.attr_int("n_targets")?.ok_or_else(|| OpError::new("n_targets is required"))?;
    ensure!(n_targets > 0, "n_targets must be positive, got {n_targets}");
    let feat = ints_or_empty(n, "nodes_featureids")?;
    let splits = tensor_f64(n, "nodes_splits")?;
    let modes: Vec<u8> = match n.attr_tensor("nodes_modes")? {
        Some(t) => t.to_i64_vec()?.into_iter().map(|m| m.clamp(0, 255) as u8).collect(),
        None => bail!("nodes_modes is required"),
    };
    let tids = ints_or_empty(n, "nodes_truenodeids")?;
    let fids = ints_or_empty(n, "nodes_falsenodeids")?;
    let tleaf = ints_or_empty(n, "nodes_trueleafs")?;
    let fleaf = ints_or_empty(n, "nodes_falseleafs")?;
    let mvt = ints_or_empty(n, "nodes_missing_value_tracks_true")?;
    let roots = ints_or_empty(n, "tree_roots")?;
    let leaf_t = ints_or_empty(n, "leaf_targetids")?;
    let leaf_w = tensor_f64(n, "leaf_weights")?;
    let members = tensor_f64(n, "membership_values")?;
    let cnt = feat.len();
    for (name, len) in [
        ("nodes_splits", splits.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", tids.len()),
        ("nodes_falsenodeids", fids.len()),
        ("nodes_trueleafs", tleaf.len()),
        ("nodes_falseleafs", fleaf.len()),
    ] {
        ensure!(len == cnt, "{name} has {len} entries but nodes_featureids has {cnt}");
    }
    ensure!(mvt.is_empty() || mvt.len() == cnt, "nodes_missing_value_tracks_true has {} entries, expected {cnt}", mvt.len());
    ensure!(leaf_t.len() == leaf_w.len(), "leaf_targetids and leaf_weights have different lengths");
    let mut sets = members.split(|v| v.is_nan()).map(|s| s.to_vec());
    let mut nodes = Vec::with_capacity(cnt);
    for i in 0..cnt {
        let name = format!("node {i}");
        let mode = mode_from_code(modes[i]).map_err(|e| OpError(format!("{name}: {}", e.0)))?;
        let r = |id: i64, is_leaf: i64, which: &str| -> OpResult<Ref> {
            let limit = if is_leaf != 0 { leaf_t.len() } else { cnt };
            ensure!(
                id >= 0 && (id as usize) < limit,
                "{name}: {which} branch points to {} {id}, outside the {limit} {}",
                if is_leaf != 0 { "leaf" } else { "node" },
                if is_leaf != 0 { "leaves" } else { "nodes" }
            );
            Ok(if is_leaf != 0 { Ref::Leaf(id as usize) } else { Ref::Node(id as usize) })
        };
        let t = r(tids[i], tleaf[i], "true")?;
        let f = r(fids[i], fleaf[i], "false")?;
        ensure!(feat[i] >= 0, "{name}: negative feature id {}", feat[i]);
        let set = if mode == Mode::Member {
            sets.next().ok_or_else(|| OpError(format!("{name}: membership_values has no set for this BRANCH_MEMBER node")))?
        } else {
            Vec::new()
        };
        nodes.push(Interior {
            name,
            feature: feat[i] as usize,
            thr: splits[i],
            mode,
            mvt: mvt.get(i).copied().unwrap_or(0) == 1,
            members: set,
            t,
            f,
        });
    }
    let mut leaves = Vec::with_capacity(leaf_t.len());
    for (k, (&t, &w)) in leaf_t.iter().zip(&leaf_w).enumerate() {
        ensure!(t >= 0 && t < n_targets, "leaf {k} targets {t}, outside [0, {n_targets})");
        leaves.push(vec![(t as usize, w)]);
    }
    let mut rs = Vec::with_capacity(roots.len());
    for &r in &roots {
        ensure!(r >= 0 && (r as usize) < cnt, "tree root {r} is outside the {cnt} nodes");
        rs.push(Ref::Node(r as usize));
    }
    let forest = Forest::compile(Source { nodes, leaves, roots: rs }, n_targets as usize, agg)?;
    Ok(Box::new(V5 { forest, pt }))
}

impl Op for V5 {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let (rows, s, h) = self.forest.run_scores(x)?;
        let out = self.forest.finalize_regression(rows, &s, &h, &[], self.pt);
        let shape = vec![rows, self.forest.n_targets];
        Ok(vec![match x.dtype() {
            DType::F64 => {
                // Redo the finalisation in double for double inputs.
                let nt = self.forest.n_targets;
                let n_trees = self.forest.n_trees() as f64;
                let mut o = Vec::with_capacity(rows * nt);
                for i in 0..rows * nt {
                    let mut v = if h[i] || matches!(self.forest.agg, Agg::Sum | Agg::Average) { s[i] } else { 0.0 };
                    if self.forest.agg == Agg::Average {
                        v /= n_trees;
                    }
                    o.push(v);
                }
                if self.pt != PostTransform::None {
                    for (k, v) in o.iter_mut().enumerate() {
                        *v = out[k] as f64;
                    }
                }
                Tensor::from_vec(shape, o)?
            }
            DType::F16 => Tensor::from_vec(shape, out.into_iter().map(f16::from_f32).collect::<Vec<_>>())?,
            _ => Tensor::from_vec(shape, out)?,
        }
        .into()])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let dt = inputs.first().copied().flatten()?.tensor_dtype()?;
        let dt = if dt.is_float() { dt } else { DType::F32 };
        Some(vec![ValueType::tensor(dt, Some(Shape(vec![batch_dim(inputs), Dim::Fixed(self.forest.n_targets)])))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interior(name: &str, feature: usize, thr: f64, mode: Mode, t: Ref, f: Ref) -> Interior {
        Interior { name: name.into(), feature, thr, mode, mvt: false, members: vec![], t, f }
    }

    #[test]
    fn stump_sum_and_average() {
        // x0 <= 1 → leaf 0 (w 10), else leaf 1 (w 20); two copies of the tree.
        let mk = || Source {
            nodes: vec![
                interior("a", 0, 1.0, Mode::Leq, Ref::Leaf(0), Ref::Leaf(1)),
                interior("b", 0, 1.0, Mode::Leq, Ref::Leaf(2), Ref::Leaf(3)),
            ],
            leaves: vec![vec![(0, 10.0)], vec![(0, 20.0)], vec![(0, 1.0)], vec![(0, 2.0)]],
            roots: vec![Ref::Node(0), Ref::Node(1)],
        };
        let f = Forest::compile(mk(), 1, Agg::Sum).unwrap();
        let (s, _) = f.scores::<f32>(&[0.5f32, 3.0, f32::NAN], 3, 1).unwrap();
        // NaN without missing tracking goes to the false branch.
        assert_eq!(s, vec![11.0, 22.0, 22.0]);
        let f = Forest::compile(mk(), 1, Agg::Average).unwrap();
        let (s, h) = f.scores::<f32>(&[0.5f32], 1, 1).unwrap();
        let out = f.finalize_regression(1, &s.iter().map(|&v| v as f64).collect::<Vec<_>>(), &h, &[100.0], PostTransform::None);
        assert_eq!(out, vec![105.5]);
    }

    #[test]
    fn missing_tracks_true_and_modes() {
        let mut a = interior("a", 1, 0.0, Mode::Lt, Ref::Leaf(0), Ref::Leaf(1));
        a.mvt = true;
        let src = Source { nodes: vec![a], leaves: vec![vec![(0, 1.0)], vec![(0, 2.0)]], roots: vec![Ref::Node(0)] };
        let f = Forest::compile(src, 1, Agg::Sum).unwrap();
        let (s, _) = f.scores::<f32>(&[9.0, f32::NAN, 9.0, -1.0, 9.0, 0.0], 3, 2).unwrap();
        assert_eq!(s, vec![1.0, 1.0, 2.0]);
    }

    #[test]
    fn member_and_mixed_modes() {
        let mut m = interior("m", 0, 0.0, Mode::Member, Ref::Leaf(0), Ref::Node(1));
        m.members = vec![2.0, 5.0];
        let g = interior("g", 0, 3.0, Mode::Gt, Ref::Leaf(1), Ref::Leaf(2));
        let src = Source {
            nodes: vec![m, g],
            leaves: vec![vec![(1, 7.0)], vec![(0, 3.0)], vec![(0, 4.0)]],
            roots: vec![Ref::Node(0)],
        };
        let f = Forest::compile(src, 2, Agg::Max).unwrap();
        let (s, h) = f.scores::<f32>(&[5.0f32, 4.0, 1.0], 3, 1).unwrap();
        assert_eq!(s, vec![0.0, 7.0, 3.0, 0.0, 4.0, 0.0]);
        assert_eq!(h, vec![false, true, true, false, true, false]);
    }

    /// Three trees: A `x0 <= 1` (NaN goes true) → 1 | 2; B `x1 <= 0` → (C `x0 <= 5` → 10 | 20) | 30;
    /// and a lone leaf 100.
    fn three_trees() -> Forest {
        let mut a = interior("a", 0, 1.0, Mode::Leq, Ref::Leaf(0), Ref::Leaf(1));
        a.mvt = true;
        let src = Source {
            nodes: vec![
                a,
                interior("b", 1, 0.0, Mode::Leq, Ref::Node(2), Ref::Leaf(4)),
                interior("c", 0, 5.0, Mode::Leq, Ref::Leaf(2), Ref::Leaf(3)),
            ],
            leaves: vec![vec![(0, 1.0)], vec![(0, 2.0)], vec![(0, 10.0)], vec![(0, 20.0)], vec![(0, 30.0)], vec![(0, 100.0)]],
            roots: vec![Ref::Node(0), Ref::Node(1), Ref::Leaf(5)],
        };
        Forest::compile(src, 1, Agg::Sum).unwrap()
    }

    #[test]
    fn batches_and_single_rows_walk_alike() {
        let nan = f32::NAN;
        let x = [
            0.0, -1.0, 3.0, -1.0, 6.0, -1.0, 0.0, 1.0, nan, -1.0, 0.0, nan, 2.0, 0.0, 1.0, 0.0, 7.0, 5.0, nan, nan, -5.0,
            -5.0,
        ];
        let want = [111.0, 112.0, 122.0, 131.0, 121.0, 131.0, 112.0, 111.0, 132.0, 131.0, 111.0];
        let f = three_trees();
        // 11 rows: one full group of rows and a short one.
        let (s, h) = f.scores::<f32>(&x, 11, 2).unwrap();
        assert_eq!(s, want);
        assert!(h.iter().all(|&b| b));
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        assert_eq!(f.scores::<f64>(&x64, 11, 2).unwrap().0, want.map(f64::from));
        // One row at a time walks the trees together instead.
        for (r, w) in want.iter().enumerate() {
            assert_eq!(f.scores::<f32>(&x[2 * r..2 * r + 2], 1, 2).unwrap().0, vec![*w], "row {r}");
        }
        // Without NaN in the block the missing-value branch is not needed; results are the same.
        let (s, _) = f.scores::<f32>(&x[..8], 4, 2).unwrap();
        assert_eq!(s, want[..4]);
    }

    #[test]
    fn only_leaves_reads_no_features() {
        let src = Source { nodes: vec![], leaves: vec![vec![(0, 4.0)], vec![(0, 0.5)]], roots: vec![Ref::Leaf(0), Ref::Leaf(1)] };
        let f = Forest::compile(src, 1, Agg::Sum).unwrap();
        assert_eq!(f.scores::<f32>(&[], 9, 0).unwrap().0, vec![4.5; 9]);
    }

    #[test]
    fn neq_is_true_for_nan() {
        let src = Source {
            nodes: vec![interior("n", 0, 2.0, Mode::Neq, Ref::Leaf(0), Ref::Leaf(1))],
            leaves: vec![vec![(0, 1.0)], vec![(0, 2.0)]],
            roots: vec![Ref::Node(0)],
        };
        let f = Forest::compile(src, 1, Agg::Sum).unwrap();
        assert_eq!(f.scores::<f32>(&[2.0, 3.0, f32::NAN], 3, 1).unwrap().0, vec![2.0, 1.0, 1.0]);
    }

    #[test]
    fn cycles_are_rejected_with_the_node_named() {
        let src = Source {
            nodes: vec![
                interior("tree 0 node 0", 0, 1.0, Mode::Leq, Ref::Node(1), Ref::Leaf(0)),
                interior("tree 0 node 1", 0, 1.0, Mode::Leq, Ref::Node(0), Ref::Leaf(0)),
            ],
            leaves: vec![vec![(0, 1.0)]],
            roots: vec![Ref::Node(0)],
        };
        let e = Forest::compile(src, 1, Agg::Sum).err().unwrap();
        assert!(e.0.contains("tree 0 node 0") && e.0.contains("cycle"), "{}", e.0);
    }

    #[test]
    fn too_few_features_is_an_error() {
        let src = Source {
            nodes: vec![interior("a", 3, 1.0, Mode::Leq, Ref::Leaf(0), Ref::Leaf(0))],
            leaves: vec![vec![(0, 1.0)]],
            roots: vec![Ref::Node(0)],
        };
        let f = Forest::compile(src, 1, Agg::Sum).unwrap();
        assert!(f.scores::<f32>(&[1.0f32, 2.0], 1, 2).is_err());
    }
}
