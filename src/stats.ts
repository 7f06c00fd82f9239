/**
 * Process-wide counters.
 * @module
 */
import { check, native } from "./native.ts";

/** Counters since the process started (memory figures are current). */
export interface Stats {
  /** Kernels run to completion. */
  kernelsExecuted: number;
  /** Submission epochs committed to device queues. */
  epochsCommitted: number;
  /** Bytes held by live buffers. */
  activeBytes: number;
  /** Highest `activeBytes` since start or {@link resetPeakMemory}. */
  peakBytes: number;
  /** Bytes kept in the allocator's cache for reuse. */
  cachedBytes: number;
  /** Live array handles (all threads). */
  liveArrays: number;
  /** Live stream handles (all threads), the default stream included. */
  liveStreams: number;
}

const values = new BigUint64Array(7);

/** Reads the counters. */
export function stats(): Stats {
  check(native.lanes_stats_read(values, values.length));
  const n = (i: number) => Number(values[i]!);
  return {
    kernelsExecuted: n(0),
    epochsCommitted: n(1),
    activeBytes: n(2),
    peakBytes: n(3),
    cachedBytes: n(4),
    liveArrays: n(5),
    liveStreams: n(6),
  };
}

/** Restarts peak tracking from the current active bytes. */
export function resetPeakMemory(): void {
  check(native.lanes_stats_reset_peak());
}

/** Caps device memory in bytes (0: no limit). Exceeding it raises `OutOfMemoryError`. */
export function setMemoryLimit(bytes: number): void {
  check(native.lanes_set_memory_limit(bytes));
}

/** Frees the buffers the allocator keeps cached for reuse (`cachedBytes` drops to 0). */
export function clearCache(): void {
  check(native.lanes_clear_cache());
}

/**
 * Sets how many ops and bytes a submission epoch takes before it is committed (for epochs
 * opened afterwards). Small budgets submit sooner; large ones batch more.
 */
export function setEpochBudget(maxOps: number, maxBytes: number): void {
  check(native.lanes_set_epoch_budget(maxOps, maxBytes));
}

/**
 * Waits for the default stream, then shuts lanes down: every later call throws
 * `DisposedError`. For orderly process teardown; there is no restart.
 */
export function shutdown(): void {
  check(native.lanes_shutdown());
}
