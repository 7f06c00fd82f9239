// Time of one 200-token prefill of SmolLM2-135M-Instruct (the real model) through
// LlamaModel.step, up to its first greedy token: 10 timed runs after 2 warm-up runs, in ms.
// Compare kernel paths with LANES_CPU_SIMD (e.g. avx512 against the default, AMX included).
//   bun bench/prefill.ts
import * as lx from "../src/index.ts";
import { defaultModelPath, loadTextModel } from "../src/models/text-model.ts";

const model = loadTextModel(defaultModelPath());
const stream = lx.newStream();
const ids = Array.from({ length: 200 }, (_, i) => 100 + ((i * 37) % 5000));
const times: number[] = [];
for (let r = 0; r < 12; r++) {
  const t0 = performance.now();
  const step = model.model.step(ids, undefined, stream);
  const next = step.scope.t(lx.argmax(step.logits));
  await lx.evalAsync(next, ...step.state.caches);
  next.item();
  step.scope.disposeExcept([]);
  for (const c of step.state.caches) c.dispose();
  if (r >= 2) times.push(performance.now() - t0);
}
times.sort((a, b) => a - b);
console.log(`200-token prefill (${lx.backendName()}): min ${times[0]!.toFixed(1)} ms, median ${times[times.length >> 1]!.toFixed(1)} ms`);
stream.dispose();
model.dispose();
