/**
 * How far apart two correct computations of SmolLM2-135M-Instruct (Q4_1 GGUF) land, on the 16
 * greedy chat prompts of test/llm.test.ts: llama.cpp (node-llama-cpp 3.21.1, CPU, threads 2)
 * answers each prompt greedily (up to 16 tokens) one token at a time, then every engine reads
 * prompt + answer and gives its next-token log-probabilities at each answer position.
 *
 *   bun bench/greedy-noise.ts [--system]
 *
 * Pairs compared: llama.cpp decoding one token at a time against llama.cpp reading the answer in
 * one batch (with --system the prompts get a system message, so a batch has at least 64 rows and
 * llama.cpp's CPU flash attention takes its tiled float32 path instead of the float16 one),
 * lanes (with a float16 and with a float32 KV cache) against llama.cpp, and lanes with a float16
 * KV cache against lanes with a float32 one.
 * For each pair: the prompts whose greedy token agrees at every step, and the mean |Δ log p|
 * over the tokens that either engine gives p > e⁻⁵.
 */
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import * as lx from "../src/index.ts";
import { defaultModelPath, loadTextModel } from "../src/models/text-model.ts";
import { greedyPrompts as prompts } from "../test/support/llama-cpp.ts";

const { values: args } = parseArgs({ options: { system: { type: "boolean", default: false } } });

const system =
  "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Answer briefly, clearly and correctly, in plain English, without repeating the question.";

/** Log-probabilities of one position: token id -> ln p. */
type LogProbs = Map<number, number>;

const lanes16 = loadTextModel(defaultModelPath());
const lanes32 = loadTextModel(defaultModelPath(), undefined, { kvCache: "float32" });
const tokenizer = lanes16.tokenizer;
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const refModel = await llama.loadModel({ modelPath: defaultModelPath() });
const context = await refModel.createContext({ threads: 2, contextSize: 2048, sequences: 1 });
const sequence = context.getSequence();
const stream = lx.newStream();

// Tokens far below p = e⁻⁵ are never compared; dropping them keeps the maps small.
const toLogProbs = (p: Map<Token, number>): LogProbs => {
  const out: LogProbs = new Map();
  for (const [t, q] of p) if (q > Math.exp(-10)) out.set(t as number, Math.log(q));
  return out;
};

/** llama.cpp's greedy answer, with its log-probabilities at each step (one token per decode). */
async function llamaDecode(ids: number[]): Promise<{ answer: number[]; steps: LogProbs[] }> {
  await sequence.clearHistory();
  const answer: number[] = [];
  const steps: LogProbs[] = [];
  for await (const r of sequence.evaluateWithMetadata(ids as Token[], { probabilities: true }, { temperature: 0 })) {
    steps.push(toLogProbs(r.probabilities));
    if (tokenizer.stopIds.includes(r.token)) break;
    answer.push(r.token);
    if (answer.length >= 16) break;
  }
  return { answer, steps };
}

/** llama.cpp's log-probabilities at the answer positions, prompt + answer in one batch. */
async function llamaBatch(ids: number[], answer: number[], n: number): Promise<LogProbs[]> {
  await sequence.clearHistory();
  const tokens = [...ids, ...answer].slice(0, ids.length + n - 1);
  const results = await sequence.controlledEvaluate(tokens.map((t, i) => (i >= ids.length - 1 ? [t as Token, { generateNext: { probabilities: true } }] : (t as Token))));
  return Array.from({ length: n }, (_, j) => toLogProbs(results[ids.length - 1 + j]!.next!.probabilities!));
}

/** lanes' log-probabilities at the answer positions, prompt + answer in one pass. */
async function lanesPass(model: typeof lanes16, ids: number[], answer: number[], n: number): Promise<LogProbs[]> {
  const step = model.model.stepLogits([...ids, ...answer.slice(0, n - 1)], undefined, stream, n);
  const lse = step.scope.t(lx.logsumexp(step.logits, -1, { keepdims: true }));
  const logProbs = step.scope.t(lx.subtract(step.logits, lse));
  await lx.evalAsync(logProbs);
  const all = logProbs.toFloat32Array();
  step.scope.disposeExcept([]);
  for (const c of step.state.caches) c.dispose();
  const V = model.model.vocab;
  return Array.from({ length: n }, (_, j) => {
    const row = new Map<number, number>();
    for (let t = 0; t < V; t++) if (all[j * V + t]! > -10) row.set(t, all[j * V + t]!);
    return row;
  });
}

const argmax = (lp: LogProbs) => [...lp].reduce((a, b) => (b[1] > a[1] ? b : a))[0];

/** Agreement of two engines over all prompts. */
class Pair {
  agreeing = 0;
  sum = 0;
  count = 0;
  constructor(readonly name: string) {}
  add(a: LogProbs[], b: LogProbs[]): void {
    let same = true;
    a.forEach((x, j) => {
      const y = b[j]!;
      if (argmax(x) !== argmax(y)) same = false;
      for (const [t, lp] of x) {
        const other = y.get(t);
        if (other !== undefined && Math.max(lp, other) > -5) {
          this.sum += Math.abs(lp - other);
          this.count++;
        }
      }
    });
    if (same) this.agreeing++;
  }
  toString(): string {
    return `${this.name.padEnd(52)} same greedy answer ${this.agreeing}/16, mean |Δ log p| ${(this.sum / this.count).toFixed(4)} nats`;
  }
}

const pairs = {
  llamaPaths: new Pair("llama.cpp decode vs llama.cpp one batch"),
  lanesLlama: new Pair("lanes (float16 cache) vs llama.cpp decode"),
  lanes32Llama: new Pair("lanes with a float32 cache vs llama.cpp decode"),
  lanesCaches: new Pair("lanes float16 cache vs lanes float32 cache"),
};
let rows = 0;
for (const prompt of prompts) {
  const messages = [...(args.system ? [{ role: "system" as const, content: system }] : []), { role: "user" as const, content: prompt }];
  const ids = tokenizer.encode(lanes16.applyChatTemplate(messages, { addGenerationPrompt: true }), { special: true });
  const { answer, steps } = await llamaDecode(ids);
  const n = steps.length;
  rows = Math.max(rows, ids.length + n - 1);
  const batch = await llamaBatch(ids, answer, n);
  const l16 = await lanesPass(lanes16, ids, answer, n);
  const l32 = await lanesPass(lanes32, ids, answer, n);
  pairs.llamaPaths.add(steps, batch);
  pairs.lanesLlama.add(l16, steps);
  pairs.lanes32Llama.add(l32, steps);
  pairs.lanesCaches.add(l16, l32);
}
console.log(`16 prompts${args.system ? " with a system message" : ""}, longest prompt + answer ${rows} tokens`);
for (const p of Object.values(pairs)) console.log(String(p));

stream.dispose();
lanes16.dispose();
lanes32.dispose();
await context.dispose();
await refModel.dispose();
await llama.dispose();
