// What a compiled replay saves on the host (issue 14's CPU target): the 29-kernel graph of
// bench/scaling-worker.ts at 16×16, where kernel time is negligible, built and evaluated
// eagerly against replayed from `lx.compile` and evaluated, one stream, same run; then a toy
// transformer's decode at one request, eager steps against compiled steps.
//   bun bench/compile-host.ts
import * as lx from "../src/index.ts";
import { smallGraph } from "./small-graph.ts";
import { generate } from "../src/models/generate.ts";
import { architectures, buildModel } from "../src/models/models.ts";
import { defaultModels } from "../src/serve/models.ts";
import { bestMs } from "./timing.ts";

const n = 16, graphs = 2000;
const x = lx.random.normal([n, n], { seed: 1 });
const w = lx.random.normal([n, n], { seed: 2, scale: 0.1 });
const b = lx.random.normal([1, n], { seed: 3 });
lx.eval(x, w, b);
const compiled = lx.compile((v: lx.LanesArray) => smallGraph(v, w, b));
const eagerOnce = () => {
  const y = lx.tidy(() => smallGraph(x, w, b));
  lx.eval(y);
  y.dispose();
};
const compiledOnce = () => {
  const y = compiled(x) as lx.LanesArray;
  lx.eval(y);
  y.dispose();
};
eagerOnce();
compiledOnce();
const eagerUs = (bestMs(() => { for (let i = 0; i < graphs; i++) eagerOnce(); }) / graphs) * 1000;
const compiledUs = (bestMs(() => { for (let i = 0; i < graphs; i++) compiledOnce(); }) / graphs) * 1000;
console.log(`29-kernel graph at ${n}x${n}, ${lx.backendName()}: eager ${eagerUs.toFixed(1)} us, compiled ${compiledUs.toFixed(1)} us, ratio ${(eagerUs / compiledUs).toFixed(2)}x (target >= 5x)`);
compiled.dispose();

// The toy transformer's decode: 64 tokens greedy at one request, eager against compiled steps.
// A generation takes about 10-40 ms, so the two modes alternate round by round (the same
// machine weather for both) over many rounds; the best of each, and the median of the rounds'
// ratios beside it.
const transformer = defaultModels().find((m) => m.name === "transformer")!;
const eagerTransformer = buildModel("transformer", architectures.transformer!, new Map(transformer.weights), { compiled: false });
const prompt = Array.from({ length: 16 }, (_, i) => 65 + i);
const rounds = Number(process.env.LANES_BENCH_ROUNDS ?? 15);
const generation = async (compile: boolean) => {
  const t = performance.now();
  await generate(compile ? transformer : eagerTransformer, { tokens: prompt, maxTokens: 64, temperature: 0 }, lx.defaultStream());
  return performance.now() - t;
};
await generation(false);
await generation(true);
const ms = { eager: [] as number[], compiled: [] as number[] };
for (let r = 0; r < rounds; r++) {
  const eagerFirst = r % 2 === 0;
  const first = await generation(!eagerFirst), second = await generation(eagerFirst);
  ms.eager.push(eagerFirst ? first : second);
  ms.compiled.push(eagerFirst ? second : first);
}
const tokS = (t: number) => 64 / (t / 1000);
const bestEager = Math.min(...ms.eager), bestCompiled = Math.min(...ms.compiled);
const ratios = ms.eager.map((e, i) => e / ms.compiled[i]!).sort((a, b) => a - b);
const median = ratios[Math.floor(ratios.length / 2)]!;
console.log(
  `toy transformer decode, 1 request, best of ${rounds} alternated rounds: eager ${tokS(bestEager).toFixed(0)} tok/s, compiled ${tokS(bestCompiled).toFixed(0)} tok/s, ` +
    `ratio ${(bestEager / bestCompiled).toFixed(2)}x (target >= 3x); rounds' median ${median.toFixed(2)}x, range ${ratios[0]!.toFixed(2)}-${ratios.at(-1)!.toFixed(2)}x`,
);
