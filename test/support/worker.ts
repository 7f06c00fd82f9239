// A test Worker: runs one task with lanes in its own JS thread and posts the results back.
import * as lx from "../../src/index.ts";
import { buildTestGraph, type TestGraphKind } from "./graphs.ts";

export type WorkerTask = {
  /** "own": a new stream; a number: adopt that stream id; "default": the default stream. */
  stream: "own" | "default" | number;
  jobs: { kind: TestGraphKind; seed: number }[];
  /** Adopt this array id as the shared input of every job. */
  sharedInputId?: number;
  /** Evaluate this array id (adopted) instead of building graphs. */
  evalArrayId?: number;
  asyncEval?: boolean;
  /** Rendezvous with the other Workers before evaluating. */
  barrier?: Int32Array;
  parties?: number;
};

export type WorkerResult = { results: Float32Array[]; error?: string };

function rendezvous(barrier: Int32Array, parties: number): void {
  Atomics.add(barrier, 0, 1);
  Atomics.notify(barrier, 0);
  while (Atomics.load(barrier, 0) < parties) Atomics.wait(barrier, 0, Atomics.load(barrier, 0), 50);
}

declare const self: Worker;

self.onmessage = async (event: MessageEvent<WorkerTask>) => {
  const task = event.data;
  try {
    const stream =
      task.stream === "own" ? lx.newStream() : task.stream === "default" ? lx.defaultStream() : lx.streamFromId(task.stream);
    const results: Float32Array[] = [];
    if (task.evalArrayId !== undefined) {
      const shared = lx.arrayFromId(task.evalArrayId);
      if (task.barrier) rendezvous(task.barrier, task.parties!);
      if (task.asyncEval) await lx.evalAsync(shared);
      else lx.eval(shared);
      results.push(shared.toFloat32Array());
      shared.dispose();
    }
    const input = task.sharedInputId !== undefined ? lx.arrayFromId(task.sharedInputId) : undefined;
    if (task.barrier && task.evalArrayId === undefined) rendezvous(task.barrier, task.parties!);
    for (const job of task.jobs) {
      const y = buildTestGraph(job.kind, job.seed, stream, input);
      if (task.asyncEval) await lx.evalAsync(y);
      else lx.eval(y);
      results.push(y.toFloat32Array());
      y.dispose();
    }
    input?.dispose();
    stream.dispose();
    self.postMessage({ results } satisfies WorkerResult);
  } catch (error) {
    self.postMessage({ results: [], error: `${(error as Error).name}: ${(error as Error).message}` } satisfies WorkerResult);
  }
};
