"""Single-thread sgemm: Kiln's packed kernel vs numpy (OpenBLAS), measured in the same run.

Usage: python bench/sgemm.py [--sizes 256 512 1024 2048] [--rounds R]
Builds and runs the kiln-kernels example `sgemm_bench`; rounds alternate between the two (the
machine is shared), and each side reports its best time per size over all rounds.
"""
import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import json
import subprocess
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def numpy_gflops(n, min_total=0.5):
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    start = time.perf_counter()
    runs = 0
    while runs < 3 or time.perf_counter() - start < min_total:
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t)
        runs += 1
    return 2.0 * n**3 / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kiln-kernels", "--example", "sgemm_bench"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "examples", "sgemm_bench")
    best = {n: [0.0, 0.0, 0.0] for n in a.sizes}
    isa = "?"
    for _ in range(a.rounds):
        for n in a.sizes:
            best[n][0] = max(best[n][0], numpy_gflops(n))
            out = subprocess.run([exe, str(n)], capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            isa = r["isa"]
            best[n][1] = max(best[n][1], r["gflops"])
            best[n][2] = max(best[n][2], r["gflops_prepacked_b"])
    print(f"single thread, kiln kernel {isa}, numpy {np.__version__} (OpenBLAS)")
    print("| n | OpenBLAS GFLOP/s | kiln GFLOP/s | kiln/OpenBLAS | kiln prepacked B GFLOP/s |")
    print("|---|---|---|---|---|")
    for n in a.sizes:
        o, k, kp = best[n]
        print(f"| {n} | {o:.1f} | {k:.1f} | {k / o:.2f} | {kp:.1f} |")


if __name__ == "__main__":
    main()
