//! Graph rewrites applied before compiling: chains of elementwise nodes that exporters emit for
//! one activation become the single operator computing it in one pass.
//!
//! - `x * Sigmoid(x)` (SiLU, as torch exports it) → `Swish(x)` (alpha 1).
//! - `(x * (Erf(x / √2) + 1)) * 0.5` (exact GELU, as torch exports it) → `Gelu(x)`.
//! - `(x * 0.5) * (Tanh((x + Pow(x, 3) * 0.044715) * √(2/π)) + 1)` (tanh GELU, also with the 0.5
//!   applied last) → `Gelu(x, approximate="tanh")`.
//! - `Act(Conv(...))` for Act in Relu, HardSigmoid, HardSwish, Sigmoid, Swish → the Conv with
//!   [`CONV_ACTIVATION`] / [`CONV_ACTIVATION_PARAMS`] attributes naming the activation it applies.
//! - `Add(Conv(...), r)` and `Act(Add(Conv(...), r))` (a residual connection) → the Conv with `r`
//!   as a fourth input and [`CONV_RESIDUAL`], adding it before the activation.
//!
//! - `Add(MatMul(x, W), b)` with constant float32 W [k, n] and b [n] → `MatMul(x, W, b)`, the
//!   bias applied in the product's epilogue (a third MatMul input exists only in fused graphs).
//! - `Gelu(MatMul(x, W[, b]))` and `Gelu(Gemm(x, W, ...))` with constant float32 W → the product
//!   with the [`MATMUL_GELU`] attribute, GELU applied in its epilogue; also through a Reshape
//!   between the two (`Reshape(Gelu(y))` computes the same as `Gelu(Reshape(y))`).
//!
//! A chain is fused only when each intermediate value has exactly one reader and is neither a
//! graph output nor read by a subgraph, and when its constants are the expected scalars. Uses
//! only the decoded graph; depends on nothing else of the engine.

use std::collections::HashMap;
use std::path::Path;

use kiln_onnx::proto::{AttributeProto, AttributeType, GraphProto, NodeProto, TensorProto};
use kiln_onnx::tensor::tensor_from_proto;

use crate::plan::collect_outer_refs;

/// The graph's nodes with every fusion applied, or `None` when nothing was fused.
pub(crate) fn fuse_graph(graph: &GraphProto, base_dir: Option<&Path>) -> Option<Vec<NodeProto>> {
    let act = fuse_activations(graph, base_dir);
    let residual = fuse_conv_residual(graph, act.as_deref().unwrap_or(&graph.node)).or(act);
    let conv = fuse_conv_activations(graph, residual.as_deref().unwrap_or(&graph.node)).or(residual);
    let bias = fuse_matmul_bias(graph, conv.as_deref().unwrap_or(&graph.node), base_dir).or(conv);
    fuse_matmul_gelu(graph, bias.as_deref().unwrap_or(&graph.node), base_dir).or(bias)
}

/// Who reads each value of a node list, and which values must stay (graph outputs, values read
/// by subgraphs).
struct Uses<'a> {
    readers: HashMap<&'a str, Vec<usize>>,
    pinned: Vec<String>,
}

impl<'a> Uses<'a> {
    fn new(graph: &GraphProto, nodes: &'a [NodeProto]) -> Uses<'a> {
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                readers.entry(inp.as_str()).or_default().push(i);
            }
        }
        let mut pinned: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        for n in nodes {
            for a in &n.attribute {
                if let Some(g) = &a.g {
                    collect_outer_refs(g, &mut pinned);
                }
                for g in &a.graphs {
                    collect_outer_refs(g, &mut pinned);
                }
            }
        }
        Uses { readers, pinned }
    }

    /// The only reader of `v` (a node index), when `v` is an intermediate value.
    fn sole_reader(&self, v: &str) -> Option<usize> {
        if self.pinned.iter().any(|p| p == v) {
            return None;
        }
        match self.readers.get(v).map(|r| r.as_slice()) {
            Some([i]) => Some(*i),
            _ => None,
        }
    }
}

