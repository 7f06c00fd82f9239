/**
 * SmolLM2-135M-Instruct (Q4_1 GGUF) under concurrent chats: lanes with continuous batching
 * (the service's batching engine), lanes with a stream per request (the per-stream engine), and
 * llama.cpp (node-llama-cpp 3.21.1, CPU, threads 2, one context with a sequence per chat), in
 * the same run. Greedy (temperature 0) answers of up to 64 tokens, ending at the model's end
 * tokens; at each level, `chats` clients each run `--per-chat` chats back to back, with a
 * different prompt each. Tokens/s is every generated token over the level's wall time (prefill
 * included). Also the time to first token of a 200-token prompt, alone. Rounds alternate the
 * engines' order; best-of is kept.
 *
 * `--temperature T` samples instead (top_p 1, no top_k, a seed per chat) in every engine.
 *
 *   bun bench/llm.ts [--rounds 3] [--tokens 64] [--chats 1,4,8] [--per-chat 2] [--no-llama-cpp] [--temperature 1]
 *
 * CUDA (no llama.cpp; the lead's PyTorch reference runs beside it): exactly `--tokens` tokens
 * per chat (end tokens do not stop it), one JSON line per engine and level.
 *
 *   LANES_BACKEND=cuda bun bench/llm.ts --cuda [--chats 1,8,32] [--prompts-out prompts.json]
 *
 * `--model PATH --prompt N` runs a GGUF without a tokenizer (bench/llm-synthetic.ts writes one
 * with SmolLM2's shapes): every chat's prompt is the N token ids 1000, 1001, ..., the workload
 * bench/llm_torch.py runs, and `--per-chat 1` makes each level one batch that starts together.
 */
import { parseArgs } from "node:util";
import { readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { CancelledError } from "../src/models/generate.ts";
import type { Model } from "../src/models/models.ts";
import type { LlamaModel } from "../src/models/llama.ts";
import { defaultModelPath, loadTextModel } from "../src/models/text-model.ts";
import { BatchingEngine } from "../src/serve/batching.ts";
import { type Engine as ServeEngine, InProcessEngine } from "../src/serve/engine.ts";
import type { GenerationResult } from "../src/serve/generation.ts";
import { idPrompt, loadSyntheticModel } from "./llm-synthetic.ts";

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    tokens: { type: "string", default: "64" },
    chats: { type: "string" },
    "per-chat": { type: "string", default: "2" },
    cuda: { type: "boolean", default: false },
    "prompts-out": { type: "string" },
    "no-llama-cpp": { type: "boolean", default: false },
    model: { type: "string" },
    prompt: { type: "string", default: "32" },
    temperature: { type: "string", default: "0" },
  },
});
const cuda = args.cuda!;
const rounds = Number(args.rounds);
const maxTokens = Number(args.tokens);
const perChat = Number(args["per-chat"]);
// Above 0, every engine samples at this temperature over the whole vocabulary (top_p 1, no
// top_k: an OpenAI request's defaults at temperature 1), each chat with its own seed.
const temperature = Number(args.temperature);
let seeds = 0;
const levels = (args.chats ?? (cuda ? "1,8,32" : "1,4,8")).split(",").map(Number);
if (cuda && lx.backendName() !== "cuda") throw new Error(`--cuda needs LANES_BACKEND=cuda (the backend is ${lx.backendName()})`);

