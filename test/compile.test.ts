// lx.compile: a compiled function equals the eager function bit for bit for every op family and
// for the toy transformer's decode step; outputs come back in the function's structure; scalar
// parameters replay one plan for many values; shapes key an LRU of plans; constants are held by
// reference; donated inputs are written in place; failed replays poison only their outputs;
// 8 Workers replay one plan at once on their own streams; memory returns to its baseline.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { randomData, rng } from "./support/reference.ts";
import type { PlanResult, PlanTask } from "./support/compile-worker.ts";
import { buildBlocks, quantTypes, scaleSource } from "./support/quant-blocks.ts";

const next = rng(8088);
type Arr = lx.LanesArray;
type Result = lx.CompiledResult;

function bytes(a: Arr): Buffer {
  // Quantized storage is not readable as elements: its exact float32 dequantization stands in.
  const t = a.dtype.startsWith("q") ? a.toFloat32Array() : a.toTypedArray();
  return Buffer.from(t.buffer, t.byteOffset, t.byteLength);
}

// Same structure (arrays, object keys in order), and per array the same dtype, shape and bits.
function expectSame(got: Result, want: Result, path = "result"): void {
  if (want instanceof lx.LanesArray) {
    if (!(got instanceof lx.LanesArray)) throw new Error(`${path}: expected an array, got ${typeof got}`);
    expect(got.dtype, `${path} dtype`).toBe(want.dtype);
    expect(got.shape, `${path} shape`).toEqual(want.shape);
    if (!bytes(got).equals(bytes(want))) throw new Error(`${path}: compiled bits differ from eager (${got.dtype} [${got.shape}])`);
    return;
  }
  if (Array.isArray(want)) {
    if (!Array.isArray(got)) throw new Error(`${path}: expected a list`);
    expect(got.length, `${path} length`).toBe(want.length);
    want.forEach((w, i) => expectSame((got as Result[])[i]!, w, `${path}[${i}]`));
    return;
  }
  if (got instanceof lx.LanesArray || Array.isArray(got)) throw new Error(`${path}: expected an object`);
  const g = got as Record<string, Result>, w = want as Record<string, Result>;
  expect(Object.keys(g), `${path} keys`).toEqual(Object.keys(w));
  for (const key of Object.keys(w)) expectSame(g[key]!, w[key]!, `${path}.${key}`);
}

// Compiles fn, and for each argument list checks the traced call and a replay against eager.
// Every argument list must have the same shapes: one plan serves them all.
function checkCompiled<A extends unknown[], R extends Result>(fn: (...args: A) => R, argLists: A[], opts?: lx.CompileOptions): void {
  const compiled = lx.compile(fn, opts);
  try {
    for (const args of argLists)
      lx.tidy(() => {
        const eager = fn(...args);
        expectSame(compiled(...args), eager, "traced call");
        expectSame(compiled(...args), eager, "replay");
      });
    expect(compiled.planCount).toBe(1);
  } finally {
    compiled.dispose();
  }
}

const f32 = (shape: number[], lo = -2, hi = 2) => lx.array(randomData(shape.reduce((a, b) => a * b, 1), next, lo, hi), shape);
const typed = (shape: number[], dtype: lx.ElementDType, lo = -2, hi = 2) => lx.astype(f32(shape, lo, hi), dtype);
const ints = (shape: number[], lo: number, hi: number) =>
  lx.array(Int32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => lo + Math.floor(next() * (hi - lo))), shape);

