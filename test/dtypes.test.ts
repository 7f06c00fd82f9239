// bool, float16 and bfloat16: conversions against independent rounding references
// (Math.f16round, float32 bit arithmetic), ops computed in each dtype against float64, the
// promotion table, comparisons and where.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { expectClose, numel, randomData, randomShape, refBinary, refMatmul, refSoftmax, rng } from "./support/reference.ts";
import { bf16round, roundTo, tolerance } from "./support/tolerance.ts";

const next = rng(777);
const halves = ["float16", "bfloat16"] as const;

describe("conversions", () => {
  const specials = [0, -0, 1, -1, 0.1, 1 / 3, 65504, 65519, 65520, 1e5, -1e5, 6e-8, 3e-8, 5.96e-8, 1e-7, 6.1e-5, 1e-40, NaN, Infinity, -Infinity, 3.4e38];
  const values = Float32Array.from([...specials, ...randomData(2000, next, -300, 300), ...randomData(500, next, -1e-4, 1e-4)]);

  test("float32 -> float16 rounds like Math.f16round, bits included", () => {
    const h = lx.array(values, undefined, "float16");
    expect(h.dtype).toBe("float16");
    expectClose(h.toFloat32Array(), Array.from(values, Math.f16round), { rtol: 0, atol: 0, what: "f16 values" });
    const bits = h.toTypedArray() as Uint16Array;
    const want = new Uint16Array(new Float16Array(values).buffer);
    values.forEach((v, i) => {
      if (!Number.isNaN(v) && bits[i] !== want[i]) throw new Error(`f16 bits of ${v}: ${bits[i]} != ${want[i]}`);
    });
  });

  test("float32 -> bfloat16 rounds to nearest even", () => {
    const b = lx.array(values, undefined, "bfloat16");
    expectClose(b.toFloat32Array(), Array.from(values, bf16round), { rtol: 0, atol: 0, what: "bf16 values" });
  });

  test("conversions between every pair of dtypes", () => {
    const src = [-2.7, -1, -0.5, 0, 0.5, 1, 2.7, 300.25, NaN];
    const ref: Record<lx.ElementDType, (x: number) => number> = {
      float32: Math.fround,
      float16: Math.f16round,
      bfloat16: bf16round,
      int32: (x) => (Number.isNaN(x) ? 0 : Math.trunc(x)),
      bool: (x) => (x !== 0 ? 1 : 0),
    };
    const dtypes = Object.keys(ref) as lx.ElementDType[];
    for (const from of dtypes) {
      const a = lx.array(Float32Array.from(src), undefined, from);
      const aVals = Array.from(src, ref[from]);
      for (const to of dtypes) {
        const got = lx.astype(a, to).toFloat32Array();
        expectClose(got, aVals.map(ref[to]), { rtol: 0, atol: 0, what: `${from} -> ${to}` });
      }
    }
  });
});

describe("ops in half precision against float64", () => {
  for (const dtype of halves) {
    const round = roundTo[dtype]!;
    const tol = tolerance[dtype];
    const inputs = (n: number, lo = -2, hi = 2) => Float32Array.from(randomData(n, next, lo, hi), round);

    test(`${dtype}: elementwise, broadcasting, unary`, () => {
      for (let trial = 0; trial < 10; trial++) {
        const shape = randomShape(next, 1 + Math.floor(next() * 3), 9);
        const row = [shape[shape.length - 1]!];
        const a = inputs(numel(shape)), b = inputs(row[0]!, 0.5, 2);
        const A = lx.array(a, shape, dtype), B = lx.array(b, row, dtype);
        for (const [op, f] of [
          [lx.add, (x: number, y: number) => x + y],
          [lx.multiply, (x: number, y: number) => x * y],
          [lx.divide, (x: number, y: number) => x / y],
          [lx.maximum, Math.max],
        ] as const) {
          const got = op(A, B);
          expect(got.dtype).toBe(dtype);
          expectClose(got.toFloat32Array(), refBinary(f, a, shape, b, row).data, { ...tol, what: `${dtype} ${op.name}` });
        }
        expectClose(lx.exp(A).toFloat32Array(), Array.from(a, Math.exp), { ...tol, what: `${dtype} exp` });
        expectClose(lx.silu(A).toFloat32Array(), Array.from(a, (x) => x / (1 + Math.exp(-x))), { ...tol, what: `${dtype} silu` });
      }
    });

    test(`${dtype}: matmul, softmax and reductions accumulate in float32`, () => {
      const [M, K, N] = [17, 300, 9];
      const a = inputs(M * K), b = inputs(K * N);
      const y = lx.matmul(lx.array(a, [M, K], dtype), lx.array(b, [K, N], dtype));
      expect(y.dtype).toBe(dtype);
      // One rounding of an accurate float32 sum: relative to the output, not the sum of |terms|.
      const want = refMatmul(a, [M, K], b, [K, N]).data;
      const scale = Math.max(...Array.from(want, Math.abs));
      expectClose(y.toFloat32Array(), want, { rtol: tol.rtol, atol: tol.rtol * scale, what: `${dtype} matmul` });
      const x = inputs(4 * 500, -6, 6);
      const X = lx.array(x, [4, 500], dtype);
      expectClose(lx.softmax(X).toFloat32Array(), refSoftmax(x, [4, 500], -1), { ...tol, what: `${dtype} softmax` });
      const sums = [0, 1, 2, 3].map((r) => x.slice(r * 500, r * 500 + 500).reduce((s, v) => s + v, 0));
      expectClose(lx.sum(X, 1).toFloat32Array(), sums, { rtol: tol.rtol, atol: tol.rtol * 500, what: `${dtype} sum` });
      expect(lx.mean(X).dtype).toBe(dtype);
    });
  }
});

