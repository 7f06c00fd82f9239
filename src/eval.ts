/**
 * Evaluation. `eval` blocks the calling thread; `evalAsync` blocks the event loop for at most
 * a brief spin (300 us): completions land in a native queue that this thread drains while work is pending, so no
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
const drainCapacity = 64;
const drainTokens = new BigUint64Array(drainCapacity);
const drainStatus = new Int32Array(drainCapacity);
const drainCount = new Int32Array(1);
const fdOut = new Int32Array(1);
const spinReady = new Int32Array(1);

// Work that completes within a few hundred microseconds is caught spinning: a wake through the
// pipe costs about 10 us on an idle machine, several times a small graph's whole round trip,
// and on a virtual machine whose idle cores halt it costs the posting thread and this one
// tens of microseconds each, a tenth of a small model's compiled decode step. The spin yields
// the core between bursts, so work queued on this very core still runs. A spin that missed
// makes the next evalAsyncs skip it, twice as many after each further miss (up to 64), so long
// work wastes at most one spin in 64 calls; a hit spins every time again.
const spinMicros = 300;
const maxSpinSkip = 64;
let spinSkip = 0;
let spinBackoff = 0;
// A caught completion resolves its promise as a microtask, so evalAsyncs awaited back to back
// that each catch theirs (a generation's steps) would never let the event loop turn: timers,
// sockets and a client that went away would wait for the whole loop. Spins stop once they have
// kept the event loop from turning this long, until it turns again.
const maxSpinStreakMs = 2;
let spinStreakStart = -1; // when the first completion caught since the event loop last turned was caught

function endSpinStreak(): void {
  spinStreakStart = -1;
}

function spinForCompletion(): void {
  if (spinSkip > 0) {
    spinSkip--;
    return;
  }
  if (spinStreakStart >= 0 && performance.now() - spinStreakStart > maxSpinStreakMs) return;
  check(native.lanes_completion_queue_spin(queue, spinMicros, spinReady));
  if (spinReady[0]) {
    spinBackoff = 0;
    if (spinStreakStart < 0) {
      spinStreakStart = performance.now();
      setImmediate(endSpinStreak);
    }
    drain();
    return;
  }
  spinBackoff = Math.min(maxSpinSkip, spinBackoff * 2 || 1);
  spinSkip = spinBackoff;
}

// The read end of the queue's pipe: readable exactly when a completion was posted. Its reader
// exists only while completions are awaited, since a pending read keeps the process alive.
let wakeFd = -1;
interface WakeReader {
  read(): Promise<{ done: boolean }>;
  cancel(): Promise<void>;
}
let reader: WakeReader | undefined;
let idleCheck = false;

function drain(): void {
  for (;;) {
    check(native.lanes_completion_queue_drain(queue, drainTokens, drainStatus, drainCapacity, drainCount));
    const n = drainCount[0]!;
    for (let i = 0; i < n; i++) settle(Number(drainTokens[i]!), drainStatus[i]!);
    if (n < drainCapacity) return;
  }
}

function settle(token: number, status: number): void {
  const waiter = waiters.get(token);
  if (!waiter) return;
  waiters.delete(token);
  if (status === 0) {
    waiter.resolve();
    return;
  }
  // The arrays are computed (or failed): a blocking eval returns at once with the typed error.
  try {
    evalArrays(...waiter.arrays);
    waiter.resolve();
  } catch (error) {
    waiter.reject(error);
  }
}

async function pump(mine: WakeReader): Promise<void> {
  for (;;) {
    const { done } = await mine.read();
    if (done || mine !== reader) return;
    drain();
    if (waiters.size === 0) releaseReaderWhenIdle();
  }
}

// Back-to-back awaits reuse the reader: it goes only once a turn of the event loop passed with
// nothing awaited.
function releaseReaderWhenIdle(): void {
  if (idleCheck) return;
  idleCheck = true;
  setImmediate(() => {
    idleCheck = false;
    if (waiters.size > 0 || !reader) return;
    const idle = reader;
    reader = undefined;
    void idle.cancel();
  });
}

function listen(): void {
  if (reader) return;
  if (wakeFd < 0) {
    check(native.lanes_completion_queue_fd(queue, fdOut));
    wakeFd = fdOut[0]!;
  }
  const mine: WakeReader = Bun.file(wakeFd).stream().getReader();
  reader = mine;
  void pump(mine);
}

/**
 * Computes the arrays without blocking the event loop beyond a spin of at most 300 us. Resolves
 * when all are ready; rejects with the typed error of the first failure. Work that completes
 * within that time is caught by the spin (skipped while recent work took longer, while other
 * evalAsyncs are pending, and once spins kept the event loop from turning for 2 ms); otherwise
 * the event loop is woken by the native side through a pipe it polls, when the work is done;
 * nothing polls on a timer.
 */
export function evalAsync(...arrays: LanesArray[]): Promise<void> {
  if (arrays.length === 0) return Promise.resolve();
  if (queue === 0) queue = callForHandle(native.lanes_completion_queue_new(outPtr));
  let ids: BigUint64Array;
  try {
    ids = handles(arrays);
  } catch (error) {
    return Promise.reject(error);
  }
  const token = nextToken++;
  const done = new Promise<void>((resolve, reject) => {
    waiters.set(token, { arrays, resolve, reject });
  });
  const status = native.lanes_eval_async(ids, arrays.length, queue, token);
  if (status !== 0) {
    waiters.delete(token);
    try {
      check(status);
    } catch (error) {
      return Promise.reject(error);
    }
  }
  drain();  // work that was already done completes here, without a wake-up
  // Only an evalAsync awaited alone spins: pipelined submissions must not wait on each other.
  if (waiters.size === 1) spinForCompletion();
  if (waiters.size > 0) listen();
  return done;
}
