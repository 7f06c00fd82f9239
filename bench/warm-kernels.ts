// Touches every kernel family once and checks a few results against the CPU-free float64
// math, so a fresh GPU machine compiles (and caches) lanes' CUDA kernels before timing or
// testing. Usage: LANES_BACKEND=cuda bun bench/warm-kernels.ts
import * as lx from "../src/index.ts";

const t0 = performance.now();
const x = lx.random.normal([64, 96], { seed: 1 });
const families: Record<string, () => lx.LanesArray> = {
  elementwise: () => lx.add(lx.exp(x), lx.astype(lx.arange(96), "float16")),
  reduce: () => lx.sum(x, 1),
  rows: () => lx.softmax(lx.rmsNorm(x, null), -1),
  fused: () => lx.matmul(lx.rope(lx.reshape(x, [1, 1, 64, 96]), 32), lx.ones([96, 8])),
  // One Q8_0 block of 32 weights (a float16 scale, then 32 bytes), all zero.
  quant: () => lx.quantizedMatmul(lx.ones([1, 32]), lx.arrayFromBytes(new Uint8Array(34), [1, 32], "q8_0")),
};
for (const [name, build] of Object.entries(families)) {
  const t = performance.now();
  using y = build();
  lx.eval(y);
  console.log(`${name.padEnd(12)} ${(performance.now() - t).toFixed(0).padStart(6)} ms`);
}
const data = x.toFloat32Array();
let ref = 0;
for (let j = 0; j < 96; j++) ref += data[j]!;
const got = lx.sum(x, 1).toFloat32Array()[0]!;
if (Math.abs(got - ref) > 1e-4 * Math.max(1, Math.abs(ref))) throw new Error(`sum mismatch: ${got} vs ${ref}`);
console.log(`backend ${lx.backendName()}: kernels ready in ${(performance.now() - t0).toFixed(0)} ms`);
