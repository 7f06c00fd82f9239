// Quantized weights (ggml's Q4_0, Q4_1, Q8_0 blocks) built in JS: astype(float32) and take of
// rows bit for bit against a float64 dequantization, quantizedMatmul within a bound derived from
// its 8-bit activation quantization, typed errors, and the scalar / AVX2 / AVX-512 kernel paths
// (forced in child processes) bitwise identical.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { numel, randomData, rng } from "./support/reference.ts";
import { blockBytes, buildBlocks, quantTypes, scaleSource, type QuantMatrix } from "./support/quant-blocks.ts";

const next = rng(2718);

function sameFloatBits(got: Float32Array, want: ArrayLike<number>, what: string): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(Float32Array.from(want).buffer);
  for (let i = 0; i < got.length; i++) {
    if (Number.isNaN(want[i]!) && Number.isNaN(got[i]!)) continue;
    if (g[i] !== w[i]) throw new Error(`${what}: [${i}] got ${got[i]} (0x${g[i]!.toString(16)}), want ${Math.fround(want[i]!)} (0x${w[i]!.toString(16)})`);
  }
}

function weightsOf(m: QuantMatrix): lx.LanesArray {
  return lx.arrayFromBytes(m.bytes, [m.n, m.k], m.type);
}

describe("dequantization is exact", () => {
  for (const type of quantTypes) {
    test(`${type}: astype(float32) is the float32 rounding of the float64 values, bit for bit`, () => {
      for (const [n, k] of [[1, 32], [7, 64], [33, 576]] as const) {
        const m = buildBlocks(type, n, k, next, scaleSource(next, "extreme"));
        const w = weightsOf(m);
        expect(w.dtype).toBe(type);
        expect(w.shape).toEqual([n, k]);
        const f = lx.astype(w, "float32");
        expect(f.dtype).toBe("float32");
        expect(f.shape).toEqual([n, k]);
        sameFloatBits(f.toFloat32Array(), m.values, `${type} astype [${n}, ${k}]`);
        // Reading a quantized array as float32 dequantizes the same way.
        sameFloatBits(w.toFloat32Array(), m.values, `${type} toFloat32Array`);
      }
    });

    test(`${type}: take of rows gives exactly the dequantized rows`, () => {
      const [n, k] = [12, 96];
      const m = buildBlocks(type, n, k, next, scaleSource(next, "extreme"));
      const w = weightsOf(m);
      const rows = [0, 11, 5, -1, -12, 5];
      const got = lx.take(w, rows, 0);
      expect(got.dtype).toBe("float32");
      expect(got.shape).toEqual([rows.length, k]);
      const want = rows.flatMap((r) => Array.from(m.values.subarray((r < 0 ? r + n : r) * k, (r < 0 ? r + n : r) * k + k)));
      sameFloatBits(got.toFloat32Array(), want, `${type} take`);
      // Indices as an int32 array with a shape of their own: [2, 3] rows → [2, 3, k].
      const idx = lx.array(Int32Array.from(rows), [2, 3]);
      const shaped = lx.take(w, idx);
      expect(shaped.shape).toEqual([2, 3, k]);
      sameFloatBits(shaped.toFloat32Array(), want, `${type} take [2, 3]`);
      // An index out of range fails the evaluation, naming it.
      expect(() => lx.take(w, [n], 0).toFloat32Array()).toThrow(/index 12 is out of range/);
      expect(() => lx.take(w, [n], 0).toFloat32Array()).toThrow(lx.DeviceError);
    });
  }
});

