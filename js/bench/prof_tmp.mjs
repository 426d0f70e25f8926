import { readFileSync } from 'node:fs';
import * as kiln from '../src/index.js';
await kiln.initWasm(readFileSync('/tmp/wasm2/prof/kiln_wasm_bg.wasm'));
const bytes = new Uint8Array(readFileSync('/work/main/models/large/resnet18/model.onnx'));
for (let i = 0; i < 3; i++) { const t = performance.now(); const s = await kiln.InferenceSession.create(bytes); console.log('create', performance.now() - t); await s.release(); }
