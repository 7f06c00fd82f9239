/**
 * Service metrics in the Prometheus text format.
 * @module
 */
import { stats } from "../stats.ts";

const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Counters and gauges of a running service. */
export class Metrics {
  readonly #requests = new Map<string, number>();
  readonly #buckets = new Array<number>(latencyBuckets.length + 1).fill(0);
  #latencySum = 0;
  #latencyCount = 0;
  #tokens = 0;
  readonly #started = performance.now();
  inFlight = 0;

  /** Counts a finished request. */
  request(endpoint: string, status: number, seconds: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
    let i = latencyBuckets.findIndex((b) => seconds <= b);
    if (i < 0) i = latencyBuckets.length;
    this.#buckets[i]!++;
    this.#latencySum += seconds;
    this.#latencyCount++;
  }

  /** Counts generated tokens. */
  tokens(n: number): void {
    this.#tokens += n;
  }

  /** Total requests with `status` (all endpoints). */
  count(status?: number): number {
    let n = 0;
    for (const [k, v] of this.#requests) if (status === undefined || k.endsWith(`status="${status}"`)) n += v;
    return n;
  }

  /** The exposition text; `pool` describes the stream pool and its queue. */
  render(pool: { size: number; busy: number; queued: number }): string {
    const s = stats();
    const uptime = (performance.now() - this.#started) / 1000;
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`${name}${labels ? `{${labels}}` : ""} ${v}`);
    };
    metric("lanes_requests_total", "counter", "Finished requests by endpoint and status.", [...this.#requests]);
    let cumulative = 0;
    const buckets: [string, number][] = latencyBuckets.map((b, i) => [`le="${b}"`, (cumulative += this.#buckets[i]!)]);
    buckets.push([`le="+Inf"`, this.#latencyCount]);
    lines.push("# HELP lanes_request_seconds Request latency.", "# TYPE lanes_request_seconds histogram");
    for (const [l, v] of buckets) lines.push(`lanes_request_seconds_bucket{${l}} ${v}`);
    lines.push(`lanes_request_seconds_sum ${this.#latencySum}`, `lanes_request_seconds_count ${this.#latencyCount}`);
    metric("lanes_requests_in_flight", "gauge", "Requests being served.", [["", this.inFlight]]);
    metric("lanes_stream_pool_size", "gauge", "Streams in the pool.", [["", pool.size]]);
    metric("lanes_stream_pool_busy", "gauge", "Streams serving a request.", [["", pool.busy]]);
    metric("lanes_queue_depth", "gauge", "Requests waiting for a stream.", [["", pool.queued]]);
    metric("lanes_generated_tokens_total", "counter", "Tokens generated.", [["", this.#tokens]]);
    metric("lanes_tokens_per_second", "gauge", "Tokens generated per second since start.", [["", uptime > 0 ? this.#tokens / uptime : 0]]);
    metric("lanes_memory_active_bytes", "gauge", "Device memory held by arrays.", [["", s.activeBytes]]);
    metric("lanes_memory_cached_bytes", "gauge", "Device memory cached for reuse.", [["", s.cachedBytes]]);
    metric("lanes_epochs_committed_total", "counter", "Submission epochs committed.", [["", s.epochsCommitted]]);
    metric("lanes_kernels_executed_total", "counter", "Kernels executed.", [["", s.kernelsExecuted]]);
    return lines.join("\n") + "\n";
  }
}
