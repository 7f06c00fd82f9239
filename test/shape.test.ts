// Shape ops against index-arithmetic references in JS; strided views fed to every kind of
// kernel; views cost no kernel; typed errors.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import {
  expectClose,
  numel,
  randomData,
  randomShape,
  refBinary,
  refConcatenate,
  refMatmul,
  refReduce,
  refSlice,
  refSoftmax,
  refTake,
  refTranspose,
  rng,
} from "./support/reference.ts";

const next = rng(9090);
const exact = { rtol: 0, atol: 0 };

function permutation(n: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

function kernelsFor(fn: () => void): number {
  const before = lx.stats().kernelsExecuted;
  fn();
  return lx.stats().kernelsExecuted - before;
}

describe("views", () => {
  test("reshape, including -1, and of a strided view (copied first)", () => {
    const x = randomData(24, next);
    const a = lx.array(x, [2, 3, 4]);
    expectClose(lx.reshape(a, [4, -1]).toFloat32Array(), x, { ...exact, what: "reshape" });
    expect(lx.reshape(a, [4, -1]).shape).toEqual([4, 6]);
    const t = refTranspose(x, [2, 3, 4], [2, 0, 1]);
    const r = lx.reshape(lx.transpose(a, [2, 0, 1]), [4, 6]);
    expectClose(r.toFloat32Array(), t.data, { ...exact, what: "reshape of transpose" });
  });

  test("reshape of a strided view: re-strided without a kernel where strides can express it, copied where not", () => {
    const shape = [4, 6, 10];
    const x = randomData(numel(shape), next);
    const a = lx.array(x, shape);
    lx.eval(a);
    // Values of a view, read in row-major order by index arithmetic.
    const rowMajor = (sh: number[], at: (idx: number[]) => number) => {
      const out: number[] = [];
      const idx = sh.map(() => 0);
      for (let n = 0; n < numel(sh); n++) {
        out.push(at(idx));
        for (let d = sh.length - 1; d >= 0 && ++idx[d]! === sh[d]; d--) idx[d] = 0;
      }
      return out;
    };
    const xi = (i: number, j: number, k: number) => x[(i * 6 + j) * 10 + k]!;
    const cases: [string, lx.LanesArray, number[], number[], boolean][] = [
      // [what, view, its shape's values, new shape, needs a copy]
      ["slice of the last axis, split", lx.slice(a, [0, 0, 2], [4, 6, 8]), rowMajor([4, 6, 6], ([i, j, k]) => xi(i!, j!, k! + 2)), [4, 6, 3, 2], false],
      ["slice of the last axis, leading axes merged", lx.slice(a, [0, 0, 2], [4, 6, 8]), rowMajor([4, 6, 6], ([i, j, k]) => xi(i!, j!, k! + 2)), [24, 6], false],
      ["transpose of the leading axes, the last split", lx.transpose(a, [1, 0, 2]), rowMajor([6, 4, 10], ([j, i, k]) => xi(i!, j!, k!)), [6, 4, 5, 2, 1], false],
      ["slice of the last axis, merged with the one before", lx.slice(a, [0, 0, 2], [4, 6, 8]), rowMajor([4, 6, 6], ([i, j, k]) => xi(i!, j!, k! + 2)), [4, 36], true],
      ["transpose of the last axes, merged", lx.transpose(a, [0, 2, 1]), rowMajor([4, 10, 6], ([i, k, j]) => xi(i!, j!, k!)), [4, 60], true],
    ];
    for (const [what, view, want, to, copies] of cases) {
      const r = lx.reshape(view, to);
      expect(kernelsFor(() => lx.eval(r))).toBe(copies ? 1 : 0);
      expect(r.shape).toEqual(to);
      expectClose(r.toFloat32Array(), want, { ...exact, what });
      expectClose(lx.multiply(r, 2).toFloat32Array(), want.map((v) => 2 * v), { ...exact, what: `${what}, then an op` });
    }
  });

  test("transpose with random permutations", () => {
    for (let trial = 0; trial < 15; trial++) {
      const shape = randomShape(next, 1 + Math.floor(next() * 4), 5);
      const axes = permutation(shape.length);
      const x = randomData(numel(shape), next);
      const want = refTranspose(x, shape, axes);
      const got = lx.transpose(lx.array(x, shape), axes);
      expect(got.shape).toEqual(want.shape);
      expectClose(got.toFloat32Array(), want.data, { ...exact, what: `transpose ${shape} ${axes}` });
    }
    const m = lx.array([[1, 2, 3]]);
    expect(Array.from(lx.transpose(m).toFloat32Array())).toEqual([1, 2, 3]);
    expect(lx.transpose(m).shape).toEqual([3, 1]);
  });

  test("slice with Python rules: negative indices, clamping, negative steps, empty results", () => {
    for (let trial = 0; trial < 25; trial++) {
      const shape = randomShape(next, 1 + Math.floor(next() * 3), 9);
      const k = 1 + Math.floor(next() * shape.length);
      const pick = (d: number) => Math.floor(next() * (2 * shape[d]! + 5)) - shape[d]! - 2;
      const starts = Array.from({ length: k }, (_, d) => pick(d));
      const stops = Array.from({ length: k }, (_, d) => pick(d));
      const steps = Array.from({ length: k }, () => [1, 2, 3, -1, -2][Math.floor(next() * 5)]!);
      const x = randomData(numel(shape), next);
      const want = refSlice(x, shape, starts, stops, steps);
      const got = lx.slice(lx.array(x, shape), starts, stops, steps);
      expect(got.shape).toEqual(want.shape);
      expectClose(got.toFloat32Array(), want.data, { ...exact, what: `slice ${shape} ${starts}:${stops}:${steps}` });
    }
  });

  test("broadcastTo, expandDims, squeeze", () => {
    const x = randomData(3, next);
    const b = lx.broadcastTo(lx.array(x, [3, 1]), [2, 3, 4]);
    expect(b.shape).toEqual([2, 3, 4]);
    expectClose(b.toFloat32Array(), refBinary((u) => u, x, [3, 1], new Float32Array(24), [2, 3, 4]).data, exact);
    const e = lx.expandDims(lx.array(x), [0, -1]);
    expect(e.shape).toEqual([1, 3, 1]);
    expect(lx.squeeze(e).shape).toEqual([3]);
    expect(lx.squeeze(e, 0).shape).toEqual([3, 1]);
    expectClose(lx.squeeze(e).toFloat32Array(), x, exact);
  });

  test("views cost no kernel; matmul reads transposed and sliced operands in place", () => {
    const a = lx.random.normal([64, 48], { seed: 1 }), b = lx.random.normal([64, 32], { seed: 2 });
    lx.eval(a, b);
    const view = lx.slice(lx.transpose(a), [0, 8], [48, 40]);
    expect(kernelsFor(() => lx.eval(view))).toBe(0);
    const y = lx.matmul(lx.transpose(a), b); // [48, 64] @ [64, 32]
    expect(kernelsFor(() => lx.eval(y))).toBe(1); // the matmul alone: no copy of the transpose
    const z = lx.matmul(lx.slice(a, [0, 0], [64, 32]), lx.transpose(lx.slice(b, [0, 0], [32, 32])));
    expect(kernelsFor(() => lx.eval(z))).toBe(1);
    const av = a.toFloat32Array(), bv = b.toFloat32Array();
    expectClose(y.toFloat32Array(), refMatmul(refTranspose(av, [64, 48], [1, 0]).data, [48, 64], bv, [64, 32]).data, {
      rtol: 1e-4,
      atol: 1e-4,
      what: "aT @ b",
    });
    const aLeft = refSlice(av, [64, 48], [0, 0], [64, 32], [1, 1]).data;
    const bt = refTranspose(refSlice(bv, [64, 32], [0, 0], [32, 32], [1, 1]).data, [32, 32], [1, 0]).data;
    expectClose(z.toFloat32Array(), refMatmul(aLeft, [64, 32], bt, [32, 32]).data, {
      rtol: 1e-4,
      atol: 1e-4,
      what: "a[:, :32] @ b[:32, :32]T",
    });
  });

  test("strided views as inputs to elementwise ops, reductions, softmax and astype", () => {
    for (let trial = 0; trial < 10; trial++) {
      const shape = randomShape(next, 3, 6);
      const axes = permutation(3);
      const x = randomData(numel(shape), next);
      const t = refTranspose(x, shape, axes);
      const v = lx.transpose(lx.array(x, shape), axes);
      expectClose(lx.exp(v).toFloat32Array(), t.data.map(Math.exp), { rtol: 2e-6, what: "exp of view" });
      expectClose(lx.add(v, v).toFloat32Array(), t.data.map((u) => 2 * u), { ...exact, what: "add of views" });
      const ax = Math.floor(next() * 3);
      expectClose(lx.sum(v, ax).toFloat32Array(), refReduce("sum", t.data, t.shape, [ax], false).data, { rtol: 1e-5, atol: 1e-5, what: "sum of view" });
      expectClose(lx.sum(v, [0, 2]).toFloat32Array(), refReduce("sum", t.data, t.shape, [0, 2], false).data, { rtol: 1e-5, atol: 1e-5, what: "sum 0,2 of view" });
      expectClose(lx.softmax(v, ax).toFloat32Array(), refSoftmax(t.data, t.shape, ax), { rtol: 1e-5, atol: 1e-7, what: "softmax of view" });
      expectClose(lx.astype(v, "float16").toFloat32Array(), t.data.map(Math.f16round), { ...exact, what: "astype of view" });
      const s = refSlice(t.data, t.shape, [t.shape[0]! - 1], [-100], [-1]);
      expectClose(lx.multiply(lx.slice(v, [-1], [-100], [-1]), 3).toFloat32Array(), s.data.map((u) => Math.fround(u * 3)), {
        ...exact,
        what: "reversed slice of a view",
      });
    }
  });
});

describe("concatenate, stack, take", () => {
  test("concatenate of one to six arrays along random axes, with dtype promotion", () => {
    for (let trial = 0; trial < 12; trial++) {
      const shape = randomShape(next, 1 + Math.floor(next() * 3), 5);
      const axis = Math.floor(next() * shape.length);
      // Past three inputs a node keeps them out of line.
      const parts = Array.from({ length: 1 + (trial % 6) }, () => {
        const s = [...shape];
        s[axis] = Math.floor(next() * 4);
        return { data: randomData(numel(s), next), shape: s };
      });
      const got = lx.concatenate(parts.map((p) => lx.array(p.data, p.shape)), axis - (trial % 2 ? shape.length : 0));
      const want = refConcatenate(parts, axis);
      expect(got.shape).toEqual(want.shape);
      expectClose(got.toFloat32Array(), want.data, exact);
    }
    const mixed = lx.concatenate([lx.array(new Int32Array([1, 2])), lx.array([0.5])]);
    expect(mixed.dtype).toBe("float32");
    expect(Array.from(mixed.toFloat32Array())).toEqual([1, 2, 0.5]);
  });

  test("stack puts a new axis anywhere", () => {
    const xs = [0, 1, 2].map(() => randomData(6, next));
    for (const axis of [0, 1, 2, -1]) {
      const got = lx.stack(xs.map((x) => lx.array(x, [2, 3])), axis);
      const ax = axis < 0 ? 3 + axis : axis;
      const parts = xs.map((x) => {
        const s = [2, 3];
        s.splice(ax, 0, 1);
        return { data: x, shape: s };
      });
      const want = refConcatenate(parts, ax);
      expect(got.shape).toEqual(want.shape);
      expectClose(got.toFloat32Array(), want.data, exact);
    }
  });

  test("take gathers rows (an embedding lookup) and along other axes, negative indices count from the end", () => {
    for (let trial = 0; trial < 12; trial++) {
      const shape = randomShape(next, 1 + Math.floor(next() * 3), 6);
      const axis = Math.floor(next() * shape.length);
      const dim = shape[axis]!;
      const idx = Array.from({ length: 1 + Math.floor(next() * 7) }, () => Math.floor(next() * 2 * dim) - dim);
      const x = randomData(numel(shape), next);
      const want = refTake(x, shape, idx, axis);
      const got = lx.take(lx.array(x, shape), idx, axis);
      expect(got.shape).toEqual(want.shape);
      expectClose(got.toFloat32Array(), want.data, exact);
    }
    const table = lx.random.normal([50, 8], { seed: 3 });
    const tokens = lx.array(new Int32Array([[3, 49], [0, 7]].flat()), [2, 2]);
    const emb = lx.take(table, tokens);
    expect(emb.shape).toEqual([2, 2, 8]);
    const tv = table.toFloat32Array();
    expectClose(emb.toFloat32Array(), [3, 49, 0, 7].flatMap((t) => Array.from(tv.slice(t * 8, t * 8 + 8))), exact);
  });
});

describe("shape errors", () => {
  const a = lx.ones([2, 3]);
  test("each names the op and the shapes", () => {
    expect(() => lx.reshape(a, [4, 2])).toThrow(/reshape: cannot reshape \[2, 3\] \(6 elements\) into \[4, 2\]/);
    expect(() => lx.reshape(a, [-1, -1])).toThrow(lx.ShapeError);
    expect(() => lx.transpose(a, [0, 0])).toThrow(/transpose: repeated axis/);
    expect(() => lx.transpose(a, [0])).toThrow(/transpose: axes \[0\] do not match 2-d array/);
    expect(() => lx.broadcastTo(a, [3, 3])).toThrow(/broadcastTo/);
    expect(() => lx.squeeze(a, 0)).toThrow(/squeeze: axis 0 of \[2, 3\] has size 2, not 1/);
    expect(() => lx.slice(a, [0], [1], [0])).toThrow(/slice: step 0 on axis 0/);
    expect(() => lx.slice(a, [0, 0, 0], [1, 1, 1])).toThrow(lx.ShapeError);
    expect(() => lx.concatenate([a, lx.ones([3, 3])], 1)).toThrow(/concatenate: shapes \[2, 3\] and \[3, 3\] differ outside axis 1/);
    expect(() => lx.stack([a, lx.ones([3, 2])])).toThrow(/stack: shapes/);
    expect(() => lx.take(a, lx.array([0.5]))).toThrow(lx.DTypeError);
  });

  test("take with an index out of range fails at evaluation with a DeviceError naming it; the stream keeps working", () => {
    using s = lx.newStream();
    const bad = lx.take(a, [0, 2], 0, { stream: s });
    expect(() => bad.toFloat32Array()).toThrow(lx.DeviceError);
    expect(() => lx.eval(bad)).toThrow(/index 2 is out of range for axis 0 of size 2/);
    expect(() => lx.eval(lx.add(bad, 1, { stream: s }))).toThrow(lx.DeviceError); // dependents fail too
    expect(Array.from(lx.take(a, [1, -2], 0, { stream: s }).toFloat32Array())).toEqual([1, 1, 1, 1, 1, 1]);
  });
});
