// One pool Worker: runs its graphs on the stream it was given (shared with other Workers) and
// posts results and timing back.
import * as lx from "lanes";
import { buildGraph, type GraphKind } from "./workloads.ts";

declare const self: Worker;

export type DemoTask = { streamId: number; jobs: { kind: GraphKind; seed: number }[] };
export type DemoResult = { streamId: number; results: Float32Array[]; ms: number; error?: string };

self.onmessage = async (event: MessageEvent<DemoTask>) => {
  try {
    using stream = lx.streamFromId(event.data.streamId);
    const start = performance.now();
    const results: Float32Array[] = [];
    for (const { kind, seed } of event.data.jobs) {
      using y = buildGraph(kind, seed, stream);
      await lx.evalAsync(y);
      results.push(y.toFloat32Array());
    }
    self.postMessage({ streamId: stream.id, results, ms: performance.now() - start } satisfies DemoResult);
  } catch (error) {
    self.postMessage({ streamId: 0, results: [], ms: 0, error: String(error) } satisfies DemoResult);
  }
};
