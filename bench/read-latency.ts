// A read's round trip, the serving loop's pattern: build a small graph, read its result. On CUDA
// the read is queued on the array's stream right behind its kernels: a copy kernel writing the
// pinned host memory up to 64 KiB, a copy engine's transfer above; LANES_CUDA_READ=copy takes the
// copy engine for every size, LANES_CUDA_READ=wait waits for the kernels and then copies. All
// three run here, alternating, in child processes on the same GPU.
//   LANES_BACKEND=cuda bun bench/read-latency.ts
import * as lx from "../src/index.ts";

const sizes = [64, 256];

if (process.env.LANES_READ_CHILD) {
  const out: Record<string, number> = {};
  for (const n of sizes) {
    using x = lx.random.normal([n, n], { seed: 6 });
    using w = lx.random.normal([n, n], { seed: 7 });
    lx.eval(x, w);
    const once = () => {
      using y = lx.softmax(lx.matmul(x, w), -1);
      y.toFloat32Array();
    };
    for (let i = 0; i < 100; i++) once();
    let best = Infinity;
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      for (let i = 0; i < 300; i++) once();
      best = Math.min(best, (performance.now() - t) / 300);
    }
    out[String(n)] = best * 1000;
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}

type Mode = "stream" | "copy" | "wait";
function child(mode: Mode): Record<string, number> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>), LANES_READ_CHILD: "1" };
  if (mode === "stream") delete env.LANES_CUDA_READ;
  else env.LANES_CUDA_READ = mode;
  const r = Bun.spawnSync([process.execPath, import.meta.path], { env, stdout: "pipe", stderr: "inherit" });
  if (r.exitCode !== 0) throw new Error(`child (${mode}) exited ${r.exitCode}`);
  return JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!) as Record<string, number>;
}

const best: Record<Mode, Record<string, number>> = { stream: {}, copy: {}, wait: {} };
for (let round = 0; round < 3; round++)
  for (const mode of ["stream", "copy", "wait"] as const)
    for (const [n, us] of Object.entries(child(mode))) best[mode][n] = Math.min(best[mode][n] ?? Infinity, us);

console.log(`backend ${lx.backendName()}: graph (matmul + softmax) + read, best of 3 alternating runs`);
console.log("| size | read on the stream µs (default) | copy engine on the stream µs | wait, then copy µs |");
console.log("|---|---|---|---|");
for (const n of sizes.map(String))
  console.log(`| ${n}×${n} | ${best.stream[n]!.toFixed(1)} | ${best.copy[n]!.toFixed(1)} | ${best.wait[n]!.toFixed(1)} |`);
