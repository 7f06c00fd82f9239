/**
 * Counter-based random numbers (Philox4x32-10): element i depends only on (seed, i), so
 * results never depend on threads or streams.
 * @module
 */
import { LanesArray, shapeBuffer } from "./array.ts";
import { callForHandle, native, outPtr } from "./native.ts";
import type { StreamOptions } from "./ops.ts";
import { currentStream } from "./stream.ts";

/** Options of the random generators. */
export interface RandomOptions extends StreamOptions {
  /** Seed (an integer below 2^53). Without one, each call takes the next of a per-thread sequence. */
  seed?: number;
}

let nextSeed = Math.floor(Math.random() * 2 ** 31);

function draw(kind: number, shape: readonly number[], a: number, b: number, opts?: RandomOptions): LanesArray {
  const dims = shapeBuffer(shape, kind === 0 ? "random.uniform" : "random.normal");
  const seed = opts?.seed ?? nextSeed++;
  return new LanesArray(
    callForHandle(
      native.lanes_array_random(kind, seed, a, b, dims.length ? dims : null, dims.length, (opts?.stream ?? currentStream()).handle(), outPtr),
    ),
  );
}

/** Uniform samples in [low, high) (default [0, 1)). */
export function uniform(shape: readonly number[], opts?: RandomOptions & { low?: number; high?: number }): LanesArray {
  return draw(0, shape, opts?.low ?? 0, opts?.high ?? 1, opts);
}

/** Normal samples with mean `loc` and standard deviation `scale` (default 0 and 1). */
export function normal(shape: readonly number[], opts?: RandomOptions & { loc?: number; scale?: number }): LanesArray {
  return draw(1, shape, opts?.loc ?? 0, opts?.scale ?? 1, opts);
}
