// A Worker pool sharing streams: 8 Workers run mixed graphs on 4 streams that the main thread
// made and shares by id (two Workers submit to each stream at once); every result is checked
// bitwise against a serial run on the main thread.
//
//   bun examples/workers.ts          (LANES_DEMO_WORKERS, LANES_DEMO_STREAMS, LANES_DEMO_GRAPHS)
import * as lx from "lanes";
import type { DemoResult, DemoTask } from "./workers-worker.ts";
import { buildGraph, graphKinds, sameBits } from "./workloads.ts";

const workers = Number(process.env.LANES_DEMO_WORKERS ?? 8);
const graphsPerWorker = Number(process.env.LANES_DEMO_GRAPHS ?? 12);
const streams = Array.from({ length: Number(process.env.LANES_DEMO_STREAMS ?? 4) }, () => lx.newStream());

const tasks: DemoTask[] = Array.from({ length: workers }, (_, w) => ({
  streamId: streams[w % streams.length]!.id,
  jobs: Array.from({ length: graphsPerWorker }, (_, i) => ({ kind: graphKinds[(w + i) % graphKinds.length]!, seed: 1000 * w + i })),
}));

// Serial reference: the same graphs, one after another, on the main thread's default stream.
const serialStart = performance.now();
const expected = tasks.map((t) =>
  t.jobs.map(({ kind, seed }) => {
    using y = buildGraph(kind, seed);
    return y.toFloat32Array();
  }),
);
const serialMs = performance.now() - serialStart;

const concurrentStart = performance.now();
const results = await Promise.all(
  tasks.map(
    (task) =>
      new Promise<DemoResult>((resolve, reject) => {
        const worker = new Worker(new URL("./workers-worker.ts", import.meta.url).href);
        worker.onmessage = (e: MessageEvent<DemoResult>) => {
          worker.terminate();
          if (e.data.error) reject(new Error(e.data.error));
          else resolve(e.data);
        };
        worker.onerror = (e) => reject(new Error(e.message));
        worker.postMessage(task);
      }),
  ),
);
const concurrentMs = performance.now() - concurrentStart;

let mismatches = 0;
const rows = results.map((r, w) => {
  const matches = r.results.filter((out, i) => sameBits(out, expected[w]![i]!)).length;
  mismatches += r.results.length - matches;
  const kinds = [...new Set(tasks[w]!.jobs.map((j) => j.kind))].join(",");
  return {
    worker: w,
    stream: r.streamId,
    graphs: r.results.length,
    kinds,
    "ms": Number(r.ms.toFixed(1)),
    "graphs/s": Number(((r.results.length / r.ms) * 1000).toFixed(1)),
    "equal to serial": `${matches}/${r.results.length}`,
  };
});

for (const s of streams) s.dispose();
console.log(`lanes Worker pool — backend: ${lx.backendName()}, ${workers} Workers x ${graphsPerWorker} graphs on ${streams.length} shared streams`);
console.table(rows);
const total = workers * graphsPerWorker;
console.log(
  `serial: ${serialMs.toFixed(1)} ms (${((total / serialMs) * 1000).toFixed(1)} graphs/s)   ` +
    `concurrent: ${concurrentMs.toFixed(1)} ms wall incl. Worker start (${((total / concurrentMs) * 1000).toFixed(1)} graphs/s)`,
);
const s = lx.stats();
console.log(`kernels executed: ${s.kernelsExecuted}, epochs committed: ${s.epochsCommitted}, peak bytes: ${s.peakBytes}`);
if (mismatches > 0) {
  console.error(`FAILED: ${mismatches} results differ from the serial run`);
  process.exit(1);
}
console.log(`all ${total} results equal the serial run bitwise`);
