// A small .npy reader (format versions 1-3, little-endian numeric, bool and unicode dtypes, C order).

const DTYPES = {
  '<f4': ['float32', Float32Array, 4],
  '<f8': ['float64', Float64Array, 8],
  '<f2': ['float16', Uint16Array, 2],
  '|i1': ['int8', Int8Array, 1],
  '<i2': ['int16', Int16Array, 2],
  '<i4': ['int32', Int32Array, 4],
  '<i8': ['int64', BigInt64Array, 8],
  '|u1': ['uint8', Uint8Array, 1],
  '<u2': ['uint16', Uint16Array, 2],
  '<u4': ['uint32', Uint32Array, 4],
  '<u8': ['uint64', BigUint64Array, 8],
  '|b1': ['bool', Uint8Array, 1],
};

/** Parses .npy bytes into { type, data, dims } with onnxruntime-web's type names. */
export function parseNpy(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const magic = String.fromCharCode(...u8.subarray(0, 6));
  if (magic !== '\x93NUMPY') throw new Error('not a .npy file');
  const major = u8[6];
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(u8.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '';
  const dims = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (fortran) throw new Error('Fortran-order .npy is not supported');
  const count = dims.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  const unicode = /^<U(\d+)$/.exec(descr ?? '');
  if (unicode) {
    const width = Number(unicode[1]);
    const data = [];
    for (let i = 0; i < count; i++) {
      let s = '';
      for (let j = 0; j < width; j++) {
        const cp = dv.getUint32(offset + (i * width + j) * 4, true);
        if (cp === 0) break;
        s += String.fromCodePoint(cp);
      }
      data.push(s);
    }
    return { type: 'string', data, dims };
  }
  const spec = DTYPES[descr];
  if (!spec) throw new Error(`unsupported .npy dtype ${descr}`);
  const [type, Ctor, size] = spec;
  const copy = new Uint8Array(count * size);
  copy.set(u8.subarray(offset, offset + count * size));
  return { type, data: new Ctor(copy.buffer, 0, count), dims };
}
