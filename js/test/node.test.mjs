// kiln-ml in Node: fixture models against onnxruntime's reference outputs, every tensor type,
// non-tensor outputs, metadata, and bad input (each rejects with a clear Error; nothing breaks).
//
// KILN_FIXTURES=a,b limits the fixture models to names containing one of the substrings.
// KILN_WASM_RELAXED=0 runs everything on the simd128 build where relaxed SIMD is supported.

import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { execFileSync } from 'node:child_process';
import { InferenceSession, Tensor, initWasm, env, clearModelCache, relaxedSimdSupported, wasmVariant } from '../src/index.js';
import { parseNpy } from './npy.mjs';
import { createWorkerSession } from '../src/worker-session.js';
import { compareTensor } from './compare.mjs';
import { splitWeights } from '../src/weights.js';

if (process.env.KILN_WASM_RELAXED === '0') env.wasm.relaxedSimd = false;

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const fixturesDir = join(repo, 'models', 'fixtures');
const localFixtures = join(here, 'fixtures');
const readNpy = (path) => parseNpy(readFileSync(path));

function fixtureList() {
  const manifest = JSON.parse(readFileSync(join(fixturesDir, 'MANIFEST.json'), 'utf8'));
  const filter = (process.env.KILN_FIXTURES ?? '').split(',').filter((s) => s.length > 0);
  return manifest.fixtures
    .map((f) => f.name)
    .filter((n) => filter.length === 0 || filter.some((s) => n.includes(s)));
}

function feedsFor(dir, meta, dataset) {
  const feeds = {};
  meta.inputs.forEach((inp, k) => {
    const t = readNpy(join(dir, dataset, `input_${k}.npy`));
    feeds[inp.name] = new Tensor(t.type, t.data, t.dims);
  });
  return feeds;
}

describe('fixture models match onnxruntime', () => {
  for (const name of fixtureList()) {
    test(name, async () => {
      const dir = join(fixturesDir, name);
      const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
      const session = await InferenceSession.create(join(dir, 'model.onnx'));
      assert.deepEqual([...session.inputNames], meta.inputs.map((i) => i.name));
      assert.deepEqual([...session.outputNames], meta.outputs.map((o) => o.name));
      for (const ds of meta.datasets) {
        const out = await session.run(feedsFor(dir, meta, ds.name));
        meta.outputs.forEach((o, k) => {
          const want = readNpy(join(dir, ds.name, `output_${k}.npy`));
          const problem = compareTensor(out[o.name], want);
          assert.equal(problem, null, `${name}/${ds.name} output '${o.name}': ${problem}`);
        });
      }
      await session.release();
    });
  }
});