/// The graph's nodes with fusable chains replaced, or `None` when nothing was fused.
pub(crate) fn fuse_activations(graph: &GraphProto, base_dir: Option<&Path>) -> Option<Vec<NodeProto>> {
    let nodes = &graph.node;
    let uses = Uses::new(graph, nodes);
    let producer: HashMap<&str, usize> =
        nodes.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let inits: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let sole_reader = |v: &str| uses.sole_reader(v);
    // The value of a scalar float constant (initializer or Constant node).
    let scalar = |v: &str| -> Option<f64> {
        let t = match inits.get(v) {
            Some(t) => tensor_from_proto(t, base_dir).ok()?,
            None => {
                let n = &nodes[*producer.get(v)?];
                if n.op_type != "Constant" || !n.domain.is_empty() {
                    return None;
                }
                let a = n.attribute.iter().find(|a| a.name == "value" || a.name == "value_float")?;
                if a.name == "value_float" {
                    return Some(a.f as f64);
                }
                tensor_from_proto(a.t.as_ref()?, base_dir).ok()?
            }
        };
        if t.len() != 1 {
            return None;
        }
        match t.dtype() {
            kiln_tensor::DType::F32 => t.as_slice::<f32>().ok().map(|s| s[0] as f64),
            kiln_tensor::DType::F64 => t.as_slice::<f64>().ok().map(|s| s[0]),
            _ => None,
        }
    };
    let is = |i: usize, op: &str| nodes[i].op_type == op && nodes[i].domain.is_empty() && nodes[i].input.len() == if matches!(op, "Erf" | "Sigmoid" | "Tanh") { 1 } else { 2 };
    // For a binary node reading `v`, its other input.
    let other = |i: usize, v: &str| -> Option<String> {
        let n = &nodes[i];
        match (n.input[0] == v, n.input[1] == v) {
            (true, false) => Some(n.input[1].clone()),
            (false, true) => Some(n.input[0].clone()),
            _ => None,
        }
    };
    let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() <= 1e-4 * want.abs().max(1.0));

    // Fused node by the index of the chain's last node (whose place it takes); removed nodes.
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    let mut removed = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if removed[i] || n.output.len() != 1 || n.output[0].is_empty() {
            continue;
        }
        let x = match n.input.first() {
            Some(x) if !x.is_empty() => x.as_str(),
            _ => continue,
        };
        if is(i, "Sigmoid") {
            let s = n.output[0].as_str();
            let Some(m) = sole_reader(s) else { continue };
            if !is(m, "Mul") || removed[m] || other(m, s).as_deref() != Some(x) {
                continue;
            }
            removed[i] = true;
            removed[m] = true;
            replace.insert(m, fused_node("Swish", x, &nodes[m]));
        } else if is(i, "Div") && n.input[0] == x && near(scalar(&n.input[1]), std::f64::consts::SQRT_2) {
            let chain = (|| {
                let e = sole_reader(&n.output[0]).filter(|&e| is(e, "Erf"))?;
                let a = sole_reader(nodes[e].output.first()?).filter(|&a| is(a, "Add"))?;
                if !near(scalar(&other(a, &nodes[e].output[0])?), 1.0) {
                    return None;
                }
                let m1 = sole_reader(nodes[a].output.first()?).filter(|&m| is(m, "Mul"))?;
                if other(m1, &nodes[a].output[0])? != x {
                    return None;
                }
                let m2 = sole_reader(nodes[m1].output.first()?).filter(|&m| is(m, "Mul"))?;
                if !near(scalar(&other(m2, &nodes[m1].output[0])?), 0.5) {
                    return None;
                }
                Some([e, a, m1, m2])
            })();
            let Some(chain) = chain else { continue };
            if chain.iter().any(|&c| removed[c]) {
                continue;
            }
            removed[i] = true;
            for &c in &chain {
                removed[c] = true;
            }
            replace.insert(chain[3], fused_node("Gelu", x, &nodes[chain[3]]));
        } else if is(i, "Pow") && n.input[0] == x && near(scalar(&n.input[1]), 3.0) {
            // Pow → Mul(0.044715) → Add(x) → Mul(√(2/π)) → Tanh → Add(1), then either
            // Mul(Mul(x, 0.5), ·) or Mul(Mul(x, ·), 0.5).
            let chain = (|| {
                let step = |v: &str, op: &str, c: f64| -> Option<usize> {
                    let r = sole_reader(v).filter(|&r| is(r, op))?;
                    near(scalar(&other(r, v)?), c).then_some(r)
                };
                let cube = step(&n.output[0], "Mul", 0.044715)?;
                let inner = sole_reader(nodes[cube].output.first()?).filter(|&a| is(a, "Add"))?;
                if other(inner, &nodes[cube].output[0])? != x {
                    return None;
                }
                let scaled = step(nodes[inner].output.first()?, "Mul", (2.0 / std::f64::consts::PI).sqrt())?;
                let t = sole_reader(nodes[scaled].output.first()?).filter(|&t| is(t, "Tanh"))?;
                let plus1 = step(nodes[t].output.first()?, "Add", 1.0)?;
                let w = nodes[plus1].output.first()?;
                let m = sole_reader(w).filter(|&m| is(m, "Mul"))?;
                let o = other(m, w)?;
                if o == x {
                    let half = step(nodes[m].output.first()?, "Mul", 0.5)?;
                    return Some([cube, inner, scaled, t, plus1, m, half]);
                }
                // `o` must be Mul(x, 0.5) read only here.
                let h = *producer.get(o.as_str())?;
                if !is(h, "Mul") || sole_reader(&o) != Some(m) || !near(other(h, x).and_then(|c| scalar(&c)), 0.5) {
                    return None;
                }
                Some([cube, inner, scaled, t, plus1, h, m])
            })();
            let Some(chain) = chain else { continue };
            if chain.iter().any(|&c| removed[c]) {
                continue;
            }
            removed[i] = true;
            for &c in &chain {
                removed[c] = true;
            }
            let mut g = fused_node("Gelu", x, &nodes[chain[6]]);
            g.attribute.push(AttributeProto {
                name: "approximate".to_string(),
                r#type: AttributeType::String,
                s: b"tanh".to_vec(),
                ..AttributeProto::default()
            });
            replace.insert(chain[6], g);
        }
    }
    rewritten(nodes, replace, &removed)
}

