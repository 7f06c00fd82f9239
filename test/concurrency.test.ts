// The six concurrency scenarios of MLX's per-stream-locking PR, run in Bun Workers, plus one
// stream shared by 4 Workers, one unevaluated node evaluated by 4 Workers at once, and matmuls
// that each split over the compute pool while other streams' do too. Every result is compared
// bitwise with a serial run on the main thread.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { graphKinds, sameBits } from "../examples/workloads.ts";
import { buildTestGraph, type TestGraphKind } from "./support/graphs.ts";
import type { WorkerTask } from "./support/worker.ts";
import { runWorkers } from "./support/workers.ts";

type Job = { kind: TestGraphKind; seed: number };

function serial(jobs: Job[], input?: lx.LanesArray): Float32Array[] {
  return jobs.map(({ kind, seed }) => {
    const y = buildTestGraph(kind, seed, undefined, input);
    const out = y.toFloat32Array();
    y.dispose();
    return out;
  });
}

function expectAllEqual(got: Float32Array[][], want: Float32Array[][]): void {
  expect(got.length).toBe(want.length);
  got.forEach((results, w) => {
    expect(results.length).toBe(want[w]!.length);
    results.forEach((r, j) => {
      if (!sameBits(r, want[w]![j]!)) throw new Error(`worker ${w}, job ${j}: result differs from the serial run`);
    });
  });
}

const barrierFor = (parties: number) => ({ barrier: new Int32Array(new SharedArrayBuffer(4)), parties });

describe("concurrency scenarios (Workers vs serial)", () => {
  test("1. concurrent matmuls on 4 separate streams", async () => {
    const plans: Job[][] = [0, 1, 2, 3].map((w) => [{ kind: "matmul", seed: 100 + w }]);
    const b = barrierFor(4);
    const got = await runWorkers(plans.map((jobs) => ({ stream: "own", jobs, ...b })));
    expectAllEqual(got, plans.map((jobs) => serial(jobs)));
  }, 60_000);

  test("2. mixed ops: matmul, reduction, elementwise, softmax", async () => {
    const plans: Job[][] = [0, 1, 2, 3].map((w) => [
      { kind: "mixed", seed: 200 + w },
      { kind: "reduce", seed: 210 + w },
      { kind: "elementwise", seed: 220 + w },
      { kind: "softmax", seed: 230 + w },
    ]);
    const got = await runWorkers(plans.map((jobs) => ({ stream: "own", jobs })));
    expectAllEqual(got, plans.map((jobs) => serial(jobs)));
  }, 60_000);

  test("3. numerical results equal serial results, and a float64 reference", async () => {
    const jobs: Job[] = [{ kind: "matmul", seed: 300 }];
    const got = await runWorkers([0, 1, 2].map(() => ({ stream: "own", jobs, asyncEval: true })));
    const want = serial(jobs);
    expectAllEqual(got, [want, want, want]);
    // Independent check of the serial value itself.
    const a = lx.random.normal([96, 80], { seed: 300 }).toFloat32Array();
    const b = lx.random.normal([80, 64], { seed: 301 }).toFloat32Array();
    let maxErr = 0;
    for (let i = 0; i < 96; i++)
      for (let j = 0; j < 64; j++) {
        let acc = 0;
        for (let k = 0; k < 80; k++) acc += a[i * 80 + k]! * b[k * 64 + j]!;
        maxErr = Math.max(maxErr, Math.abs(acc - want[0]![i * 64 + j]!));
      }
    expect(maxErr).toBeLessThan(1e-3);
  }, 60_000);

  test("4. sustained pressure: 4 Workers x 20 iterations", async () => {
    const plans: Job[][] = [0, 1, 2, 3].map((w) =>
      Array.from({ length: 20 }, (_, i) => ({ kind: graphKinds[(w + i) % graphKinds.length]!, seed: 400 + 37 * w + i })),
    );
    const got = await runWorkers(plans.map((jobs, w) => ({ stream: "own", jobs, asyncEval: w % 2 === 0 })));
    expectAllEqual(got, plans.map((jobs) => serial(jobs)));
  }, 120_000);

  test("5. cross-stream dependencies: one shared unevaluated input, consumers on 4 streams in 4 Workers", async () => {
    using producer = lx.newStream();
    const x = lx.random.normal([96, 80], { seed: 500, stream: producer });
    const shared = lx.softmax(lx.matmul(x, lx.random.normal([80, 80], { seed: 501, stream: producer }), { stream: producer }), -1, {
      stream: producer,
    });
    const plans: Job[][] = [0, 1, 2, 3].map((w) => [
      { kind: graphKinds[w]!, seed: 510 + w },
      { kind: "chain", seed: 520 + w },
    ]);
    const b = barrierFor(4);
    const got = await runWorkers(plans.map((jobs) => ({ stream: "own", jobs, sharedInputId: shared.id, ...b })));
    const want = plans.map((jobs) => serial(jobs, shared));
    expectAllEqual(got, want);
  }, 60_000);

  test("6. 8 Workers with varied workloads", async () => {
    const plans: Job[][] = Array.from({ length: 8 }, (_, w) =>
      Array.from({ length: 3 + (w % 4) }, (_, i) => ({ kind: graphKinds[(w * 5 + i) % graphKinds.length]!, seed: 600 + 11 * w + i })),
    );
    const got = await runWorkers(plans.map((jobs, w) => ({ stream: w === 7 ? "default" : "own", jobs, asyncEval: w % 3 === 0 })));
    expectAllEqual(got, plans.map((jobs) => serial(jobs)));
  }, 120_000);
});

