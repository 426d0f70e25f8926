// The worker side of createWorkerSession: owns sessions and runs them off the main thread.
// Works as a browser module worker and as a Node worker_threads worker.

import { InferenceSession, Tensor, env, initWasm } from './index.js';

const sessions = new Map();
let nextId = 1;

function encode(value, transfer) {
  if (value instanceof Tensor) {
    if (ArrayBuffer.isView(value.data)) transfer.push(value.data.buffer);
    return { $kilnTensor: true, type: value.type, data: value.data, dims: [...value.dims] };
  }
  if (Array.isArray(value)) return value.map((v) => encode(v, transfer));
  if (value !== null && typeof value === 'object') {
    const o = {};
    for (const k of Object.keys(value)) o[k] = encode(value[k], transfer);
    return o;
  }
  return value;
}

async function handle(msg) {
  const transfer = [];
  switch (msg.op) {
    case 'create': {
      // The worker loads the build the main thread's env.wasm.relaxedSimd asks for.
      if (msg.relaxedSimd !== undefined) env.wasm.relaxedSimd = msg.relaxedSimd;
      await initWasm(msg.wasm);
      const s = await InferenceSession.create(msg.source, msg.options ?? {});
      const id = nextId++;
      sessions.set(id, s);
      return [{ id, inputNames: [...s.inputNames], outputNames: [...s.outputNames], inputMetadata: s.inputMetadata, outputMetadata: s.outputMetadata }, transfer];
    }
    case 'run': {
      const s = sessions.get(msg.id);
      if (!s) throw new Error('the session has been released');
      const feeds = {};
      for (const [name, t] of Object.entries(msg.feeds)) {
        feeds[name] = t !== null && typeof t === 'object' && t.$kilnTensor ? new Tensor(t.type, t.data, t.dims) : t;
      }
      const out = await s.run(feeds, msg.fetches ?? undefined);
      return [encode(out, transfer), transfer];
    }
    case 'release': {
      const s = sessions.get(msg.id);
      sessions.delete(msg.id);
      if (s) await s.release();
      return [null, transfer];
    }
    default:
      throw new Error(`unknown worker request '${msg.op}'`);
  }
}

async function listen() {
  let post;
  let onMessage;
  if (typeof WorkerGlobalScope !== 'undefined' && typeof self !== 'undefined') {
    post = (m, t) => self.postMessage(m, t);
    onMessage = (fn) => self.addEventListener('message', (e) => fn(e.data));
  } else {
    const { parentPort } = await import(/* webpackIgnore: true */ /* @vite-ignore */ 'node:worker_threads');
    if (!parentPort) return;
    post = (m, t) => parentPort.postMessage(m, t);
    onMessage = (fn) => parentPort.on('message', fn);
  }
  onMessage(async (msg) => {
    try {
      const [result, transfer] = await handle(msg);
      post({ seq: msg.seq, ok: true, result }, transfer);
    } catch (e) {
      post({ seq: msg.seq, ok: false, error: e instanceof Error ? e.message : String(e) });
    }
  });
}

listen();
