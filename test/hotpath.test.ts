// The hot-path pieces: sliceUpdate (copy and in place) against a JS reference, attention over a
// key prefix (keyLength) and rope offsets against float64, tidy scopes, evalAsync under load and
// at exit, eager validation of the integer parameters, and the concurrency scenarios under
// LANES_LOCKING=global.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { expectClose, numel, randomData, refAttention, refRope, rng, strides } from "./support/reference.ts";
import { ropeAngles, roundTo, tolerance } from "./support/tolerance.ts";

const next = rng(6502);
const root = join(import.meta.dir, "..");
type Arr = lx.LanesArray;

function bytes(a: Arr): Buffer {
  const t = a.toTypedArray();
  return Buffer.from(t.buffer, t.byteOffset, t.byteLength);
}

// target with update written at offset along axis, in plain index arithmetic.
function refSliceUpdate(target: ArrayLike<number>, shape: number[], update: ArrayLike<number>, ushape: number[], axis: number, offset: number): number[] {
  const out = Array.from(target);
  const ts = strides(shape), us = strides(ushape);
  for (let i = 0; i < numel(ushape); i++) {
    let t = 0;
    for (let d = 0; d < ushape.length; d++) {
      const idx = Math.floor(i / us[d]!) % ushape[d]!;
      t += (d === axis ? idx + offset : idx) * ts[d]!;
    }
    out[t] = update[i]!;
  }
  return out;
}

