// Nucleus (top-p) sampling against a float64 reference distribution computed here independently:
// softmax at the temperature, candidates sorted by probability, the top k, then the smallest
// prefix whose mass reaches p, renormalized. The sampler's choice for a uniform draw u is the
// reference inverse CDF at u; seeded draws are reproducible and follow the distribution.
import { describe, expect, test } from "bun:test";
import { nucleusSize, sample, seededRandom, topIndices } from "../src/models/sampling.ts";

interface Case {
  temperature: number;
  topK?: number;
  topP: number;
}

/** Token probabilities under `c`, most likely first (ties: lower id first). */
function reference(logits: Float32Array, c: Case): { id: number; p: number }[] {
  const ids = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]! || a - b).slice(0, c.topK ?? logits.length);
  const max = logits[ids[0]!]!;
  const w = ids.map((i) => Math.exp((logits[i]! - max) / c.temperature));
  const z = w.reduce((a, b) => a + b, 0);
  const out: { id: number; p: number }[] = [];
  let mass = 0;
  for (let j = 0; j < ids.length && mass < c.topP; j++) {
    out.push({ id: ids[j]!, p: w[j]! / z });
    mass += w[j]! / z;
  }
  return out.map((e) => ({ id: e.id, p: e.p / mass }));
}

function randomLogits(n: number, seed: number, spread: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (r() + r() + r() - 1.5) * spread);
}

const cases: Case[] = [
  { temperature: 1, topP: 0.9 },
  { temperature: 0.7, topP: 0.5 },
  { temperature: 1.3, topP: 0.95 },
  { temperature: 1, topP: 1 },
  { temperature: 0.8, topK: 20, topP: 0.8 },
  { temperature: 1, topP: 1e-6 },
];

/** Expects the sampler's choice for each draw u to be the reference's inverse CDF at u (draws within 1e-9 of a step are skipped). */
function expectInverseCdf(logits: Float32Array, c: Case, draws: number[]): { id: number; p: number }[] {
  const dist = reference(logits, c);
  const bounds: number[] = [];
  let acc = 0;
  for (const e of dist) bounds.push((acc += e.p));
  for (const u of draws) {
    if (bounds.some((b) => Math.abs(b - u) < 1e-9)) continue;
    const expected = dist[bounds.findIndex((b) => u < b)]?.id ?? dist[dist.length - 1]!.id;
    expect(sample(logits, () => u, c)).toBe(expected);
  }
  return dist;
}