describe("compiled equals eager, bit for bit, per op family", () => {
  test("unary ops (float32, float16, int32)", () => {
    const unary = (x: Arr) => [
      lx.exp(x), lx.log(lx.abs(x)), lx.negative(x), lx.abs(x), lx.square(x), lx.sqrt(lx.abs(x)), lx.rsqrt(lx.abs(x)),
      lx.tanh(x), lx.sigmoid(x), lx.silu(x), lx.gelu(x), lx.geluApprox(x), lx.sin(x), lx.cos(x),
    ];
    checkCompiled(unary, [[f32([3, 17])], [f32([3, 17])]]);
    checkCompiled(unary, [[typed([5, 9], "float16")]]);
    checkCompiled((x: Arr) => [lx.negative(x), lx.abs(x), lx.square(x), lx.exp(x)], [[ints([4, 6], -1000, 1000)]]);
  });

  test("binary ops with broadcasting, promotion and scalar operands", () => {
    const binary = (a: Arr, b: Arr) => [
      lx.add(a, b), lx.subtract(a, b), lx.multiply(a, b), lx.divide(a, b), lx.maximum(a, b), lx.minimum(a, b),
      lx.power(lx.abs(a), b), lx.equal(a, b), lx.less(a, b), lx.greater(a, b),
      lx.add(a, 2.5), lx.subtract(1, a), lx.power(b, 2), lx.less(a, 0.5), lx.maximum(0, a), lx.divide(b, 3), lx.multiply(NaN, b),
    ];
    checkCompiled(binary, [[f32([4, 1, 6]), f32([5, 6])], [f32([4, 1, 6]), f32([5, 6])]]);
    checkCompiled(binary, [[ints([3, 4], -50, 50), typed([4], "float16")]]);
    checkCompiled((a: Arr, b: Arr) => [lx.add(a, b), lx.multiply(a, 3), lx.subtract(7, b), lx.equal(a, 2)], [[ints([2, 5], -9, 9), ints([5], -9, 9)]]);
    checkCompiled((a: Arr, b: Arr) => [lx.add(a, b), lx.multiply(a, b)], [[typed([3, 4], "bfloat16"), typed([3, 4], "bool")]]);
  });

  test("reductions over several axes, with keepdims", () => {
    const reductions = (x: Arr) => [
      lx.sum(x), lx.sum(x, 0), lx.sum(x, [0, 2], { keepdims: true }), lx.max(x, -1), lx.mean(x, [1, 2]),
      lx.min(x, 1, { keepdims: true }), lx.logsumexp(x, 2), lx.variance(x, 0), lx.argmax(x, 1), lx.argmin(x),
    ];
    checkCompiled(reductions, [[f32([3, 4, 5])], [f32([3, 4, 5])]]);
    checkCompiled(reductions, [[typed([2, 3, 70], "float16")]]);
    checkCompiled((x: Arr) => [lx.sum(x, 1), lx.max(x), lx.argmin(x, 0)], [[ints([6, 7], -100, 100)]]);
    checkCompiled((x: Arr) => lx.sum(lx.greater(x, 0), -1), [[f32([4, 9])]]);
  });

  test("softmax along each axis", () => {
    checkCompiled((x: Arr) => [lx.softmax(x, 0), lx.softmax(x, 1), lx.softmax(x)], [[f32([3, 4, 5], -6, 6)], [f32([3, 4, 5], -6, 6)]]);
    checkCompiled((x: Arr) => lx.softmax(lx.multiply(x, 4)), [[typed([8, 300], "float16")]]);
  });

  test("matmul: plain, transposed and broadcast operands through views, half precision, vectors", () => {
    checkCompiled((a: Arr, b: Arr) => lx.matmul(a, b), [[f32([6, 8]), f32([8, 5])], [f32([6, 8]), f32([8, 5])]]);
    checkCompiled((a: Arr, bt: Arr) => lx.matmul(a, lx.transpose(bt)), [[f32([7, 12]), f32([9, 12])]]);
    checkCompiled((at: Arr, b: Arr) => lx.matmul(lx.transpose(at, [0, 2, 1]), b), [[f32([2, 12, 7]), f32([12, 3])]]);
    checkCompiled((a: Arr, b: Arr) => lx.matmul(a, b), [[f32([2, 1, 6, 8]), f32([3, 8, 5])]]);
    checkCompiled((a: Arr, b: Arr) => lx.matmul(lx.broadcastTo(a, [4, 6, 8]), b), [[f32([6, 8]), f32([4, 8, 5])]]);
    checkCompiled((a: Arr, b: Arr) => lx.matmul(a, b), [[f32([1, 64]), f32([64, 96])]]);
    checkCompiled((a: Arr, b: Arr) => lx.matmul(a, b), [[f32([130, 70]), f32([70, 90])]]);
    checkCompiled((a: Arr, b: Arr) => lx.matmul(a, b), [[typed([9, 33], "float16"), typed([33, 4], "float16")]]);
  });

  test("arguments that are views (transposed, sliced at an offset, broadcast) replay as their values", () => {
    // A plan takes its arguments as row-major values, so it equals eager on row-major copies of
    // them bit for bit. (Eager on the view itself may round differently on a GPU, where cuBLAS
    // reads a transposed operand in place.)
    const fn = (a: Arr, b: Arr) => [lx.matmul(a, b), lx.add(a, 1)];
    const rowMajor = (v: Arr) => lx.array(v.toFloat32Array(), [...v.shape]);
    const argLists: [Arr, Arr][] = [
      [lx.transpose(f32([8, 6])), f32([8, 4])],
      [lx.slice(f32([9, 10]), [3, 2], [9, 10]), lx.slice(f32([10, 4]), [2, 0], [10, 4])],
      [lx.broadcastTo(f32([1, 8]), [6, 8]), f32([8, 4])],
      [f32([6, 8]), f32([8, 4])],
    ];
    const compiled = lx.compile(fn);
    try {
      for (const [a, b] of argLists)
        lx.tidy(() => {
          const want = fn(rowMajor(a), rowMajor(b));
          expectSame(compiled(a, b), want, "traced call");
          expectSame(compiled(a, b), want, "replay");
        });
      expect(compiled.planCount).toBe(1);
    } finally {
      compiled.dispose();
    }
  });

  test("views inside the function feed kernels: reshape, transpose, slice, expandDims, squeeze, broadcastTo", () => {
    const views = (x: Arr, y: Arr) => {
      const t = lx.transpose(x, [2, 0, 1]); // [5, 3, 4]
      const s = lx.slice(x, [2, 3, 4], [0, 0, 0], [-1, -2, -2]); // reversed, strided: [2, 2, 2]
      const r = lx.reshape(lx.transpose(x), [5, 12]); // strided: reshape copies
      const e = lx.expandDims(y, [0, 2]); // [1, 4, 1]
      return [
        lx.exp(t), lx.multiply(s, 2), lx.add(r, 1), lx.add(x, e), lx.squeeze(lx.sum(e, 0, { keepdims: true })),
        lx.subtract(lx.broadcastTo(y, [3, 4]), lx.squeeze(lx.slice(x, [0, 0, 1], [3, 4, 2]), 2)),
        lx.matmul(lx.slice(x, [0, 1], [3, 3]), lx.transpose(lx.slice(x, [1, 0], [2, 4]), [0, 2, 1])),
      ];
    };
    checkCompiled(views, [[f32([3, 4, 5]), f32([4])], [f32([3, 4, 5]), f32([4])]]);
  });

  test("take: indices as an input, as constants, negative, from a constant table", () => {
    const table = f32([11, 6]);
    checkCompiled((x: Arr, idx: Arr) => [lx.take(x, idx, 1), lx.take(x, [2, -1, 0], 0), lx.take(table, idx, 0)], [
      [f32([4, 9, 3]), lx.array(Int32Array.from([0, 8, -3, 4]), [2, 2])],
      [f32([4, 9, 3]), lx.array(Int32Array.from([1, 1, -9, 5]), [2, 2])],
    ]);
  });

  test("concatenate and stack, with promotion", () => {
    checkCompiled((a: Arr, b: Arr) => [lx.concatenate([a, b, lx.exp(a)], 1), lx.stack([a, lx.negative(a)], 0), lx.concatenate([b, a], -1)], [
      [f32([3, 4]), f32([3, 2])],
    ]);
    checkCompiled((a: Arr, b: Arr) => lx.concatenate([a, b], 0), [[ints([2, 3], -5, 5), typed([1, 3], "float16")]]);
    checkCompiled((a: Arr, b: Arr) => lx.concatenate([a, lx.exp(b), a, b, lx.square(a)], 1), [[f32([2, 3]), f32([2, 4])]]);
  });

  test("where, with a computed condition and a constant branch", () => {
    checkCompiled((c: Arr, a: Arr, b: Arr) => [lx.where(lx.greater(a, 0), a, b), lx.where(c, a, 0), lx.where(c, lx.exp(b), lx.negative(a))], [
      [typed([5, 1], "bool"), f32([5, 6]), f32([6])],
      [typed([5, 1], "bool"), f32([5, 6]), f32([6])],
    ]);
  });

  test("astype across dtypes", () => {
    const all: lx.ElementDType[] = ["float32", "float16", "bfloat16", "int32", "bool"];
    const conversions = (x: Arr) => all.flatMap((to) => [lx.astype(x, to), lx.astype(lx.astype(x, to), "float32")]);
    checkCompiled(conversions, [[f32([4, 7], -300, 300)]]);
    checkCompiled(conversions, [[typed([4, 7], "float16", -3, 3)]]);
    checkCompiled(conversions, [[ints([10], -70000, 70000)]]);
    checkCompiled(conversions, [[typed([9], "bool")]]);
  });

  test("rmsNorm and layerNorm, with and without weight and bias", () => {
    checkCompiled(
      (x: Arr, w: Arr, b: Arr) => [lx.rmsNorm(x, w, 1e-5), lx.rmsNorm(x, null, 1e-6), lx.layerNorm(x, w, b), lx.layerNorm(x)],
      [[f32([3, 5, 64]), f32([64]), f32([64])], [f32([3, 5, 64]), f32([64]), f32([64])]],
    );
    checkCompiled((x: Arr, w: Arr) => lx.rmsNorm(x, w), [[typed([2, 100], "float16"), typed([100], "float16")]]);
  });

  test("attention: causal, grouped-query, fixed key length, half precision", () => {
    const attn = (q: Arr, k: Arr, v: Arr) => [
      lx.scaledDotProductAttention(q, k, v),
      lx.scaledDotProductAttention(q, k, v, { causal: true }),
      lx.scaledDotProductAttention(q, k, v, { causal: true, keyLength: 6 }),
      lx.scaledDotProductAttention(q, k, v, { keyLength: 0 }),
      lx.scaledDotProductAttention(q, k, v, { scale: 0.3 }),
    ];
    checkCompiled(attn, [[f32([2, 4, 3, 8]), f32([2, 2, 9, 8]), f32([2, 2, 9, 5])], [f32([2, 4, 3, 8]), f32([2, 2, 9, 8]), f32([2, 2, 9, 5])]]);
    checkCompiled(attn, [[typed([1, 2, 5, 16], "float16"), typed([1, 1, 7, 16], "float16"), typed([1, 1, 7, 16], "float16")]]);
  });

  test("rope and sliceUpdate with fixed and scalar-parameter offsets", () => {
    checkCompiled((x: Arr, pos: number) => [lx.rope(x, 8, { offset: pos }), lx.rope(x, 4, { offset: pos, traditional: true, base: 500 }), lx.rope(x, 8, { offset: 3 })], [
      [f32([2, 3, 5, 8]), 0],
      [f32([2, 3, 5, 8]), 7],
      [f32([2, 3, 5, 8]), 4000],
    ], { scalars: [1] });
    checkCompiled((t: Arr, u: Arr, at: number) => [lx.sliceUpdate(t, u, at, { axis: 1 }), lx.sliceUpdate(lx.exp(t), u, 2, { axis: 1 })], [
      [f32([2, 6, 3]), f32([2, 3, 3]), 0],
      [f32([2, 6, 3]), f32([2, 3, 3]), 3],
      [f32([2, 6, 3]), f32([2, 3, 3]), 1],
    ], { scalars: [2] });
  });

  test("quantized weights: quantizedMatmul, take of rows and astype, as constants and as arguments", () => {
    for (const type of quantTypes) {
      const q = buildBlocks(type, 12, 96, next, scaleSource(next, "moderate"));
      const W = lx.arrayFromBytes(q.bytes, [12, 96], type);
      checkCompiled((x: Arr, idx: Arr) => [lx.quantizedMatmul(x, W), lx.take(W, idx), lx.astype(W, "float32"), lx.take(W, [-1, 0])], [
        [f32([2, 3, 96]), lx.array(Int32Array.from([4, 11, 0]))],
        [f32([2, 3, 96]), lx.array(Int32Array.from([1, 2, 3]))],
      ]);
      checkCompiled((w: Arr, x: Arr, idx: Arr) => [lx.quantizedMatmul(x, w), lx.take(w, idx), w], [[W, f32([5, 96]), lx.array(Int32Array.from([7, -2]))]]);
    }
  });

  test("a hand-written decode block: rmsNorm, rope, KV cache via sliceUpdate, attention over its prefix, SwiGLU", () => {
    const D = 32, H = 4, Hk = 2, hd = 8, Lmax = 10;
    const small = (shape: number[]) => f32(shape, -0.3, 0.3);
    const w = { norm: f32([D]), wq: small([D, H * hd]), wk: small([D, Hk * hd]), wv: small([D, Hk * hd]), wo: small([H * hd, D]), w1: small([D, 48]), w3: small([D, 48]), w2: small([48, D]) };
    // `used` is pos + 1: the keys filled so far, a second scalar parameter.
    const step = (x: Arr, kc: Arr, vc: Arr, pos: number, used: number) => {
      const h = lx.rmsNorm(x, w.norm);
      const heads = (t: Arr, n: number) => lx.transpose(lx.reshape(t, [1, 1, n, hd]), [0, 2, 1, 3]);
      const q = lx.rope(heads(lx.matmul(h, w.wq), H), hd, { offset: pos });
      const k = lx.rope(heads(lx.matmul(h, w.wk), Hk), hd, { offset: pos });
      const keys = lx.sliceUpdate(kc, k, pos, { axis: 2 });
      const values = lx.sliceUpdate(vc, heads(lx.matmul(h, w.wv), Hk), pos, { axis: 2 });
      const a = lx.scaledDotProductAttention(q, keys, values, { causal: true, keyLength: used });
      const y = lx.add(x, lx.matmul(lx.reshape(lx.transpose(a, [0, 2, 1, 3]), [1, 1, H * hd]), w.wo));
      const mlp = lx.matmul(lx.multiply(lx.silu(lx.matmul(y, w.w1)), lx.matmul(y, w.w3)), w.w2);
      return { y: lx.add(y, mlp), keys, values };
    };
    const cache = () => f32([1, Hk, Lmax, hd]);
    checkCompiled(step, [0, 3, 9].map((pos) => [f32([1, 1, D]), cache(), cache(), pos, pos + 1] as [Arr, Arr, Arr, number, number]), { scalars: [3, 4] });
  });

  test("a decoder's rope over its q and k heads at once, then its key and value written into donated caches", () => {
    // The llama decode step's shape of it (src/models/llama.ts): CUDA records the rope and the two
    // cache writes after it as one kernel, which stores each key element as it rotates it. A plan
    // orders its steps by a walk from its outputs: with the attention first, a bfloat16 cache's
    // widening for it comes between the two writes, so the caches first too.
    const H = 4, Hk = 2, hd = 8, capacity = 16;
    for (const dtype of ["float16", "bfloat16", "float32"] as const)
      for (const [dims, traditional, attentionFirst] of [[hd, true, true], [6, false, true], [hd, true, false]] as const) {
        const step = (y: Arr, kc: Arr, vc: Arr, pos: number, used: number) => {
          const heads = (t: Arr, n: number) => lx.transpose(lx.reshape(t, [1, 1, n, hd]), [0, 2, 1, 3]);
          const qk = lx.rope(heads(lx.slice(y, [0, 0, 0], [1, 1, (H + Hk) * hd]), H + Hk), dims, { offset: pos, traditional, base: 500 });
          const q = lx.slice(qk, [0, 0, 0, 0], [1, H, 1, hd]);
          const k = lx.astype(lx.slice(qk, [0, H, 0, 0], [1, H + Hk, 1, hd]), dtype);
          const v = lx.astype(heads(lx.slice(y, [0, 0, (H + Hk) * hd], [1, 1, (H + 2 * Hk) * hd]), Hk), dtype);
          const keys = lx.sliceUpdate(kc, k, pos, { axis: 2 }), values = lx.sliceUpdate(vc, v, pos, { axis: 2 });
          const attention = lx.scaledDotProductAttention(q, keys, values, { causal: true, keyLength: used });
          return attentionFirst ? [attention, keys, values, qk] : [keys, values, qk, attention];
        };
        const f = lx.compile(step, { scalars: [3, 4], donate: [1, 2] });
        const what = `${dtype}, ${dims} dims${traditional ? ", traditional" : ""}${attentionFirst ? "" : ", caches first"}`;
        const init = [typed([1, Hk, capacity, hd], dtype), typed([1, Hk, capacity, hd], dtype)];
        let caches = init.map((c) => lx.add(c, lx.zeros([], { dtype })));
        let eager = init;
        for (const pos of [0, 1, 2, 9, 15]) {
          const y = f32([1, 1, (H + 2 * Hk) * hd]);
          const want = step(y, eager[0]!, eager[1]!, pos, pos + 1) as Arr[];
          const got = f(y, caches[0]!, caches[1]!, pos, pos + 1) as Arr[];
          expectSame(got, want, `${what} at ${pos}`);
          for (const c of eager) c.dispose();
          const at = attentionFirst ? 1 : 0;
          [eager, caches] = [want.slice(at, at + 2), got.slice(at, at + 2)];
          for (const a of [...want, ...got].filter((a) => !eager.includes(a) && !caches.includes(a))) a.dispose();
          y.dispose();
        }
        expect(f.planCount).toBe(1);
        for (const c of [...eager, ...caches]) c.dispose();
        f.dispose();
      }
  });
});


