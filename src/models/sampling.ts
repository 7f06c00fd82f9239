/**
 * Next-token choice from logits: greedy at temperature 0, else the temperature-scaled softmax
 * restricted to the top k and then to the nucleus (top p), drawn with a seeded generator so a
 * request with a seed is reproducible.
 * @module
 */
import { ptr } from "bun:ffi";
import { check, native } from "../native.ts";

/** A seeded 32-bit generator (mulberry32): the same seed gives the same draws everywhere. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Options of {@link sample}. */
export interface SampleOptions {
  /** 0 (the default) is greedy. */
  temperature?: number;
  /** Only the k most likely tokens are candidates, a positive integer (default: all). */
  topK?: number;
  /**
   * Nucleus sampling, in (0, 1] (default 1: off): of the candidates, most likely first, only the
   * fewest whose probabilities (after temperature, as OpenAI and Hugging Face apply it) sum to at
   * least `topP` remain, renormalized.
   */
  topP?: number;
}

/** Whether token a ranks above token b: the larger logit, ties to the lower index; NaN ranks last. */
function ranksAbove(logits: Float32Array, a: number, b: number): boolean {
  const x = logits[a]!, y = logits[b]!;
  if (x > y) return true;
  if (x === y || (Number.isNaN(x) && Number.isNaN(y))) return a < b;
  return Number.isNaN(y) && !Number.isNaN(x);
}

function byRank(logits: Float32Array): (a: number, b: number) => number {
  return (a, b) => (a === b ? 0 : ranksAbove(logits, a, b) ? -1 : 1);
}

// Up to this many top indices are kept in a sorted list in one pass over the logits; more are
// sorted in full.
const kListedTop = 64;

/** Indices of the k largest logits, largest first (ties: lower index first; for k above 1, NaN last). */
export function topIndices(logits: Float32Array, k: number): number[] {
  if (k <= 1 && logits.length > 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return [best];
  }
  const want = Math.max(1, Math.min(k, logits.length));
  if (want > kListedTop) return Array.from(logits.keys()).sort(byRank(logits)).slice(0, want);
  const top: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    if (top.length === want && !ranksAbove(logits, i, top[want - 1]!)) continue;
    let at = top.length === want ? want - 1 : top.length;
    while (at > 0 && ranksAbove(logits, i, top[at - 1]!)) {
      top[at] = top[at - 1]!;
      at--;
    }
    top[at] = i;
  }
  return top;
}

// The native sampler's out-parameters: the token and how many candidates the cuts left. Its
// storage is an explicit ArrayBuffer, whose address stays put (see native.ts).
const sampled = new BigInt64Array(new ArrayBuffer(16));
const tokenPtr = ptr(sampled);
const keptPtr = ptr(sampled, 8);

function checkTopP(topP: number): void {
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${topP}`);
}

/** The native sampler (lanes_logits_sample) for a temperature above 0 and a checked topP; the token and the candidates left. */
function sampleNatively(logits: Float32Array, temperature: number, topK: number | undefined, topP: number, u: number): { token: number; kept: number } {
  if (logits.length === 0) throw new RangeError("no logits to sample from");
  if (!Number.isFinite(temperature)) throw new RangeError(`temperature must be finite, got ${temperature}`);
  if (topK !== undefined && !(Number.isSafeInteger(topK) && topK >= 1)) throw new RangeError(`topK must be a positive integer, got ${topK}`);
  check(native.lanes_logits_sample(ptr(logits), logits.length, temperature, topK ?? 0, topP, u, tokenPtr, keptPtr));
  return { token: Number(sampled[0]!), kept: Number(sampled[1]!) };
}

/**
 * How many of the most likely tokens nucleus sampling keeps: the fewest whose probabilities
 * (softmax of `logits / temperature` over the `topK` most likely) add up to at least `topP`;
 * all `topK` at `topP` 1, where nucleus sampling is off.
 */
export function nucleusSize(logits: Float32Array, temperature: number, topP: number, topK = logits.length): number {
  checkTopP(topP);
  return sampleNatively(logits, temperature, topK, topP, 0).kept;
}

/**
 * Picks the next token. `random` draws in [0, 1), once a call. At a temperature above 0 the
 * choice for a draw u is the inverse of the candidates' cumulative distribution at u, the
 * candidates most likely first (in native code: `lanes_logits_sample`). NaN logits and tokens of
 * weight 0 (a logit of -Infinity) are never drawn (if every logit is NaN: token 0, as greedy
 * picks); where the largest logit is infinite, the tokens at it share every draw. A temperature
 * that is not finite, or a `topK` that is not a positive integer, is a RangeError.
 */
export function sample(logits: Float32Array, random: () => number, opts: SampleOptions = {}): number {
  const temperature = opts.temperature ?? 0;
  const topP = opts.topP ?? 1;
  checkTopP(topP);
  if (temperature <= 0) return topIndices(logits, 1)[0]!;
  return sampleNatively(logits, temperature, opts.topK, topP, random()).token;
}

/** A bit-exact fingerprint of logits (FNV-1a over their float32 bytes), for comparing runs. */
export function checksum(logits: Float32Array): string {
  const bytes = new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength);
  // An indexed loop over int32 values, made unsigned once at the end: a for-of over the bytes
  // takes about 12 us per KiB of logits, this loop about 2 (a small model's decode step is
  // 150-250 us in all).
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}