describe("top_p sampling", () => {
  test("the choice for a draw u is the float64 reference's inverse CDF at u", () => {
    const logits = randomLogits(500, 3, 6);
    for (const c of cases) expectInverseCdf(logits, c, Array.from({ length: 2000 }, (_, i) => (i + 0.5) / 2000));
  });

  test("seeded draws are reproducible, stay in the nucleus and follow the reference frequencies", () => {
    const logits = randomLogits(200, 9, 4);
    const c: Case = { temperature: 0.9, topP: 0.7 };
    const dist = reference(logits, c);
    const draws = (seed: number) => {
      const r = seededRandom(seed);
      return Array.from({ length: 20000 }, () => sample(logits, r, c));
    };
    const a = draws(42);
    expect(draws(42)).toEqual(a);
    expect(draws(43)).not.toEqual(a);
    const counts = new Map<number, number>();
    for (const t of a) counts.set(t, (counts.get(t) ?? 0) + 1);
    const nucleus = new Set(dist.map((e) => e.id));
    for (const t of counts.keys()) expect(nucleus.has(t)).toBe(true);
    // Each frequency within 5 standard deviations of its binomial expectation.
    for (const e of dist) {
      const sd = Math.sqrt(20000 * e.p * (1 - e.p));
      expect(Math.abs((counts.get(e.id) ?? 0) - 20000 * e.p)).toBeLessThan(5 * sd + 1);
    }
    expect(dist.length).toBeGreaterThan(3);
    expect(dist.length).toBeLessThan(200);
  });

  test("a tiny top_p keeps only the most likely token; greedy ignores top_p; bad values are refused", () => {
    const logits = randomLogits(100, 5, 3);
    const best = reference(logits, { temperature: 1, topP: 1e-9 })[0]!.id;
    const r = seededRandom(1);
    for (let i = 0; i < 100; i++) expect(sample(logits, r, { temperature: 2, topP: 1e-9 })).toBe(best);
    expect(sample(logits, r, { temperature: 0, topP: 0.5 })).toBe(best);
    for (const topP of [0, -0.1, 1.5, Number.NaN]) expect(() => sample(logits, r, { temperature: 1, topP })).toThrow(RangeError);
  });

  // The sampler sorts only the few buckets of tokens where a cut or the draw falls; these cases
  // put cuts and draws inside crowded buckets, among equal logits and at extreme temperatures,
  // on a vocabulary of SmolLM2's size.
  test("a 49,152-token vocabulary: the choice for a draw u is the reference's inverse CDF at u", () => {
    const n = 49152;
    const r = seededRandom(21);
    const wide = Float32Array.from({ length: n }, () => (r() + r() + r() - 1.5) * 12);
    // Many exact ties: logits on a coarse grid.
    const ties = Float32Array.from({ length: n }, () => Math.round((r() - 0.5) * 40) / 4);
    const large: { logits: Float32Array; c: Case }[] = [
      { logits: wide, c: { temperature: 1, topP: 1 } },
      { logits: wide, c: { temperature: 0.7, topP: 0.9 } },
      { logits: wide, c: { temperature: 2, topP: 0.95 } },
      { logits: wide, c: { temperature: 1, topK: 40, topP: 1 } },
      { logits: wide, c: { temperature: 1.5, topK: 3000, topP: 0.8 } },
      { logits: wide, c: { temperature: 0.05, topP: 1 } },
      { logits: ties, c: { temperature: 1, topP: 0.5 } },
      { logits: ties, c: { temperature: 1, topK: 700, topP: 1 } },
    ];
    for (const { logits, c } of large) {
      // With draws deep in the tail too, where the cumulative mass is nearly all spent.
      const draws = [...Array.from({ length: 400 }, (_, i) => (i + 0.37) / 400), 1 - 1e-6, 1 - 1e-4, 0.999];
      const dist = expectInverseCdf(logits, c, draws);
      // top_p 1 is off: every candidate stays (the reference stops where its float64 sum stops growing).
      expect(nucleusSize(logits, c.temperature, c.topP, c.topK)).toBe(c.topP < 1 ? dist.length : (c.topK ?? n));
    }
  });

  test("top indices of a large vocabulary match a full sort, ties to the lower index", () => {
    const r = seededRandom(5);
    const logits = Float32Array.from({ length: 20000 }, () => Math.round(r() * 200) / 8);
    const sorted = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]! || a - b);
    for (const k of [2, 5, 64, 65, 1000]) expect(topIndices(logits, k)).toEqual(sorted.slice(0, k));
    const rising = Float32Array.from({ length: 5000 }, (_, i) => i % 7);
    const risingSorted = [...rising.keys()].sort((a, b) => rising[b]! - rising[a]! || a - b);
    expect(topIndices(rising, 10)).toEqual(risingSorted.slice(0, 10));
  });

  test("NaN logits are never drawn, and an infinite logit takes every draw", () => {
    const logits = Float32Array.from({ length: 1000 }, (_, i) => (i % 3 === 0 ? Number.NaN : Math.sin(i) * 4));
    const r = seededRandom(3);
    for (let i = 0; i < 500; i++) expect(Number.isNaN(logits[sample(logits, r, { temperature: 1.2 })]!)).toBe(false);
    const inf = Float32Array.from({ length: 1000 }, (_, i) => (i === 400 || i === 700 ? Number.POSITIVE_INFINITY : Math.cos(i)));
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) seen.add(sample(inf, r, { temperature: 1 }));
    expect([...seen].sort((a, b) => a - b)).toEqual([400, 700]);
  });

  test("a row that is a view into a batch's logits samples from that row alone", () => {
    const rows = 4, vocab = 3000;
    const all = randomLogits(rows * vocab, 13, 5);
    for (let row = 0; row < rows; row++) {
      const view = all.subarray(row * vocab, (row + 1) * vocab);
      expectInverseCdf(view, { temperature: 0.9, topP: 0.95 }, [0.01, 0.3, 0.77, 0.999]);
    }
  });

  test("a logit of -Infinity is never drawn, not even by a draw just below 1; if all are, they share the draws", () => {
    const r = seededRandom(17);
    for (let trial = 0; trial < 50; trial++) {
      const logits = Float32Array.from({ length: 500 + trial * 20 }, () => (r() < 0.05 ? Number.NEGATIVE_INFINITY : (r() - 0.5) * 30));
      for (const u of [1 - 2 ** -53, 1 - 2 ** -40, 0.5])
        for (const c of [{ temperature: 1 }, { temperature: 0.3, topP: 1 - 1e-12 }, { temperature: 2, topK: logits.length }])
          expect(logits[sample(logits, () => u, c)]).not.toBe(Number.NEGATIVE_INFINITY);
    }
    const allLow = new Float32Array(6).fill(Number.NEGATIVE_INFINITY);
    const seen = new Set<number>();
    for (let i = 0; i < 600; i++) seen.add(sample(allLow, r, { temperature: 1 }));
    expect(seen.size).toBe(6);
  });

  test("topK must be a positive integer and the temperature finite", () => {
    const logits = randomLogits(50, 2, 3);
    const r = seededRandom(4);
    for (const topK of [0, -1, 2.5, Number.NaN]) {
      expect(() => sample(logits, r, { temperature: 1, topK })).toThrow(RangeError);
      expect(() => nucleusSize(logits, 1, 0.5, topK)).toThrow(RangeError);
    }
    for (const temperature of [Number.POSITIVE_INFINITY, Number.NaN]) expect(() => sample(logits, r, { temperature })).toThrow(RangeError);
    expect(() => nucleusSize(logits, 1, 1.5)).toThrow(RangeError);
  });
});

