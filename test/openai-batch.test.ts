// The OpenAI endpoints in batching mode (continuous batching, src/serve/batching.ts), through the
// official `openai` client with many clients at once, on a tiny GGUF Llama written by the test.
// Every answer is checked against a serial run of the same request on a stream of its own
// (runGeneration, the per-stream engine's loop), decoded with the model's tokenizer. Also: the
// per-stream mode gives the same answers, 429 past the batch and its queue, a client that goes
// away frees its place while the others go on, and the metrics count what was generated.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import * as lx from "../src/index.ts";
import { type GgufTextModel, loadTextModel } from "../src/models/text-model.ts";
import { type GenerationParams, runGeneration } from "../src/serve/generation.ts";
import { type Service, serve } from "../src/serve/server.ts";
import { tinyLlamaGguf } from "./support/tiny-llama.ts";

let dir: string;
let tm: GgufTextModel;
let svc: Service;
let client: OpenAI;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lanes-batch-"));
  const path = join(dir, "tiny.gguf");
  writeFileSync(path, tinyLlamaGguf(21, { "llama.context_length": { type: "uint32", value: 2048 } }, { outputHead: true }));
  tm = loadTextModel(path, "tiny");
  svc = await serve({ textModels: [tm], port: 0, workers: 0, batch: 8, queue: 32, maxTokens: 2000, maxN: 4 });
  client = new OpenAI({ baseURL: `${svc.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(async () => {
  await svc.shutdown();
  tm.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const chatTokens = (content: string) => tm.tokenizer.encode(tm.applyChatTemplate([{ role: "user", content }], { addGenerationPrompt: true }), { special: true });
// The seed the service gives choice `index` of a request seeded with `seed` (seed + index, in 32 bits).
const choiceSeed = (seed: number, index: number) => (seed + index) >>> 0;

/** The serial answer: the request alone on a stream of its own, decoded as the endpoint decodes it. */
async function serial(tokens: number[], params: Omit<GenerationParams, "tokens" | "stopIds">) {
  using stream = lx.newStream();
  const r = await runGeneration(tm.model, { ...params, tokens, stopIds: tm.tokenizer.stopIds }, stream);
  return { text: tm.tokenizer.decode(r.tokens, { skipSpecial: true }), finishReason: r.finishReason, tokens: r.tokens.length + (r.endToken === undefined ? 0 : 1) };
}

async function streamedText(s: AsyncIterable<OpenAI.Completions.Completion>): Promise<{ text: string; finish: string | null }> {
  let text = "";
  let finish: string | null = null;
  for await (const c of s) {
    text += c.choices[0]?.text ?? "";
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  return { text, finish };
}

describe("OpenAI endpoints with continuous batching", () => {
  test("many concurrent clients (chat and completions, whole and streamed, greedy and seeded, n > 1) each get the serial answer", async () => {
    const prompts = ["abc", "hello", "q", "the0quick1brown2fox", "zz", "xyzzy42", "a", "lanes"];
    const requests = prompts.map(async (content, i) => {
      const maxTokens = 10 + 9 * i;
      if (i % 3 === 0) {
        const r = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content }], max_tokens: maxTokens, temperature: 0 });
        const want = await serial(chatTokens(content), { maxTokens, temperature: 0, seed: 0 });
        expect({ i, text: r.choices[0]!.message.content, finish: r.choices[0]!.finish_reason }).toEqual({ i, text: want.text, finish: want.finishReason });
        expect(r.usage!.completion_tokens).toBe(want.tokens);
      } else if (i % 3 === 1) {
        const ids = tm.tokenizer.encode(content);
        const r = await client.completions.create({ model: "tiny", prompt: ids, max_tokens: maxTokens, temperature: 1, top_p: 0.8, seed: 7 * i, n: 2 });
        for (const [j, choice] of r.choices.entries()) {
          const want = await serial(ids, { maxTokens, temperature: 1, topP: 0.8, seed: choiceSeed(7 * i, j) });
          expect({ i, j, text: choice.text, finish: choice.finish_reason }).toEqual({ i, j, text: want.text, finish: want.finishReason });
        }
      } else {
        const ids = tm.tokenizer.encode(content);
        const got = await streamedText(await client.completions.create({ model: "tiny", prompt: ids, max_tokens: maxTokens, temperature: 0, stream: true }));
        const want = await serial(ids, { maxTokens, temperature: 0, seed: 0 });
        expect({ i, ...got }).toEqual({ i, text: want.text, finish: want.finishReason });
      }
    });
    await Promise.all(requests);
    // They were decoded together: more rows than steps.
    const { steps, rows } = svc.load().batch!;
    expect(rows / steps).toBeGreaterThan(2);
  });

  test("the per-stream mode (--batch 0) gives the same answers", async () => {
    const perStream = await serve({ textModels: [tm], port: 0, workers: 0, batch: 0, streams: 2 });
    try {
      const local = new OpenAI({ baseURL: `${perStream.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const body = { model: "tiny", prompt: "batching", max_tokens: 40, temperature: 1, seed: 3, n: 3 };
      const [a, b] = await Promise.all([local.completions.create(body), client.completions.create(body)]);
      expect(a.choices.map((c) => c.text)).toEqual(b.choices.map((c) => c.text));
      expect(perStream.load().size).toBe(2);
    } finally {
      await perStream.shutdown();
    }
  });

  test("stop strings end an answer early while the others in the batch go on", async () => {
    const ids = tm.tokenizer.encode("stop");
    const want = await serial(ids, { maxTokens: 60, temperature: 0, seed: 0 });
    // A stop string first seen inside the answer (two of its tokens' text): the answer is cut right before it.
    const answer = (await runGeneration(tm.model, { tokens: ids, maxTokens: 60, temperature: 0, stopIds: tm.tokenizer.stopIds }, lx.defaultStream())).tokens;
    const candidates = answer.slice(1).map((_, k) => tm.tokenizer.decode(answer.slice(k + 1, k + 3), { skipSpecial: true }));
    const stopAt = candidates.find((c) => c.length > 0 && want.text.indexOf(c) > 0) ?? "";
    const [cut, full] = await Promise.all([
      client.completions.create({ model: "tiny", prompt: ids, max_tokens: 60, temperature: 0, stop: [stopAt] }),
      client.completions.create({ model: "tiny", prompt: ids, max_tokens: 60, temperature: 0 }),
    ]);
    expect(full.choices[0]!.text).toBe(want.text);
    expect(stopAt.length).toBeGreaterThan(0);
    expect(want.text.indexOf(stopAt)).toBeGreaterThan(0);
    expect(cut.choices[0]!.text).toBe(want.text.slice(0, want.text.indexOf(stopAt)));
    expect(cut.choices[0]!.finish_reason).toBe("stop");
  });
});

