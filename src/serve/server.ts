/**
 * The inference service on Bun.serve: a table of routes (lanes' own endpoints, the
 * OpenAI-compatible ones, models/health/metrics) behind one front door that checks the API key,
 * refuses requests while draining, counts requests in flight and turns failures into error JSON.
 * Every request runs on a stream of its own from a pool, or (continuous batching, the default for
 * models that support it) decodes together with the other requests of its model in one batched
 * step per token; overflow waits in a bounded queue (429 past it), each request has a timeout,
 * and a client that disconnects cancels its work.
 * @module
 */
import { backendName } from "../native.ts";
import { clearCache } from "../stats.ts";
import type { Model } from "../models/models.ts";
import type { TextModel } from "../models/text.ts";
import { bearerCheck } from "./auth.ts";
import { Call, type Limits, type ServiceContext } from "./call.ts";
import { isBatchDecoder } from "../models/batch.ts";
import { BatchingEngine } from "./batching.ts";
import { type Engine, type EngineLoad, InProcessEngine, WorkerEngine } from "./engine.ts";
import { errorResponse, type ErrorStyle, HttpError } from "./http.ts";
import { Lifecycle } from "./lifecycle.ts";
import { Metrics } from "./metrics.ts";
import { infoRoutes } from "./routes/info.ts";
import { lanesRoutes } from "./routes/lanes.ts";
import { openAiRoutes } from "./routes/openai.ts";
import type { Route } from "./routes/route.ts";

