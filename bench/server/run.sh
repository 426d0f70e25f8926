#!/usr/bin/env bash
# Iris under wrk (64 connections, keep-alive, loopback): kiln serve vs node:http + onnxruntime-node
# vs FastAPI + onnxruntime (2 uvicorn workers), same machine, same run. Prints a table with ratios
# of throughput and of server CPU time per request (user + system, server processes only).
# Installs what it needs: wrk (apt), node + onnxruntime-node (npm), fastapi/uvicorn/onnxruntime (pip).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WORK=${WORK:-/tmp/kiln-bench-server}
mkdir -p "$WORK"
MODEL="$ROOT/models/demo/iris/1/model.onnx"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
[ -d "$WORK/node_modules/onnxruntime-node" ] || (cd "$WORK" && npm init -y >/dev/null && ONNXRUNTIME_NODE_INSTALL_CUDA=skip ONNXRUNTIME_NODE_INSTALL=skip npm install --silent onnxruntime-node >/dev/null)
[ -x "$WORK/venv/bin/uvicorn" ] || { python3 -m venv "$WORK/venv" && "$WORK/venv/bin/pip" install -q fastapi uvicorn onnxruntime numpy; }
[ -n "${KILN:-}" ] || (cd "$ROOT" && cargo build --release -q -p kiln-cli)
KILN=${KILN:-$ROOT/target/release/kiln}

wait_up() { for _ in $(seq 1 200); do curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' --data @iris_request.json "http://127.0.0.1:$1/v2/models/iris/infer" && return 0; sleep 0.05; done; echo "server on port $1 did not come up" >&2; return 1; }
cpu_ticks() { # pid -> user+system clock ticks of it and its children
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
measure() { # name port pid -> "rps p99 server-cpu-us-per-request"
  local t0 t1 rps p99 n
  t0=$(cpu_ticks "$3")
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s post.lua "http://127.0.0.1:$2/v2/models/iris/infer" > "$WORK/$1.txt"
  t1=$(cpu_ticks "$3")
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$1.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$1.txt")
  n=$(awk '/requests in/ {print $1}' "$WORK/$1.txt")
  echo "$rps $p99 $(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", t * 1e6 / hz / n}')"
}

"$KILN" serve --http-port 18000 --no-grpc >/dev/null & KPID=$!
wait_up 18000; read -r K_RPS K_P99 K_CPU < <(measure kiln 18000 "$KPID"); kill "$KPID"; wait "$KPID" 2>/dev/null || true

NODE_PATH="$WORK/node_modules" node node_server.js "$MODEL" 18001 & NPID=$!
wait_up 18001; read -r N_RPS N_P99 N_CPU < <(measure node 18001 "$NPID"); kill "$NPID"; wait "$NPID" 2>/dev/null || true

IRIS_MODEL="$MODEL" "$WORK/venv/bin/uvicorn" fastapi_server:app --host 127.0.0.1 --port 18002 --workers 2 --log-level warning & FPID=$!
wait_up 18002; read -r F_RPS F_P99 F_CPU < <(measure fastapi 18002 "$FPID"); kill "$FPID"; wait "$FPID" 2>/dev/null || true

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "| server | requests/s | p99 | kiln throughput ratio | server CPU per request | CPU ratio |"
echo "|---|---|---|---|---|---|"
echo "| kiln serve | $K_RPS | $K_P99 | 1.00 | $K_CPU µs | 1.00 |"
echo "| node:http + onnxruntime-node | $N_RPS | $N_P99 | $(ratio "$K_RPS" "$N_RPS") | $N_CPU µs | $(ratio "$N_CPU" "$K_CPU") |"
echo "| FastAPI + onnxruntime (2 workers) | $F_RPS | $F_P99 | $(ratio "$K_RPS" "$F_RPS") | $F_CPU µs | $(ratio "$F_CPU" "$K_CPU") |"
