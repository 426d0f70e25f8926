#!/usr/bin/env python3
"""Kiln vs onnxruntime on tree ensembles: a 100-tree RandomForest, a 300-round XGBoost and a
LightGBM model (exported here into bench/ml/out/, not committed). For each model: batch-1 latency
(median over many runs) and batch-10000 throughput (median time of one 10000-row run), both
runtimes with the same number of intra-op threads. Kiln's side runs
`cargo run --release -p kiln-engine --example ml_bench`.

Usage: /work/mlenv/bin/python bench/ml/bench.py [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import warnings

import numpy as np
import onnxruntime as ort

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(HERE, "out")
F = 20


def data(n=5000, seed=0):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=F, n_informative=12, n_classes=2, random_state=seed)
    return x.astype(np.float32), y


def export_models():
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier
    from skl2onnx import to_onnx
    import lightgbm as lgb
    import xgboost as xgb

    os.makedirs(OUT, exist_ok=True)
    x, y = data()
    models = {}
    rf = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0, n_jobs=1).fit(x, y)
    models["rf100"] = to_onnx(rf, x[:1], options={id(rf): {"zipmap": False}})
    xg = xgb.XGBClassifier(n_estimators=300, max_depth=6, random_state=0).fit(x, y)
    models["xgb300"] = convert_xgboost(xg, initial_types=[("input", FloatTensorType([None, F]))], target_opset=15)
    lg = lgb.LGBMClassifier(n_estimators=300, num_leaves=31, random_state=0, verbose=-1).fit(x, y)
    models["lgbm300"] = convert_lightgbm(lg, initial_types=[("input", FloatTensorType([None, F]))],
                                         target_opset=15, zipmap=False)
    paths = {}
    for name, m in models.items():
        p = os.path.join(OUT, f"{name}.onnx")
        with open(p, "wb") as f:
            f.write(m.SerializeToString())
        paths[name] = p
    rng = np.random.default_rng(1)
    xb = rng.standard_normal((10000, F)).astype(np.float32) * 2
    np.save(os.path.join(OUT, "x1.npy"), xb[:1])
    np.save(os.path.join(OUT, "x10000.npy"), xb)
    return paths


def ort_time(path, x, threads, runs):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    for _ in range(5):
        s.run(None, {name: x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {name: x})
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts))


def kiln_time(path, xfile, threads, runs):
    cmd = ["cargo", "run", "--release", "-q", "-p", "kiln-engine", "--example", "ml_bench", "--",
           path, xfile, "--threads", str(threads), "--runs", str(runs)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["median_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs1", type=int, default=3000)
    ap.add_argument("--runsb", type=int, default=30)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kiln-engine", "--example", "ml_bench"],
                   cwd=REPO, check=True)
    paths = export_models()
    x1 = np.load(os.path.join(OUT, "x1.npy"))
    xb = np.load(os.path.join(OUT, "x10000.npy"))
    rows = []
    for name, p in paths.items():
        o1 = ort_time(p, x1, args.threads, args.runs1)
        k1 = kiln_time(p, os.path.join(OUT, "x1.npy"), args.threads, args.runs1)
        ob = ort_time(p, xb, args.threads, args.runsb)
        kb = kiln_time(p, os.path.join(OUT, "x10000.npy"), args.threads, args.runsb)
        rows.append((name, o1, k1, ob, kb))
    print(f"threads = {args.threads} (both runtimes); onnxruntime {ort.__version__}")
    print()
    print("| model | ORT batch-1 ms | Kiln batch-1 ms | Kiln/ORT latency | ORT 10k rows/s | Kiln 10k rows/s | Kiln/ORT throughput |")
    print("|---|---|---|---|---|---|---|")
    for name, o1, k1, ob, kb in rows:
        print(f"| {name} | {o1:.4f} | {k1:.4f} | {k1 / o1:.2f}x | {10000 / ob * 1e3:,.0f} | {10000 / kb * 1e3:,.0f} | {ob / kb:.2f}x |")


if __name__ == "__main__":
    main()
