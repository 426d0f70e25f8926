"""ResNet-18 over the V2 binary tensor extension at a fixed concurrency: one model without
dynamic batching and the same model with it, served by one `kiln serve` in the same run.

    python bench/server/batching.py [--model models/large/resnet18/model.onnx] [--concurrency 16]
        [--seconds 20] [--threads 2] [--max-batch 16] [--delay-us 2000] [--kiln target/release/kiln]

The model needs a symbolic first (batch) dimension. Requests carry one 1x3x224x224 FP32 image each;
outputs come back binary. Prints a Markdown table (throughput, p50, p99, mean executed batch size).
"""

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import numpy as np
import tritonclient.http as httpclient

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(port, model, x, concurrency, seconds):
    lat, errors = [], []
    stop = time.time() + seconds
    lock = threading.Lock()

    def worker():
        c = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=300)
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        out = [httpclient.InferRequestedOutput("logits", binary_data=True)]
        mine = []
        while time.time() < stop:
            t0 = time.perf_counter()
            try:
                c.infer(model, [inp], outputs=out)
            except Exception as e:
                errors.append(e)
                continue
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    t0 = time.time()
    ts = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else float("nan")
    return len(lat) / wall, pct(0.5), pct(0.99), len(errors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models/large/resnet18/model.onnx"))
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--delay-us", type=int, default=2000)
    ap.add_argument("--kiln", default=os.path.join(ROOT, "target/release/kiln"))
    a = ap.parse_args()

    repo = tempfile.mkdtemp(prefix="kiln-batching-")
    configs = {
        "resnet18_single": f"instances = 1\nthreads = {a.threads}\n",
        "resnet18_batched": f"instances = 1\nthreads = {a.threads}\nmax_batch_size = {a.max_batch}\n"
                            f"[dynamic_batching]\nmax_queue_delay_us = {a.delay_us}\n",
    }
    for name, cfg in configs.items():
        os.makedirs(os.path.join(repo, name, "1"))
        os.symlink(os.path.abspath(a.model), os.path.join(repo, name, "1", "model.onnx"))
        with open(os.path.join(repo, name, "config.toml"), "w") as f:
            f.write(cfg)
    port = free_port()
    proc = subprocess.Popen([a.kiln, "serve", "--model-repository", repo, "--http-port", str(port), "--no-grpc"],
                            stdout=subprocess.DEVNULL)
    try:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        deadline = time.time() + 120
        while True:
            try:
                if all(client.is_model_ready(m) for m in configs):
                    break
            except Exception:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit("kiln serve did not become ready")
            time.sleep(0.1)
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        rows = []
        for name in configs:
            load(port, name, x, a.concurrency, 3)  # warm-up
            before = client.get_inference_statistics(name)["model_stats"][0]
            rps, p50, p99, errs = load(port, name, x, a.concurrency, a.seconds)
            after = client.get_inference_statistics(name)["model_stats"][0]
            execs = after["execution_count"] - before["execution_count"]
            infs = after["inference_count"] - before["inference_count"]
            rows.append((name, rps, p50, p99, infs / max(execs, 1), errs))
        print(f"ResNet-18, 1 image per request, binary tensors, concurrency {a.concurrency}, "
              f"threads = {a.threads}, {a.seconds:.0f} s per configuration")
        print()
        print("| configuration | images/s | p50 | p99 | mean batch | errors |")
        print("|---|---|---|---|---|---|")
        base = rows[0][1]
        for name, rps, p50, p99, mb, errs in rows:
            print(f"| {name} | {rps:.1f} ({rps / base:.2f}x) | {p50:.0f} ms | {p99:.0f} ms | {mb:.1f} | {errs} |")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
