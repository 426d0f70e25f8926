// Loads the Kiln WebAssembly module once, from the source the caller names or from the package.

import initBindings, * as bindings from '../dist/kiln_wasm.js';

export const isNode =
  typeof process !== 'undefined' && process.versions != null && typeof process.versions.node === 'string';

/**
 * Global settings, as in onnxruntime-web's `env`. `env.wasm.wasmBinary` (bytes or a compiled
 * WebAssembly.Module) or `env.wasm.wasmPaths` (URL or path of kiln_wasm_bg.wasm) say where the
 * module comes from; when neither is set it is read from this package's dist/ folder, which has
 * two builds: kiln_wasm_relaxed_bg.wasm (relaxed SIMD: fused multiply-adds in the matrix
 * products) where the engine supports it, kiln_wasm_bg.wasm otherwise. `env.wasm.relaxedSimd`:
 * undefined picks by support, false always loads kiln_wasm_bg.wasm (results then do not depend
 * on whether the CPU fuses), true requires the relaxed build.
 */
export const env = {
  wasm: {
    wasmBinary: undefined,
    wasmPaths: undefined,
    relaxedSimd: undefined,
    numThreads: 1,
    simd: true,
  },
  logLevel: 'warning',
};

let loading = null;
let variant = null;

// A module whose one function uses f32x4.relaxed_madd: it validates only where the engine
// implements relaxed SIMD.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type: (v128, v128, v128) -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x85, 0x02, 0x0b, // body
]);

/** Whether this JavaScript engine runs WebAssembly relaxed SIMD. */
export function relaxedSimdSupported() {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

/**
 * Which build of the module was instantiated: 'relaxed-simd' or 'simd128' (the package's own
 * files), 'caller' (bytes, a path or a module the caller passed), null before loading.
 */
export function wasmVariant() {
  return variant;
}

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
  if (source instanceof WebAssembly.Module || isBytes(source)) return { source, variant: 'caller' };
  if (source !== undefined && source !== null) {
    if (typeof source === 'string' || source instanceof URL) {
      return { source: await readSource(source, 'the Kiln wasm module'), variant: 'caller' };
    }
    throw new TypeError('the wasm option must be a URL, a path, bytes or a WebAssembly.Module');
  }
  if (env.wasm.wasmBinary !== undefined) return resolveWasm(env.wasm.wasmBinary);
  if (env.wasm.wasmPaths !== undefined) return resolveWasm(env.wasm.wasmPaths);
  const want = env.wasm.relaxedSimd;
  if (want !== undefined && typeof want !== 'boolean') throw new TypeError('env.wasm.relaxedSimd must be true, false or undefined');
  const supported = relaxedSimdSupported();
  if (want === true && !supported) throw new Error('env.wasm.relaxedSimd is true but this JavaScript engine has no WebAssembly relaxed SIMD');
  const relaxed = want ?? supported;
  // Two literal URLs, so that bundlers see and emit both files.
  const own = relaxed
    ? new URL('../dist/kiln_wasm_relaxed_bg.wasm', import.meta.url)
    : new URL('../dist/kiln_wasm_bg.wasm', import.meta.url);
  return { source: isNode ? await readSource(own, 'the Kiln wasm module') : own, variant: relaxed ? 'relaxed-simd' : 'simd128' };
}

/**
 * Instantiates the wasm module (once). `source`: URL, path (Node), bytes or WebAssembly.Module;
 * default: `env.wasm`, then the package's own file. A failed load can be retried.
 */
export function initWasm(source) {
  if (loading === null) {
    loading = (async () => {
      const resolved = await resolveWasm(source);
      let wasmSource = resolved.source;
      if (wasmSource instanceof URL) wasmSource = await readSource(wasmSource, 'the Kiln wasm module');
      try {
        await initBindings({ module_or_path: wasmSource });
      } catch (e) {
        throw new Error(`cannot instantiate the Kiln wasm module: ${e.message}`);
      }
      variant = resolved.variant;
      return bindings;
    })();
    loading.catch(() => {
      loading = null;
    });
  }
  return loading;
}