describe('tensor types', () => {
  let session;
  before(async () => {
    session = await InferenceSession.create(readFileSync(join(localFixtures, 'identity_all_types.onnx')));
  });

  const cases = {
    float32: new Float32Array([1.5, -2, 3e-8]),
    float64: new Float64Array([1e300, -0.25, Math.PI]),
    float16: new Uint16Array([0x3c00, 0xc000, 0x7bff]),
    int8: new Int8Array([-128, 0, 127]),
    int16: new Int16Array([-32768, 1, 32767]),
    int32: new Int32Array([-2147483648, 5, 2147483647]),
    int64: new BigInt64Array([-(2n ** 63n), 7n, 2n ** 63n - 1n]),
    uint8: new Uint8Array([0, 128, 255]),
    uint16: new Uint16Array([0, 1, 65535]),
    uint32: new Uint32Array([0, 1, 4294967295]),
    uint64: new BigUint64Array([0n, 1n, 2n ** 64n - 1n]),
    bool: new Uint8Array([1, 0, 1]),
    string: ['a', '', 'ünï ✓'],
  };

  test('every type round-trips through Identity', async () => {
    const feeds = {};
    for (const [type, data] of Object.entries(cases)) feeds[`x_${type}`] = new Tensor(type, data, [3]);
    const out = await session.run(feeds);
    for (const [type, data] of Object.entries(cases)) {
      const y = out[`y_${type}`];
      assert.ok(y instanceof Tensor, `y_${type} is a Tensor`);
      assert.equal(y.type, type);
      assert.deepEqual([...y.dims], [3]);
      assert.equal(y.data.constructor, data.constructor, `${type} container`);
      assert.deepEqual([...y.data], [...data], `${type} values`);
    }
  });

  test('metadata lists types and symbolic dims', () => {
    const meta = session.inputMetadata.find((m) => m.name === 'x_int64');
    assert.deepEqual({ ...meta, shape: [...meta.shape] }, { name: 'x_int64', isTensor: true, type: 'int64', shape: ['n'] });
    assert.equal(session.outputMetadata.length, Object.keys(cases).length);
  });

  test('fetches selects outputs', async () => {
    const feeds = {};
    for (const [type, data] of Object.entries(cases)) feeds[`x_${type}`] = new Tensor(type, data, [3]);
    const out = await session.run(feeds, ['y_string', 'y_bool']);
    assert.deepEqual(Object.keys(out).sort(), ['y_bool', 'y_string']);
    await assert.rejects(session.run(feeds, ['nope']), /no output named 'nope'/);
  });

  test('plain arrays are converted by the Tensor constructor', () => {
    assert.ok(new Tensor('int64', [1, 2n], [2]).data instanceof BigInt64Array);
    assert.ok(new Tensor('float32', [1, 2]).data instanceof Float32Array);
    assert.deepEqual([...new Tensor('bool', [true, false]).data], [1, 0]);
    assert.equal(new Tensor(new BigInt64Array(2)).type, 'int64');
    assert.equal(new Tensor(['x']).type, 'string');
  });

  test('Tensor constructor rejects bad data with clear errors', () => {
    assert.throws(() => new Tensor('float32', new Float32Array(3), [2, 2]), /need 4 elements but data has 3/);
    assert.throws(() => new Tensor('complex64', new Float32Array(2)), /unsupported tensor type 'complex64'/);
    assert.throws(() => new Tensor('int64', new Int32Array(2)), /int64 data must be a BigInt64Array/);
    assert.throws(() => new Tensor('float32', [1, 'x']), /item 1 is not a number/);
    assert.throws(() => new Tensor('float32', new Float32Array(2), [-1, -2]), /non-negative integers/);
  });
});

describe('non-tensor outputs', () => {
  test('a sequence output is an array of Tensors', async () => {
    const session = await InferenceSession.create(join(localFixtures, 'sequence_output.onnx'));
    const seqMeta = session.outputMetadata.find((m) => m.name === 'seq');
    assert.equal(seqMeta.isTensor, false);
    assert.equal(seqMeta.type, 'sequence<tensor<float32>>');
    const out = await session.run({
      a: new Tensor('float32', [1, 2], [2]),
      b: new Tensor('float32', [3, 4, 5], [3]),
    });
    assert.ok(Array.isArray(out.seq));
    assert.equal(out.seq.length, 2);
    assert.deepEqual([...out.seq[1].data], [3, 4, 5]);
    assert.deepEqual([...out.total.data], [3]);
  });

});

