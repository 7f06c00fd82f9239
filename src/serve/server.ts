/**
 * The inference service on Bun.serve: every request runs on a stream of its own from a pool,
 * overflow waits in a bounded queue (429 with Retry-After past it), each request has a
 * timeout, a client that disconnects cancels its work at the next step, and bad input gets a
 * 400 with a JSON error before anything reaches the native core.
 * @module
 */
import { backendName } from "../native.ts";
import { clearCache } from "../stats.ts";
import { CancelledError, type ForwardSummary, type GenerateResult } from "../models/generate.ts";
import type { Model } from "../models/models.ts";
import { decode, encode } from "../models/tokenizer.ts";
import { type Engine, type EngineLoad, InProcessEngine, type Job, QueueFullError, WorkerEngine } from "./engine.ts";
import { Metrics } from "./metrics.ts";

/** Service options. */
export interface ServeOptions {
  models: Model[];
  /** 0 picks a free port. */
  port?: number;
  hostname?: string;
  /** Streams in the pool (default: 4 on the CPU backend, 16 on a GPU). */
  streams?: number;
  /**
   * Bun Workers that build and submit the requests' graphs, sharing the weights by handle
   * (default: LANES_SERVE_WORKERS, else 2 on the CPU backend and 4 on a GPU). 0 runs the
   * model work on the HTTP thread.
   */
  workers?: number;
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
  /** Streams, busy streams and queued requests. */
  load(): EngineLoad;
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

/** Starts the service (and its engine Workers). */
export async function serve(opts: ServeOptions): Promise<Service> {
  const models = new Map(opts.models.map((m) => [m.name, m]));
  const metrics = new Metrics();
  const gpu = backendName() !== "cpu";
  const streams = opts.streams ?? (gpu ? 16 : 4);
  const queue = opts.queue ?? 64;
  const workers = opts.workers ?? (process.env.LANES_SERVE_WORKERS ? Number(process.env.LANES_SERVE_WORKERS) : gpu ? 4 : 2);
  const engine: Engine = workers > 0 ? await WorkerEngine.start(opts.models, workers, streams, queue) : new InProcessEngine(models, streams, queue);
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

  // Runs the job; its signal aborts on client disconnect or timeout.
  function run(req: Request, p: ParsedRequest, kind: Job["kind"], onToken?: (t: number, i: number) => void) {
    const signal = AbortSignal.any([req.signal, AbortSignal.timeout(timeoutMs)]);
    const job: Job = { model: p.model.name, kind, tokens: p.tokens, maxTokens: p.maxTokens, temperature: p.temperature, topK: p.topK, seed: p.seed };
    return engine.run(job, signal, onToken);
  }

  function failure(e: unknown, req: Request): Response {
    if (e instanceof HttpError) return json({ error: e.message }, e.status, e.headers);
    if (e instanceof QueueFullError) return json({ error: e.message }, 429, { "Retry-After": "1" });
    if (e instanceof CancelledError) {
      if (req.signal.aborted) return json({ error: "client went away" }, 499);
      return json({ error: `timed out after ${timeoutMs} ms` }, 504);
    }
    return json({ error: `${(e as Error).name}: ${(e as Error).message}` }, 500);
  }

  async function handleGenerate(req: Request): Promise<Response> {
    const p = parseRequest(await readBody(req), models, maxTokens, false);
    if (p.stream) return generateStream(req, p);
    const r = (await run(req, p, "generate")) as GenerateResult;
    metrics.tokens(r.tokens.length);
    return json({ model: p.model.name, tokens: r.tokens, text: decode(r.tokens), checksums: r.checksums, usage: { prompt_tokens: p.tokens.length, completion_tokens: r.tokens.length } });
  }

  function generateStream(req: Request, p: ParsedRequest): Response {
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start: async (controller) => {
        let open = true;
        const send = (v: unknown) => {
          if (!open) return;
          try {
            controller.enqueue(enc.encode(`data: ${JSON.stringify(v)}\n\n`));
          } catch {
            open = false;  // the client went away; the job is cancelled through its signal
          }
        };
        try {
          await run(req, p, "generate", (token, index) => {
            metrics.tokens(1);
            send({ index, token, text: decode([token]) });
          });
          if (open) controller.enqueue(enc.encode("data: [DONE]\n\n"));
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
    p.topK ??= 5;
    const r = (await run(req, p, "forward")) as ForwardSummary;
    return json({ model: p.model.name, top_k: r.top, checksum: r.checksum });
  }

  async function route(req: Request, path: string): Promise<Response> {
    if (draining) return json({ error: "shutting down" }, 503, { "Retry-After": "1" });
    if (req.method === "POST" && path === "/v1/generate") return handleGenerate(req);
    if (req.method === "POST" && path === "/v1/forward") return handleForward(req);
    if (req.method === "GET" && path === "/v1/models")
      return json({ models: [...models.values()].map((m) => ({ name: m.name, kind: m.kind, vocab: m.vocab, max_seq: m.maxSeq })) });
    if (req.method === "GET" && path === "/healthz")
      return json({ ok: true, pid: process.pid, backend: backendName(), streams: engine.load().size, workers });
    if (req.method === "GET" && path === "/metrics") return new Response(metrics.render(engine.load()), { headers: { "content-type": "text/plain; version=0.0.4" } });
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
    load: () => engine.load(),
    async shutdown() {
      draining = true;
      server.stop(false);
      while (metrics.inFlight > 0 || engine.load().busy > 0) await Bun.sleep(10);
      await engine.dispose();
      clearCache();
    },
  };
}