// The float64 reference of x @ wᵀ, and for every output a bound on |lanes - reference|.
//
// quantizedMatmul quantizes each 32-element block of an activation row to 8 bits, as ggml does
// (cpu/quant.hpp): with a = max|x| over the block, q = round(x · 127/a) (computed in float32)
// and the scale dx = a/127 kept at float16 precision. Then each reconstructed activation
// x̂ = q · dx is off by at most
//   |q · dx − q · a/127| + |q · a/127 − x| ≤ 127 · (a/127)(2⁻¹¹ + 2⁻²⁴) + a/254 + a · 2⁻²³
//   ≤ ε = a · (1/254 + 2⁻¹¹ + 2⁻²²)
// (rounding to an integer costs half a step of a/127; the float32 and float16 roundings of the
// scale and of x · 127/a cost the rest). The weights' integer codes and scales are used exactly.
// So the dot product over a block is off by at most ε · Σ|w| over the block, where w is the
// part of the weight that multiplies its scale. Q4_1 adds each block's min m times the block sum
// s = dx′ · Σq, with dx′ = a/127 in float32 and s kept at float16 precision; against m · Σx this
// is off by at most |m| · (|Σx| + 32ε′)(2⁻¹¹ + 2⁻²³) + |m| · 32ε′, with ε′ = a · (1/254 + 2⁻²²).
// On top come float32 roundings of the scale products and of the accumulation (per lane, then
// a pairwise tree): at most (blocks + 16) · 2⁻²³ relative to Σ|w·x̂| + |m·s|.
function referenceAndBound(w: QuantMatrix, x: ArrayLike<number>, rows: number): { want: Float64Array; bound: Float64Array } {
  const { n, k } = w;
  const nb = k / 32;
  const want = new Float64Array(rows * n), bound = new Float64Array(rows * n);
  for (let i = 0; i < rows; i++) {
    const amax: number[] = [], sums: number[] = [];
    for (let b = 0; b < nb; b++) {
      let a = 0, s = 0;
      for (let e = 0; e < 32; e++) {
        a = Math.max(a, Math.abs(x[i * k + b * 32 + e]!));
        s += x[i * k + b * 32 + e]!;
      }
      amax.push(a);
      sums.push(s);
    }
    for (let j = 0; j < n; j++) {
      let acc = 0, err = 0, magnitude = 0;
      for (let b = 0; b < nb; b++) {
        const eps = amax[b]! * (1 / 254 + 2 ** -11 + 2 ** -22);
        const epsF32 = amax[b]! * (1 / 254 + 2 ** -22);
        for (let e = 0; e < 32; e++) {
          const kk = b * 32 + e;
          acc += w.values[j * k + kk]! * x[i * k + kk]!;
          err += Math.abs(w.scaled[j * k + kk]!) * eps;
          magnitude += Math.abs(w.scaled[j * k + kk]!) * (Math.abs(x[i * k + kk]!) + eps);
        }
        const m = Math.abs(w.mins[j * nb + b]!);
        if (m) {
          err += m * ((Math.abs(sums[b]!) + 32 * epsF32) * (2 ** -11 + 2 ** -23) + 32 * epsF32);
          magnitude += m * (Math.abs(sums[b]!) + 32 * epsF32) * 1.001;
        }
      }
      want[i * n + j] = acc;
      bound[i * n + j] = err + (nb + 16) * 2 ** -23 * magnitude;
    }
  }
  return { want, bound };
}

function expectWithin(got: Float32Array, want: Float64Array, bound: Float64Array, what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++)
    if (!(Math.abs(got[i]! - want[i]!) <= bound[i]!))
      throw new Error(`${what}: [${i}] got ${got[i]}, want ${want[i]} ± ${bound[i]} (off by ${Math.abs(got[i]! - want[i]!)})`);
}

