/**
 * The load ramp: HTTP clients at rising concurrency against a running service, all three
 * models in the mix, every response checked against a serial run of the same request (same
 * seed: the same tokens and bit-equal logits checksums). Also the torture run: long
 * generations, random disconnects and bad requests at 12, 16 and 20 concurrent.
 * @module
 */
import { defaultStream } from "../../src/stream.ts";
import { forward, generate } from "../../src/models/generate.ts";
import type { Model } from "../../src/models/models.ts";
import { encode } from "../../src/models/tokenizer.ts";

/** One request of the mix. `key` names its serial reference. */
export interface RampRequest {
  key: number;
  path: "/v1/generate" | "/v1/forward";
  body: { model: string; prompt: string; max_tokens?: number; temperature?: number; top_k?: number; seed?: number; stream?: boolean };
}

const prompts = [
  "The quick brown fox",
  "lanes runs every request on its own stream",
  "Once upon a time",
  "def main():",
  "SELECT * FROM users WHERE",
  "In the beginning",
  "Bonjour, comment ça va ?",
  "1, 2, 3, 5, 8, 13,",
];

/** Distinct requests in the mix (each has one serial reference). */
export const distinctRequests = 24;

/** The i-th request of the mix: transformer and hybrid generate, the MLP classifies. */
export function rampRequest(i: number, maxTokens?: number): RampRequest {
  const key = i % distinctRequests;
  const model = ["transformer", "hybrid", "mlp"][key % 3]!;
  const prompt = prompts[key % prompts.length]!;
  if (model === "mlp") return { key, path: "/v1/forward", body: { model, prompt } };
  const sampled = key % 2 === 1;
  return {
    key,
    path: "/v1/generate",
    body: { model, prompt, max_tokens: maxTokens ?? 12 + (key % 4) * 4, temperature: sampled ? 0.8 : 0, top_k: sampled ? 20 : undefined, seed: 1000 + key },
  };
}

/** What a response must equal: tokens and checksums (generate) or top-k and checksum (forward). */
export type Expected = { tokens: number[]; checksums: string[] } | { top: { index: number; logit: number }[]; checksum: string };

/** Runs each distinct request serially on the default stream, in this process. */
export async function serialReferences(models: Map<string, Model>, maxTokens?: number): Promise<Map<number, Expected>> {
  const out = new Map<number, Expected>();
  for (let key = 0; key < distinctRequests; key++) {
    const r = rampRequest(key, maxTokens);
    const model = models.get(r.body.model)!;
    const tokens = encode(r.body.prompt);
    if (r.path === "/v1/forward") {
      const f = await forward(model, tokens, defaultStream());
      out.set(key, { top: f.top, checksum: f.checksum });
    } else {
      const g = await generate(model, { tokens, maxTokens: r.body.max_tokens!, temperature: r.body.temperature, topK: r.body.top_k, seed: r.body.seed }, defaultStream());
      out.set(key, g);
    }
  }
  return out;
}

function matches(body: Record<string, unknown>, want: Expected): boolean {
  if ("tokens" in want) return JSON.stringify(body.tokens) === JSON.stringify(want.tokens) && JSON.stringify(body.checksums) === JSON.stringify(want.checksums);
  return JSON.stringify(body.top_k) === JSON.stringify(want.top) && body.checksum === want.checksum;
}

/** One level's outcome. */
export interface LevelResult {
  concurrency: number;
  requests: number;
  wallS: number;
  reqPerS: number;
  tokensPerS: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  equalSerial: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : 0;
}

