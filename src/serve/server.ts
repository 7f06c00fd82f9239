/**
 * The inference service on Bun.serve: every request runs on a stream of its own from a pool,
 * overflow waits in a bounded queue (429 with Retry-After past it), each request has a
 * timeout, a client that disconnects cancels its work at the next step, and bad input gets a
 * 400 with a JSON error before anything reaches the native core.
 * @module
 */
import { backendName } from "../native.ts";
import { clearCache } from "../stats.ts";
import { newStream, type Stream } from "../stream.ts";
import { CancelledError, forward, generate } from "../models/generate.ts";
import type { Model } from "../models/models.ts";
import { decode, encode } from "../models/tokenizer.ts";
import { Metrics } from "./metrics.ts";

/** Service options. */
export interface ServeOptions {
  models: Model[];
  /** 0 picks a free port. */
  port?: number;
  hostname?: string;
  /** Streams in the pool (default: 4 on the CPU backend, 16 on a GPU). */
  streams?: number;
  /** Requests that may wait for a stream before 429 (default 64). */
  queue?: number;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** Longest generation a request may ask for (default 256). */
  maxTokens?: number;
}

/** A running service. */
export interface Service {
  readonly url: string;
  readonly metrics: Metrics;
  readonly pool: StreamPool;
  /** Stops accepting requests, waits for those in flight, frees the streams. */
  shutdown(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Streams handed to one request at a time, with a bounded wait queue. */
export class StreamPool {
  readonly #free: Stream[];
  readonly #waiting: { resolve: (s: Stream) => void; reject: (e: Error) => void }[] = [];
  readonly #all: Stream[];

  constructor(
    size: number,
    readonly maxQueue: number,
  ) {
    this.#all = Array.from({ length: size }, () => newStream());
    this.#free = [...this.#all];
  }

  get size(): number {
    return this.#all.length;
  }
  get busy(): number {
    return this.#all.length - this.#free.length;
  }
  get queued(): number {
    return this.#waiting.length;
  }

  /** A free stream, or a place in the queue; 429 when the queue is full. */
  acquire(signal: AbortSignal): Promise<Stream> {
    const s = this.#free.pop();
    if (s) return Promise.resolve(s);
    if (this.#waiting.length >= this.maxQueue)
      return Promise.reject(new HttpError(429, `all ${this.size} streams busy and ${this.maxQueue} requests queued`, { "Retry-After": "1" }));
    return new Promise<Stream>((resolve, reject) => {
      const entry = { resolve, reject };
      this.#waiting.push(entry);
      signal.addEventListener(
        "abort",
        () => {
          const i = this.#waiting.indexOf(entry);
          if (i >= 0) {
            this.#waiting.splice(i, 1);
            reject(new CancelledError("cancelled while queued"));
          }
        },
        { once: true },
      );
    });
  }

  release(s: Stream): void {
    const next = this.#waiting.shift();
    if (next) next.resolve(s);
    else this.#free.push(s);
  }

  dispose(): void {
    for (const w of this.#waiting.splice(0)) w.reject(new HttpError(503, "shutting down"));
    for (const s of this.#all) s.dispose();
  }
}

/** A validated generate/forward request. */
export interface ParsedRequest {
  model: Model;
  tokens: number[];
  maxTokens: number;
  temperature: number;
  topK: number | undefined;
  seed: number;
  stream: boolean;
}

function isInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v);
}

/** Checks a request body; throws a 400 naming the first problem. */
export function parseRequest(body: unknown, models: Map<string, Model>, maxTokensLimit: number, forForward: boolean): ParsedRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new HttpError(400, "body must be a JSON object");
  const b = body as Record<string, unknown>;
  if (typeof b.model !== "string") throw new HttpError(400, `"model" must be a string (one of: ${[...models.keys()].join(", ")})`);
  const model = models.get(b.model);
  if (!model) throw new HttpError(400, `unknown model "${b.model}" (have: ${[...models.keys()].join(", ")})`);
  let tokens: number[];
  if (b.prompt_tokens !== undefined) {
    if (b.prompt !== undefined) throw new HttpError(400, `give "prompt" or "prompt_tokens", not both`);
    if (!Array.isArray(b.prompt_tokens) || b.prompt_tokens.length === 0)
      throw new HttpError(400, `"prompt_tokens" must be a non-empty array of token ids`);
    if (!b.prompt_tokens.every((t) => isInt(t) && t >= 0 && t < model.vocab))
      throw new HttpError(400, `"prompt_tokens" must hold integers in [0, ${model.vocab})`);
    tokens = b.prompt_tokens as number[];
  } else if (typeof b.prompt === "string" && b.prompt.length > 0) {
    if (b.prompt.length > model.maxSeq * 4) throw new HttpError(400, `"prompt" is too long`);
    tokens = encode(b.prompt);
  } else {
    throw new HttpError(400, `give "prompt" (a non-empty string) or "prompt_tokens"`);
  }
  const maxTokens = b.max_tokens ?? (forForward ? 1 : 16);
  if (!isInt(maxTokens) || maxTokens < 1 || maxTokens > maxTokensLimit)
    throw new HttpError(400, `"max_tokens" must be an integer in [1, ${maxTokensLimit}]`);
  if (tokens.length + (model.kind === "decoder" && !forForward ? maxTokens : 0) > model.maxSeq)
    throw new HttpError(400, `prompt (${tokens.length} tokens) plus max_tokens exceeds the model's ${model.maxSeq}`);
  const temperature = b.temperature ?? 0;
  if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature < 0 || temperature > 5)
    throw new HttpError(400, `"temperature" must be a number in [0, 5]`);
  const topK = b.top_k;
  if (topK !== undefined && (!isInt(topK) || topK < 1)) throw new HttpError(400, `"top_k" must be a positive integer`);
  const seed = b.seed ?? 0;
  if (!isInt(seed) || seed < 0 || seed > 0xffffffff) throw new HttpError(400, `"seed" must be an integer in [0, 2^32)`);
  if (b.stream !== undefined && typeof b.stream !== "boolean") throw new HttpError(400, `"stream" must be a boolean`);
  return { model, tokens, maxTokens, temperature, topK: topK as number | undefined, seed, stream: b.stream === true };
}

const json = (value: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json", ...headers } });

/** Starts the service. */
export function serve(opts: ServeOptions): Service {
  const models = new Map(opts.models.map((m) => [m.name, m]));
  const metrics = new Metrics();
  const pool = new StreamPool(opts.streams ?? (backendName() === "cpu" ? 4 : 16), opts.queue ?? 64);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const maxTokens = opts.maxTokens ?? 256;
  let draining = false;

  async function readBody(req: Request): Promise<unknown> {
    const text = await req.text();
    if (text.length > 1 << 20) throw new HttpError(413, "body larger than 1 MiB");
    try {
      return JSON.parse(text);
    } catch {
      throw new HttpError(400, "body is not valid JSON");
    }
  }

  // Runs `work` on a pooled stream; the signal aborts on client disconnect or timeout.
  async function withPooledStream<T>(req: Request, work: (s: Stream, signal: AbortSignal) => Promise<T>): Promise<T> {
    const signal = AbortSignal.any([req.signal, AbortSignal.timeout(timeoutMs)]);
    const stream = await pool.acquire(signal);
    try {
      return await work(stream, signal);
    } finally {
      pool.release(stream);
    }
  }

  function failure(e: unknown, req: Request): Response {
    if (e instanceof HttpError) return json({ error: e.message }, e.status, e.headers);
    if (e instanceof CancelledError) {
      if (req.signal.aborted) return json({ error: "client went away" }, 499);
      return json({ error: `timed out after ${timeoutMs} ms` }, 504);
    }
    return json({ error: `${(e as Error).name}: ${(e as Error).message}` }, 500);
  }

  async function handleGenerate(req: Request): Promise<Response> {
    const p = parseRequest(await readBody(req), models, maxTokens, false);
    if (p.stream) return generateStream(req, p);
    return withPooledStream(req, async (stream, signal) => {
      const r = await generate(p.model, { tokens: p.tokens, maxTokens: p.maxTokens, temperature: p.temperature, topK: p.topK, seed: p.seed }, stream, { signal });
      metrics.tokens(r.tokens.length);
      return json({ model: p.model.name, tokens: r.tokens, text: decode(r.tokens), checksums: r.checksums, usage: { prompt_tokens: p.tokens.length, completion_tokens: r.tokens.length } });
    });
  }

  function generateStream(req: Request, p: ParsedRequest): Response {
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start: async (controller) => {
        const send = (v: unknown) => controller.enqueue(enc.encode(`data: ${JSON.stringify(v)}\n\n`));
        try {
          await withPooledStream(req, (stream, signal) =>
            generate(p.model, { tokens: p.tokens, maxTokens: p.maxTokens, temperature: p.temperature, topK: p.topK, seed: p.seed }, stream, {
              signal,
              onToken: (token, index) => {
                metrics.tokens(1);
                send({ index, token, text: decode([token]) });
              },
            }),
          );
          controller.enqueue(enc.encode("data: [DONE]\n\n"));
        } catch (e) {
          if (!req.signal.aborted) send({ error: (e as Error).message });
        } finally {
          try {
            controller.close();
          } catch {
            // The client is gone.
          }
        }
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
  }

  async function handleForward(req: Request): Promise<Response> {
    const p = parseRequest(await readBody(req), models, maxTokens, true);
    const k = p.topK ?? 5;
    return withPooledStream(req, async (stream) => {
      const r = await forward(p.model, p.tokens, stream, k);
      return json({ model: p.model.name, top_k: r.top, checksum: r.checksum });
    });
  }

  async function route(req: Request, path: string): Promise<Response> {
    if (draining) return json({ error: "shutting down" }, 503, { "Retry-After": "1" });
    if (req.method === "POST" && path === "/v1/generate") return handleGenerate(req);
    if (req.method === "POST" && path === "/v1/forward") return handleForward(req);
    if (req.method === "GET" && path === "/v1/models")
      return json({ models: [...models.values()].map((m) => ({ name: m.name, kind: m.kind, vocab: m.vocab, max_seq: m.maxSeq })) });
    if (req.method === "GET" && path === "/healthz") return json({ ok: true, pid: process.pid, backend: backendName(), streams: pool.size });
    if (req.method === "GET" && path === "/metrics") return new Response(metrics.render(pool), { headers: { "content-type": "text/plain; version=0.0.4" } });
    return json({ error: `no route ${req.method} ${path}` }, 404);
  }

  const server = Bun.serve({
    port: opts.port ?? 8080,
    hostname: opts.hostname ?? "127.0.0.1",
    idleTimeout: 0,
    fetch: async (req) => {
      const path = new URL(req.url).pathname;
      const t0 = performance.now();
      metrics.inFlight++;
      let res: Response;
      try {
        res = await route(req, path);
      } catch (e) {
        res = failure(e, req);
      } finally {
        metrics.inFlight--;
      }
      metrics.request(path, res.status, (performance.now() - t0) / 1000);
      return res;
    },
  });

  return {
    url: `http://${server.hostname}:${server.port}`,
    metrics,
    pool,
    async shutdown() {
      draining = true;
      server.stop(false);
      while (metrics.inFlight > 0 || pool.busy > 0) await Bun.sleep(10);
      pool.dispose();
      clearCache();
    },
  };
}