describe("quantizedMatmul against float64 within the activation-quantization bound", () => {
  for (const type of quantTypes) {
    test(`${type}: k in {32, 576}, n in {1, 7, 96}, leading batch dims, float32/float16/bfloat16 activations`, () => {
      for (const k of [32, 576])
        for (const n of [1, 7, 96]) {
          const w = buildBlocks(type, n, k, next, scaleSource(next, "moderate"));
          const W = weightsOf(w);
          for (const [lead, dtype] of [[[], "float32"], [[5], "float16"], [[2, 3], "bfloat16"], [[1, 4, 2], "float32"]] as [number[], lx.ElementDType][]) {
            const rows = numel(lead);
            const X = lx.array(randomData(rows * k, next, -4, 4), [...lead, k], dtype);
            const x = X.toFloat32Array(); // as stored in its dtype
            // A block of zeros and a block of tiny values (its float16 scale would be subnormal).
            x.fill(0, 0, 32);
            if (k > 32) for (let e = 32; e < 64; e++) x[e] = (e - 48) * 1e-7;
            const Xs = lx.array(x, [...lead, k]);
            const y = lx.quantizedMatmul(dtype === "float32" ? Xs : X, W);
            expect(y.dtype).toBe("float32");
            expect(y.shape).toEqual([...lead, n]);
            const got = y.toFloat32Array();
            if (dtype === "float32") {
              const { want, bound } = referenceAndBound(w, x, rows);
              expectWithin(got, want, bound, `${type} x [${lead}, ${k}] w [${n}, ${k}]`);
            } else {
              const { want, bound } = referenceAndBound(w, X.toFloat32Array(), rows);
              expectWithin(got, want, bound, `${type} ${dtype} x [${lead}, ${k}] w [${n}, ${k}]`);
            }
          }
        }
    });
  }

  test("a strided (transposed) activation gives the same bits as its contiguous copy", () => {
    const w = buildBlocks("q4_0", 9, 64, next, scaleSource(next, "moderate"));
    const W = weightsOf(w);
    const xt = lx.array(randomData(64 * 6, next), [64, 6]);
    const strided = lx.quantizedMatmul(lx.transpose(xt), W).toFloat32Array();
    const copy = lx.array(lx.transpose(xt).toFloat32Array(), [6, 64]);
    const contiguous = lx.quantizedMatmul(copy, W).toFloat32Array();
    expect(Buffer.from(strided.buffer).equals(Buffer.from(contiguous.buffer))).toBe(true);
    const { want, bound } = referenceAndBound(w, copy.toFloat32Array(), 6);
    expectWithin(strided, want, bound, "transposed x");
  });

  test("a row holding NaN or infinity gives NaN outputs for that row only", () => {
    for (const type of quantTypes) {
      const w = buildBlocks(type, 5, 64, next, scaleSource(next, "moderate"));
      const x = randomData(3 * 64, next);
      x[64 + 40] = NaN;
      x[128 + 3] = Infinity;
      const got = lx.quantizedMatmul(lx.array(x, [3, 64]), weightsOf(w)).toFloat32Array();
      const { want, bound } = referenceAndBound(w, x.subarray(0, 64), 1);
      expectWithin(got.subarray(0, 5), want, bound, `${type} clean row`);
      expect(Array.from(got.subarray(5)).every(Number.isNaN)).toBe(true);
    }
  });

  test("replays on several streams at once give the serial bits", async () => {
    const w = buildBlocks("q4_1", 96, 576, next, scaleSource(next, "moderate"));
    const W = weightsOf(w);
    const X = lx.array(randomData(4 * 576, next), [4, 576]);
    const serial = lx.quantizedMatmul(X, W).toFloat32Array();
    const streams = [0, 1, 2, 3].map(() => lx.newStream());
    const ys = streams.flatMap((stream) => [0, 1, 2].map(() => lx.quantizedMatmul(X, W, { stream })));
    await Promise.all(ys.map((y) => lx.evalAsync(y)));
    for (const y of ys) expect(Buffer.from(y.toFloat32Array().buffer).equals(Buffer.from(serial.buffer))).toBe(true);
    for (const s of streams) s.dispose();
  });
});

