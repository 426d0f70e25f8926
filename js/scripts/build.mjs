// Builds dist/: the engine for wasm32-unknown-unknown with the `wasm` cargo profile (fat LTO, one
// codegen unit, size-optimised), twice: with simd128 (kiln_wasm_bg.wasm) and with simd128 plus
// relaxed SIMD (kiln_wasm_relaxed_bg.wasm; KILN_WASM_VARIANT=simd128 or relaxed-simd builds one
// only); wasm-bindgen's ESM glue, then wasm-opt from the binaryen npm package (KILN_WASM_OPT=0
// skips it; KILN_WASM_OPT_LEVEL picks the level, default -Oz), which also orders the functions by
// name for a smaller gzip and strips the name section.
//
// The engine is built with the nightly toolchain pinned in package.json (config.rustToolchain),
// which rebuilds the standard library with the rest of the program (-Zbuild-std) so that panics
// abort on the spot (`panic = "immediate-abort"`): no panic messages, formatting machinery or
// source locations are linked in. Panics already aborted on wasm32 (a trap, surfaced as a JS
// error); every error the engine reports is a returned value and unchanged. The standard
// library's `optimize_for_size` feature picks its smaller algorithms (mergesort and heapsort
// for `sort`/`sort_unstable`, simpler number formatting and parsing): none is in a model's hot
// loop, and results are the same.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const jsDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(jsDir, '..');
const dist = join(jsDir, 'dist');

function fail(msg) {
  console.error(`build: ${msg}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) fail(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} exited with status ${r.status}`);
}

function lockedVersion(name) {
  const lock = readFileSync(join(root, 'Cargo.lock'), 'utf8');
  const m = lock.match(new RegExp(`name = "${name}"\\nversion = "([^"]+)"`));
  if (!m) fail(`${name} is not in Cargo.lock`);
  return m[1];
}

const bindgenVersion = lockedVersion('wasm-bindgen');
let cliVersion = '';
try {
  cliVersion = execFileSync('wasm-bindgen', ['--version'], { encoding: 'utf8' }).trim().split(/\s+/)[1] ?? '';
} catch {
  fail(`wasm-bindgen is not installed; run: cargo install wasm-bindgen-cli --version ${bindgenVersion} --locked`);
}
if (cliVersion !== bindgenVersion) {
  fail(`wasm-bindgen ${cliVersion} does not match the crate's ${bindgenVersion}; run: cargo install wasm-bindgen-cli --version ${bindgenVersion} --locked --force`);
}