describe("elementwise chains fuse into one kernel and keep eager's bits", () => {
  const steps = (fn: (...a: Arr[]) => Result, ...args: Arr[]) => {
    const f = lx.compile(fn);
    try {
      return f.plan(...args).info().steps;
    } finally {
      f.dispose();
    }
  };

  // The CPU and CUDA backends run a chain that alone reads a matmul's product as the matmul's
  // epilogue (CUDA at the shapes its own kernel serves); Metal runs it as a kernel of its own.
  const epilogues = lx.backendName() !== "metal";
  const epilogueAt = (n: number) => epilogues && (lx.backendName() !== "cuda" || n <= 96);

  test("the small graph: each round's add, maximum and multiply become its matmul's epilogue", () => {
    const [x, w, b] = [f32([64, 64]), f32([64, 64], -0.1, 0.1), f32([1, 64])];
    const graph = (x: Arr, w: Arr, b: Arr) => {
      let h = x;
      for (let i = 0; i < 7; i++) h = lx.multiply(lx.maximum(lx.add(lx.matmul(h, w), b), 0), 0.125);
      return lx.softmax(h, -1);
    };
    expect(steps(graph, x, w, b)).toBe(epilogues ? 7 + 1 : 7 * 2 + 1);
    checkCompiled(graph, [[x, w, b], [f32([64, 64]), w, b]]);
  });

  test("matmul epilogues: one op or a chain, broadcast and strided operands, batches, tile edges, transposed operands", () => {
    // One op after the product: a bias, as in every linear layer.
    const linear = (x: Arr, w: Arr, b: Arr) => lx.add(lx.matmul(x, w), b);
    for (const [M, K, N] of [[1, 128, 96], [37, 19, 5], [16, 16, 16], [3, 0, 4]] as const) {
      const a = [f32([M, K]), f32([K, N]), f32([N])] as [Arr, Arr, Arr];
      expect(steps(linear, ...a), `linear ${M}x${K}x${N}`).toBe(epilogueAt(Math.max(M, N, K)) ? 1 : 2);
      checkCompiled(linear, [a, [f32([M, K]), a[1], f32([N])]]);
    }
    // A chain reading three more operands, one strided (a transpose), one broadcast along rows, the
    // running value on either side; the operands of the product are transposed views.
    const chain = (x: Arr, w: Arr, b: Arr, r: Arr, s: Arr) =>
      lx.gelu(lx.subtract(lx.multiply(lx.add(lx.matmul(lx.transpose(x), lx.transpose(w)), b), lx.transpose(r)), s));
    const args = () => [f32([24, 20]), f32([33, 24]), f32([1, 33]), f32([33, 20]), f32([20, 33])] as [Arr, Arr, Arr, Arr, Arr];
    const a = args();
    expect(steps(chain, ...a)).toBe(epilogues ? 1 : 2);
    checkCompiled(chain, [a, args()]);
    // Batched products with a per-batch operand.
    const batched = (x: Arr, w: Arr, c: Arr) => lx.tanh(lx.multiply(lx.matmul(x, w), c));
    const bargs = () => [f32([3, 2, 9, 17]), f32([2, 17, 11]), f32([3, 1, 1, 11])] as [Arr, Arr, Arr];
    const ba = bargs();
    expect(steps(batched, ...ba)).toBe(epilogues ? 1 : 2);
    checkCompiled(batched, [ba, bargs()]);
  });

  test("quantized products' epilogues: a residual add or a chain, few rows (the matvec) and many, k over one tile", () => {
    // The residual add after each quantized linear of a decoder, and a chain with a broadcast
    // operand; rows 1 and 3 take CUDA's matvec, 40 its dense path; k = 2560 spans two of the
    // matvec's staged tiles of activations.
    const residual = (x: Arr, w: Arr, r: Arr) => lx.add(r, lx.quantizedMatmul(x, w));
    const chain = (x: Arr, w: Arr, b: Arr) => lx.tanh(lx.multiply(lx.subtract(lx.quantizedMatmul(x, w), b), 0.5));
    for (const type of quantTypes)
      for (const [rows, k, n] of [[1, 96, 40], [3, 96, 40], [40, 64, 24], [1, 2560, 20]] as const) {
        const q = buildBlocks(type, n, k, next, scaleSource(next, "moderate"));
        const W = lx.arrayFromBytes(q.bytes, [n, k], type);
        const ra = () => [f32([rows, k]), W, f32([rows, n])] as [Arr, Arr, Arr];
        const a = ra();
        expect(steps(residual, ...a), `${type} ${rows}x${k}x${n}`).toBe(epilogues ? 1 : 2);
        checkCompiled(residual, [a, ra()]);
        const ca = [f32([1, rows, k]), W, f32([n])] as [Arr, Arr, Arr];
        expect(steps(chain, ...ca), `${type} chain ${rows}x${k}x${n}`).toBe(epilogues ? 1 : 2);
        checkCompiled(chain, [ca]);
        W.dispose();
      }
  });

  test("an rmsNorm that alone feeds a quantized product folds into it where the backend normalizes its activations (CUDA's matvec as it stages them)", () => {
    // CUDA folds the norm of up to 16 rows of 32 to 1023 features (the norm kernel's rows of 32
    // threads), the CPU any; neither where the product already has an epilogue or something
    // else reads the norm.
    const backend = lx.backendName();
    const foldsAt = (rows: number, k: number) => backend === "cpu" || (backend === "cuda" && rows <= 16 && k >= 32 && k < 1024);
    const normed = (x: Arr, g: Arr, w: Arr) => lx.quantizedMatmul(lx.rmsNorm(x, g, 1e-5), w);
    const residual = (x: Arr, g: Arr, w: Arr, r: Arr) => lx.add(r, lx.quantizedMatmul(lx.rmsNorm(x, g, 1e-6), w));
    const shared = (x: Arr, g: Arr, w: Arr) => {
      const h = lx.rmsNorm(x, g, 1e-5);
      return [lx.quantizedMatmul(h, w), lx.quantizedMatmul(h, w)];
    };
    // Through a reshape (a view in its root's order, as a decoder's embedding rows become [1, L, k]).
    const reshaped = (x: Arr, g: Arr, w: Arr) => lx.quantizedMatmul(lx.rmsNorm(lx.reshape(lx.exp(x), x.shape.slice(1)), g, 1e-5), w);
    for (const type of quantTypes)
      for (const [rows, k, n] of [[1, 576, 40], [3, 96, 40], [9, 64, 24], [16, 576, 8], [17, 64, 8], [1, 1024, 20]] as const) {
        const q = buildBlocks(type, n, k, next, scaleSource(next, "moderate"));
        const W = lx.arrayFromBytes(q.bytes, [n, k], type);
        const args = () => [f32([1, rows, k]), f32([k], 0.5, 1.5), W] as [Arr, Arr, Arr];
        const a = args();
        const what = `${type} ${rows}x${k}x${n}`;
        expect(steps(normed, ...a), what).toBe(foldsAt(rows, k) ? 1 : 2);
        checkCompiled(normed, [a, args()]);
        const ra = [...a, f32([1, rows, n])] as [Arr, Arr, Arr, Arr];
        expect(steps(residual, ...ra), what).toBe(epilogues ? 2 : 3);
        checkCompiled(residual, [ra]);
        expect(steps(shared, ...a), what).toBe(3);
        checkCompiled(shared, [a]);
        expect(steps(reshaped, ...a), `reshaped ${what}`).toBe(foldsAt(rows, k) ? 2 : 3);
        checkCompiled(reshaped, [a]);
        W.dispose();
      }
  });

  test("a chain of a quantized product's two halves, silu(p[..., :h]) * p[..., h:], becomes its pair epilogue, with a folded norm too", () => {
    // A gated MLP's stacked gate and up weights: CUDA's matvec sums each column pair in one warp
    // (up to 16 rows, k up to one staged tile of 2048, the norm where it folds), the CPU runs the
    // chain over the product stored aside; neither where the halves come the other way round or
    // something else reads the product.
    const backend = lx.backendName();
    const pairsAt = (rows: number, k: number) => backend === "cpu" || (backend === "cuda" && rows <= 16 && k <= 2048);
    const normFoldsAt = (rows: number, k: number) => backend === "cpu" || (backend === "cuda" && rows <= 16 && k >= 32 && k < 1024);
    const halves = (p: Arr): [Arr, Arr] => {
      const shape = p.shape, h = shape.at(-1)! / 2, lead = shape.slice(0, -1);
      const zeros = shape.map(() => 0);
      return [lx.slice(p, zeros, [...lead, h]), lx.slice(p, [...lead.map(() => 0), h], shape)];
    };
    const gated = (x: Arr, w: Arr) => {
      const [gate, up] = halves(lx.quantizedMatmul(x, w));
      return lx.multiply(lx.silu(gate), up);
    };
    const normed = (x: Arr, g: Arr, w: Arr) => gated(lx.rmsNorm(x, g, 1e-5), w);
    const swapped = (x: Arr, w: Arr) => {
      const [gate, up] = halves(lx.quantizedMatmul(x, w));
      return lx.multiply(lx.silu(up), gate);
    };
    const shared = (x: Arr, w: Arr) => {
      const p = lx.quantizedMatmul(x, w);
      const [gate, up] = halves(p);
      return [lx.multiply(lx.silu(gate), up), lx.sum(p, -1)];
    };
    const alsoOut = (x: Arr, w: Arr) => {
      const p = lx.quantizedMatmul(x, w);
      const [gate, up] = halves(p);
      return [lx.multiply(lx.silu(gate), up), p];
    };
    // Halves one column off: [1, h + 1) against [h, 2h).
    const shifted = (x: Arr, w: Arr) => {
      const p = lx.quantizedMatmul(x, w);
      const shape = p.shape, h = shape.at(-1)! / 2, lead = shape.slice(0, -1);
      const gate = lx.slice(p, [...lead.map(() => 0), 1], [...lead, h + 1]);
      return lx.multiply(lx.silu(gate), halves(p)[1]);
    };
    // k of exactly one staged tile, a pair of one column, and (on an H200's 132 SMs) warps with
    // two pairs each.
    const shapes = [[1, 576, 64], [3, 96, 40], [16, 64, 24], [17, 64, 24], [1, 1024, 40], [2, 2560, 16], [1, 2048, 16], [1, 64, 2], [2, 64, 16000]] as const;
    for (const type of quantTypes)
      for (const [rows, k, n] of shapes) {
        const q = buildBlocks(type, n, k, next, scaleSource(next, "moderate"));
        const W = lx.arrayFromBytes(q.bytes, [n, k], type);
        const what = `${type} ${rows}x${k}x${n}`;
        const args = () => [f32([1, rows, k]), W] as [Arr, Arr];
        const a = args();
        expect(steps(gated, ...a), what).toBe(pairsAt(rows, k) ? 1 : 2);
        checkCompiled(gated, [a, args()]);
        const na = [a[0], f32([k], 0.5, 1.5), W] as [Arr, Arr, Arr];
        const normSteps = (pairsAt(rows, k) ? 1 : 2) + (normFoldsAt(rows, k) ? 0 : 1);
        expect(steps(normed, ...na), `normed ${what}`).toBe(normSteps);
        checkCompiled(normed, [na, [f32([1, rows, k]), na[1], W]]);
        expect(steps(swapped, ...a), `swapped ${what}`).toBe(2);
        checkCompiled(swapped, [a]);
        expect(steps(shared, ...a), `shared ${what}`).toBe(3);
        checkCompiled(shared, [a]);
        expect(steps(alsoOut, ...a), `also an output ${what}`).toBe(2);
        checkCompiled(alsoOut, [a]);
        if (n > 2) {
          expect(steps(shifted, ...a), `shifted ${what}`).toBe(2);
          checkCompiled(shifted, [a]);
        }
        W.dispose();
      }
  }, 60_000);

  test("a product is stored where something else reads it, where it is an output, or where the chain starts elsewhere", () => {
    const [x, w, b] = [f32([8, 12]), f32([12, 10]), f32([10])];
    const twice = (x: Arr, w: Arr, b: Arr) => {
      const p = lx.matmul(x, w);
      return lx.add(lx.exp(p), lx.sum(p, -1, { keepdims: true }));
    };
    // matmul | sum | exp+add
    expect(steps(twice, x, w, b)).toBe(3);
    checkCompiled(twice, [[x, w, b]]);
    const alsoOut = (x: Arr, w: Arr, b: Arr) => {
      const p = lx.matmul(x, w);
      return [p, lx.add(p, b)];
    };
    expect(steps(alsoOut, x, w, b)).toBe(2);
    checkCompiled(alsoOut, [[x, w, b]]);
    // The chain's running value starts at c, the product is its other operand.
    const other = (x: Arr, w: Arr, c: Arr) => lx.exp(lx.subtract(lx.multiply(c, 2), lx.matmul(x, w)));
    const c = f32([8, 10]);
    expect(steps(other, x, w, c)).toBe(2);
    checkCompiled(other, [[x, w, c]]);
    // An operand of the chain computed after the product: the epilogue waits for it.
    const late = (x: Arr, w: Arr, b: Arr) => {
      const p = lx.matmul(x, w);
      const q = lx.matmul(lx.exp(x), w);
      return lx.add(p, lx.sqrt(lx.abs(q)));
    };
    checkCompiled(late, [[x, w, b]]);
  });

  test("every unary op and every arithmetic binary op, the running value on either side, broadcast and strided operands", () => {
    const chain = (x: Arr, b: Arr, c: Arr) => {
      let h = lx.add(x, b); // b broadcasts along rows
      h = lx.subtract(lx.transpose(c), h); // a strided operand, the running value on the right
      h = lx.tanh(lx.multiply(h, 0.25));
      h = lx.divide(1.5, lx.add(lx.square(h), 1));
      h = lx.maximum(lx.minimum(h, b), -0.75);
      h = lx.power(lx.abs(h), 1.5);
      return lx.cos(lx.sin(lx.sigmoid(lx.silu(lx.gelu(lx.geluApprox(lx.rsqrt(lx.sqrt(lx.log(lx.exp(lx.negative(h)))))))))));
    };
    const args = () => [f32([6, 40]), f32([40]), f32([40, 6])] as [Arr, Arr, Arr];
    const a = args();
    // 22 ops reading four operands (b twice): a chain of 16 steps (the most one kernel takes), then one of 6.
    expect(steps(chain, ...a)).toBe(2);
    checkCompiled(chain, [a, args()]);
  });

  test("a chain stops where an intermediate is also read elsewhere, is an output, or changes shape", () => {
    const [x, y] = [f32([5, 7]), f32([7])];
    // exp(x) is read twice; t is an output; the sum changes the shape.
    const branchy = (x: Arr, y: Arr) => {
      const e = lx.exp(x);
      const t = lx.multiply(lx.add(e, y), 2);
      const u = lx.subtract(lx.sum(lx.negative(t), -1, { keepdims: true }), e);
      return [t, lx.abs(u)];
    };
    // exp | add+multiply (t) | negative | sum | subtract+abs
    expect(steps(branchy, x, y)).toBe(5);
    checkCompiled(branchy, [[x, y]]);
    // A fifth distinct operand starts a new chain (a kernel reads at most four).
    const wide = (a: Arr, b: Arr, c: Arr, d: Arr, e: Arr) => lx.add(lx.add(lx.add(lx.add(a, b), c), d), e);
    const five = [0, 1, 2, 3, 4].map(() => f32([3, 8]));
    expect(steps(wide, ...five)).toBe(2);
    checkCompiled(wide, [five as [Arr, Arr, Arr, Arr, Arr]]);
  });

  test("chains over many short rows: size-1 axes, broadcast and strided operands, rows across blocks and pool chunks", () => {
    // 1,400 rows of 16: several blocks of rows per kernel call and more than one pool chunk.
    const chain = (x: Arr, b: Arr, c: Arr, t: Arr) =>
      lx.tanh(lx.subtract(lx.multiply(lx.add(x, b), c), lx.transpose(t, [2, 1, 3, 0])));
    const args = () => [f32([2, 1, 700, 16]), f32([16]), f32([2, 1, 700, 1]), f32([16, 1, 2, 700])] as [Arr, Arr, Arr, Arr];
    const a = args();
    expect(steps(chain, ...a)).toBe(1);
    checkCompiled(chain, [a, args()]);
    // Operands whose outer axes do not collapse into one row stride: a per-batch value.
    const perBatch = (x: Arr, c: Arr) => lx.exp(lx.multiply(lx.add(x, 1), c));
    checkCompiled(perBatch, [[f32([3, 40, 5, 8]), f32([3, 1, 1, 8])]]);
    // A matmul's epilogue over a batched product of short rows.
    const linear = (x: Arr, w: Arr, b: Arr) => lx.multiply(lx.maximum(lx.add(lx.matmul(x, w), b), 0), 0.125);
    const largs = () => [f32([2, 700, 16]), f32([16, 16], -0.5, 0.5), f32([16])] as [Arr, Arr, Arr];
    const la = largs();
    expect(steps(linear, ...la)).toBe(epilogueAt(700) ? 1 : 2);
    checkCompiled(linear, [la, largs()]);
  });

  test("a chain over a scalar (rank 0) or an empty array", () => {
    const chain = (x: Arr, y: Arr) => lx.sqrt(lx.abs(lx.subtract(lx.multiply(x, 3), y)));
    const zero = lx.array(new Float32Array([1.25]), []);
    expect(steps(chain, zero, f32([]))).toBe(1);
    checkCompiled(chain, [[zero, f32([])]]);
    const empty = [f32([0, 5]), f32([5])] as [Arr, Arr];
    expect(steps(chain, ...empty)).toBe(1);
    checkCompiled(chain, [empty]);
  });

  test("chains of other dtypes, comparisons and scalar parameters are not fused, and stay equal to eager", () => {
    const half = (x: Arr) => lx.multiply(lx.add(x, 1), 3);
    const h = typed([4, 6], "float16");
    expect(steps(half, h)).toBe(2);
    checkCompiled(half, [[h]]);
    const cmp = (x: Arr) => lx.less(lx.exp(x), 1);
    expect(steps(cmp, f32([4, 6]))).toBe(2);
    checkCompiled(cmp, [[f32([4, 6])]]);
    const param = lx.compile((x: Arr, s: number) => lx.exp(lx.multiply(lx.add(x, 1), s)), { scalars: [1] });
    const x = f32([4, 6]);
    expect(param.plan(x, 0.5).info().steps).toBe(3);
    for (const s of [0.5, -2])
      lx.tidy(() => expectSame(param(x, s), lx.exp(lx.multiply(lx.add(x, 1), s))));
    param.dispose();
  });
});

