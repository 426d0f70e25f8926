// Types of kiln-ml: an onnxruntime-web-shaped API over the Kiln WebAssembly engine.

export type TensorType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'bfloat16'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool'
  | 'string'
  | 'float8_e4m3fn'
  | 'float8_e4m3fnuz'
  | 'float8_e5m2'
  | 'float8_e5m2fnuz'
  | 'float8_e8m0fnu'
  | 'float4_e2m1fn'
  | 'uint4'
  | 'int4'
  | 'uint2'
  | 'int2';

/** The container each type's data lives in (float16/bfloat16: the bits; bool: 0/1 bytes; 8/4/2-bit types: one element per byte). */
export interface TensorDataTypeMap {
  float32: Float32Array;
  float64: Float64Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  int8: Int8Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  uint8: Uint8Array;
  uint16: Uint16Array;
  uint32: Uint32Array;
  uint64: BigUint64Array;
  bool: Uint8Array;
  string: string[];
  float8_e4m3fn: Uint8Array;
  float8_e4m3fnuz: Uint8Array;
  float8_e5m2: Uint8Array;
  float8_e5m2fnuz: Uint8Array;
  float8_e8m0fnu: Uint8Array;
  float4_e2m1fn: Uint8Array;
  uint4: Uint8Array;
  int4: Int8Array;
  uint2: Uint8Array;
  int2: Int8Array;
}

/** What the constructor also accepts and converts. */
export interface TensorInputDataTypeMap {
  float32: Float32Array | readonly number[];
  float64: Float64Array | readonly number[];
  float16: Uint16Array;
  bfloat16: Uint16Array;
  int8: Int8Array | readonly number[];
  int16: Int16Array | readonly number[];
  int32: Int32Array | readonly number[];
  int64: BigInt64Array | readonly (number | bigint)[];
  uint8: Uint8Array | Uint8ClampedArray | readonly number[];
  uint16: Uint16Array | readonly number[];
  uint32: Uint32Array | readonly number[];
  uint64: BigUint64Array | readonly (number | bigint)[];
  bool: Uint8Array | readonly boolean[];
  string: readonly string[];
  float8_e4m3fn: Uint8Array;
  float8_e4m3fnuz: Uint8Array;
  float8_e5m2: Uint8Array;
  float8_e5m2fnuz: Uint8Array;
  float8_e8m0fnu: Uint8Array;
  float4_e2m1fn: Uint8Array;
  uint4: Uint8Array | readonly number[];
  int4: Int8Array | readonly number[];
  uint2: Uint8Array | readonly number[];
  int2: Int8Array | readonly number[];
}

export type TensorData = TensorDataTypeMap[TensorType];

export declare const TENSOR_TYPES: readonly TensorType[];

export declare class Tensor<T extends TensorType = TensorType> {
  /** `dims` defaults to `[data.length]`. Throws a TypeError/RangeError naming the problem. */
  constructor(type: T, data: TensorInputDataTypeMap[T], dims?: readonly number[]);
  constructor(data: TensorDataTypeMap[T], dims?: readonly number[]);
  readonly type: T;
  readonly data: TensorDataTypeMap[T];
  readonly dims: readonly number[];
  readonly size: number;
  readonly location: 'cpu';
  getData(): Promise<TensorDataTypeMap[T]>;
  reshape(dims: readonly number[]): Tensor<T>;
  dispose(): void;
}

/** A non-tensor output: sequences become arrays, maps objects, empty optionals null. */
export type OutputValue = Tensor | null | number | string | boolean | OutputValue[] | { [key: string]: OutputValue };

export interface ValueMetadata {
  readonly name: string;
  readonly isTensor: boolean;
  /** A TensorType for tensors, or a description such as 'sequence<map<int64, tensor<float32>>>'. */
  readonly type: string;
  /** Fixed dims as numbers, symbolic dims as their names; absent when the rank is unknown. */
  readonly shape?: readonly (number | string)[];
}

/** Where the .wasm comes from: a URL, a path (Node), its bytes, or a compiled module. */
export type WasmSource = string | URL | ArrayBuffer | ArrayBufferView | WebAssembly.Module;

export interface SessionOptions {
  /** The Kiln wasm module to use (only the first session's choice counts; see `initWasm`). */
  wasm?: WasmSource;
  /** Cache models loaded from a URL: browsers `true` or a Cache API name; Node a directory. */
  cache?: boolean | string | { name?: string; dir?: string };
  /** Accepted for onnxruntime-web compatibility; Kiln always runs on its wasm CPU backend. */
  executionProviders?: readonly unknown[];
  graphOptimizationLevel?: string;
}

export type FeedsType = Record<string, Tensor>;
export type FetchesType = readonly string[] | Record<string, Tensor | null>;
export type ReturnType = Record<string, OutputValue>;

export interface RunOptions {
  logSeverityLevel?: number;
  tag?: string;
}

export declare class InferenceSession {
  private constructor();
  /** Bytes, a URL, or (Node) a file path. Rejects with an Error naming the problem. */
  static create(source: string | URL | ArrayBufferLike | ArrayBufferView | Blob, options?: SessionOptions): Promise<InferenceSession>;
  static create(buffer: ArrayBufferLike, byteOffset: number, byteLength?: number, options?: SessionOptions): Promise<InferenceSession>;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ValueMetadata[];
  readonly outputMetadata: readonly ValueMetadata[];
  run(feeds: FeedsType, options?: RunOptions): Promise<ReturnType>;
  run(feeds: FeedsType, fetches: FetchesType, options?: RunOptions): Promise<ReturnType>;
  /** Frees the model; later `run` calls reject. */
  release(): Promise<void>;
  startProfiling(): void;
  endProfiling(): void;
}

export interface Env {
  wasm: {
    /** Bytes or compiled module of kiln_wasm_bg.wasm; takes precedence over wasmPaths. */
    wasmBinary?: ArrayBuffer | ArrayBufferView | WebAssembly.Module;
    /** URL (or Node path) of kiln_wasm_bg.wasm. */
    wasmPaths?: string | URL;
    /**
     * Which of the package's own builds to load when neither wasmBinary nor wasmPaths is set:
     * undefined (default) the relaxed-SIMD build where the engine supports it, false always the
     * simd128 build (results independent of whether the CPU fuses multiply-adds), true the
     * relaxed-SIMD build or an error.
     */
    relaxedSimd?: boolean;
    readonly numThreads: number;
    readonly simd: boolean;
  };
  logLevel: 'verbose' | 'info' | 'warning' | 'error' | 'fatal';
}

export declare const env: Env;

/** The low-level bindings, resolved once the module is instantiated. */
export interface KilnBindings {
  version(): string;
}

/** Instantiates the wasm module now (otherwise the first `create` does); a failure can be retried. */
export declare function initWasm(source?: WasmSource): Promise<KilnBindings>;

/** Whether this JavaScript engine runs WebAssembly relaxed SIMD. */
export declare function relaxedSimdSupported(): boolean;

/**
 * The build that was instantiated: 'relaxed-simd' or 'simd128' (the package's own files),
 * 'caller' (a module, bytes, URL or path the caller passed), null before loading.
 */
export declare function wasmVariant(): 'relaxed-simd' | 'simd128' | 'caller' | null;

/** Removes one cached model, or with no url the whole cache. */
export declare function clearModelCache(cache: SessionOptions['cache'], url?: string | URL): Promise<void>;