/// `nodes` with the nodes in `replace` swapped in and those marked in `removed` dropped; `None`
/// when nothing was replaced.
fn rewritten(nodes: &[NodeProto], mut replace: HashMap<usize, NodeProto>, removed: &[bool]) -> Option<Vec<NodeProto>> {
    if replace.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        if let Some(f) = replace.remove(&i) {
            out.push(f);
        } else if !removed[i] {
            out.push(n.clone());
        }
    }
    Some(out)
}

/// A single-input node of `op` reading `x` that produces `last`'s output under `last`'s name.
fn fused_node(op: &str, x: &str, last: &NodeProto) -> NodeProto {
    NodeProto {
        input: vec![x.to_string()],
        output: last.output.clone(),
        name: last.name.clone(),
        op_type: op.to_string(),
        ..NodeProto::default()
    }
}

/// The shape of `v` when it is a float32 constant: an initializer, a Constant node's tensor, or an
/// Identity of either (initializers are not decoded).
fn const_f32_shape(v: &str, nodes: &[NodeProto], producer: &HashMap<&str, usize>, inits: &HashMap<&str, &TensorProto>, base_dir: Option<&Path>) -> Option<Vec<usize>> {
    const FLOAT: i32 = 1;
    let mut v = v;
    for _ in 0..8 {
        if let Some(t) = inits.get(v) {
            return (t.data_type == FLOAT).then(|| t.dims.iter().map(|&d| usize::try_from(d).ok()).collect()).flatten();
        }
        let n = &nodes[*producer.get(v)?];
        if !n.domain.is_empty() {
            return None;
        }
        match n.op_type.as_str() {
            "Identity" => v = n.input.first()?,
            "Constant" => {
                let a = n.attribute.iter().find(|a| a.name == "value")?;
                let t = tensor_from_proto(a.t.as_ref()?, base_dir).ok()?;
                return (t.dtype() == kiln_tensor::DType::F32).then(|| t.shape().to_vec());
            }
            _ => return None,
        }
    }
    None
}

/// `nodes` with each `Add(MatMul(x, W), b)` (either Add operand order) of a constant float32
/// W [k, n] and a constant float32 b [n] replaced by `MatMul(x, W, b)`; `None` when there is none.
pub(crate) fn fuse_matmul_bias(graph: &GraphProto, nodes: &[NodeProto], base_dir: Option<&Path>) -> Option<Vec<NodeProto>> {
    let uses = Uses::new(graph, nodes);
    let producer: HashMap<&str, usize> =
        nodes.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let inits: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    let mut removed = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if n.op_type != "MatMul" || !n.domain.is_empty() || n.input.len() != 2 || n.output.len() != 1 || n.input.iter().any(|s| s.is_empty()) {
            continue;
        }
        let Some(add) = uses.sole_reader(&n.output[0]) else { continue };
        let a = &nodes[add];
        if a.op_type != "Add" || !a.domain.is_empty() || a.input.len() != 2 || a.output.len() != 1 || removed[add] || replace.contains_key(&add) {
            continue;
        }
        let bias = match (a.input[0] == n.output[0], a.input[1] == n.output[0]) {
            (true, false) => &a.input[1],
            (false, true) => &a.input[0],
            _ => continue,
        };
        let Some(w) = const_f32_shape(&n.input[1], nodes, &producer, &inits, base_dir) else { continue };
        let Some(b) = const_f32_shape(bias, nodes, &producer, &inits, base_dir) else { continue };
        // A bias of rank 1 leaves the product's shape unchanged.
        if w.len() != 2 || b.len() != 1 || b[0] != w[1] {
            continue;
        }
        removed[i] = true;
        replace.insert(
            add,
            NodeProto {
                input: vec![n.input[0].clone(), n.input[1].clone(), bias.clone()],
                output: a.output.clone(),
                name: a.name.clone(),
                op_type: "MatMul".to_string(),
                ..NodeProto::default()
            },
        );
    }
    rewritten(nodes, replace, &removed)
}

/// Attribute of a fused MatMul or Gemm applying GELU to its output: the Gelu node's
/// `approximate` value ("none" or "tanh").
pub(crate) const MATMUL_GELU: &str = "kiln.gelu";

