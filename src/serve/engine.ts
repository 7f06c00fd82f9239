/**
 * Where the service's model work runs. {@link InProcessEngine}: on the HTTP thread, a stream
 * per request. {@link WorkerEngine}: on a pool of Bun Workers, each owning a share of the
 * streams, so graphs for different requests are built and submitted from several threads at
 * once (the case per-stream locking is for). The weights are loaded once and shared with the
 * Workers by handle. Both bound the wait queue and answer 429 past it.
 * @module
 */
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { libraryPath } from "../native.ts";
import { newStream, type Stream } from "../stream.ts";
import { CancelledError, forward, type ForwardSummary } from "../models/generate.ts";
import { type LlamaConfig, LlamaModel } from "../models/llama.ts";
import { architectures, type Model } from "../models/models.ts";
import { type GenerationParams, type GenerationResult, runGeneration } from "./generation.ts";

/** One unit of model work: a generation, or one forward pass summarized by its `topK` logits. */
export type Job =
  | { kind: "generate"; model: string; params: GenerationParams }
  | { kind: "forward"; model: string; tokens: number[]; topK: number };

/** What a job gives back. */
export type JobResult = GenerationResult | ForwardSummary;

/** Sees each generated token. */
export type OnToken = (token: number, index: number) => void;

/** Capacity and load, for metrics. */
export interface EngineLoad {
  size: number;
  busy: number;
  queued: number;
  /** Batching mode: batched decode steps run so far, and the sequences they decoded (their sum over steps). */
  batch?: { steps: number; rows: number };
}

/** Runs jobs; rejects with {@link QueueFullError} past the queue, {@link CancelledError} on abort. */
export interface Engine {
  /** Streams, busy streams and queued jobs right now. */
  load(): EngineLoad;
  /**
   * Throws {@link QueueFullError} unless `jobs` more jobs (of `model`, when given) can run or wait
   * now; {@link Engine.run} calls made in the same tick are then admitted together.
   */
  admit(jobs: number, model?: string): void;
  /** Runs `job` on a free stream (waiting in the queue for one); `onToken` sees each generated token. */
  run(job: Job, signal: AbortSignal, onToken?: OnToken): Promise<JobResult>;
  /** Waits for running jobs, then frees streams and Workers. */
  dispose(): Promise<void>;
}

/** All slots are busy and the wait queue is full. */
export class QueueFullError extends Error {
  override name = "QueueFullError";
}

/** Slots handed to one job at a time, with a bounded wait queue. */
export class SlotPool<T> {
  readonly #free: T[];
  readonly #waiting: { resolve: (s: T) => void; reject: (e: Error) => void }[] = [];
  #idle: (() => void)[] = [];

  constructor(
    readonly slots: readonly T[],
    readonly maxQueue: number,
  ) {
    this.#free = [...slots].reverse();
  }

