// The conformance suite (in the spirit of ggml's test-backend-ops): every elementwise op and
// reduction × every dtype it supports × random shapes (size 1, odd sizes, broadcasting on each
// axis, strided views, empty arrays) with NaN and Inf mixed in, against float64 references
// computed on the same (dtype-rounded) inputs. Tolerances per dtype live in support/tolerance.ts.
// It runs unchanged on whichever backend LANES_BACKEND selects.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { erf, expectClose, groupForReduce, numel, randomShape, refBinary, refTranspose, rng } from "./support/reference.ts";
import { roundTo, tolerance } from "./support/tolerance.ts";

const next = rng(1234567);
const floatTypes = ["float32", "float16", "bfloat16"] as const;
type FloatType = (typeof floatTypes)[number];
let cases = 0;

// Random values in [lo, hi) for `dtype`, with NaN/±Inf sprinkled in for floats.
function values(n: number, dtype: lx.ElementDType, lo: number, hi: number, specials: boolean): Float64Array {
  const round = roundTo[dtype] ?? ((x: number) => x);
  return Float64Array.from({ length: n }, () => {
    if (dtype === "int32") return Math.floor(lo + (hi - lo) * next());
    if (specials && next() < 0.04) return [NaN, Infinity, -Infinity][Math.floor(next() * 3)]!;
    return round(lo + (hi - lo) * next());
  });
}

// An input array with these values: contiguous, or a transposed strided view of the same values.
function input(vals: Float64Array, shape: number[], dtype: lx.ElementDType, strided: boolean): lx.LanesArray {
  const asF32 = Float32Array.from(vals);
  if (!strided || shape.length < 2) return lx.array(dtype === "int32" ? Int32Array.from(vals) : asF32, shape, dtype);
  // Store the transpose, then view it transposed back: same logical values, non-contiguous.
  const axes = shape.map((_, i) => shape.length - 1 - i);
  const stored = refTranspose(asF32, shape, axes);
  const base = lx.array(dtype === "int32" ? Int32Array.from(stored.data) : Float32Array.from(stored.data), stored.shape, dtype);
  return lx.transpose(base, axes);
}

function shapes(): number[][] {
  return [[], [1], [0], [7], [33], [1, 1], [3, 5], [2, 1, 4], randomShape(next, 3, 6), randomShape(next, 4, 4), [2, 0, 3]];
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const unary: { name: string; op: (a: lx.LanesArray) => lx.LanesArray; ref: (x: number) => number; domain: [number, number]; ints?: boolean }[] = [
  { name: "exp", op: lx.exp, ref: Math.exp, domain: [-8, 8] },
  { name: "log", op: lx.log, ref: Math.log, domain: [0.01, 100] },
  { name: "negative", op: lx.negative, ref: (x) => -x, domain: [-9, 9], ints: true },
  { name: "abs", op: lx.abs, ref: Math.abs, domain: [-9, 9], ints: true },
  { name: "square", op: lx.square, ref: (x) => x * x, domain: [-9, 9], ints: true },
  { name: "sqrt", op: lx.sqrt, ref: Math.sqrt, domain: [0, 100] },
  { name: "rsqrt", op: lx.rsqrt, ref: (x) => 1 / Math.sqrt(x), domain: [0.01, 100] },
  { name: "tanh", op: lx.tanh, ref: Math.tanh, domain: [-5, 5] },
  { name: "sigmoid", op: lx.sigmoid, ref: sigmoid, domain: [-10, 10] },
  { name: "silu", op: lx.silu, ref: (x) => x * sigmoid(x), domain: [-10, 10] },
  { name: "gelu", op: lx.gelu, ref: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)), domain: [-5, 5] },
  { name: "geluApprox", op: lx.geluApprox, ref: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))), domain: [-5, 5] },
  { name: "sin", op: lx.sin, ref: Math.sin, domain: [-6, 6] },
  { name: "cos", op: lx.cos, ref: Math.cos, domain: [-6, 6] },
];

// Tolerance for an op's output dtype; int results compare exactly.
function tol(dtype: lx.ElementDType, what: string) {
  return { ...tolerance[dtype], what };
}

