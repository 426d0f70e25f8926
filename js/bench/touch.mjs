// What first-touching fresh WebAssembly memory costs on this machine: grows a memory by SIZE MiB
// (default 256) and writes one byte per 4 KiB page, twice. The first pass pays the page faults
// that a session's first creation pays for every byte of weights, packed copies and buffers it
// places in memory that was never used before.
//
// node touch.mjs [SIZE_MIB]
import { performance } from 'node:perf_hooks';

const mib = Number(process.argv[2] ?? 256);
const mem = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
let t = performance.now();
mem.grow(mib * 16);
const grow = performance.now() - t;
const u = new Uint8Array(mem.buffer);
const pass = () => {
  const t0 = performance.now();
  for (let i = 65536; i < u.length; i += 4096) u[i] += 1;
  return performance.now() - t0;
};
const first = pass(), second = pass();
console.log(`grow ${mib} MiB: ${grow.toFixed(1)} ms; first touch ${first.toFixed(0)} ms (${(first / mib).toFixed(2)} ms/MiB); second ${second.toFixed(1)} ms`);
