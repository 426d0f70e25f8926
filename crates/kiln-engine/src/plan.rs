//! Compiling a graph into an execution plan, and running it.
//!
//! Compilation: topological order (cycles rejected), operator build through the registry (every
//! unsupported node reported at once), type and shape inference, constant folding, dead-node
//! removal, and a liveness analysis that frees each intermediate value right after its last use.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use kiln_onnx::proto::{GraphProto, NodeProto};
use kiln_onnx::tensor::{tensor_from_proto, value_type_from_proto};
use kiln_tensor::{Value, ValueType};

use crate::error::{Error, OpError, OpResult, UnsupportedNode};
use crate::op::{Inputs, NodeInfo, Op};
use crate::registry::Registry;

/// Where a step reads a value from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    Const(usize),
    Slot(usize),
    /// An outer-scope value, passed by reference to a subgraph's `execute`.
    Ext(usize),
}

pub(crate) struct Step {
    pub op: Box<dyn Op>,
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<Option<Src>>,
    pub outputs: Vec<Option<usize>>,
    /// Slots whose last reader is this step: freed right after it.
    pub free: Vec<usize>,
    /// Input 0 is a slot read last by this step (and only once by it), and the op can reuse its
    /// buffer: it is moved into the op instead of borrowed.
    pub donate0: bool,
}

/// A compiled graph.
pub(crate) struct Plan {
    pub consts: Vec<Arc<Value>>,
    pub steps: Vec<Step>,
    pub num_slots: usize,
    /// Graph inputs (in declaration order): name, declared type, slot.
    pub inputs: Vec<(String, Option<ValueType>, usize)>,
    /// Outer-scope values the graph reads (subgraphs only), in the order `execute` takes them.
    pub externals: Vec<String>,
    /// Graph outputs: name, type, where the value is.
    pub outputs: Vec<(String, Option<ValueType>, Src)>,
    /// Op types of the nodes as loaded (before folding), for `inspect`.
    pub op_histogram: Vec<(String, usize)>,
}

impl Plan {
    /// (node name, op type) of each step, in execution order.
    pub(crate) fn step_names(&self) -> Vec<(String, String)> {
        self.steps.iter().map(|s| (s.name.clone(), s.op_type.clone())).collect()
    }
}

/// Everything compilation needs besides the graph.
pub(crate) struct CompileEnv<'a> {
    pub registry: &'a Registry,
    pub opsets: &'a HashMap<String, i64>,
    pub base_dir: Option<&'a Path>,
    pub optimize: bool,
}

enum Known {
    Const(Arc<Value>),
    Dynamic(Option<ValueType>),
}

fn domain_key(d: &str) -> &str {
    if d == "ai.onnx" {
        ""
    } else {
        d
    }
}

fn node_label(n: &NodeProto, i: usize) -> String {
    if n.name.is_empty() {
        format!("{}_{}", n.op_type, i)
    } else {
        n.name.clone()
    }
}

/// Orders nodes so every input is produced before it is read; errors on cycles and on inputs
/// nobody produces.
fn topo_order(nodes: &[NodeProto], available: &HashSet<&str>) -> Result<Vec<usize>, Error> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if available.contains(o.as_str()) || producer.insert(o.as_str(), i).is_some() {
                return Err(Error::InvalidModel(format!(
                    "value '{o}' is produced more than once (node '{}')",
                    node_label(n, i)
                )));
            }
        }
    }
    let mut indeg = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let mut deps: Vec<usize> = Vec::new();
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(inp.as_str()) {
                deps.push(p);
            } else if !available.contains(inp.as_str()) {
                return Err(Error::InvalidModel(format!(
                    "node '{}' ({}) reads '{inp}', which is not a graph input, an initializer or the output of any node",
                    node_label(n, i),
                    n.op_type
                )));
            }
        }
        // Subgraph attributes may read outer-scope values produced by other nodes.
        for a in &n.attribute {
            let mut names = Vec::new();
            if let Some(g) = &a.g {
                collect_outer_refs(g, &mut names);
            }
            for g in &a.graphs {
                collect_outer_refs(g, &mut names);
            }
            for name in names {
                if let Some(&p) = producer.get(name.as_str()) {
                    deps.push(p);
                }
            }
        }
        deps.sort_unstable();
        deps.dedup();
        for p in deps {
            if p == i {
                return Err(Error::InvalidModel(format!("node '{}' reads its own output", node_label(n, i))));
            }
            indeg[i] += 1;
            users[p].push(i);
        }
    }
    let mut queue: VecDeque<usize> = (0..nodes.len()).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                queue.push_back(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck: Vec<String> = (0..nodes.len())
            .filter(|&i| indeg[i] > 0)
            .take(5)
            .map(|i| format!("'{}'", node_label(&nodes[i], i)))
            .collect();
        return Err(Error::InvalidModel(format!("the graph has a cycle through nodes {}", stuck.join(", "))));
    }
    Ok(order)
}

