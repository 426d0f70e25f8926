// Tensor: a typed array (or string[]) with a type name and dims, shaped like onnxruntime-web's.

const ARRAY_OF_TYPE = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
  string: Array,
  // 8/4/2-bit types: one element per byte (the bits, or the values for int4/int2).
  float8_e4m3fn: Uint8Array,
  float8_e4m3fnuz: Uint8Array,
  float8_e5m2: Uint8Array,
  float8_e5m2fnuz: Uint8Array,
  float8_e8m0fnu: Uint8Array,
  float4_e2m1fn: Uint8Array,
  uint4: Uint8Array,
  int4: Int8Array,
  uint2: Uint8Array,
  int2: Int8Array,
};

/** Tensor type names Kiln accepts (onnxruntime-web's, plus bfloat16). */
export const TENSOR_TYPES = Object.freeze(Object.keys(ARRAY_OF_TYPE));

function typeOfArray(data) {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Uint8Array || data instanceof Uint8ClampedArray) return 'uint8';
  if (data instanceof Uint16Array) return 'uint16';
  if (data instanceof Uint32Array) return 'uint32';
  if (data instanceof BigUint64Array) return 'uint64';
  if (typeof globalThis.Float16Array === 'function' && data instanceof globalThis.Float16Array) return 'float16';
  if (Array.isArray(data)) {
    if (data.length > 0 && typeof data[0] === 'string') return 'string';
    if (data.length > 0 && typeof data[0] === 'boolean') return 'bool';
    if (data.length > 0 && typeof data[0] === 'bigint') return 'int64';
    return 'float32';
  }
  return undefined;
}

function describe(data) {
  if (data === null) return 'null';
  if (Array.isArray(data)) return 'an array';
  if (ArrayBuffer.isView(data)) return `a ${data.constructor.name}`;
  return typeof data;
}

function toBigInts(data, type, Ctor) {
  const out = new Ctor(data.length);
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (typeof x === 'bigint') out[i] = x;
    else if (typeof x === 'number' && Number.isInteger(x)) out[i] = BigInt(x);
    else throw new TypeError(`Tensor: ${type} data item ${i} is not an integer (${String(x)})`);
  }
  return out;
}

/** Converts user data to the canonical container for `type`; throws a TypeError naming the problem. */
function normalize(type, data) {
  const Ctor = ARRAY_OF_TYPE[type];
  if (type === 'string') {
    if (!Array.isArray(data)) throw new TypeError(`Tensor: string data must be an array of strings, got ${describe(data)}`);
    for (let i = 0; i < data.length; i++) {
      if (typeof data[i] !== 'string') throw new TypeError(`Tensor: string data item ${i} is not a string`);
    }
    return data;
  }
  if (type === 'float16' && typeof globalThis.Float16Array === 'function' && data instanceof globalThis.Float16Array) {
    return data;
  }
  if (data instanceof Ctor) return data;
  if (type === 'bool') {
    if (Array.isArray(data)) return Uint8Array.from(data, (b) => (b ? 1 : 0));
    throw new TypeError(`Tensor: bool data must be a Uint8Array or boolean[], got ${describe(data)}`);
  }
  if (Array.isArray(data)) {
    if (type === 'int64' || type === 'uint64') return toBigInts(data, type, Ctor);
    if (type === 'float16' || type === 'bfloat16' || type.startsWith('float8') || type.startsWith('float4')) {
      throw new TypeError(`Tensor: ${type} data must be a ${Ctor.name} of the bits, got an array`);
    }
    for (let i = 0; i < data.length; i++) {
      if (typeof data[i] !== 'number') throw new TypeError(`Tensor: ${type} data item ${i} is not a number`);
    }
    return Ctor.from(data);
  }
  if (type === 'uint8' && data instanceof Uint8ClampedArray) return new Uint8Array(data.buffer, data.byteOffset, data.length);
  throw new TypeError(`Tensor: ${type} data must be a ${Ctor.name}, got ${describe(data)}`);
}

function checkDims(dims) {
  if (!Array.isArray(dims)) throw new TypeError('Tensor: dims must be an array of non-negative integers');
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new TypeError(`Tensor: dims must be non-negative integers, got [${dims.join(', ')}]`);
    }
  }
  return dims.slice();
}

export class Tensor {
  /**
   * new Tensor(type, data, dims?) or new Tensor(data, dims?): `type` is an onnxruntime-web type
   * name ('float32', 'int64', 'bool', 'string', ...); `dims` defaults to [data.length].
   */
  constructor(a, b, c) {
    let type, data, dims;
    if (typeof a === 'string') {
      type = a;
      data = b;
      dims = c;
    } else {
      data = a;
      dims = b;
      type = typeOfArray(data);
      if (type === undefined) throw new TypeError(`Tensor: cannot infer a tensor type from ${describe(data)}`);
    }
    if (!Object.prototype.hasOwnProperty.call(ARRAY_OF_TYPE, type)) {
      throw new TypeError(`Tensor: unsupported tensor type '${type}' (supported: ${TENSOR_TYPES.join(', ')})`);
    }
    if (data === undefined || data === null) throw new TypeError('Tensor: data is missing');
    data = normalize(type, data);
    dims = dims === undefined ? [data.length] : checkDims(dims);
    const size = dims.reduce((n, d) => n * d, 1);
    if (size !== data.length) {
      throw new RangeError(`Tensor: dims [${dims.join(', ')}] need ${size} elements but data has ${data.length}`);
    }
    this.type = type;
    this.data = data;
    this.dims = Object.freeze(dims);
    this.size = size;
    this.location = 'cpu';
  }

  /** The data (a typed array or string[]). Present for onnxruntime-web compatibility. */
  async getData() {
    return this.data;
  }

  /** Same data, new dims with the same element count. */
  reshape(dims) {
    return new Tensor(this.type, this.data, dims);
  }

  /** Drops the reference to the data. */
  dispose() {
    this.data = undefined;
  }
}

/** The `{ type, data, dims }` form the wasm bindings read. */
export function toFeed(name, t) {
  if (t === null || typeof t !== 'object' || typeof t.type !== 'string' || t.data === undefined || !Array.isArray(t.dims)) {
    throw new TypeError(`feed '${name}' must be a Tensor (got ${describe(t)})`);
  }
  let data = t.data;
  if (typeof globalThis.Float16Array === 'function' && data instanceof globalThis.Float16Array) {
    data = new Uint16Array(data.buffer, data.byteOffset, data.length);
  }
  return { name, type: t.type, data, dims: t.dims };
}
