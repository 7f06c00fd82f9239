// The service over real HTTP: endpoints, validation, the stream pool's queue and 429, timeouts,
// client disconnects, SSE, and a small ramp whose every response must equal a serial run.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { generate } from "../src/models/generate.ts";
import type { Model } from "../src/models/models.ts";
import { encode } from "../src/models/tokenizer.ts";
import { defaultModels } from "../src/serve/models.ts";
import { runLevel, serialReferences } from "../bench/serve/ramp.ts";
import { type Service, serve } from "../src/serve/server.ts";
import { serviceUrl } from "./support/service-url.ts";

let models: Model[];
let svc: Service;
const post = (url: string, body: unknown, init: RequestInit = {}) =>
  fetch(url, { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body), headers: { "content-type": "application/json" }, ...init });

beforeAll(async () => {
  models = defaultModels();
  svc = await serve({ models, port: 0, streams: 3, queue: 8 });
});
afterAll(async () => {
  await svc.shutdown();
  for (const m of models) m.dispose();
});

describe("endpoints", () => {
  test("healthz, models and metrics", async () => {
    const h = (await (await fetch(svc.url + "/healthz")).json()) as { ok: boolean; pid: number; backend: string };
    expect(h).toMatchObject({ ok: true, pid: process.pid, backend: lx.backendName() });
    const m = (await (await fetch(svc.url + "/v1/models")).json()) as { models: { name: string; kind: string }[] };
    expect(m.models.map((x) => `${x.name}:${x.kind}`).sort()).toEqual(["hybrid:decoder", "mlp:classifier", "transformer:decoder"]);
    await post(svc.url + "/v1/generate", { model: "transformer", prompt: "hi", max_tokens: 2 });
    const text = await (await fetch(svc.url + "/metrics")).text();
    for (const name of ["lanes_requests_total", "lanes_request_seconds_bucket", "lanes_requests_in_flight", "lanes_stream_pool_busy", "lanes_queue_depth", "lanes_tokens_per_second", "lanes_memory_active_bytes", "lanes_epochs_committed_total"])
      expect(text).toContain(name);
    expect(text).toMatch(/lanes_requests_total\{endpoint="\/v1\/generate",status="200"\} \d+/);
    expect((await fetch(svc.url + "/nope")).status).toBe(404);
  });

  test("generate equals a direct serial run with the same seed; text prompts use the byte tokenizer", async () => {
    const body = { model: "hybrid", prompt: "lanes", max_tokens: 6, temperature: 0.7, top_k: 12, seed: 42 };
    const res = await post(svc.url + "/v1/generate", body);
    expect(res.status).toBe(200);
    const got = (await res.json()) as { tokens: number[]; checksums: string[]; usage: { prompt_tokens: number } };
    const want = await generate(models[1]!, { tokens: encode("lanes"), maxTokens: 6, temperature: 0.7, topK: 12, seed: 42 }, lx.defaultStream());
    expect(got.tokens).toEqual(want.tokens);
    expect(got.checksums).toEqual(want.checksums);
    expect(got.usage.prompt_tokens).toBe(6);
  });

  test("the SSE variant streams the same tokens, then [DONE]", async () => {
    const body = { model: "transformer", prompt_tokens: [256, 72, 105], max_tokens: 5, seed: 3 };
    const plain = (await (await post(svc.url + "/v1/generate", body)).json()) as { tokens: number[] };
    const res = await post(svc.url + "/v1/generate", { ...body, stream: true });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = (await res.text()).split("\n\n").filter(Boolean).map((e) => e.replace(/^data: /, ""));
    expect(events.pop()).toBe("[DONE]");
    expect(events.map((e) => (JSON.parse(e) as { token: number }).token)).toEqual(plain.tokens);
  });

  test("forward returns a top-k summary and a checksum", async () => {
    const r = (await (await post(svc.url + "/v1/forward", { model: "mlp", prompt: "classify me", top_k: 3 })).json()) as { top_k: { index: number; logit: number }[]; checksum: string };
    expect(r.top_k.length).toBe(3);
    expect(r.top_k[0]!.logit).toBeGreaterThanOrEqual(r.top_k[1]!.logit);
    expect(r.checksum).toMatch(/^[0-9a-f]{8}$/);
  });
});

