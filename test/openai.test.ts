// The OpenAI-compatible endpoints as a user meets them: through the official `openai` client
// (and raw HTTP where the wire format itself is the point). Every answer is checked against a
// serial in-process run of lanes/models' `generate` on the same prompt tokens, built here from
// the ChatML text written out by hand and UTF-8 bytes, and decoded with TextDecoder.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import * as lx from "../src/index.ts";
import { generate } from "../src/models/generate.ts";
import type { Model } from "../src/models/models.ts";
import { seededRandom } from "../src/models/sampling.ts";
import { bos } from "../src/models/tokenizer.ts";
import { byteTextModel } from "../src/models/toy-text.ts";
import { evalAsync } from "../src/eval.ts";
import { defaultModels } from "../src/serve/models.ts";
import { type Service, serve } from "../src/serve/server.ts";

let models: Model[];
let transformer: Model;
let hybrid: Model;
let svc: Service;
let client: OpenAI;
// The hybrid's text model ends at this token (one its seeded answer below contains).
let hybridStopId: number;
const hybridCase = { prompt: "stop ids", maxTokens: 24, seed: 5 };

const utf8 = (text: string) => [...new TextEncoder().encode(text)];
const chatTokens = (messages: { role: string; content: string }[]) =>
  [bos, ...utf8(messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("") + "<|im_start|>assistant\n")];

/** The serial answer: generate's tokens up to the first end token, as text. */
async function reference(model: Model, tokens: number[], maxTokens: number, opts: { temperature?: number; seed?: number; stopIds?: number[] } = {}) {
  const g = await generate(model, { tokens, maxTokens, temperature: opts.temperature ?? 0, seed: opts.seed ?? 0 }, lx.defaultStream());
  const stopIds = opts.stopIds ?? [bos];
  const end = g.tokens.findIndex((t) => stopIds.includes(t));
  const kept = end < 0 ? g.tokens : g.tokens.slice(0, end);
  return { tokens: kept, ended: end >= 0, text: new TextDecoder().decode(Uint8Array.from(kept)) };
}

/** Tokens needed before `text`'s decoding of `tokens` shows `stop` (the tokens a stop string costs). */
function tokensUntil(tokens: number[], stop: string): number {
  const decoder = new TextDecoder();
  let text = "";
  for (let i = 0; i < tokens.length; i++) {
    text += decoder.decode(Uint8Array.of(tokens[i]!), { stream: true });
    if (text.includes(stop)) return i + 1;
  }
  return -1;
}

