// The example workloads plus graphs only the tests need: matmuls large enough that the CPU
// backend splits each one over its compute pool (plain, transposed and batched operands).
import * as lx from "../../src/index.ts";
import { buildGraph, type GraphKind } from "../../examples/workloads.ts";

export type TestGraphKind = GraphKind | "matmul-split";

export function buildTestGraph(kind: TestGraphKind, seed: number, stream?: lx.Stream, input?: lx.LanesArray): lx.LanesArray {
  if (kind !== "matmul-split") return buildGraph(kind, seed, stream, input);
  const o = { stream };
  const a = lx.random.normal([260, 300], { seed, stream });
  const b = lx.random.normal([330, 300], { seed: seed + 1, stream });
  const h = lx.matmul(a, lx.transpose(b, [1, 0], o), o); // [260, 330], B read transposed in place
  const batched = lx.matmul(lx.reshape(h, [2, 130, 330], o), lx.random.normal([2, 330, 200], { seed: seed + 2, scale: 0.05, stream }), o);
  return lx.softmax(batched, -1, o);
}
