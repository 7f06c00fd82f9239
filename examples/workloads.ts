// Mixed graphs (matmul, reductions, elementwise, softmax) used by the demo and the tests.
import * as lx from "lanes";

export type GraphKind = "matmul" | "mixed" | "elementwise" | "reduce" | "softmax" | "chain";
export const graphKinds: GraphKind[] = ["matmul", "mixed", "elementwise", "reduce", "softmax", "chain"];

// Builds one graph from a seed; `input`, when given, is a shared (maybe unevaluated) operand.
export function buildGraph(kind: GraphKind, seed: number, stream?: lx.Stream, input?: lx.LanesArray): lx.LanesArray {
  const o = { stream };
  const a = input ?? lx.random.normal([96, 80], { seed, stream });
  const cols = a.shape[1]!;
  switch (kind) {
    case "matmul": {
      const b = lx.random.normal([cols, 64], { seed: seed + 1, stream });
      return lx.matmul(a, b, o);
    }
    case "mixed": {
      const b = lx.random.uniform([cols, 48], { seed: seed + 1, low: -1, high: 1, stream });
      const h = lx.matmul(a, b, o);
      const centered = lx.subtract(h, lx.mean(h, -1, { keepdims: true, ...o }), o);
      const s = lx.softmax(centered, -1, o);
      return lx.add(s, lx.sum(h, 0, { keepdims: true, ...o }), o);
    }
    case "elementwise": {
      const b = lx.random.uniform([1, cols], { seed: seed + 1, stream });
      return lx.maximum(lx.multiply(lx.exp(lx.negative(a, o), o), b, o), lx.divide(a, 3, o), o);
    }
    case "reduce":
      return lx.add(lx.max(a, 1, { keepdims: true, ...o }), lx.sum(a, [0, 1], o), o);
    case "softmax":
      return lx.softmax(lx.multiply(a, 4, o), 0, o);
    case "chain": {
      let h = a;
      for (let i = 0; i < 6; i++) {
        const w = lx.random.normal([h.shape[1]!, 32], { seed: seed + 10 + i, scale: 0.2, stream });
        h = lx.maximum(lx.matmul(h, w, o), 0, o);
      }
      return lx.softmax(h, -1, o);
    }
  }
}

export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