describe("outputs", () => {
  test("an output that is the input itself, a constant, or a view is copied into an array of its own", () => {
    const w = f32([3, 4]);
    const f = lx.compile((x: Arr) => ({ same: x, constant: w, view: lx.transpose(x), sliced: lx.slice(lx.exp(x), [1], [3]), row: lx.reshape(lx.exp(x), [12]) }));
    const x = f32([3, 4]);
    const xBits = Buffer.from(bytes(x)), wBits = Buffer.from(bytes(w));
    for (let call = 0; call < 2; call++) {
      const out = f(x) as Record<string, Arr>;
      expect(out.same!.id).not.toBe(x.id);
      expect(bytes(out.same!).equals(xBits)).toBe(true);
      expect(out.constant!.id).not.toBe(w.id);
      expect(bytes(out.constant!).equals(wBits)).toBe(true);
      expectSame(out.view!, lx.transpose(x));
      expectSame(out.sliced!, lx.slice(lx.exp(x), [1], [3]));
      expectSame(out.row!, lx.reshape(lx.exp(x), [12]));
      // The copies are independent: disposing them leaves the input and the constant intact.
      for (const a of Object.values(out)) a.dispose();
      expect(bytes(x).equals(xBits)).toBe(true);
      expect(bytes(w).equals(wBits)).toBe(true);
    }
    // The input may go while its copy lives on.
    const out = f(x) as Record<string, Arr>;
    x.dispose();
    expect(bytes(out.same!).equals(xBits)).toBe(true);
    f.dispose();
  });

  test("several outputs in nested arrays and objects come back in the function's structure", () => {
    const fn = (a: Arr, b: Arr) => {
      const s = lx.add(a, b);
      return { first: s, nested: [lx.exp(a), { deeper: [lx.multiply(s, b), s], last: lx.sum(b) }], plain: [a] };
    };
    const a = f32([2, 3]), b = f32([3]);
    checkCompiled(fn, [[a, b]]);
    const f = lx.compile(fn);
    const out = f(a, b);
    expect(Object.keys(out)).toEqual(["first", "nested", "plain"]);
    expect(Array.isArray(out.nested)).toBe(true);
    const deeper = (out.nested[1] as { deeper: Arr[] }).deeper;
    // The same array returned twice comes back as two arrays with the same values.
    expect(deeper[1]!.id).not.toBe(out.first.id);
    expect(bytes(deeper[1]!).equals(bytes(out.first))).toBe(true);
    f.dispose();
  });

  test("a function that returns no arrays, or something else, is refused with a typed error", () => {
    expect(() => lx.compile((x: Arr) => [] as Arr[])(f32([2]))).toThrow(lx.LanesError);
    expect(() => lx.compile((x: Arr) => 3 as unknown as Arr)(f32([2]))).toThrow(lx.ShapeError);
  });
});

