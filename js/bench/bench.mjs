// Node latency of kiln-ml and onnxruntime-web (wasm backend, SIMD, 1 thread) on the same models
// and inputs, in the same process: session creation and median/p90 run time, with ratios.
//
// node bench.mjs [MODEL_DIR ...]   (default: ../../models/large/{resnet18,mobilenet_v3_small,bert})
// Each MODEL_DIR holds model.onnx, meta.json and test_data_set_0/input_k.npy.
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

const results = [];
for (const dir of dirs) {
  if (!existsSync(join(dir, 'model.onnx'))) {
    console.error(`skipping ${dir}: no model.onnx`);
    continue;
  }
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  const inputs = {};
  meta.inputs.forEach((inp, k) => {
    inputs[inp.name] = parseNpy(readFileSync(join(dir, 'test_data_set_0', `input_${k}.npy`)));
  });
  const bytes = new Uint8Array(readFileSync(join(dir, 'model.onnx')));
  const k = await bench(kiln, bytes, inputs);
  const o = await bench(ort, bytes, inputs);
  const row = {
    model: basename(dir),
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