/// `nodes` with each MatMul or Gemm of a constant float32 2-D right operand whose output's only
/// reader is a Gelu (directly or through a Reshape that is its only reader) replaced by the
/// product applying GELU; `None` when there is none.
pub(crate) fn fuse_matmul_gelu(graph: &GraphProto, nodes: &[NodeProto], base_dir: Option<&Path>) -> Option<Vec<NodeProto>> {
    let uses = Uses::new(graph, nodes);
    let producer: HashMap<&str, usize> =
        nodes.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let inits: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    let mut removed = vec![false; nodes.len()];
    let is_gelu = |i: usize| {
        let g = &nodes[i];
        g.op_type == "Gelu" && g.domain.is_empty() && g.input.len() == 1 && g.output.len() == 1 && !g.output[0].is_empty()
    };
    for (i, n) in nodes.iter().enumerate() {
        let product = matches!(n.op_type.as_str(), "MatMul" | "Gemm") && n.domain.is_empty();
        if !product || n.output.len() != 1 || n.output[0].is_empty() || n.input.len() < 2 || n.attribute.iter().any(|a| a.name == MATMUL_GELU) {
            continue;
        }
        if const_f32_shape(&n.input[1], nodes, &producer, &inits, base_dir).is_none_or(|w| w.len() != 2) {
            continue;
        }
        let Some(r) = uses.sole_reader(&n.output[0]) else { continue };
        // The Gelu, and the Reshape between the product and it.
        let (g, reshape) = if is_gelu(r) {
            (r, None)
        } else if nodes[r].op_type == "Reshape" && nodes[r].domain.is_empty() && nodes[r].input.first() == Some(&n.output[0]) && nodes[r].output.len() == 1 {
            match uses.sole_reader(&nodes[r].output[0]) {
                Some(g) if is_gelu(g) => (g, Some(r)),
                _ => continue,
            }
        } else {
            continue;
        };
        if removed[g] || replace.contains_key(&g) || reshape.is_some_and(|r| replace.contains_key(&r)) {
            continue;
        }
        let approximate = match nodes[g].attribute.iter().find(|a| a.name == "approximate") {
            None => "none".to_string(),
            Some(a) if a.r#type == AttributeType::String => String::from_utf8_lossy(&a.s).into_owned(),
            Some(_) => continue,
        };
        if approximate != "none" && approximate != "tanh" {
            continue;
        }
        let mut fused = n.clone();
        fused.attribute.push(AttributeProto {
            name: MATMUL_GELU.to_string(),
            r#type: AttributeType::String,
            s: approximate.into_bytes(),
            ..AttributeProto::default()
        });
        match reshape {
            None => fused.output = nodes[g].output.clone(),
            Some(r) => {
                let mut rs = nodes[r].clone();
                rs.output = nodes[g].output.clone();
                replace.insert(r, rs);
            }
        }
        removed[g] = true;
        replace.insert(i, fused);
    }
    rewritten(nodes, replace, &removed)
}

/// Attribute of a fused Conv naming the activation applied to its output.
pub(crate) const CONV_ACTIVATION: &str = "kiln.activation";
/// Attribute of a fused Conv with the activation's parameters (HardSigmoid alpha and beta,
/// Swish alpha).
pub(crate) const CONV_ACTIVATION_PARAMS: &str = "kiln.activation_params";

/// Attribute of a fused Conv whose fourth input is a residual added to its output before the
/// activation: `act(Conv(x, w, b) + r)`, from `Add(Conv(...), r)` (either operand order).
pub(crate) const CONV_RESIDUAL: &str = "kiln.residual";

/// The parameters of an activation node a Conv can apply ([`CONV_ACTIVATION_PARAMS`]), or `None`
/// when it is not one of them (or has unexpected attributes).
fn conv_activation_params(act: &NodeProto) -> Option<Vec<f32>> {
    if !act.domain.is_empty() || act.input.len() != 1 || act.output.len() != 1 || act.output[0].is_empty() {
        return None;
    }
    let float = |name: &str, default: f32| -> Option<f32> {
        match act.attribute.iter().find(|a| a.name == name) {
            None => Some(default),
            Some(a) if a.r#type == AttributeType::Float => Some(a.f),
            Some(_) => None,
        }
    };
    match act.op_type.as_str() {
        "Relu" | "HardSwish" | "Sigmoid" if act.attribute.is_empty() => Some(vec![]),
        "HardSigmoid" => Some(vec![float("alpha", 0.2)?, float("beta", 0.5)?]),
        "Swish" => Some(vec![float("alpha", 1.0)?]),
        _ => None,
    }
}

/// `conv` applying `act` (whose parameters are `params`) to its output, under `act`'s output name.
fn with_activation(mut conv: NodeProto, act: &NodeProto, params: Vec<f32>) -> NodeProto {
    conv.output = act.output.clone();
    conv.attribute.push(AttributeProto {
        name: CONV_ACTIVATION.to_string(),
        r#type: AttributeType::String,
        s: act.op_type.as_bytes().to_vec(),
        ..AttributeProto::default()
    });
    conv.attribute.push(AttributeProto {
        name: CONV_ACTIVATION_PARAMS.to_string(),
        r#type: AttributeType::Floats,
        floats: params,
        ..AttributeProto::default()
    });
    conv
}

/// A Conv of the default domain with one output and no fused activation or residual.
fn plain_conv(n: &NodeProto) -> bool {
    n.op_type == "Conv"
        && n.domain.is_empty()
        && n.output.len() == 1
        && !n.output[0].is_empty()
        && (2..=3).contains(&n.input.len())
        && !n.attribute.iter().any(|a| a.name == CONV_ACTIVATION || a.name == CONV_RESIDUAL)
}

