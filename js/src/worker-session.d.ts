// Types of kiln-ml/worker: sessions that run in a Web Worker or a Node worker_threads Worker.

import type { FeedsType, FetchesType, ReturnType, SessionOptions, ValueMetadata } from './index.js';
export { Tensor } from './index.js';

export interface WorkerSessionOptions extends SessionOptions {
  /** Where worker.js is served; default: next to worker-session.js. */
  workerUrl?: string | URL;
}

export declare class WorkerSession {
  private constructor();
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ValueMetadata[];
  readonly outputMetadata: readonly ValueMetadata[];
  run(feeds: FeedsType, fetches?: FetchesType): Promise<ReturnType>;
  /** Frees the model and stops the worker. */
  release(): Promise<void>;
}

export declare function createWorkerSession(
  source: string | URL | ArrayBufferLike | ArrayBufferView,
  options?: WorkerSessionOptions,
): Promise<WorkerSession>;
