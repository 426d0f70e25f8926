// kiln-ml: run ONNX models in browsers and Node.js with an onnxruntime-web-shaped API.

import { Tensor, toFeed, TENSOR_TYPES } from './tensor.js';
import { env, initWasm, isNode, readSource, relaxedSimdSupported, wasmVariant } from './wasm.js';
import { readModelCached, clearModelCache } from './cache.js';
import { splitWeights } from './weights.js';

export { Tensor, TENSOR_TYPES, env, initWasm, clearModelCache, relaxedSimdSupported, wasmVariant };

function makeTensor(type, data, dims) {
  return new Tensor(type, data, dims);
}

function isBytes(x) {
  return x instanceof ArrayBuffer || ArrayBuffer.isView(x) ||
    (typeof SharedArrayBuffer !== 'undefined' && x instanceof SharedArrayBuffer);
}

function asUint8(x, byteOffset, byteLength) {
  if (ArrayBuffer.isView(x)) {
    const base = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    return byteOffset === undefined ? base : base.subarray(byteOffset, byteLength === undefined ? undefined : byteOffset + byteLength);
  }
  return new Uint8Array(x, byteOffset ?? 0, byteLength);
}

function message(e) {
  if (e instanceof Error) return e.message;
  return String(e);
}

function isTrap(e) {
  return typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError;
}

async function modelBytes(source, byteOffset, byteLength, options) {
  if (isBytes(source)) return asUint8(source, byteOffset, byteLength);
  if (typeof source === 'string' || source instanceof URL) {
    if (!isNode && typeof source === 'string' && source.length === 0) throw new TypeError('the model URL is empty');
    return options.cache ? readModelCached(source, options.cache) : readSource(source, 'the model');
  }
  if (source && typeof source.arrayBuffer === 'function') {
    return new Uint8Array(await source.arrayBuffer());
  }
  throw new TypeError(
    isNode
      ? 'InferenceSession.create needs a file path, a URL, or the model bytes (Uint8Array/ArrayBuffer)'
      : 'InferenceSession.create needs a URL or the model bytes (Uint8Array/ArrayBuffer)',
  );
}

export class InferenceSession {
  #inner;
  #broken = null;
  #inputMetadata;
  #outputMetadata;

  constructor(inner) {
    this.#inner = inner;
    this.#inputMetadata = Object.freeze(inner.inputMetadata().map(Object.freeze));
    this.#outputMetadata = Object.freeze(inner.outputMetadata().map(Object.freeze));
    this.inputNames = Object.freeze(this.#inputMetadata.map((m) => m.name));
    this.outputNames = Object.freeze(this.#outputMetadata.map((m) => m.name));
  }

  /**
   * Loads a model. `source`: the model bytes (Uint8Array/ArrayBuffer/Blob), a URL, or in Node a
   * file path. Also `create(buffer, byteOffset, byteLength?, options?)` as in onnxruntime-web.
   * Options: `wasm` (URL, path, bytes or WebAssembly.Module of kiln_wasm_bg.wasm), `cache`
   * (browser: true or a Cache API name; Node: a directory) for models loaded from a URL.
   */
  static async create(source, a, b, c) {
    let byteOffset, byteLength, options;
    if (typeof a === 'number') {
      byteOffset = a;
      if (typeof b === 'number') {
        byteLength = b;
        options = c;
      } else {
        options = b;
      }
    } else {
      options = a;
    }
    options = options ?? {};
    if (typeof options !== 'object') throw new TypeError('InferenceSession.create: options must be an object');
    const [wasm, bytes] = await Promise.all([initWasm(options.wasm), modelBytes(source, byteOffset, byteLength, options)]);
    let inner;
    try {
      // Large initializers stay in `bytes` and are copied into wasm memory one tensor at a time.
      const split = splitWeights(bytes);
      inner = split === null ? new wasm.KilnSession(bytes) : wasm.KilnSession.withWeights(split.skeleton, bytes, split.location);
    } catch (e) {
      throw new Error(`cannot load the model: ${message(e)}`, { cause: e });
    }
    return new InferenceSession(inner);
  }

  /** `[{ name, isTensor, type, shape }]`: shape entries are numbers or symbolic names. */
  get inputMetadata() {
    return this.#inputMetadata;
  }

  get outputMetadata() {
    return this.#outputMetadata;
  }

  #check() {
    if (this.#inner === null) throw new Error('the session has been released');
    if (this.#broken !== null) throw new Error(`the session can no longer be used: ${this.#broken}`);
  }

  /**
   * Runs the model. `feeds`: `{ [inputName]: Tensor }`. `fetches` (optional): output names, or an
   * object whose keys are output names. Resolves to `{ [outputName]: Tensor | plain value }`;
   * non-tensor outputs (sequences, maps) are arrays and objects.
   */
  async run(feeds, fetches, _options) {
    this.#check();
    if (feeds === null || typeof feeds !== 'object' || Array.isArray(feeds) || feeds instanceof Tensor) {
      throw new TypeError("run: feeds must be an object mapping input names to Tensors");
    }
    let wanted = null;
    if (Array.isArray(fetches)) wanted = fetches;
    else if (fetches !== null && typeof fetches === 'object') {
      const keys = Object.keys(fetches);
      const runOptionKeys = ['logSeverityLevel', 'logVerbosityLevel', 'terminate', 'tag', 'extra'];
      if (!keys.some((k) => runOptionKeys.includes(k) && !this.outputNames.includes(k))) wanted = keys;
    }
    if (wanted !== null) {
      for (const n of wanted) {
        if (typeof n !== 'string' || !this.outputNames.includes(n)) {
          throw new Error(`run: the model has no output named '${n}' (outputs: ${this.outputNames.join(', ')})`);
        }
      }
    }
    const list = Object.keys(feeds).map((name) => toFeed(name, feeds[name]));
    let pairs;
    try {
      pairs = this.#inner.run(list, makeTensor);
    } catch (e) {
      if (isTrap(e)) {
        this.#broken = `internal error in the Kiln engine (${message(e)})`;
        throw new Error(`run failed: ${this.#broken}`, { cause: e });
      }
      throw new Error(`run failed: ${message(e)}`, { cause: e });
    }
    const out = {};
    for (const [name, value] of pairs) {
      if (wanted === null || wanted.includes(name)) out[name] = value;
    }
    return out;
  }

  /** Frees the model; later `run` calls reject with "the session has been released". */
  async release() {
    if (this.#inner === null) return;
    const inner = this.#inner;
    this.#inner = null;
    try {
      inner.free();
    } catch {
      // A session whose engine call trapped may not be freeable; its memory stays allocated.
    }
  }

  /** Present for onnxruntime-web compatibility; profiling is not collected. */
  startProfiling() {}
  endProfiling() {}
}