describe("typed errors", () => {
  const good = buildBlocks("q8_0", 4, 64, next, scaleSource(next, "moderate"));

  test("making a quantized array: k not a multiple of 32, or a byte count that does not match", () => {
    expect(() => lx.arrayFromBytes(new Uint8Array(4 * 34), [4, 48], "q8_0")).toThrow(lx.ShapeError);
    expect(() => lx.arrayFromBytes(new Uint8Array(4 * 34), [4, 48], "q8_0")).toThrow(/multiple of 32/);
    expect(() => lx.arrayFromBytes(new Uint8Array(0), [], "q4_0")).toThrow(lx.ShapeError);
    for (const type of quantTypes) {
      const bytes = new Uint8Array(4 * 2 * blockBytes[type] - 1);
      let caught: unknown;
      try {
        lx.arrayFromBytes(bytes, [4, 64], type);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(lx.LanesError);
      expect((caught as lx.LanesError).code).toBe("INVALID_ARGUMENT");
      expect((caught as Error).message).toContain(`needs ${4 * 2 * blockBytes[type]}`);
    }
  });

  test("quantizedMatmul: wrong shapes and dtypes", () => {
    const W = weightsOf(good);
    expect(() => lx.quantizedMatmul(lx.ones([3, 32]), W)).toThrow(lx.ShapeError); // k 32 != 64
    expect(() => lx.quantizedMatmul(lx.ones([3, 32]), W)).toThrow(/needs x \[\.\.\., k\] and w \[n, k\]/);
    expect(() => lx.quantizedMatmul(lx.ones([]), W)).toThrow(lx.ShapeError);
    const w3 = lx.arrayFromBytes(new Uint8Array(2 * 2 * 34), [2, 2, 32], "q8_0");
    expect(() => lx.quantizedMatmul(lx.ones([32]), w3)).toThrow(lx.ShapeError);
    expect(() => lx.quantizedMatmul(lx.ones([2, 64]), lx.ones([4, 64]))).toThrow(lx.DTypeError); // w not quantized
    expect(() => lx.quantizedMatmul(lx.ones([2, 64]), lx.ones([4, 64]))).toThrow(/w must be quantized/);
    expect(() => lx.quantizedMatmul(W, W)).toThrow(lx.DTypeError); // x quantized
  });

  test("quantized arrays passed to other ops are a DTypeError; matmul points to quantizedMatmul", () => {
    const W = weightsOf(good);
    const x = lx.ones([2, 4]);
    const attempts: [string, () => unknown][] = [
      ["add", () => lx.add(W, 1)],
      ["add arrays", () => lx.add(W, W)],
      ["multiply", () => lx.multiply(2, W)],
      ["exp", () => lx.exp(W)],
      ["sum", () => lx.sum(W)],
      ["softmax", () => lx.softmax(W)],
      ["reshape", () => lx.reshape(W, [64, 4])],
      ["transpose", () => lx.transpose(W)],
      ["slice", () => lx.slice(W, [0], [2])],
      ["concatenate", () => lx.concatenate([W, W])],
      ["where", () => lx.where(lx.ones([4, 64], { dtype: "bool" }), W, W)],
      ["rmsNorm", () => lx.rmsNorm(W, null)],
      ["sliceUpdate", () => lx.sliceUpdate(W, W, 0)],
      ["astype float16", () => lx.astype(W, "float16")],
      ["quantize", () => lx.astype(lx.ones([4, 64]), "q4_0")],
      ["take index", () => lx.take(lx.ones([4]), W)],
    ];
    for (const [what, run] of attempts) {
      let caught: unknown;
      try {
        run();
      } catch (e) {
        caught = e;
      }
      if (!(caught instanceof lx.DTypeError)) throw new Error(`${what}: expected DTypeError, got ${String(caught)}`);
    }
    expect(() => lx.matmul(x, W)).toThrow(lx.DTypeError);
    expect(() => lx.matmul(x, W)).toThrow(/use quantizedMatmul\(x, w\)/);
    expect(() => lx.matmul(W, lx.ones([64, 2]))).toThrow(lx.DTypeError);
    // take along axis 1 of quantized rows is refused with a shape error.
    expect(() => lx.take(W, [0], 1)).toThrow(lx.ShapeError);
    // The raw storage cannot be read as elements.
    expect(() => W.toTypedArray()).toThrow(lx.DTypeError);
    // And the process goes on: the weights still work.
    sameFloatBits(lx.astype(W, "float32").toFloat32Array(), good.values, "after errors");
  });
});

describe("CPU kernel paths (LANES_CPU_SIMD and LANES_CPU_QUANT_SUM in child processes, on the CPU backend whatever the parent runs)", () => {
  const runPaths = (order: string) =>
    ["scalar", "avx2", "avx512", ""].map((path) => {
      const proc = Bun.spawnSync([process.execPath, join(import.meta.dir, "support", "quant-paths.ts")], {
        env: { ...process.env, LANES_BACKEND: "cpu", LANES_CPU_SIMD: path, LANES_CPU_QUANT_SUM: order },
        timeout: 60_000,
      });
      expect(proc.exitCode, `LANES_CPU_SIMD=${path} LANES_CPU_QUANT_SUM=${order}: ${proc.stderr.toString()}`).toBe(0);
      return { path, results: JSON.parse(proc.stdout.toString().trim().split("\n").pop()!) as Record<string, string> };
    });

  test("scalar, AVX2, AVX-512 VNNI and the default give bitwise identical results in each summation order", () => {
    const byOrder = ["block", "lane"].map((order) => {
      const [first, ...rest] = runPaths(order);
      expect(Object.keys(first!.results).length).toBe(3 * 5 * 4);
      for (const other of rest)
        for (const [name, hex] of Object.entries(first!.results))
          if (other.results[name] !== hex) throw new Error(`${name}: ${order} order, LANES_CPU_SIMD=${other.path || "(default)"} differs from ${first!.path}`);
      return first!.results;
    });
    // The two orders are llama.cpp's two ways of summing: they round differently.
    const differing = Object.keys(byOrder[0]!).filter((name) => byOrder[0]![name] !== byOrder[1]![name]);
    expect(differing.length).toBeGreaterThan(0);
  }, 120_000);
});