  /** Slots, busy slots and queued waiters. */
  load(): EngineLoad {
    return { size: this.slots.length, busy: this.slots.length - this.#free.length, queued: this.#waiting.length };
  }

  /** Throws {@link QueueFullError} unless `count` acquires would get a slot or a place in the queue. */
  admit(count: number): void {
    if (this.#free.length + this.maxQueue - this.#waiting.length < count) throw this.#full();
  }

  #full(): QueueFullError {
    return new QueueFullError(`all ${this.slots.length} streams busy and ${this.maxQueue} requests queued`);
  }

  /** A free slot now, or once one is released; rejects past the queue or when `signal` aborts. */
  acquire(signal: AbortSignal): Promise<T> {
    const s = this.#free.pop();
    if (s !== undefined) return Promise.resolve(s);
    if (this.#waiting.length >= this.maxQueue) return Promise.reject(this.#full());
    return new Promise<T>((resolve, reject) => {
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

  /** Hands `s` to the next waiter, or frees it. */
  release(s: T): void {
    const next = this.#waiting.shift();
    if (next) next.resolve(s);
    else this.#free.push(s);
    if (this.#free.length === this.slots.length) for (const resolve of this.#idle.splice(0)) resolve();
  }

  /** Resolves once every slot is free. */
  whenIdle(): Promise<void> {
    if (this.#free.length === this.slots.length) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Rejects everything still waiting. */
  close(): void {
    for (const w of this.#waiting.splice(0)) w.reject(new CancelledError("shutting down"));
  }
}

/** Runs one job on `stream` (on the calling thread). */
export function runJob(model: Model, job: Job, stream: Stream, signal: AbortSignal, onToken?: OnToken): Promise<JobResult> {
  if (job.kind === "forward") return forward(model, job.tokens, stream, job.topK);
  return runGeneration(model, job.params, stream, { signal, onToken });
}

/** Model work on the calling (HTTP) thread, one stream per job. */
export class InProcessEngine implements Engine {
  readonly #pool: SlotPool<Stream>;
  constructor(
    private readonly models: Map<string, Model>,
    streams: number,
    queue: number,
  ) {
    this.#pool = new SlotPool(Array.from({ length: streams }, () => newStream()), queue);
  }
  /** {@inheritDoc Engine.load} */
  load(): EngineLoad {
    return this.#pool.load();
  }
  /** {@inheritDoc Engine.admit} */
  admit(jobs: number): void {
    this.#pool.admit(jobs);
  }
  /** {@inheritDoc Engine.run} */
  async run(job: Job, signal: AbortSignal, onToken?: OnToken): Promise<JobResult> {
    const stream = await this.#pool.acquire(signal);
    try {
      return await runJob(this.models.get(job.model)!, job, stream, signal, onToken);
    } finally {
      this.#pool.release(stream);
    }
  }
  /** {@inheritDoc Engine.dispose} */
  async dispose(): Promise<void> {
    this.#pool.close();
    await this.#pool.whenIdle();
    for (const s of this.#pool.slots) s.dispose();
  }
}

/** A model's description for a Worker: its architecture, its weights' array ids and (a GGUF Llama) its dimensions. */
export interface SharedModel {
  name: string;
  architecture: "mlp" | "transformer" | "hybrid" | "llama";
  weights: Record<string, number>;
  llama?: LlamaConfig;
}

/** Messages to an engine Worker. */
export type ToWorker =
  | { type: "init"; models: SharedModel[]; streams: number }
  | { type: "run"; id: number; stream: number; job: Job }
  | { type: "cancel"; id: number }
  | { type: "stop" };

/** Messages from an engine Worker. */
export type FromWorker =
  | { type: "ready" }
  | { type: "token"; id: number; token: number; index: number }
  | { type: "done"; id: number; result: JobResult }
  | { type: "error"; id: number; name: string; message: string }
  | { type: "stopped" };

type Slot = { worker: number; stream: number };

// Inside a `bun build --compile` executable every module reports the executable's own path, and
// the Worker's module is an extra entry point stored (transpiled to .js) under its path relative
// to the build's root folder.
function engineWorkerModule(): string {
  if (!import.meta.path.startsWith("/$bunfs/")) return new URL("./engine-worker.ts", import.meta.url).href;
  const root = dirname(import.meta.path);
  const candidates = ["node_modules/lanes/src/serve", "src/serve", "."].map((d) => `${root}/${d}/engine-worker.js`);
  const found = candidates.find((c) => existsSync(c));
  if (found) return found;
  throw new Error(
    "this executable does not contain lanes' engine Worker: add node_modules/lanes/src/serve/engine-worker.ts " +
      "as a second entry point to `bun build --compile`, or serve with `workers: 0`",
  );
}

/** Model work on `workers` Bun Workers sharing the models' weights by handle. */
export class WorkerEngine implements Engine {
  readonly #workers: Worker[] = [];
  readonly #pool: SlotPool<Slot>;
  readonly #pending = new Map<number, { resolve: (r: JobResult) => void; reject: (e: Error) => void; onToken?: OnToken }>();
  #next = 1;

  private constructor(workers: number, streamsPerWorker: number, queue: number) {
    const slots: Slot[] = [];
    for (let s = 0; s < streamsPerWorker; s++) for (let w = 0; w < workers; w++) slots.push({ worker: w, stream: s });
    this.#pool = new SlotPool(slots, queue);
  }

  /** Starts the Workers and hands them the models (by weight id); resolves once all are ready. */
  static async start(models: readonly Model[], workers: number, streams: number, queue: number): Promise<WorkerEngine> {
    const shared = models.map(shareModel);
    const perWorker = Math.max(1, Math.ceil(streams / workers));
    const engine = new WorkerEngine(workers, perWorker, queue);
    await Promise.all(
      Array.from({ length: workers }, (_, w) => {
        // The Workers must open the very library file this thread opened (one runtime per
        // process); Bun Workers start from the original environment, not from process.env.
        const worker = new Worker(engineWorkerModule(), { env: { ...process.env, LANES_LIBRARY_PATH: libraryPath() } });
        engine.#workers.push(worker);
        return new Promise<void>((resolve, reject) => {
          worker.onmessage = (e: MessageEvent<FromWorker>) => {
            if (e.data.type === "ready") {
              worker.onmessage = (m: MessageEvent<FromWorker>) => engine.#receive(m.data);
              resolve();
            } else if (e.data.type === "error") {
              reject(new Error(`engine worker ${w}: ${e.data.message}`));
            }
          };
          worker.onerror = (e) => reject(new Error(`engine worker ${w} failed to start: ${e.message}`));
          worker.postMessage({ type: "init", models: shared, streams: perWorker } satisfies ToWorker);
        });
      }),
    );
    return engine;
  }

  #receive(m: FromWorker): void {
    if (m.type === "token") this.#pending.get(m.id)?.onToken?.(m.token, m.index);
    else if (m.type === "done") this.#pending.get(m.id)?.resolve(m.result);
    else if (m.type === "error") {
      const p = this.#pending.get(m.id);
      const error = m.name === "CancelledError" ? new CancelledError(m.message) : Object.assign(new Error(m.message), { name: m.name });
      p?.reject(error);
    }
  }

  /** {@inheritDoc Engine.load} */
  load(): EngineLoad {
    return this.#pool.load();
  }

  /** {@inheritDoc Engine.admit} */
  admit(jobs: number): void {
    this.#pool.admit(jobs);
  }

  /** {@inheritDoc Engine.run} */
  async run(job: Job, signal: AbortSignal, onToken?: OnToken): Promise<JobResult> {
    const slot = await this.#pool.acquire(signal);
    const id = this.#next++;
    const worker = this.#workers[slot.worker]!;
    const cancel = () => worker.postMessage({ type: "cancel", id } satisfies ToWorker);
    try {
      return await new Promise<JobResult>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject, onToken });
        signal.addEventListener("abort", cancel, { once: true });
        worker.postMessage({ type: "run", id, stream: slot.stream, job } satisfies ToWorker);
      });
    } finally {
      signal.removeEventListener("abort", cancel);
      this.#pending.delete(id);
      this.#pool.release(slot);
    }
  }

  /** {@inheritDoc Engine.dispose} */
  async dispose(): Promise<void> {
    this.#pool.close();
    await this.#pool.whenIdle();
    await Promise.all(
      this.#workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.onmessage = (e: MessageEvent<FromWorker>) => {
              if (e.data.type === "stopped") resolve();
            };
            w.postMessage({ type: "stop" } satisfies ToWorker);
          }),
      ),
    );
    for (const w of this.#workers) w.terminate();
  }
}

/**
 * The weight ids of a loaded model, for Workers to adopt: the architectures of `models.ts`
 * and GGUF Llamas are rebuilt from their weights (and dimensions); another model is refused by name.
 */
export function shareModel(model: Model): SharedModel {
  const weights = Object.fromEntries([...model.weights].map(([k, a]) => [k, a.id]));
  if (model instanceof LlamaModel) return { name: model.name, architecture: "llama", weights, llama: model.config };
  if (model.architecture === "llama" || !Object.hasOwn(architectures, model.architecture))
    throw new TypeError(`model "${model.name}" (architecture "${model.architecture}") cannot be rebuilt in an engine Worker: serve it with workers: 0 (--workers 0)`);
  return { name: model.name, architecture: model.architecture, weights };
}
