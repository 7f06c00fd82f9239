// The 29-kernel small graph the concurrency figures use (7 × matmul, add, maximum, multiply;
// then softmax), as PyTorch's baseline builds it too (bench/torch_baseline.py small_graph).
import * as lx from "../src/index.ts";

/** softmax of 7 rounds of relu(h @ w + b) · 0.125, starting from `x`. */
export function smallGraph(x: lx.LanesArray, w: lx.LanesArray, b: lx.LanesArray): lx.LanesArray {
  let h = x;
  for (let i = 0; i < 7; i++) h = lx.multiply(lx.maximum(lx.add(lx.matmul(h, w), b), 0), 0.125);
  return lx.softmax(h, -1);
}
