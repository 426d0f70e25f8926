#!/usr/bin/env bash
# Installs what the kiln-ml build and tests need on a fresh machine, then builds and runs the
# Node and Chromium tests. Run from anywhere: bash js/scripts/ci.sh
set -euo pipefail

WASM_BINDGEN_VERSION=0.2.129   # must equal the wasm-bindgen crate pinned in crates/kiln-wasm/Cargo.toml
JS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$JS_DIR"

# The engine is built with a pinned nightly (package.json config.rustToolchain): see scripts/build.mjs.
RUST_TOOLCHAIN="$(node -p "require('./package.json').config.rustToolchain")"
rustup toolchain install "$RUST_TOOLCHAIN" --profile minimal --component rust-src --target wasm32-unknown-unknown
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked --force
fi

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi

# playwright-core never downloads a browser; the tests drive /usr/bin/chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund

npm run build
node --test test/*.test.mjs test/browser/*.test.mjs
# The package ships two builds (simd128, and relaxed SIMD where the engine has it); the run above
# used the one this Node picks, so run the Node tests once more on the other one. Relaxed SIMD is
# behind a flag before Node 22.
if node --input-type=module -e "const m = await import('./src/wasm.js'); process.exit(m.relaxedSimdSupported() ? 0 : 1)"; then
  KILN_WASM_RELAXED=0 node --test test/*.test.mjs
else
  node --experimental-wasm-relaxed-simd --test test/*.test.mjs
fi