/// Names a subgraph reads that it does not define itself (outer-scope references).
pub(crate) fn collect_outer_refs(g: &GraphProto, out: &mut Vec<String>) {
    let mut defined: HashSet<&str> = HashSet::new();
    for i in &g.input {
        defined.insert(&i.name);
    }
    for t in &g.initializer {
        defined.insert(&t.name);
    }
    for n in &g.node {
        for o in &n.output {
            defined.insert(o);
        }
    }
    for n in &g.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            if !defined.contains(i.as_str()) {
                out.push(i.clone());
            }
        }
        for a in &n.attribute {
            let mut inner = Vec::new();
            if let Some(sg) = &a.g {
                collect_outer_refs(sg, &mut inner);
            }
            for sg in &a.graphs {
                collect_outer_refs(sg, &mut inner);
            }
            out.extend(inner.into_iter().filter(|s| !defined.contains(s.as_str())));
        }
    }
    for o in &g.output {
        if !defined.contains(o.name.as_str()) {
            out.push(o.name.clone());
        }
    }
}

/// Compiles a graph. `outer` lists outer-scope values visible to the graph (for subgraphs): they
/// become extra inputs placed after the declared ones.
pub(crate) fn compile(
    graph: &GraphProto,
    env: &CompileEnv,
    outer: &[(String, Option<ValueType>)],
) -> Result<Plan, Error> {
    let fused = if env.optimize { crate::fuse::fuse_activations(graph, env.base_dir) } else { None };
    let fused = match env.optimize {
        true => crate::fuse::fuse_conv_activations(graph, fused.as_deref().unwrap_or(&graph.node)).or(fused),
        false => fused,
    };
    let nodes: &[NodeProto] = fused.as_deref().unwrap_or(&graph.node);
    let mut known: HashMap<String, Known> = HashMap::new();
    let mut consts: Vec<Arc<Value>> = Vec::new();

    // Initializers. An initializer that is also listed as a graph input is a constant here
    // (IR < 4 models list every weight as an input).
    let mut init_names: HashSet<&str> = HashSet::new();
    for t in &graph.initializer {
        let tensor = tensor_from_proto(t, env.base_dir)
            .map_err(|e| Error::InvalidModel(format!("initializer '{}': {e}", t.name)))?;
        known.insert(t.name.clone(), Known::Const(Arc::new(Value::Tensor(tensor))));
        init_names.insert(&t.name);
    }
    for st in &graph.sparse_initializer {
        let name = st.values.as_ref().map(|v| v.name.clone()).unwrap_or_default();
        let t = crate::sparse::densify(st, env.base_dir)
            .map_err(|e| Error::InvalidModel(format!("sparse initializer '{name}': {e}")))?;
        known.insert(name, Known::Const(Arc::new(Value::Tensor(t))));
    }

    let mut inputs: Vec<(String, Option<ValueType>, usize)> = Vec::new();
    let mut num_slots = 0usize;
    let mut slot_of: HashMap<String, usize> = HashMap::new();
    let mut ext_of: HashMap<String, usize> = HashMap::new();
    let mut externals: Vec<String> = Vec::new();
    for vi in &graph.input {
        if init_names.contains(vi.name.as_str()) {
            continue;
        }
        let ty = match &vi.r#type {
            Some(tp) => Some(value_type_from_proto(tp).map_err(|e| {
                Error::InvalidModel(format!("graph input '{}': {e}", vi.name))
            })?),
            None => None,
        };
        if slot_of.contains_key(&vi.name) {
            return Err(Error::InvalidModel(format!("graph input '{}' is declared twice", vi.name)));
        }
        slot_of.insert(vi.name.clone(), num_slots);
        inputs.push((vi.name.clone(), ty.clone(), num_slots));
        known.insert(vi.name.clone(), Known::Dynamic(ty));
        num_slots += 1;
    }
    for (name, ty) in outer {
        if known.contains_key(name) {
            // Shadowed by the subgraph's own input or initializer.
            continue;
        }
        ext_of.insert(name.clone(), externals.len());
        externals.push(name.clone());
        known.insert(name.clone(), Known::Dynamic(ty.clone()));
    }

    // Declared types of intermediate values and outputs.
    let mut declared: HashMap<&str, ValueType> = HashMap::new();
    for vi in graph.value_info.iter().chain(graph.output.iter()) {
        if let Some(tp) = &vi.r#type {
            if let Ok(t) = value_type_from_proto(tp) {
                declared.insert(&vi.name, t);
            }
        }
    }

    let available: HashSet<&str> = known.keys().map(|s| s.as_str()).collect();
    let order = topo_order(nodes, &available)?;

    let mut histogram: HashMap<String, usize> = HashMap::new();
    for n in nodes {
        *histogram.entry(n.op_type.clone()).or_default() += 1;
    }

    // Build operators; fold what is constant.
    let mut unsupported: Vec<UnsupportedNode> = Vec::new();
    let mut built: Vec<(usize, Box<dyn Op>)> = Vec::new();
    for &ni in &order {
        let n = &nodes[ni];
        let label = node_label(n, ni);
        let domain = domain_key(&n.domain);
        let opset = env.opsets.get(domain).copied().unwrap_or(0);
        let const_inputs: Vec<Option<Arc<Value>>> = n
            .input
            .iter()
            .map(|s| match known.get(s) {
                Some(Known::Const(v)) => Some(v.clone()),
                _ => None,
            })
            .collect();
        let input_types: Vec<Option<ValueType>> = n
            .input
            .iter()
            .map(|s| match known.get(s) {
                Some(Known::Const(v)) => Some(v.value_type()),
                Some(Known::Dynamic(t)) => t.clone(),
                None => None,
            })
            .collect();
        let entry = match env.registry.get(domain, &n.op_type) {
            Some(e) => e,
            None => {
                unsupported.push(UnsupportedNode {
                    node: label,
                    domain: n.domain.clone(),
                    op_type: n.op_type.clone(),
                    opset,
                    reason: String::new(),
                });
                for o in &n.output {
                    known.insert(o.clone(), Known::Dynamic(None));
                }
                continue;
            }
        };
        if opset < entry.since && !env.opsets.is_empty() {
            // Older opset than we implement: still try; builders handle opset differences.
        }
        let implicit = implicit_inputs(n, &known);
        let info = NodeInfo {
            implicit_inputs: implicit.clone(),
            registry: env.registry,
            name: &label,
            op_type: &n.op_type,
            domain,
            opset,
            num_inputs: n.input.len(),
            num_outputs: n.output.len(),
            const_inputs: const_inputs.clone(),
            input_types: input_types.clone(),
            attrs: n.attribute.iter().map(|a| (a.name.as_str(), a)).collect(),
            base_dir: env.base_dir,
            opsets: env.opsets,
        };
        let op = match (entry.build)(&info) {
            Ok(op) => op,
            Err(e) => {
                unsupported.push(UnsupportedNode {
                    node: label,
                    domain: n.domain.clone(),
                    op_type: n.op_type.clone(),
                    opset,
                    reason: e.0,
                });
                for o in &n.output {
                    known.insert(o.clone(), Known::Dynamic(None));
                }
                continue;
            }
        };
        let all_const = const_inputs.iter().zip(&n.input).all(|(c, name)| c.is_some() || name.is_empty());
        let has_subgraph = n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty());
        if env.optimize && all_const && op.is_deterministic() && !has_subgraph {
            let refs: Vec<Option<&Value>> = const_inputs.iter().map(|c| c.as_deref()).collect();
            let outs = op.run(&Inputs::new(&refs)).map_err(|e| {
                Error::InvalidModel(format!("node '{label}' ({}) cannot be evaluated: {e}", n.op_type))
            })?;
            let mut outs = outs.into_iter();
            for o in &n.output {
                let v = outs.next();
                if o.is_empty() {
                    continue;
                }
                match v {
                    Some(v) => {
                        known.insert(o.clone(), Known::Const(Arc::new(v)));
                    }
                    None => {
                        return Err(Error::InvalidModel(format!(
                            "node '{label}' ({}) did not produce output '{o}'",
                            n.op_type
                        )))
                    }
                }
            }
            continue;
        }
        let type_refs: Vec<Option<&ValueType>> = input_types.iter().map(|t| t.as_ref()).collect();
        if env.optimize && !has_subgraph {
            if let Some(vals) = op.fold_from_types(&type_refs) {
                if vals.len() >= n.output.iter().filter(|o| !o.is_empty()).count() {
                    for (o, v) in n.output.iter().zip(vals) {
                        if !o.is_empty() {
                            known.insert(o.clone(), Known::Const(Arc::new(v)));
                        }
                    }
                    continue;
                }
            }
        }
        let const_refs: Vec<Option<&kiln_tensor::Tensor>> =
            const_inputs.iter().map(|c| c.as_deref().and_then(|v| v.as_tensor())).collect();
        let inferred = op.infer(&type_refs, &const_refs);
        for (k, o) in n.output.iter().enumerate() {
            if o.is_empty() {
                continue;
            }
            let ty = inferred
                .as_ref()
                .and_then(|v| v.get(k).cloned())
                .or_else(|| declared.get(o.as_str()).cloned());
            known.insert(o.clone(), Known::Dynamic(ty));
        }
        built.push((ni, op));
    }
    if !unsupported.is_empty() {
        return Err(Error::Unsupported(unsupported));
    }

    // Dead-node removal: keep only nodes some graph output depends on.
    let mut needed: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut keep = vec![false; built.len()];
    for (bi, (ni, _)) in built.iter().enumerate().rev() {
        let n = &nodes[*ni];
        if n.output.iter().any(|o| needed.contains(o.as_str())) {
            keep[bi] = true;
            for i in n.input.iter().filter(|s| !s.is_empty()) {
                needed.insert(i);
            }
            for a in &n.attribute {
                let mut refs = Vec::new();
                if let Some(g) = &a.g {
                    collect_outer_refs(g, &mut refs);
                }
                for g in &a.graphs {
                    collect_outer_refs(g, &mut refs);
                }
                for r in refs {
                    if let Some((k, _)) = known.get_key_value(&r) {
                        needed.insert(k.as_str());
                    }
                }
            }
        }
    }

    // Constants are addressed by index.
    let mut const_index: HashMap<String, usize> = HashMap::new();
    let mut src_of = |name: &str, known: &HashMap<String, Known>, slot_of: &mut HashMap<String, usize>, num_slots: &mut usize| -> Option<Src> {
        if let Some(&e) = ext_of.get(name) {
            return Some(Src::Ext(e));
        }
        match known.get(name)? {
            Known::Const(v) => {
                let idx = *const_index.entry(name.to_string()).or_insert_with(|| {
                    consts.push(v.clone());
                    consts.len() - 1
                });
                Some(Src::Const(idx))
            }
            Known::Dynamic(_) => {
                let s = *slot_of.entry(name.to_string()).or_insert_with(|| {
                    *num_slots += 1;
                    *num_slots - 1
                });
                Some(Src::Slot(s))
            }
        }
    };

    let mut steps: Vec<Step> = Vec::new();
    for (bi, (ni, op)) in built.into_iter().enumerate() {
        if !keep[bi] {
            continue;
        }
        let n = &nodes[ni];
        let mut ins = Vec::with_capacity(n.input.len());
        for (ii, i) in n.input.iter().enumerate() {
            let captured = matches!(known.get(i), Some(Known::Const(_))) && op.captures_const_input(ii);
            if i.is_empty() || captured {
                ins.push(None);
            } else {
                ins.push(src_of(i, &known, &mut slot_of, &mut num_slots));
            }
        }
        // Outer-scope values read by subgraphs follow the declared inputs.
        for (name, _) in implicit_inputs(n, &known) {
            ins.push(src_of(&name, &known, &mut slot_of, &mut num_slots));
        }
        let mut outs = Vec::with_capacity(n.output.len());
        for o in &n.output {
            if o.is_empty() {
                outs.push(None);
            } else {
                match src_of(o, &known, &mut slot_of, &mut num_slots) {
                    Some(Src::Slot(s)) => outs.push(Some(s)),
                    _ => outs.push(None),
                }
            }
        }
        steps.push(Step { op, name: node_label(n, ni), op_type: n.op_type.clone(), inputs: ins, outputs: outs, free: Vec::new(), donate0: false });
    }

    let mut outputs = Vec::new();
    for o in &graph.output {
        let src = src_of(&o.name, &known, &mut slot_of, &mut num_slots).ok_or_else(|| {
            Error::InvalidModel(format!("graph output '{}' is not produced by any node", o.name))
        })?;
        let ty = declared.get(o.name.as_str()).cloned().or_else(|| match known.get(&o.name) {
            Some(Known::Dynamic(t)) => t.clone(),
            Some(Known::Const(v)) => Some(v.value_type()),
            None => None,
        });
        outputs.push((o.name.clone(), ty, src));
    }

    // Liveness: free every slot after its last reader, except graph outputs.
    let output_slots: HashSet<usize> = outputs
        .iter()
        .filter_map(|(_, _, s)| if let Src::Slot(s) = s { Some(*s) } else { None })
        .collect();
    let mut last_use: HashMap<usize, usize> = HashMap::new();
    for (si, st) in steps.iter().enumerate() {
        for s in st.inputs.iter().flatten() {
            if let Src::Slot(s) = s {
                last_use.insert(*s, si);
            }
        }
        for s in st.outputs.iter().flatten() {
            last_use.entry(*s).or_insert(si);
        }
    }
    for (slot, si) in last_use {
        if !output_slots.contains(&slot) {
            steps[si].free.push(slot);
        }
    }
    for st in steps.iter_mut() {
        if let Some(Some(Src::Slot(s0))) = st.inputs.first() {
            let once = st.inputs.iter().filter(|i| matches!(i, Some(Src::Slot(s)) if s == s0)).count() == 1;
            st.donate0 = once && st.free.contains(s0) && st.op.reuses_input0();
        }
    }

    let mut op_histogram: Vec<(String, usize)> = histogram.into_iter().collect();
    op_histogram.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(Plan { consts, steps, num_slots, inputs, externals, outputs, op_histogram })
}

