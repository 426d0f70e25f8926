"""Cold start (exec to the first 200 from /v2/health/ready) and idle RSS of `kiln serve` with the
built-in demo models. Median of N runs.

    python bench/server/coldstart.py [--kiln target/release/kiln] [--runs 10]
"""

import argparse
import os
import socket
import statistics
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "target/release/kiln"))
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    starts, rss = [], []
    for _ in range(a.runs):
        port = free_port()
        t0 = time.perf_counter()
        p = subprocess.Popen([a.kiln, "serve", "--http-port", str(port), "--no-grpc"], stdout=subprocess.DEVNULL)
        while not ready(port):
            if p.poll() is not None:
                raise SystemExit("kiln serve exited")
            time.sleep(0.0005)
        starts.append((time.perf_counter() - t0) * 1e3)
        time.sleep(1.0)
        rss.append(rss_kib(p.pid) / 1024)
        p.terminate()
        p.wait()
    print(f"cold start (exec to ready): median {statistics.median(starts):.1f} ms "
          f"(min {min(starts):.1f}, max {max(starts):.1f}, {a.runs} runs)")
    print(f"idle RSS after 1 s: median {statistics.median(rss):.1f} MB")


if __name__ == "__main__":
    main()