describe("promotion", () => {
  const cases: [lx.DType, lx.DType, string, lx.DType][] = [
    ["int32", "float16", "add", "float16"],
    ["int32", "bfloat16", "multiply", "bfloat16"],
    ["float16", "bfloat16", "add", "float32"],
    ["float16", "float32", "subtract", "float32"],
    ["bool", "int32", "add", "int32"],
    ["bool", "bool", "add", "int32"],
    ["bool", "float16", "maximum", "float16"],
    ["int32", "int32", "divide", "float32"],
    ["float16", "float16", "divide", "float16"],
    ["int32", "float16", "less", "bool"],
    ["int32", "int32", "matmul", "float32"],
    ["bfloat16", "bfloat16", "matmul", "bfloat16"],
  ];
  for (const [a, b, op, want] of cases) {
    test(`${a} ${op} ${b} -> ${want}`, () => {
      const x = lx.ones([2, 2], { dtype: a }), y = lx.ones([2, 2], { dtype: b });
      const fn = { add: lx.add, multiply: lx.multiply, subtract: lx.subtract, maximum: lx.maximum, divide: lx.divide, less: lx.less, matmul: lx.matmul }[op]!;
      const r = fn(x, y);
      expect(r.dtype).toBe(want);
      r.toFloat32Array(); // and it computes
    });
  }
});

describe("comparisons, where and bool", () => {
  test("equal, less, greater with broadcasting and NaN", () => {
    for (let trial = 0; trial < 15; trial++) {
      const shape = randomShape(next, 1 + Math.floor(next() * 3), 8);
      const col = [shape[0]!, ...shape.slice(1).map(() => 1)];
      const a = Float32Array.from(randomData(numel(shape), next, 0, 4), Math.floor);
      const b = Float32Array.from(randomData(numel(col), next, 0, 4), Math.floor);
      if (trial === 0) a[0] = NaN;
      const A = lx.array(a, shape), B = lx.array(b, col);
      for (const [op, f] of [
        [lx.equal, (x: number, y: number) => +(x === y)],
        [lx.less, (x: number, y: number) => +(x < y)],
        [lx.greater, (x: number, y: number) => +(x > y)],
      ] as const) {
        const got = op(A, B);
        expect(got.dtype).toBe("bool");
        expect(Array.from(got.toTypedArray())).toEqual(Array.from(refBinary(f, a, shape, b, col).data));
      }
    }
    expect(Array.from(lx.less(lx.array(new Int32Array([1, 5])), 3).toTypedArray())).toEqual([1, 0]);
  });

  test("where broadcasts all three operands and converts a non-bool condition", () => {
    for (let trial = 0; trial < 10; trial++) {
      const shape = randomShape(next, 2, 6);
      const c = Float32Array.from(randomData(shape[1]!, next), (v) => (v > 0 ? 1 : 0));
      const a = randomData(numel(shape), next), b = randomData(shape[0]!, next);
      const got = lx.where(lx.array(c, [shape[1]!]), lx.array(a, shape), lx.array(b, [shape[0]!, 1]));
      expect(got.shape).toEqual(shape);
      const want = Array.from({ length: numel(shape) }, (_, i) => {
        const r = Math.floor(i / shape[1]!), k = i % shape[1]!;
        return c[k] ? a[i]! : b[r]!;
      });
      expectClose(got.toFloat32Array(), want, { rtol: 0, atol: 0 });
    }
    const mixed = lx.where(lx.array([0, NaN, 2]), lx.array(new Int32Array([1, 1, 1])), lx.array([0.5, 0.5, 0.5], undefined, "float16"));
    expect(mixed.dtype).toBe("float16");
    expect(Array.from(mixed.toFloat32Array())).toEqual([0.5, 1, 1]);
  });

  test("bool arrays: data, counts, max, argmax, arithmetic", () => {
    const m = lx.array(new Uint8Array([0, 1, 1, 0, 1, 0]), [2, 3]);
    expect(m.dtype).toBe("bool");
    const count = lx.sum(m, 1);
    expect(count.dtype).toBe("int32");
    expect(Array.from(count.toTypedArray())).toEqual([2, 1]);
    expect(lx.max(m, 1).dtype).toBe("bool");
    expect(Array.from(lx.max(m, 0).toTypedArray())).toEqual([0, 1, 1]);
    expect(Array.from(lx.argmax(m, 1).toTypedArray())).toEqual([1, 1]); // rows [0,1,1] and [0,1,0]
    expect(Array.from(lx.add(m, m).toTypedArray())).toEqual([0, 2, 2, 0, 2, 0]);
    expect(Array.from(lx.negative(m).toTypedArray())).toEqual([0, -1, -1, 0, -1, 0]);
    expect(Array.from(lx.exp(m).toFloat32Array())).toEqual([1, Math.fround(Math.E), Math.fround(Math.E), 1, Math.fround(Math.E), 1]);
  });
});
