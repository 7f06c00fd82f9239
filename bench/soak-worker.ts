// A soak Worker: evaluates its share of graphs on streams shared with the other Workers, with a
// cross-stream dependency in every graph, and compares each result bitwise with the serial one.
import * as lx from "../src/index.ts";
import { buildGraph, sameBits, type GraphKind } from "../examples/workloads.ts";

declare const self: Worker;

// The first message sets the Worker up; each later one ({ evals }) runs a phase of evals.
export type SoakSetup = {
  worker: number;
  streamIds: number[];
  jobs: { kind: GraphKind; seed: number }[];
  expected: Float32Array[];
};
export type SoakResult = { evals: number; mismatches: number; errors: string[] };

let setup: SoakSetup | undefined;
let streams: lx.Stream[] = [];
let done = 0;

self.onmessage = async (event: MessageEvent<SoakSetup | { evals: number } | "stop">) => {
  if (event.data === "stop") {
    for (const s of streams) s.dispose();
    self.postMessage("stopped");
    return;
  }
  if ("streamIds" in event.data) {
    setup = event.data;
    streams = setup.streamIds.map((id) => lx.streamFromId(id));
    self.postMessage("ready");
    return;
  }
  const { worker, jobs, expected } = setup!;
  const evals = event.data.evals;
  let seed = (0x9e3779b9 ^ (worker * 7919 + done)) >>> 0;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed % n;
  };
  let mismatches = 0;
  const errors: string[] = [];
  for (let i = 0; i < evals; i++, done++) {
    const j = (worker * 7 + done) % jobs.length;
    const producer = streams[rand(streams.length)]!, consumer = streams[rand(streams.length)]!;
    try {
      using y = buildGraph(jobs[j]!.kind, jobs[j]!.seed, producer);
      using z = lx.softmax(y, -1, { stream: consumer }); // consumed on another stream
      if (i % 2) await lx.evalAsync(z);
      else lx.eval(z);
      if (!sameBits(z.toFloat32Array(), expected[j]!)) mismatches++;
    } catch (e) {
      if (errors.length < 5) errors.push(String(e));
    }
  }
  // Graph intermediates are released by the FinalizationRegistry backstop: let it run before
  // the main thread reads the counters.
  for (let k = 0; k < 3; k++) {
    Bun.gc(true);
    await Bun.sleep(5);
  }
  self.postMessage({ evals, mismatches, errors } satisfies SoakResult);
};