/// `nodes` with each `Add(Conv(...), r)` (either operand order), and the activation reading the
/// sum when it is its only reader, replaced by a Conv adding `r` to its output before the
/// activation ([`CONV_RESIDUAL`]); `None` when there is none. The Conv's output must have the
/// Add as its only reader. When both operands are such Convs the later one absorbs the Add
/// (the other's output is then computed before it). The fused node takes the place of the last
/// node it replaces, after every value it reads. Shapes are not known here: the fused Conv
/// broadcasts `r` as the Add would when its shape differs from the output's.
pub(crate) fn fuse_conv_residual(graph: &GraphProto, nodes: &[NodeProto]) -> Option<Vec<NodeProto>> {
    let uses = Uses::new(graph, nodes);
    let producer: HashMap<&str, usize> =
        nodes.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    let mut removed = vec![false; nodes.len()];
    for (i, add) in nodes.iter().enumerate() {
        if add.op_type != "Add" || !add.domain.is_empty() || add.input.len() != 2 || add.output.len() != 1 || add.output[0].is_empty() {
            continue;
        }
        // The operand computed by a fusable Conv read only here; the later one when both are.
        let conv = (0..2)
            .filter_map(|k| {
                let c = *producer.get(add.input[k].as_str())?;
                (plain_conv(&nodes[c]) && !removed[c] && uses.sole_reader(&add.input[k]) == Some(i)).then_some((c, k))
            })
            .max();
        let Some((c, k)) = conv else { continue };
        let mut fused = nodes[c].clone();
        fused.input.resize(3, String::new());
        fused.input.push(add.input[1 - k].clone());
        fused.output = add.output.clone();
        fused.attribute.push(AttributeProto { name: CONV_RESIDUAL.to_string(), r#type: AttributeType::Int, i: 1, ..AttributeProto::default() });
        let mut at = i;
        if let Some(r) = uses.sole_reader(&add.output[0]).filter(|&r| !removed[r]) {
            if let Some(params) = conv_activation_params(&nodes[r]) {
                fused = with_activation(fused, &nodes[r], params);
                removed[i] = true;
                at = r;
            }
        }
        removed[c] = true;
        replace.insert(at, fused);
    }
    rewritten(nodes, replace, &removed)
}

/// `nodes` (the graph's nodes, possibly already rewritten) with each Conv whose only reader is
/// a supported activation replaced by a Conv applying it; `None` when nothing was fused.
pub(crate) fn fuse_conv_activations(graph: &GraphProto, nodes: &[NodeProto]) -> Option<Vec<NodeProto>> {
    let uses = Uses::new(graph, nodes);
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    let mut removed = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if !plain_conv(n) {
            continue;
        }
        let Some(r) = uses.sole_reader(&n.output[0]) else { continue };
        if removed[r] {
            continue;
        }
        let Some(params) = conv_activation_params(&nodes[r]) else { continue };
        removed[r] = true;
        replace.insert(i, with_activation(n.clone(), &nodes[r], params));
    }
    rewritten(nodes, replace, &removed)
}


#[cfg(test)]
mod tests {
    use super::*;
    use kiln_onnx::proto::ValueInfoProto;

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.to_string(),
            ..NodeProto::default()
        }
    }

    fn init(name: &str, dims: &[i64]) -> TensorProto {
        let len = dims.iter().product::<i64>() as usize;
        TensorProto { name: name.into(), dims: dims.to_vec(), data_type: 1, float_data: vec![0.5; len], ..TensorProto::default() }
    }

    fn graph(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, outputs: &[&str]) -> GraphProto {
        GraphProto {
            node: nodes,
            initializer: inits,
            output: outputs.iter().map(|o| ValueInfoProto { name: o.to_string(), ..ValueInfoProto::default() }).collect(),
            ..GraphProto::default()
        }
    }

    #[test]
    fn matmul_then_bias_add_becomes_three_input_matmul() {
        // The bias reaches the Add through an Identity and is its first operand.
        let g = graph(
            vec![node("Identity", &["b0"], "b"), node("MatMul", &["x", "w"], "xw"), node("Add", &["b", "xw"], "y"), node("Relu", &["y"], "z")],
            vec![init("w", &[4, 3]), init("b0", &[3])],
            &["z"],
        );
        let out = fuse_matmul_bias(&g, &g.node, None).expect("fused");
        let ops: Vec<&str> = out.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Identity", "MatMul", "Relu"]);
        assert_eq!(out[1].input, ["x", "w", "b"]);
        assert_eq!(out[1].output, ["y"]);
    }

    #[test]
    fn matmul_bias_left_alone_when_not_a_column_bias_or_shared() {
        // Bias of rank 2 (would change the output shape of a 1-D product).
        let g = graph(vec![node("MatMul", &["x", "w"], "xw"), node("Add", &["xw", "b"], "y")], vec![init("w", &[4, 3]), init("b", &[1, 3])], &["y"]);
        assert!(fuse_matmul_bias(&g, &g.node, None).is_none());
        // Bias length differs from W's columns.
        let g = graph(vec![node("MatMul", &["x", "w"], "xw"), node("Add", &["xw", "b"], "y")], vec![init("w", &[4, 3]), init("b", &[4])], &["y"]);
        assert!(fuse_matmul_bias(&g, &g.node, None).is_none());
        // The product is also a graph output.
        let g = graph(vec![node("MatMul", &["x", "w"], "xw"), node("Add", &["xw", "b"], "y")], vec![init("w", &[4, 3]), init("b", &[3])], &["y", "xw"]);
        assert!(fuse_matmul_bias(&g, &g.node, None).is_none());
        // W computed at run time.
        let g = graph(vec![node("MatMul", &["x", "v"], "xw"), node("Add", &["xw", "b"], "y")], vec![init("b", &[3])], &["y"]);
        assert!(fuse_matmul_bias(&g, &g.node, None).is_none());
    }

    fn scalar_init(name: &str, v: f32) -> TensorProto {
        TensorProto { name: name.into(), dims: vec![], data_type: 1, float_data: vec![v], ..TensorProto::default() }
    }

    fn init_values(name: &str, dims: &[i64], v: Vec<f32>) -> TensorProto {
        TensorProto { name: name.into(), dims: dims.to_vec(), data_type: 1, float_data: v, ..TensorProto::default() }
    }

    /// erf by its Maclaurin series (|x| small enough here for it to converge quickly).
    fn erf_series(x: f64) -> f64 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    /// `x [4, 5] · W [5, 6] + b`, reshaped to [2, 2, 6], through the GELU chain `gelu` (nodes
    /// reading "y" and writing "z"), as a whole model.
    fn gelu_model(gelu: Vec<NodeProto>, consts: Vec<TensorProto>) -> kiln_onnx::proto::ModelProto {
        let w: Vec<f32> = (0..30).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect();
        let b: Vec<f32> = (0..6).map(|i| i as f32 * 0.3 - 0.8).collect();
        let mut nodes = vec![
            node("MatMul", &["x", "w"], "xw"),
            node("Add", &["xw", "b"], "xwb"),
            node("Reshape", &["xwb", "shape"], "y"),
        ];
        nodes.extend(gelu);
        let mut inits = vec![init_values("w", &[5, 6], w), init_values("b", &[6], b)];
        inits.push(TensorProto { name: "shape".into(), dims: vec![3], data_type: 7, int64_data: vec![2, 2, 6], ..TensorProto::default() });
        inits.extend(consts);
        let mut g = graph(nodes, inits, &["z"]);
        g.input = vec![ValueInfoProto { name: "x".into(), ..ValueInfoProto::default() }];
        kiln_onnx::proto::ModelProto {
            ir_version: 8,
            opset_import: vec![kiln_onnx::proto::OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(g),
            ..Default::default()
        }
    }

    /// Runs the model on a fixed x and checks z against `want` applied to the product in f64.
    fn check_model(model: &kiln_onnx::proto::ModelProto, want: impl Fn(f64) -> f64) {
        let g = model.graph.as_ref().unwrap();
        let w = g.initializer[0].float_data.clone();
        let b = g.initializer[1].float_data.clone();
        let x: Vec<f32> = (0..20).map(|i| ((i * 13) % 17) as f32 / 4.0 - 2.0).collect();
        let session = crate::Session::from_proto(model, None, crate::SessionOptions::default(), &crate::Registry::with_builtin()).expect("session");
        let t = kiln_tensor::Tensor::from_vec(vec![4, 5], x.clone()).unwrap();
        let out = session.run(vec![("x".into(), kiln_tensor::Value::Tensor(t))]).expect("run");
        let kiln_tensor::Value::Tensor(z) = &out[0].1 else { panic!("not a tensor") };
        assert_eq!(z.shape(), [2, 2, 6]);
        let z = z.as_slice::<f32>().unwrap();
        for i in 0..4 {
            for j in 0..6 {
                let v = (0..5).map(|p| x[i * 5 + p] as f64 * w[p * 6 + j] as f64).sum::<f64>() + b[j] as f64;
                let e = want(v);
                assert!((z[i * 6 + j] as f64 - e).abs() < 1e-5 * (1.0 + e.abs()), "({i},{j}): {} vs {e}", z[i * 6 + j]);
            }
        }
    }

    #[test]
    fn tanh_gelu_chains_fuse_into_the_product() {
        let want = |v: f64| 0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh());
        let consts = vec![
            scalar_init("half", 0.5),
            scalar_init("three", 3.0),
            scalar_init("k", 0.044715),
            scalar_init("s", (2.0 / std::f64::consts::PI).sqrt() as f32),
            scalar_init("one", 1.0),
        ];
        let head = |v: &str| {
            vec![
                node("Pow", &["y", "three"], "p"),
                node("Mul", &["p", "k"], "q"),
                node("Add", &["y", "q"], "u"),
                node("Mul", &["u", "s"], "v"),
                node("Tanh", &["v"], "t"),
                node("Add", &["t", "one"], v),
            ]
        };
        // The half applied first (as GPT-2 exports it) and last.
        let mut first = vec![node("Mul", &["y", "half"], "h")];
        first.extend(head("w1"));
        first.push(node("Mul", &["h", "w1"], "z"));
        let mut last = head("w1");
        last.push(node("Mul", &["y", "w1"], "m"));
        last.push(node("Mul", &["m", "half"], "z"));
        for chain in [first, last] {
            let model = gelu_model(chain, consts.clone());
            let g = model.graph.as_ref().unwrap();
            let fused = fuse_graph(g, None).expect("fused");
            let ops: Vec<&str> = fused.iter().map(|n| n.op_type.as_str()).collect();
            assert_eq!(ops, ["MatMul", "Reshape"]);
            let gelu = fused[0].attribute.iter().find(|a| a.name == MATMUL_GELU).expect("GELU attribute");
            assert_eq!(gelu.s, b"tanh");
            assert_eq!(fused[1].output, ["z"]);
            check_model(&model, want);
        }
    }

    #[test]
    fn erf_gelu_fuses_into_the_product() {
        let want = |v: f64| 0.5 * v * (1.0 + erf_series(v / std::f64::consts::SQRT_2));
        let consts = vec![scalar_init("sqrt2", std::f64::consts::SQRT_2 as f32), scalar_init("one", 1.0), scalar_init("half", 0.5)];
        let chain = vec![
            node("Div", &["y", "sqrt2"], "d"),
            node("Erf", &["d"], "e"),
            node("Add", &["e", "one"], "a"),
            node("Mul", &["y", "a"], "m"),
            node("Mul", &["m", "half"], "z"),
        ];
        let model = gelu_model(chain, consts);
        let fused = fuse_graph(model.graph.as_ref().unwrap(), None).expect("fused");
        let ops: Vec<&str> = fused.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMul", "Reshape"]);
        assert_eq!(fused[0].input, ["x", "w", "b"]);
        check_model(&model, want);
    }

    #[test]
    fn gelu_left_alone_when_the_product_is_read_elsewhere() {
        let g = graph(
            vec![node("MatMul", &["x", "w"], "y"), node("Gelu", &["y"], "z"), node("Relu", &["y"], "r")],
            vec![init("w", &[4, 3])],
            &["z", "r"],
        );
        assert!(fuse_matmul_gelu(&g, &g.node, None).is_none());
        // The Reshape's output is also a graph output.
        let g = graph(
            vec![node("MatMul", &["x", "w"], "y"), node("Reshape", &["y", "s"], "ry"), node("Gelu", &["ry"], "z")],
            vec![init("w", &[4, 3])],
            &["z", "ry"],
        );
        assert!(fuse_matmul_gelu(&g, &g.node, None).is_none());
        // W computed at run time.
        let g = graph(vec![node("MatMul", &["x", "v"], "y"), node("Gelu", &["y"], "z")], vec![], &["z"]);
        assert!(fuse_matmul_gelu(&g, &g.node, None).is_none());
    }

    fn conv_node(inputs: &[&str], output: &str) -> NodeProto {
        node("Conv", inputs, output)
    }

    #[test]
    fn conv_add_relu_becomes_one_conv_with_a_residual() {
        let g = graph(
            vec![conv_node(&["x", "w", "b"], "c"), node("Add", &["c", "r"], "s"), node("Relu", &["s"], "z")],
            vec![init("w", &[4, 3, 1, 1]), init("b", &[4])],
            &["z"],
        );
        let out = fuse_graph(&g, None).expect("fused");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].op_type, "Conv");
        assert_eq!(out[0].input, ["x", "w", "b", "r"]);
        assert_eq!(out[0].output, ["z"]);
        let attr = |name: &str| out[0].attribute.iter().find(|a| a.name == name);
        assert_eq!(attr(CONV_RESIDUAL).map(|a| a.i), Some(1));
        assert_eq!(attr(CONV_ACTIVATION).map(|a| a.s.clone()), Some(b"Relu".to_vec()));
    }

    #[test]
    fn residual_fusion_keeps_order_and_readers() {
        // Conv as the second operand, no bias; the sum has two readers, so no activation joins.
        let g = graph(
            vec![conv_node(&["x", "w"], "c"), node("Add", &["r", "c"], "s"), node("Relu", &["s"], "z"), node("Neg", &["s"], "n")],
            vec![init("w", &[4, 3, 1, 1])],
            &["z", "n"],
        );
        let out = fuse_graph(&g, None).expect("fused");
        let ops: Vec<&str> = out.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Conv", "Relu", "Neg"]);
        assert_eq!(out[0].input, ["x", "w", "", "r"]);
        assert_eq!(out[0].output, ["s"]);
        assert!(out[0].attribute.iter().all(|a| a.name != CONV_ACTIVATION));
        // Both operands are Convs (a ResNet shortcut): the later one takes the Add, after the other.
        let g = graph(
            vec![conv_node(&["x", "w"], "c1"), conv_node(&["x", "w"], "c2"), node("Add", &["c2", "c1"], "s")],
            vec![init("w", &[4, 3, 1, 1])],
            &["s"],
        );
        let out = fuse_graph(&g, None).expect("fused");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].output, ["c1"]);
        assert_eq!(out[1].input, ["x", "w", "", "c1"]);
        assert_eq!(out[1].output, ["s"]);
    }

    #[test]
    fn residual_left_alone_when_the_conv_output_is_shared() {
        // Read by another node.
        let g = graph(
            vec![conv_node(&["x", "w"], "c"), node("Add", &["c", "r"], "s"), node("Neg", &["c"], "n")],
            vec![init("w", &[4, 3, 1, 1])],
            &["s", "n"],
        );
        assert!(fuse_conv_residual(&g, &g.node).is_none());
        // A graph output.
        let g = graph(vec![conv_node(&["x", "w"], "c"), node("Add", &["c", "r"], "s")], vec![init("w", &[4, 3, 1, 1])], &["s", "c"]);
        assert!(fuse_conv_residual(&g, &g.node).is_none());
        // Added to itself.
        let g = graph(vec![conv_node(&["x", "w"], "c"), node("Add", &["c", "c"], "s")], vec![init("w", &[4, 3, 1, 1])], &["s"]);
        assert!(fuse_conv_residual(&g, &g.node).is_none());
        // An activation between the Conv and the Add stays where it is (it comes first).
        let g = graph(
            vec![conv_node(&["x", "w"], "c"), node("Relu", &["c"], "a"), node("Add", &["a", "r"], "s")],
            vec![init("w", &[4, 3, 1, 1])],
            &["s"],
        );
        let out = fuse_graph(&g, None).expect("fused");
        let ops: Vec<&str> = out.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Conv", "Add"]);
        assert!(out[0].attribute.iter().all(|a| a.name != CONV_RESIDUAL));
    }

    /// `act(Conv(x, w, b) + r)` for a 1×1 convolution (3 → 4 channels on 4×5 pixels), run
    /// through a session with r of `r_dims`, against the definition in f64 with r broadcast
    /// as numpy does.
    fn check_residual_model(act: Option<&str>, r_dims: &[usize], want_act: impl Fn(f64) -> f64) {
        let (c, m, hw) = (3usize, 4usize, 20usize);
        let w: Vec<f32> = (0..m * c).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect();
        let b: Vec<f32> = (0..m).map(|i| i as f32 * 0.3 - 0.5).collect();
        let mut nodes = vec![conv_node(&["x", "w", "b"], "y"), node("Add", &["r", "y"], if act.is_some() { "s" } else { "z" })];
        if let Some(a) = act {
            nodes.push(node(a, &["s"], "z"));
        }
        let mut g = graph(nodes, vec![init_values("w", &[m as i64, c as i64, 1, 1], w.clone()), init_values("b", &[m as i64], b.clone())], &["z"]);
        g.input = ["x", "r"].iter().map(|n| ValueInfoProto { name: n.to_string(), ..ValueInfoProto::default() }).collect();
        let model = kiln_onnx::proto::ModelProto {
            ir_version: 8,
            opset_import: vec![kiln_onnx::proto::OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(g),
            ..Default::default()
        };
        let fused = fuse_graph(model.graph.as_ref().unwrap(), None).expect("fused");
        assert_eq!(fused.len(), 1, "{act:?}");
        let x: Vec<f32> = (0..c * hw).map(|i| ((i * 13) % 17) as f32 / 4.0 - 2.0).collect();
        let rlen: usize = r_dims.iter().product();
        let r: Vec<f32> = (0..rlen).map(|i| ((i * 5) % 9) as f32 * 0.4 - 1.6).collect();
        let session = crate::Session::from_proto(&model, None, crate::SessionOptions::default(), &crate::Registry::with_builtin()).expect("session");
        let feeds = vec![
            ("x".into(), kiln_tensor::Value::Tensor(kiln_tensor::Tensor::from_vec(vec![1, c, 4, 5], x.clone()).unwrap())),
            ("r".into(), kiln_tensor::Value::Tensor(kiln_tensor::Tensor::from_vec(r_dims.to_vec(), r.clone()).unwrap())),
        ];
        let out = session.run(feeds).expect("run");
        let kiln_tensor::Value::Tensor(z) = &out[0].1 else { panic!("not a tensor") };
        // The broadcast output shape: r's dims right-aligned against [1, m, 4, 5].
        let ys = [1usize, m, 4, 5];
        let rank = ys.len().max(r_dims.len());
        let pad = |s: &[usize]| -> Vec<usize> { std::iter::repeat(1).take(rank - s.len()).chain(s.iter().copied()).collect() };
        let (yp, rp) = (pad(&ys), pad(r_dims));
        let shape: Vec<usize> = yp.iter().zip(&rp).map(|(&a, &b)| a.max(b)).collect();
        assert_eq!(z.shape(), &shape[..], "{act:?} r {r_dims:?}");
        let z = z.as_slice::<f32>().unwrap();
        let at = |s: &[usize], idx: &[usize]| idx.iter().zip(s).fold(0, |acc, (&i, &d)| acc * d + if d == 1 { 0 } else { i });
        for (flat, &got) in z.iter().enumerate() {
            let mut idx = vec![0; rank];
            let mut rem = flat;
            for d in (0..rank).rev() {
                idx[d] = rem % shape[d];
                rem /= shape[d];
            }
            let (o, p) = (idx[rank - 3], idx[rank - 2] * 5 + idx[rank - 1]);
            let conv = b[o] as f64 + (0..c).map(|ci| w[o * c + ci] as f64 * x[ci * hw + p] as f64).sum::<f64>();
            let e = want_act(conv + r[at(&rp, &idx)] as f64);
            assert!((got as f64 - e).abs() < 1e-5 * (1.0 + e.abs()), "{act:?} r {r_dims:?} at {flat}: {got} vs {e}");
        }
    }

    #[test]
    fn fused_residual_matches_definition() {
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        // Same shape (the fused pass), then broadcasts: per channel, and one that adds a batch.
        check_residual_model(Some("Relu"), &[1, 4, 4, 5], |v| v.max(0.0));
        check_residual_model(None, &[1, 4, 4, 5], |v| v);
        check_residual_model(Some("Sigmoid"), &[1, 4, 4, 5], sig);
        check_residual_model(Some("Relu"), &[4, 1, 1], |v| v.max(0.0));
        check_residual_model(Some("Sigmoid"), &[2, 4, 4, 5], sig);
        check_residual_model(None, &[5], |v| v);
    }
}
