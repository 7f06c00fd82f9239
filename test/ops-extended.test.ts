// The model-facing unary ops, minimum/power, and the extra reductions against float64
// references in JS.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { erf, expectClose, groupForReduce, numel, randomData, randomShape, rng } from "./support/reference.ts";

const next = rng(4242);

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const unaries: [string, (a: lx.LanesArray) => lx.LanesArray, (x: number) => number, [number, number]][] = [
  ["abs", lx.abs, Math.abs, [-5, 5]],
  ["square", lx.square, (x) => x * x, [-5, 5]],
  ["sqrt", lx.sqrt, Math.sqrt, [0, 50]],
  ["rsqrt", lx.rsqrt, (x) => 1 / Math.sqrt(x), [0.01, 50]],
  ["tanh", lx.tanh, Math.tanh, [-6, 6]],
  ["sigmoid", lx.sigmoid, sigmoid, [-12, 12]],
  ["silu", lx.silu, (x) => x * sigmoid(x), [-12, 12]],
  ["gelu", lx.gelu, (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)), [-6, 6]],
  ["geluApprox", lx.geluApprox, (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))), [-6, 6]],
  ["sin", lx.sin, Math.sin, [-10, 10]],
  ["cos", lx.cos, Math.cos, [-10, 10]],
];

describe("unary ops", () => {
  for (const [name, op, ref, [lo, hi]] of unaries) {
    test(`${name} against float64, odd sizes and special values`, () => {
      for (const n of [1, 5, 16, 31, 1000, 65537]) {
        const x = randomData(n, next, lo, hi);
        expectClose(op(lx.array(x)).toFloat32Array(), Array.from(x, ref), { rtol: 4e-6, atol: 2e-6, what: `${name} n=${n}` });
      }
      const special = [NaN, Infinity, -Infinity, 0];
      expectClose(op(lx.array(special)).toFloat32Array(), special.map(ref), { rtol: 1e-6, atol: 1e-6, what: `${name} special` });
    });
  }

  test("silu of contiguous rows (the vector kernel) equals silu read one element at a time through a strided view, bit for bit", () => {
    const n = 1003; // not a multiple of 16 or 8: the rows' tails take the scalar formula
    const extremes = [0, -0, 1e-30, -1e-30, 87, -87, 88.8, -88.8, 100, -100, 103, -103, 150, -150, 200, -200, 3e38, -3e38, Infinity, -Infinity];
    const row = Float32Array.from({ length: n }, (_, i) => (i < extremes.length ? extremes[i]! : (next() * 2 - 1) * 40));
    const rows = 3;
    const data = new Float32Array(rows * n);
    for (let r = 0; r < rows; r++) data.set(row.map((v, i) => (r === 1 && i === 5 ? NaN : v * (r + 1) || v)), r * n);
    const contiguous = lx.silu(lx.array(data, [rows, n])).toFloat32Array();
    // The same values laid out [n, rows] and read transposed: each row is strided.
    const t = new Float32Array(rows * n);
    for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) t[i * rows + r] = data[r * n + i]!;
    const strided = lx.silu(lx.transpose(lx.array(t, [n, rows]))).toFloat32Array();
    const a = new Uint32Array(contiguous.buffer), b = new Uint32Array(strided.buffer);
    let differing = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(contiguous[i]) && Number.isNaN(strided[i]))) differing++;
    expect(differing).toBe(0);
    expect(Number.isNaN(contiguous[n + 5])).toBe(true);
    expect(contiguous[data.indexOf(-100)]).not.toBe(0); // a subnormal result, not flushed
  });

  test("abs and square keep int32 and wrap like int32", () => {
    const x = lx.array(new Int32Array([-3, 4, -2147483648, 46341]));
    expect(lx.abs(x).toTypedArray()).toEqual(new Int32Array([3, 4, -2147483648, 46341]));
    expect(lx.square(x).toTypedArray()).toEqual(new Int32Array([9, 16, 0, Math.imul(46341, 46341)]));
    expect(lx.sqrt(lx.array(new Int32Array([4, 9]))).dtype).toBe("float32");
  });
});

