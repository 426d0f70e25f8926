"""Side-by-side latency of Kiln (`kiln bench`) and onnxruntime on the same model and inputs.

Usage: python bench/compare_ort.py MODEL_DIR [MODEL_DIR ...] [--threads N] [--duration S] [--rounds R] [--kiln PATH]
Each MODEL_DIR holds model.onnx and test_data_set_0/input_<k>.npy (models/export_large.py layout).
The two runtimes alternate for R rounds (the machine is shared and noisy); the table shows the
median of each runtime's per-round medians and the Kiln/ORT ratio.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
KILN = os.path.join(HERE, "..", "target", "release", "kiln")


def ort_median(sess, feeds, duration):
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < duration:
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kiln", default=KILN, help="path of the kiln binary (default: target/release/kiln)")
    a = ap.parse_args()
    rows = []
    for d in a.models:
        model = os.path.join(d, "model.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        files = [os.path.join(d, "test_data_set_0", f"input_{k}.npy") for k in range(len(names))]
        feeds = {n: np.load(f) for n, f in zip(names, files)}
        kiln_cmd = [a.kiln, "bench", model, "--threads", str(a.threads), "--duration", str(a.duration), "--json"]
        for n, f in zip(names, files):
            kiln_cmd += ["--input", f"{n}={f}"]
        k_meds, o_meds = [], []
        for _ in range(a.rounds):
            out = subprocess.run(kiln_cmd, capture_output=True, text=True, check=True)
            k_meds.append(json.loads(out.stdout)["median_ms"])
            o_meds.append(ort_median(sess, feeds, a.duration))
        k, o = statistics.median(k_meds), statistics.median(o_meds)
        rows.append((os.path.basename(os.path.normpath(d)), k, o, k / o))
    print(f"threads={a.threads}, onnxruntime {ort.__version__}")
    print(f"| model | kiln ms | onnxruntime ms | kiln/ort |")
    print(f"|---|---|---|---|")
    for name, k, o, r in rows:
        print(f"| {name} | {k:.2f} | {o:.2f} | {r:.2f} |")


if __name__ == "__main__":
    main()
