//! Graph rewrites applied before compiling: chains of elementwise nodes that exporters emit for
//! one activation become the single operator computing it in one pass.
//!
//! - `x * Sigmoid(x)` (SiLU, as torch exports it) → `Swish(x)` (alpha 1).
//! - `(x * (Erf(x / √2) + 1)) * 0.5` (exact GELU, as torch exports it) → `Gelu(x)`.
//! - `Act(Conv(...))` for Act in Relu, HardSigmoid, HardSwish, Sigmoid, Swish → the Conv with
//!   [`CONV_ACTIVATION`] / [`CONV_ACTIVATION_PARAMS`] attributes naming the activation it applies.
//!
//! A chain is fused only when each intermediate value has exactly one reader and is neither a
//! graph output nor read by a subgraph, and when its constants are the expected scalars. Uses
//! only the decoded graph; depends on nothing else of the engine.

use std::collections::HashMap;
use std::path::Path;

use kiln_onnx::proto::{AttributeProto, AttributeType, GraphProto, NodeProto, TensorProto};
use kiln_onnx::tensor::tensor_from_proto;

use crate::plan::collect_outer_refs;

/// The graph's nodes with fusable chains replaced, or `None` when nothing was fused.
pub(crate) fn fuse_activations(graph: &GraphProto, base_dir: Option<&Path>) -> Option<Vec<NodeProto>> {
    let nodes = &graph.node;
    let (readers, pinned) = value_readers(graph, nodes);
    let producer: HashMap<&str, usize> =
        nodes.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let inits: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();

    // The only reader of `v` (a node index), when `v` is an intermediate value.
    let sole_reader = |v: &str| -> Option<usize> {
        if pinned.iter().any(|p| p == v) {
            return None;
        }
        match readers.get(v).map(|r| r.as_slice()) {
            Some([i]) => Some(*i),
            _ => None,
        }
    };
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
    let is = |i: usize, op: &str| nodes[i].op_type == op && nodes[i].domain.is_empty() && nodes[i].input.len() == if op == "Erf" || op == "Sigmoid" { 1 } else { 2 };
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
        }
    }
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

/// Readers of each value by node index, and the values read outside the node list (graph outputs
/// and subgraph references), which count as extra readers.
fn value_readers<'a>(graph: &GraphProto, nodes: &'a [NodeProto]) -> (HashMap<&'a str, Vec<usize>>, Vec<String>) {
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
    (readers, pinned)
}

/// Attribute of a fused Conv naming the activation applied to its output.
pub(crate) const CONV_ACTIVATION: &str = "kiln.activation";
/// Attribute of a fused Conv with the activation's parameters (HardSigmoid alpha and beta,
/// Swish alpha).
pub(crate) const CONV_ACTIVATION_PARAMS: &str = "kiln.activation_params";

/// `nodes` (the graph's nodes, possibly already rewritten) with each Conv whose only reader is
/// a supported activation replaced by a Conv applying it; `None` when nothing was fused.
pub(crate) fn fuse_conv_activations(graph: &GraphProto, nodes: &[NodeProto]) -> Option<Vec<NodeProto>> {
    let (readers, pinned) = value_readers(graph, nodes);
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    let mut removed = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if n.op_type != "Conv" || !n.domain.is_empty() || n.output.len() != 1 || n.attribute.iter().any(|a| a.name == CONV_ACTIVATION) {
            continue;
        }
        let y = n.output[0].as_str();
        if y.is_empty() || pinned.iter().any(|p| p == y) {
            continue;
        }
        let Some(&[r]) = readers.get(y).map(|r| r.as_slice()) else { continue };
        let act = &nodes[r];
        if removed[r] || !act.domain.is_empty() || act.input.len() != 1 || act.output.len() != 1 || act.output[0].is_empty() {
            continue;
        }
        let float = |name: &str, default: f32| -> Option<f32> {
            match act.attribute.iter().find(|a| a.name == name) {
                None => Some(default),
                Some(a) if a.r#type == AttributeType::Float => Some(a.f),
                Some(_) => None,
            }
        };
        let params = match act.op_type.as_str() {
            "Relu" | "HardSwish" | "Sigmoid" if act.attribute.is_empty() => vec![],
            "HardSigmoid" => match (float("alpha", 0.2), float("beta", 0.5)) {
                (Some(a), Some(b)) => vec![a, b],
                _ => continue,
            },
            "Swish" => match float("alpha", 1.0) {
                Some(a) => vec![a],
                None => continue,
            },
            _ => continue,
        };
        let mut fused = n.clone();
        fused.output = act.output.clone();
        fused.attribute.push(AttributeProto {
            name: CONV_ACTIVATION.to_string(),
            r#type: AttributeType::String,
            s: act.op_type.as_bytes().to_vec(),
            ..AttributeProto::default()
        });
        fused.attribute.push(AttributeProto {
            name: CONV_ACTIVATION_PARAMS.to_string(),
            r#type: AttributeType::Floats,
            floats: params,
            ..AttributeProto::default()
        });
        removed[r] = true;
        replace.insert(i, fused);
    }
    if replace.is_empty() {
        return None;
    }
    Some(nodes.iter().enumerate().filter(|(i, _)| !removed[*i]).map(|(i, n)| replace.remove(&i).unwrap_or_else(|| n.clone())).collect())
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
