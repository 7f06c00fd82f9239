// Where the quantized matvec stops paying: microseconds of quantizedMatmul with SmolLM2-135M's
// weight shapes at m = 1 to 64 rows (a batched decode step has a row per sequence), against
// the dense path at the same m (dequantize to float32, then matmul), in one run.
//   LANES_BACKEND=cuda bun bench/quant-rows.ts
import * as lx from "../src/index.ts";
import { randomTensorData, rng } from "../test/support/gguf-writer.ts";
import { perOp } from "./per-op.ts";

const shapes: [string, number, number, "Q4_1" | "Q8_0"][] = [
  ["ffn gate/up 1536x576 q4_1", 1536, 576, "Q4_1"],
  ["ffn down 576x1536 q4_1", 576, 1536, "Q4_1"],
  ["attn q/o 576x576 q4_1", 576, 576, "Q4_1"],
  ["attn k/v 192x576 q4_1", 192, 576, "Q4_1"],
  ["head 49152x576 q8_0", 49152, 576, "Q8_0"],
];
const random = rng(1);
console.log(`backend ${lx.backendName()}; microseconds per op (quantized matvec | dequantize + dense matmul)`);
for (const [name, n, k, type] of shapes) {
  using w = lx.arrayFromBytes(randomTensorData(type, n * k, random, 0.05), [n, k], type === "Q4_1" ? "q4_1" : "q8_0");
  const cells: string[] = [];
  for (const m of [1, 2, 4, 8, 16, 32, 64]) {
    using x = lx.random.normal([m, k], { seed: m });
    lx.eval(x);
    const q = perOp(() => lx.quantizedMatmul(x, w), 40) * 1e6;
    const d = perOp(() => lx.matmul(x, lx.transpose(lx.astype(w, "float32"))), 40) * 1e6;
    cells.push(`m=${m} ${q.toFixed(1)} | ${d.toFixed(1)}`);
    console.log(JSON.stringify({ shape: name, m, quantizedUs: q, denseUs: d }));
  }
  console.log(`${name}: ${cells.join("   ")}`);
}
