// Node latency of kiln-ml and onnxruntime-web (wasm backend, SIMD, 1 thread) on the same models
// and inputs, in the same process: session creation and median/p90 run time, with ratios.
//
// node bench.mjs [MODEL_DIR ...] [--rows=N] [--json]
//   (default: ../../models/large/{resnet18,mobilenet_v3_small,bert})
// Each MODEL_DIR holds model.onnx, meta.json and test_data_set_0/input_k.npy, or is a classic-ML
// fixture listed in its parent's MANIFEST.json (models/ml/*: model.onnx and input_k.npy); --rows=N
// repeats a classic-ML fixture's input rows up to N rows.
// KILN_BENCH_RUNS (default 20) and KILN_BENCH_WARMUP (default 3) set the run counts; --json prints JSON.

import { readFileSync, existsSync } from 'node:fs';
import { join, dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import * as kiln from '../src/index.js';
import { parseNpy } from '../test/npy.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const json = process.argv.includes('--json');
const rowsArg = process.argv.find((a) => a.startsWith('--rows='));
const ROWS = rowsArg ? Number(rowsArg.slice('--rows='.length)) : 0;
const largeDir = join(here, '..', '..', 'models', 'large');
const dirs = args.length > 0 ? args : ['resnet18', 'mobilenet_v3_small', 'bert'].map((n) => join(largeDir, n));
const RUNS = Number(process.env.KILN_BENCH_RUNS ?? 20);
const WARMUP = Number(process.env.KILN_BENCH_WARMUP ?? 3);

const ort = await import('onnxruntime-web');
ort.env.wasm.numThreads = 1;
ort.env.wasm.simd = true;
ort.env.logLevel = 'error';

function stats(ms) {
  const s = [...ms].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], p90: s[Math.min(s.length - 1, Math.floor(s.length * 0.9))] };
}

async function time(fn, runs, warmup) {
  for (let i = 0; i < warmup; i++) await fn();
  const ms = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  return stats(ms);
}

async function bench(lib, bytes, inputs) {
  const t0 = performance.now();
  const session = await lib.InferenceSession.create(bytes);
  const createMs = performance.now() - t0;
  const feeds = {};
  for (const [name, t] of Object.entries(inputs)) feeds[name] = new lib.Tensor(t.type, t.data, t.dims);
  const run = await time(() => session.run(feeds), RUNS, WARMUP);
  await session.release();
  return { createMs, ...run };
}

// Instantiate both wasm modules first so creation times measure model loading only.
await kiln.initWasm();
{
  const warm = await ort.InferenceSession.create(readFileSync(join(here, '..', 'test', 'fixtures', 'sequence_output.onnx'))).catch(() => null);
  await warm?.release();
}

/// Repeats the rows (first dimension) of `t` until it has `rows` rows (0: unchanged).
function tileRows(t, rows) {
  if (!rows || t.dims.length === 0 || t.dims[0] === 0) return t;
  const per = t.data.length / t.dims[0];
  const data = new t.data.constructor(rows * per);
  for (let r = 0; r < rows; r++) data.set(t.data.subarray((r % t.dims[0]) * per, (r % t.dims[0] + 1) * per), r * per);
  return { ...t, data, dims: [rows, ...t.dims.slice(1)] };
}

const results = [];
for (const dir of dirs) {
  if (!existsSync(join(dir, 'model.onnx'))) {
    console.error(`skipping ${dir}: no model.onnx`);
    continue;
  }
  const inputs = {};
  let label = basename(dir);
  if (existsSync(join(dir, 'meta.json'))) {
    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
    meta.inputs.forEach((inp, k) => {
      inputs[inp.name] = parseNpy(readFileSync(join(dir, 'test_data_set_0', `input_${k}.npy`)));
    });
  } else {
    const manifest = JSON.parse(readFileSync(join(dir, '..', 'MANIFEST.json'), 'utf8'));
    const fx = manifest.fixtures.find((f) => f.name === basename(dir));
    if (!fx) {
      console.error(`skipping ${dir}: no meta.json and not in ../MANIFEST.json`);
      continue;
    }
    for (const inp of fx.inputs) inputs[inp.name] = tileRows(parseNpy(readFileSync(join(dir, inp.file))), ROWS);
    label = `${basename(dir)} (${Object.values(inputs)[0].dims[0]} rows)`;
  }
  const bytes = new Uint8Array(readFileSync(join(dir, 'model.onnx')));
  const k = await bench(kiln, bytes, inputs);
  const o = await bench(ort, bytes, inputs);
  const row = {
    model: label,
    kiln_median_ms: k.median, kiln_p90_ms: k.p90, kiln_create_ms: k.createMs,
    ort_median_ms: o.median, ort_p90_ms: o.p90, ort_create_ms: o.createMs,
    run_ratio: k.median / o.median, create_ratio: k.createMs / o.createMs,
  };
  results.push(row);
  if (!json) {
    console.log(`${row.model}: kiln ${k.median.toFixed(1)} ms (p90 ${k.p90.toFixed(1)}), onnxruntime-web ${o.median.toFixed(1)} ms (p90 ${o.p90.toFixed(1)}), ratio ${row.run_ratio.toFixed(2)}; ` +
      `create kiln ${k.createMs.toFixed(0)} ms, ort ${o.createMs.toFixed(0)} ms, ratio ${row.create_ratio.toFixed(2)}`);
  }
}
if (json) console.log(JSON.stringify({ runs: RUNS, warmup: WARMUP, ort_version: ort.env.versions?.web, results }, null, 1));
