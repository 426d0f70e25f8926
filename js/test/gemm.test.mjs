// The engine's matrix-multiply kernels as compiled to WebAssembly: one-node Gemm / MatMul / Conv
// models built here, on sizes that hit every full and partial tile, transposes, alpha/beta/bias
// epilogues, constant (prepacked) weights and Winograd convolutions, against a float64 reference
// computed in JS.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { InferenceSession, Tensor, env } from '../src/index.js';
import { compareTensor } from './compare.mjs';

// KILN_WASM_RELAXED=0: the simd128 build even where relaxed SIMD is supported.
if (process.env.KILN_WASM_RELAXED === '0') env.wasm.relaxedSimd = false;

// ---- minimal ONNX protobuf writer ----

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
function model(opType, inputs, outDims, attrs = []) {
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

function fill(len, seed) {
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) out[i] = ((i * 7919 + seed * 104729) % 1000) / 500 - 1;
  return out;
}

/** float64 Gemm reference: y = alpha·op(A)·op(B) + beta·C (C broadcast from [n] or [m, n]). */
function gemmRef(m, k, n, a, b, transA, transB, alpha, beta, c, cRows) {
  const y = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * m + i] : a[i * k + p];
        const bv = transB ? b[j * k + p] : b[p * n + j];
        s += av * bv;
      }
      let v = alpha * s;
      if (c) v += beta * c[(cRows === 1 ? 0 : i) * n + j];
      y[i * n + j] = v;
    }
  }
  return y;
}

async function runOne(bytes, feeds) {
  const session = await InferenceSession.create(bytes);
  try {
    const out = await session.run(feeds);
    return out.y;
  } finally {
    await session.release();
  }
}

const SIZES = [[1, 1, 1], [3, 5, 7], [6, 256, 8], [7, 300, 4], [13, 300, 45], [17, 513, 70], [40, 33, 100], [1, 300, 45], [37, 300, 1], [64, 96, 131]];

describe('matrix-multiply kernels match a float64 reference', () => {
  for (const [m, k, n] of SIZES) {
    for (const [transA, transB] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
      test(`Gemm ${m}x${k}x${n} transA=${transA} transB=${transB}`, async () => {
        const a = fill(m * k, 1);
        const b = fill(k * n, 2);
        const aDims = transA ? [k, m] : [m, k];
        const bDims = transB ? [n, k] : [k, n];
        const attrs = [attrInt('transA', transA), attrInt('transB', transB)];
        const want = { type: 'float32', data: gemmRef(m, k, n, a, b, transA, transB, 1, 0, null, 0), dims: [m, n] };
        const tol = 1e-5 * (k + 1);
        // Both operands as inputs.
        const y1 = await runOne(model('Gemm', [{ name: 'a', dims: aDims }, { name: 'b', dims: bDims }], [m, n], attrs), {
          a: new Tensor('float32', a, aDims),
          b: new Tensor('float32', b, bDims),
        });
        assert.equal(compareTensor(y1, want, 1e-5, tol), null, 'inputs');
        // Constant B with alpha, beta and a bias row.
        const c = fill(n, 3);
        const want2 = { type: 'float32', data: gemmRef(m, k, n, a, b, transA, transB, 0.5, 2, c, 1), dims: [m, n] };
        const y2 = await runOne(
          model('Gemm', [{ name: 'a', dims: aDims }, { name: 'b', dims: bDims, data: b }, { name: 'c', dims: [n], data: c }], [m, n],
            [...attrs, attrFloat('alpha', 0.5), attrFloat('beta', 2)]),
          { a: new Tensor('float32', a, aDims) },
        );
        assert.equal(compareTensor(y2, want2, 1e-5, tol), null, 'constant B with bias');
      });
    }
  }

  test('batched MatMul with a full-matrix bias-free product', async () => {
    const [batch, m, k, n] = [3, 19, 70, 37];
    const a = fill(batch * m * k, 4);
    const b = fill(batch * k * n, 5);
    const want = new Float32Array(batch * m * n);
    for (let t = 0; t < batch; t++) {
      want.set(gemmRef(m, k, n, a.subarray(t * m * k), b.subarray(t * k * n), 0, 0, 1, 0, null, 0), t * m * n);
    }
    const y = await runOne(model('MatMul', [{ name: 'a', dims: [batch, m, k] }, { name: 'b', dims: [batch, k, n] }], [batch, m, n]), {
      a: new Tensor('float32', a, [batch, m, k]),
      b: new Tensor('float32', b, [batch, k, n]),
    });
    assert.equal(compareTensor(y, { type: 'float32', data: want, dims: [batch, m, n] }, 1e-5, 1e-5 * (k + 1)), null);
  });

  for (const [group, cin, cout, size, kernel, stride, pad] of [[1, 5, 11, 9, 3, 1, 1], [1, 16, 24, 14, 1, 1, 0], [12, 12, 12, 13, 3, 2, 1], [8, 8, 8, 23, 5, 1, 2],
    // Winograd F(4×4): a partial panel of output channels (22), two depth blocks (520 > 512).
    [1, 18, 22, 17, 3, 1, 1], [1, 520, 20, 16, 3, 1, 1]]) {
    test(`Conv group=${group} ${cin}->${cout} ${size}x${size} k${kernel} s${stride} p${pad}`, async () => {
      const x = fill(cin * size * size, 6);
      const w = fill(cout * (cin / group) * kernel * kernel, 7);
      const bias = fill(cout, 8);
      const o = Math.floor((size + 2 * pad - kernel) / stride) + 1;
      const want = new Float32Array(cout * o * o);
      const cpg = cin / group;
      const opg = cout / group;
      for (let co = 0; co < cout; co++) {
        const g = Math.floor(co / opg);
        for (let i = 0; i < o; i++) {
          for (let j = 0; j < o; j++) {
            let s = bias[co];
            for (let ci = 0; ci < cpg; ci++) {
              for (let u = 0; u < kernel; u++) {
                for (let v = 0; v < kernel; v++) {
                  const r = i * stride + u - pad;
                  const c = j * stride + v - pad;
                  if (r < 0 || c < 0 || r >= size || c >= size) continue;
                  s += x[((g * cpg + ci) * size + r) * size + c] * w[((co * cpg + ci) * kernel + u) * kernel + v];
                }
              }
            }
            want[(co * o + i) * o + j] = s;
          }
        }
      }
      const attrs = [attrInt('group', group), attrInts('kernel_shape', [kernel, kernel]), attrInts('strides', [stride, stride]), attrInts('pads', [pad, pad, pad, pad])];
      const y = await runOne(
        model('Conv', [{ name: 'x', dims: [1, cin, size, size] }, { name: 'w', dims: [cout, cpg, kernel, kernel], data: w }, { name: 'b', dims: [cout], data: bias }], [1, cout, o, o], attrs),
        { x: new Tensor('float32', x, [1, cin, size, size]) },
      );
      assert.equal(compareTensor(y, { type: 'float32', data: want, dims: [1, cout, o, o] }, 1e-5, 1e-5 * (cpg * kernel * kernel + 1)), null);
    });
  }
});