describe('classic-ML models (scikit-learn, XGBoost, LightGBM) match onnxruntime', () => {
  const mlDir = join(repo, 'models', 'ml');
  const manifestPath = join(mlDir, 'MANIFEST.json');
  const ml = existsSync(manifestPath) ? JSON.parse(readFileSync(manifestPath, 'utf8')) : { fixtures: [] };
  const filter = (process.env.KILN_FIXTURES ?? '').split(',').filter((s) => s.length > 0);
  const close = (a, b) => (Number.isNaN(a) && Number.isNaN(b)) || Math.abs(a - b) <= 1e-5 + 1e-3 * Math.abs(b);
  for (const fx of ml.fixtures.filter((f) => filter.length === 0 || filter.some((s) => f.name.includes(s)))) {
    test(fx.name, async (t) => {
      const dir = join(mlDir, fx.name);
      let session;
      try {
        session = await InferenceSession.create(join(dir, 'model.onnx'));
      } catch (e) {
        // Engine coverage is tracked by the engine's own ml_parity test; here only the binding matters.
        if (/unsupported node/.test(e.message)) return t.skip(e.message);
        throw e;
      }
      const feeds = {};
      for (const inp of fx.inputs) {
        const t = readNpy(join(dir, inp.file));
        feeds[inp.name] = new Tensor(t.type, t.data, t.dims);
      }
      const out = await session.run(feeds);
      for (const o of fx.outputs) {
        const got = out[o.name];
        if (o.kind === 'seq_map') {
          const want = JSON.parse(readFileSync(join(dir, o.file), 'utf8'));
          assert.ok(Array.isArray(got), `${o.name} is an array`);
          assert.equal(got.length, want.length);
          for (let r = 0; r < want.length; r++) {
            assert.deepEqual(Object.keys(got[r]).sort(), Object.keys(want[r]).sort(), `${o.name}[${r}] keys`);
            for (const k of Object.keys(want[r])) {
              assert.equal(typeof got[r][k], 'number');
              assert.ok(close(got[r][k], want[r][k]), `${o.name}[${r}][${k}]: ${got[r][k]}, expected ${want[r][k]}`);
            }
          }
        } else {
          const want = readNpy(join(dir, o.file));
          const problem = compareTensor(got, want, 1e-3, 1e-5);
          assert.equal(problem, null, `${o.name}: ${problem}`);
        }
      }
      const probs = session.outputMetadata.find((m) => !m.isTensor);
      if (probs) assert.match(probs.type, /^sequence<map<(int64|string), /);
      await session.release();
    });
  }
});

describe('bad input rejects with a clear Error and the session stays usable', () => {
  const dir = join(fixturesDir, 'bert_ts');
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  let session;
  let good;
  let want;
  before(async () => {
    session = await InferenceSession.create(readFileSync(join(dir, 'model.onnx')));
    good = feedsFor(dir, meta, 'test_data_set_0');
    want = readNpy(join(dir, 'test_data_set_0', 'output_0.npy'));
  });

  async function stillWorks() {
    const out = await session.run(good);
    assert.equal(compareTensor(out.last_hidden_state, want), null);
  }

  test('non-ONNX bytes', async () => {
    const err = await InferenceSession.create(new TextEncoder().encode('this is not an onnx model')).catch((e) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /cannot load the model: not a valid ONNX model/);
    await stillWorks();
  });

  test('missing file', async () => {
    await assert.rejects(InferenceSession.create(join(dir, 'missing.onnx')), /cannot read the model '.*missing\.onnx': no such file/);
  });

  test('wrong source type', async () => {
    await assert.rejects(InferenceSession.create(42), /needs a file path, a URL, or the model bytes/);
  });

  test('wrong tensor type', async () => {
    const feeds = { ...good, input_ids: new Tensor('int32', new Int32Array(16), [2, 8]) };
    const err = await session.run(feeds).catch((e) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /input 'input_ids' must be int64, got int32/);
    await stillWorks();
  });

  test('wrong shape', async () => {
    const feeds = { ...good, attention_mask: new Tensor('int64', new BigInt64Array(9), [3, 3]) };
    await assert.rejects(session.run(feeds), /dimension 'batch' is 3 in input 'attention_mask' but 2 in input 'input_ids'|attention_mask/);
    const rank = { ...good, input_ids: new Tensor('int64', new BigInt64Array(16), [16]) };
    await assert.rejects(session.run(rank), /input 'input_ids' must have shape \[batch, seq\], got \[16\]/);
    await stillWorks();
  });

  test('missing and unknown inputs', async () => {
    const { token_type_ids: _, ...missing } = good;
    await assert.rejects(session.run(missing), /input 'token_type_ids' .* is missing/);
    await assert.rejects(session.run({ ...good, extra: new Tensor('float32', [1]) }), /no input named 'extra'/);
    await assert.rejects(session.run({ ...good, input_ids: 'text' }), /feed 'input_ids' must be a Tensor/);
    await assert.rejects(session.run(null), /feeds must be an object/);
    await stillWorks();
  });

  test('out-of-range token id fails in the node, not the process', async () => {
    const ids = new BigInt64Array(16).fill(1000000n);
    const err = await session.run({ ...good, input_ids: new Tensor('int64', ids, [2, 8]) }).catch((e) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /run failed: node '.*' \(Gather\) failed/);
    await stillWorks();
  });

  test('released session', async () => {
    const s = await InferenceSession.create(join(dir, 'model.onnx'));
    await s.release();
    await assert.rejects(s.run(good), /the session has been released/);
    await s.release();
    await stillWorks();
  });
});