describe("sliceUpdate", () => {
  test("values along every axis, every offset, against a JS reference", () => {
    const shape = [3, 4, 5];
    const t = randomData(60, next);
    const T = lx.array(t, shape);
    for (let axis = 0; axis < 3; axis++)
      for (let len = 0; len <= shape[axis]!; len++)
        for (let offset = 0; offset + len <= shape[axis]!; offset++) {
          const ushape = shape.map((d, i) => (i === axis ? len : d));
          const u = randomData(numel(ushape), next);
          const y = lx.sliceUpdate(T, lx.array(u, ushape), offset, { axis: axis === 2 ? -1 : axis });
          expect(y.shape).toEqual(shape);
          const want = refSliceUpdate(t, shape, u, ushape, axis, offset);
          expect(Array.from(y.toFloat32Array()), `axis ${axis} len ${len} offset ${offset}`).toEqual(Array.from(Float32Array.from(want)));
          y.dispose();
        }
    expect(Array.from(T.toFloat32Array())).toEqual(Array.from(t)); // the target never changed
  });

  test("other dtypes; the update is converted to the target's dtype", () => {
    for (const dtype of ["float16", "bfloat16", "int32", "bool"] as const) {
      const round = roundTo[dtype as "float16"] ?? ((v: number) => (dtype === "int32" ? Math.trunc(v) : v !== 0 ? 1 : 0));
      const t = randomData(24, next, -50, 50), u = randomData(8, next, -50, 50);
      const y = lx.sliceUpdate(lx.astype(lx.array(t, [6, 4]), dtype), lx.array(u, [2, 4]), 3);
      expect(y.dtype).toBe(dtype);
      const want = refSliceUpdate(Array.from(t, round), [6, 4], Array.from(u, round), [2, 4], 0, 3);
      expect(Array.from(y.toFloat32Array())).toEqual(Array.from(Float32Array.from(want)));
    }
  });

  test("bad offsets, axes and shapes are a ShapeError", () => {
    const T = lx.zeros([4, 6]);
    expect(() => lx.sliceUpdate(T, lx.ones([2, 6]), 3)).toThrow(lx.ShapeError);
    expect(() => lx.sliceUpdate(T, lx.ones([2, 6]), 3)).toThrow(/offset 3 is out of range \[0, 2\]/);
    expect(() => lx.sliceUpdate(T, lx.ones([2, 6]), -1)).toThrow(lx.ShapeError);
    expect(() => lx.sliceUpdate(T, lx.ones([4, 2]), 5, { axis: 1 })).toThrow(lx.ShapeError);
    expect(() => lx.sliceUpdate(T, lx.ones([5, 6]), 0)).toThrow(/does not fit/);
    expect(() => lx.sliceUpdate(T, lx.ones([2, 5]), 0)).toThrow(lx.ShapeError);
    expect(() => lx.sliceUpdate(T, lx.ones([2]), 0)).toThrow(lx.ShapeError);
    expect(() => lx.sliceUpdate(T, lx.ones([2, 6]), 0, { axis: 2 })).toThrow(lx.ShapeError);
    expect(() => lx.sliceUpdate(lx.ones([]), lx.ones([]), 0)).toThrow(lx.ShapeError);
    expect(lx.sliceUpdate(T, lx.ones([2, 6]), 2).shape).toEqual([4, 6]); // and the process goes on
  });

  test("a target still referenced keeps its values (the update is written into a copy)", () => {
    const x = lx.array(randomData(20, next), [5, 4]);
    const t = lx.exp(x); // unevaluated
    const u1 = lx.ones([1, 4]), u2 = lx.full([2, 4], 7);
    const y1 = lx.sliceUpdate(t, u1, 0), y2 = lx.sliceUpdate(t, u2, 3);
    const tv = Array.from(x.toFloat32Array(), (v) => Math.fround(Math.exp(v)));
    const ev = Array.from(t.toFloat32Array());
    expectClose(ev, tv, tolerance.float32);
    expect(Array.from(y1.toFloat32Array())).toEqual(refSliceUpdate(ev, [5, 4], [1, 1, 1, 1], [1, 4], 0, 0));
    expect(Array.from(y2.toFloat32Array())).toEqual(refSliceUpdate(ev, [5, 4], Array(8).fill(7), [2, 4], 0, 3));
    expect(Array.from(t.toFloat32Array())).toEqual(ev);
    // Disposed, but another array was built from it: still a copy.
    const s = lx.array(randomData(20, next), [5, 4]);
    const sv = Array.from(s.toFloat32Array());
    const view = lx.reshape(s, [20]);
    const y3 = lx.sliceUpdate(s, u1, 4);
    s.dispose();
    expect(Array.from(y3.toFloat32Array())).toEqual(refSliceUpdate(sv, [5, 4], [1, 1, 1, 1], [1, 4], 0, 4));
    expect(Array.from(view.toFloat32Array())).toEqual(sv);
  });

  test("a target disposed before evaluation is updated in place, with the same values", () => {
    const shape = [8, 64, 128], targetBytes = 8 * 64 * 128 * 4;
    const data = randomData(numel(shape), next);
    const u = randomData(8 * 3 * 128, next);
    const U = lx.array(u, [8, 3, 128]);
    const want = refSliceUpdate(data, shape, u, [8, 3, 128], 1, 40);
    for (const inPlace of [true, false]) {
      const t = lx.array(data, shape);
      lx.eval(t);
      const y = lx.sliceUpdate(t, U, 40, { axis: 1 });
      if (inPlace) t.dispose();
      const before = lx.stats().activeBytes;
      lx.resetPeakMemory();
      lx.eval(y);
      const growth = lx.stats().peakBytes - before;
      if (inPlace) expect(growth).toBeLessThan(targetBytes / 2);
      else expect(growth).toBeGreaterThanOrEqual(targetBytes);
      expect(Array.from(y.toFloat32Array())).toEqual(Array.from(Float32Array.from(want)));
      if (!inPlace) expect(Array.from(t.toFloat32Array())).toEqual(Array.from(data));
      y.dispose();
      t.dispose();
    }
  });

  test("an eager KV-cache loop that disposes the previous cache fills it row by row", () => {
    let cache = lx.zeros([2, 6, 3]);
    const ref = new Array<number>(36).fill(0);
    for (let pos = 0; pos < 6; pos++) {
      const u = randomData(6, next);
      const nextCache = lx.sliceUpdate(cache, lx.array(u, [2, 1, 3]), pos, { axis: 1 });
      cache.dispose();
      cache = nextCache;
      for (let b = 0; b < 2; b++) for (let d = 0; d < 3; d++) ref[b * 18 + pos * 3 + d] = u[b * 3 + d]!;
      expect(Array.from(cache.toFloat32Array())).toEqual(Array.from(Float32Array.from(ref)));
    }
  });
});

