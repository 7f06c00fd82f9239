// Scalars are kernel parameters, weakly typed as in MLX: a number takes the array's type when
// that type holds it (any float type; int32 for an integral value), so `multiply(halves, 0.5)`
// stays float16 and `add(ints, 2)` stays int32 (wrapping), while `add(ints, 0.5)`,
// `divide(ints, 2)` and `power(ints, 2)` compute in float32. Every binary op, every dtype and
// both operand orders are checked against float64 references in JS, bitwise against the same op
// with the scalar held in a one-element array of the type it takes, and no array is ever made
// for the scalar.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { expectClose, randomData, rng } from "./support/reference.ts";
import { bf16round, tolerance } from "./support/tolerance.ts";

const next = rng(4242);

type BinaryName = "add" | "subtract" | "multiply" | "divide" | "maximum" | "minimum" | "power" | "equal" | "less" | "greater";
const ops: Record<BinaryName, (a: lx.ArrayLike, b: lx.ArrayLike) => lx.LanesArray> = {
  add: lx.add,
  subtract: lx.subtract,
  multiply: lx.multiply,
  divide: lx.divide,
  maximum: lx.maximum,
  minimum: lx.minimum,
  power: lx.power,
  equal: lx.equal,
  less: lx.less,
  greater: lx.greater,
};
const opNames = Object.keys(ops) as BinaryName[];
const comparisons = new Set<BinaryName>(["equal", "less", "greater"]);
const alwaysFloat = new Set<BinaryName>(["divide", "power"]);
const dtypes: lx.ElementDType[] = ["float32", "float16", "bfloat16", "int32", "bool"];
const isFloat = (d: lx.DType) => d === "float32" || d === "float16" || d === "bfloat16";

// The type an op computes in for (array dtype, scalar), by MLX's weak-typing rule.
function computeType(dtype: lx.ElementDType, op: BinaryName, scalar: number): lx.ElementDType {
  if (isFloat(dtype)) return dtype;
  const integral = Number.isInteger(scalar) && Math.abs(scalar) <= 2147483647;
  return integral && !alwaysFloat.has(op) ? "int32" : "float32";
}

// A value as stored in `dtype` (scalars reach half types through float32, as array data does).
function storeAs(dtype: lx.ElementDType, v: number): number {
  switch (dtype) {
    case "float32":
      return Math.fround(v);
    case "float16":
      return Math.f16round(Math.fround(v));
    case "bfloat16":
      return bf16round(v);
    case "int32":
      return Number.isNaN(v) ? 0 : Math.trunc(v) | 0;
    case "bool":
      return v !== 0 ? 1 : 0;
  }
}

function refOp(op: BinaryName, compute: lx.ElementDType, l: number, r: number): number {
  if (compute === "int32") {
    switch (op) {
      case "add":
        return (l + r) | 0;
      case "subtract":
        return (l - r) | 0;
      case "multiply":
        return Math.imul(l, r);
      case "maximum":
        return Math.max(l, r);
      case "minimum":
        return Math.min(l, r);
      case "equal":
        return +(l === r);
      case "less":
        return +(l < r);
      case "greater":
        return +(l > r);
      default:
        throw new Error(`${op} never computes in int32`);
    }
  }
  switch (op) {
    case "add":
      return l + r;
    case "subtract":
      return l - r;
    case "multiply":
      return l * r;
    case "divide":
      return l / r;
    case "maximum":
      return Number.isNaN(l) || Number.isNaN(r) ? NaN : Math.max(l, r);
    case "minimum":
      return Number.isNaN(l) || Number.isNaN(r) ? NaN : Math.min(l, r);
    case "power":
      return Math.pow(l, r);
    case "equal":
      return +(l === r);
    case "less":
      return +(l < r);
    case "greater":
      return +(l > r);
  }
}

// Test data of a dtype (as stored), containing the scalars themselves so equality is exercised.
function dataFor(dtype: lx.ElementDType, scalars: readonly number[]): number[] {
  if (dtype === "bool") return [0, 1, 1, 0, 1, 0, 0, 1];
  if (dtype === "int32") {
    const small = Array.from({ length: 24 }, () => Math.floor(next() * 21) - 10);
    const large = Array.from({ length: 8 }, () => Math.floor((next() * 2 - 1) * 2147483647));
    return [...small, ...large, 2147483647, -2147483648, 0, ...scalars.filter(Number.isInteger)];
  }
  return [...Array.from(randomData(40, next, -3, 3)), 0, 1, -1, ...scalars].map((v) => storeAs(dtype, v));
}

