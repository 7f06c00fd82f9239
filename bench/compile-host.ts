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
const transformer = defaultModels().find((m) => m.name === "transformer")!;
const eagerTransformer = buildModel("transformer", architectures.transformer!, new Map(transformer.weights), { compiled: false });
const prompt = Array.from({ length: 16 }, (_, i) => 65 + i);
const rates: Record<string, number> = {};
for (const compile of [false, true]) {
  const run = () => generate(compile ? transformer : eagerTransformer, { tokens: prompt, maxTokens: 64, temperature: 0 }, lx.defaultStream());
  await run();
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    await run();
    best = Math.min(best, performance.now() - t);
  }
  rates[compile ? "compiled" : "eager"] = 64 / (best / 1000);
}
console.log(`toy transformer decode, 1 request: eager ${rates.eager!.toFixed(0)} tok/s, compiled ${rates.compiled!.toFixed(0)} tok/s, ratio ${(rates.compiled! / rates.eager!).toFixed(2)}x (target >= 3x)`);
