/**
 * KV caches for the decoders: one array per layer and kind, `[1, kvHeads, capacity, headDim]`,
 * preallocated along the sequence axis and filled in place with `sliceUpdate`, attended over
 * their filled prefix (`keyLength`). A step consumes the previous step's caches: it disposes
 * them as soon as it has built on them, so nothing else holds their memory and the update is
 * written in place. Capacities are powers of two, so a compiled decode step has few shapes.
 * @module
 */
import type { LanesArray } from "../array.ts";
import * as lx from "../index.ts";
import type { Scalar } from "../scalar.ts";
import type { Scope } from "./layers.ts";

/** The capacity a cache needs for `positions` positions: a power of two from 64, at most `max`. */
export function cacheCapacity(positions: number, max: number): number {
  let c = 64;
  while (c < positions) c *= 2;
  return Math.min(c, Math.max(max, positions));
}

/**
 * `cache` (or a new one of `capacity`) with `kv` (`[batch, heads, L, headDim]`) written at `pos`
 * along the sequence axis; an int32 array `pos` (`[batch]`) writes each sequence of a batch at
 * its own position. Consumes `cache`. A cache smaller than `capacity` is copied into a larger
 * one first (eager steps only: a compiled step keeps its shapes).
 */
export function appendKV(s: Scope, cache: LanesArray | undefined, kv: LanesArray, pos: number | Scalar | LanesArray, capacity: number): LanesArray {
  const [batch, heads, , headDim] = kv.shape as [number, number, number, number];
  let target: LanesArray;
  if (!cache) {
    target = lx.zeros([batch, heads, capacity, headDim], { dtype: kv.dtype });
  } else if (cache.shape[2]! < capacity) {
    const larger = lx.zeros([batch, heads, capacity, headDim], { dtype: kv.dtype });
    target = lx.sliceUpdate(larger, cache, 0, { axis: 2 });
    larger.dispose();
    cache.dispose();
  } else {
    target = cache;
  }
  const out = s.t(lx.sliceUpdate(target, kv, pos, { axis: 2 }));
  target.dispose(); // consumed: with no other holder, the update is written in place
  return out;
}