describe("conformance: unary ops × dtypes × shapes × layouts", () => {
  for (const u of unary) {
    const dtypes: lx.ElementDType[] = [...floatTypes, ...(u.ints ? (["int32"] as const) : [])];
    for (const dtype of dtypes) {
      test(`${u.name} ${dtype}`, () => {
        for (const shape of shapes()) {
          for (const strided of [false, true]) {
            const x = values(numel(shape), dtype, u.domain[0], u.domain[1], dtype !== "int32");
            const got = u.op(input(x, shape, dtype, strided));
            expect(got.dtype).toBe(dtype);
            expect(got.shape).toEqual(shape);
            const want = Array.from(x, (v) => (dtype === "int32" ? u.ref(v) | 0 : u.ref(v)));
            expectClose(got.toFloat32Array(), want, tol(dtype, `${u.name} ${dtype} ${shape} strided=${strided}`));
            cases++;
          }
        }
      });
    }
  }
});

const binary: { name: string; op: (a: lx.ArrayLike, b: lx.ArrayLike) => lx.LanesArray; ref: (x: number, y: number) => number; bool?: boolean; floatOut?: boolean; domain?: [number, number] }[] = [
  { name: "add", op: lx.add, ref: (x, y) => x + y },
  { name: "subtract", op: lx.subtract, ref: (x, y) => x - y },
  { name: "multiply", op: lx.multiply, ref: (x, y) => x * y },
  { name: "divide", op: lx.divide, ref: (x, y) => x / y, floatOut: true },
  { name: "maximum", op: lx.maximum, ref: (x, y) => (Number.isNaN(x) || Number.isNaN(y) ? NaN : Math.max(x, y)) },
  { name: "minimum", op: lx.minimum, ref: (x, y) => (Number.isNaN(x) || Number.isNaN(y) ? NaN : Math.min(x, y)) },
  { name: "power", op: lx.power, ref: (x, y) => x ** y, floatOut: true, domain: [0.1, 3] },
  { name: "equal", op: lx.equal, ref: (x, y) => +(x === y), bool: true },
  { name: "less", op: lx.less, ref: (x, y) => +(x < y), bool: true },
  { name: "greater", op: lx.greater, ref: (x, y) => +(x > y), bool: true },
];

function broadcastPair(): [number[], number[]] {
  const a = randomShape(next, 1 + Math.floor(next() * 3), 6);
  const b = a.slice(Math.floor(next() * a.length)).map((d) => (next() < 0.4 ? 1 : d));
  return next() < 0.5 ? [a, b] : [b, a];
}

describe("conformance: binary ops × dtypes × broadcasting × layouts", () => {
  for (const bop of binary) {
    for (const dtype of [...floatTypes, "int32"] as lx.ElementDType[]) {
      test(`${bop.name} ${dtype}`, () => {
        const pairs: [number[], number[]][] = [[[], []], [[1], [5]], [[0, 3], [3]], [[4, 1], [1, 3]], ...Array.from({ length: 8 }, broadcastPair)];
        for (const [as, bs] of pairs) {
          for (const strided of [false, true]) {
            const [lo, hi] = bop.domain ?? (dtype === "int32" ? [-20, 20] : [-4, 4]);
            // Few distinct values so comparisons see ties; divide by int zero is avoided.
            const a = values(numel(as), dtype, lo, hi, dtype !== "int32" && !bop.domain);
            let b = values(numel(bs), dtype, lo, hi, dtype !== "int32" && !bop.domain);
            if (dtype === "int32" && bop.name === "divide") b = b.map((v) => (v === 0 ? 1 : v));
            if (bop.bool && dtype !== "int32") b = b.map((v, i) => (i % 3 === 0 && a.length ? a[i % a.length]! : v));
            const got = bop.op(input(a, as, dtype, strided), input(b, bs, dtype, strided));
            const outType: lx.DType = bop.bool ? "bool" : bop.floatOut && dtype === "int32" ? "float32" : dtype;
            expect(got.dtype).toBe(outType);
            const want = refBinary(bop.ref, a, as, b, bs);
            expect(got.shape).toEqual(want.shape);
            const expected = outType === "int32" ? Array.from(want.data, (v) => v | 0) : want.data;
            expectClose(got.toFloat32Array(), expected, tol(outType, `${bop.name} ${dtype} ${as} ${bs} strided=${strided}`));
            cases++;
          }
        }
      });
    }
  }
});