const toolchain = JSON.parse(readFileSync(join(jsDir, 'package.json'), 'utf8')).config.rustToolchain;
const installToolchain = `rustup toolchain install ${toolchain} --profile minimal --component rust-src --target wasm32-unknown-unknown`;
let sysroot = '';
try {
  sysroot = execFileSync('rustc', [`+${toolchain}`, '--print', 'sysroot'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
} catch {
  fail(`the Rust toolchain ${toolchain} is not installed; run: ${installToolchain}`);
}
if (!existsSync(join(sysroot, 'lib', 'rustlib', 'src', 'rust', 'library', 'Cargo.lock'))) {
  fail(`the Rust toolchain ${toolchain} has no rust-src component; run: ${installToolchain}`);
}

// Flags for the wasm target only (host build scripts and proc macros are unaffected); they add
// to .cargo/config.toml's. No source locations are kept for `#[track_caller]`/panics.
const wasmRustflags = ['-Zlocation-detail=none'];
const env = { ...process.env };
if (env.RUSTFLAGS !== undefined) {
  // RUSTFLAGS overrides .cargo/config.toml's target rustflags: keep simd128 on.
  if (!env.RUSTFLAGS.includes('simd128')) env.RUSTFLAGS += ' -C target-feature=+simd128';
  env.RUSTFLAGS += ` ${wasmRustflags.join(' ')}`;
}

let wasmOpt = null;
if (process.env.KILN_WASM_OPT !== '0') {
  try {
    const require = createRequire(join(jsDir, 'package.json'));
    const pkg = require.resolve('binaryen/package.json');
    const bin = join(dirname(pkg), 'bin', 'wasm-opt');
    if (existsSync(bin)) wasmOpt = bin;
  } catch {
    wasmOpt = null;
  }
  if (!wasmOpt) console.log('build: wasm-opt needs the binaryen dev dependency (npm ci); skipping it');
}

const targetRoot = env.CARGO_TARGET_DIR ?? join(root, 'target');
mkdirSync(dist, { recursive: true });

// Two builds of the same engine. `kiln_wasm_bg.wasm` uses the 128-bit SIMD every current engine
// has; `kiln_wasm_relaxed_bg.wasm` also uses relaxed SIMD (the GEMM micro-kernel's fused
// multiply-add), which src/wasm.js loads where the engine validates it (Chrome/Edge 114+,
// Node 22+). Each has its own cargo target directory so that both stay incremental.
// wasm-bindgen's glue is the same for both; the build checks that.
const variants = [
  { name: 'simd128', file: 'kiln_wasm_bg.wasm', targetDir: targetRoot, rustflags: [], wasmOptFeatures: [] },
  {
    name: 'relaxed-simd', file: 'kiln_wasm_relaxed_bg.wasm', targetDir: join(targetRoot, 'relaxed-simd'),
    rustflags: ['-Ctarget-feature=+relaxed-simd'], wasmOptFeatures: ['--enable-relaxed-simd'],
  },
];
const only = process.env.KILN_WASM_VARIANT;
if (only !== undefined && !variants.some((v) => v.name === only)) fail(`KILN_WASM_VARIANT must be one of ${variants.map((v) => v.name).join(', ')}`);

let glue = null;
for (const v of variants) {
  if (only !== undefined && v.name !== only) continue;
  const venv = { ...env, CARGO_TARGET_DIR: v.targetDir };
  if (venv.RUSTFLAGS !== undefined && v.rustflags.length > 0) venv.RUSTFLAGS += ` ${v.rustflags.join(' ')}`;
  run('cargo', [`+${toolchain}`, 'build', '--target', 'wasm32-unknown-unknown', '--profile', 'wasm', '-p', 'kiln-wasm',
    '-Zbuild-std=std,panic_abort', '-Zbuild-std-features=optimize_for_size', '-Zpanic-immediate-abort',
    '--config', 'profile.wasm.panic="immediate-abort"',
    '--config', `target.wasm32-unknown-unknown.rustflags=${JSON.stringify([...wasmRustflags, ...v.rustflags])}`], { cwd: root, env: venv });

  const built = join(v.targetDir, 'wasm32-unknown-unknown', 'wasm', 'kiln_wasm.wasm');
  if (!existsSync(built)) fail(`${built} was not produced`);
  // wasm-opt needs the name section to order functions by name; it strips the section after.
  const out = join(dist, `.${v.name}`);
  rmSync(out, { recursive: true, force: true });
  const bindgenArgs = ['--target', 'web', '--weak-refs', '--no-typescript', '--remove-producers-section'];
  if (!wasmOpt) bindgenArgs.push('--remove-name-section');
  run('wasm-bindgen', [...bindgenArgs, '--out-dir', out, '--out-name', 'kiln_wasm', built]);
  const js = readFileSync(join(out, 'kiln_wasm.js'), 'utf8');
  if (glue !== null && js !== glue) fail(`wasm-bindgen's glue differs between the builds (${v.name})`);
  glue = js;
  writeFileSync(join(dist, 'kiln_wasm.js'), js);

  const wasmFile = join(dist, v.file);
  renameSync(join(out, 'kiln_wasm_bg.wasm'), wasmFile);
  rmSync(out, { recursive: true, force: true });
  if (wasmOpt) {
    const features = ['--enable-simd', '--enable-bulk-memory', '--enable-nontrapping-float-to-int', '--enable-sign-ext',
      '--enable-mutable-globals', '--enable-reference-types', '--enable-multivalue', ...v.wasmOptFeatures];
    const level = process.env.KILN_WASM_OPT_LEVEL ?? '-Oz';
    // Functions ordered by name after optimising: the instances of one generic function (and the
    // functions of one module) end up next to each other, within reach of gzip's 32 KiB window
    // (about 3.5% smaller gzip, same raw size).
    // --converge repeats the passes while they still shrink the module (about 3 KiB less gzip).
    // --optimize-added-constants-propagate folds `p + C` into the loads' and stores' offsets, so
    // V8 computes no address per access (the GEMM micro-kernel's loads: 0.95x the MatMul time,
    // 0.90x with relaxed SIMD). It needs --low-memory-unused: Rust puts the 1 MiB stack first in
    // memory, so only the bottom of a nearly overflowing stack lives in the low 1 KiB, and no
    // valid pointer plus offset wraps around the 32-bit address space.
    run(process.execPath, [wasmOpt, '--low-memory-unused', '--optimize-added-constants-propagate', level, '--converge',
      '--reorder-functions-by-name', ...features, '--strip-debug', '--strip-producers', wasmFile, '-o', wasmFile]);
  }

  const raw = statSync(wasmFile).size;
  const gz = gzipSync(readFileSync(wasmFile), { level: 9 }).length;
  console.log(`build: ${wasmFile} (${v.name}): ${(raw / 1024).toFixed(0)} KiB raw, ${(gz / 1024).toFixed(0)} KiB gzip`);
}
