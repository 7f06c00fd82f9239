/**
 * Service metrics in the Prometheus text format.
 * @module
 */
import { stats } from "../stats.ts";

const secondsBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

class Histogram {
  readonly #counts = new Array<number>(secondsBuckets.length + 1).fill(0);
  #sum = 0;
  #count = 0;

  add(seconds: number): void {
    let i = secondsBuckets.findIndex((b) => seconds <= b);
    if (i < 0) i = secondsBuckets.length;
    this.#counts[i]!++;
    this.#sum += seconds;
    this.#count++;
  }

  render(name: string, help: string): string[] {
    const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    let cumulative = 0;
    secondsBuckets.forEach((b, i) => lines.push(`${name}_bucket{le="${b}"} ${(cumulative += this.#counts[i]!)}`));
    lines.push(`${name}_bucket{le="+Inf"} ${this.#count}`, `${name}_sum ${this.#sum}`, `${name}_count ${this.#count}`);
    return lines;
  }
}

/** Counters and gauges of a running service. */
export class Metrics {
  readonly #requests = new Map<string, number>();
  readonly #latency = new Histogram();
  readonly #firstToken = new Histogram();
  #tokens = 0;
  #promptTokens = 0;
  readonly #started = performance.now();
  /** Requests being served (a streamed response until its stream ends). */
  inFlight = 0;

  /** Counts a finished request; `endpoint` is a route's path, or "unmatched". */
  request(endpoint: string, status: number, seconds: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
    this.#latency.add(seconds);
  }

  /** Counts generated tokens. */
  tokens(n: number): void {
    this.#tokens += n;
  }

  /** Counts prompt tokens of the OpenAI endpoints. */
  promptTokens(n: number): void {
    this.#promptTokens += n;
  }

  /** Records the time from a request's start to its first generated token. */
  firstToken(seconds: number): void {
    this.#firstToken.add(seconds);
  }

  /** Total requests with `status` (all endpoints). */
  count(status?: number): number {
    let n = 0;
    for (const [k, v] of this.#requests) if (status === undefined || k.endsWith(`status="${status}"`)) n += v;
    return n;
  }

  /** The exposition text; `pool` describes the stream pool (and batch places) and its queue. */
  render(pool: { size: number; busy: number; queued: number; batch?: { steps: number; rows: number } }): string {
    const s = stats();
    const uptime = (performance.now() - this.#started) / 1000;
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`${name}${labels ? `{${labels}}` : ""} ${v}`);
    };
    metric("lanes_requests_total", "counter", "Finished requests by endpoint and status.", [...this.#requests]);
    lines.push(...this.#latency.render("lanes_request_seconds", "Request latency (a streamed response: until its headers)."));
    lines.push(...this.#firstToken.render("lanes_time_to_first_token_seconds", "Time from an OpenAI request's start to its first generated token."));
    metric("lanes_requests_in_flight", "gauge", "Requests being served.", [["", this.inFlight]]);
    metric("lanes_stream_pool_size", "gauge", "Streams in the pool.", [["", pool.size]]);
    metric("lanes_stream_pool_busy", "gauge", "Streams serving a request.", [["", pool.busy]]);
    metric("lanes_queue_depth", "gauge", "Requests waiting for a stream.", [["", pool.queued]]);
    if (pool.batch) {
      metric("lanes_batch_steps_total", "counter", "Batched decode steps (continuous batching).", [["", pool.batch.steps]]);
      metric("lanes_batch_rows_total", "counter", "Sequences decoded by batched steps, summed over steps (over the steps: the mean batch size).", [["", pool.batch.rows]]);
    }
    metric("lanes_generated_tokens_total", "counter", "Tokens generated.", [["", this.#tokens]]);
    metric("lanes_prompt_tokens_total", "counter", "Prompt tokens of the OpenAI endpoints.", [["", this.#promptTokens]]);
    metric("lanes_tokens_per_second", "gauge", "Tokens generated per second since start.", [["", uptime > 0 ? this.#tokens / uptime : 0]]);
    metric("lanes_memory_active_bytes", "gauge", "Device memory held by arrays.", [["", s.activeBytes]]);
    metric("lanes_memory_cached_bytes", "gauge", "Device memory cached for reuse.", [["", s.cachedBytes]]);
    metric("lanes_epochs_committed_total", "counter", "Submission epochs committed.", [["", s.epochsCommitted]]);
    metric("lanes_kernels_executed_total", "counter", "Kernels executed.", [["", s.kernelsExecuted]]);
    return lines.join("\n") + "\n";
  }
}
