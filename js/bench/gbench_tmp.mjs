function varint(n) {
  const out = [];
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n;
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
const key = (field, wire) => varint((field << 3) | wire);
const bytesField = (field, bytes) => [...key(field, 2), ...varint(bytes.length), ...bytes];
const strField = (field, s) => bytesField(field, [...new TextEncoder().encode(s)]);
const intField = (field, n) => [...key(field, 0), ...varint(n)];
function floatField(field, x) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return [...key(field, 5), ...b];
}

const attrInt = (name, v) => bytesField(5, [...strField(1, name), ...intField(3, v), ...intField(20, 2)]);
const attrFloat = (name, v) => bytesField(5, [...strField(1, name), ...floatField(2, v), ...intField(20, 1)]);
const attrInts = (name, vs) => bytesField(5, [...strField(1, name), ...vs.flatMap((v) => intField(8, v)), ...intField(20, 7)]);

function valueInfo(name, dims) {
  const shape = dims.flatMap((d) => bytesField(1, intField(1, d)));
  const tensorType = [...intField(1, 1), ...bytesField(2, shape)];
  return [...strField(1, name), ...bytesField(2, bytesField(1, tensorType))];
}

function initializer(name, dims, data) {
  const raw = new Uint8Array(new Float32Array(data).buffer);
  return [...dims.flatMap((d) => intField(1, d)), ...intField(2, 1), ...strField(8, name), ...bytesField(9, [...raw])];
}

/** A one-node model: inputs [{name, dims, data?}] (data = constant initializer), output dims. */
export function model(opType, inputs, outDims, attrs = []) {
  const node = [...inputs.flatMap((i) => strField(1, i.name)), ...strField(2, 'y'), ...strField(4, opType), ...attrs.flat()];
  const graph = [
    ...bytesField(1, node),
    ...strField(2, 'g'),
    ...inputs.filter((i) => i.data).flatMap((i) => bytesField(5, initializer(i.name, i.dims, i.data))),
    ...inputs.filter((i) => !i.data).flatMap((i) => bytesField(11, valueInfo(i.name, i.dims))),
    ...bytesField(12, valueInfo('y', outDims)),
  ];
  const opset = [...strField(1, ''), ...intField(2, 17)];
  return new Uint8Array([...intField(1, 8), ...bytesField(8, opset), ...bytesField(7, graph)]);
}

// ---- reference ----
import * as kiln from '/work/wt/wasm2/js/src/index.js';
const ort = await import('/work/wt/wasm2/js/bench/node_modules/onnxruntime-web/dist/ort.node.min.mjs').catch(() => import('onnxruntime-web'));
ort.env.wasm.numThreads = 1;
await kiln.initWasm();
const [m, k, n] = (process.argv[2] ?? '196,2304,256').split(',').map(Number);
const a = new Float32Array(m * k).map((_, i) => (i % 17) / 17 - 0.5);
const b = Array.from({ length: k * n }, (_, i) => (i % 13) / 13 - 0.5);
const bytes = model('MatMul', [{ name: 'a', dims: [m, k] }, { name: 'b', dims: [k, n], data: b }], [m, n]);
for (const [name, lib] of [['kiln', kiln], ['ort', ort]]) {
  const s = await lib.InferenceSession.create(bytes);
  const feeds = { a: new lib.Tensor('float32', a, [m, k]) };
  for (let i = 0; i < 3; i++) await s.run(feeds);
  const t = performance.now(); const R = 10;
  for (let i = 0; i < R; i++) await s.run(feeds);
  const ms = (performance.now() - t) / R;
  console.log(name, ms.toFixed(2), 'ms', (2 * m * k * n / ms / 1e6).toFixed(2), 'GFLOP/s');
}