/** Service options. */
export interface ServeOptions {
  /** Models of lanes' own endpoints (`/v1/generate`, `/v1/forward`). */
  models?: Model[];
  /** Models of the OpenAI endpoints, named by their model's name. */
  textModels?: TextModel[];
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
  /**
   * Continuous batching: the most requests of one model decoded together, one token each per
   * batched step (default 16 on the CPU backend, 64 on a GPU). Applies to models with batched
   * decode steps (GGUF Llamas); their other jobs and every other model run on the per-request
   * streams. 0 turns batching off: every request decodes on a stream of its own.
   */
  batch?: number;
  /** Requests that may wait for a stream (or a batch place) before 429 (default 64). */
  queue?: number;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** Longest generation a request may ask for (default 1024). */
  maxTokens?: number;
  /** Longest prompt, in tokens (default: the model's context less one). */
  maxPromptTokens?: number;
  /** Most choices (`n`) per OpenAI request (default 8). */
  maxN?: number;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** When set, every endpoint but `/healthz` needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
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

const routes: readonly Route[] = [...lanesRoutes, ...openAiRoutes, ...infoRoutes];

// The route for a request, or the error for its method and path (in the style of that path's routes).
type Match = { route: Route } | { route: undefined; error: HttpError; style: ErrorStyle };

function match(method: string, path: string): Match {
  const onPath = routes.filter((r) => r.path === path);
  const route = onPath.find((r) => r.method === method);
  if (route) return { route };
  if (onPath.length === 0) return { route: undefined, error: new HttpError(404, `no route ${method} ${path}`, { code: "not_found" }), style: "openai" };
  const allowed = onPath.map((r) => r.method).join(", ");
  return { route: undefined, error: new HttpError(405, `${path} takes ${allowed}`, { headers: { Allow: allowed } }), style: onPath[0]!.style };
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function limitsOf(opts: ServeOptions): Limits {
  return {
    maxTokens: positive("maxTokens", opts.maxTokens, 1024),
    maxPromptTokens: opts.maxPromptTokens === undefined ? undefined : positive("maxPromptTokens", opts.maxPromptTokens, 1),
    maxN: positive("maxN", opts.maxN, 8),
    maxBodyBytes: positive("maxBodyBytes", opts.maxBodyBytes, 1 << 20),
  };
}

// The models the engine runs: those of both kinds of endpoint, one per name.
function engineModels(models: readonly Model[], textModels: readonly TextModel[]): Map<string, Model> {
  const byName = new Map<string, Model>();
  for (const m of [...models, ...textModels.map((t) => t.model)]) {
    const known = byName.get(m.name);
    if (known && known !== m) throw new TypeError(`two different models are named "${m.name}"`);
    byName.set(m.name, m);
  }
  return byName;
}

async function startEngine(models: Map<string, Model>, opts: ServeOptions, gpu: boolean): Promise<{ engine: Engine; workers: number }> {
  const streams = opts.streams ?? (gpu ? 16 : 4);
  const queue = opts.queue ?? 64;
  const workers = opts.workers ?? (process.env.LANES_SERVE_WORKERS ? Number(process.env.LANES_SERVE_WORKERS) : gpu ? 4 : 2);
  const batch = opts.batch ?? (gpu ? 64 : 16);
  if (!Number.isSafeInteger(batch) || batch < 0) throw new RangeError(`batch must be a non-negative integer, got ${batch}`);
  const perStream = workers > 0 ? await WorkerEngine.start([...models.values()], workers, streams, queue) : new InProcessEngine(models, streams, queue);
  const batched = batch > 0 && [...models.values()].some((m) => m.kind === "decoder" && isBatchDecoder(m));
  return { engine: batched ? new BatchingEngine(models, perStream, { maxBatch: batch, queue }) : perStream, workers };
}

/** Starts the service (and its engine Workers). */
export async function serve(opts: ServeOptions): Promise<Service> {
  const limits = limitsOf(opts);
  const authorized = opts.apiKey === undefined ? () => true : bearerCheck(opts.apiKey);
  const models = opts.models ?? [];
  const textModels = opts.textModels ?? [];
  const { engine, workers } = await startEngine(engineModels(models, textModels), opts, backendName() !== "cpu");
  const metrics = new Metrics();
  const lifecycle = new Lifecycle((n) => (metrics.inFlight = n));
  const ctx: ServiceContext = {
    engine,
    metrics,
    models: new Map(models.map((m) => [m.name, m])),
    textModels: new Map(textModels.map((t) => [t.model.name, t])),
    limits,
    timeoutMs: opts.timeoutMs ?? 30_000,
    workers,
    startedAt: Math.floor(Date.now() / 1000),
  };

  async function respond(call: Call, found: Match): Promise<Response> {
    if (!found.route?.public && !authorized(call.req))
      return errorResponse("openai", 401, "missing or invalid API key (send Authorization: Bearer <key>)", { code: "invalid_api_key", headers: { "WWW-Authenticate": "Bearer" } });
    const style = found.route ? found.route.style : found.style;
    if (lifecycle.draining) return errorResponse(style, 503, "shutting down", { code: "shutting_down", headers: { "Retry-After": "1" } });
    if (!found.route) return errorResponse(style, found.error.status, found.error.message, found.error.details);
    try {
      return await found.route.handle(call);
    } catch (e) {
      const error = call.httpError(e);
      return errorResponse(style, error.status, error.message, error.details);
    }
  }

  const server = Bun.serve({
    port: opts.port ?? 8080,
    hostname: opts.hostname ?? "127.0.0.1",
    idleTimeout: 0,
    fetch: async (req) => {
      const t0 = performance.now();
      const path = new URL(req.url).pathname;
      const found = match(req.method, path);
      const end = lifecycle.enter();
      const call = new Call(req, ctx, end);
      const res = await respond(call, found);
      if (!call.detached) end();
      // Labelled by route, never by the raw path: what a client sends stays out of the metrics.
      metrics.request(found.route?.path ?? "unmatched", res.status, (performance.now() - t0) / 1000);
      return res;
    },
  });

  return {
    url: `http://${server.hostname}:${server.port}`,
    metrics,
    load: () => engine.load(),
    async shutdown() {
      const drained = lifecycle.drain();
      void server.stop(false);
      await drained;
      await engine.dispose();
      clearCache();
    },
  };
}
