// Run with LANES_CPU_SIMD=scalar|avx2|avx512 (or unset): prints one JSON object mapping each
// quantizedMatmul case to the hex of its float32 result bytes, so the parent can compare the
// kernel paths bit for bit. The data is seeded, so every child builds the same inputs.
import * as lx from "../../src/index.ts";
import { randomData, rng } from "./reference.ts";
import { buildBlocks, quantTypes, scaleSource } from "./quant-blocks.ts";

const next = rng(9001);
const out: Record<string, string> = {};
// k: 1 block; 3 blocks (a partial last group); 5 blocks; 18 blocks (k = 576, a row ending in 2
// blocks of a group); 32 blocks. m and n cross the kernels' row and column tiles.
for (const type of quantTypes)
  for (const k of [32, 96, 160, 576, 1024])
    for (const [m, n] of [[1, 1], [1, 33], [5, 7], [17, 96]] as const) {
      const w = buildBlocks(type, n, k, next, scaleSource(next, "moderate"));
      const x = randomData(m * k, next, -3, 3);
      if (m > 1) x[k + 3] = NaN; // row 1 holds a NaN: that row's outputs are NaN on every path
      const y = lx.quantizedMatmul(lx.array(x, [m, k]), lx.arrayFromBytes(w.bytes, [n, k], type));
      out[`${type} m=${m} k=${k} n=${n}`] = Buffer.from(y.toFloat32Array().buffer).toString("hex");
    }
console.log(JSON.stringify(out));
