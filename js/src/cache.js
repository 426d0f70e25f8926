// Optional model cache: the Cache API in browsers, a directory in Node. Keyed by the model's URL.

import { isNode, readSource } from './wasm.js';

const DEFAULT_CACHE_NAME = 'kiln-ml-models';

function nodeImport(name) {
  return import(/* webpackIgnore: true */ /* @vite-ignore */ name);
}

async function nodeCacheFile(dir, key) {
  const { createHash } = await nodeImport('node:crypto');
  const path = await nodeImport('node:path');
  return path.join(dir, createHash('sha256').update(key).digest('hex') + '.onnx');
}

/**
 * Reads a model from `url` through the cache described by `cache`: in browsers `true` or a cache
 * name (Cache API); in Node a directory path or `{ dir }`. Without a cache it just reads the URL.
 */
export async function readModelCached(url, cache) {
  const key = url instanceof URL ? url.href : String(url);
  if (!cache) return readSource(url, 'the model');
  if (isNode) {
    const dir = typeof cache === 'string' ? cache : cache.dir;
    if (typeof dir !== 'string') throw new TypeError("in Node the cache option must be a directory path or { dir }");
    const fs = await nodeImport('node:fs/promises');
    const file = await nodeCacheFile(dir, key);
    try {
      return new Uint8Array(await fs.readFile(file));
    } catch {
      const bytes = await readSource(url, 'the model');
      await fs.mkdir(dir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      await fs.writeFile(tmp, bytes);
      await fs.rename(tmp, file);
      return bytes;
    }
  }
  if (typeof caches === 'undefined') return readSource(url, 'the model');
  const name = typeof cache === 'string' ? cache : (cache.name ?? DEFAULT_CACHE_NAME);
  const store = await caches.open(name);
  const hit = await store.match(key);
  if (hit) return new Uint8Array(await hit.arrayBuffer());
  const bytes = await readSource(url, 'the model');
  await store.put(key, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
  return bytes;
}

/** Removes a cached model (or, with no url, the whole browser cache / Node cache directory). */
export async function clearModelCache(cache, url) {
  if (isNode) {
    const dir = typeof cache === 'string' ? cache : cache?.dir;
    if (typeof dir !== 'string') return;
    const fs = await nodeImport('node:fs/promises');
    if (url === undefined) await fs.rm(dir, { recursive: true, force: true });
    else await fs.rm(await nodeCacheFile(dir, url instanceof URL ? url.href : String(url)), { force: true });
    return;
  }
  if (typeof caches === 'undefined') return;
  const name = typeof cache === 'string' ? cache : (cache?.name ?? DEFAULT_CACHE_NAME);
  if (url === undefined) await caches.delete(name);
  else await (await caches.open(name)).delete(url instanceof URL ? url.href : String(url));
}