/** `requests` requests from `concurrency` clients at once; each response is verified. */
export async function runLevel(url: string, concurrency: number, requests: number, expected: Map<number, Expected>, first = 0): Promise<LevelResult> {
  let next = 0;
  const latencies: number[] = [];
  let errors = 0;
  let equal = 0;
  let tokens = 0;
  const t0 = performance.now();
  const client = async () => {
    for (let i = next++; i < requests; i = next++) {
      const r = rampRequest(first + i);
      const t = performance.now();
      try {
        const res = await fetch(url + r.path, { method: "POST", body: JSON.stringify(r.body), headers: { "content-type": "application/json" } });
        const body = (await res.json()) as Record<string, unknown>;
        if (res.status !== 200) {
          errors++;
          continue;
        }
        latencies.push(performance.now() - t);
        tokens += Array.isArray(body.tokens) ? body.tokens.length : 0;
        if (matches(body, expected.get(r.key)!)) equal++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const wallS = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    concurrency,
    requests,
    wallS,
    reqPerS: requests / wallS,
    tokensPerS: tokens / wallS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors,
    equalSerial: equal,
  };
}

/** The ramp's levels and requests per level (357 in all). */
export const rampLevels: [number, number][] = [
  [1, 12],
  [3, 24],
  [6, 36],
  [9, 45],
  [12, 60],
  [16, 80],
  [20, 100],
];

/** Runs every level in order. */
export async function runRamp(url: string, expected: Map<number, Expected>, levels = rampLevels): Promise<LevelResult[]> {
  const out: LevelResult[] = [];
  let first = 0;
  for (const [c, n] of levels) {
    out.push(await runLevel(url, c, n, expected, first));
    first += n;
  }
  return out;
}

/** Formats ramp results as a table; `other` adds the global-lock column. */
export function rampTable(rows: LevelResult[], other?: LevelResult[]): string {
  const head = ["conc", "reqs", "wall s", "req/s", "tok/s", "p50 ms", "p99 ms", "errors", "= serial"];
  if (other) head.push("global wall s", "global req/s", "per-stream / global");
  const lines = [head.join(" | ")];
  lines.push(head.map(() => "---").join(" | "));
  rows.forEach((r, i) => {
    const cells = [r.concurrency, r.requests, r.wallS.toFixed(2), r.reqPerS.toFixed(1), r.tokensPerS.toFixed(0), r.p50Ms.toFixed(0), r.p99Ms.toFixed(0), r.errors, `${r.equalSerial}/${r.requests}`];
    const g = other?.[i];
    if (g) cells.push(g.wallS.toFixed(2), g.reqPerS.toFixed(1), (r.reqPerS / g.reqPerS).toFixed(2));
    lines.push(cells.join(" | "));
  });
  return lines.map((l) => `| ${l} |`).join("\n");
}

/** Outcome of the torture run. */
export interface TortureResult {
  sent: number;
  verified: number;
  mismatches: number;
  cancelled: number;
  badRejected: number;
  unexpected: string[];
}

const badBodies: string[] = [
  "{not json",
  JSON.stringify({ model: "nope", prompt: "x" }),
  JSON.stringify({ model: "transformer", prompt_tokens: [1, 2, 99999] }),
  JSON.stringify({ model: "transformer", prompt: "x", max_tokens: -3 }),
  JSON.stringify({ model: "transformer", prompt: "x", max_tokens: 1e9 }),
  JSON.stringify({ model: "hybrid", prompt_tokens: [] }),
  JSON.stringify({ model: "transformer", prompt: "x", temperature: "hot" }),
  JSON.stringify([1, 2, 3]),
  JSON.stringify({ model: "mlp", prompt_tokens: [0.5] }),
];

/**
 * 12 → 16 → 20 concurrent clients, each sending a mix: long verified generations (SSE or
 * JSON), requests abandoned mid-generation, and malformed requests that must get a 400.
 */
export async function runTorture(url: string, expectedLong: Map<number, Expected>, longTokens: number, perClient = 4): Promise<TortureResult> {
  const r: TortureResult = { sent: 0, verified: 0, mismatches: 0, cancelled: 0, badRejected: 0, unexpected: [] };
  let seq = 0;
  const one = async () => {
    const i = seq++;
    r.sent++;
    const kind = i % 4;
    if (kind === 3) {
      const res = await fetch(url + "/v1/generate", { method: "POST", body: badBodies[i % badBodies.length] });
      await res.text();
      if (res.status === 400) r.badRejected++;
      else r.unexpected.push(`bad request got ${res.status}`);
      return;
    }
    const req = rampRequest(i, longTokens);
    if (kind === 2) {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 5 + ((i * 37) % 60));
      try {
        const res = await fetch(url + req.path, { method: "POST", body: JSON.stringify({ ...req.body, stream: req.path === "/v1/generate" }), signal: ac.signal });
        await res.text();
      } catch {
        // Abandoned, as intended.
      }
      r.cancelled++;
      return;
    }
    const res = await fetch(url + req.path, { method: "POST", body: JSON.stringify(req.body) });
    const body = (await res.json()) as Record<string, unknown>;
    if (res.status !== 200) r.unexpected.push(`status ${res.status}: ${JSON.stringify(body)}`);
    else if (matches(body, expectedLong.get(req.key)!)) r.verified++;
    else r.mismatches++;
  };
  for (const clients of [12, 16, 20]) {
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let k = 0; k < perClient; k++) await one();
      }),
    );
  }
  return r;
}
