// Moves the large initializers out of a serialized ONNX model before it goes into wasm memory.
//
// `splitWeights(bytes)` rewrites the main graph's initializers whose `raw_data` is at least
// MIN_BYTES long as external data (location: a name made for this load, offset and length into
// `bytes`), and returns the much smaller rewritten model. The engine then copies each tensor
// from `bytes` when it converts it, instead of the whole model being copied into wasm memory
// first and every initializer copied again from there.
//
// Only well-formed tensors of fixed-size types are moved (exactly one raw_data field whose size
// matches the dims, no external data already); anything else is left in place, so the engine
// sees and reports it exactly as before. Returns null when nothing was moved or the bytes do not
// parse as a model (the caller then passes the original bytes).

const MIN_BYTES = 1024;

// ModelProto.graph, GraphProto.initializer, TensorProto fields.
const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const T_DIMS = 1;
const T_DATA_TYPE = 2;
const T_RAW_DATA = 9;
const T_EXTERNAL_DATA = 13;
const T_DATA_LOCATION = 14;

// TensorProto.DataType → bytes per element, for the types stored as plain little-endian values.
const ELEMENT_BYTES = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };

class Malformed extends Error {}

function varint(b, pos) {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= b.length) throw new Malformed();
    const byte = b[pos++];
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, pos];
    scale *= 128;
  }
  throw new Malformed();
}

/** Fields of a message body: [{ field, wire, start (tag), valueStart, end }]. */
function fields(b, start, end) {
  const out = [];
  let pos = start;
  while (pos < end) {
    const tagStart = pos;
    let tag;
    [tag, pos] = varint(b, pos);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    const valueStart = pos;
    if (wire === 0) {
      [, pos] = varint(b, pos);
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 2) {
      let len;
      [len, pos] = varint(b, pos);
      pos += len;
    } else if (wire === 5) {
      pos += 4;
    } else {
      throw new Malformed();
    }
    if (field === 0 || pos > end) throw new Malformed();
    out.push({ field, wire, start: tagStart, valueStart, end: pos });
  }
  return out;
}

function encodeVarint(n) {
  const out = [];
  while (n >= 128) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A message being rebuilt: byte pieces (views of the source or small new arrays). */
class Pieces {
  constructor() {
    this.list = [];
    this.length = 0;
  }
  push(piece) {
    this.list.push(piece);
    this.length += piece.length;
  }
  /** Appends a length-delimited field holding `body`. */
  pushMessage(field, body) {
    this.push(Uint8Array.from([...encodeVarint(field * 8 + 2), ...encodeVarint(body.length)]));
    for (const p of body.list) this.list.push(p);
    this.length += body.length;
  }
}

const utf8 = new TextEncoder();

function entry(key, value) {
  const k = utf8.encode(key);
  const v = utf8.encode(value);
  return Uint8Array.from([0x0a, ...encodeVarint(k.length), ...k, 0x12, ...encodeVarint(v.length), ...v]);
}

/** The valueStart..end payload of a length-delimited field. */
function payload(b, f) {
  const [, pos] = varint(b, f.valueStart);
  return [pos, f.end];
}

/** The rewritten tensor body, or null to keep it as it is. */
function splitTensor(b, start, end, location) {
  const fs = fields(b, start, end);
  let dataType = null;
  let numel = 1;
  let raw = null;
  for (const f of fs) {
    if (f.field === T_EXTERNAL_DATA || f.field === T_DATA_LOCATION) return null;
    if (f.field === T_RAW_DATA) {
      if (raw !== null || f.wire !== 2) return null;
      raw = f;
    } else if (f.field === T_DATA_TYPE) {
      if (f.wire !== 0) return null;
      [dataType] = varint(b, f.valueStart);
    } else if (f.field === T_DIMS) {
      if (f.wire === 0) {
        numel *= varint(b, f.valueStart)[0];
      } else if (f.wire === 2) {
        let [pos, stop] = payload(b, f);
        while (pos < stop) {
          let d;
          [d, pos] = varint(b, pos);
          numel *= d;
        }
      } else {
        return null;
      }
    }
  }
  if (raw === null || !(dataType in ELEMENT_BYTES)) return null;
  const [rawStart, rawEnd] = payload(b, raw);
  const size = rawEnd - rawStart;
  if (size < MIN_BYTES || !Number.isSafeInteger(numel) || numel * ELEMENT_BYTES[dataType] !== size) return null;
  const body = new Pieces();
  for (const f of fs) {
    if (f !== raw) body.push(b.subarray(f.start, f.end));
  }
  for (const [k, v] of [['location', location], ['offset', String(rawStart)], ['length', String(size)]]) {
    const e = entry(k, v);
    body.push(Uint8Array.from([...encodeVarint(T_EXTERNAL_DATA * 8 + 2), ...encodeVarint(e.length)]));
    body.push(e);
  }
  body.push(Uint8Array.from([T_DATA_LOCATION * 8, 1]));
  return body;
}

/** The rewritten graph body and how many tensors moved out. */
function splitGraph(b, start, end, location) {
  const body = new Pieces();
  let moved = 0;
  for (const f of fields(b, start, end)) {
    if (f.field === GRAPH_INITIALIZER && f.wire === 2) {
      const [ps, pe] = payload(b, f);
      const t = splitTensor(b, ps, pe, location);
      if (t !== null) {
        body.pushMessage(GRAPH_INITIALIZER, t);
        moved++;
        continue;
      }
    }
    body.push(b.subarray(f.start, f.end));
  }
  return [body, moved];
}

/**
 * `{ skeleton, location }`: the model with its large initializers as external data at
 * `location` (offsets into `bytes`), or null when nothing was moved.
 */
export function splitWeights(bytes) {
  const location = `kiln-ml-weights-${Math.random().toString(36).slice(2)}`;
  try {
    const model = new Pieces();
    let moved = 0;
    for (const f of fields(bytes, 0, bytes.length)) {
      if (f.field === MODEL_GRAPH && f.wire === 2) {
        const [ps, pe] = payload(bytes, f);
        const [g, n] = splitGraph(bytes, ps, pe, location);
        model.pushMessage(MODEL_GRAPH, g);
        moved += n;
      } else {
        model.push(bytes.subarray(f.start, f.end));
      }
    }
    if (moved === 0) return null;
    const skeleton = new Uint8Array(model.length);
    let at = 0;
    for (const p of model.list) {
      skeleton.set(p, at);
      at += p.length;
    }
    return { skeleton, location };
  } catch (e) {
    if (e instanceof Malformed) return null;
    throw e;
  }
}
