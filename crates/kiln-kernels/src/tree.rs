//! Tree-ensemble traversal: the compiled node layout and the lockstep walks over it.
//!
//! Nodes sit in one flat array where the two children of a decision node are adjacent, so a step
//! is `next = child + !condition`; a leaf steps to itself (its threshold is NaN and its `child`
//! is its own slot - 1), which lets several walks advance together without per-walk branches
//! until none of them moves. Compiling an ensemble into this form (and validating it) is left to
//! the caller; the entry point is [`Feat::block`].

/// Bit of [`Node::feat`] set when a missing (NaN) value takes the true branch.
pub const MVT: u32 = 1 << 31;
/// Walks advanced together.
pub const LANES: usize = 8;

/// Comparison of a decision node (the value is the node's feature, compared to its threshold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Leq = 0,
    Lt = 1,
    Gte = 2,
    Gt = 3,
    Eq = 4,
    Neq = 5,
    Member = 6,
}

/// How the leaf weights reaching one target combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    Sum,
    Average,
    Min,
    Max,
}

/// Scalar types the traversal runs in (f32 for float/int inputs, f64 for double inputs).
pub trait Feat: Copy + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    const ZERO: Self;
    fn to_f64(self) -> f64;
    fn is_nan(self) -> bool;
    fn add(self, o: Self) -> Self;
    /// The forest's nodes and weights in this type.
    fn layout(forest: &Forest) -> &Layout<Self>;
    /// Adds the leaves the rows `x` (`cols` values each) reach in every tree to the scores `s`
    /// and sets the flags `h` (both rows × `forest.n_targets`).
    ///
    /// # Safety
    /// `forest` must be well formed: every root and every decision node's `child` and
    /// `child + 1` are slots of both layouts, decision nodes' features are below
    /// `min_features` (at least 1 when `has_interior`), leaves are as described on [`Node`],
    /// and the per-slot tables (`modes` when not `uniform`, `member_of`, `leaf_of`) cover every
    /// slot. Panics if `cols < forest.min_features` or `x` or `h` is shorter than the rows need.
    unsafe fn block(forest: &Forest, x: &[Self], cols: usize, s: &mut [Self], h: &mut [bool]);
}

/// The checks every entry point makes before walking (sizes only; structure is the caller's).
fn check_sizes<T>(forest: &Forest, x: &[T], cols: usize, s: &[T], h: &[bool]) {
    let rows = s.len() / forest.n_targets.max(1);
    assert!(cols >= forest.min_features && x.len() >= rows * cols && h.len() == s.len());
    assert_eq!(forest.depth.len(), forest.roots.len(), "one depth per tree");
    assert!(forest.tree_target.is_empty() || forest.tree_target.len() == forest.roots.len());
    assert!(forest.tree_target.iter().all(|&t| (t as usize) < forest.n_targets));
}

impl Feat for f32 {
    const ZERO: f32 = 0.0;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn add(self, o: f32) -> f32 {
        self + o
    }
    fn layout(forest: &Forest) -> &Layout<f32> {
        &forest.l32
    }
    // Not inlined: the walks are compiled here, with this crate's optimisation settings,
    // however the calling crate is optimised.
    #[inline(never)]
    unsafe fn block(forest: &Forest, x: &[f32], cols: usize, s: &mut [f32], h: &mut [bool]) {
        check_sizes(forest, x, cols, s, h);
        forest.block(&forest.l32, x, cols, s, h)
    }
}

