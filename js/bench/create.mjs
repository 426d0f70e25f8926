// First and second session creation in a fresh Node process, for kiln-ml or onnxruntime-web
// (wasm, SIMD, 1 thread): the wasm module is instantiated first, the model bytes are in memory.
// The first creation grows and touches fresh wasm memory, which bench.mjs (one process for all
// models) mixes up with what earlier models left behind.
//
// node create.mjs kiln|ort MODEL_DIR [KILN_DIR]   (KILN_DIR: a kiln-ml checkout's js/, default ..)

import { readFileSync } from 'node:fs';
import { join, dirname, basename } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';

const here = dirname(fileURLToPath(import.meta.url));
const [which, dir, kilnDir = join(here, '..')] = process.argv.slice(2);
if (!['kiln', 'ort'].includes(which) || !dir) {
  console.error('usage: node create.mjs kiln|ort MODEL_DIR [KILN_DIR]');
  process.exit(2);
}
const bytes = new Uint8Array(readFileSync(join(dir, 'model.onnx')));
let lib;
if (which === 'ort') {
  lib = await import('onnxruntime-web');
  lib.env.wasm.numThreads = 1;
  lib.env.wasm.simd = true;
  lib.env.logLevel = 'error';
  const warm = await lib.InferenceSession.create(readFileSync(join(here, '..', 'test', 'fixtures', 'sequence_output.onnx'))).catch(() => null);
  await warm?.release();
} else {
  lib = await import(pathToFileURL(join(kilnDir, 'src', 'index.js')).href);
  await lib.initWasm();
}
const ms = [];
for (let i = 0; i < 2; i++) {
  const t = performance.now();
  const s = await lib.InferenceSession.create(bytes);
  ms.push(performance.now() - t);
  await s.release();
}
console.log(`${which} ${basename(dir)}: first creation ${ms[0].toFixed(0)} ms, second ${ms[1].toFixed(0)} ms`);
