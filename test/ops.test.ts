// Every op against a float64 reference computed in JS, on random shapes: broadcasting, size 1,
// sizes off the vector width, empty arrays, NaN and Inf.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { referenceRandom } from "./support/philox.ts";
import {
  expectClose,
  numel,
  randomData,
  randomShape,
  refBinary,
  refMatmul,
  refReduce,
  refSoftmax,
  rng,
} from "./support/reference.ts";

const next = rng(20261127);

// A shape that `base` broadcasts against: some axes set to 1, maybe fewer dimensions.
function broadcastPartner(base: number[]): number[] {
  const drop = Math.floor(next() * (base.length + 1));
  return base.slice(drop).map((d) => (next() < 0.4 ? 1 : d));
}

describe("creation", () => {
  test("large arrays round-trip exactly, across copy-chunk boundaries", () => {
    // 25 MiB + 3 elements: several 8 MiB staging chunks on GPUs and a ragged last one.
    const n = (25 << 18) + 3;
    const host = new Float32Array(n);
    for (let i = 0; i < n; i++) host[i] = (i % 9973) * 0.5 - i / n;
    const a = lx.array(host, [n]);
    expect(a.toFloat32Array()).toEqual(host);
    const doubled = lx.add(a, a).toFloat32Array();
    for (let i = 0; i < n; i += 4099) expect(doubled[i]).toBe(host[i]! * 2);
    expect(doubled[n - 1]).toBe(host[n - 1]! * 2);
    a.dispose();
  });

  test("array from nested numbers, Float32Array, Int32Array and scalars", () => {
    const a = lx.array([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(a.shape).toEqual([2, 3]);
    expect(a.dtype).toBe("float32");
    expect(Array.from(a.toFloat32Array())).toEqual([1, 2, 3, 4, 5, 6]);
    const b = lx.array(new Int32Array([7, -8, 9, 10]), [2, 2]);
    expect(b.dtype).toBe("int32");
    expect(Array.from(b.toTypedArray())).toEqual([7, -8, 9, 10]);
    const s = lx.array(2.5);
    expect(s.shape).toEqual([]);
    expect(s.item()).toBe(2.5);
    const e = lx.array(new Float32Array(0), [0, 3]);
    expect(e.shape).toEqual([0, 3]);
    expect(e.toFloat32Array().length).toBe(0);
    expect(lx.array([[1, 2]], undefined, "int32").dtype).toBe("int32");
  });

  test("zeros, ones, full in both dtypes", () => {
    for (const shape of [[], [1], [3, 5], [2, 0, 4], [17, 33]]) {
      expect(Array.from(lx.zeros(shape).toFloat32Array())).toEqual(new Array(numel(shape)).fill(0));
      expect(Array.from(lx.ones(shape, { dtype: "int32" }).toTypedArray())).toEqual(new Array(numel(shape)).fill(1));
      expect(Array.from(lx.full(shape, -3.25).toFloat32Array())).toEqual(new Array(numel(shape)).fill(-3.25));
    }
    expect(lx.full([2], 7.9, { dtype: "int32" }).toTypedArray()).toEqual(new Int32Array([7, 7]));
  });

  test("arange matches the float64 sequence", () => {
    const cases: [number, number | undefined, number | undefined][] = [
      [10, undefined, undefined],
      [2, 11, 3],
      [5, -5, -1.5],
      [0, 1, 0.1],
      [3, 3, 1],
      [3, 1, 1],
    ];
    for (const [start, stop, step] of cases) {
      const [lo, hi, st] = stop === undefined ? [0, start, 1] : [start, stop, step ?? 1];
      const want: number[] = [];
      for (let i = 0; i < Math.max(0, Math.ceil((hi - lo) / st)); i++) want.push(lo + i * st);
      const got = lx.arange(start, stop, step);
      expect(got.shape).toEqual([want.length]);
      expectClose(got.toFloat32Array(), want, { what: `arange(${start}, ${stop}, ${step})` });
    }
    expect(lx.arange(0, 5, 1, { dtype: "int32" }).toTypedArray()).toEqual(new Int32Array([0, 1, 2, 3, 4]));
  });

  test("random.uniform and random.normal follow the documented Philox4x32-10 stream", () => {
    for (const n of [1, 7, 64, 1001]) {
      const seed = 12345 + n;
      const u = lx.random.uniform([n], { seed, low: -2, high: 3 }).toFloat32Array();
      expectClose(u, referenceRandom("uniform", seed, n, -2, 3), { rtol: 1e-6, atol: 1e-6, what: `uniform n=${n}` });
      const g = lx.random.normal([n], { seed, loc: 1, scale: 2 }).toFloat32Array();
      expectClose(g, referenceRandom("normal", seed, n, 1, 2), { rtol: 1e-5, atol: 1e-5, what: `normal n=${n}` });
    }
  });

  test("random is deterministic across streams and its moments are right", () => {
    using s = lx.newStream();
    const a = lx.random.normal([200, 300], { seed: 99 }).toFloat32Array();
    const b = lx.random.normal([200, 300], { seed: 99, stream: s }).toFloat32Array();
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    let m = 0, v = 0;
    for (const x of a) m += x;
    m /= a.length;
    for (const x of a) v += (x - m) ** 2;
    v /= a.length;
    expect(Math.abs(m)).toBeLessThan(0.02);
    expect(Math.abs(v - 1)).toBeLessThan(0.03);
    const u = lx.random.uniform([100000], { seed: 3 }).toFloat32Array();
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
  });
});

describe("elementwise", () => {
  const binaries: [string, (a: lx.ArrayLike, b: lx.ArrayLike) => lx.LanesArray, (x: number, y: number) => number][] = [
    ["add", lx.add, (x, y) => x + y],
    ["subtract", lx.subtract, (x, y) => x - y],
    ["multiply", lx.multiply, (x, y) => x * y],
    ["divide", lx.divide, (x, y) => x / y],
    ["maximum", lx.maximum, (x, y) => (Number.isNaN(x) || Number.isNaN(y) ? NaN : Math.max(x, y))],
  ];

  for (const [name, op, ref] of binaries) {
    test(`${name} with broadcasting on random shapes`, () => {
      for (let trial = 0; trial < 25; trial++) {
        const sa = randomShape(next, 1 + Math.floor(next() * 4), trial < 20 ? 7 : 70);
        const sb = broadcastPartner(sa);
        const [as, bs] = trial % 2 ? [sa, sb] : [sb, sa];
        const a = randomData(numel(as), next), b = randomData(numel(bs), next, 0.5, 3);
        const got = op(lx.array(a, as), lx.array(b, bs));
        const want = refBinary(ref, a, as, b, bs);
        expect(got.shape).toEqual(want.shape);
        expectClose(got.toFloat32Array(), want.data, { what: `${name} ${as} ${bs}` });
      }
    });
  }

  test("binary ops on scalars, size-1, empty arrays and large odd sizes", () => {
    const a = randomData(1031, next);
    expectClose(lx.add(lx.array(a, [1031]), 1.5).toFloat32Array(), Array.from(a, (x) => x + 1.5), { what: "a+1.5" });
    expectClose(lx.multiply(2, lx.array(a, [1031])).toFloat32Array(), Array.from(a, (x) => 2 * x), { what: "2*a" });
    const e = lx.add(lx.zeros([0, 4]), lx.ones([4]));
    expect(e.shape).toEqual([0, 4]);
    expect(e.toFloat32Array().length).toBe(0);
    const big = randomData(100003, next);
    const bigB = randomData(100003, next);
    expectClose(
      lx.subtract(lx.array(big), lx.array(bigB)).toFloat32Array(),
      Array.from(big, (x, i) => x - bigB[i]!),
      { what: "big subtract" },
    );
  });

  test("strided and broadcast operands over many short rows, split over the pool mid-axis", () => {
    // [3, 700, 5, 4]: 10,500 rows of 4, so the pool's chunks start part-way along every outer axis.
    const [A, B, C] = [3, 700, 5], D = 4;
    const t = randomData(A * B * C * D, next), u = randomData(B * D, next);
    // x[i, j, k, l] = t[l, k, j, i]: a reversed transpose, no axis contiguous.
    const x = lx.transpose(lx.array(t, [D, C, B, A]));
    const logical = new Float64Array(A * B * C * D);
    for (let i = 0; i < A; i++)
      for (let j = 0; j < B; j++)
        for (let k = 0; k < C; k++)
          for (let l = 0; l < D; l++) logical[((i * B + j) * C + k) * D + l] = t[((l * C + k) * B + j) * A + i]!;
    const want = refBinary((p, q) => p - q, logical, [A, B, C, D], u, [B, 1, D]);
    expectClose(lx.subtract(x, lx.array(u, [B, 1, D])).toFloat32Array(), want.data, { what: "strided - broadcast" });
    expectClose(lx.exp(x).toFloat32Array(), Array.from(logical, Math.exp), { what: "exp of strided" });
  });

  test("int32 arithmetic and promotion", () => {
    const a = lx.array(new Int32Array([1, -2, 3, 2147483647]));
    const b = lx.array(new Int32Array([5, 6, -7, 1]));
    const s = lx.add(a, b);
    expect(s.dtype).toBe("int32");
    expect(Array.from(s.toTypedArray())).toEqual([6, 4, -4, -2147483648]); // wraps like int32
    expect(lx.maximum(a, b).toTypedArray()).toEqual(new Int32Array([5, 6, 3, 2147483647]));
    const f = lx.multiply(a, lx.array(new Float32Array([0.5, 0.5, 0.5, 0.5])));
    expect(f.dtype).toBe("float32");
    expectClose(f.toFloat32Array(), [0.5, -1, 1.5, 1073741823.5], { rtol: 1e-7 });
    const d = lx.divide(lx.array(new Int32Array([7])), lx.array(new Int32Array([2])));
    expect(d.dtype).toBe("float32");
    expect(d.item()).toBe(3.5);
    expect(lx.negative(a).toTypedArray()).toEqual(new Int32Array([-1, 2, -3, -2147483647]));
    expect(lx.astype(lx.array([1.9, -1.9, NaN, 1e20]), "int32").toTypedArray()).toEqual(
      new Int32Array([1, -1, 0, 2147483647]),
    );
  });

  test("exp, log, negative against float64, with NaN and Inf", () => {
    for (const n of [1, 7, 16, 33, 4099]) {
      const x = randomData(n, next, -5, 5);
      expectClose(lx.exp(lx.array(x)).toFloat32Array(), Array.from(x, Math.exp), { rtol: 2e-6, what: "exp" });
      const pos = randomData(n, next, 1e-3, 50);
      expectClose(lx.log(lx.array(pos)).toFloat32Array(), Array.from(pos, Math.log), { rtol: 2e-6, atol: 1e-6, what: "log" });
      expectClose(lx.negative(lx.array(x)).toFloat32Array(), Array.from(x, (v) => -v), { rtol: 0, atol: 0, what: "neg" });
    }
    const special = lx.array([NaN, Infinity, -Infinity, 0, -1]);
    expectClose(lx.exp(special).toFloat32Array(), [NaN, Infinity, 0, 1, Math.exp(-1)], { what: "exp special" });
    expectClose(lx.log(special).toFloat32Array(), [NaN, Infinity, NaN, -Infinity, NaN], { what: "log special" });
    expectClose(lx.add(special, 1).toFloat32Array(), [NaN, Infinity, -Infinity, 1, 0], { what: "add special" });
    expectClose(lx.maximum(special, 0).toFloat32Array(), [NaN, Infinity, 0, 0, 0], { what: "maximum special" });
  });
});

describe("matmul", () => {
  test("2-D on odd and vector-width-unfriendly sizes", () => {
    for (const [M, K, N] of [
      [1, 1, 1],
      [3, 5, 7],
      [17, 1, 9],
      [64, 65, 63],
      [1, 300, 1],
      [130, 257, 33],
    ]) {
      const a = randomData(M! * K!, next), b = randomData(K! * N!, next);
      const got = lx.matmul(lx.array(a, [M!, K!]), lx.array(b, [K!, N!]));
      const want = refMatmul(a, [M!, K!], b, [K!, N!]);
      expect(got.shape).toEqual(want.shape);
      expectClose(got.toFloat32Array(), want.data, { rtol: 1e-4, atol: 1e-4 * Math.sqrt(K!), what: `matmul ${M}x${K}x${N}` });
    }
  });

  test("large enough for the packed SIMD path: odd sizes, transposed and strided operands, batches", () => {
    for (const [M, K, N] of [
      [97, 301, 113],
      [260, 64, 300],
      [7, 1030, 70],
    ]) {
      const a = randomData(M! * K!, next), b = randomData(K! * N!, next);
      const want = refMatmul(a, [M!, K!], b, [K!, N!]);
      const tol = { rtol: 1e-4, atol: 1e-4 * Math.sqrt(K!) };
      const A = lx.array(a, [M!, K!]), B = lx.array(b, [K!, N!]);
      expectClose(lx.matmul(A, B).toFloat32Array(), want.data, { ...tol, what: `packed ${M}x${K}x${N}` });
      // The same operands read through transposes of transposed copies (strided, no copy).
      const At = lx.transpose(lx.array(lx.transpose(A).toFloat32Array(), [K!, M!]));
      const Bt = lx.transpose(lx.array(lx.transpose(B).toFloat32Array(), [N!, K!]));
      expectClose(lx.matmul(At, Bt).toFloat32Array(), want.data, { ...tol, what: `packed transposed ${M}x${K}x${N}` });
    }
    const a = randomData(3 * 70 * 90, next), b = randomData(90 * 80, next);
    const got = lx.matmul(lx.array(a, [3, 70, 90]), lx.array(b, [90, 80]));
    expectClose(got.toFloat32Array(), refMatmul(a, [3, 70, 90], b, [90, 80]).data, { rtol: 1e-4, atol: 1e-3, what: "packed batched" });
  });

  test("batched, with broadcast batch dimensions", () => {
    for (const [as, bs] of [
      [
        [4, 3, 5],
        [4, 5, 2],
      ],
      [
        [2, 1, 6, 3],
        [5, 3, 4],
      ],
      [
        [7, 8],
        [3, 8, 2],
      ],
      [
        [1, 2, 3],
        [6, 3, 3],
      ],
    ]) {
      const a = randomData(numel(as!), next), b = randomData(numel(bs!), next);
      const got = lx.matmul(lx.array(a, as!), lx.array(b, bs!));
      const want = refMatmul(a, as!, b, bs!);
      expect(got.shape).toEqual(want.shape);
      expectClose(got.toFloat32Array(), want.data, { rtol: 1e-4, atol: 1e-4, what: `matmul ${as} @ ${bs}` });
    }
  });

  test("empty operands and zero inner dimension", () => {
    expect(lx.matmul(lx.zeros([0, 3]), lx.zeros([3, 4])).shape).toEqual([0, 4]);
    const z = lx.matmul(lx.ones([2, 0]), lx.ones([0, 3]));
    expect(Array.from(z.toFloat32Array())).toEqual([0, 0, 0, 0, 0, 0]);
    const ints = lx.matmul(lx.array(new Int32Array([1, 2, 3, 4]), [2, 2]), lx.array([[1, 0], [0, 1]]));
    expect(Array.from(ints.toFloat32Array())).toEqual([1, 2, 3, 4]);
  });
});

describe("reductions", () => {
  const kinds = [
    ["sum", lx.sum],
    ["max", lx.max],
    ["mean", lx.mean],
  ] as const;
  for (const [kind, op] of kinds) {
    test(`${kind} over one or several axes, keepdims, negative axes`, () => {
      for (let trial = 0; trial < 30; trial++) {
        const nd = 1 + Math.floor(next() * 4);
        const shape = randomShape(next, nd, trial < 25 ? 6 : 40);
        const x = randomData(numel(shape), next);
        const axes: number[] = [];
        for (let d = 0; d < nd; d++) if (next() < 0.5) axes.push(next() < 0.3 ? d - nd : d);
        const useAll = trial % 7 === 0;
        const keepdims = next() < 0.5;
        const got = op(lx.array(x, shape), useAll ? undefined : axes, { keepdims });
        const want = refReduce(kind, x, shape, useAll ? undefined : axes, keepdims);
        expect(got.shape).toEqual(want.shape);
        expectClose(got.toFloat32Array(), want.data, { rtol: 1e-5, atol: 1e-5, what: `${kind} ${shape} axes=${axes}` });
      }
    });
  }

  test("reductions of int32, empty axes and NaN", () => {
    const a = lx.array(new Int32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    expect(lx.sum(a, 1).toTypedArray()).toEqual(new Int32Array([6, 15]));
    expect(lx.max(a, 0).toTypedArray()).toEqual(new Int32Array([4, 5, 6]));
    expect(lx.mean(a).item()).toBe(3.5);
    expect(lx.sum(lx.zeros([3, 0]), 1).toFloat32Array()).toEqual(new Float32Array([0, 0, 0]));
    expect(lx.mean(lx.zeros([0])).item()).toBeNaN();
    expect(lx.max(lx.array([1, NaN, 3])).item()).toBeNaN();
    expect(lx.sum(lx.array([1, Infinity])).item()).toBe(Infinity);
    const big = randomData(300007, next);
    expectClose([lx.sum(lx.array(big)).item()], [big.reduce((s, v) => s + v, 0)], { rtol: 1e-6, atol: 1e-3 });
  });

  test("long rows and wide columns (the vectorized row sum and the blocked column sum), with NaN and Inf", () => {
    // Rows off the 16-lane width, columns across several 256-wide blocks with a ragged last one.
    for (const [shape, axis] of [[[37, 1031], 1], [[37, 1031], 0], [[3, 50, 600], 1], [[2, 4, 5, 300], -3], [[600, 1], 0]] as const) {
      const x = randomData(numel([...shape]), next, -3, 3);
      x[5] = NaN;
      x[x.length - 2] = Infinity;
      for (const [kind, op] of [["sum", lx.sum], ["mean", lx.mean]] as const) {
        const got = op(lx.array(x, [...shape]), axis);
        const want = refReduce(kind, x, shape, [axis], false);
        expect(got.shape).toEqual(want.shape);
        const values = got.toFloat32Array();
        for (let i = 0; i < values.length; i++) {
          if (Number.isNaN(want.data[i])) expect(values[i]).toBeNaN();
          else if (!Number.isFinite(want.data[i]!)) expect(values[i]).toBe(want.data[i]!);
        }
        const finite = (a: ArrayLike<number>) => Array.from(a, (v) => (Number.isFinite(v) ? v : 0));
        expectClose(finite(values), finite(want.data), { rtol: 1e-6, atol: 1e-5, what: `${kind} ${shape} axis ${axis}` });
      }
    }
  });
});

describe("softmax", () => {
  test("over every axis of random shapes", () => {
    for (let trial = 0; trial < 20; trial++) {
      const shape = randomShape(next, 1 + Math.floor(next() * 3), trial < 15 ? 9 : 300);
      const x = randomData(numel(shape), next, -10, 10);
      const axis = Math.floor(next() * shape.length) - (next() < 0.5 ? shape.length : 0);
      const got = lx.softmax(lx.array(x, shape), axis);
      expectClose(got.toFloat32Array(), refSoftmax(x, shape, axis), { rtol: 1e-5, atol: 1e-7, what: `softmax ${shape} ${axis}` });
    }
  });

  test("long float32 rows (the vectorized kernel) next to rows it hands back: NaN, +inf, all -inf", () => {
    const n = 1029, rows = 6;
    const x = randomData(n * rows, next, -30, 30);
    x[1 * n + 7] = NaN;
    x[2 * n + 1000] = Infinity;
    for (let i = 0; i < n; i++) x[3 * n + i] = -Infinity;
    x[4 * n + 3] = -Infinity; // one -inf: an exact zero
    const got = lx.softmax(lx.array(x, [rows, n])).toFloat32Array();
    for (const r of [0, 4, 5]) expectClose(got.subarray(r * n, (r + 1) * n), refSoftmax(x.subarray(r * n, (r + 1) * n), [n], 0), { rtol: 1e-5, atol: 1e-8, what: `row ${r}` });
    expect(got[4 * n + 3]).toBe(0);
    for (const r of [1, 2, 3]) expect(Array.from(got.subarray(r * n, (r + 1) * n)).every(Number.isNaN)).toBe(true);
  });

  test("large logits stay finite; NaN propagates along its row only", () => {
    const got = lx.softmax(lx.array([[1000, 1001, 999], [NaN, 0, 1]])).toFloat32Array();
    expectClose(got.slice(0, 3), refSoftmax([1000, 1001, 999], [3], 0), { rtol: 1e-6 });
    expect(Array.from(got.slice(3)).every(Number.isNaN)).toBe(true);
  });
});