impl Feat for f64 {
    const ZERO: f64 = 0.0;
    fn to_f64(self) -> f64 {
        self
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn add(self, o: f64) -> f64 {
        self + o
    }
    fn layout(forest: &Forest) -> &Layout<f64> {
        &forest.l64
    }
    #[inline(never)]
    unsafe fn block(forest: &Forest, x: &[f64], cols: usize, s: &mut [f64], h: &mut [bool]) {
        check_sizes(forest, x, cols, s, h);
        forest.block(&forest.l64, x, cols, s, h)
    }
}

/// One compiled node: a decision (`feat` = feature index, bit 31 set when NaN goes to the true
/// branch; children at `child` (true) and `child + 1` (false)) or a leaf (`feat` = 0, `thr` =
/// NaN, `child` = its own slot - 1, wrapping, so that a step stays on it).
#[derive(Clone, Copy, Debug)]
pub struct Node<T> {
    pub thr: T,
    pub feat: u32,
    pub child: u32,
}

/// Nodes and leaf weights in one scalar type.
pub struct Layout<T> {
    pub nodes: Vec<Node<T>>,
    /// Per slot: the leaf's weights folded for a single target (0 for decision nodes).
    pub leaf_val: Vec<T>,
    pub leaf_w: Vec<T>,
}

/// A compiled ensemble.
pub struct Forest {
    /// The one target every leaf writes to, when that is so (and the aggregate is a sum).
    pub fold: Option<usize>,
    pub n_targets: usize,
    pub agg: Agg,
    pub roots: Vec<u32>,
    /// Per tree: the number of steps from its root to its deepest leaf (a walk of that many
    /// steps ends on a leaf whatever the row).
    pub depth: Vec<u32>,
    pub l32: Layout<f32>,
    pub l64: Layout<f64>,
    /// Per-slot modes when the ensemble mixes comparison modes (empty otherwise, except in
    /// WebAssembly builds).
    pub modes: Vec<u8>,
    pub uniform: Option<Mode>,
    pub any_mvt: bool,
    /// Per-slot index into `member_sets` (MEMBER nodes only).
    pub member_of: Vec<u32>,
    pub member_sets: Vec<Vec<f64>>,
    /// Per slot: the leaf index (0 for decision nodes).
    pub leaf_of: Vec<u32>,
    /// Every leaf has one weight for each target, in target order (so leaf `l`'s weights are
    /// `leaf_w[l·n_targets..]`), and the aggregate is a sum: every walk adds a whole row of
    /// weights and sets every flag (a random forest classifier's class probabilities).
    pub dense: bool,
    /// Per tree, when every leaf has exactly one weight, every leaf of a tree writes the same
    /// target and the aggregate is a sum (XGBoost and LightGBM multiclass: one tree per class
    /// and round): that target. `leaf_val` then holds each leaf's weight, and every walk through
    /// tree `i` adds it to target `tree_target[i]` and sets that target's flag. Empty otherwise.
    pub tree_target: Vec<u32>,
    pub leaf_start: Vec<u32>,
    pub leaf_target: Vec<u32>,
    pub leaf_has: Vec<bool>,
    /// Number of features X must have at least.
    pub min_features: usize,
    /// Whether any tree has a decision node (otherwise no walk reads X).
    pub has_interior: bool,
}

impl Forest {
    fn block<T: Feat>(&self, layout: &Layout<T>, x: &[T], cols: usize, s: &mut [T], h: &mut [bool]) {
        // Missing-value tracking only matters for blocks that contain NaN.
        let nan = self.any_mvt && x.iter().any(|v| v.is_nan());
        // WebAssembly keeps specialised walks only for the modes scikit-learn/LightGBM (<=) and
        // XGBoost (<) export, without missing values; the rest share the general walk (each
        // specialisation costs ~8 KiB of code per feature type).
        #[cfg(target_arch = "wasm32")]
        match (self.uniform, nan) {
            (Some(Mode::Leq), false) => self.block_mode::<T, 0, false>(layout, x, cols, s, h),
            (Some(Mode::Lt), false) => self.block_mode::<T, 1, false>(layout, x, cols, s, h),
            _ => self.block_mode::<T, 255, true>(layout, x, cols, s, h),
        }
        #[cfg(not(target_arch = "wasm32"))]
        match (self.uniform, nan) {
            (Some(Mode::Leq), false) => self.block_mode::<T, 0, false>(layout, x, cols, s, h),
            (Some(Mode::Leq), true) => self.block_mode::<T, 0, true>(layout, x, cols, s, h),
            (Some(Mode::Lt), false) => self.block_mode::<T, 1, false>(layout, x, cols, s, h),
            (Some(Mode::Lt), true) => self.block_mode::<T, 1, true>(layout, x, cols, s, h),
            (Some(Mode::Gte), false) => self.block_mode::<T, 2, false>(layout, x, cols, s, h),
            (Some(Mode::Gte), true) => self.block_mode::<T, 2, true>(layout, x, cols, s, h),
            (Some(Mode::Gt), false) => self.block_mode::<T, 3, false>(layout, x, cols, s, h),
            (Some(Mode::Gt), true) => self.block_mode::<T, 3, true>(layout, x, cols, s, h),
            (Some(Mode::Eq), _) => self.block_mode::<T, 4, true>(layout, x, cols, s, h),
            _ => self.block_mode::<T, 255, true>(layout, x, cols, s, h),
        }
    }

    /// One step of a walk from slot `i` for the row `x` (a leaf stays where it is).
    #[inline(always)]
    fn step<T: Feat, const M: u8, const NAN: bool>(&self, nodes: &[Node<T>], i: u32, x: &[T]) -> u32 {
        debug_assert!((i as usize) < nodes.len());
        // SAFETY: walks start at roots and move to `child` or `child + 1` of a decision node,
        // which are slots for a well-formed forest (`Feat::block`'s contract), or stay on a leaf;
        // so `i` is always a valid slot.
        let n = unsafe { *nodes.get_unchecked(i as usize) };
        let f = (n.feat & !MVT) as usize;
        debug_assert!(f < x.len());
        // SAFETY: a decision node's feature is below `min_features` and a leaf's is 0;
        // `check_sizes` checked that rows have at least `min_features` values, and walks only
        // run when some decision node exists (so `min_features` >= 1).
        let v = unsafe { *x.get_unchecked(f) };
        let t = n.thr;
        let mode = if M == 255 { self.modes[i as usize] } else { M };
        let c = match mode {
            0 => v <= t,
            1 => v < t,
            2 => v >= t,
            3 => v > t,
            4 => v == t,
            5 => v != t,
            _ => {
                let vf = v.to_f64();
                self.member_sets[self.member_of[i as usize] as usize].iter().any(|&m| m == vf)
            }
        };
        let go = c | (NAN & ((n.feat & MVT) != 0) & v.is_nan());
        n.child.wrapping_add((!go) as u32)
    }

