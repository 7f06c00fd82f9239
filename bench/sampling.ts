/**
 * The host's cost of picking a sampled token from SmolLM2's 49,152 logits: `sample()` against
 * sorting every index by its logit first (what `sample()` did before it bucketed the weights),
 * in the same run, for an OpenAI request's defaults (temperature 1, top_p 1, no top_k) and a
 * nucleus and a top-k request. The logits are a seeded draw with the spread of a real step's.
 *
 *   bun bench/sampling.ts [--vocab 49152] [--draws 40]
 */
import { parseArgs } from "node:util";
import { sample, type SampleOptions, seededRandom } from "../src/models/sampling.ts";

const { values: args } = parseArgs({ options: { vocab: { type: "string", default: "49152" }, draws: { type: "string", default: "40" } } });
const vocab = Number(args.vocab);
const draws = Number(args.draws);

/** Sorts every index first, then samples by the inverse CDF (the float64 reference). */
function sortFirst(logits: Float32Array, random: () => number, opts: SampleOptions): number {
  const ids = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]! || a - b).slice(0, opts.topK ?? logits.length);
  const top = logits[ids[0]!]!;
  const w = ids.map((i) => Math.exp((logits[i]! - top) / opts.temperature!));
  const total = w.reduce((s, x) => s + x, 0);
  let kept = w.length;
  if ((opts.topP ?? 1) < 1) {
    let mass = 0;
    for (kept = 0; kept < w.length && mass < opts.topP! * total; kept++) mass += w[kept]!;
  }
  let r = random() * w.slice(0, kept).reduce((s, x) => s + x, 0);
  for (let j = 0; j < kept; j++) if ((r -= w[j]!) <= 0) return ids[j]!;
  return ids[kept - 1]!;
}

/** Microseconds a token, the best of five runs of `draws` picks. */
function usPerToken(pick: (logits: Float32Array, random: () => number, opts: SampleOptions) => number, logits: Float32Array, opts: SampleOptions): number {
  const random = seededRandom(1);
  for (let i = 0; i < 5; i++) pick(logits, random, opts);
  let best = Infinity;
  for (let run = 0; run < 5; run++) {
    const t = performance.now();
    for (let i = 0; i < draws; i++) pick(logits, random, opts);
    best = Math.min(best, ((performance.now() - t) / draws) * 1000);
  }
  return best;
}

const r = seededRandom(7);
// A decode step's logits: most within a few units of each other, a long tail below, a few tokens well above.
const logits = Float32Array.from({ length: vocab }, () => (r() + r() + r() - 1.5) * 8 + (r() < 0.001 ? 12 : 0));
const requests: [string, SampleOptions][] = [
  ["temperature 1 (OpenAI defaults)", { temperature: 1 }],
  ["temperature 0.7, top_p 0.9", { temperature: 0.7, topP: 0.9 }],
  ["temperature 0.8, top_k 40", { temperature: 0.8, topK: 40 }],
];
console.log(`sampling one token from ${vocab} logits, best of 5 runs of ${draws}`);
for (const [name, opts] of requests) {
  const ours = usPerToken(sample, logits, opts), sorted = usPerToken(sortFirst, logits, opts);
  console.log(`${name}: sample() ${ours.toFixed(0)} us, sorting first ${sorted.toFixed(0)} us, ${(sorted / ours).toFixed(1)}x`);
}