describe("scalar parameters", () => {
  test("one plan serves many values, each giving the eager result", () => {
    const w = f32([8]);
    const fn = (x: Arr, a: number, y: Arr, b: number) => [lx.add(x, a), lx.multiply(y, b), lx.subtract(a, lx.multiply(w, x)), lx.power(y, b), lx.less(x, a)];
    const f = lx.compile(fn, { scalars: [1, 3] });
    const x = f32([8]), y = f32([8], 0.1, 3);
    for (const [a, b] of [[0.5, 2], [-3, 0.25], [1e10, -1], [NaN, 0], [7, Infinity], [0, 3]] as const)
      lx.tidy(() => expectSame(f(x, a, y, b), fn(x, a, y, b), `a=${a} b=${b}`));
    expect(f.planCount).toBe(1);
    expect(f.plan(x, 0, y, 0).info()).toMatchObject({ inputs: 2, scalars: 2, outputs: 5 });
    f.dispose();
  });

  test("attention over a key length that changes per replay, rows that see no key among them, equals eager", () => {
    // On CUDA a decode step's rows take a block per 32 keys; a plan's last block of each row
    // combines them (counters it zeroes again for the next replay), eager takes a second kernel.
    const step = (q: Arr, k: Arr, v: Arr, used: number) => lx.scaledDotProductAttention(q, k, v, { causal: true, keyLength: used });
    const k = f32([1, 3, 300, 64]), v = f32([1, 3, 300, 64]);
    checkCompiled(step, [0, 1, 31, 32, 33, 200, 300, 7].map((used) => [f32([1, 9, 1, 64]), k, v, used] as [Arr, Arr, Arr, number]), { scalars: [3] });
    // Four query rows over two keys: the first two see none.
    checkCompiled(step, [2, 40].map((used) => [f32([1, 6, 4, 64]), k, v, used] as [Arr, Arr, Arr, number]), { scalars: [3] });
  });

  test("replays that alternate arguments and values, or repeat them, each give their own eager result", () => {
    // A backend may skip rewriting a parameter that did not change since the last replay.
    const fn = (x: Arr, s: number) => lx.add(lx.multiply(x, s), 1);
    const f = lx.compile(fn, { scalars: [1] });
    const xs = [f32([8, 8]), f32([8, 8])];
    for (const [i, s] of [[0, 2], [1, 2], [1, 3], [0, 3], [0, 2], [0, 2], [1, 2], [1, 2]] as const) {
      const got = f(xs[i]!, s);
      const want = fn(xs[i]!, s);
      expectSame(got, want, `x${i} * ${s} + 1`);
      got.dispose();
      want.dispose();
    }
    f.dispose();
  });

  test("rope offset, attention key length and sliceUpdate offset in one plan", () => {
    const fn = (q: Arr, k: Arr, u: Arr, pos: number, used: number) => {
      const keys = lx.sliceUpdate(k, u, pos, { axis: 2 });
      const qr = lx.rope(q, 8, { offset: pos });
      return [keys, lx.scaledDotProductAttention(qr, lx.rope(keys, 8), keys, { causal: true, keyLength: used })];
    };
    const f = lx.compile(fn, { scalars: [3, 4] });
    const q = f32([1, 4, 2, 8]), k = f32([1, 2, 12, 8]), u = f32([1, 2, 2, 8]);
    for (const pos of [0, 1, 5, 10]) lx.tidy(() => expectSame(f(q, k, u, pos, pos + 2), fn(q, k, u, pos, pos + 2), `pos=${pos}`));
    expect(f.planCount).toBe(1);
    f.dispose();
  });

  test("an op on constants that reads a scalar parameter is not folded into a constant", () => {
    // multiply(w, s) reads only a closed-over array and the scalar: its value changes per call.
    const w = lx.array([1, 2, 3]), rows = f32([1, 2, 4]);
    const fn = (x: Arr, s: number) => [lx.add(x, 1), lx.multiply(w, s), lx.rope(rows, 4, { offset: s })];
    const f = lx.compile(fn, { scalars: [1] });
    const x = lx.array([0]);
    for (const s of [5, 2]) lx.tidy(() => expectSame(f(x, s), fn(x, s), `s=${s}`));
    f.dispose();
  });

  test("a scalar parameter is weakly typed like the number it stands for: int32 + s stays int32", () => {
    const fn = (x: Arr, s: number) => lx.add(x, s);
    const f = lx.compile(fn, { scalars: [1] });
    const x = lx.array(Int32Array.from([1, 2, 2147483647]));
    lx.tidy(() => expectSame(f(x, 2), fn(x, 2)));
    f.dispose();
  });

  test("out-of-range values are a ShapeError at call time, and the plan keeps working", () => {
    const fn = (k: Arr, u: Arr, q: Arr, pos: number, used: number) => [lx.sliceUpdate(k, u, pos, { axis: 2 }), lx.scaledDotProductAttention(q, k, k, { keyLength: used })];
    const f = lx.compile(fn, { scalars: [3, 4] });
    const k = f32([1, 1, 6, 4]), u = f32([1, 1, 2, 4]), q = f32([1, 1, 3, 4]);
    lx.tidy(() => expectSame(f(k, u, q, 1, 3), fn(k, u, q, 1, 3)));
    for (const [pos, used, pattern] of [
      [5, 3, /sliceUpdate: offset 5.* out of range \[0, 4\]/],
      [-1, 3, /sliceUpdate: offset -1.* out of range/],
      [1.5, 3, /sliceUpdate: offset 1\.5.* out of range/],
      [NaN, 3, /sliceUpdate: offset/],
      [0, 7, /key length 7.* out of range \[0, 6\]/],
      [0, -1, /key length -1.* out of range/],
      [0, 2.5, /key length 2\.5/],
    ] as const) {
      expect(() => f(k, u, q, pos, used), `pos=${pos} used=${used}`).toThrow(lx.ShapeError);
      expect(() => f(k, u, q, pos, used)).toThrow(pattern);
      lx.tidy(() => expectSame(f(k, u, q, 4, 6), fn(k, u, q, 4, 6), "after the error"));
    }
    expect(f.planCount).toBe(1);
    const r = lx.compile((x: Arr, p: number) => lx.rope(x, 4, { offset: p }), { scalars: [1] });
    expect(() => r(f32([2, 4]), Infinity)).toThrow(/rope: offset inf is not an integer position/);
    expect(() => r(f32([2, 4]), 2.5)).toThrow(/rope: offset 2.500000 is not an integer position/);
    expect(() => r(f32([2, 4]), NaN)).toThrow(lx.LanesError);
    const xr = f32([2, 4]);
    lx.tidy(() => expectSame(r(xr, 3), lx.rope(xr, 4, { offset: 3 }), "rope after the error"));
    f.dispose();
    r.dispose();
  });

  test("a scalar parameter where only a plain number is accepted is a typed error, never a silent NaN", () => {
    const x = f32([1, 1, 2, 4]);
    const uses: [string, (a: Arr, s: number) => Arr][] = [
      ["where", (a, s) => lx.where(lx.greater(a, 0), s, 0)],
      ["slice", (a, s) => lx.slice(a, [0, 0, s], [1, 1, 2])],
      ["full", (a, s) => lx.add(a, lx.full([4], s))],
      ["attention scale", (a, s) => lx.scaledDotProductAttention(a, a, a, { scale: s })],
      ["rmsNorm eps", (a, s) => lx.rmsNorm(a, null, s)],
    ];
    for (const [what, fn] of uses) {
      const f = lx.compile(fn, { scalars: [1] });
      let outcome = "no error";
      try {
        lx.eval(f(x, 3) as Arr);
      } catch (e) {
        outcome = e instanceof lx.LanesError ? "typed" : `untyped ${String(e)}`;
      }
      expect(outcome, what).toBe("typed");
      f.dispose();
    }
  });

  test("wrong argument kinds and counts are typed errors", () => {
    const f = lx.compile((x: Arr, s: number) => lx.multiply(x, s), { scalars: [1] });
    const x = f32([3]);
    expect(() => f(x, x as unknown as number)).toThrow(lx.ShapeError);
    expect(() => f(x, x as unknown as number)).toThrow(/argument 1 must be a number/);
    expect(() => f(2 as unknown as Arr, 2)).toThrow(/argument 0 must be an array/);
    const g = lx.compile((a: Arr, b: Arr) => lx.add(a, b));
    expect(() => g(x, 1 as unknown as Arr)).toThrow(lx.ShapeError);
    expect(() => (g as unknown as (a: Arr) => Arr)(x)).toThrow(lx.LanesError); // one argument short
    // Replaying a plan directly with the wrong arguments.
    using plan = f.plan(x, 1);
    expect(() => plan.run([x])).toThrow(lx.ShapeError);
    expect(() => plan.run([x, 1, 2])).toThrow(lx.ShapeError);
    expect(() => plan.run([f32([4]), 1])).toThrow(lx.ShapeError);
    expect(() => plan.run([f32([4]), 1])).toThrow(/argument 0 is float32 \[4\], the plan was traced for float32 \[3\]/);
    expect(() => plan.run([lx.astype(x, "float16"), 1])).toThrow(lx.DTypeError);
    expect(bytes(plan.run([x, 2]) as Arr).equals(bytes(lx.multiply(x, 2)))).toBe(true);
    f.dispose();
    g.dispose();
  });
});