describe("attention over a key prefix, rope offsets", () => {
  for (const dtype of ["float32", "float16"] as const) {
    test(`scaledDotProductAttention with keyLength (${dtype})`, () => {
      const round = roundTo[dtype]!;
      const data = (n: number) => Float32Array.from(randomData(n, next), round);
      const cases: [number[], number, number, number, number, boolean][] = [
        // [B, H, Lq, D], Hk, Lk (cache length), Dv, keyLength, causal
        [[1, 2, 1, 8], 2, 10, 8, 4, true], // one new token against a 10-slot cache with 4 filled
        [[2, 4, 3, 8], 2, 9, 6, 7, true], // grouped-query, 3 new tokens
        [[1, 2, 3, 8], 1, 8, 8, 8, false], // keyLength = every key
        [[1, 1, 4, 4], 1, 6, 4, 2, true], // queries 0 and 1 see no key: zeros
        [[1, 2, 2, 4], 2, 5, 4, 0, false], // no key at all: zeros
        [[1, 1, 2, 16], 1, 12, 16, 1, false],
      ];
      for (const [qs, Hk, Lk, Dv, keyLength, causal] of cases) {
        const [B, H, Lq, D] = qs as [number, number, number, number];
        const q = data(B * H * Lq * D), k = data(B * Hk * Lk * D), v = data(B * Hk * Lk * Dv);
        const y = lx.scaledDotProductAttention(lx.array(q, qs, dtype), lx.array(k, [B, Hk, Lk, D], dtype), lx.array(v, [B, Hk, Lk, Dv], dtype), { causal, keyLength });
        expect(y.shape).toEqual([B, H, Lq, Dv]);
        expect(y.dtype).toBe(dtype);
        const want = refAttention(q, k, v, { B, H, Lq, D, Hk, Lk, Dv }, keyLength, causal);
        expectClose(y.toFloat32Array(), want, { ...tolerance[dtype], what: `attention ${qs} kv ${Hk}x${Lk} keyLength ${keyLength} causal ${causal}` });
      }
      const q = lx.ones([1, 1, 1, 4]), k = lx.ones([1, 1, 3, 4]);
      expect(() => lx.scaledDotProductAttention(q, k, k, { keyLength: 4 })).toThrow(lx.ShapeError);
      expect(() => lx.scaledDotProductAttention(q, k, k, { keyLength: 4 })).toThrow(/key length 4 exceeds the 3 keys/);
    });
  }

  test("rope with offsets, both layouts, against float64", () => {
    for (const [shape, dims, offset, traditional] of [
      [[1, 2, 3, 8], 8, 0, false],
      [[1, 2, 3, 8], 8, 1, true],
      [[2, 1, 16], 16, 13, false],
      [[1, 4, 32], 16, 4096, false],
      [[3, 1, 8], 4, 511, true],
    ] as [number[], number, number, boolean][]) {
      const x = randomData(numel(shape), next);
      const got = lx.rope(lx.array(x, shape), dims, { offset, traditional });
      expectClose(got.toFloat32Array(), refRope(x, shape, dims, 10000, offset, traditional, 1, ropeAngles()), {
        rtol: 1e-5,
        atol: 2e-5,
        what: `rope ${shape} dims ${dims} offset ${offset}`,
      });
    }
  });

  test("integer parameters are validated eagerly as a compiled plan validates them", () => {
    // A compiled plan refuses a non-integral sliceUpdate offset or key length (ShapeError); the
    // eager ops take the same numbers and must not silently truncate them.
    expect(() => lx.sliceUpdate(lx.zeros([4]), lx.ones([1]), 1.5)).toThrow(lx.ShapeError);
    expect(() => lx.sliceUpdate(lx.zeros([4]), lx.ones([1]), NaN)).toThrow(lx.ShapeError);
    const q = lx.ones([1, 1, 1, 4]), k = lx.random.normal([1, 1, 3, 4], { seed: 3 });
    expect(() => lx.scaledDotProductAttention(q, k, k, { keyLength: 1.5 })).toThrow(lx.ShapeError);
    // rope: a fractional offset either works the same eagerly and compiled, or neither accepts it.
    const x = lx.random.normal([1, 2, 4], { seed: 4 });
    const compiled = lx.compile((a: Arr, p: number) => lx.rope(a, 4, { offset: p }), { scalars: [1] });
    const outcome = (fn: () => Arr) => {
      try {
        return bytes(fn()).toString("hex");
      } catch (e) {
        return (e as Error).name;
      }
    };
    for (const offset of [2.5, NaN]) expect(outcome(() => lx.rope(x, 4, { offset })), `offset ${offset}`).toBe(outcome(() => compiled(x, offset) as Arr));
    compiled.dispose();
  });
});

