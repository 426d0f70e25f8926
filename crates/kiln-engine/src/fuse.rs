//! Graph rewrites applied before compiling: chains of elementwise nodes that exporters emit for
//! one activation become the single operator computing it in one pass.
//!
//! - `x * Sigmoid(x)` (SiLU, as torch exports it) → `Swish(x)` (alpha 1).
//! - `(x * (Erf(x / √2) + 1)) * 0.5` (exact GELU, as torch exports it) → `Gelu(x)`.
//! - `Act(Conv(...))` for Act in Relu, HardSigmoid, HardSwish, Sigmoid, Swish → the Conv with
//!   [`CONV_ACTIVATION`] / [`CONV_ACTIVATION_PARAMS`] attributes naming the activation it applies.
//!
//! - `Add(MatMul(x, W), b)` with constant float32 W [k, n] and b [n] → `MatMul(x, W, b)`, the
//!   bias applied in the product's epilogue (a third MatMul input exists only in fused graphs).
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
    let conv = fuse_conv_activations(graph, act.as_deref().unwrap_or(&graph.node)).or(act);
    fuse_matmul_bias(graph, conv.as_deref().unwrap_or(&graph.node), base_dir).or(conv)
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

/// Attribute of a fused Conv naming the activation applied to its output.
pub(crate) const CONV_ACTIVATION: &str = "kiln.activation";
/// Attribute of a fused Conv with the activation's parameters (HardSigmoid alpha and beta,
/// Swish alpha).
pub(crate) const CONV_ACTIVATION_PARAMS: &str = "kiln.activation_params";

/// `nodes` (the graph's nodes, possibly already rewritten) with each Conv whose only reader is
/// a supported activation replaced by a Conv applying it; `None` when nothing was fused.
pub(crate) fn fuse_conv_activations(graph: &GraphProto, nodes: &[NodeProto]) -> Option<Vec<NodeProto>> {
    let uses = Uses::new(graph, nodes);
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    let mut removed = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if n.op_type != "Conv" || !n.domain.is_empty() || n.output.len() != 1 || n.attribute.iter().any(|a| a.name == CONV_ACTIVATION) {
            continue;
        }
        let y = n.output[0].as_str();
        if y.is_empty() {
            continue;
        }
        let Some(r) = uses.sole_reader(y) else { continue };
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
}
