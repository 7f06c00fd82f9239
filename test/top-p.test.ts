// Nucleus (top-p) sampling against a float64 reference distribution computed here independently:
// softmax at the temperature, candidates sorted by probability, the top k, then the smallest
// prefix whose mass reaches p, renormalized. The sampler's choice for a uniform draw u is the
// reference inverse CDF at u; seeded draws are reproducible and follow the distribution.
import { describe, expect, test } from "bun:test";
import { sample, seededRandom } from "../src/models/sampling.ts";

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

describe("top_p sampling", () => {
  test("the choice for a draw u is the float64 reference's inverse CDF at u", () => {
    const logits = randomLogits(500, 3, 6);
    for (const c of cases) {
      const dist = reference(logits, c);
      const bounds: number[] = [];
      let acc = 0;
      for (const e of dist) bounds.push((acc += e.p));
      for (let i = 0; i < 2000; i++) {
        const u = (i + 0.5) / 2000;
        if (bounds.some((b) => Math.abs(b - u) < 1e-9)) continue;
        const expected = dist[bounds.findIndex((b) => u < b)]?.id ?? dist[dist.length - 1]!.id;
        expect(sample(logits, () => u, c)).toBe(expected);
      }
    }
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
});