/// Outer-scope names a node's subgraphs read that this scope knows, sorted.
fn implicit_inputs(n: &NodeProto, known: &HashMap<String, Known>) -> Vec<(String, Option<ValueType>)> {
    let mut refs = Vec::new();
    for a in &n.attribute {
        if let Some(g) = &a.g {
            collect_outer_refs(g, &mut refs);
        }
        for g in &a.graphs {
            collect_outer_refs(g, &mut refs);
        }
    }
    refs.sort();
    refs.dedup();
    refs.into_iter()
        .filter_map(|r| match known.get(&r) {
            Some(Known::Const(v)) => Some((r, Some(v.value_type()))),
            Some(Known::Dynamic(t)) => Some((r, t.clone())),
            None => None,
        })
        .collect()
}

impl Plan {
    /// Runs the plan; `feeds[i]` is the value of `self.inputs[i]`.
    pub(crate) fn execute(&self, feeds: Vec<Value>) -> Result<Vec<Value>, Error> {
        self.execute_with(feeds, &[])
    }

    /// Runs the plan with outer-scope values: `ext[i]` is the value of `self.externals[i]`.
    pub(crate) fn execute_with(&self, feeds: Vec<Value>, ext: &[Option<&Value>]) -> Result<Vec<Value>, Error> {
        self.execute_profiled(feeds, ext, None)
    }

