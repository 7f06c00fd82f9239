/**
 * The service's batching mode (continuous batching). For each model that can run batched decode
 * steps ({@link BatchDecoder}), one loop on the HTTP thread owns a {@link DecodeBatch} on a
 * stream of its own: it prefills the newly arrived requests (together, in one forward pass
 * over their prompts padded to the longest, which gives each its first token), moves them into
 * the batch, and then decodes every active request together, one token each per step, so the
 * weights are read once per step for all of them. Requests join and leave between any two
 * steps. Each request keeps its own sampler, stop tokens, `maxTokens`, cancellation and token
 * callback, and gets exactly the tokens a serial {@link runGeneration} gives it.
 *
 * Every other job (a model without batched steps, a forward pass) goes to the per-stream engine
 * the batching engine wraps, so isolation on streams stays available.
 * @module
 */
import type { LanesArray } from "../array.ts";
import { evalAsync } from "../eval.ts";
import { type BatchDecoder, type BatchRow, DecodeBatch, isBatchDecoder } from "../models/batch.ts";
import { CancelledError } from "../models/generate.ts";
import type { Model } from "../models/models.ts";
import { checksum, seededRandom } from "../models/sampling.ts";
import { newStream, type Stream } from "../stream.ts";
import { type Engine, type EngineLoad, type Job, type JobResult, type OnToken, QueueFullError } from "./engine.ts";
import { type GenerationParams, type GenerationResult, nextToken } from "./generation.ts";

/** One request in a batch loop. */
interface Entry {
  params: GenerationParams;
  signal: AbortSignal;
  onToken?: OnToken;
  resolve: (r: GenerationResult) => void;
  reject: (e: Error) => void;
  random: () => number;
  result: GenerationResult;
  row?: BatchRow;
  // The token this request feeds the next step.
  next: number;
}

/** The batch loop of one model. */
class BatchScheduler {
  readonly #waiting: Entry[] = [];
  readonly #active: Entry[] = [];
  readonly #stream: Stream;
  readonly #batch: DecodeBatch;
  #loop: Promise<void> | undefined;
  #running = false;
  #closed = false;
  /** Batched steps run, and the rows they decoded. */
  readonly counts = { steps: 0, rows: 0 };

  constructor(
    readonly model: BatchDecoder,
    readonly maxBatch: number,
    readonly maxQueue: number,
    readonly prefillTokens: number,
  ) {
    this.#stream = newStream();
    this.#batch = new DecodeBatch(model, this.#stream);
  }

  load(): EngineLoad {
    return { size: this.maxBatch, busy: this.#active.length, queued: Math.max(0, this.#waiting.length - this.#free()) };
  }

  // Batch places not yet taken by an active request.
  #free(): number {
    return this.maxBatch - this.#active.length;
  }

  admit(jobs: number): void {
    if (this.#active.length + this.#waiting.length + jobs > this.maxBatch + this.maxQueue) throw this.#full();
  }

  #full(): QueueFullError {
    return new QueueFullError(`all ${this.maxBatch} batch places of model "${this.model.name}" busy and ${this.maxQueue} requests queued`);
  }

  run(params: GenerationParams, signal: AbortSignal, onToken?: OnToken): Promise<GenerationResult> {
    if (this.#closed) return Promise.reject(new CancelledError("shutting down"));
    if (this.#active.length + this.#waiting.length >= this.maxBatch + this.maxQueue) return Promise.reject(this.#full());
    return new Promise<GenerationResult>((resolve, reject) => {
      this.#waiting.push({
        params,
        signal,
        onToken,
        resolve,
        reject,
        random: seededRandom(params.seed ?? 0),
        result: { tokens: [], checksums: [], finishReason: "length" },
        next: 0,
      });
      if (!this.#running) {
        this.#running = true;
        this.#loop = this.#drive();
      }
    });
  }

