// Loads the Kiln WebAssembly module once, from the source the caller names or from the package.

import initBindings, * as bindings from '../dist/kiln_wasm.js';

export const isNode =
  typeof process !== 'undefined' && process.versions != null && typeof process.versions.node === 'string';

/**
 * Global settings, as in onnxruntime-web's `env`. `env.wasm.wasmBinary` (bytes or a compiled
 * WebAssembly.Module) or `env.wasm.wasmPaths` (URL or path of kiln_wasm_bg.wasm) say where the
 * module comes from; when neither is set it is read from this package's dist/ folder.
 */
export const env = {
  wasm: {
    wasmBinary: undefined,
    wasmPaths: undefined,
    numThreads: 1,
    simd: true,
  },
  logLevel: 'warning',
};

let loading = null;

function nodeImport(name) {
  return import(/* webpackIgnore: true */ /* @vite-ignore */ name);
}

function isBytes(x) {
  return x instanceof ArrayBuffer || ArrayBuffer.isView(x) ||
    (typeof SharedArrayBuffer !== 'undefined' && x instanceof SharedArrayBuffer);
}

/** Reads bytes from a URL (http/https/data/blob/file) or, in Node, a file path. */
export async function readSource(src, what) {
  const asString = src instanceof URL ? src.href : String(src);
  if (isNode) {
    const isUrl = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(asString) || asString.startsWith('data:') || asString.startsWith('blob:');
    if (!isUrl || asString.startsWith('file:')) {
      const fs = await nodeImport('node:fs/promises');
      const path = asString.startsWith('file:') ? (await nodeImport('node:url')).fileURLToPath(asString) : asString;
      try {
        return new Uint8Array(await fs.readFile(path));
      } catch (e) {
        throw new Error(`cannot read ${what} '${path}': ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
      }
    }
  }
  let res;
  try {
    res = await fetch(asString);
  } catch (e) {
    throw new Error(`cannot fetch ${what} from '${asString}': ${e.message}`);
  }
  if (!res.ok) throw new Error(`cannot fetch ${what} from '${asString}': HTTP ${res.status} ${res.statusText}`.trimEnd());
  return new Uint8Array(await res.arrayBuffer());
}

async function resolveWasm(source) {
  if (source instanceof WebAssembly.Module || isBytes(source)) return source;
  if (source !== undefined && source !== null) {
    if (typeof source === 'string' || source instanceof URL) return readSource(source, 'the Kiln wasm module');
    throw new TypeError('the wasm option must be a URL, a path, bytes or a WebAssembly.Module');
  }
  if (env.wasm.wasmBinary !== undefined) return resolveWasm(env.wasm.wasmBinary);
  if (env.wasm.wasmPaths !== undefined) return resolveWasm(env.wasm.wasmPaths);
  const own = new URL('../dist/kiln_wasm_bg.wasm', import.meta.url);
  if (isNode) return readSource(own, 'the Kiln wasm module');
  return own;
}

/**
 * Instantiates the wasm module (once). `source`: URL, path (Node), bytes or WebAssembly.Module;
 * default: `env.wasm`, then the package's own file. A failed load can be retried.
 */
export function initWasm(source) {
  if (loading === null) {
    loading = (async () => {
      const resolved = await resolveWasm(source);
      let wasmSource = resolved;
      if (resolved instanceof URL) wasmSource = await readSource(resolved, 'the Kiln wasm module');
      try {
        await initBindings({ module_or_path: wasmSource });
      } catch (e) {
        throw new Error(`cannot instantiate the Kiln wasm module: ${e.message}`);
      }
      return bindings;
    })();
    loading.catch(() => {
      loading = null;
    });
  }
  return loading;
}
