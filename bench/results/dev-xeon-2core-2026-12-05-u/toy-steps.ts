import * as lx from "../../../src/index.ts";
import { defaultModels } from "../../../src/serve/models.ts";
const model = defaultModels().find((m) => m.name === "transformer")!;
const prompt = Array.from({ length: 16 }, (_, i) => 65 + i);
const stream = lx.defaultStream();
function run(mode: string): number {
  let step = model.step(prompt, undefined, stream);
  lx.eval(step.logits);
  const t0 = performance.now();
  for (let i = 0; i < 64; i++) {
    const g = step.greedy ?? step.scope.t(lx.argmax(step.logits, -1, { keepdims: true, stream }));
    const next = model.step(mode === "host" ? [66] : g, step.state, stream);
    if (mode === "read") { lx.eval(next.logits); }
    step.scope.disposeExcept([]);
    step = next;
  }
  lx.eval(step.logits);
  const us = (performance.now() - t0) / 64 * 1000;
  step.scope.disposeExcept([]); for (const c of step.state.caches) c.dispose();
  return us;
}
for (const mode of (process.env.MODES ?? "host,device,read").split(",")) {
  let best = 1e9; for (let r = 0; r < 200; r++) best = Math.min(best, run(mode));
  console.log(`${mode}: best ${best.toFixed(1)} us/step`);
}
