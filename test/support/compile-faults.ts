// Failed replays of a compiled plan, run in a child process started with LANES_FAULT_INJECTION=1.
// Prints one JSON object with what each scenario observed.
import * as lx from "../../src/index.ts";

type Outcome = { ok: boolean; name?: string; message?: string };

function outcome(fn: () => unknown): Outcome {
  try {
    fn();
    return { ok: true };
  } catch (e) {
    return { ok: false, name: (e as Error).name, message: (e as Error).message };
  }
}

async function asyncOutcome(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    await fn();
    return { ok: true };
  } catch (e) {
    return { ok: false, name: (e as Error).name, message: (e as Error).message };
  }
}

const bits = (a: lx.LanesArray) => Buffer.from(a.toFloat32Array().buffer).toString("hex");

const result: Record<string, unknown> = {};
const s = lx.newStream(), t = lx.newStream();
const w = lx.random.normal([16, 16], { seed: 1 });
const f = lx.compile((x: lx.LanesArray) => ({ y: lx.softmax(lx.matmul(x, w), -1), z: lx.exp(x) }));
const x = lx.random.normal([4, 16], { seed: 2 });
lx.eval(x);
const good = lx.withStream(s, () => f(x));
result.good = outcome(() => lx.eval(good.y, good.z));
const goodBits = bits(good.y);

// 1. A replay whose epoch fails: both outputs throw DeviceError, and so does a consumer.
lx.debug.failNextEpochs(s, 1);
const bad = lx.withStream(s, () => f(x));
result.failedEval = outcome(() => lx.eval(bad.y));
result.failedSecondOutput = outcome(() => bad.z.toFloat32Array());
result.dependent = outcome(() => lx.eval(lx.add(bad.y, 1, { stream: t })));
// A replay reading the failed output, on another stream: its outputs fail too.
result.replayOnFailed = outcome(() => {
  const chained = lx.withStream(t, () => f(bad.z));
  lx.eval(chained.y);
});

// 2. The next replay of the same plan succeeds with the same bits.
const after = lx.withStream(s, () => f(x));
result.after = outcome(() => lx.eval(after.y, after.z));
result.afterSameBits = bits(after.y) === goodBits;

// 3. evalAsync of a failed replay rejects with DeviceError; the plan still works afterwards.
lx.debug.failNextEpochs(s, 1);
const badAsync = lx.withStream(s, () => f(x));
result.asyncFailure = await asyncOutcome(() => lx.evalAsync(badAsync.y, badAsync.z));
const afterAsync = lx.withStream(s, () => f(x));
result.afterAsync = await asyncOutcome(() => lx.evalAsync(afterAsync.y));
result.afterAsyncSameBits = bits(afterAsync.y) === goodBits;
result.planCount = f.planCount;
console.log(JSON.stringify(result));