describe("binary ops", () => {
  test("minimum and power with broadcasting", () => {
    for (let trial = 0; trial < 15; trial++) {
      const shape = randomShape(next, 1 + Math.floor(next() * 3));
      const row = [shape[shape.length - 1]!];
      const a = randomData(numel(shape), next, 0.1, 3), b = randomData(row[0]!, next, -2, 2);
      const A = lx.array(a, shape), B = lx.array(b, row);
      const inner = row[0]!;
      expectClose(lx.minimum(A, B).toFloat32Array(), Array.from(a, (v, i) => Math.min(v, b[i % inner]!)), { what: "minimum" });
      expectClose(lx.power(A, B).toFloat32Array(), Array.from(a, (v, i) => v ** b[i % inner]!), { rtol: 1e-5, what: "power" });
    }
    expectClose(lx.minimum(lx.array([NaN, 1, -Infinity]), 0).toFloat32Array(), [NaN, 0, -Infinity]);
    expectClose(lx.power(lx.array([-8, 0, 2]), lx.array([1 / 3, 0, 0.5])).toFloat32Array(), [NaN, 1, Math.SQRT2], { rtol: 1e-6 });
    const ints = lx.minimum(lx.array(new Int32Array([3, -7])), lx.array(new Int32Array([1, 2])));
    expect(ints.dtype).toBe("int32");
    expect(ints.toTypedArray()).toEqual(new Int32Array([1, -7]));
    expect(lx.power(lx.array(new Int32Array([2])), 3).dtype).toBe("float32");
  });
});

describe("reductions", () => {
  const reducers: [string, typeof lx.min, (v: number[]) => number][] = [
    ["min", lx.min, (v) => (v.some(Number.isNaN) ? NaN : Math.min(...v))],
    [
      "logsumexp",
      lx.logsumexp,
      (v) => {
        const m = Math.max(...v);
        return m + Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
      },
    ],
    [
      "variance",
      lx.variance,
      (v) => {
        const m = v.reduce((s, x) => s + x, 0) / v.length;
        return v.reduce((s, x) => s + (x - m) ** 2, 0) / v.length;
      },
    ],
  ];
  for (const [name, op, ref] of reducers) {
    test(`${name} over random axes with keepdims`, () => {
      for (let trial = 0; trial < 25; trial++) {
        const nd = 1 + Math.floor(next() * 4);
        const shape = randomShape(next, nd, 6);
        const x = randomData(numel(shape), next, -4, 4);
        const axes: number[] = [];
        for (let d = 0; d < nd; d++) if (next() < 0.5) axes.push(d);
        const all = axes.length === 0 || trial % 5 === 0;
        const keepdims = next() < 0.5;
        const got = op(lx.array(x, shape), all ? undefined : axes, { keepdims });
        const want = groupForReduce(x, shape, all ? undefined : axes, keepdims);
        expect(got.shape).toEqual(want.shape);
        expectClose(got.toFloat32Array(), want.groups.map(ref), { rtol: 2e-5, atol: 2e-5, what: `${name} ${shape} ${axes}` });
      }
    });
  }

  test("logsumexp is stable for large inputs and handles -inf rows", () => {
    expectClose(lx.logsumexp(lx.array([1000, 1000])).toFloat32Array(), [1000 + Math.LN2], { rtol: 1e-6 });
    expect(lx.logsumexp(lx.array([-Infinity, -Infinity])).item()).toBe(-Infinity);
    expect(lx.logsumexp(lx.array([NaN, 1])).item()).toBeNaN();
  });

  test("argmax and argmin along an axis and over the flattened array", () => {
    for (let trial = 0; trial < 20; trial++) {
      const nd = 1 + Math.floor(next() * 3);
      const shape = randomShape(next, nd, 7);
      // Few distinct values, so ties are common: the first index must win.
      const x = Float32Array.from(randomData(numel(shape), next, 0, 4), Math.floor);
      const flat = trial % 4 === 0;
      const axis = flat ? undefined : Math.floor(next() * nd);
      const keepdims = next() < 0.5;
      const firstIndex = (v: number[], better: (a: number, b: number) => boolean) =>
        v.reduce((best, val, i) => (better(val, v[best]!) ? i : best), 0);
      const want = groupForReduce(x, shape, axis === undefined ? undefined : [axis], keepdims);
      const gotMax = lx.argmax(lx.array(x, shape), axis, { keepdims });
      expect(gotMax.dtype).toBe("int32");
      expect(gotMax.shape).toEqual(want.shape);
      expect(Array.from(gotMax.toTypedArray())).toEqual(want.groups.map((v) => firstIndex(v, (a, b) => a > b)));
      const gotMin = lx.argmin(lx.array(x, shape), axis, { keepdims });
      expect(Array.from(gotMin.toTypedArray())).toEqual(want.groups.map((v) => firstIndex(v, (a, b) => a < b)));
    }
    expect(lx.argmax(lx.array([1, NaN, 5])).item()).toBe(1);
    expect(lx.argmin(lx.array(new Int32Array([4, -2, -2]))).item()).toBe(1);
  });

  test("typed errors for the new reductions", () => {
    expect(() => lx.argmax(lx.ones([2, 3]), 2)).toThrow(lx.ShapeError);
    expect(() => lx.min(lx.zeros([0, 3]), 0)).toThrow(/min: cannot reduce an empty selection/);
    expect(() => lx.argmin(lx.zeros([3, 0]), 1)).toThrow(lx.ShapeError);
    expect(lx.variance(lx.zeros([0])).item()).toBeNaN();
  });
});
