// Throughput (graphs/s) with 1, 2, 4, 8, 16 Workers, each on its own stream, each evaluating
// one graph at a time, all for the same window: the graphs every Worker finished in it, over
// its length. The locking mode is the process's LANES_LOCKING (per-stream by default, "global"
// for one process-wide lock around each whole evaluation, as MLX PR #2104 did). Kind "js" runs
// no lanes at all, the same 64×64 product and softmax in plain JS per graph: how far this
// machine's cores scale for independent CPU-bound threads (clock boost, shared cores).
//   bun bench/scaling.ts small|large|js [eager|compiled] [window ms]
//   LANES_SCALING_SPREAD=1 LANES_BACKEND=cuda bun bench/scaling.ts large   (Workers spread over the GPUs)
import * as lx from "../src/index.ts";
import type { ScalingTask } from "./scaling-worker.ts";

export const workerCounts = [1, 2, 4, 8, 16];
// LANES_SCALING_SPREAD=1: Worker i runs on device i mod deviceCount() (multi-GPU machines).
const spread = process.env.LANES_SCALING_SPREAD === "1";

async function run(kind: ScalingTask["kind"], mode: ScalingTask["mode"], workers: number, windowMs: number): Promise<number> {
  // [0]: Workers ready; [1]: 1 once the window opened, 2 once it closed.
  const control = new Int32Array(new SharedArrayBuffer(8));
  const pool = Array.from({ length: workers }, () => new Worker(new URL("./scaling-worker.ts", import.meta.url).href));
  const results = Promise.all(
    pool.map(
      (w, i) =>
        new Promise<{ graphs: number; ms: number }>((resolve, reject) => {
          w.onmessage = (e) => resolve(e.data);
          w.onerror = (e) => reject(new Error(e.message));
          w.postMessage({ kind, mode, control, device: spread ? i % lx.deviceCount() : 0 } satisfies ScalingTask);
        }),
    ),
  );
  while (Atomics.load(control, 0) < workers) await Bun.sleep(5);
  Atomics.store(control, 1, 1);
  Atomics.notify(control, 1);
  const opened = performance.now();
  await Bun.sleep(windowMs);
  Atomics.store(control, 1, 2);
  const window = performance.now() - opened;
  const done = await results;
  for (const w of pool) w.terminate();
  return (done.reduce((n, r) => n + r.graphs, 0) / window) * 1000;
}

if (import.meta.main) {
  const kind = (process.argv[2] ?? "small") as ScalingTask["kind"];
  const mode = (process.argv[3] ?? "eager") as ScalingTask["mode"];
  const windowMs = Number(process.argv[4] ?? (kind === "large" ? 1500 : 500));
  const counts = (process.env.LANES_SCALING_WORKERS ?? workerCounts.join(",")).split(",").map(Number);
  const out: Record<number, number> = {};
  for (const w of counts) out[w] = await run(kind, mode, w, windowMs);
  console.log(
    JSON.stringify({ kind, mode, locking: process.env.LANES_LOCKING || "per-stream", backend: lx.backendName(), devices: spread ? lx.deviceCount() : 1, throughput: out }),
  );
}
