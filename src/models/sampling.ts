/**
 * Next-token choice from logits: greedy at temperature 0, else the temperature-scaled softmax
 * restricted to the top k and then to the nucleus (top p), drawn with a seeded generator so a
 * request with a seed is reproducible.
 * @module
 */

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
  /** Only the k most likely tokens are candidates (default: all). */
  topK?: number;
  /**
   * Nucleus sampling, in (0, 1] (default 1: off): of the candidates, most likely first, only the
   * fewest whose probabilities (after temperature, as OpenAI and Hugging Face apply it) sum to at
   * least `topP` remain, renormalized.
   */
  topP?: number;
}

/** Indices of the k largest logits, largest first (ties: lower index first). */
export function topIndices(logits: Float32Array, k: number): number[] {
  if (k <= 1 && logits.length > 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return [best];
  }
  const idx = Array.from(logits.keys());
  idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
  return idx.slice(0, Math.max(1, Math.min(k, logits.length)));
}

/** The temperature-scaled weights of `candidates` (most likely first), relative to the first. */
function weightsOf(logits: Float32Array, candidates: readonly number[], temperature: number): number[] {
  const top = logits[candidates[0]!]!;
  return candidates.map((i) => Math.exp((logits[i]! - top) / temperature));
}

/** How many of `weights` (most likely first) nucleus sampling keeps: the fewest that add up to at least `topP` of their total. */
function nucleusCount(weights: readonly number[], topP: number): number {
  const target = topP * weights.reduce((s, w) => s + w, 0);
  let kept = 0;
  for (let mass = 0; kept < weights.length && mass < target; kept++) mass += weights[kept]!;
  return kept;
}

/**
 * How many of the most likely tokens nucleus sampling keeps: the fewest whose probabilities
 * (softmax of `logits / temperature` over the `topK` most likely) add up to at least `topP`.
 */
export function nucleusSize(logits: Float32Array, temperature: number, topP: number, topK = logits.length): number {
  return nucleusCount(weightsOf(logits, topIndices(logits, topK), temperature), topP);
}

/** Picks the next token. `random` draws in [0, 1). */
export function sample(logits: Float32Array, random: () => number, opts: SampleOptions = {}): number {
  const temperature = opts.temperature ?? 0;
  const topP = opts.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${topP}`);
  if (temperature <= 0) return topIndices(logits, 1)[0]!;
  const candidates = topIndices(logits, opts.topK ?? logits.length);
  const weights = weightsOf(logits, candidates, temperature);
  const kept = topP < 1 ? nucleusCount(weights, topP) : weights.length;
  let total = 0;
  for (let j = 0; j < kept; j++) total += weights[j]!;
  let r = random() * total;
  for (let j = 0; j < kept; j++) {
    r -= weights[j]!;
    if (r <= 0) return candidates[j]!;
  }
  return candidates[kept - 1]!;
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
