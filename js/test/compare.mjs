// Output comparison shared by the Node and browser tests: floats within rtol/atol, others exact.

export const RTOL = 1e-3;
export const ATOL = 1e-4;

function f16ToF32(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Returns null when `got` matches `want` ({type, data, dims} each), else a message. */
export function compareTensor(got, want, rtol = RTOL, atol = ATOL) {
  if (got === null || typeof got !== 'object' || got.data === undefined) return `expected a tensor, got ${typeof got}`;
  if (got.type !== want.type) return `type ${got.type}, expected ${want.type}`;
  if (got.dims.length !== want.dims.length || got.dims.some((d, i) => d !== want.dims[i])) {
    return `dims [${got.dims}], expected [${want.dims}]`;
  }
  if (got.data.length !== want.data.length) return `${got.data.length} elements, expected ${want.data.length}`;
  const isFloat = ['float32', 'float64', 'float16'].includes(want.type);
  let bad = 0;
  let first = null;
  for (let i = 0; i < want.data.length; i++) {
    let a = got.data[i];
    let b = want.data[i];
    let ok;
    if (isFloat) {
      if (want.type === 'float16') {
        a = f16ToF32(a);
        b = f16ToF32(b);
      }
      ok = (Number.isNaN(a) && Number.isNaN(b)) || a === b || Math.abs(a - b) <= atol + rtol * Math.abs(b);
    } else {
      ok = a === b;
    }
    if (!ok) {
      bad++;
      if (first === null) first = `element ${i}: ${a}, expected ${b}`;
    }
  }
  return bad === 0 ? null : `${bad} of ${want.data.length} elements differ; first at ${first}`;
}
