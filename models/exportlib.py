"""Shared machinery for export_fixtures.py and export_large.py.

A model family is described by a `Family`: how to build the torch module (random init, fixed
seed, eval mode), its input/output names, which axes are dynamic, an example input for export and
a list of data sets (functions of a numpy Generator returning named numpy arrays).

`export_family` exports one family with one exporter into `<root>/<name>/model.onnx`, runs
onnxruntime (CPUExecutionProvider, default graph optimisation, one thread) on every data set and
writes

    <root>/<name>/model.onnx
    <root>/<name>/meta.json
    <root>/<name>/test_data_set_<j>/input_<k>.npy    (k: position among the graph's inputs)
    <root>/<name>/test_data_set_<j>/output_<k>.npy   (k: position among the graph's outputs)

The reference outputs are onnxruntime's, not torch's; torch's outputs are only used as a sanity
check (their max abs difference to onnxruntime is recorded in meta.json).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import traceback
import warnings
import zlib
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import onnx
import onnxruntime as ort
import torch

warnings.filterwarnings("ignore")


@dataclasses.dataclass
class Family:
    name: str
    build: Callable[[], torch.nn.Module]
    input_names: list[str]
    output_names: list[str]
    # input name -> {axis: symbolic dim name}
    dynamic_inputs: dict[str, dict[int, str]]
    # output name -> {axis: symbolic dim name} (TorchScript exporter only; dynamo infers them)
    dynamic_outputs: dict[str, dict[int, str]]
    # example inputs for tracing / torch.export, as a function of a numpy Generator
    example: Callable[[np.random.Generator], dict[str, np.ndarray]]
    datasets: list[Callable[[np.random.Generator], dict[str, np.ndarray]]]
    # bounds for torch.export dims, e.g. {"seq": (1, 64)}
    dim_bounds: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    ts_opset: int = 17
    dynamo_opset: int | None = None
    description: str = ""


def family_seed(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def randomize_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Gives BatchNorm running statistics and norm affine parameters non-trivial values, as a trained
    model would have them (freshly initialised ones make BatchNorm an identity)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.4 + 0.8)
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)


def build_model(fam: Family) -> torch.nn.Module:
    seed = family_seed(fam.name)
    torch.manual_seed(seed)
    model = fam.build()
    randomize_norms(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def to_torch(feeds: dict[str, np.ndarray], names: list[str]) -> tuple:
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names)


def strip_stack_traces(model: onnx.ModelProto) -> None:
    """Drops the per-node `pkg.torch.onnx.stack_trace` metadata the dynamo exporter writes: it holds
    absolute paths of this machine's Python files and makes the file depend on where it was made.
    The other metadata entries are kept."""

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model.graph)
    for f in model.functions:
        for node in f.node:
            keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
            del node.metadata_props[:]
            node.metadata_props.extend(keep)


def export_onnx(fam: Family, model: torch.nn.Module, exporter: str, path: str) -> None:
    example = fam.example(np.random.default_rng(family_seed(fam.name) + 7))
    args = to_torch(example, fam.input_names)
    if exporter == "torchscript":
        dyn = {}
        dyn.update({k: dict(v) for k, v in fam.dynamic_inputs.items()})
        dyn.update({k: dict(v) for k, v in fam.dynamic_outputs.items()})
        with torch.no_grad():
            torch.onnx.export(
                model,
                args,
                path,
                dynamo=False,
                opset_version=fam.ts_opset,
                input_names=fam.input_names,
                output_names=fam.output_names,
                dynamic_axes=dyn or None,
            )
    elif exporter == "dynamo":
        dims: dict[str, torch.export.Dim] = {}
        for axes in fam.dynamic_inputs.values():
            for name in axes.values():
                if name not in dims:
                    lo, hi = fam.dim_bounds.get(name, (None, None))
                    kw = {}
                    if lo is not None:
                        kw["min"] = lo
                    if hi is not None:
                        kw["max"] = hi
                    dims[name] = torch.export.Dim(name, **kw)
        dynamic_shapes = None
        if fam.dynamic_inputs:
            dynamic_shapes = tuple(
                {ax: dims[d] for ax, d in fam.dynamic_inputs[n].items()} if n in fam.dynamic_inputs else None
                for n in fam.input_names
            )
        kw = {}
        if fam.dynamo_opset is not None:
            kw["opset_version"] = fam.dynamo_opset
        tmp = path + ".tmp"
        with torch.no_grad():
            torch.onnx.export(
                model,
                args,
                tmp,
                dynamo=True,
                external_data=False,
                input_names=fam.input_names,
                output_names=fam.output_names,
                dynamic_shapes=dynamic_shapes,
                **kw,
            )
        m = onnx.load(tmp)
        strip_stack_traces(m)
        onnx.save(m, path, save_as_external_data=False)
        os.remove(tmp)
        leftover = [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".data")]
        for f in leftover:
            os.remove(os.path.join(os.path.dirname(path), f))
    else:
        raise ValueError(exporter)


def dims_of(vi: onnx.ValueInfoProto):
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(d.dim_value)
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append("?")
    return out


def dtype_name(vi: onnx.ValueInfoProto) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name


def graph_inputs(m: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {t.name for t in m.graph.initializer}
    return [i for i in m.graph.input if i.name not in inits]


def ort_session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    if a.dtype.kind in "fc":
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        both_nan = np.isnan(a64) & np.isnan(b64)
        d = np.where(both_nan, 0.0, np.abs(a64 - b64))
        return float(np.nanmax(np.where(np.isnan(d), np.inf, d)))
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def torch_outputs(model: torch.nn.Module, feeds: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(*to_torch(feeds, names))
    if isinstance(out, torch.Tensor):
        out = (out,)
    return [o.detach().numpy() for o in out]


def export_family(fam: Family, exporter: str, root: str, suffix: str | None = None, log=print) -> dict:
    """Exports `fam` with `exporter` ("torchscript" or "dynamo") into `<root>/<name>` and writes the
    reference data. Returns the manifest entry. Raises on failure (the directory is removed)."""
    suffix = suffix if suffix is not None else {"torchscript": "_ts", "dynamo": "_dynamo"}[exporter]
    name = fam.name + suffix
    out_dir = os.path.join(root, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    try:
        model = build_model(fam)
        path = os.path.join(out_dir, "model.onnx")
        export_onnx(fam, model, exporter, path)
        onnx_model = onnx.load(path)
        onnx.checker.check_model(onnx_model)
        ins = graph_inputs(onnx_model)
        outs = list(onnx_model.graph.output)
        in_names = [i.name for i in ins]
        out_names = [o.name for o in outs]
        missing = [n for n in in_names if n not in fam.input_names]
        if missing:
            raise RuntimeError(f"graph has inputs {missing} that the family does not feed")
        sess = ort_session(path)
        datasets = []
        for j, make in enumerate(fam.datasets):
            feeds = make(np.random.default_rng(family_seed(fam.name) * 31 + j))
            set_dir = f"test_data_set_{j}"
            os.makedirs(os.path.join(out_dir, set_dir))
            ort_feeds = {n: feeds[n] for n in in_names}
            results = sess.run(None, ort_feeds)
            in_files, out_files = [], []
            for k, n in enumerate(in_names):
                f = f"{set_dir}/input_{k}.npy"
                np.save(os.path.join(out_dir, f), ort_feeds[n])
                in_files.append(f)
            for k, r in enumerate(results):
                f = f"{set_dir}/output_{k}.npy"
                np.save(os.path.join(out_dir, f), np.asarray(r))
                out_files.append(f)
            # sanity check against torch (graph outputs follow the module's output order)
            ref = torch_outputs(model, feeds, fam.input_names)
            diffs = [max_abs_diff(np.asarray(r), t) for r, t in zip(results, ref)]
            nan = [bool(np.isnan(np.asarray(r)).any()) if np.asarray(r).dtype.kind == "f" else False for r in results]
            datasets.append(
                {
                    "name": set_dir,
                    "inputs": in_files,
                    "outputs": out_files,
                    "input_shapes": [list(ort_feeds[n].shape) for n in in_names],
                    "output_shapes": [list(np.asarray(r).shape) for r in results],
                    "torch_vs_ort_max_abs_diff": diffs,
                    "output_has_nan": nan,
                }
            )
            if any(d > 1e-3 * max(1.0, float(np.abs(t).max(initial=0.0))) for d, t in zip(diffs, ref)):
                log(f"  warning: {name} {set_dir}: torch and onnxruntime differ: {diffs}")
        opsets = {(o.domain or "ai.onnx"): o.version for o in onnx_model.opset_import}
        meta = {
            "name": name,
            "family": fam.name,
            "description": fam.description,
            "exporter": exporter,
            "opset": opsets.get("ai.onnx"),
            "opset_imports": opsets,
            "ir_version": onnx_model.ir_version,
            "torch_version": torch.__version__,
            "onnx_version": onnx.__version__,
            "reference": f"onnxruntime {ort.__version__} CPUExecutionProvider",
            "model_bytes": os.path.getsize(path),
            "inputs": [{"name": i.name, "dtype": dtype_name(i), "shape": dims_of(i)} for i in ins],
            "outputs": [{"name": o.name, "dtype": dtype_name(o), "shape": dims_of(o)} for o in outs],
            "datasets": datasets,
        }
        with open(os.path.join(out_dir, "meta.json"), "w") as fh:
            json.dump(meta, fh, indent=1)
            fh.write("\n")
        log(
            f"  {name}: {meta['model_bytes'] / 1024:.0f} KiB, opset {meta['opset']}, "
            f"{len(onnx_model.graph.node)} nodes, torch-vs-ort {[max(d['torch_vs_ort_max_abs_diff']) for d in datasets]}"
        )
        return {
            "name": name,
            "family": fam.name,
            "exporter": exporter,
            "opset": meta["opset"],
            "model_bytes": meta["model_bytes"],
            "datasets": [d["name"] for d in datasets],
        }
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise


def write_manifest(root: str, entries: list[dict], failures: list[dict], extra: dict | None = None) -> None:
    manifest = {
        "description": "Model parity fixtures: ONNX models exported from PyTorch with onnxruntime reference outputs.",
        "layout": "<name>/model.onnx, <name>/meta.json, <name>/test_data_set_<j>/input_<k>.npy and output_<k>.npy",
        "tolerance": {"rtol": 1e-3, "atol": 1e-4},
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
        "fixtures": entries,
        "export_failures": failures,
    }
    if extra:
        manifest.update(extra)
    with open(os.path.join(root, "MANIFEST.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")


def short_error(e: BaseException) -> str:
    lines = [l for l in str(e).strip().splitlines() if l.strip()]
    head = f"{type(e).__name__}: {lines[0] if lines else ''}"
    return head[:500]


def run_all(families: list[Family], exporters: list[str], root: str, only: set[str] | None = None,
            merge: bool = False, suffixes: dict[str, str] | None = None) -> None:
    """Exports every family with every exporter into `root` and writes `root/MANIFEST.json`.
    With `merge` (implied by `only`), the manifest entries of other families/exporters are kept;
    otherwise `root` is cleared of fixtures first."""
    os.makedirs(root, exist_ok=True)
    merge = merge or bool(only)
    unknown = (only or set()) - {f.name for f in families}
    if unknown:
        raise SystemExit(f"unknown families: {sorted(unknown)}; known: {[f.name for f in families]}")

    def redo(family: str, exporter: str) -> bool:
        return (not only or family in only) and exporter in exporters

    manifest_path = os.path.join(root, "MANIFEST.json")
    entries: list[dict] = []
    failures: list[dict] = []
    if merge and os.path.exists(manifest_path):
        with open(manifest_path) as fh:
            old = json.load(fh)
        entries = [e for e in old.get("fixtures", []) if not redo(e["family"], e["exporter"])]
        failures = [f for f in old.get("export_failures", []) if not redo(f["family"], f["exporter"])]
    elif not merge:
        for d in sorted(os.listdir(root)):
            p = os.path.join(root, d)
            if os.path.isdir(p) and (os.path.exists(os.path.join(p, "meta.json")) or os.path.exists(os.path.join(p, "model.onnx"))):
                shutil.rmtree(p)
    for fam in families:
        for exporter in exporters:
            if not redo(fam.name, exporter):
                continue
            print(f"[{fam.name} / {exporter}]", flush=True)
            try:
                suffix = suffixes.get(exporter) if suffixes else None
                entries.append(export_family(fam, exporter, root, suffix=suffix))
            except Exception as e:  # noqa: BLE001 - recorded in the manifest
                msg = short_error(e)
                print(f"  FAILED: {msg}", flush=True)
                if os.environ.get("KILN_EXPORT_TRACEBACK"):
                    traceback.print_exc()
                failures.append({"family": fam.name, "exporter": exporter, "error": msg})
            write_partial = sorted(entries, key=lambda e: e["name"])
            write_manifest(root, write_partial, sorted(failures, key=lambda f: (f["family"], f["exporter"])))


# ---------------------------------------------------------------------------------------------
# input generators


def image_batch(batch: int, size: int, channels: int = 3, name: str = "input"):
    def make(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {name: rng.standard_normal((batch, channels, size, size)).astype(np.float32)}

    return make


def token_batch(batch: int, seq: int, vocab: int, names=("input_ids",), pad_rows: bool = True,
                pad_id: int = 0, first_id: int = 1):
    """Token ids in [first_id, vocab) and, when asked for, an attention mask with trailing zeros on
    some rows (padded positions get `pad_id`) and token type ids (second half of each row = 1)."""

    def make(rng: np.random.Generator) -> dict[str, np.ndarray]:
        ids = rng.integers(first_id, vocab, size=(batch, seq), dtype=np.int64)
        lengths = np.full(batch, seq, dtype=np.int64)
        if pad_rows and "attention_mask" in names:
            for r in range(1, batch):
                lengths[r] = rng.integers(max(1, seq // 2), seq + 1)
            if batch > 1:
                lengths[-1] = max(1, seq - 3)
        mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
        ids = np.where(mask == 1, ids, pad_id).astype(np.int64)
        out = {"input_ids": ids}
        if "attention_mask" in names:
            out["attention_mask"] = mask
        if "token_type_ids" in names:
            tt = np.zeros((batch, seq), dtype=np.int64)
            for r in range(batch):
                tt[r, lengths[r] // 2 : lengths[r]] = 1
            out["token_type_ids"] = tt
        return {n: out[n] for n in names}

    return make
