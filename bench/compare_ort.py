"""Side-by-side latency of Kiln (`kiln bench`) and onnxruntime on the same model and inputs,
plus load time and peak memory.

Usage: python bench/compare_ort.py MODEL_DIR[:SET] [...] [--threads N] [--duration S] [--rounds R] [--kiln PATH]
Each MODEL_DIR holds model.onnx and test_data_set_<SET>/input_<k>.npy (models/export_large.py layout);
SET defaults to 0 (batch 1); e.g. models/large/bert:1 runs the BERT encoder at batch 8.
The two runtimes alternate for R rounds (the machine is shared and noisy; which one goes first
alternates too); the table shows the median of each runtime's per-round medians, and as the
Kiln/ORT ratio the median of the per-round ratios (each pairs two measurements seconds apart, so
it is steadier than the ratio of the two medians when the machine's speed drifts). Short rounds
and many of them (e.g. --rounds 8 --duration 0.5) give the steadiest ratios.
Load: Kiln's `load_ms` (file to ready session) vs the time of onnxruntime's InferenceSession().
Peak RSS: the whole `kiln bench` process's peak (VmHWM) vs the peak growth of a Python process
that imports onnxruntime and numpy first, then loads and runs the model (the interpreter and the
imported libraries are not counted against onnxruntime).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
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


ORT_MEM = r"""
import sys, numpy as np, onnxruntime as ort
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return float(line.split()[1]) / 1024
model, threads, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
base = status("VmRSS:")
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
feeds = {i.name: np.load(f) for i, f in zip(s.get_inputs(), files)}
for _ in range(5):
    s.run(None, feeds)
print(status("VmHWM:") - base)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kiln", default=KILN, help="path of the kiln binary (default: target/release/kiln)")
    a = ap.parse_args()
    rows = []
    for spec in a.models:
        d, _, data_set = spec.partition(":")
        data_set = int(data_set or 0)
        model = os.path.join(d, "model.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        files = [os.path.join(d, f"test_data_set_{data_set}", f"input_{k}.npy") for k in range(len(names))]
        feeds = {n: np.load(f) for n, f in zip(names, files)}
        label = os.path.basename(os.path.normpath(d))
        if data_set:
            label += f" (batch {next(iter(feeds.values())).shape[0]})"
        kiln_cmd = [a.kiln, "bench", model, "--threads", str(a.threads), "--duration", str(a.duration), "--json"]
        for n, f in zip(names, files):
            kiln_cmd += ["--input", f"{n}={f}"]
        k_meds, o_meds, k_load, o_load, k_rss = [], [], [], [], []
        for r in range(a.rounds):
            # Each round runs both, in alternating order; its ratio pairs measurements seconds
            # apart, so slow drifts in the machine's speed cancel out of it.
            if r % 2:
                o_meds.append(ort_median(sess, feeds, a.duration))
            out = subprocess.run(kiln_cmd, capture_output=True, text=True, check=True)
            res = json.loads(out.stdout)
            k_meds.append(res["median_ms"])
            k_load.append(res["load_ms"])
            k_rss.append(res.get("peak_rss_mb") or float("nan"))
            if r % 2 == 0:
                o_meds.append(ort_median(sess, feeds, a.duration))
            t = time.perf_counter()
            ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            o_load.append((time.perf_counter() - t) * 1e3)
        k, o = statistics.median(k_meds), statistics.median(o_meds)
        paired = statistics.median(km / om for km, om in zip(k_meds, o_meds))
        kl, ol = statistics.median(k_load), statistics.median(o_load)
        k_mem = statistics.median(k_rss)
        o_mem = float(subprocess.run([sys.executable, "-c", ORT_MEM, model, str(a.threads), *files],
                                     capture_output=True, text=True, check=True).stdout.strip())
        rows.append((label, k, o, paired, kl, ol, k_mem, o_mem))
    print(f"threads={a.threads}, onnxruntime {ort.__version__}")
    print("| model | kiln ms | onnxruntime ms | kiln/ort | load kiln ms | load ort ms | kiln/ort | peak RSS kiln MB | ort MB | kiln/ort |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, k, o, paired, kl, ol, km, om in rows:
        print(f"| {name} | {k:.2f} | {o:.2f} | {paired:.2f} | {kl:.1f} | {ol:.1f} | {kl / ol:.2f} | {km:.0f} | {om:.0f} | {km / max(om, 1e-9):.2f} |")
    ratios = [r[3] for r in rows]
    geo = statistics.geometric_mean(ratios) if ratios else float("nan")
    print(f"\ngeometric mean of latency ratios: {geo:.2f}")


if __name__ == "__main__":
    main()