  /** Rejects what waits, lets the active requests finish, then frees the batch and its stream. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const e of this.#waiting.splice(0)) e.reject(new CancelledError("shutting down"));
    await this.#loop;
    this.#batch.dispose();
    this.#stream.dispose();
  }

  // Runs until nothing waits or decodes. `#running` drops in the same synchronous run as the last
  // check, so a request that arrives later always starts a new loop.
  async #drive(): Promise<void> {
    try {
      // Yield once, so requests admitted in the same tick start together.
      await Promise.resolve();
      while (this.#waiting.length > 0 || this.#active.length > 0) {
        this.#dropCancelled();
        while (this.#waiting.length > 0 && this.#active.length < this.maxBatch) await this.#prefill(this.#prefillGroup());
        if (this.#active.length > 0) await this.#step();
      }
    } catch (error) {
      for (const e of [...this.#waiting, ...this.#active]) this.#finish(e, error as Error);
    } finally {
      this.#running = false;
    }
  }

  #dropCancelled(): void {
    for (const list of [this.#waiting, this.#active])
      for (const e of list.filter((x) => x.signal.aborted)) this.#finish(e, new CancelledError(`cancelled after ${e.result.tokens.length} tokens`));
  }

  // Ends `e`: resolves it (or rejects with `error`) and frees its place.
  #finish(e: Entry, error?: Error): void {
    for (const list of [this.#waiting, this.#active]) {
      const i = list.indexOf(e);
      if (i >= 0) list.splice(i, 1);
    }
    if (e.row) this.#batch.leave(e.row);
    e.row = undefined;
    if (error) e.reject(error);
    else e.resolve(e.result);
  }

  // The next-token bookkeeping a serial generation does after each step. True when `e` goes on.
  #accept(e: Entry, token: number, logits: Float32Array | undefined, pos: number): boolean {
    const p = e.params;
    if (p.stopIds?.includes(token)) {
      e.result.finishReason = "stop";
      e.result.endToken = token;
      return false;
    }
    const i = e.result.tokens.length;
    e.result.tokens.push(token);
    if (logits && p.checksums !== false) e.result.checksums.push(checksum(logits));
    e.onToken?.(token, i);
    e.next = token;
    return i + 1 < p.maxTokens && pos + 1 <= this.model.maxSeq;
  }

  // Whether a step must read `e`'s logits (to sample, or for the checksums) rather than its greedy token.
  #needsLogits(e: Entry): boolean {
    return (e.params.temperature ?? 0) > 0 || e.params.checksums !== false;
  }

  // The next waiting requests to prefill together: as many as the batch has places for, while
  // the prompts padded to the longest stay within the token budget and at most twice their own
  // tokens (a long prompt is not padded onto many short ones). At least one.
  #prefillGroup(): Entry[] {
    const group: Entry[] = [];
    let longest = 0;
    let tokens = 0;
    for (const e of this.#waiting) {
      if (group.length >= this.#free()) break;
      const n = e.params.tokens.length;
      const padded = (group.length + 1) * Math.max(longest, n);
      if (group.length > 0 && (padded > this.prefillTokens || padded > 2 * (tokens + n))) break;
      group.push(e);
      longest = Math.max(longest, n);
      tokens += n;
    }
    for (const e of group) this.#waiting.splice(this.#waiting.indexOf(e), 1);
    return group;
  }

  // Prompts prefilled together on the batch's stream (each as if alone): each request's first
  // token, then, for those that go on, a place in the batch.
  async #prefill(group: Entry[]): Promise<void> {
    const live: Entry[] = [];
    for (const e of group) {
      if (e.signal.aborted) this.#finish(e, new CancelledError("cancelled after 0 tokens"));
      else if (e.params.maxTokens < 1 || e.params.tokens.length > this.model.maxSeq) this.#finish(e);
      else live.push(e);
    }
    if (live.length === 0) return;
    this.#active.push(...live);
    let caches: LanesArray[] = [];
    try {
      const pre = this.model.prefillBatch(live.map((e) => e.params.tokens), this.#stream);
      caches = pre.caches;
      let logits: Float32Array;
      try {
        await evalAsync(pre.logits, ...pre.caches);
        logits = pre.logits.toFloat32Array();
      } finally {
        pre.scope.disposeExcept(pre.caches);
      }
      const vocab = logits.length / live.length;
      const picks: { row: number; pos: number }[] = [];
      const going: Entry[] = [];
      live.forEach((e, j) => {
        const own = logits.subarray(j * vocab, (j + 1) * vocab);
        const pos = e.params.tokens.length;
        if (this.#accept(e, nextToken(own, e.random, e.params), own, pos)) {
          picks.push({ row: j, pos });
          going.push(e);
        } else {
          this.#finish(e);
        }
      });
      const rows = this.#batch.joinRows(caches, picks);
      caches = [];
      going.forEach((e, j) => (e.row = rows[j]));
    } catch (error) {
      for (const c of caches) c.dispose();
      for (const e of live) if (!e.row) this.#finish(e, error as Error);
    }
  }

  // One decode step of every active request.
  async #step(): Promise<void> {
    const tokens = new Map<BatchRow, number>();
    for (const e of this.#active) tokens.set(e.row!, e.next);
    let outputs;
    try {
      // With nothing waiting to join and every row greedy, the next step is most likely this
      // step's greedy tokens one position on: record it before reading this one.
      const ahead = this.#waiting.length === 0 && this.#active.every((e) => (e.params.temperature ?? 0) <= 0);
      outputs = await this.#batch.step(tokens, { logits: this.#active.some((e) => this.#needsLogits(e)), ahead });
      this.counts.steps += 1;
      this.counts.rows += tokens.size;
    } catch (error) {
      // The batch dropped its caches: every active request fails.
      for (const e of [...this.#active]) {
        e.row = undefined;
        this.#finish(e, error as Error);
      }
      return;
    }
    for (const e of [...this.#active]) {
      const out = outputs.get(e.row!)!;
      const token = (e.params.temperature ?? 0) > 0 ? nextToken(out.logits!, e.random, e.params) : out.greedy;
      if (!this.#accept(e, token, out.logits, e.row!.pos)) this.#finish(e);
    }
  }
}

/**
 * Decodes the generation jobs of every model with batched steps in one batch loop per model (at
 * most `maxBatch` requests per step, `queue` more waiting, 429 past that; prompts that arrive
 * together are prefilled together, up to `prefillTokens` tokens padded, default 4096); every
 * other job runs on `inner`, a per-stream engine.
 */
export class BatchingEngine implements Engine {
  readonly #schedulers = new Map<string, BatchScheduler>();