describe("plans: shapes are the key, the cache is an LRU", () => {
  test("a new shape or dtype traces a new plan; a known one does not", () => {
    let traces = 0;
    const fn = (x: Arr) => {
      traces++;
      return lx.softmax(lx.multiply(x, 2), -1);
    };
    const f = lx.compile(fn);
    const check = (x: Arr) => lx.tidy(() => expectSame(f(x), fn(x)));
    const a = f32([2, 3]), b = f32([4, 3]), a2 = f32([2, 3]), h = typed([2, 3], "float16");
    check(a);
    expect([f.planCount, traces]).toEqual([1, 2]); // the trace, then the eager reference
    check(b);
    expect([f.planCount, traces]).toEqual([2, 4]);
    check(a2);
    expect([f.planCount, traces]).toEqual([2, 5]); // no retrace
    check(h);
    expect([f.planCount, traces]).toEqual([3, 7]);
    f.dispose();
  });

  test("with maxPlans 2 the least recently used plan is evicted, and results stay right", () => {
    let traces = 0;
    const fn = (x: Arr) => {
      traces++;
      return lx.sum(lx.exp(x), -1);
    };
    const f = lx.compile(fn, { maxPlans: 2 });
    const A = f32([2, 3]), B = f32([3, 3]), C = f32([4, 3]);
    const call = (x: Arr) => {
      const before = traces;
      lx.tidy(() => expectSame(f(x), fn(x)));
      return traces - before - 1; // traces made by the compiled call
    };
    expect(call(A)).toBe(1);
    expect(call(B)).toBe(1);
    expect(call(A)).toBe(0); // A is now the most recent
    expect(call(C)).toBe(1); // evicts B
    expect(f.planCount).toBe(2);
    expect(call(A)).toBe(0);
    expect(call(C)).toBe(0);
    expect(call(B)).toBe(1); // B was evicted: traced again, evicting A
    expect(call(A)).toBe(1);
    expect(f.planCount).toBe(2);
    f.dispose();
  });
});

describe("plans in flight", () => {
  test("evicting or disposing a plan with replays in flight lets them finish", () => {
    const fn = (x: Arr) => lx.softmax(lx.matmul(x, x), -1);
    const f = lx.compile(fn, { maxPlans: 1 });
    const a = f32([64, 64]), b = f32([32, 32]);
    const ya = f(a), yb = f(b); // b's trace evicts a's plan while ya may still be running
    const ya2 = f(a); // and a's retrace evicts b's
    expect(f.planCount).toBe(1);
    const yc = f(a);
    f.dispose();
    lx.tidy(() => {
      expectSame(ya, fn(a), "evicted");
      expectSame(yb, fn(b), "evicted second");
      expectSame(ya2, fn(a), "retraced");
      expectSame(yc, fn(a), "disposed");
    });
  });

  test("a plan replayed on many short-lived streams does not keep their arenas", () => {
    const f = lx.compile((x: Arr) => lx.softmax(lx.matmul(x, x), -1));
    const x = f32([128, 128]);
    const active: number[] = [];
    for (let i = 0; i < 30; i++) {
      const s = lx.newStream();
      const y = lx.withStream(s, () => f(x)) as Arr;
      lx.eval(y);
      y.dispose();
      s.dispose();
      lx.clearCache();
      active.push(lx.stats().activeBytes);
    }
    expect(active[29]).toBe(active[2]);
    f.dispose();
  });
});

describe("constants and lifetimes", () => {
  test("closed-over arrays are held by reference: disposing the weight's handle does not break the plan", () => {
    const w = f32([6, 4]);
    const fn = (x: Arr) => lx.matmul(x, w);
    const f = lx.compile(fn);
    const x = f32([2, 6]);
    const want = Buffer.from(bytes(fn(x)));
    expect(bytes(f(x) as Arr).equals(want)).toBe(true);
    w.dispose();
    expect(bytes(f(x) as Arr).equals(want)).toBe(true);
    // A retrace (new shape) reads the disposed weight: DisposedError, and the old plan still works.
    expect(() => f(f32([3, 6]))).toThrow(lx.DisposedError);
    expect(f.planCount).toBe(1);
    expect(bytes(f(x) as Arr).equals(want)).toBe(true);
    f.dispose();
  });

  test("constants computed inside the function are evaluated once, at trace time", () => {
    let made = 0;
    const fn = (x: Arr) => {
      made++;
      return lx.add(x, lx.sum(lx.random.normal([4], { seed: 9 })));
    };
    const f = lx.compile(fn);
    const x = f32([4]);
    const kernelsPerReplay = () => {
      const before = lx.stats().kernelsExecuted;
      lx.eval(f(x) as Arr);
      return lx.stats().kernelsExecuted - before;
    };
    lx.tidy(() => expectSame(f(x), fn(x)));
    const k1 = kernelsPerReplay(), k2 = kernelsPerReplay();
    expect(k1).toBe(k2);
    expect(made).toBe(2); // one trace, one eager reference: replays never call fn
    f.dispose();
  });

  test("calling after dispose() throws DisposedError; so does a disposed Plan", () => {
    const f = lx.compile((x: Arr) => lx.exp(x));
    const x = f32([3]);
    const plan = f.plan(x);
    lx.eval(f(x) as Arr);
    f.dispose();
    expect(() => f(x)).toThrow(lx.DisposedError);
    expect(() => f.plan(x)).toThrow(lx.DisposedError);
    expect(f.planCount).toBe(0);
    expect(() => plan.run([x])).toThrow(lx.DisposedError);
    expect(plan.disposed).toBe(true);
    // An adopted reference keeps a plan alive after its owner let go.
    const g = lx.compile((y: Arr) => lx.negative(y));
    const other = lx.planFromId(g.plan(x).id);
    g.dispose();
    expect(bytes(other.run([x]) as Arr).equals(bytes(lx.negative(x)))).toBe(true);
    other.dispose();
    expect(() => lx.planFromId(other.id)).toThrow(lx.InvalidHandleError);
  });

  test("the arena reuses the memory of dead intermediates", () => {
    const f = lx.compile((x: Arr) => {
      let h = x;
      for (let i = 0; i < 12; i++) h = lx.add(lx.softmax(h, -1), 0.1);
      return h;
    });
    const x = f32([256, 256]);
    const info = f.plan(x).info();
    const bytesPer = 256 * 256 * 4;
    expect(info.steps).toBe(24);
    // 24 intermediates of 256 KiB: a liveness layout needs a few of them, not all.
    expect(info.arenaBytes).toBeLessThanOrEqual(4 * bytesPer + 4096);
    f.dispose();
  });
});