const reducers: { name: string; op: (a: lx.LanesArray, axis?: number | number[], o?: lx.ReduceOptions) => lx.LanesArray; ref: (v: number[]) => number; single?: boolean; nonEmpty?: boolean; floatOut?: boolean; intOut?: boolean }[] = [
  { name: "sum", op: lx.sum, ref: (v) => v.reduce((s, x) => s + x, 0) },
  { name: "mean", op: lx.mean, ref: (v) => v.reduce((s, x) => s + x, 0) / v.length, floatOut: true },
  { name: "max", op: lx.max, ref: (v) => (v.some(Number.isNaN) ? NaN : Math.max(...v)), nonEmpty: true },
  { name: "min", op: lx.min, ref: (v) => (v.some(Number.isNaN) ? NaN : Math.min(...v)), nonEmpty: true },
  {
    name: "logsumexp",
    op: lx.logsumexp,
    ref: (v) => {
      const m = Math.max(...v);
      if (Number.isNaN(m) || !Number.isFinite(m)) return v.some(Number.isNaN) ? NaN : m;
      return m + Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
    },
    floatOut: true,
  },
  {
    name: "variance",
    op: lx.variance,
    ref: (v) => {
      const m = v.reduce((s, x) => s + x, 0) / v.length;
      return v.reduce((s, x) => s + (x - m) ** 2, 0) / v.length;
    },
    floatOut: true,
  },
  {
    name: "argmax",
    op: (a, axis, o) => lx.argmax(a, axis as number | undefined, o),
    ref: (v) => v.reduce((best, x, i) => (Number.isNaN(v[best]!) ? best : Number.isNaN(x) || x > v[best]! ? i : best), 0),
    single: true,
    nonEmpty: true,
    intOut: true,
  },
  {
    name: "argmin",
    op: (a, axis, o) => lx.argmin(a, axis as number | undefined, o),
    ref: (v) => v.reduce((best, x, i) => (Number.isNaN(v[best]!) ? best : Number.isNaN(x) || x < v[best]! ? i : best), 0),
    single: true,
    nonEmpty: true,
    intOut: true,
  },
];

describe("conformance: reductions × dtypes × axes × layouts", () => {
  for (const r of reducers) {
    for (const dtype of [...floatTypes, "int32"] as lx.ElementDType[]) {
      test(`${r.name} ${dtype}`, () => {
        for (let trial = 0; trial < 12; trial++) {
          const shape = randomShape(next, 1 + Math.floor(next() * 3), 7);
          if (!r.nonEmpty && trial === 0) shape[0] = 0;
          const nd = shape.length;
          let axes: number[] | undefined;
          if (r.single) axes = trial % 4 === 0 ? undefined : [Math.floor(next() * nd)];
          else if (trial % 5 !== 0) axes = Array.from({ length: nd }, (_, i) => i).filter(() => next() < 0.5);
          if (axes && axes.length === 0) axes = undefined;
          const keepdims = next() < 0.5;
          const x = values(numel(shape), dtype, -3, 3, dtype !== "int32" && trial % 3 === 0);
          const strided = trial % 2 === 1;
          const got = r.op(input(x, shape, dtype, strided), r.single ? axes?.[0] : axes, { keepdims });
          const outType: lx.DType = r.intOut ? "int32" : r.floatOut && dtype === "int32" ? "float32" : dtype;
          expect(got.dtype).toBe(outType);
          const want = groupForReduce(x, shape, axes, keepdims);
          expect(got.shape).toEqual(want.shape);
          const expected = want.groups.map(r.ref).map((v) => (outType === "int32" ? v | 0 : v));
          // Sums of n terms: the reference is exact, lanes rounds once to the dtype.
          expectClose(got.toFloat32Array(), expected, tol(outType, `${r.name} ${dtype} ${shape} axes=${axes} strided=${strided}`));
          cases++;
        }
      });
    }
  }
});

