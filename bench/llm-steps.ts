/**
 * SmolLM2-135M-Instruct on one stream, no service around it: milliseconds of a prefill of
 * `--prompt` tokens (to its logits) and of each decode step after it (compiled step, one token
 * at a time, greedy). For profiling the kernels (`perf record -g bun bench/llm-steps.ts`) and for
 * comparing two builds in one run: give several libraries with `--libs a.so,b.so` and the rounds
 * alternate between them in child processes. `--modes compiled,eager` alternates compiled decode
 * steps with eager ones (every op built and evaluated each token) the same way.
 *
 * `--loop` picks what happens between decode steps: `greedy` (default) reads the argmax token of
 * each step and feeds it to the next, as a greedy generation does; `fixed` feeds token 1 and waits
 * for each step (the step's own round trip, no argmax); `pipelined` feeds token 1 and waits only
 * for the last step, so the device never waits on the host (the step's device time); `generate`
 * times `generate()` itself from its first token on (greedy, one step ahead on the device, no
 * checksums); `generate-serial` the same with `ahead: false` (each step read before the next is
 * recorded); `sampled` `generate()` at an OpenAI request's defaults (temperature 1, top_p 1, no
 * top_k), each step's logits read and sampled on the host; `batch` and `batch-serial` run the service's
 * continuous-batching path (`DecodeBatch`, one row, greedy) with and without the step ahead
 * (a batched step is always a compiled plan, so these take `--modes compiled`).
 *
 * `--model PATH` runs a tokenizer-less GGUF (bench/llm-synthetic.ts writes a SmolLM2-shaped one for
 * the GPU machine, which can't take the real file) on a prompt of plain token ids.
 *
 *   bun bench/llm-steps.ts [--prompt 200] [--decode 64] [--rounds 5] [--libs a.so,b.so] [--modes compiled,eager] [--only prefill|decode] [--model PATH] [--loop greedy|fixed|pipelined|generate|generate-serial|sampled|batch|batch-serial]
 */
import { parseArgs } from "node:util";
import * as lx from "../src/index.ts";
import { type BatchRow, DecodeBatch } from "../src/models/batch.ts";
import { generate } from "../src/models/generate.ts";
import type { LlamaModel } from "../src/models/llama.ts";
import { loadTextModel } from "../src/models/text-model.ts";
import { idPrompt, loadSyntheticModel } from "./llm-synthetic.ts";

const { values: args } = parseArgs({
  options: {
    prompt: { type: "string", default: "200" },
    decode: { type: "string", default: "64" },
    rounds: { type: "string", default: "5" },
    libs: { type: "string" },
    only: { type: "string" },
    modes: { type: "string", default: "compiled" },
    model: { type: "string" },
    loop: { type: "string", default: "greedy" },
    child: { type: "boolean", default: false },
  },
});
const promptLength = Number(args.prompt);
const decodeSteps = Number(args.decode);
const rounds = Number(args.rounds);
const loops = ["greedy", "fixed", "pipelined", "generate", "generate-serial", "sampled", "batch", "batch-serial"];
if (!loops.includes(args.loop)) throw new Error(`--loop ${args.loop}: one of ${loops.join(", ")}`);

/** One round's figures: the prefill's milliseconds and the mean milliseconds of a decode step. */
interface Round {
  prefillMs: number;
  decodeMs: number;
}

