/**
 * Where greedy `generate()` loses time against the same compiled decode steps queued back to
 * back (on an H200, 1.27 against 1.22 ms a SmolLM2-shaped step): each loop runs 64 steps after a
 * prompt, one variant at a time, over rounds.
 *   - `host-queued`: host token ids, every step recorded without waiting (the device's time);
 *   - `device-queued`: each step fed the last step's greedy token on the device, no waiting;
 *   - `awaited`: as `device-queued`, each step awaited (`evalAsync`) once the next is recorded;
 *   - `awaited-read`: as `awaited`, its token read to the host too (what `generate()` does);
 *   - `generate`: `generate()` itself, no checksums.
 *
 *   bun bench/generate-gap.ts MODEL.gguf [rounds]   (LANES_BACKEND=cuda for the GPU)
 */
import * as lx from "../src/index.ts";
import { generate } from "../src/models/generate.ts";
import { idPrompt, loadSyntheticModel } from "./llm-synthetic.ts";

const model = loadSyntheticModel(process.argv[2]!, { compiled: true });
const rounds = Number(process.argv[3] ?? 3);
const prompt = idPrompt(200);
const steps = 64;
using stream = lx.newStream();

type Variant = "host-queued" | "device-queued" | "awaited" | "awaited-read" | "generate";

async function msPerStep(variant: Variant): Promise<number> {
  if (variant === "generate") {
    let t0 = 0;
    const onToken = (_: number, i: number) => {
      if (i === 0) t0 = performance.now();
    };
    await generate(model, { tokens: prompt, maxTokens: steps + 1, checksums: false }, stream, { onToken });
    stream.synchronize();
    return (performance.now() - t0) / steps;
  }
  let last = model.step(prompt, undefined, stream);
  await lx.evalAsync(last.logits);
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    const greedy = last.greedy ?? last.scope.t(lx.argmax(last.logits, -1, { keepdims: true, stream }));
    const next = model.step(variant === "host-queued" ? [1] : greedy, last.state, stream);
    if (variant === "awaited" || variant === "awaited-read") {
      await lx.evalAsync(greedy);
      if (variant === "awaited-read") greedy.toInt32Array();
    }
    last.scope.disposeExcept([]);
    last = next;
  }
  await lx.evalAsync(last.logits);
  const ms = (performance.now() - t0) / steps;
  last.scope.disposeExcept([]);
  for (const c of last.state.caches) c.dispose();
  return ms;
}

const variants: Variant[] = ["host-queued", "device-queued", "awaited", "awaited-read", "generate"];
for (let round = 0; round < rounds; round++)
  for (const v of variants) console.log(`round ${round + 1} ${v}: ${(await msPerStep(v)).toFixed(3)} ms a step`);