describe("tidy", () => {
  test("arrays made inside and not returned are disposed; returned ones survive and compute", () => {
    const x = lx.array([1, 2, 3]);
    const before = lx.stats().liveArrays;
    let inner: Arr[] = [];
    const y = lx.tidy(() => {
      const a = lx.add(x, 1), b = lx.exp(a), c = lx.multiply(b, 2);
      inner = [a, b];
      return c;
    });
    expect(inner.every((a) => a.disposed)).toBe(true);
    expect(y.disposed).toBe(false);
    expect(x.disposed).toBe(false);
    expect(lx.stats().liveArrays).toBe(before + 1);
    // The intermediates went before evaluation; the result still computes from them.
    expectClose(y.toFloat32Array(), [2, 3, 4].map((v) => Math.exp(v) * 2), { ...tolerance.float32, what: "tidy result" });
    y.dispose();
    expect(lx.stats().liveArrays).toBe(before);
  });

  test("arrays returned inside arrays and objects survive; other values pass through", () => {
    const before = lx.stats().liveArrays;
    let dropped: Arr | undefined;
    const out = lx.tidy(() => {
      dropped = lx.ones([2]);
      return { list: [lx.full([2], 3), { deep: lx.full([2], 4) }], n: 5, s: "x", none: null };
    });
    expect(dropped!.disposed).toBe(true);
    const deep = (out.list[1] as { deep: Arr }).deep, three = out.list[0] as Arr;
    expect(Array.from(three.toFloat32Array())).toEqual([3, 3]);
    expect(Array.from(deep.toFloat32Array())).toEqual([4, 4]);
    expect([out.n, out.s, out.none]).toEqual([5, "x", null]);
    expect(lx.stats().liveArrays).toBe(before + 2);
    three.dispose();
    deep.dispose();
    expect(lx.tidy(() => 42)).toBe(42);
    expect(lx.stats().liveArrays).toBe(before);
  });

  test("nested scopes: an inner result belongs to the outer scope", () => {
    const before = lx.stats().liveArrays;
    let fromInner: Arr | undefined, innerTemp: Arr | undefined, kept: Arr | undefined;
    const result = lx.tidy(() => {
      fromInner = lx.tidy(() => {
        innerTemp = lx.ones([3]);
        kept = lx.full([3], 2);
        return [kept, lx.add(innerTemp, kept)];
      })[1]!;
      expect(innerTemp!.disposed).toBe(true);
      expect(kept!.disposed).toBe(false); // returned by the inner scope, not yet by the outer
      return lx.multiply(fromInner, 10);
    });
    expect(kept!.disposed).toBe(true); // the outer scope did not return it
    expect(fromInner!.disposed).toBe(true);
    expect(Array.from(result.toFloat32Array())).toEqual([30, 30, 30]);
    result.dispose();
    expect(lx.stats().liveArrays).toBe(before);
  });

  test("a throwing function disposes everything it made, and the error propagates", () => {
    const x = lx.array([1, 2]);
    const before = lx.stats().liveArrays;
    const made: Arr[] = [];
    expect(() =>
      lx.tidy(() => {
        made.push(lx.exp(x), lx.negative(x));
        lx.tidy(() => made.push(lx.add(x, 1)));
        lx.add(x, lx.ones([3])); // shapes do not broadcast
      }),
    ).toThrow(lx.ShapeError);
    expect(made.length).toBe(3);
    expect(made.every((a) => a.disposed)).toBe(true);
    expect(x.disposed).toBe(false);
    expect(lx.stats().liveArrays).toBe(before);
    expect(() => lx.tidy(() => { lx.ones([4]); throw new Error("boom"); })).toThrow("boom");
    expect(lx.stats().liveArrays).toBe(before);
  });
});

