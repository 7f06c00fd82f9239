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

// Sampling never sorts the whole vocabulary (a 49,152-token vocabulary took 15 ms a token that
// way). Each token's weight e^((logit - top) / temperature) goes into one of these buckets by its
// distance from the top, (top - logit) / temperature, in equal steps up to kGapRange (the last
// bucket also takes every larger distance, weights below e^-kGapRange of the top's). Bucket
// order is rank order, so only the few buckets where a cut or the draw falls are sorted.
const kGapBuckets = 512;
const kGapRange = 48;

/** The temperature-scaled weights of every token, by bucket. */
class WeightedTokens {
  readonly bucket: Uint16Array;
  readonly mass = new Float64Array(kGapBuckets);
  readonly count = new Int32Array(kGapBuckets);
  readonly #top: number;
  readonly #sorted = new Map<number, number[]>();

  constructor(
    readonly logits: Float32Array,
    readonly temperature: number,
  ) {
    const n = logits.length;
    this.bucket = new Uint16Array(n);
    let top = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) if (logits[i]! > top) top = logits[i]!;
    this.#top = top;
    const perGap = kGapBuckets / kGapRange;
    const finite = Number.isFinite(top);
    for (let i = 0; i < n; i++) {
      const l = logits[i]!;
      if (l !== l) continue; // NaN
      // An infinite top: the tokens at it share the draw (the softmax's limit).
      const w = finite ? Math.exp((l - top) / temperature) : l === top ? 1 : 0;
      const gap = finite ? (top - l) / temperature : l === top ? 0 : Number.POSITIVE_INFINITY;
      const b = gap < kGapRange ? Math.min(kGapBuckets - 1, Math.floor(gap * perGap)) : kGapBuckets - 1;
      this.bucket[i] = b;
      this.mass[b] = this.mass[b]! + w;
      this.count[b] = this.count[b]! + 1;
    }
  }

  /** Token i's weight, e^((logit - top) / temperature). */
  weight(i: number): number {
    const l = this.logits[i]!;
    return Number.isFinite(this.#top) ? Math.exp((l - this.#top) / this.temperature) : l === this.#top ? 1 : 0;
  }

  /** The tokens of bucket b, most likely first. */
  sorted(b: number): number[] {
    let members = this.#sorted.get(b);
    if (!members) {
      members = [];
      for (let i = 0; i < this.logits.length; i++) if (this.bucket[i] === b && this.logits[i] === this.logits[i]) members.push(i);
      members.sort(byRank(this.logits));
      this.#sorted.set(b, members);
    }
    return members;
  }
}

/** A run of candidates in rank order: a whole bucket, or the first `length` of a bucket's sorted tokens. */
interface Run {
  bucket: number;
  length: number;
  mass: number;
}

function runOf(tokens: WeightedTokens, b: number, length: number): Run {
  if (length === tokens.count[b]) return { bucket: b, length, mass: tokens.mass[b]! };
  let mass = 0;
  const members = tokens.sorted(b);
  for (let j = 0; j < length; j++) mass += tokens.weight(members[j]!);
  return { bucket: b, length, mass };
}

/** The `k` most likely tokens, as runs. */
function topRuns(tokens: WeightedTokens, k: number): Run[] {
  const runs: Run[] = [];
  let left = k;
  for (let b = 0; b < kGapBuckets && left > 0; b++) {
    const n = tokens.count[b]!;
    if (n === 0) continue;
    runs.push(runOf(tokens, b, Math.min(n, left)));
    left -= n;
  }
  return runs;
}

/** The nucleus of `runs`: the fewest most likely tokens whose weights add up to at least `topP` of the runs' total. */
function nucleusRuns(tokens: WeightedTokens, runs: Run[], topP: number): Run[] {
  const target = topP * runs.reduce((s, r) => s + r.mass, 0);
  const kept: Run[] = [];
  let mass = 0;
  for (const run of runs) {
    if (mass + run.mass < target) {
      kept.push(run);
      mass += run.mass;
      continue;
    }
    const members = tokens.sorted(run.bucket);
    let length = 0;
    while (length < run.length && mass < target) mass += tokens.weight(members[length++]!);
    kept.push(runOf(tokens, run.bucket, length));
    return kept;
  }
  return kept;
}

function candidateRuns(logits: Float32Array, temperature: number, topK: number | undefined, topP: number): { tokens: WeightedTokens; runs: Run[] } {
  const tokens = new WeightedTokens(logits, temperature);
  let runs = topRuns(tokens, Math.max(1, Math.min(topK ?? logits.length, logits.length)));
  if (topP < 1) runs = nucleusRuns(tokens, runs, topP);
  return { tokens, runs };
}

/**
 * How many of the most likely tokens nucleus sampling keeps: the fewest whose probabilities
 * (softmax of `logits / temperature` over the `topK` most likely) add up to at least `topP`;
 * all `topK` at `topP` 1, where nucleus sampling is off.
 */
export function nucleusSize(logits: Float32Array, temperature: number, topP: number, topK = logits.length): number {
  return candidateRuns(logits, temperature, topK, topP).runs.reduce((n, r) => n + r.length, 0);
}

/**
 * Picks the next token. `random` draws in [0, 1), once a call. At a temperature above 0 the
 * choice for a draw u is the inverse of the candidates' cumulative distribution at u, the
 * candidates most likely first. NaN logits are never candidates; where the largest logit is
 * infinite, the tokens at it share every draw.
 */
export function sample(logits: Float32Array, random: () => number, opts: SampleOptions = {}): number {
  const temperature = opts.temperature ?? 0;
  const topP = opts.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${topP}`);
  if (temperature <= 0) return topIndices(logits, 1)[0]!;
  const { tokens, runs } = candidateRuns(logits, temperature, opts.topK, topP);
  let r = random() * runs.reduce((s, run) => s + run.mass, 0);
  for (const run of runs) {
    if (r > run.mass) {
      r -= run.mass;
      continue;
    }
    const members = tokens.sorted(run.bucket);
    for (let j = 0; j < run.length; j++) {
      r -= tokens.weight(members[j]!);
      if (r <= 0) return members[j]!;
    }
  }
  // Rounding left a sliver past the last candidate.
  const last = runs[runs.length - 1];
  return last ? tokens.sorted(last.bucket)[last.length - 1]! : 0;
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