describe("input validation", () => {
  test("bad requests get a 400 with a JSON error and never reach the core", async () => {
    const before = lx.stats().kernelsExecuted;
    const cases: [unknown, RegExp][] = [
      ["{oops", /not valid JSON/],
      [[1, 2], /JSON object/],
      [{ prompt: "x" }, /"model" must be a string/],
      [{ model: "gpt-9", prompt: "x" }, /unknown model/],
      [{ model: "transformer" }, /give "prompt"/],
      [{ model: "transformer", prompt_tokens: [] }, /non-empty array/],
      [{ model: "transformer", prompt_tokens: [1, 257] }, /integers in \[0, 257\)/],
      [{ model: "transformer", prompt_tokens: [1.5] }, /integers/],
      [{ model: "transformer", prompt: "x", max_tokens: 0 }, /max_tokens/],
      [{ model: "transformer", prompt: "x", max_tokens: 100000 }, /max_tokens/],
      [{ model: "transformer", prompt: "x", temperature: -1 }, /temperature/],
      [{ model: "transformer", prompt: "x", top_k: 0 }, /top_k/],
      [{ model: "transformer", prompt: "x", seed: -4 }, /seed/],
      [{ model: "transformer", prompt: "x", stream: "yes" }, /stream/],
      [{ model: "transformer", prompt: "x", prompt_tokens: [1] }, /not both/],
      [{ model: "transformer", prompt_tokens: Array(510).fill(1), max_tokens: 10 }, /exceeds/],
    ];
    for (const [body, message] of cases) {
      const res = await post(svc.url + "/v1/generate", body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(message);
    }
    expect(lx.stats().kernelsExecuted).toBe(before);
  });
});

describe("capacity, timeouts and cancellation", () => {
  test("past the queue, requests get 429 with Retry-After; queued ones still complete", async () => {
    const tiny = await serve({ models, port: 0, streams: 1, queue: 1, workers: 0 });
    try {
      const body = { model: "transformer", prompt: "busy", max_tokens: 250 };
      // Each step waits for the engine to reach the state it needs, whatever the decode speed.
      const reached = async (busy: number, queued: number) => {
        while (tiny.load().busy !== busy || tiny.load().queued !== queued) await Bun.sleep(1);
      };
      const first = post(tiny.url + "/v1/generate", body);
      await reached(1, 0);
      const second = post(tiny.url + "/v1/generate", body);
      await reached(1, 1);
      const third = await post(tiny.url + "/v1/generate", body);
      expect(third.status).toBe(429);
      expect(third.headers.get("retry-after")).toBe("1");
      expect((await first).status).toBe(200);
      expect((await second).status).toBe(200);
    } finally {
      await tiny.shutdown();
    }
  });

  test("a request past its timeout gets 504 and frees its stream", async () => {
    // 200 decode steps take 30 ms or more on a fast CPU: the timeout is well inside them.
    const slow = await serve({ models, port: 0, streams: 1, timeoutMs: 10 });
    try {
      const res = await post(slow.url + "/v1/generate", { model: "hybrid", prompt: "x".repeat(200), max_tokens: 200 });
      expect(res.status).toBe(504);
      expect(slow.load().busy).toBe(0);
      const ok = await post(slow.url + "/v1/forward", { model: "mlp", prompt: "still works" });
      expect(ok.status).toBe(200);
    } finally {
      await slow.shutdown();
    }
  });

  test("a client that disconnects cancels its generation at the next step", async () => {
    const ac = new AbortController();
    const pending = post(svc.url + "/v1/generate", { model: "transformer", prompt: "bye", max_tokens: 250 }, { signal: ac.signal }).catch(() => null);
    await Bun.sleep(30);
    ac.abort();
    await pending;
    const deadline = Date.now() + 5000;
    while ((svc.load().busy > 0 || svc.metrics.inFlight > 0) && Date.now() < deadline) await Bun.sleep(10);
    expect(svc.load().busy).toBe(0);
    const text = await (await fetch(svc.url + "/metrics")).text();
    expect(text).toMatch(/status="499"\} 1/);
  });
});

describe("ramp", () => {
  test("9 concurrent clients, all three models: no errors, every response equal to the serial run", async () => {
    const expected = await serialReferences(new Map(models.map((m) => [m.name, m])));
    const r = await runLevel(svc.url, 9, 27, expected);
    expect(r.errors).toBe(0);
    expect(r.equalSerial).toBe(27);
  });
});

describe("process lifecycle", () => {
  test("SIGTERM drains the request in flight, then the process exits 0", async () => {
    const proc = Bun.spawn([process.execPath, `${import.meta.dir}/../src/cli.ts`, "serve", "--port", "0", "--workers", "1"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      const url = await serviceUrl(proc, "serve");
      const pending = post(url + "/v1/generate", { model: "transformer", prompt: "drain me", max_tokens: 120 });
      await Bun.sleep(60);
      proc.kill("SIGTERM");
      const res = await pending;
      expect(res.status).toBe(200);
      expect(((await res.json()) as { tokens: number[] }).tokens.length).toBe(120);
      expect(await proc.exited).toBe(0);
    } finally {
      proc.kill();
    }
  }, 60_000);
});
