// Is cuBLASLt's first heuristic the right matmul algorithm? Runs the same matmuls with each of
// the first eight candidates it offers (LANES_CUDA_ALGO_INDEX=k, one child process each), with
// the benchmark's op count and with four times as many, so a fixed per-evaluation cost shows.
//   LANES_BACKEND=cuda bun bench/cuda-algos.ts
import * as lx from "../src/index.ts";
import { perOp } from "./per-op.ts";

const cases = [["bfloat16", 1024], ["bfloat16", 2048], ["bfloat16", 4096], ["float32", 1024]] as const;

if (process.env.LANES_ALGOS_CHILD) {
  const out: string[] = [];
  for (const [dtype, n] of cases) {
    using a = lx.astype(lx.random.normal([n, n], { seed: 1 }), dtype);
    using b = lx.astype(lx.random.normal([n, n], { seed: 2 }), dtype);
    lx.eval(a, b);
    const repeat = Math.max(3, Math.min(50, Math.floor(4e11 / (2 * n ** 3)))); // as in bench/cuda.ts
    const tflops = (s: number) => ((2 * n ** 3) / s / 1e12).toFixed(1);
    out.push(`${tflops(perOp(() => lx.matmul(a, b), repeat))} / ${tflops(perOp(() => lx.matmul(a, b), repeat * 4))}`);
  }
  console.log(out.join(" | "));
  process.exit(0);
}

if (lx.backendName() !== "cuda") throw new Error("run with LANES_BACKEND=cuda");
console.log(`TFLOP/s with the benchmark's op count / with 4× as many, per cuBLASLt candidate`);
console.log(`| candidate | ${cases.map(([d, n]) => `${d} ${n}`).join(" | ")} |`);
console.log(`|---|${cases.map(() => "---").join("|")}|`);
for (let k = 0; k < 8; k++) {
  const env = { ...(process.env as Record<string, string>), LANES_ALGOS_CHILD: "1", LANES_CUDA_ALGO_INDEX: String(k) };
  const r = Bun.spawnSync([process.execPath, import.meta.path], { env, stdout: "pipe", stderr: "inherit" });
  console.log(`| ${k} | ${r.stdout.toString().trim()} |`);
}
