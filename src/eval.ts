/**
 * Evaluation. `eval` blocks the calling thread; `evalAsync` blocks the event loop only while it
 * runs small work itself (see {@link evalAsync}): completions land in a native queue that this
 * thread drains while work is pending, so no foreign thread ever enters JavaScript.
 * @module
 */
import type { LanesArray } from "./array.ts";
import { callForHandle, check, native, outPtr } from "./native.ts";

// The native calls copy the handles before they return, so one array's call reuses this.
const oneHandle = new BigUint64Array(1);

function handles(arrays: readonly LanesArray[]): BigUint64Array {
  const out = arrays.length === 1 ? oneHandle : new BigUint64Array(arrays.length);
  for (let i = 0; i < arrays.length; i++) out[i] = BigInt(arrays[i]!.handle());
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
const ranOut = new Int32Array(1);

// Work that completes within a few hundred microseconds is done on this thread: the CPU's work
// runs here (no hand-off to the stream's executor), a GPU's completions are caught spinning. A
// wake through the pipe costs about 10 us on an idle machine, several times a small graph's
// whole round trip, and on a virtual machine whose idle cores halt it costs the posting thread
// and this one tens of microseconds each, a tenth of a small model's compiled decode step. A
// run that missed (the work was not done in time) or took longer than `maxRunMs` makes the next
// evalAsyncs leave their work to the stream, twice as many after each further miss (up to 64),
// so long work blocks the event loop at most once in 64 calls; a hit runs every time again.
const runMicros = 300;
const maxRunMs = 1;
const maxRunSkip = 64;
let runSkip = 0;
let runBackoff = 0;
// A caught completion resolves its promise as a microtask, so evalAsyncs awaited back to back
// that each catch theirs (a generation's steps) would never let the event loop turn: timers,
// sockets and a client that went away would wait for the whole loop. Runs stop once they have
// kept the event loop from turning this long, until it turns again.
const maxRunStreakMs = 2;
let runStreakStart = -1; // when the first completion caught since the event loop last turned was caught

function endRunStreak(): void {
  runStreakStart = -1;
}

// How long this evalAsync may work on its arrays itself: only one awaited alone does, since
// pipelined submissions must not wait on each other.
function runBudget(): number {
  if (waiters.size !== 0) return 0;
  if (runSkip > 0) {
    runSkip--;
    return 0;
  }
  if (runStreakStart >= 0 && performance.now() - runStreakStart > maxRunStreakMs) return 0;
  return runMicros;
}

function afterRun(ranMicros: number): void {
  if (ranMicros >= 0 && ranMicros <= maxRunMs * 1000) {
    runBackoff = 0;
    if (runStreakStart < 0) {
      runStreakStart = performance.now();
      setImmediate(endRunStreak);
    }
    return;
  }
  runBackoff = Math.min(maxRunSkip, runBackoff * 2 || 1);
  runSkip = runBackoff;
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
 * Computes the arrays and resolves when all are ready; rejects with the typed error of the first
 * failure. An evalAsync awaited alone first works on them on this thread for up to 300 us (on
 * the CPU it runs their work itself; on a GPU it catches their completion spinning), since for
 * small work that is several times faster than a hand-off and a wake-up. It does not while
 * recent work missed that time or took over 1 ms (after one such call, the next ones leave the
 * work to the stream, from 1 up to 64 calls), nor once runs kept the event loop from turning for
 * 2 ms. Otherwise the event loop is woken by the native side through a pipe it polls when the
 * work is done; nothing polls on a timer.
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
  const budget = runBudget();
  const status = native.lanes_eval_async(ids, arrays.length, queue, token, budget, ranOut);
  if (status !== 0) {
    try {
      check(status);
    } catch (error) {
      return Promise.reject(error);
    }
  }
  if (budget > 0) afterRun(ranOut[0]!);
  if (ranOut[0]! >= 0) return Promise.resolve();
  const done = new Promise<void>((resolve, reject) => {
    waiters.set(token, { arrays, resolve, reject });
  });
  drain(); // work that is done completes here, without a wake-up
  if (waiters.size > 0) listen();
  return done;
}