beforeAll(async () => {
  models = defaultModels();
  [transformer, hybrid] = models as [Model, Model];
  const ref = await generate(hybrid, { tokens: utf8(hybridCase.prompt), maxTokens: hybridCase.maxTokens, temperature: 1, seed: hybridCase.seed }, lx.defaultStream());
  hybridStopId = ref.tokens[6]!;
  svc = await serve({
    models,
    textModels: [byteTextModel(transformer), byteTextModel(hybrid, { stopIds: [hybridStopId] })],
    port: 0,
    streams: 4,
    queue: 16,
    maxTokens: 300,
    maxN: 4,
  });
  client = new OpenAI({ baseURL: `${svc.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(async () => {
  await svc.shutdown();
  for (const m of models) m.dispose();
});

describe("chat completions", () => {
  const messages = [
    { role: "system" as const, content: "You are terse." },
    { role: "user" as const, content: "Say something, héhé 🙂" },
  ];

  test("temperature 0 answers what a serial greedy run answers, with usage counted by the tokenizer", async () => {
    const r = await client.chat.completions.create({ model: "transformer", messages, max_tokens: 20, temperature: 0 });
    const want = await reference(transformer, chatTokens(messages), 20);
    expect(r.object).toBe("chat.completion");
    expect(r.model).toBe("transformer");
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices.length).toBe(1);
    expect(r.choices[0]!.message).toEqual({ role: "assistant", content: want.text } as never);
    expect(r.choices[0]!.finish_reason).toBe(want.ended ? "stop" : "length");
    const promptTokens = 1 + utf8("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nSay something, héhé 🙂<|im_end|>\n<|im_start|>assistant\n").length;
    expect(r.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: want.tokens.length + (want.ended ? 1 : 0), total_tokens: promptTokens + want.tokens.length + (want.ended ? 1 : 0) });
  });

  test("streamed: a role chunk, the same text in deltas, the finish reason, then usage and [DONE]", async () => {
    const want = await reference(transformer, chatTokens(messages), 40, { temperature: 1, seed: 9 });
    const stream = await client.chat.completions.create({ model: "transformer", messages, max_tokens: 40, temperature: 1, seed: 9, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    expect(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0]!.id)).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe(want.text);
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finish.map((c) => c.choices[0]!.finish_reason)).toEqual([want.ended ? "stop" : "length"]);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage!.completion_tokens).toBe(want.tokens.length + (want.ended ? 1 : 0));
    expect(last.usage!.prompt_tokens).toBe(chatTokens(messages).length);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);

    // On the wire: SSE data lines, the last one [DONE]; without include_usage, no usage field.
    const res = await fetch(`${svc.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "transformer", messages, max_tokens: 3, stream: true }) });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = (await res.text()).split("\n\n").filter(Boolean);
    expect(events.every((e) => e.startsWith("data: "))).toBe(true);
    expect(events.at(-1)).toBe("data: [DONE]");
    expect(events.slice(0, -1).every((e) => !("usage" in JSON.parse(e.slice(6))))).toBe(true);
  });

  test("the same seed gives the same text; choice i of n is seeded with seed + i", async () => {
    const ask = (seed: number, n = 1) => client.chat.completions.create({ model: "transformer", messages, max_tokens: 16, temperature: 1, seed, n });
    const [a, b] = await Promise.all([ask(1234), ask(1234)]);
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);
    const three = await ask(1234, 3);
    expect(three.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    let completionTokens = 0;
    for (let i = 0; i < 3; i++) {
      const want = await reference(transformer, chatTokens(messages), 16, { temperature: 1, seed: 1234 + i });
      expect(three.choices[i]!.message.content).toBe(want.text);
      completionTokens += want.tokens.length + (want.ended ? 1 : 0);
    }
    expect(new Set(three.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);
    expect(three.usage!.prompt_tokens).toBe(chatTokens(messages).length);
    expect(three.usage!.completion_tokens).toBe(completionTokens);
    // At temperature 0 every choice is the greedy answer.
    const greedy = await client.chat.completions.create({ model: "transformer", messages, max_tokens: 12, temperature: 0, n: 2 });
    const want = (await reference(transformer, chatTokens(messages), 12)).text;
    expect(greedy.choices.map((c) => c.message.content)).toEqual([want, want]);
  });

  test("top_p: a tiny nucleus is greedy, top_p 1 is plain sampling, and 0.6 matches a float64 nucleus sampler", async () => {
    const tokens = chatTokens(messages);
    const tiny = await client.chat.completions.create({ model: "transformer", messages, max_tokens: 12, temperature: 1.5, top_p: 1e-9, seed: 3 });
    expect(tiny.choices[0]!.message.content).toBe((await reference(transformer, tokens, 12)).text);
    const whole = await client.chat.completions.create({ model: "transformer", messages, max_tokens: 12, temperature: 1, top_p: 1, seed: 3 });
    expect(whole.choices[0]!.message.content).toBe((await reference(transformer, tokens, 12, { temperature: 1, seed: 3 })).text);

    // The reference: the model stepped here, each step's nucleus found in float64 and drawn
    // from with the same seeded generator.
    const temperature = 1.2, topP = 0.6, maxTokens = 16;
    const random = seededRandom(77);
    const out: number[] = [];
    let state: Parameters<Model["step"]>[1];
    let input = tokens;
    for (let i = 0; i < maxTokens; i++) {
      const step = transformer.step(input, state, lx.defaultStream());
      await evalAsync(step.logits, ...step.state.caches);
      const logits = step.logits.toFloat32Array();
      step.scope.disposeExcept(step.state.caches);
      for (const c of state?.caches ?? []) c.dispose();
      state = step.state;
      const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
      const w = order.map((t) => Math.exp((logits[t]! - logits[order[0]!]!) / temperature));
      const total = w.reduce((s, x) => s + x, 0);
      let keep = 0;
      for (let c = 0; keep < w.length && c < topP * total; keep++) c += w[keep]!;
      let r = random() * w.slice(0, keep).reduce((s, x) => s + x, 0);
      let token = order[keep - 1]!;
      for (let j = 0; j < keep; j++) if ((r -= w[j]!) <= 0) { token = order[j]!; break; }
      if (token === bos) break;
      out.push(token);
      input = [token];
    }
    for (const c of state?.caches ?? []) c.dispose();
    const nucleus = await client.chat.completions.create({ model: "transformer", messages, max_tokens: maxTokens, temperature, top_p: topP, seed: 77 });
    expect(nucleus.choices[0]!.message.content).toBe(new TextDecoder().decode(Uint8Array.from(out)));
  });
});