    /// Like `execute_with`; when `times` is given, records each step's wall time in ms.
    pub(crate) fn execute_profiled(
        &self,
        feeds: Vec<Value>,
        ext: &[Option<&Value>],
        mut times: Option<&mut Vec<f64>>,
    ) -> Result<Vec<Value>, Error> {
        let mut slots: Vec<Option<Value>> = Vec::with_capacity(self.num_slots);
        slots.resize_with(self.num_slots, || None);
        for ((_, _, slot), v) in self.inputs.iter().zip(feeds) {
            slots[*slot] = Some(v);
        }
        for step in &self.steps {
            let started = times.as_ref().map(|_| std::time::Instant::now());
            let outs = {
                // Input 0 handed over by value when this step is its last reader.
                let first = match (step.donate0, step.inputs.first()) {
                    (true, Some(Some(Src::Slot(s)))) => slots[*s].take(),
                    _ => None,
                };
                let mut ins: Vec<Option<&Value>> = Vec::with_capacity(step.inputs.len());
                for src in &step.inputs {
                    ins.push(match src {
                        None => None,
                        Some(Src::Const(i)) => Some(&*self.consts[*i]),
                        Some(Src::Slot(s)) => slots[*s].as_ref(),
                        Some(Src::Ext(e)) => ext.get(*e).copied().flatten(),
                    });
                }
                let inputs = Inputs::new(&ins);
                match first {
                    Some(v) => step.op.run_reusing(v, &inputs),
                    None => step.op.run(&inputs),
                }
                .map_err(|e| Error::Node {
                    node: step.name.clone(),
                    op_type: step.op_type.clone(),
                    message: e.0,
                })?
            };
            let mut outs = outs.into_iter();
            for o in &step.outputs {
                let v = outs.next();
                if let Some(s) = o {
                    match v {
                        Some(v) => slots[*s] = Some(v),
                        None => {
                            return Err(Error::Node {
                                node: step.name.clone(),
                                op_type: step.op_type.clone(),
                                message: "produced fewer outputs than the node declares".into(),
                            })
                        }
                    }
                }
            }
            for s in &step.free {
                slots[*s] = None;
            }
            if let (Some(t), Some(start)) = (times.as_deref_mut(), started) {
                t.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        let mut result = Vec::with_capacity(self.outputs.len());
        for (name, _, src) in &self.outputs {
            let v = match src {
                Src::Const(i) => Some((*self.consts[*i]).clone()),
                Src::Ext(e) => ext.get(*e).copied().flatten().cloned(),
                Src::Slot(s) => {
                    // A graph output listed twice must stay available for the second copy.
                    let later = self.outputs.iter().filter(|(_, _, x)| x == src).count() > 1;
                    if later {
                        slots[*s].clone()
                    } else {
                        slots[*s].take()
                    }
                }
            };
            result.push(v.ok_or_else(|| Error::Node {
                node: name.clone(),
                op_type: "output".into(),
                message: format!("graph output '{name}' was not computed"),
            })?);
        }
        Ok(result)
    }
}

/// A compiled subgraph of a control-flow node (If branch, Loop/Scan body, SequenceMap body).
pub struct Subgraph {
    plan: Plan,
    /// For each of the plan's externals, its index among the node's implicit inputs.
    ext_index: Vec<usize>,
}

impl Subgraph {
    /// Compiles `g` as a subgraph of the node described by `info`.
    pub fn compile(info: &NodeInfo, g: &GraphProto) -> OpResult<Subgraph> {
        let env = CompileEnv { registry: info.registry, opsets: info.opsets, base_dir: info.base_dir, optimize: true };
        let plan = compile(g, &env, &info.implicit_inputs).map_err(|e| OpError(format!("subgraph '{}': {e}", g.name)))?;
        let ext_index = plan
            .externals
            .iter()
            .map(|name| info.implicit_inputs.iter().position(|(n, _)| n == name).unwrap_or(usize::MAX))
            .collect();
        Ok(Subgraph { plan, ext_index })
    }

    /// Number of formal inputs.
    pub fn num_inputs(&self) -> usize {
        self.plan.inputs.len()
    }

    pub fn num_outputs(&self) -> usize {
        self.plan.outputs.len()
    }

    /// Declared types of the formal inputs.
    pub fn input_types(&self) -> Vec<Option<ValueType>> {
        self.plan.inputs.iter().map(|(_, t, _)| t.clone()).collect()
    }

    /// Declared types of the outputs.
    pub fn output_types(&self) -> Vec<Option<ValueType>> {
        self.plan.outputs.iter().map(|(_, t, _)| t.clone()).collect()
    }

    /// Runs the subgraph. `implicit` are the node's implicit inputs (outer-scope values).
    pub fn run(&self, feeds: Vec<Value>, implicit: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        if feeds.len() != self.plan.inputs.len() {
            return Err(OpError(format!(
                "subgraph takes {} inputs, {} given",
                self.plan.inputs.len(),
                feeds.len()
            )));
        }
        let ext: Vec<Option<&Value>> = self.ext_index.iter().map(|&k| implicit.get(k).copied().flatten()).collect();
        self.plan.execute_with(feeds, &ext).map_err(|e| OpError(e.to_string()))
    }
}