describe("batch places, the queue, cancellation and metrics", () => {
  test("past the batch and its queue: 429; what waited runs once a place frees", async () => {
    const tiny = await serve({ textModels: [tm], port: 0, workers: 0, batch: 1, queue: 1, maxTokens: 2000 });
    const until = async (done: () => boolean) => {
      while (!done()) await Bun.sleep(2);
    };
    try {
      const local = new OpenAI({ baseURL: `${tiny.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const ids = tm.tokenizer.encode("busy");
      // About a second of decoding (this prompt's greedy answer runs to max_tokens).
      const long = { model: "tiny", prompt: ids, max_tokens: 1500, temperature: 0 };
      const wide = await local.completions.create({ ...long, n: 3 }).catch((e: unknown) => e);
      expect(wide).toBeInstanceOf(OpenAI.RateLimitError);
      let firstDone = false;
      const first = local.completions.create(long).finally(() => (firstDone = true));
      await until(() => tiny.load().busy === 1);
      const second = local.completions.create({ ...long, stream: true });
      await until(() => tiny.load().queued === 1);
      const third = (await local.completions.create(long).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(firstDone).toBe(false);
      expect(third.status).toBe(429);
      expect(third.code).toBe("queue_full");
      const want = await serial(ids, { maxTokens: 1500, temperature: 0, seed: 0 });
      expect((await first).choices[0]!.text).toBe(want.text);
      expect((await streamedText(await second)).text).toBe(want.text);
    } finally {
      await tiny.shutdown();
    }
  });

  test("a streaming client that goes away leaves the batch at the next step; the others finish with their serial answers", async () => {
    const own = await serve({ textModels: [tm], port: 0, workers: 0, batch: 4, streams: 4 });
    try {
      const local = new OpenAI({ baseURL: `${own.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const ids = tm.tokenizer.encode("stay");
      const stayer = local.completions.create({ model: "tiny", prompt: ids, max_tokens: 180, temperature: 0 });
      const leaver = await local.completions.create({ model: "tiny", prompt: tm.tokenizer.encode("leave"), max_tokens: 180, temperature: 0, stream: true });
      let chunks = 0;
      for await (const _ of leaver) if (++chunks === 3) break; // leaving the loop aborts the request
      const want = await serial(ids, { maxTokens: 180, temperature: 0, seed: 0 });
      expect((await stayer).choices[0]!.text).toBe(want.text);
      const deadline = Date.now() + 5000;
      while ((own.load().busy > 0 || own.metrics.inFlight > 0) && Date.now() < deadline) await Bun.sleep(10);
      expect({ ...own.load(), batch: undefined }).toEqual({ size: 4 + 4, busy: 0, queued: 0, batch: undefined });
      const text = await (await fetch(`${own.url}/metrics`)).text();
      const generated = Number(/^lanes_generated_tokens_total (\d+)$/m.exec(text)![1]);
      expect(generated).toBeLessThan(want.tokens + 180);
      expect(generated).toBeGreaterThanOrEqual(want.tokens - 1 + 2);
      expect(text).toMatch(/lanes_time_to_first_token_seconds_count 2/);
    } finally {
      await own.shutdown();
    }
  });
});