describe("conformance: astype, where and softmax × dtypes", () => {
  for (const dtype of floatTypes as readonly FloatType[]) {
    test(`softmax ${dtype} over every axis`, () => {
      for (const shape of [[1], [5], [3, 7], [2, 3, 4], [2, 1, 33]]) {
        for (let axis = -shape.length; axis < shape.length; axis++) {
          const x = values(numel(shape), dtype, -6, 6, false);
          const got = lx.softmax(input(x, shape, dtype, shape.length > 1), axis);
          const groups = groupForReduce(x, shape, [axis], true);
          // Softmax of each group, scattered back through the same grouping.
          const want = new Float64Array(x.length);
          const ax = axis < 0 ? axis + shape.length : axis;
          const st = shape.map((_, d) => numel(shape.slice(d + 1)));
          const seen = new Array<number>(groups.groups.length).fill(0);
          const outIndex = (i: number) => {
            let o = 0, mult = 1;
            for (let d = shape.length - 1; d >= 0; d--) {
              const idx = Math.floor(i / st[d]!) % shape[d]!;
              if (d !== ax) {
                o += idx * mult;
                mult *= shape[d]!;
              }
            }
            return o;
          };
          for (let i = 0; i < x.length; i++) {
            const o = outIndex(i);
            const g = groups.groups[o]!;
            const m = Math.max(...g);
            const total = g.reduce((s, v) => s + Math.exp(v - m), 0);
            want[i] = Math.exp(g[seen[o]!++]! - m) / total;
          }
          expectClose(got.toFloat32Array(), want, tol(dtype, `softmax ${dtype} ${shape} axis=${axis}`));
          cases++;
        }
      }
    });
  }

  test("where over every dtype pair of branches", () => {
    const dtypes: lx.ElementDType[] = ["float32", "float16", "bfloat16", "int32", "bool"];
    for (const da of dtypes)
      for (const db of dtypes) {
        const cond = lx.array(new Uint8Array([1, 0, 1, 0, 0, 1]), [2, 3]);
        const a = lx.array(Float32Array.from([1, 2, 3]), [3], da);
        const b = lx.array(Float32Array.from([0, 1]), [2, 1], db);
        const got = lx.where(cond, a, b);
        const av = Array.from([1, 2, 3], (v) => (da === "bool" ? +(v !== 0) : v));
        const bv = [0, 1];
        expect(Array.from(got.toFloat32Array())).toEqual([av[0]!, bv[0]!, av[2]!, bv[1]!, bv[1]!, av[2]!]);
        cases++;
      }
  });

  test("shape ops, take and concatenate move every dtype's values exactly", () => {
    for (const dtype of ["float32", "float16", "bfloat16", "int32", "bool"] as lx.ElementDType[]) {
      const raw = Float64Array.from({ length: 24 }, (_, i) => (dtype === "bool" ? +(i % 3 === 0) : i - 7.5));
      const x = Float32Array.from(raw, (v) => (dtype === "int32" ? Math.trunc(v) + 0 /* int32 has no -0 */ : dtype === "bool" ? +(v !== 0) : roundTo[dtype]!(v)));
      const a = lx.array(Float32Array.from(raw), [2, 3, 4], dtype);
      const t = refTranspose(x, [2, 3, 4], [2, 0, 1]);
      expect(Array.from(lx.transpose(a, [2, 0, 1]).toFloat32Array())).toEqual(t.data);
      expect(Array.from(lx.reshape(lx.transpose(a, [2, 0, 1]), [-1]).toFloat32Array())).toEqual(t.data);
      const rows = Array.from(lx.take(lx.reshape(a, [6, 4]), [5, 0, -1]).toFloat32Array());
      expect(rows).toEqual([...x.slice(20, 24), ...x.slice(0, 4), ...x.slice(20, 24)]);
      const cat = lx.concatenate([a, lx.slice(a, [1], [2])], 0);
      expect(cat.dtype).toBe(dtype);
      expect(Array.from(cat.toFloat32Array())).toEqual([...x, ...x.slice(12)]);
      expect(lx.stack([a, a], 3).shape).toEqual([2, 3, 4, 2]);
      cases += 5;
    }
  });

  test("the suite ran its cases", () => {
    // A guard against a table silently shrinking.
    expect(cases).toBeGreaterThan(900);
    console.log(`conformance cases: ${cases} (backend: ${lx.backendName()})`);
  });
});
