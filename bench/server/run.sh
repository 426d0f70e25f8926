#!/usr/bin/env bash
# Iris under wrk (64 connections, keep-alive, loopback): kiln serve vs node:http + onnxruntime-node
# vs FastAPI + onnxruntime (2 uvicorn workers), same machine, same run. Prints a table with ratios.
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
(cd "$ROOT" && cargo build --release -q -p kiln-cli)

wait_up() { for _ in $(seq 1 200); do curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' --data @iris_request.json "http://127.0.0.1:$1/v2/models/iris/infer" && return 0; sleep 0.05; done; echo "server on port $1 did not come up" >&2; return 1; }
measure() { # name port -> "rps p99"
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s post.lua "http://127.0.0.1:$2/v2/models/iris/infer" > "$WORK/$1.txt"
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$1.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$1.txt")
  echo "$rps $p99"
}

"$ROOT/target/release/kiln" serve --http-port 18000 --no-grpc >/dev/null & KPID=$!
wait_up 18000; read -r K_RPS K_P99 < <(measure kiln 18000); kill "$KPID"; wait "$KPID" 2>/dev/null || true

NODE_PATH="$WORK/node_modules" node node_server.js "$MODEL" 18001 & NPID=$!
wait_up 18001; read -r N_RPS N_P99 < <(measure node 18001); kill "$NPID"; wait "$NPID" 2>/dev/null || true

IRIS_MODEL="$MODEL" "$WORK/venv/bin/uvicorn" fastapi_server:app --host 127.0.0.1 --port 18002 --workers 2 --log-level warning & FPID=$!
wait_up 18002; read -r F_RPS F_P99 < <(measure fastapi 18002); kill "$FPID"; wait "$FPID" 2>/dev/null || true

echo "| server | requests/s | p99 | kiln ratio |"
echo "|---|---|---|---|"
echo "| kiln serve | $K_RPS | $K_P99 | 1.00 |"
echo "| node:http + onnxruntime-node | $N_RPS | $N_P99 | $(awk -v a="$K_RPS" -v b="$N_RPS" 'BEGIN{printf "%.2f", a/b}') |"
echo "| FastAPI + onnxruntime (2 workers) | $F_RPS | $F_P99 | $(awk -v a="$K_RPS" -v b="$F_RPS" 'BEGIN{printf "%.2f", a/b}') |"
