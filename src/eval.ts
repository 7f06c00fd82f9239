/**
 * Evaluation. `eval` blocks the calling thread; `evalAsync` never blocks the event loop:
 * completions land in a native queue that this thread drains while work is pending, so no
 * foreign thread ever enters JavaScript.
 * @module
 */
import type { LanesArray } from "./array.ts";
import { callForHandle, check, native, outPtr } from "./native.ts";

function handles(arrays: readonly LanesArray[]): BigUint64Array {
  const out = new BigUint64Array(arrays.length);
  arrays.forEach((a, i) => {
    out[i] = BigInt(a.handle());
  });
  return out;
}

/** Computes the arrays, blocking until they are ready. Throws the first error among them. */
function evalArrays(...arrays: LanesArray[]): void {
  if (arrays.length === 0) return;
  check(native.lanes_eval(handles(arrays), arrays.length));
}
export { evalArrays as eval };

interface Waiter {
  arrays: LanesArray[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

let queue = 0;
let nextToken = 1;
const waiters = new Map<number, Waiter>();
let ticking = false;
const drainCapacity = 64;
const drainTokens = new BigUint64Array(drainCapacity);
const drainStatus = new Int32Array(drainCapacity);
const drainCount = new Int32Array(1);
let idlePolls = 0;

function drain(): void {
  check(native.lanes_completion_queue_drain(queue, drainTokens, drainStatus, drainCapacity, drainCount));
  const n = drainCount[0]!;
  for (let i = 0; i < n; i++) {
    const token = Number(drainTokens[i]!);
    const waiter = waiters.get(token);
    if (!waiter) continue;
    waiters.delete(token);
    if (drainStatus[i] === 0) {
      waiter.resolve();
    } else {
      // The arrays are computed (or failed): a blocking eval returns at once with the typed error.
      try {
        evalArrays(...waiter.arrays);
        waiter.resolve();
      } catch (error) {
        waiter.reject(error);
      }
    }
  }
  idlePolls = n > 0 ? 0 : idlePolls + 1;
}

function tick(): void {
  drain();
  if (waiters.size === 0) {
    ticking = false;
    return;
  }
  // Poll eagerly right after activity, then back off to timer granularity.
  if (idlePolls < 8) setImmediate(tick);
  else setTimeout(tick, 1);
}

/**
 * Computes the arrays without blocking the event loop. Resolves when all are ready; rejects
 * with the typed error of the first failure.
 */
export function evalAsync(...arrays: LanesArray[]): Promise<void> {
  if (arrays.length === 0) return Promise.resolve();
  if (queue === 0) queue = callForHandle(native.lanes_completion_queue_new(outPtr));
  const token = nextToken++;
  return new Promise<void>((resolve, reject) => {
    check(native.lanes_eval_async(handles(arrays), arrays.length, queue, token));
    waiters.set(token, { arrays, resolve, reject });
    idlePolls = 0;
    if (!ticking) {
      ticking = true;
      setImmediate(tick);
    }
  });
}
