/**
 * What a route handler gets: the service's shared state ({@link ServiceContext}) and one
 * request's {@link Call}, whose signal cancels its jobs when the client goes away or its time
 * is up.
 * @module
 */
import type { TextModel } from "../models/text.ts";
import { CancelledError } from "../models/generate.ts";
import type { Model } from "../models/models.ts";
import { type Engine, QueueFullError } from "./engine.ts";
import { HttpError } from "./http.ts";
import type { Metrics } from "./metrics.ts";

/** The caps on a request; each is a `lanes serve` flag. */
export interface Limits {
  /** Longest generation a request may ask for (`--max-tokens`). */
  maxTokens: number;
  /** Longest prompt in tokens (`--max-prompt-tokens`); undefined: the model's context less one. */
  maxPromptTokens: number | undefined;
  /** Most choices per request (`--max-n`). */
  maxN: number;
  /** Largest request body in bytes (`--max-body-bytes`). */
  maxBodyBytes: number;
}

/** The running service's state the routes share. */
export interface ServiceContext {
  readonly engine: Engine;
  readonly metrics: Metrics;
  /** Models of the lanes endpoints (`/v1/generate`, `/v1/forward`), by name. */
  readonly models: ReadonlyMap<string, Model>;
  /** Models of the OpenAI endpoints, by their model's name. */
  readonly textModels: ReadonlyMap<string, TextModel>;
  readonly limits: Limits;
  readonly timeoutMs: number;
  /** Engine Workers (0: the model work runs on the HTTP thread). */
  readonly workers: number;
  /** When the service started, in Unix seconds. */
  readonly startedAt: number;
}

/** One request being served. */
export class Call {
  readonly #gone = new AbortController();
  #signal: AbortSignal | undefined;
  #detached = false;

  constructor(
    readonly req: Request,
    readonly ctx: ServiceContext,
    private readonly end: () => void,
  ) {}

  /** Aborts when the client goes away or the request's timeout (counted from the first use) passes; its jobs run under it. */
  get signal(): AbortSignal {
    this.#signal ??= AbortSignal.any([this.req.signal, this.#gone.signal, AbortSignal.timeout(this.ctx.timeoutMs)]);
    return this.#signal;
  }

  /** True once the client went away. */
  get clientGone(): boolean {
    return this.req.signal.aborted || this.#gone.signal.aborted;
  }

  /** Marks the client as gone (its streamed response was cancelled). */
  cancel(): void {
    this.#gone.abort();
  }

  /** Keeps the request in flight after its handler returned (a streamed response); returns the function that ends it. */
  detach(): () => void {
    this.#detached = true;
    return this.end;
  }

  /** True once {@link Call.detach} was called. */
  get detached(): boolean {
    return this.#detached;
  }

  /** Any failure of this request as an {@link HttpError}: 429 past the queue, 499 or 504 when cancelled, else 500. */
  httpError(e: unknown): HttpError {
    if (e instanceof HttpError) return e;
    if (e instanceof QueueFullError) return new HttpError(429, e.message, { code: "queue_full", headers: { "Retry-After": "1" } });
    if (e instanceof CancelledError) {
      if (this.clientGone) return new HttpError(499, "client went away", { code: "client_closed_request" });
      return new HttpError(504, `timed out after ${this.ctx.timeoutMs} ms`, { code: "timeout" });
    }
    const error = e as Error;
    return new HttpError(500, `${error.name}: ${error.message}`, { code: "internal_error" });
  }
}