/** What one level of concurrency gave an engine. */
interface LevelResult {
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

/** An engine generating greedily from token ids. */
interface BenchEngine {
  name: string;
  /** Runs `prompts` as `chats` concurrent clients, each taking the next prompt when its chat ends. */
  level(prompts: readonly number[][], chats: number): Promise<LevelResult>;
  /** Milliseconds to the first token of `prompt`, alone. */
  firstToken(prompt: readonly number[]): Promise<number>;
  dispose(): Promise<void>;
}

// A tokenizer-less GGUF (--model) gets prompts of plain token ids.
function loadBenchModel(): { model: LlamaModel; stopIds: readonly number[]; encodeChat: (text: string) => number[]; dispose(): void } {
  if (args.model) {
    const model = loadSyntheticModel(args.model);
    return { model, stopIds: [], encodeChat: () => idPrompt(Number(args.prompt)), dispose: () => model.dispose() };
  }
  const tm = loadTextModel(defaultModelPath());
  return {
    model: tm.model,
    stopIds: tm.tokenizer.stopIds,
    encodeChat: (text) => tm.tokenizer.encode(tm.applyChatTemplate([{ role: "user", content: text }], { addGenerationPrompt: true }), { special: true }),
    dispose: () => tm.dispose(),
  };
}
const tm = loadBenchModel();
// On CUDA every chat runs to exactly --tokens tokens, so the workload is the same for any engine.
const stopIds = cuda ? [] : tm.stopIds;
const encodeChat = tm.encodeChat;

// `chats` clients draining one list of prompts: the next free client takes the next prompt.
async function clients(prompts: readonly number[][], chats: number, chat: (prompt: readonly number[]) => Promise<number>): Promise<LevelResult> {
  let next = 0;
  let tokens = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: chats }, async () => {
      while (next < prompts.length) {
        const n = await chat(prompts[next++]!);
        tokens += n;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  return { tokens, seconds, tokensPerSecond: tokens / seconds };
}

/** lanes through one of the service's engines (no HTTP): the batching engine or the per-stream one. */
function lanesEngine(name: string, make: (models: Map<string, Model>, chats: number) => ServeEngine): BenchEngine {
  const models = new Map<string, Model>([[tm.model.name, tm.model]]);
  const engines = new Map<number, ServeEngine>();
  const engineFor = (chats: number) => {
    let e = engines.get(chats);
    if (!e) engines.set(chats, (e = make(models, chats)));
    return e;
  };
  const run = async (engine: ServeEngine, prompt: readonly number[], n: number, onToken?: () => void) => {
    const params = { tokens: [...prompt], maxTokens: n, temperature, seed: ++seeds, stopIds, checksums: false };
    const r = (await engine.run({ kind: "generate", model: tm.model.name, params }, new AbortController().signal, onToken)) as GenerationResult;
    return r.tokens.length;
  };
  return {
    name,
    level: (prompts, chats) => {
      const engine = engineFor(chats);
      return clients(prompts, chats, (p) => run(engine, p, maxTokens));
    },
    async firstToken(prompt) {
      const start = performance.now();
      let first = 0;
      const ac = new AbortController();
      const params = { tokens: [...prompt], maxTokens: 2, temperature: 0, stopIds, checksums: false };
      await engineFor(1)
        .run({ kind: "generate", model: tm.model.name, params }, ac.signal, () => {
          first ||= performance.now() - start;
          ac.abort();
        })
        .catch((e: unknown) => {
          if (!(e instanceof CancelledError)) throw e;
        });
      return first;
    },
    async dispose() {
      for (const e of engines.values()) await e.dispose();
    },
  };
}

async function llamaCppEngine(): Promise<BenchEngine> {
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: defaultModelPath() });
  type Context = Awaited<ReturnType<typeof model.createContext>>;
  const contexts = new Map<number, Context>();
  // One context per level with a sequence per chat: llama.cpp decodes the sequences of a context together.
  const contextFor = async (chats: number) => {
    let c = contexts.get(chats);
    if (!c) contexts.set(chats, (c = await model.createContext({ threads: 2, contextSize: 1024, sequences: chats })));
    return c;
  };
  const chat = async (sequence: ReturnType<Context["getSequence"]>, prompt: readonly number[], n: number, onToken?: () => boolean) => {
    await sequence.clearHistory();
    let count = 0;
    const sampling = temperature > 0 ? { temperature, topK: 0, topP: 1, seed: ++seeds } : { temperature: 0 };
    for await (const token of sequence.evaluate(prompt.map((t) => t as never), sampling)) {
      if (stopIds.includes(token as number) || onToken?.() === false) break;
      if (++count >= n) break;
    }
    return count;
  };
  return {
    name: "llama.cpp (node-llama-cpp 3.21.1, Q4_1, threads 2)",
    async level(prompts, chats) {
      const context = await contextFor(chats);
      const sequences = Array.from({ length: chats }, () => context.getSequence());
      try {
        let next = 0;
        let tokens = 0;
        const start = performance.now();
        await Promise.all(
          sequences.map(async (s) => {
            while (next < prompts.length) {
              const n = await chat(s, prompts[next++]!, maxTokens);
              tokens += n;
            }
          }),
        );
        const seconds = (performance.now() - start) / 1000;
        return { tokens, seconds, tokensPerSecond: tokens / seconds };
      } finally {
        for (const s of sequences) s.dispose();
      }
    },
    async firstToken(prompt) {
      const sequence = (await contextFor(1)).getSequence();
      try {
        const start = performance.now();
        let first = 0;
        await chat(sequence, prompt, 1, () => {
          first = performance.now() - start;
          return false;
        });
        return first;
      } finally {
        sequence.dispose();
      }
    },
    async dispose() {
      for (const c of contexts.values()) await c.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

const chatPrompts = [
  "Explain how a rainbow forms, step by step.",
  "Write a short story about a robot learning to paint.",
  "Describe the water cycle in detail.",
  "Give me five tips for learning a new language, with a sentence on each.",
  "What are the main differences between a cat and a dog as pets?",
  "Summarize the plot of a heist movie you would like to see.",
  "How does a bicycle stay upright while moving?",
  "List some healthy breakfast ideas and why they are good.",
];

const batched = lanesEngine(`lanes batched (${lx.backendName()})`, (models, chats) => new BatchingEngine(models, new InProcessEngine(models, 1, 0), { maxBatch: Math.max(chats, 16), queue: 1024 }));
const perStream = lanesEngine(`lanes per-stream (${lx.backendName()})`, (models, chats) => new InProcessEngine(models, chats, 1024));
const engines: BenchEngine[] = [batched, perStream];
const withLlamaCpp = !cuda && !args["no-llama-cpp"] && !args.model;
if (withLlamaCpp) engines.push(await llamaCppEngine());

const document = readFileSync(join(import.meta.dir, "..", "test", "fixtures", "declaration-of-independence.txt"), "utf8");
const longPrompt = args.model ? idPrompt(200) : encodeChat(document).slice(0, 200);
// Each level runs `per-chat` chats per client (the prompts cycle).
const promptsFor = (chats: number) => Array.from({ length: chats * perChat }, (_, i) => encodeChat(chatPrompts[i % chatPrompts.length]!));
if (args["prompts-out"])
  writeFileSync(args["prompts-out"], JSON.stringify({ tokens: maxTokens, longPrompt, prompts: chatPrompts.map(encodeChat) }));

// Warm every engine at every level (first-use allocations, compiled plans, page faults on the weights).
for (const e of engines) {
  await e.firstToken(longPrompt);
  for (const chats of levels) await e.level(promptsFor(chats).slice(0, chats), chats);
}

const best = new Map<string, LevelResult>(); // `${engine}@${chats}`
const ttft = new Map<string, number>();
for (let r = 0; r < rounds; r++) {
  for (const e of r % 2 === 0 ? engines : [...engines].reverse()) {
    const t = await e.firstToken(longPrompt);
    ttft.set(e.name, Math.min(ttft.get(e.name) ?? Infinity, t));
    for (const chats of levels) {
      const res = await e.level(promptsFor(chats), chats);
      const key = `${e.name}@${chats}`;
      if ((best.get(key)?.tokensPerSecond ?? 0) < res.tokensPerSecond) best.set(key, res);
      if (cuda) console.log(JSON.stringify({ engine: e.name, backend: lx.backendName(), chats, round: r + 1, ...res, tokensPerChat: maxTokens, firstTokenMs200: t }));
      else console.log(`round ${r + 1} ${e.name}, ${chats} chats: ${res.tokensPerSecond.toFixed(1)} tok/s (${res.tokens} tokens in ${res.seconds.toFixed(2)} s)`);
    }
    if (!cuda) console.log(`round ${r + 1} ${e.name}: TTFT(200) ${t.toFixed(0)} ms`);
  }
}

const at = (e: BenchEngine, chats: number) => best.get(`${e.name}@${chats}`)!.tokensPerSecond;
if (cuda || !withLlamaCpp) {
  for (const chats of levels)
    console.log(JSON.stringify({ summary: true, backend: lx.backendName(), chats, batched: at(batched, chats), perStream: at(perStream, chats), firstTokenMs200: ttft.get(batched.name) }));
} else {
  const ref = engines[2]!;
  console.log(`\nSmolLM2-135M-Instruct, ${temperature > 0 ? `sampled at temperature ${temperature}` : "greedy"}, answers up to ${maxTokens} tokens, ${perChat} chats per client, best of ${rounds} rounds (machine load ${loadavg()[0]!.toFixed(1)})`);
  console.log("| concurrent chats | lanes batched tok/s | lanes per-stream tok/s | llama.cpp tok/s | batched / llama.cpp | per-stream / llama.cpp |");
  console.log("|---|---|---|---|---|---|");
  for (const chats of levels) {
    const [b, s, c] = [at(batched, chats), at(perStream, chats), at(ref, chats)];
    console.log(`| ${chats} | ${b.toFixed(1)} | ${s.toFixed(1)} | ${c.toFixed(1)} | ${(b / c).toFixed(2)}× | ${(s / c).toFixed(2)}× |`);
  }
  const [tb, ts, tc] = [ttft.get(batched.name)!, ttft.get(perStream.name)!, ttft.get(ref.name)!];
  console.log(`| time to first token, 200-token prompt | ${tb.toFixed(0)} ms | ${ts.toFixed(0)} ms | ${tc.toFixed(0)} ms | ${(tb / tc).toFixed(2)}× | ${(ts / tc).toFixed(2)}× |`);
  // llama.cpp's known rate here is 46–56 tok/s for one greedy chat (threads 2); far below it, the
  // machine was busy. Sampling over the whole vocabulary costs it more (about 40 tok/s here).
  if (temperature === 0 && at(ref, 1) < 40) console.log(`\nllama.cpp ran at ${at(ref, 1).toFixed(1)} tok/s for one chat, far below its 46–56: the machine is loaded, rerun when it is quiet.`);
}
for (const e of engines) await e.dispose();
tm.dispose();
