// Fused ops against float64 references in JS: rmsNorm, layerNorm, scaled dot-product attention
// (causal, grouped-query, KV-cache shaped) and rope (both layouts, offsets, partial dims), in
// every floating dtype with the tolerances of support/tolerance.ts.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { expectClose, numel, randomData, refAttention, refRope, rng } from "./support/reference.ts";
import { float16Running, ropeAngles, roundTo, tolerance } from "./support/tolerance.ts";

const next = rng(31337);
const floats = ["float32", "float16", "bfloat16"] as const;

function refNorm(x: ArrayLike<number>, D: number, layer: boolean, eps: number, w?: ArrayLike<number>, b?: ArrayLike<number>) {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / D; r++) {
    let mean = 0;
    if (layer) {
      for (let i = 0; i < D; i++) mean += x[r * D + i]!;
      mean /= D;
    }
    let ss = 0;
    for (let i = 0; i < D; i++) ss += (x[r * D + i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) out[r * D + i] = (x[r * D + i]! - mean) * inv * (w ? w[i]! : 1) + (b ? b[i]! : 0);
  }
  return out;
}

for (const dtype of floats) {
  const round = roundTo[dtype]!;
  const tol = tolerance[dtype];
  const data = (n: number, lo = -2, hi = 2) => Float32Array.from(randomData(n, next, lo, hi), round);

  describe(`fused ops in ${dtype}`, () => {
    test("rmsNorm and layerNorm, with and without weight and bias", () => {
      for (const [rows, D] of [[1, 1], [3, 7], [5, 64], [2, 1000]] as const) {
        const x = data(rows * D), w = data(D), b = data(D);
        const X = lx.array(x, [rows, D], dtype), W = lx.array(w, [D], dtype), Bv = lx.array(b, [D], dtype);
        const r = lx.rmsNorm(X, W, 1e-5);
        expect(r.dtype).toBe(dtype);
        expectClose(r.toFloat32Array(), refNorm(x, D, false, 1e-5, w), { ...tol, what: `rmsNorm ${rows}x${D}` });
        expectClose(lx.rmsNorm(X, null, 1e-6).toFloat32Array(), refNorm(x, D, false, 1e-6), { ...tol, what: "rmsNorm no weight" });
        expectClose(lx.layerNorm(X, W, Bv, 1e-5).toFloat32Array(), refNorm(x, D, true, 1e-5, w, b), { ...tol, what: "layerNorm" });
        expectClose(lx.layerNorm(X).toFloat32Array(), refNorm(x, D, true, 1e-5), { ...tol, what: "layerNorm bare" });
      }
    });

    // Attention of random q, k, v at each [B, H, Lq, D], [Hk, Lk], Dv and causal flag against
    // float64, within `within`.
    type AttentionCase = [[number, number, number, number], [number, number], number, boolean];
    const checkAttention = (cases: AttentionCase[], within: { rtol: number; atol: number }) => {
      for (const [[B, H, Lq, D], [Hk, Lk], Dv, causal] of cases) {
        const q = data(B * H * Lq * D), k = data(B * Hk * Lk * D), v = data(B * Hk * Lk * Dv);
        const y = lx.scaledDotProductAttention(
          lx.array(q, [B, H, Lq, D], dtype),
          lx.array(k, [B, Hk, Lk, D], dtype),
          lx.array(v, [B, Hk, Lk, Dv], dtype),
          { causal },
        );
        expect(y.shape).toEqual([B, H, Lq, Dv]);
        const want = refAttention(q, k, v, { B, H, Lq, D, Hk, Lk, Dv }, Lk, causal);
        expectClose(y.toFloat32Array(), want, { ...within, what: `attention ${[B, H, Lq, D]} kv ${[Hk, Lk]} dv ${Dv} causal=${causal}` });
      }
    };

    test("scaledDotProductAttention: plain, causal, grouped-query, KV-cache shaped, empty-visibility rows", () => {
      checkAttention([
        [[1, 1, 1, 4], [1, 1], 4, false],
        [[2, 3, 5, 8], [3, 5], 8, true],
        [[1, 4, 6, 16], [2, 6], 8, true], // 4 query heads share 2 kv heads
        [[2, 2, 1, 8], [2, 9], 8, true], // one new token against a 9-entry cache
        [[1, 2, 4, 8], [2, 7], 5, false],
        [[1, 1, 5, 4], [1, 3], 4, true], // queries 0 and 1 see no key: zeros
      ], tol);
    });

    test("scaledDotProductAttention over many keys: several 32-key chunks, heads wider than 64, prefill and decode shapes", () => {
      // The CPU keeps a float16 attention's running sums in float16 (support/tolerance.ts).
      checkAttention([
        [[1, 9, 1, 64], [3, 300], 64, true], // a decode step of a SmolLM2-shaped model
        [[1, 2, 3, 96], [1, 70], 130, true], // key and value rows past 64 features
        [[1, 4, 80, 64], [2, 80], 64, true], // a prefill: hundreds of query rows
        [[1, 3, 100, 96], [3, 100], 130, false],
      ], dtype === "float16" ? float16Running : tol);
    });

    test("each row of a causal prefill equals the decode step at its position, bit for bit", () => {
      const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("hex");
      // A float32 model keeps its cache in float16 as well; that pair's prefill stays under 64
      // rows, from which the CPU takes llama.cpp's tiled path, another computation
      // (cpu/attention.hpp). On CUDA a prefill of 264 rows or more runs a block per row, a
      // decode step a block per 32 keys: two kernels that must agree.
      const cases: [lx.ElementDType, number, number, number, number][] = [[dtype, 9, 3, 150, 64], [dtype, 3, 1, 120, 96]];
      if (dtype === "float32") cases.push(["float16", 9, 3, 40, 64]);
      for (const [cacheType, H, Hk, L, D] of cases) {
        const q = data(H * L * D), k = data(Hk * L * D), v = data(Hk * L * D);
        const K = lx.array(k, [1, Hk, L, D], cacheType), V = lx.array(v, [1, Hk, L, D], cacheType);
        const prefill = lx.scaledDotProductAttention(lx.array(q, [1, H, L, D], dtype), K, V, { causal: true }).toFloat32Array();
        for (const i of [0, 31, 32, 33, L - 1]) {
          const qi = new Float32Array(H * D);
          for (let h = 0; h < H; h++) qi.set(q.subarray((h * L + i) * D, (h * L + i + 1) * D), h * D);
          const step = lx.scaledDotProductAttention(lx.array(qi, [1, H, 1, D], dtype), K, V, { causal: true, keyLength: i + 1 }).toFloat32Array();
          for (let h = 0; h < H; h++)
            expect(bits(step.subarray(h * D, (h + 1) * D)), `${cacheType} cache, ${H} heads of ${D}: row ${i} head ${h}`).toBe(
              bits(prefill.subarray((h * L + i) * D, (h * L + i + 1) * D)),
            );
        }
      }
    });

    test("rope: halves and traditional layouts, offsets, partial dims, large positions", () => {
      for (const [shape, dims, offset, traditional] of [
        [[1, 4, 8], 8, 0, false],
        [[2, 3, 5, 16], 16, 7, false],
        [[2, 6, 12], 8, 3, true],
        [[1, 2, 64], 32, 4000, false],
      ] as [number[], number, number, boolean][]) {
        const x = data(numel(shape));
        const got = lx.rope(lx.array(x, shape, dtype), dims, { offset, traditional, base: 10000 });
        expectClose(got.toFloat32Array(), refRope(x, shape, dims, 10000, offset, traditional, 1, ropeAngles()), {
          rtol: tol.rtol,
          atol: Math.max(tol.atol, 1e-5),
          what: `rope ${shape} dims=${dims} offset=${offset} traditional=${traditional}`,
        });
      }
    });
  });
}

