#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs
#   1. the ONNX backend node tests (conformance), enforcing conformance/passing.txt;
#   2. the WebAssembly build and the kiln-ml npm package in Node and headless Chromium;
#   3. `kiln serve` against the official tritonclient (HTTP and gRPC);
#   4. unit, integration, model-parity and CLI tests (cargo test), and the kernel and engine
#      unit tests again on the AVX2 kernels when the machine has AVX-512.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n== %s\n' "$*"; }

step "Python venv for reference data (.venv)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r conformance/requirements.txt -r tests/server/requirements.txt

step "Generating the ONNX backend node tests (onnx $(.venv/bin/python -c 'import onnx; print(onnx.__version__)'))"
.venv/bin/python conformance/generate.py --output conformance/data

step "Building (release)"
cargo build --release --workspace --locked 2>&1 | tail -n 3

step "Conformance: ONNX backend node tests"
./target/release/kiln-conformance --data conformance/data/node --list conformance/passing.txt --enforce --check-ops-doc docs/ops.md --quiet

step "WebAssembly build and the kiln-ml package: Node and Chromium tests"
bash js/scripts/ci.sh

step "kiln serve: tritonclient HTTP and gRPC end to end"
KILN="$root/target/release/kiln" .venv/bin/python -m pytest tests/server -q

step "Unit, integration, model parity and CLI tests"
cargo test --release --workspace --locked

# On an AVX-512 machine the steps above run the AVX-512 kernels; the AVX2 ones again here.
step "Kernel and engine unit tests on the AVX2 kernels (KILN_NO_AVX512)"
KILN_NO_AVX512=1 cargo test --release --locked -p kiln-kernels -p kiln-engine --lib
