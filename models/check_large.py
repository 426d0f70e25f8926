"""Runs every model in models/large/ through `kiln run` and compares with onnxruntime's outputs.

Usage: python models/check_large.py [NAME ...]   (after models/export_large.py and cargo build --release)
Floats must satisfy |kiln - ort| <= 1e-4 + 1e-3 * |ort|; other dtypes must be equal.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
KILN = os.path.join(HERE, "..", "target", "release", "kiln")


def main():
    root = os.path.join(HERE, "large")
    names = sys.argv[1:] or sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    failures = 0
    for name in names:
        d = os.path.join(root, name)
        meta = json.load(open(os.path.join(d, "meta.json")))
        in_names = [i["name"] for i in meta["inputs"]]
        out_names = [o["name"] for o in meta["outputs"]]
        sets = sorted(s for s in os.listdir(d) if s.startswith("test_data_set_"))
        for s in sets:
            sd = os.path.join(d, s)
            with tempfile.TemporaryDirectory() as out:
                cmd = [KILN, "run", os.path.join(d, "model.onnx"), "--output-dir", out, "--threads", "2"]
                for k, n in enumerate(in_names):
                    cmd += ["--input", f"{n}={os.path.join(sd, f'input_{k}.npy')}"]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"FAIL {name}/{s}: kiln exited {r.returncode}: {r.stderr.strip()}")
                    failures += 1
                    continue
                index = json.load(open(os.path.join(out, "outputs.json")))
                worst = 0.0
                ok = True
                for k, n in enumerate(out_names):
                    want = np.load(os.path.join(sd, f"output_{k}.npy"))
                    got = np.load(os.path.join(out, index[n]["file"]))
                    if got.shape != want.shape or got.dtype != want.dtype:
                        print(f"FAIL {name}/{s} {n}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}")
                        ok = False
                        continue
                    if np.issubdtype(want.dtype, np.floating):
                        diff = np.abs(got.astype(np.float64) - want)
                        worst = max(worst, float(diff.max()) if diff.size else 0.0)
                        if not np.all(diff <= 1e-4 + 1e-3 * np.abs(want)):
                            print(f"FAIL {name}/{s} {n}: max abs diff {diff.max():.3g}")
                            ok = False
                    elif not np.array_equal(got, want):
                        print(f"FAIL {name}/{s} {n}: values differ")
                        ok = False
                shapes = ", ".join(str(np.load(os.path.join(sd, f"input_{k}.npy")).shape) for k in range(len(in_names)))
                print(f"{'ok  ' if ok else 'FAIL'} {name}/{s} inputs {shapes}: max |kiln - onnxruntime| = {worst:.2e}")
                failures += 0 if ok else 1
    print(f"{failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