describe("donated inputs", () => {
  test("a KV-cache loop cache = step(cache, update, pos) equals the eager loop and a float64 reference", () => {
    const [H, Lmax, D] = [2, 8, 4];
    const fn = (cache: Arr, update: Arr, pos: number) => {
      const c = lx.sliceUpdate(cache, update, pos, { axis: 2 });
      return { cache: c, energy: lx.sum(lx.square(c), [2, 3]) };
    };
    const step = lx.compile(fn, { scalars: [2], donate: [0] });
    let cache = lx.zeros([1, H, Lmax, D]);
    let eager = lx.zeros([1, H, Lmax, D]);
    const ref = new Float64Array(H * Lmax * D);
    for (let pos = 0; pos < Lmax; pos++) {
      const update = f32([1, H, 1, D]);
      const u = update.toFloat32Array();
      for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) ref[(h * Lmax + pos) * D + d] = u[h * D + d]!;
      const given = cache;
      const out = step(cache, update, pos);
      cache = out.cache;
      expect(given.disposed).toBe(true);
      expect(() => lx.exp(given)).toThrow(lx.DisposedError);
      const e = fn(eager, update, pos);
      eager.dispose();
      eager = e.cache;
      expectSame(out, e, `pos ${pos}`);
      expect(Array.from(cache.toFloat32Array())).toEqual(Array.from(ref));
      const energy = out.energy.toFloat32Array();
      for (let h = 0; h < H; h++) {
        let want = 0;
        for (let i = 0; i < Lmax * D; i++) want += ref[h * Lmax * D + i]! ** 2;
        expect(Math.abs(energy[h]! - want)).toBeLessThanOrEqual(1e-5 * want + 1e-6);
      }
      out.energy.dispose();
      e.energy.dispose();
      update.dispose();
    }
    expect(step.planCount).toBe(1);
    step.dispose();
  });

  test("the loop runs in place: no step allocates a second cache, memory stays flat", () => {
    const shape = [1, 4, 64, 256], cacheBytes = 4 * 64 * 256 * 4;
    const step = lx.compile((cache: Arr, update: Arr, pos: number) => lx.sliceUpdate(cache, update, pos, { axis: 2 }), { scalars: [2], donate: [0] });
    const update = f32([1, 4, 1, 256]);
    let cache = lx.zeros(shape);
    const active: number[] = [];
    for (let pos = 0; pos < 24; pos++) {
      const before = lx.stats().activeBytes;
      lx.resetPeakMemory();
      cache = step(cache, update, pos);
      lx.eval(cache);
      // The first step copies the unevaluated zeros; every later one writes the cache in place
      // (a copy would hold two caches at once: peak growth of a whole cache).
      if (pos > 0) expect(lx.stats().peakBytes - before, `step ${pos}`).toBeLessThan(cacheBytes / 2);
      active.push(lx.stats().activeBytes);
    }
    expect(active[23]).toBe(active[1]);
    const rows = cache.toFloat32Array(), u = update.toFloat32Array();
    for (let h = 0; h < 4; h++)
      for (let p = 0; p < 64; p++)
        for (let d = 0; d < 256; d += 37) expect(rows[(h * 64 + p) * 256 + d]).toBe(p < 24 ? u[h * 256 + d]! : 0);
    cache.dispose();
    update.dispose();
    step.dispose();
  });

  test("a cast update (a float32 key into a float16 cache) equals eager, in place or not; where the backend casts as it copies, the astype is no step of its own", () => {
    const casts = lx.backendName() === "cuda";
    const write = (cache: Arr, k: Arr, pos: number) => lx.sliceUpdate(cache, lx.astype(lx.multiply(k, 1.5), "float16"), pos, { axis: 2 });
    // Strided: the update is a transposed view, cast as it is read.
    const strided = (cache: Arr, k: Arr, pos: number) => lx.sliceUpdate(cache, lx.astype(lx.transpose(k, [0, 2, 1, 3]), "bfloat16"), pos, { axis: 2 });
    for (const donate of [[], [0]]) {
      const f = lx.compile(write, { scalars: [2], donate });
      const g = lx.compile(strided, { scalars: [2], donate });
      try {
        const init = f32([1, 3, 9, 16]);
        let cache = lx.astype(init, "float16"), eagerCache = lx.astype(init, "float16");
        let bcache = lx.astype(init, "bfloat16"), eagerB = lx.astype(init, "bfloat16");
        lx.eval(cache, eagerCache, bcache, eagerB);
        init.dispose();
        for (const pos of [0, 4, 8]) {
          const k = f32([1, 3, 1, 16]), kt = f32([1, 1, 3, 16]);
          // mul | astype | sliceUpdate, or mul | sliceUpdate (the cast folded in)
          expect(f.plan(cache, k, pos).info().steps, `donate ${donate}`).toBe(casts ? 2 : 3);
          const want = write(eagerCache, k, pos), wantB = strided(eagerB, kt, pos);
          cache = f(cache, k, pos) as Arr;
          bcache = g(bcache, kt, pos) as Arr;
          expectSame(cache, want, `float16 at ${pos}`);
          expectSame(bcache, wantB, `bfloat16 at ${pos}`);
          eagerCache.dispose();
          eagerB.dispose();
          [eagerCache, eagerB] = [want, wantB];
          k.dispose();
          kt.dispose();
        }
        for (const a of [cache, eagerCache, bcache, eagerB]) a.dispose();
      } finally {
        f.dispose();
        g.dispose();
      }
    }
  });

  test("a donated buffer updated twice is read before each update, whichever order the ops come in", () => {
    // s1 is written in place into the donated c; s2 must not overwrite it while exp(s1), fused
    // into the multiply that runs after s2, still reads it.
    const fns = [
      (c: Arr, u1: Arr, u2: Arr) => {
        const s1 = lx.sliceUpdate(c, u1, 0, { axis: 0 });
        return lx.multiply(lx.exp(s1), lx.sliceUpdate(s1, u2, 1, { axis: 0 }));
      },
      (c: Arr, u1: Arr, u2: Arr) => {
        const s1 = lx.sliceUpdate(c, u1, 0, { axis: 0 });
        return lx.multiply(lx.sliceUpdate(s1, u2, 1, { axis: 0 }), lx.exp(s1));
      },
    ];
    for (const fn of fns) {
      const f = lx.compile(fn, { donate: [0] });
      for (let r = 0; r < 3; r++) {
        const [c, u1, u2] = [f32([4]), f32([1]), f32([1])];
        const want = fn(lx.array(c.toFloat32Array(), [4]), u1, u2);
        expectSame(f(c, u1, u2), want, `replay ${r}`);
      }
      f.dispose();
    }
  });

  test("a donated input that is still referenced elsewhere is copied, and the other reference keeps its values", () => {
    const step = lx.compile((cache: Arr, update: Arr, pos: number) => lx.sliceUpdate(cache, update, pos), { scalars: [2], donate: [0] });
    const cache = f32([5, 3]);
    const before = Buffer.from(bytes(cache));
    const other = lx.arrayFromId(cache.id);
    const update = f32([1, 3]);
    const out = step(cache, update, 2);
    expect(cache.disposed).toBe(true);
    expect(bytes(other).equals(before)).toBe(true);
    const want = new Float32Array(before.buffer.slice(before.byteOffset, before.byteOffset + before.byteLength));
    want.set(update.toFloat32Array(), 6);
    expect(Array.from(out.toFloat32Array())).toEqual(Array.from(want));
    // A donated input read by other ops too is not written in place either.
    const both = lx.compile((c: Arr, u: Arr) => [lx.sliceUpdate(c, u, 0), lx.sum(c)], { donate: [0] });
    const c = lx.array(other.toFloat32Array(), [5, 3]);
    const [updated, total] = both(c, update) as [Arr, Arr];
    expect(c.disposed).toBe(true);
    expectSame(total, lx.sum(other));
    expectSame(updated, lx.sliceUpdate(other, update, 0));
    step.dispose();
    both.dispose();
  });
});

