// Throughput (graphs/s) with 1, 2, 4, 8, 16 Workers, each on its own stream. The locking mode is
// the process's LANES_LOCKING (per-stream by default, "global" for one device-wide lock).
//   LANES_LOCKING=global bun bench/scaling.ts small|large
//   LANES_SCALING_SPREAD=1 LANES_BACKEND=cuda bun bench/scaling.ts large   (Workers spread over the GPUs)
import * as lx from "../src/index.ts";
import type { ScalingTask } from "./scaling-worker.ts";

export const workerCounts = [1, 2, 4, 8, 16];
// LANES_SCALING_SPREAD=1: Worker i runs on device i mod deviceCount() (multi-GPU machines).
const spread = process.env.LANES_SCALING_SPREAD === "1";

async function run(kind: "small" | "large", workers: number): Promise<number> {
  const graphs = kind === "small" ? 200 : 4;
  const barrier = new Int32Array(new SharedArrayBuffer(4));
  const t0 = performance.now();
  const pool = Array.from({ length: workers }, () => new Worker(new URL("./scaling-worker.ts", import.meta.url).href));
  const results = await Promise.all(
    pool.map(
      (w, i) =>
        new Promise<{ graphs: number; ms: number }>((resolve) => {
          w.onmessage = (e) => resolve(e.data);
          w.postMessage({ kind, graphs, barrier, parties: workers, device: spread ? i % lx.deviceCount() : 0 } satisfies ScalingTask);
        }),
    ),
  );
  for (const w of pool) w.terminate();
  void t0;
  // Aggregate throughput over the slowest Worker's measured window (all start together).
  const wall = Math.max(...results.map((r) => r.ms));
  return (results.reduce((n, r) => n + r.graphs, 0) / wall) * 1000;
}

if (import.meta.main) {
  const kind = (process.argv[2] ?? "small") as "small" | "large";
  const out: Record<number, number> = {};
  for (const w of workerCounts) out[w] = await run(kind, w);
  console.log(JSON.stringify({ kind, mode: process.env.LANES_LOCKING ?? "per-stream", backend: lx.backendName(), devices: spread ? lx.deviceCount() : 1, throughput: out }));
}
