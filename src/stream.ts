/**
 * Streams: independent queues of work. Any stream may be used from any thread or Worker.
 * @module
 */
import { DisposedError } from "./errors.ts";
import { callForHandle, check, native, outPtr } from "./native.ts";

const streamRegistry = new FinalizationRegistry<number>((id) => {
  native.lanes_stream_release(id);
});

/** A stream of work with its own queue, epochs and timeline. Dispose it when done. */
export class Stream implements Disposable {
  /** The native handle; pass it to another Worker and call {@link streamFromId} there. */
  readonly id: number;
  readonly #owned: boolean;
  #disposed = false;

  /** @internal Use {@link newStream}, {@link defaultStream} or {@link streamFromId}. */
  constructor(id: number, owned: boolean) {
    this.id = id;
    this.#owned = owned;
    if (owned) streamRegistry.register(this, id, this);
  }

  /** True once {@link Stream.dispose} ran. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** @internal The handle, checked for use after dispose. */
  handle(): number {
    if (this.#disposed) throw new DisposedError(`stream ${this.id} was disposed`);
    return this.id;
  }

  /** Blocks until all work submitted to this stream so far has completed. */
  synchronize(): void {
    check(native.lanes_stream_synchronize(this.handle()));
  }

  /**
   * Releases this reference. When the last reference (across Workers) goes, in-flight work is
   * waited for and the stream is freed. Idempotent. The default stream is never freed.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (!this.#owned) return;
    streamRegistry.unregister(this);
    check(native.lanes_stream_release(this.id));
  }

  /** Same as {@link Stream.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

let defaultStreamObject: Stream | undefined;
const streamScopes: Stream[] = [];

/** Options of {@link newStream}. */
export interface NewStreamOptions {
  /**
   * The device the stream runs on (default 0; see {@link deviceCount}). Arrays it computes live
   * there; streams on different devices may still use each other's arrays.
   */
  device?: number;
}

/** A new stream (Disposable). */
export function newStream(opts?: NewStreamOptions): Stream {
  const device = opts?.device ?? 0;
  if (!Number.isSafeInteger(device) || device < 0) throw new RangeError(`newStream: device must be a non-negative integer, got ${device}`);
  if (device === 0) return new Stream(callForHandle(native.lanes_stream_new(outPtr)), true);
  return new Stream(callForHandle(native.lanes_stream_new_on(device, outPtr)), true);
}

/** How many devices the backend drives (GPUs for CUDA; 1 for the CPU and Metal). */
export function deviceCount(): number {
  const out = new Int32Array(1);
  check(native.lanes_device_count(out));
  return out[0]!;
}

/** The process-wide default stream (shared by all Workers). */
export function defaultStream(): Stream {
  defaultStreamObject ??= new Stream(callForHandle(native.lanes_stream_default(outPtr)), false);
  return defaultStreamObject;
}

/**
 * Adopts a stream made elsewhere (another Worker) by its id. Takes a reference of its own, so
 * the stream lives until both sides dispose it.
 */
export function streamFromId(id: number): Stream {
  check(native.lanes_stream_retain(id));
  const def = defaultStream();
  return id === def.id ? def : new Stream(id, true);
}

/**
 * Runs `fn` with `stream` as the default stream for ops created inside it (synchronously:
 * an `await` inside `fn` ends the scope).
 */
export function withStream<T>(stream: Stream, fn: () => T): T {
  stream.handle();
  streamScopes.push(stream);
  try {
    return fn();
  } finally {
    streamScopes.pop();
  }
}

/** The stream ops use when none is passed: the innermost `withStream`, else the default. */
export function currentStream(): Stream {
  return streamScopes[streamScopes.length - 1] ?? defaultStream();
}

/** Blocks until all work on `stream` (default: the current stream) has completed. */
export function synchronize(stream?: Stream): void {
  (stream ?? currentStream()).synchronize();
}
