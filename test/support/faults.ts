// Fault scenarios, run in a child process started with LANES_FAULT_INJECTION=1 and a short
// LANES_WATCHDOG_MS. Prints one JSON object with what each scenario observed.
import * as lx from "../../src/index.ts";

function outcome(fn: () => unknown): { ok: boolean; name?: string; message?: string } {
  try {
    fn();
    return { ok: true };
  } catch (e) {
    return { ok: false, name: (e as Error).name, message: (e as Error).message };
  }
}

const result: Record<string, unknown> = {};
const s = lx.newStream(), t = lx.newStream(), u = lx.newStream();

// 1. A command buffer fails on stream S.
const x = lx.random.normal([64, 64], { seed: 1, stream: s });
lx.eval(x);
lx.debug.failNextEpochs(s, 1);
const onS = lx.matmul(x, x, { stream: s });
const dependentOnT = lx.add(onS, 1, { stream: t }); // another stream consuming S's output
const unrelated = lx.sum(lx.ones([1000], { stream: u }), undefined, { stream: u });
result.failedEval = outcome(() => lx.eval(onS));
result.dependentEval = outcome(() => lx.eval(dependentOnT));
result.unrelated = outcome(() => lx.eval(unrelated));
result.unrelatedValue = unrelated.item();
const again = lx.matmul(x, x, { stream: s }); // S accepts new work afterwards
result.afterFailure = outcome(() => lx.eval(again));
const xs = x.toFloat32Array(), ys = again.toFloat32Array();
let acc = 0;
for (let k = 0; k < 64; k++) acc += xs[k]! * xs[k * 64]!;
result.afterFailureCorrect = Math.abs(acc - ys[0]!) < 1e-3;
lx.debug.failNextEpochs(s, 1);
const asyncFail = lx.exp(x, { stream: s });
try {
  await lx.evalAsync(asyncFail);
  result.asyncFailure = { ok: true };
} catch (e) {
  result.asyncFailure = { ok: false, name: (e as Error).name, message: (e as Error).message };
}

// 2. The watchdog: a stream whose work never starts fails the wait with a diagnostic.
const p = lx.newStream();
lx.debug.pauseStream(p, true);
const stuck = lx.exp(lx.ones([8], { stream: p }), { stream: p });
result.watchdog = outcome(() => lx.eval(stuck));
lx.debug.pauseStream(p, false);
result.afterResume = outcome(() => lx.eval(stuck));
result.afterResumeValue = stuck.toFloat32Array()[0];

// 3. Calls after shutdown.
lx.shutdown();
result.afterShutdown = outcome(() => lx.ones([2]));
console.log(JSON.stringify(result));
