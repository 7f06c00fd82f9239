// Throughput (graphs/s) with 1, 2, 4, 8, 16 Workers, each on its own stream, each evaluating
// one graph at a time. The locking mode is the process's LANES_LOCKING (per-stream by default,
// "global" for one process-wide lock around each whole evaluation, as MLX PR #2104 did).
//   bun bench/scaling.ts small|large [eager|compiled] [graphs per Worker]
//   LANES_SCALING_SPREAD=1 LANES_BACKEND=cuda bun bench/scaling.ts large   (Workers spread over the GPUs)
import * as lx from "../src/index.ts";
import type { ScalingTask } from "./scaling-worker.ts";

export const workerCounts = [1, 2, 4, 8, 16];
// LANES_SCALING_SPREAD=1: Worker i runs on device i mod deviceCount() (multi-GPU machines).
const spread = process.env.LANES_SCALING_SPREAD === "1";

async function run(kind: ScalingTask["kind"], mode: ScalingTask["mode"], workers: number, graphs: number): Promise<number> {
  const barrier = new Int32Array(new SharedArrayBuffer(4));
  const pool = Array.from({ length: workers }, () => new Worker(new URL("./scaling-worker.ts", import.meta.url).href));
  const results = await Promise.all(
    pool.map(
      (w, i) =>
        new Promise<{ graphs: number; ms: number }>((resolve, reject) => {
          w.onmessage = (e) => resolve(e.data);
          w.onerror = (e) => reject(new Error(e.message));
          w.postMessage({ kind, mode, graphs, barrier, parties: workers, device: spread ? i % lx.deviceCount() : 0 } satisfies ScalingTask);
        }),
    ),
  );
  for (const w of pool) w.terminate();
  // Aggregate throughput over the slowest Worker's measured window (all start together).
  const wall = Math.max(...results.map((r) => r.ms));
  return (results.reduce((n, r) => n + r.graphs, 0) / wall) * 1000;
}

if (import.meta.main) {
  const kind = (process.argv[2] ?? "small") as ScalingTask["kind"];
  const mode = (process.argv[3] ?? "eager") as ScalingTask["mode"];
  const graphs = Number(process.argv[4] ?? (kind === "small" ? 200 : 4));
  const counts = (process.env.LANES_SCALING_WORKERS ?? workerCounts.join(",")).split(",").map(Number);
  const out: Record<number, number> = {};
  for (const w of counts) out[w] = await run(kind, mode, w, graphs);
  console.log(
    JSON.stringify({ kind, mode, locking: process.env.LANES_LOCKING || "per-stream", backend: lx.backendName(), devices: spread ? lx.deviceCount() : 1, throughput: out }),
  );
}