function makeArray(values: readonly number[], dtype: lx.ElementDType): lx.LanesArray {
  if (dtype === "int32") return lx.array(Int32Array.from(values));
  if (dtype === "bool") return lx.array(Uint8Array.from(values));
  return lx.array(Float32Array.from(values), undefined, dtype);
}

// Values exactly as computed: int32 and bool read in their own type, floats widened to float32.
function read(a: lx.LanesArray): number[] {
  return a.dtype === "int32" || a.dtype === "bool" ? Array.from(a.toTypedArray()) : Array.from(a.toFloat32Array());
}

function bytes(a: lx.LanesArray): Buffer {
  const t = a.toTypedArray();
  return Buffer.from(t.buffer, t.byteOffset, t.byteLength);
}

describe("weak typing", () => {
  test("multiply(float16, 0.5) stays float16 and equals multiplying by a float16 array of 0.5", () => {
    const x = lx.array(randomData(100, next, -100, 100), [10, 10], "float16");
    const y = lx.multiply(x, 0.5);
    expect(y.dtype).toBe("float16");
    const half = lx.array([0.5], [1], "float16");
    expect(bytes(y).equals(bytes(lx.multiply(x, half)))).toBe(true);
    const xv = x.toFloat32Array();
    expect(Array.from(y.toFloat32Array())).toEqual(Array.from(xv, (v) => Math.f16round(v * 0.5)));
  });

  test("bfloat16 stays bfloat16 with a scalar", () => {
    const x = lx.array(randomData(64, next), [64], "bfloat16");
    for (const op of ["add", "multiply", "divide", "power", "maximum"] as const) expect(ops[op](x, 1.25).dtype).toBe("bfloat16");
  });

  test("add(int32, 2) stays int32 and wraps on overflow", () => {
    const x = lx.array(Int32Array.from([1, -5, 2147483646, 2147483647, -2147483648]));
    const y = lx.add(x, 2);
    expect(y.dtype).toBe("int32");
    expect(Array.from(y.toTypedArray())).toEqual([3, -3, -2147483648, -2147483647, -2147483646]);
    const m = lx.multiply(x, 3);
    expect(m.dtype).toBe("int32");
    expect(Array.from(m.toTypedArray())).toEqual([3, -15, Math.imul(2147483646, 3), Math.imul(2147483647, 3), Math.imul(-2147483648, 3)]);
    expect(Array.from(lx.subtract(x, 1).toTypedArray())).toEqual([0, -6, 2147483645, 2147483646, 2147483647]);
  });

  test("add(int32, 0.5) and divide(int32, 2) compute in float32", () => {
    const ints = [1, -5, 7, 16777217, -2147483648];
    const x = lx.array(Int32Array.from(ints));
    const a = lx.add(x, 0.5);
    expect(a.dtype).toBe("float32");
    expect(Array.from(a.toFloat32Array())).toEqual(ints.map((v) => Math.fround(Math.fround(v) + 0.5)));
    const d = lx.divide(x, 2);
    expect(d.dtype).toBe("float32");
    expect(Array.from(d.toFloat32Array())).toEqual(ints.map((v) => Math.fround(Math.fround(v) / 2)));
    const p = lx.power(x, 2);
    expect(p.dtype).toBe("float32");
    expect(Array.from(p.toFloat32Array())).toEqual(ints.map((v) => Math.fround(Math.fround(v) ** 2)));
    // An integral value beyond int32's range cannot stay int32 either.
    expect(lx.add(x, 3e9).dtype).toBe("float32");
  });

  test("bool arrays: integral scalars count in int32, others in float32", () => {
    const m = lx.array(new Uint8Array([0, 1, 1, 0]));
    const i = lx.add(m, 2);
    expect(i.dtype).toBe("int32");
    expect(Array.from(i.toTypedArray())).toEqual([2, 3, 3, 2]);
    const f = lx.multiply(m, 0.25);
    expect(f.dtype).toBe("float32");
    expect(Array.from(f.toFloat32Array())).toEqual([0, 0.25, 0.25, 0]);
  });

  test("comparisons with scalars give bool", () => {
    const f = lx.array([-1, 0.5, 2, NaN]);
    expect(lx.less(f, 0.5).dtype).toBe("bool");
    expect(Array.from(lx.less(f, 0.5).toTypedArray())).toEqual([1, 0, 0, 0]);
    expect(Array.from(lx.equal(f, 0.5).toTypedArray())).toEqual([0, 1, 0, 0]);
    expect(Array.from(lx.greater(f, 0.5).toTypedArray())).toEqual([0, 0, 1, 0]);
    const i = lx.array(Int32Array.from([0, 1, 2, 3]));
    expect(Array.from(lx.greater(i, 1.5).toTypedArray())).toEqual([0, 0, 1, 1]);
    expect(Array.from(lx.equal(i, 2).toTypedArray())).toEqual([0, 0, 1, 0]);
    const h = lx.array([0.1, 0.2, 0.3], undefined, "float16");
    // 0.1 as a float16 scalar equals the float16 element 0.1.
    expect(Array.from(lx.equal(h, 0.1).toTypedArray())).toEqual([1, 0, 0]);
  });

  test("scalar on the left: subtract(1, x), divide(1, x), power(2, x), less(0, x)", () => {
    const xs = [-2, -0.5, 0.25, 1, 3];
    const x = lx.array(xs);
    expect(Array.from(lx.subtract(1, x).toFloat32Array())).toEqual(xs.map((v) => Math.fround(1 - v)));
    expect(Array.from(lx.divide(1, x).toFloat32Array())).toEqual(xs.map((v) => Math.fround(1 / v)));
    expectClose(lx.power(2, x).toFloat32Array(), xs.map((v) => 2 ** v), { ...tolerance.float32, what: "power(2, x)" });
    expect(Array.from(lx.less(0, x).toTypedArray())).toEqual(xs.map((v) => +(0 < v)));
    expect(Array.from(lx.maximum(0, x).toFloat32Array())).toEqual(xs.map((v) => Math.max(0, v)));
    const i = lx.array(Int32Array.from([1, 2, 3]));
    const left = lx.subtract(10, i);
    expect(left.dtype).toBe("int32");
    expect(Array.from(left.toTypedArray())).toEqual([9, 8, 7]);
    const inv = lx.divide(1, i);
    expect(inv.dtype).toBe("float32");
    expect(Array.from(inv.toFloat32Array())).toEqual([1, 0.5, Math.fround(1 / 3)]);
  });

  test("NaN and infinite scalars", () => {
    const xs = [-2, 0, 0.5, 3];
    const x = lx.array(xs);
    const nan = (a: lx.LanesArray) => Array.from(a.toFloat32Array()).every(Number.isNaN);
    expect(nan(lx.add(x, NaN))).toBe(true);
    expect(nan(lx.maximum(x, NaN))).toBe(true);
    expect(nan(lx.minimum(NaN, x))).toBe(true);
    expect(Array.from(lx.equal(x, NaN).toTypedArray())).toEqual([0, 0, 0, 0]);
    expect(Array.from(lx.less(x, NaN).toTypedArray())).toEqual([0, 0, 0, 0]);
    expect(Array.from(lx.add(x, Infinity).toFloat32Array())).toEqual([Infinity, Infinity, Infinity, Infinity]);
    expect(Array.from(lx.multiply(x, -Infinity).toFloat32Array())).toEqual([Infinity, NaN, -Infinity, -Infinity]);
    expect(Array.from(lx.minimum(x, -Infinity).toFloat32Array())).toEqual([-Infinity, -Infinity, -Infinity, -Infinity]);
    expect(Array.from(lx.less(x, Infinity).toTypedArray())).toEqual([1, 1, 1, 1]);
    expect(Array.from(lx.greater(-Infinity, x).toTypedArray())).toEqual([0, 0, 0, 0]);
    const q = Array.from(lx.divide(x, Infinity).toFloat32Array());
    expect(q.map((v) => Object.is(v, -0))).toEqual([true, false, false, false]);
    expect(Array.from(lx.subtract(Infinity, x).toFloat32Array())).toEqual([Infinity, Infinity, Infinity, Infinity]);
    // int32 with a non-finite scalar computes in float32.
    const i = lx.array(Int32Array.from([1, -1]));
    expect(lx.add(i, NaN).dtype).toBe("float32");
    expect(Array.from(lx.add(i, Infinity).toFloat32Array())).toEqual([Infinity, Infinity]);
    expect(Array.from(lx.equal(i, NaN).toTypedArray())).toEqual([0, 0]);
    // A scalar beyond float16's range is infinite in float16, as an element would be.
    const h = lx.array([1, -2], undefined, "float16");
    const big = lx.multiply(h, 70000);
    expect(big.dtype).toBe("float16");
    expect(Array.from(big.toFloat32Array())).toEqual([Infinity, -Infinity]);
  });
});

