// createWorkerSession: an InferenceSession whose model lives in a Web Worker (browsers) or a
// worker_threads Worker (Node), so inference never blocks the calling thread.

import { Tensor } from './tensor.js';
import { env, isNode } from './wasm.js';

export { Tensor };

function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value !== null && typeof value === 'object') {
    if (value.$kilnTensor) return new Tensor(value.type, value.data, value.dims);
    const o = {};
    for (const k of Object.keys(value)) o[k] = decode(value[k]);
    return o;
  }
  return value;
}

async function spawn(workerUrl) {
  const url = workerUrl ?? new URL('./worker.js', import.meta.url);
  if (isNode) {
    const { Worker } = await import(/* webpackIgnore: true */ /* @vite-ignore */ 'node:worker_threads');
    const w = new Worker(url);
    return {
      post: (m, t) => w.postMessage(m, t),
      onMessage: (fn) => w.on('message', fn),
      onError: (fn) => w.on('error', fn),
      terminate: () => w.terminate(),
    };
  }
  const w = new Worker(url, { type: 'module' });
  return {
    post: (m, t) => w.postMessage(m, t),
    onMessage: (fn) => w.addEventListener('message', (e) => fn(e.data)),
    onError: (fn) => w.addEventListener('error', (e) => fn(new Error(e.message || 'the Kiln worker failed to start'))),
    terminate: () => w.terminate(),
  };
}

function cloneableSource(source) {
  if (source instanceof URL) return source.href;
  if (typeof source === 'string' && !isNode && typeof location !== 'undefined') return new URL(source, location.href).href;
  return source;
}

export class WorkerSession {
  #worker;
  #pending = new Map();
  #seq = 0;
  #id = null;
  #failed = null;

  constructor(worker) {
    this.#worker = worker;
    worker.onMessage((msg) => {
      const p = this.#pending.get(msg.seq);
      if (!p) return;
      this.#pending.delete(msg.seq);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(msg.error));
    });
    worker.onError((e) => {
      this.#failed = e instanceof Error ? e.message : String(e);
      for (const p of this.#pending.values()) p.reject(new Error(`the Kiln worker failed: ${this.#failed}`));
      this.#pending.clear();
    });
  }

  #call(msg, transfer = []) {
    if (this.#failed !== null) return Promise.reject(new Error(`the Kiln worker failed: ${this.#failed}`));
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject });
      this.#worker.post({ ...msg, seq }, transfer);
    });
  }

  async _create(source, options) {
    const { wasm, worker: _w, workerUrl: _u, ...rest } = options;
    const info = await this.#call({ op: 'create', source: cloneableSource(source), wasm: wasm instanceof URL ? wasm.href : wasm, relaxedSimd: env.wasm.relaxedSimd, options: rest });
    this.#id = info.id;
    this.inputNames = Object.freeze(info.inputNames);
    this.outputNames = Object.freeze(info.outputNames);
    this.inputMetadata = Object.freeze(info.inputMetadata);
    this.outputMetadata = Object.freeze(info.outputMetadata);
  }

  /** As InferenceSession.run; the feeds' data is copied to the worker. */
  async run(feeds, fetches) {
    if (this.#id === null) throw new Error('the session has been released');
    if (feeds === null || typeof feeds !== 'object') throw new TypeError('run: feeds must be an object mapping input names to Tensors');
    const plain = {};
    for (const [name, t] of Object.entries(feeds)) {
      plain[name] = t !== null && typeof t === 'object' && t.dims !== undefined ? { $kilnTensor: true, type: t.type, data: t.data, dims: [...t.dims] } : t;
    }
    const wanted = Array.isArray(fetches) ? [...fetches] : fetches && typeof fetches === 'object' ? Object.keys(fetches) : undefined;
    return decode(await this.#call({ op: 'run', id: this.#id, feeds: plain, fetches: wanted }));
  }

  /** Frees the model and stops the worker. */
  async release() {
    if (this.#id === null) return;
    const id = this.#id;
    this.#id = null;
    try {
      await this.#call({ op: 'release', id });
    } finally {
      this.#worker.terminate();
    }
  }
}

/**
 * Loads a model in a new worker. Options as InferenceSession.create, plus `workerUrl` (where
 * worker.js is served, default: next to this file).
 */
export async function createWorkerSession(source, options = {}) {
  const worker = await spawn(options.workerUrl);
  const session = new WorkerSession(worker);
  try {
    await session._create(source, options);
  } catch (e) {
    worker.terminate();
    throw e;
  }
  return session;
}
