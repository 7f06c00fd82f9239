// A test Worker: adopts a compiled plan by id and replays it on a stream of its own, many times,
// posting back the bit patterns of every result.
import * as lx from "../../src/index.ts";

export type PlanTask = {
  planId: number;
  /** One replay per seed: the input is random.normal([rows, cols]) with that seed, the scalar seed / 7. */
  seeds: number[];
  rows: number;
  cols: number;
  asyncEval: boolean;
  /** Rendezvous with the other Workers before the first replay. */
  barrier: Int32Array;
  parties: number;
};

export type PlanResult = { results: { y: Uint8Array; n: Uint8Array }[]; error?: string };

declare const self: Worker;

function bytesOf(a: lx.LanesArray): Uint8Array {
  const t = a.toTypedArray();
  return new Uint8Array(t.buffer.slice(t.byteOffset, t.byteOffset + t.byteLength));
}

self.onmessage = async (event: MessageEvent<PlanTask>) => {
  const task = event.data;
  try {
    using plan = lx.planFromId(task.planId);
    using stream = lx.newStream();
    const inputs = task.seeds.map((seed) => lx.random.normal([task.rows, task.cols], { seed, stream }));
    lx.eval(...inputs);
    Atomics.add(task.barrier, 0, 1);
    Atomics.notify(task.barrier, 0);
    while (Atomics.load(task.barrier, 0) < task.parties) Atomics.wait(task.barrier, 0, Atomics.load(task.barrier, 0), 50);
    const results: PlanResult["results"] = [];
    for (let i = 0; i < task.seeds.length; i++) {
      const out = plan.run([inputs[i]!, task.seeds[i]! / 7], stream) as { y: lx.LanesArray; n: lx.LanesArray };
      if (task.asyncEval) await lx.evalAsync(out.y, out.n);
      else lx.eval(out.y, out.n);
      results.push({ y: bytesOf(out.y), n: bytesOf(out.n) });
      out.y.dispose();
      out.n.dispose();
    }
    for (const x of inputs) x.dispose();
    self.postMessage({ results } satisfies PlanResult);
  } catch (error) {
    self.postMessage({ results: [], error: `${(error as Error).name}: ${(error as Error).message}` } satisfies PlanResult);
  }
};
