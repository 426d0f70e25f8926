//! Inlining of model-local functions (`ModelProto.functions`), as the dynamo exporter may emit.

use std::collections::HashMap;

use kiln_onnx::proto::{AttributeProto, FunctionProto, GraphProto, NodeProto};

use crate::error::Error;

const MAX_DEPTH: usize = 32;

/// Returns a copy of `graph` where every call of a model-local function is replaced by its body.
pub(crate) fn inline_functions(graph: &GraphProto, functions: &[FunctionProto]) -> Result<GraphProto, Error> {
    let table: HashMap<(&str, &str), &FunctionProto> =
        functions.iter().map(|f| ((f.domain.as_str(), f.name.as_str()), f)).collect();
    let mut counter = 0usize;
    let mut nodes = Vec::with_capacity(graph.node.len());
    for n in &graph.node {
        expand(n, &table, &mut nodes, &mut counter, 0)?;
    }
    let mut g = graph.clone();
    g.node = nodes;
    Ok(g)
}

fn expand(
    node: &NodeProto,
    table: &HashMap<(&str, &str), &FunctionProto>,
    out: &mut Vec<NodeProto>,
    counter: &mut usize,
    depth: usize,
) -> Result<(), Error> {
    let Some(f) = table.get(&(node.domain.as_str(), node.op_type.as_str())) else {
        out.push(node.clone());
        return Ok(());
    };
    if depth > MAX_DEPTH {
        return Err(Error::InvalidModel(format!(
            "function '{}' calls itself or nests deeper than {MAX_DEPTH} levels",
            f.name
        )));
    }
    *counter += 1;
    let prefix = format!("{}__{}_{}/", node.name, f.name, counter);
    let mut rename: HashMap<&str, String> = HashMap::new();
    for (i, formal) in f.input.iter().enumerate() {
        rename.insert(formal, node.input.get(i).cloned().unwrap_or_default());
    }
    for (i, formal) in f.output.iter().enumerate() {
        rename.insert(formal, node.output.get(i).cloned().unwrap_or_default());
    }
    let mut call_attrs: HashMap<&str, &AttributeProto> = HashMap::new();
    for a in &f.attribute_proto {
        call_attrs.insert(&a.name, a);
    }
    for a in &node.attribute {
        call_attrs.insert(&a.name, a);
    }
    for inner in &f.node {
        let mut n = inner.clone();
        for s in n.input.iter_mut().chain(n.output.iter_mut()) {
            if s.is_empty() {
                continue;
            }
            *s = match rename.get(s.as_str()) {
                Some(r) => r.clone(),
                None => format!("{prefix}{s}"),
            };
        }
        n.name = format!("{prefix}{}", inner.name);
        let mut attrs = Vec::with_capacity(n.attribute.len());
        for a in n.attribute.drain(..) {
            if a.ref_attr_name.is_empty() {
                attrs.push(a);
            } else if let Some(v) = call_attrs.get(a.ref_attr_name.as_str()) {
                let mut v = (*v).clone();
                v.name = a.name.clone();
                attrs.push(v);
            }
            // An unset referenced attribute is simply absent (the op's default applies).
        }
        n.attribute = attrs;
        expand(&n, table, out, counter, depth + 1)?;
    }
    Ok(())
}