describe("replays in a pipeline", () => {
  test("inputs computed lazily on another stream are waited for", () => {
    using producer = lx.newStream();
    using consumer = lx.newStream();
    const fn = (x: Arr) => lx.softmax(lx.matmul(x, x), -1);
    const f = lx.compile(fn);
    for (let i = 0; i < 12; i++)
      lx.tidy(() => {
        const x = lx.exp(lx.random.normal([48, 48], { seed: i, stream: producer }), { stream: producer });
        expectSame(lx.withStream(consumer, () => f(x)), fn(x), `replay ${i}`);
      });
    f.dispose();
  });

  test("a decode loop with no evaluation between the steps (donated, in place) equals the eager loop", () => {
    const step = (c: Arr, u: Arr, q: Arr, pos: number, used: number) => {
      const k = lx.sliceUpdate(c, u, pos, { axis: 2 });
      return { k, a: lx.scaledDotProductAttention(q, k, k, { keyLength: used }) };
    };
    const f = lx.compile(step, { scalars: [3, 4], donate: [0] });
    let cache = lx.zeros([1, 2, 48, 16]);
    let eager = lx.zeros([1, 2, 48, 16]);
    const got: Arr[] = [], want: Arr[] = [];
    for (let pos = 0; pos < 48; pos++) {
      const u = lx.random.normal([1, 2, 1, 16], { seed: pos }), q = lx.random.normal([1, 2, 1, 16], { seed: 100 + pos });
      const o = f(cache, u, q, pos, pos + 1);
      cache = o.k;
      got.push(o.a);
      const e = step(eager, u, q, pos, pos + 1);
      eager.dispose();
      eager = e.k;
      want.push(e.a);
    }
    expectSame(cache, eager, "cache");
    got.forEach((g, i) => expectSame(g, want[i]!, `attention ${i}`));
    f.dispose();
  });

  test("pipelined donated steps write in place even while the stream's earlier steps still hold the cache", () => {
    // Both loops run the same kernels when every step writes in place: a step that copied its
    // cache would add a copy kernel and hold two caches at once.
    const shape = [1, 4, 64, 256], cacheBytes = 4 * 64 * 256 * 4;
    const fn = (cache: Arr, update: Arr, pos: number) => {
      const c = lx.sliceUpdate(cache, update, pos, { axis: 2 });
      return { c, s: lx.sum(c, [3]) };
    };
    const f = lx.compile(fn, { scalars: [2], donate: [0] });
    const update = f32([1, 4, 1, 256]);
    const run = (pipelined: boolean) => {
      let cache = lx.zeros(shape);
      lx.eval(cache);
      const sums: Arr[] = [];
      const kernels = lx.stats().kernelsExecuted, before = lx.stats().activeBytes;
      lx.resetPeakMemory();
      for (let pos = 0; pos < 32; pos++) {
        const o = f(cache, update, pos);
        cache = o.c;
        sums.push(o.s);
        if (!pipelined) lx.eval(o.c, o.s);
      }
      lx.eval(cache, ...sums);
      return { kernels: lx.stats().kernelsExecuted - kernels, growth: lx.stats().peakBytes - before, cache, sums };
    };
    const serial = run(false), pipelined = run(true);
    expect(pipelined.kernels).toBe(serial.kernels);
    expect(pipelined.growth).toBeLessThan(cacheBytes);
    expectSame(pipelined.cache, serial.cache, "cache");
    pipelined.sums.forEach((s, i) => expectSame(s, serial.sums[i]!, `sum ${i}`));
    for (const r of [serial, pipelined]) for (const a of [r.cache, ...r.sums]) a.dispose();
    update.dispose();
    expect(f.planCount).toBe(1);
    f.dispose();
  });

  test("a replay whose take index is out of range fails even when the plan's next replay is queued before it completes", async () => {
    // On a GPU a replay's range errors are read when its epoch completes, and each replay of the
    // instance clears its graph's words first: the next replay, queued right behind, must not
    // erase this one's before that read.
    using s = lx.newStream();
    const fn = (table: Arr, index: Arr) => lx.multiply(lx.take(table, index, 0), 2);
    const f = lx.compile(fn);
    const table = f32([4, 3]);
    const good = lx.array(Int32Array.from([3, 0]), [2]), bad = lx.array(Int32Array.from([1, 9]), [2]);
    const want = fn(table, good).toFloat32Array();
    for (let round = 0; round < 16; round++) {
      const [failing, fine] = lx.withStream(s, () => [f(table, bad) as Arr, f(table, good) as Arr]);
      const results = await Promise.allSettled([lx.evalAsync(failing), lx.evalAsync(fine)]);
      expect(results[0]).toMatchObject({ status: "rejected", reason: { name: "DeviceError" } });
      expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/index 9 is out of range for axis 0 of size 4/);
      expect(results[1]!.status, `round ${round}`).toBe("fulfilled");
      expect(Array.from(fine.toFloat32Array())).toEqual(Array.from(want));
      failing.dispose();
      fine.dispose();
    }
    f.dispose();
  });

  test("a donated strided view, or one array given as two arguments, is copied first", () => {
    const fn = (c: Arr, r: Arr) => ({ c: lx.sliceUpdate(c, lx.slice(r, [0], [1]), 2), s: lx.sum(r) });
    const f = lx.compile(fn, { donate: [0] });
    const x = f32([4, 3]);
    const copy = lx.array(x.toFloat32Array(), [4, 3]);
    lx.tidy(() => expectSame(f(lx.array(x.toFloat32Array(), [4, 3]), copy), fn(copy, copy)));
    lx.tidy(() => expectSame(f(x, x), fn(copy, copy), "the same array twice"));
    expect(x.disposed).toBe(true);
    const t = f32([3, 4]);
    const view = lx.transpose(t);
    const viewCopy = lx.array(view.toFloat32Array(), [4, 3]);
    lx.tidy(() => expectSame(f(view, copy), fn(viewCopy, copy), "a transposed view"));
    expect(Array.from(t.toFloat32Array())).toEqual(Array.from(lx.transpose(viewCopy).toFloat32Array())); // its source is untouched
    f.dispose();
  });

  test("evaluating or reading inside the traced function, or calling a compiled function there, is a typed error", () => {
    const x = f32([3]);
    const inner = lx.compile((a: Arr) => lx.exp(a));
    lx.eval(inner(x) as Arr);
    const attempts: [string, (a: Arr) => Arr][] = [
      ["eval", (a) => { const y = lx.exp(a); lx.eval(y); return y; }],
      ["read", (a) => { const y = lx.exp(a); y.toFloat32Array(); return y; }],
      ["nested compiled call", (a) => lx.add(inner(a) as Arr, 1)],
    ];
    for (const [what, fn] of attempts) {
      const f = lx.compile(fn);
      expect(() => f(x), what).toThrow(lx.LanesError);
      f.dispose();
    }
    expect(Array.from((inner(x) as Arr).toFloat32Array())).toEqual(Array.from(lx.exp(x).toFloat32Array()));
    inner.dispose();
  });
});

describe("failed replays (child process with LANES_FAULT_INJECTION=1)", () => {
  const proc = Bun.spawnSync([process.execPath, join(import.meta.dir, "support", "compile-faults.ts")], {
    env: { ...process.env, LANES_FAULT_INJECTION: "1", LANES_WATCHDOG_MS: "5000" },
    timeout: 60_000,
  });
  const out = proc.stdout.toString().trim().split("\n").pop() ?? "{}";
  const r = JSON.parse(out.startsWith("{") ? out : "{}") as Record<string, { ok: boolean; name?: string; message?: string } & unknown>;

  test("the child ran to the end", () => {
    expect(proc.stderr.toString()).not.toContain("panic");
    expect(proc.exitCode).toBe(0);
    expect(r.good).toEqual({ ok: true });
  });

  test("a failed replay throws DeviceError for each of its outputs and for their consumers", () => {
    expect(r.failedEval).toMatchObject({ ok: false, name: "DeviceError" });
    expect(r.failedEval!.message).toMatch(/injected fault/);
    expect(r.failedSecondOutput).toMatchObject({ ok: false, name: "DeviceError" });
    expect(r.dependent).toMatchObject({ ok: false, name: "DeviceError" });
    expect(r.replayOnFailed).toMatchObject({ ok: false, name: "DeviceError" });
    expect(r.asyncFailure).toMatchObject({ ok: false, name: "DeviceError" });
  });

  test("the next replay of the same plan succeeds with the same bits", () => {
    expect(r.after).toEqual({ ok: true });
    expect(r.afterSameBits as unknown).toBe(true);
    expect(r.afterAsync).toEqual({ ok: true });
    expect(r.afterAsyncSameBits as unknown).toBe(true);
    expect(r.planCount as unknown).toBe(1);
  });
});

// The plan of the concurrency tests: two matmuls with closed-over weights, a scalar parameter,
// softmax and rmsNorm.
function concurrencyPlan(): { f: lx.CompiledFunction<[Arr, number], { y: Arr; n: Arr }>; weights: Arr[] } {
  const w1 = lx.random.normal([32, 64], { seed: 11, scale: 0.2 }), w2 = lx.random.normal([64, 48], { seed: 12, scale: 0.2 });
  const f = lx.compile(
    (x: Arr, s: number) => {
      const h = lx.multiply(lx.silu(lx.matmul(x, w1)), s);
      const y = lx.matmul(h, w2);
      return { y: lx.softmax(y, -1), n: lx.rmsNorm(lx.add(y, s), null) };
    },
    { scalars: [1] },
  );
  return { f, weights: [w1, w2] };
}

describe("concurrency: 8 Workers replay one plan, adopted by id, on their own streams", () => {
  test("every result equals a serial run, bit for bit", async () => {
    const { f, weights } = concurrencyPlan();
    const rows = 16, cols = 32, perWorker = 24;
    const probe = lx.random.normal([rows, cols], { seed: 1 });
    const plan = f.plan(probe, 0);
    const seedsOf = (w: number) => Array.from({ length: perWorker }, (_, i) => 1000 * (w + 1) + i);
    // The serial run, on this thread, through the same plan; one of them also against eager.
    const serial = Array.from({ length: 8 }, (_, w) =>
      seedsOf(w).map((seed) => {
        const x = lx.random.normal([rows, cols], { seed });
        const out = plan.run([x, seed / 7]) as { y: Arr; n: Arr };
        const bits = { y: Buffer.from(bytes(out.y)), n: Buffer.from(bytes(out.n)) };
        for (const a of [x, out.y, out.n]) a.dispose();
        return bits;
      }),
    );
    lx.tidy(() => {
      const x = lx.random.normal([rows, cols], { seed: seedsOf(3)[5]! });
      expect(bytes(f(x, seedsOf(3)[5]! / 7).y).equals(serial[3]![5]!.y)).toBe(true);
    });
    const barrier = new Int32Array(new SharedArrayBuffer(4));
    const workers = Array.from({ length: 8 }, () => new Worker(new URL("./support/compile-worker.ts", import.meta.url).href));
    try {
      const results = await Promise.all(
        workers.map(
          (worker, w) =>
            new Promise<PlanResult["results"]>((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error(`worker ${w}: no result after 60 s`)), 60_000);
              worker.onmessage = (e: MessageEvent<PlanResult>) => {
                clearTimeout(timer);
                if (e.data.error) reject(new Error(`worker ${w}: ${e.data.error}`));
                else resolve(e.data.results);
              };
              worker.onerror = (e) => reject(new Error(`worker ${w} crashed: ${e.message}`));
              worker.postMessage({ planId: plan.id, seeds: seedsOf(w), rows, cols, asyncEval: w % 2 === 1, barrier, parties: 8 } satisfies PlanTask);
            }),
        ),
      );
      results.forEach((list, w) => {
        expect(list.length).toBe(perWorker);
        list.forEach((r, i) => {
          if (!Buffer.from(r.y).equals(serial[w]![i]!.y) || !Buffer.from(r.n).equals(serial[w]![i]!.n))
            throw new Error(`worker ${w}, replay ${i}: differs from the serial run`);
        });
      });
    } finally {
      for (const worker of workers) worker.terminate();
      probe.dispose();
      f.dispose();
      for (const w of weights) w.dispose();
    }
  }, 90_000);
});

describe("memory", () => {
  test("after disposing the compiled functions, their outputs and the streams, activeBytes returns to its baseline", () => {
    // In a process of its own, so no other test's garbage is freed during the measurement.
    const proc = Bun.spawnSync([process.execPath, join(import.meta.dir, "support", "compile-memory.ts")], { env: process.env, timeout: 60_000 });
    expect(proc.exitCode, proc.stderr.toString()).toBe(0);
    const r = JSON.parse(proc.stdout.toString().trim().split("\n").pop()!) as Record<"base" | "alive" | "after", lx.Stats> & { plans: number };
    expect(r.alive.activeBytes).toBeGreaterThan(r.base.activeBytes + 16 * 32 * 4);
    expect(r.after.activeBytes).toBe(r.base.activeBytes);
    expect(r.after.cachedBytes).toBe(0);
    expect(r.after.liveArrays).toBe(r.base.liveArrays);
    expect(r.after.liveStreams).toBe(r.base.liveStreams);
    expect(r.plans).toBe(0);
  }, 60_000);
});