async function measure(): Promise<Round> {
  const compiled = args.modes !== "eager";
  let model: LlamaModel, prompt: number[];
  if (args.model) {
    model = loadSyntheticModel(args.model, { compiled });
    prompt = idPrompt(promptLength);
  } else {
    const tm = loadTextModel(undefined, undefined, { compiled });
    model = tm.model;
    const text = "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun. ".repeat(40);
    prompt = tm.tokenizer.encode(text).slice(0, promptLength);
  }
  using stream = lx.newStream();
  let prefillMs = 0, decodeMs = 0;
  if (args.only !== "decode") {
    const t0 = performance.now();
    const p = model.step(prompt, undefined, stream);
    await lx.evalAsync(p.logits);
    prefillMs = performance.now() - t0;
  }
  if (args.only !== "prefill" && args.loop.startsWith("batch")) {
    using batch = new DecodeBatch(model, stream);
    const first = model.step(prompt, undefined, stream);
    const token = lx.argmax(first.logits, -1).toInt32Array()[0]!;
    first.scope.disposeExcept(first.state.caches);
    const row = batch.join(first.state);
    let next = new Map<BatchRow, number>([[row, token]]);
    next = new Map([[row, (await batch.step(next)).get(row)!.greedy]]);
    const t0 = performance.now();
    for (let i = 0; i < decodeSteps; ++i) next = new Map([[row, (await batch.step(next, { ahead: args.loop === "batch" })).get(row)!.greedy]]);
    decodeMs = (performance.now() - t0) / decodeSteps;
  } else if (args.only !== "prefill" && (args.loop.startsWith("generate") || args.loop === "sampled")) {
    let first = 0;
    const onToken = (_: number, i: number) => i === 0 && (first = performance.now());
    // `sampled`: an OpenAI request's defaults, temperature 1 over the whole vocabulary, seeded.
    const sampling = args.loop === "sampled" ? { temperature: 1, seed: 1 } : {};
    await generate(model, { tokens: prompt, maxTokens: decodeSteps + 1, checksums: false, ...sampling }, stream, { onToken, ahead: args.loop === "generate" });
    decodeMs = (performance.now() - first) / decodeSteps;
  } else if (args.only !== "prefill") {
    let step = model.step(prompt, undefined, stream);
    await lx.evalAsync(step.logits);
    const t0 = performance.now();
    for (let i = 0; i < decodeSteps; ++i) {
      const token = args.loop === "greedy" ? lx.argmax(step.logits, -1).toInt32Array()[0]! : 1;
      step = model.step([token], step.state, stream);
      if (args.loop !== "pipelined" || i === decodeSteps - 1) await lx.evalAsync(step.logits);
    }
    decodeMs = (performance.now() - t0) / decodeSteps;
  }
  return { prefillMs, decodeMs };
}

if (args.child) {
  // The first round in a process warms its plans and caches; the second is the one reported.
  await measure();
  console.log(JSON.stringify(await measure()));
} else {
  const libs = args.libs ? args.libs.split(",") : [""];
  const runs = libs.flatMap((lib) => args.modes.split(",").map((mode) => ({ lib, mode, name: `${lib || "(default)"} ${mode}` })));
  const best = new Map<string, Round>();
  for (let r = 0; r < rounds; ++r) {
    for (const { lib, mode, name } of r % 2 ? [...runs].reverse() : runs) {
      const env = { ...process.env, ...(lib ? { LANES_LIBRARY_PATH: lib } : {}) };
      const argv = [process.execPath, import.meta.path, "--child", "--prompt", String(promptLength), "--decode", String(decodeSteps), "--modes", mode];
      if (args.only) argv.push("--only", args.only);
      if (args.model) argv.push("--model", args.model);
      argv.push("--loop", args.loop);
      const proc = Bun.spawnSync(argv, { env, stderr: "inherit" });
      const round = JSON.parse(proc.stdout.toString().trim().split("\n").pop()!) as Round;
      const b = best.get(name) ?? { prefillMs: Infinity, decodeMs: Infinity };
      best.set(name, { prefillMs: Math.min(b.prefillMs, round.prefillMs), decodeMs: Math.min(b.decodeMs, round.decodeMs) });
      console.log(`round ${r + 1} ${name}: prefill(${promptLength}) ${round.prefillMs.toFixed(1)} ms, decode ${round.decodeMs.toFixed(2)} ms/token`);
    }
  }
  console.log(`\nbest of ${rounds} rounds:`);
  for (const [name, b] of best)
    console.log(`${name}: prefill(${promptLength}) ${b.prefillMs.toFixed(1)} ms, decode ${b.decodeMs.toFixed(2)} ms/token (${(1000 / b.decodeMs).toFixed(1)} tok/s)`);
}