describe('large initializers stay in the caller\'s buffer', () => {
  test('splitWeights moves them out and the rest of the model is unchanged', () => {
    const bytes = new Uint8Array(readFileSync(join(fixturesDir, 'resnet_ts', 'model.onnx')));
    const split = splitWeights(bytes);
    assert.notEqual(split, null);
    assert.ok(split.skeleton.length < bytes.length / 10, `skeleton ${split.skeleton.length} of ${bytes.length} bytes`);
    // Every external data entry names this load's location and a range inside the bytes.
    const text = new TextDecoder('latin1').decode(split.skeleton);
    const offsets = [...text.matchAll(/offset\x12.([0-9]+)/gs)].map((m) => Number(m[1]));
    const lengths = [...text.matchAll(/length\x12.([0-9]+)/gs)].map((m) => Number(m[1]));
    assert.ok(offsets.length > 0 && offsets.length === lengths.length);
    assert.equal([...text.matchAll(new RegExp(split.location, 'g'))].length, offsets.length);
    offsets.forEach((o, i) => assert.ok(o + lengths[i] <= bytes.length));
  });

  test('bytes that are not a model are left alone', () => {
    assert.equal(splitWeights(new Uint8Array([0xff, 0xff, 0xff])), null);
    assert.equal(splitWeights(new Uint8Array(0)), null);
    // A model without initializers of at least 1 KiB: nothing to move.
    assert.equal(splitWeights(new Uint8Array(readFileSync(join(localFixtures, 'identity_all_types.onnx')))), null);
  });

  test('weights outside the buffer are an error, not a crash', async () => {
    const bytes = new Uint8Array(readFileSync(join(fixturesDir, 'resnet_ts', 'model.onnx')));
    const split = splitWeights(bytes);
    const wasm = await initWasm();
    assert.throws(
      () => wasm.KilnSession.withWeights(split.skeleton, bytes.subarray(0, 1000), split.location),
      /outside the model's 1000 bytes/,
    );
    // The engine is still usable.
    const s = wasm.KilnSession.withWeights(split.skeleton, bytes, split.location);
    assert.ok(s.inputMetadata().length > 0);
    s.free();
  });

  test('a model loaded from a subarray reads its weights at the right offsets', async () => {
    const dir = join(fixturesDir, 'resnet_ts');
    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
    const model = readFileSync(join(dir, 'model.onnx'));
    const padded = new Uint8Array(model.length + 13);
    padded.set(model, 7);
    const session = await InferenceSession.create(padded.subarray(7, 7 + model.length));
    const ds = meta.datasets[0].name;
    const out = await session.run(feedsFor(dir, meta, ds));
    meta.outputs.forEach((o, k) => {
      const problem = compareTensor(out[o.name], readNpy(join(dir, ds, `output_${k}.npy`)));
      assert.equal(problem, null, `output '${o.name}': ${problem}`);
    });
    await session.release();
  });
});