describe("sharing across Workers", () => {
  test("one stream used by 4 Workers at once", async () => {
    using s = lx.newStream();
    const plans: Job[][] = [0, 1, 2, 3].map((w) =>
      Array.from({ length: 5 }, (_, i) => ({ kind: graphKinds[(w + 2 * i) % graphKinds.length]!, seed: 700 + 13 * w + i })),
    );
    const b = barrierFor(4);
    const got = await runWorkers(plans.map((jobs, w) => ({ stream: s.id, jobs, asyncEval: w % 2 === 1, ...b })));
    expectAllEqual(got, plans.map((jobs) => serial(jobs)));
    s.synchronize(); // still usable by its owner
  }, 60_000);

  test("one unevaluated shared node evaluated from 4 Workers at once runs its kernels once", async () => {
    for (let round = 0; round < 3; round++) {
      using s = lx.newStream();
      const a = lx.random.normal([128, 128], { seed: 800 + round, stream: s });
      const bm = lx.random.normal([128, 128], { seed: 900 + round, stream: s });
      lx.eval(a, bm);
      const y = lx.softmax(lx.matmul(a, bm, { stream: s }), -1, { stream: s });
      const before = lx.stats().kernelsExecuted;
      const b = barrierFor(4);
      const got = await runWorkers([0, 1, 2, 3].map((w) => ({ stream: "own", jobs: [], evalArrayId: y.id, asyncEval: w % 2 === 0, ...b })));
      expect(lx.stats().kernelsExecuted - before).toBe(2); // matmul and softmax, each exactly once
      const want = y.toFloat32Array();
      for (const r of got) expect(sameBits(r[0]!, want)).toBe(true);
    }
  }, 60_000);

  test("an array outlives the Worker that made it only while referenced", async () => {
    const x = lx.array([1, 2, 3]);
    const [[r]] = (await runWorkers([{ stream: "own", jobs: [], evalArrayId: x.id }])) as [[Float32Array]];
    expect(Array.from(r)).toEqual([1, 2, 3]);
    // The Worker released its reference; ours still works.
    expect(Array.from(lx.exp(x).toFloat32Array())).toEqual([Math.fround(Math.E), Math.fround(Math.exp(2)), Math.fround(Math.exp(3))]);
    x.dispose();
    expect(() => lx.arrayFromId(x.id)).toThrow(lx.InvalidHandleError);
  }, 60_000);
});

describe("the CPU compute pool shared by every stream", () => {
  test("matmuls split over the compute pool (plain, transposed, batched), 4 Workers at once", async () => {
    const plans: Job[][] = [0, 1, 2, 3].map((w) => [
      { kind: "matmul-split", seed: 150 + w },
      { kind: "matmul-split", seed: 160 + w },
    ]);
    const b = barrierFor(4);
    const got = await runWorkers(plans.map((jobs, w) => ({ stream: "own", jobs, asyncEval: w % 2 === 1, ...b })));
    expectAllEqual(got, plans.map((jobs) => serial(jobs)));
  }, 60_000);
});