    /// Advances `LANES` walks (slot `idx[j]` on row `xs[j]`) together `steps` times: enough for
    /// every one to reach its leaf, where it stays. No test of whether any walk still moves sits
    /// between the steps, so the lanes' loads overlap.
    #[inline(always)]
    fn walk<T: Feat, const M: u8, const NAN: bool>(&self, nodes: &[Node<T>], idx: &mut [u32; LANES], xs: &[&[T]; LANES], steps: u32) {
        for _ in 0..steps {
            for j in 0..LANES {
                idx[j] = self.step::<T, M, NAN>(nodes, idx[j], xs[j]);
            }
        }
    }

    /// Adds the leaf at `slot` to the scores `s`/flags `h` of one row.
    #[inline(always)]
    fn accumulate<T: Feat>(&self, layout: &Layout<T>, tree: usize, slot: u32, s: &mut [T], h: &mut [bool]) {
        let slot = slot as usize;
        if let Some(&t) = self.tree_target.get(tree) {
            // The flags were all set by `block_mode`.
            let t = t as usize;
            s[t] = s[t].add(layout.leaf_val[slot]);
            return;
        }
        if let Some(k) = self.fold {
            s[k] = s[k].add(layout.leaf_val[slot]);
            h[k] |= self.leaf_has[self.leaf_of[slot] as usize];
            return;
        }
        if self.dense {
            // The flags were all set by `block_mode`.
            let nt = s.len();
            let w = &layout.leaf_w[self.leaf_of[slot] as usize * nt..][..nt];
            for (x, &w) in s.iter_mut().zip(w) {
                *x = x.add(w);
            }
            return;
        }
        let leaf = self.leaf_of[slot] as usize;
        let (a, b) = (self.leaf_start[leaf] as usize, self.leaf_start[leaf + 1] as usize);
        for k in a..b {
            let t = self.leaf_target[k] as usize;
            let w = layout.leaf_w[k];
            match self.agg {
                Agg::Sum | Agg::Average => s[t] = s[t].add(w),
                Agg::Min => {
                    if !h[t] || w < s[t] {
                        s[t] = w
                    }
                }
                Agg::Max => {
                    if !h[t] || w > s[t] {
                        s[t] = w
                    }
                }
            }
            h[t] = true;
        }
    }

    fn block_mode<T: Feat, const M: u8, const NAN: bool>(
        &self,
        layout: &Layout<T>,
        x: &[T],
        cols: usize,
        s: &mut [T],
        h: &mut [bool],
    ) {
        let nt = self.n_targets;
        let nodes = &layout.nodes[..];
        let rows = s.len() / nt;
        let row = |r: usize| &x[r * cols..(r + 1) * cols];
        if self.dense && !self.roots.is_empty() {
            // Every walk reaches a leaf that writes every target.
            h.fill(true);
        }
        for &t in &self.tree_target {
            // Every walk through that tree writes its target.
            for hr in h.chunks_mut(nt) {
                hr[t as usize] = true;
            }
        }
        if !self.has_interior {
            for (tree, &root) in self.roots.iter().enumerate() {
                for r in 0..rows {
                    self.accumulate(layout, tree, root, &mut s[r * nt..(r + 1) * nt], &mut h[r * nt..(r + 1) * nt]);
                }
            }
            return;
        }
        if rows >= LANES {
            // Groups of rows through one tree; a short last group repeats its last row.
            for (tree, (&root, &steps)) in self.roots.iter().zip(&self.depth).enumerate() {
                let mut r0 = 0;
                while r0 < rows {
                    let n = LANES.min(rows - r0);
                    let xs: [&[T]; LANES] = std::array::from_fn(|j| row(r0 + j.min(n - 1)));
                    let mut idx = [root; LANES];
                    self.walk::<T, M, NAN>(nodes, &mut idx, &xs, steps);
                    for (j, &slot) in idx.iter().enumerate().take(n) {
                        let r = r0 + j;
                        self.accumulate(layout, tree, slot, &mut s[r * nt..(r + 1) * nt], &mut h[r * nt..(r + 1) * nt]);
                    }
                    r0 += n;
                }
            }
        } else {
            // Groups of trees for one row; a short last group repeats its last tree.
            for r in 0..rows {
                let xs = [row(r); LANES];
                let (sr, hr) = (&mut s[r * nt..(r + 1) * nt], &mut h[r * nt..(r + 1) * nt]);
                for (g, (group, depths)) in self.roots.chunks(LANES).zip(self.depth.chunks(LANES)).enumerate() {
                    let last = group.len() - 1;
                    let mut idx: [u32; LANES] = std::array::from_fn(|j| group[j.min(last)]);
                    let steps = depths.iter().copied().max().unwrap_or(0);
                    self.walk::<T, M, NAN>(nodes, &mut idx, &xs, steps);
                    for (j, &slot) in idx[..group.len()].iter().enumerate() {
                        self.accumulate(layout, g * LANES + j, slot, sr, hr);
                    }
                }
            }
        }
    }

}