describe('loading options', () => {
  test('create(buffer, byteOffset, byteLength) reads a slice', async () => {
    const model = readFileSync(join(localFixtures, 'sequence_output.onnx'));
    const padded = new Uint8Array(model.length + 7);
    padded.set(model, 3);
    const s = await InferenceSession.create(padded.buffer, 3, model.length);
    assert.deepEqual([...s.inputNames], ['a', 'b']);
  });

  test('file: URL in Node', async () => {
    const s = await InferenceSession.create(pathToFileURL(join(localFixtures, 'sequence_output.onnx')));
    assert.deepEqual([...s.outputNames], ['seq', 'total']);
  });

  test('initWasm accepts explicit bytes and env.wasm is honoured', async () => {
    const mod = await initWasm(readFileSync(join(here, '..', 'dist', 'kiln_wasm_bg.wasm')));
    assert.equal(typeof mod.version(), 'string');
    assert.equal(env.wasm.numThreads, 1);
  });

  test('the relaxed-SIMD probe agrees with what this Node offers', () => {
    // V8 has relaxed SIMD by default from Node 22; Node 20 only behind the flag.
    const major = Number(process.versions.node.split('.')[0]);
    const flagged = process.execArgv.includes('--experimental-wasm-relaxed-simd');
    if (major >= 22 || flagged) assert.equal(relaxedSimdSupported(), true);
    else if (major <= 20) assert.equal(relaxedSimdSupported(), false);
  });

  test('the relaxed-SIMD build is loaded where the engine supports it', async () => {
    await initWasm();
    const relaxed = process.env.KILN_WASM_RELAXED !== '0' && relaxedSimdSupported();
    assert.equal(wasmVariant(), relaxed ? 'relaxed-simd' : 'simd128');
  });

  test('env.wasm.relaxedSimd picks the build in a fresh process', () => {
    const index = pathToFileURL(join(here, '..', 'src', 'index.js')).href;
    const load = (value) => execFileSync(process.execPath, [...process.execArgv, '--input-type=module', '--eval', `
      const m = await import(${JSON.stringify(index)});
      m.env.wasm.relaxedSimd = ${value};
      try {
        await m.initWasm();
        console.log(m.wasmVariant());
      } catch (e) {
        console.log('error: ' + e.message);
        await m.initWasm(${JSON.stringify(join(here, '..', 'dist', 'kiln_wasm_bg.wasm'))});
        console.log('then ' + m.wasmVariant());
      }`], { encoding: 'utf8' }).trim();
    assert.equal(load('false'), 'simd128');
    assert.equal(load('undefined'), relaxedSimdSupported() ? 'relaxed-simd' : 'simd128');
    // Asking for the relaxed build where it cannot run is an error, and a later load still works.
    assert.equal(load('true'), relaxedSimdSupported() ? 'relaxed-simd'
      : 'error: env.wasm.relaxedSimd is true but this JavaScript engine has no WebAssembly relaxed SIMD\nthen caller');
    assert.match(load('"yes"'), /^error: env\.wasm\.relaxedSimd must be true, false or undefined\nthen caller$/);
  });

  test('model cache directory', async () => {
    const http = await import('node:http');
    const body = readFileSync(join(localFixtures, 'sequence_output.onnx'));
    let hits = 0;
    const server = http.createServer((req, res) => {
      hits++;
      if (req.url === '/m.onnx') res.end(body);
      else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${server.address().port}/m.onnx`;
    const cacheDir = mkdtempSync(join(tmpdir(), 'kiln-cache-'));
    try {
      await InferenceSession.create(url, { cache: cacheDir });
      await InferenceSession.create(url, { cache: cacheDir });
      assert.equal(hits, 1);
      await assert.rejects(
        InferenceSession.create(url.replace('m.onnx', 'nope.onnx')),
        /cannot fetch the model from '.*nope\.onnx': HTTP 404/,
      );
      await clearModelCache(cacheDir, url);
      await InferenceSession.create(url, { cache: cacheDir });
      assert.equal(hits, 3);
    } finally {
      server.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});

describe('worker helper', () => {
  test('createWorkerSession runs a fixture off the main thread', async () => {
    const dir = join(fixturesDir, 'lstm_tagger_ts');
    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
    const s = await createWorkerSession(join(dir, 'model.onnx'));
    try {
      assert.deepEqual([...s.inputNames], meta.inputs.map((i) => i.name));
      const out = await s.run(feedsFor(dir, meta, 'test_data_set_0'));
      meta.outputs.forEach((o, k) => {
        const problem = compareTensor(out[o.name], readNpy(join(dir, 'test_data_set_0', `output_${k}.npy`)));
        assert.equal(problem, null, `output '${o.name}': ${problem}`);
      });
      await assert.rejects(s.run({}), /is missing/);
    } finally {
      await s.release();
    }
    await assert.rejects(s.run({}), /the session has been released/);
    await assert.rejects(createWorkerSession(new Uint8Array([1, 2, 3])), /cannot load the model: not a valid ONNX model/);
  });
});