describe("every binary op x every dtype x both sides, against float64", () => {
  const scalars = [3, -2, 1, 0.75, -1.5, 0.1];
  for (const dtype of dtypes) {
    test(`${dtype}`, () => {
      const values = dataFor(dtype, scalars);
      const x = makeArray(values, dtype);
      for (const op of opNames)
        for (const s of scalars)
          for (const scalarFirst of [false, true]) {
            const what = `${scalarFirst ? `${op}(${s}, ${dtype})` : `${op}(${dtype}, ${s})`}`;
            const got = scalarFirst ? ops[op](s, x) : ops[op](x, s);
            const compute = computeType(dtype, op, s);
            expect(got.dtype, what).toBe(comparisons.has(op) ? "bool" : compute);
            const sc = storeAs(compute, s);
            const want = values.map((v) => {
              const xv = storeAs(compute, v);
              return scalarFirst ? refOp(op, compute, sc, xv) : refOp(op, compute, xv, sc);
            });
            const tol = comparisons.has(op) ? tolerance.bool : tolerance[compute];
            expectClose(read(got), want, { ...tol, what });
            // The same as the op with the scalar in a one-element array of the type it takes.
            const held = makeArray([s], compute);
            const same = compute === dtype ? x : lx.astype(x, compute);
            const viaArray = scalarFirst ? ops[op](held, same) : ops[op](same, held);
            if (!bytes(got).equals(bytes(viaArray))) throw new Error(`${what}: differs from the one-element ${compute} array`);
            got.dispose();
            viaArray.dispose();
            held.dispose();
            if (same !== x) same.dispose();
          }
      x.dispose();
    });
  }
});

