//! `kiln inspect`: what a model is made of, and whether Kiln can run it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use kiln_engine::{Error, Session, SessionOptions};
use kiln_onnx::proto::GraphProto;
use kiln_onnx::tensor::value_type_from_proto;
use kiln_tensor::{DType, ValueType};
use serde_json::json;

use crate::json::{dims_json, type_name};
use crate::CliError;

struct Io {
    name: String,
    ty: Option<ValueType>,
}

pub fn main(args: &[String]) -> Result<(), CliError> {
    let mut model: Option<&String> = None;
    let mut as_json = false;
    for a in args {
        match a.as_str() {
            "--json" => as_json = true,
            s if s.starts_with('-') => return Err(CliError(format!("inspect: unknown option '{s}'"))),
            _ if model.is_none() => model = Some(a),
            s => return Err(CliError(format!("inspect: unexpected argument '{s}'"))),
        }
    }
    let path = Path::new(model.ok_or_else(|| CliError("inspect: missing MODEL".into()))?);
    let proto = kiln_onnx::load_model_file(path)?;
    let graph = proto.graph.as_ref().ok_or_else(|| CliError(format!("{}: the model has no graph", path.display())))?;

    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let io = |list: &[kiln_onnx::proto::ValueInfoProto], skip_inits: bool| -> Vec<Io> {
        list.iter()
            .filter(|v| !(skip_inits && inits.contains(v.name.as_str())))
            .map(|v| Io { name: v.name.clone(), ty: v.r#type.as_ref().and_then(|t| value_type_from_proto(t).ok()) })
            .collect()
    };
    let inputs = io(&graph.input, true);
    let outputs = io(&graph.output, false);

    let mut hist: BTreeMap<String, usize> = BTreeMap::new();
    let mut nodes = 0usize;
    count_ops(graph, &mut hist, &mut nodes);
    let mut hist: Vec<(String, usize)> = hist.into_iter().collect();
    hist.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    let (mut params, mut bytes) = (0u128, 0u128);
    for t in &graph.initializer {
        let n: u128 = t.dims.iter().map(|&d| d.max(0) as u128).product();
        params += n;
        bytes += n * DType::from_onnx(t.data_type).map(|d| d.size() as u128).unwrap_or(0);
    }

    let (unsupported, load_error, planned) = match Session::from_file(path, SessionOptions::default().with_threads(1)) {
        Ok(s) => (Vec::new(), None, Some(s.info().planned_nodes)),
        Err(Error::Unsupported(list)) => (list, None, None),
        Err(e) => (Vec::new(), Some(e.to_string()), None),
    };
    let opsets: Vec<(String, i64)> = proto
        .opset_import
        .iter()
        .map(|o| (if o.domain.is_empty() { "ai.onnx".to_string() } else { o.domain.clone() }, o.version))
        .collect();

    if as_json {
        let io_json = |v: &[Io]| -> serde_json::Value {
            v.iter()
                .map(|i| match &i.ty {
                    Some(t) => json!({"name": i.name, "dtype": type_name(t), "shape": dims_json(t)}),
                    None => json!({"name": i.name, "dtype": null, "shape": null}),
                })
                .collect()
        };
        let out = json!({
            "model": path.display().to_string(),
            "ir_version": proto.ir_version,
            "producer": format!("{} {}", proto.producer_name, proto.producer_version).trim(),
            "opsets": opsets.iter().map(|(d, v)| json!({"domain": d, "version": v})).collect::<Vec<_>>(),
            "inputs": io_json(&inputs),
            "outputs": io_json(&outputs),
            "nodes": nodes,
            "op_histogram": hist.iter().map(|(k, v)| json!({"op_type": k, "count": v})).collect::<Vec<_>>(),
            "parameters": params as u64,
            "parameter_bytes": bytes as u64,
            "supported": unsupported.is_empty() && load_error.is_none(),
            "unsupported": unsupported.iter().map(|u| json!({
                "node": u.node, "op_type": u.op_type,
                "domain": if u.domain.is_empty() { "ai.onnx" } else { &u.domain },
                "opset": u.opset, "reason": u.reason,
            })).collect::<Vec<_>>(),
            "load_error": load_error,
            "planned_nodes": planned,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }

    println!("model:      {}", path.display());
    println!("ir_version: {}   producer: {} {}", proto.ir_version, proto.producer_name, proto.producer_version);
    println!(
        "opsets:     {}",
        opsets.iter().map(|(d, v)| format!("{d} {v}")).collect::<Vec<_>>().join(", ")
    );
    let show = |title: &str, v: &[Io]| {
        println!("{title}:");
        for i in v {
            match &i.ty {
                Some(t) => println!("  {:<24} {}", i.name, t),
                None => println!("  {:<24} (no type)", i.name),
            }
        }
    };
    show("inputs", &inputs);
    show("outputs", &outputs);
    println!("parameters: {} ({:.2} MB)", params, bytes as f64 / 1e6);
    println!(
        "nodes:      {nodes}{}",
        planned.map(|p| format!(" ({p} after optimisation)")).unwrap_or_default()
    );
    println!("ops:");
    for (op, n) in &hist {
        println!("  {op:<28} {n}");
    }
    if unsupported.is_empty() && load_error.is_none() {
        println!("unsupported: none");
    } else {
        if !unsupported.is_empty() {
            println!("unsupported ({}):", unsupported.len());
            for u in &unsupported {
                let dom = if u.domain.is_empty() { "ai.onnx" } else { &u.domain };
                let why = if u.reason.is_empty() { String::new() } else { format!(": {}", u.reason) };
                println!("  {} ({}:{} opset {}){}", u.node, dom, u.op_type, u.opset, why);
            }
        }
        if let Some(e) = load_error {
            println!("load error: {e}");
        }
    }
    Ok(())
}

fn count_ops(g: &GraphProto, hist: &mut BTreeMap<String, usize>, nodes: &mut usize) {
    for n in &g.node {
        *nodes += 1;
        let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}:{}", n.domain, n.op_type)
        };
        *hist.entry(key).or_default() += 1;
        for a in &n.attribute {
            if let Some(sg) = &a.g {
                count_ops(sg, hist, nodes);
            }
            for sg in &a.graphs {
                count_ops(sg, hist, nodes);
            }
        }
    }
}