describe("fused ops agree with their unfused compositions", () => {
  test("attention equals softmax(q kᵀ · scale) v built from matmul, transpose and softmax", () => {
    const q = lx.random.normal([2, 2, 7, 16], { seed: 1 }), k = lx.random.normal([2, 2, 7, 16], { seed: 2 });
    const v = lx.random.normal([2, 2, 7, 16], { seed: 3 });
    const fused = lx.scaledDotProductAttention(q, k, v).toFloat32Array();
    const scores = lx.multiply(lx.matmul(q, lx.transpose(k, [0, 1, 3, 2])), 0.25);
    const composed = lx.matmul(lx.softmax(scores, -1), v).toFloat32Array();
    expectClose(fused, composed, { rtol: 1e-5, atol: 1e-6 });
  });

  test("typed errors name the op and the shapes", () => {
    const x = lx.ones([2, 8]);
    expect(() => lx.rmsNorm(x, lx.ones([7]))).toThrow(/rmsNorm: weight of shape \[7\] does not match the last axis of \[2, 8\]/);
    expect(() => lx.layerNorm(x, null, lx.ones([2]))).toThrow(/layerNorm: bias/);
    expect(() => lx.rmsNorm(x, null, -1)).toThrow(/eps must be finite and non-negative/);
    expect(() => lx.scaledDotProductAttention(x, x, x)).toThrow(/must be \[batch, heads, seq, dim\]/);
    const q = lx.ones([1, 3, 2, 4]), kv = lx.ones([1, 2, 2, 4]);
    expect(() => lx.scaledDotProductAttention(q, kv, kv)).toThrow(/q heads a multiple of k heads/);
    expect(() => lx.rope(x, 3)).toThrow(/rope: dims must be even/);
    expect(() => lx.rope(lx.ones([4]), 2)).toThrow(lx.ShapeError);
  });
});