describe("completions", () => {
  test("a text prompt (no BOS added), whole and streamed, equals the serial run; usage counts UTF-8 bytes", async () => {
    const prompt = "Once upon a time";
    const want = await reference(transformer, utf8(prompt), 24, { temperature: 0.9, seed: 21 });
    const r = await client.completions.create({ model: "transformer", prompt, max_tokens: 24, temperature: 0.9, seed: 21 });
    expect(r.object).toBe("text_completion");
    expect(r.id).toMatch(/^cmpl-/);
    expect(r.choices[0]!.text).toBe(want.text);
    expect(r.usage!.prompt_tokens).toBe(16);
    expect(r.usage!.total_tokens).toBe(16 + r.usage!.completion_tokens);
    const stream = await client.completions.create({ model: "transformer", prompt, max_tokens: 24, temperature: 0.9, seed: 21, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null | undefined;
    let usage: OpenAI.Completions.CompletionUsage | undefined | null;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? "";
      finish ??= c.choices[0]?.finish_reason;
      usage = c.usage ?? usage;
    }
    expect(text).toBe(want.text);
    expect(finish).toBe(r.choices[0]!.finish_reason);
    expect(usage).toEqual(r.usage);
  });

  test("token-id prompts and several prompts at once: choices in prompt order, n per prompt", async () => {
    const ids = await client.completions.create({ model: "transformer", prompt: [bos, 104, 105], max_tokens: 8, temperature: 0 });
    expect(ids.choices[0]!.text).toBe((await reference(transformer, [bos, 104, 105], 8)).text);
    expect(ids.usage!.prompt_tokens).toBe(3);
    const two = await client.completions.create({ model: "transformer", prompt: ["alpha", "beta"], max_tokens: 6, temperature: 1, seed: 40, n: 2 });
    expect(two.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    const expected = [
      await reference(transformer, utf8("alpha"), 6, { temperature: 1, seed: 40 }),
      await reference(transformer, utf8("alpha"), 6, { temperature: 1, seed: 41 }),
      await reference(transformer, utf8("beta"), 6, { temperature: 1, seed: 42 }),
      await reference(transformer, utf8("beta"), 6, { temperature: 1, seed: 43 }),
    ];
    expect(two.choices.map((c) => c.text)).toEqual(expected.map((e) => e.text));
    expect(two.usage!.prompt_tokens).toBe(9);
  });
});

describe("stop strings and end tokens", () => {
  const prompt = "stop strings";
  const sampled = { temperature: 1, seed: 8 };

  test("the answer ends before the first stop string, which is never sent, whole or streamed", async () => {
    const full = await reference(transformer, utf8(prompt), 40, sampled);
    const stop = full.text.slice(10, 12);
    const cut = full.text.indexOf(stop);
    expect(cut).toBeGreaterThanOrEqual(0);
    const r = await client.completions.create({ model: "transformer", prompt, max_tokens: 40, ...sampled, stop });
    expect(r.choices[0]!.text).toBe(full.text.slice(0, cut));
    expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(r.usage!.completion_tokens).toBe(tokensUntil(full.tokens, stop));

    // Several stop strings: the earliest wins. Streamed: the held-back text never leaks.
    const later = full.text.slice(20, 23);
    const stream = await client.completions.create({ model: "transformer", prompt, max_tokens: 40, ...sampled, stop: [later, stop], stream: true });
    const pieces: string[] = [];
    let finish: string | null | undefined;
    for await (const c of stream) {
      pieces.push(c.choices[0]?.text ?? "");
      finish ??= c.choices[0]?.finish_reason;
    }
    expect(pieces.join("")).toBe(full.text.slice(0, Math.min(cut, full.text.indexOf(later))));
    expect(finish).toBe("stop");
  });

  test("text that starts a stop string but never completes it is held back, then sent in full", async () => {
    const full = await reference(transformer, utf8(prompt), 30, sampled);
    const almost = full.text.slice(5, 8) + "\u0000never";
    const stream = await client.completions.create({ model: "transformer", prompt, max_tokens: 30, ...sampled, stop: almost, stream: true });
    let text = "";
    let finish: string | null | undefined;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? "";
      finish ??= c.choices[0]?.finish_reason;
    }
    expect(text).toBe(full.text);
    expect(finish).toBe(full.ended ? "stop" : "length");
  });

  test("an end token of the model stops the answer (finish_reason stop), counted in usage but not shown", async () => {
    const full = await generate(hybrid, { tokens: utf8(hybridCase.prompt), maxTokens: hybridCase.maxTokens, temperature: 1, seed: hybridCase.seed }, lx.defaultStream());
    const at = full.tokens.indexOf(hybridStopId);
    const r = await client.completions.create({ model: "hybrid", prompt: hybridCase.prompt, max_tokens: hybridCase.maxTokens, temperature: 1, seed: hybridCase.seed });
    expect(r.choices[0]!.text).toBe(new TextDecoder().decode(Uint8Array.from(full.tokens.slice(0, at))));
    expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(r.usage!.completion_tokens).toBe(at + 1);
  });
});

describe("models, engines and metrics", () => {
  test("GET /v1/models lists the chat models in OpenAI's format", async () => {
    const list = [];
    for await (const m of client.models.list()) list.push(m);
    expect(list.map((m) => [m.id, m.object, m.owned_by])).toEqual([
      ["transformer", "model", "lanes"],
      ["hybrid", "model", "lanes"],
    ]);
  });

  test("the in-process engine and the Worker engine give the same answers", async () => {
    const inProcess = await serve({ textModels: [byteTextModel(transformer)], port: 0, workers: 0, streams: 2 });
    try {
      const local = new OpenAI({ baseURL: `${inProcess.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const body = { model: "transformer", messages: [{ role: "user" as const, content: "engines" }], max_tokens: 20, temperature: 1, seed: 99, n: 2 };
      const [a, b] = await Promise.all([local.chat.completions.create(body), client.chat.completions.create(body)]);
      expect(a.choices.map((c) => c.message.content)).toEqual(b.choices.map((c) => c.message.content));
      expect(a.choices[1]!.message.content).toBe((await reference(transformer, chatTokens(body.messages), 20, { temperature: 1, seed: 100 })).text);
    } finally {
      await inProcess.shutdown();
    }
  });

  test("metrics count prompt tokens, generated tokens and time to first token", async () => {
    const fresh = await serve({ textModels: [byteTextModel(transformer)], port: 0, workers: 1 });
    try {
      const local = new OpenAI({ baseURL: `${fresh.url}/v1`, apiKey: "unused", maxRetries: 0 });
      await local.completions.create({ model: "transformer", prompt: "abc", max_tokens: 5, temperature: 0 });
      await local.chat.completions.create({ model: "transformer", messages: [{ role: "user", content: "hi" }], max_tokens: 7, temperature: 0 });
      const text = await (await fetch(`${fresh.url}/metrics`)).text();
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
      expect(value("lanes_prompt_tokens_total")).toBe(3 + chatTokens([{ role: "user", content: "hi" }]).length);
      expect(value("lanes_generated_tokens_total")).toBe(12);
      expect(value("lanes_time_to_first_token_seconds_count")).toBe(2);
      expect(text).toMatch(/lanes_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} 1/);
    } finally {
      await fresh.shutdown();
    }
  });
});

describe("errors", () => {
  const chat = (extra: Record<string, unknown>) => ({ model: "transformer", messages: [{ role: "user", content: "x" }], ...extra });
  async function rejection(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
    try {
      await p;
    } catch (e) {
      if (e instanceof OpenAI.APIError) return e;
      throw e;
    }
    throw new Error("the request succeeded");
  }

  test("400s name the field and the cap (with its flag), in OpenAI's error JSON", async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ max_tokens: 301 }, "max_tokens", /301, over this server's limit of 300 \(--max-tokens\)/],
      [{ max_completion_tokens: 500 }, "max_completion_tokens", /--max-tokens/],
      [{ max_tokens: 0 }, "max_tokens", /positive integer/],
      [{ n: 5 }, "n", /\[1, 4\] \(--max-n\)/],
      [{ messages: [{ role: "user", content: "y".repeat(600) }] }, "messages", /the model's context is 512/],
      [{ messages: [{ role: "user", content: "y".repeat(400) }], max_tokens: 200 }, "max_tokens", /exceed the model's context of 512/],
      [{ temperature: 3 }, "temperature", /\[0, 2\]/],
      [{ top_p: 0 }, "top_p", /\(0, 1\]/],
      [{ seed: 1.5 }, "seed", /integer/],
      [{ stop: ["a", "b", "c", "d", "e"] }, "stop", /at most 4/],
      [{ stop: "" }, "stop", /non-empty/],
      [{ messages: [] }, "messages", /non-empty/],
      [{ messages: [{ role: "tool", content: "x" }] }, "messages[0].role", /role/],
      [{ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }, "messages[0].content[0]", /text only/],
      [{ logprobs: true }, "logprobs", /not supported/],
      [{ stream_options: { include_usage: true } }, "stream_options", /only allowed with "stream": true/],
    ];
    const before = lx.stats().kernelsExecuted;
    for (const [extra, param, message] of cases) {
      const e = await rejection(client.chat.completions.create(chat(extra) as never));
      expect(e).toBeInstanceOf(OpenAI.BadRequestError);
      expect([e.param, e.type]).toEqual([param, "invalid_request_error"]);
      expect(e.message).toMatch(message);
    }
    const long = await rejection(client.completions.create({ model: "transformer", prompt: [Array(600).fill(1)] as never }));
    expect(long.message).toMatch(/600 tokens/);
    expect(lx.stats().kernelsExecuted).toBe(before); // nothing reached the device
  });

  test("the prompt cap (--max-prompt-tokens) and the body cap (--max-body-bytes, 413) are flags of their own", async () => {
    const capped = await serve({ textModels: [byteTextModel(transformer)], port: 0, workers: 0, maxPromptTokens: 10, maxBodyBytes: 2048 });
    try {
      const local = new OpenAI({ baseURL: `${capped.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const e = await rejection(local.completions.create({ model: "transformer", prompt: "eleven char", max_tokens: 2 }));
      expect(e.status).toBe(400);
      expect(e.message).toMatch(/11 tokens, over this server's limit of 10 \(--max-prompt-tokens\)/);
      expect((await local.completions.create({ model: "transformer", prompt: "ten chars!", max_tokens: 2 })).choices.length).toBe(1);

      const big = await rejection(local.completions.create({ model: "transformer", prompt: "z".repeat(3000), max_tokens: 2 }));
      expect(big.status).toBe(413);
      expect(big.message).toMatch(/larger than 2048 bytes \(--max-body-bytes\)/);
      // A body sent in chunks, with no length declared up front, is cut off just the same.
      const chunked = new ReadableStream({
        start(c) {
          for (let i = 0; i < 5; i++) c.enqueue(new TextEncoder().encode(" ".repeat(1000)));
          c.close();
        },
      });
      const res = await fetch(`${capped.url}/v1/completions`, { method: "POST", body: chunked });
      expect(res.status).toBe(413);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("request_too_large");
    } finally {
      await capped.shutdown();
    }
  });

  test("unknown model 404, bad JSON 400, wrong method 405, unknown route 404, all in OpenAI's shape", async () => {
    const missing = await rejection(client.chat.completions.create(chat({ model: "gpt-9" }) as never));
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect([missing.code, missing.param]).toEqual(["model_not_found", "model"]);
    const mlp = await rejection(client.completions.create({ model: "mlp", prompt: "x" }));
    expect(mlp.status).toBe(404);
    for (const [path, init, status] of [
      ["/v1/chat/completions", { method: "POST", body: "{oops" }, 400],
      ["/v1/completions", { method: "POST", body: "[1]" }, 400],
      ["/v1/chat/completions", { method: "GET" }, 405],
      ["/v1/nothing", { method: "GET" }, 404],
    ] as const) {
      const res = await fetch(svc.url + path, init);
      expect(res.status).toBe(status);
      const body = (await res.json()) as { error: Record<string, unknown> };
      expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
    }
  });

  test("past the queue: 429 with Retry-After; a request's choices are admitted together or refused before anything runs", async () => {
    const tiny = await serve({ textModels: [byteTextModel(transformer)], port: 0, streams: 1, queue: 1, workers: 0 });
    try {
      const local = new OpenAI({ baseURL: `${tiny.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const before = lx.stats().kernelsExecuted;
      const wide = await rejection(local.completions.create({ model: "transformer", prompt: "x", max_tokens: 5, n: 3 }));
      expect(wide).toBeInstanceOf(OpenAI.RateLimitError);
      expect(wide.headers?.get("retry-after")).toBe("1");
      expect(lx.stats().kernelsExecuted).toBe(before);

      // The first runs (its place busy) and the second waits (the queue full) when the third
      // arrives: the test waits for each state instead of guessing how long a step takes.
      const until = async (ok: () => boolean) => {
        const deadline = Date.now() + 10_000;
        while (!ok() && Date.now() < deadline) await Bun.sleep(1);
      };
      const long = { model: "transformer", prompt: "busy", max_tokens: 480, temperature: 0 };
      const first = local.completions.create(long);
      await until(() => tiny.load().busy === 1);
      const second = local.completions.create({ ...long, stream: true });
      await until(() => tiny.load().queued === 1);
      const third = await rejection(local.completions.create({ ...long, stream: true }));
      expect(third.status).toBe(429);
      expect(third.code).toBe("queue_full");
      expect((await first).choices[0]!.text.length).toBeGreaterThan(0);
      let streamed = "";
      for await (const c of await second) streamed += c.choices[0]?.text ?? "";
      expect(streamed).toBe((await first).choices[0]!.text);
    } finally {
      await tiny.shutdown();
    }
  });

  test("a request past its timeout gets 504 in OpenAI's shape", async () => {
    // 250 decode steps take 35 ms or more on a fast CPU: the timeout is well inside them.
    const slow = await serve({ textModels: [byteTextModel(hybrid)], port: 0, workers: 0, streams: 1, timeoutMs: 10 });
    try {
      const local = new OpenAI({ baseURL: `${slow.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const e = await rejection(local.completions.create({ model: "hybrid", prompt: "x".repeat(200), max_tokens: 250, temperature: 0 }));
      expect(e.status).toBe(504);
      expect(e.code).toBe("timeout");
      expect(slow.load().busy).toBe(0);
    } finally {
      await slow.shutdown();
    }
  });
});

describe("cancellation", () => {
  const generated = async (url: string) => Number(/^lanes_generated_tokens_total (\d+)$/m.exec(await (await fetch(`${url}/metrics`)).text())![1]);

  test("a streaming client that goes away stops its generation at the next step and frees its stream", async () => {
    const own = await serve({ textModels: [byteTextModel(transformer)], port: 0, workers: 1, streams: 1 });
    try {
      const local = new OpenAI({ baseURL: `${own.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const stream = await local.chat.completions.create({ model: "transformer", messages: [{ role: "user", content: "go on" }], max_tokens: 400, temperature: 0, stream: true });
      let chunks = 0;
      for await (const _ of stream) if (++chunks === 5) break; // leaving the loop aborts the request
      const deadline = Date.now() + 5000;
      while ((own.load().busy > 0 || own.metrics.inFlight > 0) && Date.now() < deadline) await Bun.sleep(10);
      expect(own.load().busy).toBe(0);
      expect(own.metrics.inFlight).toBe(0);
      const count = await generated(own.url);
      expect(count).toBeGreaterThanOrEqual(4);
      expect(count).toBeLessThan(200);
      // The stream is free again: a new request runs at once.
      const next = await local.completions.create({ model: "transformer", prompt: "after", max_tokens: 3, temperature: 0 });
      expect(next.choices[0]!.text).toBe((await reference(transformer, utf8("after"), 3)).text);
    } finally {
      await own.shutdown();
    }
  });

  test("a non-streaming client that goes away cancels every choice of its request (499 in the metrics)", async () => {
    const own = await serve({ textModels: [byteTextModel(transformer)], port: 0, workers: 0, streams: 2 });
    try {
      const local = new OpenAI({ baseURL: `${own.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const ac = new AbortController();
      const pending = local.completions.create({ model: "transformer", prompt: "bye", max_tokens: 400, n: 2 }, { signal: ac.signal }).catch((e: unknown) => e);
      await Bun.sleep(40);
      ac.abort();
      expect(await pending).toBeInstanceOf(OpenAI.APIUserAbortError);
      const deadline = Date.now() + 5000;
      while ((own.load().busy > 0 || own.metrics.inFlight > 0) && Date.now() < deadline) await Bun.sleep(10);
      expect(own.load().busy).toBe(0);
      expect(await generated(own.url)).toBeLessThan(400);
      expect(await (await fetch(`${own.url}/metrics`)).text()).toMatch(/endpoint="\/v1\/completions",status="499"\} 1/);
    } finally {
      await own.shutdown();
    }
  });
});
