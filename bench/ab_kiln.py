"""A/B of two Kiln builds on the same models: paired short rounds of `kiln bench`.

Usage: python bench/ab_kiln.py KILN_A KILN_B MODEL_DIR [...] [--threads N] [--rounds R] [--duration S]
Each round runs both builds for S seconds on the model (which goes first alternates) and takes
the ratio of their medians; the result is the median of those per-round ratios, with its
interquartile range. Pairing measurements seconds apart cancels the slow drift of a shared
machine's speed, which moves a single build's median by 20-40% from one minute to the next.
"""
import argparse
import json
import os
import statistics
import subprocess


def median_ms(kiln, model, threads, duration):
    cmd = [kiln, "bench", model, "--threads", str(threads), "--duration", str(duration), "--json"]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["median_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kiln_a")
    ap.add_argument("kiln_b")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--duration", type=float, default=0.3)
    a = ap.parse_args()
    print(f"threads={a.threads}; B/A < 1 means B is faster")
    for d in a.models:
        model = os.path.join(d, "model.onnx")
        pa, pb, ratios = [], [], []
        for r in range(a.rounds):
            if r % 2 == 0:
                ta = median_ms(a.kiln_a, model, a.threads, a.duration)
                tb = median_ms(a.kiln_b, model, a.threads, a.duration)
            else:
                tb = median_ms(a.kiln_b, model, a.threads, a.duration)
                ta = median_ms(a.kiln_a, model, a.threads, a.duration)
            pa.append(ta)
            pb.append(tb)
            ratios.append(tb / ta)
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        print(f"{os.path.basename(os.path.normpath(d)):24s} A {statistics.median(pa):9.3f} ms  B {statistics.median(pb):9.3f} ms"
              f"  B/A {statistics.median(ratios):.3f} (IQR {q[0]:.3f}-{q[2]:.3f})", flush=True)


if __name__ == "__main__":
    main()
