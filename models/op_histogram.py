#!/usr/bin/env python3
"""Writes models/OPS.txt: which ONNX operators the model-parity fixtures (models/fixtures) and the
real-size models (models/large, when exported) use, counted over all nodes including subgraphs and
model-local functions.

Usage: /work/torchenv/bin/python models/op_histogram.py
"""

from __future__ import annotations

import collections
import glob
import os

import onnx

HERE = os.path.dirname(os.path.abspath(__file__))


def nodes(graph: onnx.GraphProto):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from nodes(a.g)
            for g in a.graphs:
                yield from nodes(g)


def model_nodes(m: onnx.ModelProto):
    yield from nodes(m.graph)
    for f in m.functions:
        yield from f.node


def attr_value(a: onnx.AttributeProto) -> str:
    T = onnx.AttributeProto
    if a.type == T.INT:
        return str(a.i)
    if a.type == T.FLOAT:
        return f"{a.f:.7g}"
    if a.type == T.STRING:
        return repr(a.s.decode(errors="replace"))
    if a.type == T.INTS:
        return str(list(a.ints))
    if a.type == T.FLOATS:
        return str([float(f"{x:.7g}") for x in a.floats])
    if a.type == T.STRINGS:
        return str([s.decode(errors="replace") for s in a.strings])
    if a.type == T.TENSOR:
        t = a.t
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name if t.data_type else "?"
        return f"<tensor {dt}{list(t.dims)}>"
    if a.type == T.GRAPH:
        return "<graph>"
    return f"<{onnx.AttributeProto.AttributeType.Name(a.type)}>"


def main() -> None:
    paths = sorted(glob.glob(os.path.join(HERE, "fixtures", "*", "model.onnx")))
    paths += sorted(glob.glob(os.path.join(HERE, "large", "*", "model.onnx")))
    total: collections.Counter = collections.Counter()
    users: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    per_model = []
    attrs: dict[tuple[str, str], dict[str, set]] = collections.defaultdict(lambda: collections.defaultdict(set))
    for p in paths:
        rel = os.path.relpath(os.path.dirname(p), HERE)
        m = onnx.load(p, load_external_data=False)
        ns = list(model_nodes(m))
        c = collections.Counter((n.domain or "ai.onnx", n.op_type) for n in ns)
        for n in ns:
            for a in n.attribute:
                attrs[(n.domain or "ai.onnx", n.op_type)][a.name].add(attr_value(a))
        total.update(c)
        for k in c:
            users[k].add(rel)
        opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in m.opset_import)
        per_model.append((rel, sum(c.values()), opsets, c))

    lines = []
    lines.append("# ONNX operators used by models/fixtures and models/large (written by models/op_histogram.py)")
    lines.append(f"# {len(paths)} models; counts include subgraph and function nodes")
    lines.append("")
    lines.append("## distinct (domain, op_type)")
    for dom, op in sorted(total):
        lines.append(f"{dom} {op}")
    lines.append("")
    lines.append("## histogram: count  domain op_type  (number of models using it)")
    for (dom, op), n in total.most_common():
        lines.append(f"{n:7d}  {dom:10s} {op:24s} ({len(users[(dom, op)])} models)")
    lines.append("")
    lines.append("## attribute values seen (tensor-valued attributes summarised by dtype and shape)")
    for key in sorted(total):
        dom, op = key
        if not attrs.get(key):
            lines.append(f"{dom} {op}: (no attributes)")
            continue
        lines.append(f"{dom} {op}:")
        for name in sorted(attrs[key]):
            vals = sorted(attrs[key][name])
            shown = vals if len(vals) <= 12 else vals[:12] + [f"... {len(vals) - 12} more"]
            lines.append(f"    {name}: {' | '.join(shown)}")
    lines.append("")
    lines.append("## models using each op")
    for dom, op in sorted(total):
        lines.append(f"{dom} {op}: {' '.join(sorted(users[(dom, op)]))}")
    lines.append("")
    lines.append("## per model: nodes, opsets, ops")
    for rel, n, opsets, c in per_model:
        ops = " ".join(f"{op}x{k}" if k > 1 else op for (dom, op), k in sorted(c.items()))
        lines.append(f"{rel}: {n} nodes; opset {opsets}")
        lines.append(f"    {ops}")
    with open(os.path.join(HERE, "OPS.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote models/OPS.txt: {len(total)} distinct ops over {len(paths)} models")


if __name__ == "__main__":
    main()
