// Device time per float32 matmul at small square sizes, the default choice (lanes' own tiled
// kernel up to 96 in each dimension, cuBLASLt above) against the own kernel everywhere: 20
// chained products h = h @ w compiled into one plan (one CUDA graph), 200 replays issued back to
// back, one eval; run once per setting in child processes.
//   LANES_BACKEND=cuda bun bench/cuda-small-matmul.ts
import * as lx from "../src/index.ts";
import { runJsonChild } from "./timing.ts";

const sizes = [16, 32, 64, 96, 128, 192, 256, 384, 512];
const chain = 20, replays = 200;

if (process.argv[2] === "--child") {
  const out: Record<number, number> = {};
  for (const n of sizes) {
    const x = lx.random.normal([n, n], { seed: 1 });
    const w = lx.random.normal([n, n], { seed: 2, scale: 1 / Math.sqrt(n) });
    lx.eval(x, w);
    const f = lx.compile((v: lx.LanesArray) => {
      let h = v;
      for (let i = 0; i < chain; i++) h = lx.matmul(h, w);
      return h;
    });
    lx.eval(f(x) as lx.LanesArray);
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      const outs: lx.LanesArray[] = [];
      const t = performance.now();
      for (let i = 0; i < replays; i++) outs.push(f(x) as lx.LanesArray);
      lx.eval(outs[outs.length - 1]!);
      best = Math.min(best, performance.now() - t);
      for (const o of outs) o.dispose();
    }
    out[n] = (best * 1000) / (replays * chain);
    f.dispose();
  }
  console.log(JSON.stringify(out));
} else {
  const lt = runJsonChild<Record<number, number>>([process.execPath, import.meta.path, "--child"], { LANES_CUDA_CUBLASLT: "1" });
  const own = runJsonChild<Record<number, number>>([process.execPath, import.meta.path, "--child"], { LANES_CUDA_CUBLASLT: "0" });
  console.log("n       default us    own kernel us   own / default   (default: own kernel up to 96, cuBLASLt above)");
  for (const n of sizes) console.log(`${String(n).padEnd(8)}${lt[n]!.toFixed(2).padStart(11)}${own[n]!.toFixed(2).padStart(16)}${(own[n]! / lt[n]!).toFixed(2).padStart(17)}`);
}