describe("evalAsync", () => {
  test("many concurrent evalAsync calls on several streams all resolve with correct values", async () => {
    const streams = [0, 1, 2, 3].map(() => lx.newStream());
    const jobs = Array.from({ length: 64 }, (_, i) => {
      const stream = streams[i % 4]!;
      const data = randomData(256, next);
      const y = lx.sum(lx.multiply(lx.array(data, [16, 16]), i + 1, { stream }), 1, { stream });
      const want = Array.from({ length: 16 }, (_, r) => data.slice(r * 16, r * 16 + 16).reduce((s, v) => s + Math.fround(v * (i + 1)), 0));
      return { y, want };
    });
    await Promise.all(jobs.map((j) => lx.evalAsync(j.y)));
    for (const { y, want } of jobs) expectClose(y.toFloat32Array(), want, { rtol: 1e-5, atol: 1e-4 });
    // Several arrays in one call, across streams.
    await lx.evalAsync(...jobs.slice(0, 8).map((j) => lx.exp(j.y)));
    for (const s of streams) s.dispose();
  });

  test("arrays already computed, or made from data, resolve", async () => {
    const a = lx.array([1, 2, 3]);
    await lx.evalAsync(a);
    const b = lx.add(a, 1);
    lx.eval(b);
    await lx.evalAsync(b);
    await lx.evalAsync(b, a);
    await lx.evalAsync();
    expect(Array.from(b.toFloat32Array())).toEqual([2, 3, 4]);
  });

  test("failures reject with the typed error", async () => {
    const bad = lx.take(lx.ones([4]), [7]);
    let caught: unknown;
    try {
      await lx.evalAsync(bad);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(lx.DeviceError);
    expect((caught as Error).message).toMatch(/index 7 is out of range/);
    // One failing array among good ones (on another stream) rejects the whole call; the good
    // ones still compute.
    using other = lx.newStream();
    const good = lx.exp(lx.ones([2], { stream: other }), { stream: other });
    await expect(lx.evalAsync(good, lx.take(lx.ones([4]), [-9]))).rejects.toThrow(lx.DeviceError);
    expect(Array.from(good.toFloat32Array())).toEqual([Math.fround(Math.E), Math.fround(Math.E)]);
    // A disposed array: the returned promise rejects (it does not throw synchronously).
    const gone = lx.ones([2]);
    gone.dispose();
    let promise: Promise<void> | undefined, thrown: unknown;
    try {
      promise = lx.evalAsync(gone);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeUndefined();
    await expect(promise!).rejects.toThrow(lx.DisposedError);
  });

  test("a process that awaits evalAsync exits on its own within a few seconds", () => {
    const started = performance.now();
    const proc = Bun.spawnSync([process.execPath, join(import.meta.dir, "support", "await-exit.ts")], { env: process.env, timeout: 20_000 });
    const seconds = (performance.now() - started) / 1000;
    expect(proc.signalCode ?? null).toBeNull();
    expect(proc.exitCode).toBe(0);
    expect(JSON.parse(proc.stdout.toString().trim())).toEqual({ done: true, rejected: "DeviceError", finite: true });
    expect(seconds).toBeLessThan(10);
  }, 30_000);
});

describe("LANES_LOCKING=global (child processes)", () => {
  const run = (args: string[]) => {
    const proc = Bun.spawnSync([process.execPath, "test", ...args], { cwd: root, env: { ...process.env, LANES_LOCKING: "global" }, timeout: 120_000 });
    const out = proc.stdout.toString() + proc.stderr.toString();
    return { code: proc.exitCode, out, pass: Number(/(\d+) pass/.exec(out)?.[1] ?? 0), fail: Number(/(\d+) fail/.exec(out)?.[1] ?? -1) };
  };

  test("the concurrency scenarios still match a serial run bit for bit", () => {
    const r = run(["test/concurrency.test.ts"]);
    expect(r.fail, r.out).toBe(0);
    expect(r.pass).toBeGreaterThanOrEqual(9);
    expect(r.code).toBe(0);
  }, 120_000);

  test("8 Workers replaying one compiled plan still match a serial run bit for bit", () => {
    const r = run(["test/compile.test.ts", "-t", "8 Workers replay one plan"]);
    expect(r.fail, r.out).toBe(0);
    expect(r.pass).toBe(1);
    expect(r.code).toBe(0);
  }, 120_000);
});

describe("memory pressure across streams (child processes, per-stream and global locking)", () => {
  for (const locking of ["per-stream", "global"]) {
    test(`${locking}: allocations over the limit wait for the other stream's completions instead of failing`, () => {
      const env = { ...process.env, LANES_LOCKING: locking === "global" ? "global" : "" };
      const proc = Bun.spawnSync([process.execPath, join(root, "test", "support", "memory-pressure.ts")], { cwd: root, env, timeout: 120_000 });
      const out = proc.stdout.toString();
      expect(proc.exitCode, out + proc.stderr.toString()).toBe(0);
      const { pressured, free } = JSON.parse(out.trim().split("\n").at(-1)!) as { pressured: number[]; free: number[] };
      expect(pressured.length).toBe(24);
      // The sum of exp over 2^20 uniform draws is close to 2^20 (e - 1); both runs draw the same numbers.
      for (const s of pressured) expect(Math.abs(s / (1 << 20) - (Math.E - 1))).toBeLessThan(0.01);
      expect(pressured.toSorted()).toEqual(free.toSorted());
    }, 120_000);
  }
});