  constructor(
    models: ReadonlyMap<string, Model>,
    private readonly inner: Engine,
    opts: { maxBatch: number; queue: number; prefillTokens?: number },
  ) {
    for (const [name, m] of models)
      if (m.kind === "decoder" && isBatchDecoder(m)) this.#schedulers.set(name, new BatchScheduler(m, opts.maxBatch, opts.queue, opts.prefillTokens ?? 4096));
  }

  /** Names of the models decoded in batches. */
  get batchedModels(): string[] {
    return [...this.#schedulers.keys()];
  }

  /** {@inheritDoc Engine.load} */
  load(): EngineLoad {
    const total = { ...this.inner.load(), batch: { steps: 0, rows: 0 } };
    for (const s of this.#schedulers.values()) {
      const l = s.load();
      total.size += l.size;
      total.busy += l.busy;
      total.queued += l.queued;
      total.batch.steps += s.counts.steps;
      total.batch.rows += s.counts.rows;
    }
    return total;
  }

  /** {@inheritDoc Engine.admit} */
  admit(jobs: number, model?: string): void {
    const batched = model === undefined ? undefined : this.#schedulers.get(model);
    if (batched) batched.admit(jobs);
    else this.inner.admit(jobs, model);
  }

  /** {@inheritDoc Engine.run} */
  run(job: Job, signal: AbortSignal, onToken?: OnToken): Promise<JobResult> {
    const batched = job.kind === "generate" ? this.#schedulers.get(job.model) : undefined;
    if (batched && job.kind === "generate") return batched.run(job.params, signal, onToken);
    return this.inner.run(job, signal, onToken);
  }

  /** {@inheritDoc Engine.dispose} */
  async dispose(): Promise<void> {
    await Promise.all([...this.#schedulers.values()].map((s) => s.close()));
    await this.inner.dispose();
  }
}