describe("no array is made for a scalar", () => {
  test("liveArrays grows by exactly one per op with a scalar operand", () => {
    const f = lx.array(randomData(256, next), [16, 16]);
    const h = lx.astype(f, "float16");
    const i = lx.array(Int32Array.from({ length: 64 }, (_, k) => k - 32));
    const made: lx.LanesArray[] = [];
    const cases: [string, () => lx.LanesArray][] = [
      ["multiply(float32, 0.5)", () => lx.multiply(f, 0.5)],
      ["subtract(1, float32)", () => lx.subtract(1, f)],
      ["power(2, float16)", () => lx.power(2, h)],
      ["add(int32, 2)", () => lx.add(i, 2)],
      ["add(int32, 0.5)", () => lx.add(i, 0.5)],
      ["divide(int32, 2)", () => lx.divide(i, 2)],
      ["less(float16, 0.25)", () => lx.less(h, 0.25)],
      ["maximum(NaN, float32)", () => lx.maximum(NaN, f)],
    ];
    for (const [what, run] of cases) {
      const before = lx.stats().liveArrays;
      const y = run();
      expect(lx.stats().liveArrays - before, what).toBe(1);
      lx.eval(y);
      expect(lx.stats().liveArrays - before, `${what} after eval`).toBe(1);
      made.push(y);
    }
    // For comparison: the same op with an array operand holds two handles.
    const before = lx.stats().liveArrays;
    const held = lx.array([0.5]);
    const y = lx.multiply(f, held);
    expect(lx.stats().liveArrays - before).toBe(2);
    for (const a of [...made, y, held, f, h, i]) a.dispose();
  });
});
