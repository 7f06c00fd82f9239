// The per-row forms that batched decoding needs, against float64 references in JS: rope with a
// position per batch entry, sliceUpdate writing each batch entry at its own offset (in place or
// into a copy, eagerly and inside a compiled plan), and attention over each batch entry's own
// key prefix; bad offsets, lengths, shapes and dtypes are typed errors.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { expectClose, numel, randomData, refAttention, refRope, rng } from "./support/reference.ts";
import { float16Running, ropeAngles, roundTo, tolerance } from "./support/tolerance.ts";

const next = rng(4242);
const floats = ["float32", "float16", "bfloat16"] as const;

// target [N, A, C, R] with update [N, A, U, R] written at offsets[n] along axis 2 of entry n.
function refSliceUpdateRows(target: ArrayLike<number>, [N, A, C, R]: [number, number, number, number], update: ArrayLike<number>, U: number, offsets: number[]) {
  const out = Float64Array.from(target);
  for (let n = 0; n < N; n++)
    for (let a = 0; a < A; a++)
      for (let u = 0; u < U; u++)
        for (let r = 0; r < R; r++) out[((n * A + a) * C + offsets[n]! + u) * R + r] = update[((n * A + a) * U + u) * R + r]!;
  return out;
}

const ints = (values: number[]) => lx.array(Int32Array.from(values), [values.length], "int32");

for (const dtype of floats) {
  const round = roundTo[dtype]!;
  const tol = tolerance[dtype];
  const data = (n: number) => Float32Array.from(randomData(n, next, -2, 2), round);

  describe(`per-row ops in ${dtype}`, () => {
    test("rope with a position per batch entry: both layouts, partial dims, several rows per entry", () => {
      for (const [shape, dims, offsets, traditional] of [
        [[3, 2, 1, 8], 8, [0, 5, 300], true],
        [[2, 3, 4, 16], 12, [7, 1], false],
        [[4, 1, 6], 6, [2, 0, 9, 4000], false],
      ] as [number[], number, number[], boolean][]) {
        const x = data(numel(shape));
        const got = lx.rope(lx.array(x, shape, dtype), dims, { offset: ints(offsets), traditional, base: 10000 });
        expect(got.dtype).toBe(dtype);
        expectClose(got.toFloat32Array(), refRope(x, shape, dims, 10000, offsets, traditional, 1, ropeAngles()), {
          rtol: tol.rtol,
          atol: Math.max(tol.atol, 1e-5),
          what: `rope rows ${shape} offsets ${offsets}`,
        });
      }
    });

    test("attention over each batch entry's own key prefix: one query, several queries (causal), grouped-query", () => {
      const cases: [[number, number, number, number], [number, number], number[], boolean][] = [
        [[3, 4, 1, 8], [2, 9], [1, 9, 5], true],
        [[2, 2, 3, 8], [1, 6], [3, 6], true],
        [[2, 2, 2, 4], [2, 5], [0, 4], false], // an entry with no key gets zeros
      ];
      for (const [[B, H, Lq, D], [Hk, C], lengths, causal] of cases) {
        const q = data(B * H * Lq * D), k = data(B * Hk * C * D), v = data(B * Hk * C * D);
        const y = lx.scaledDotProductAttention(lx.array(q, [B, H, Lq, D], dtype), lx.array(k, [B, Hk, C, D], dtype), lx.array(v, [B, Hk, C, D], dtype), {
          causal,
          keyLength: ints(lengths),
        });
        expect(y.shape).toEqual([B, H, Lq, D]);
        const want = refAttention(q, k, v, { B, H, Lq, D, Hk, Lk: C, Dv: D }, lengths, causal);
        expectClose(y.toFloat32Array(), want, { ...tol, what: `attention rows ${[B, H, Lq, D]} lengths ${lengths}` });
      }
    });

    test("sliceUpdate at an offset per batch entry, into a copy (target kept) and in place (target given up)", () => {
      const shape: [number, number, number, number] = [3, 2, 7, 4], U = 2, offsets = [0, 5, 3];
      const t = data(numel(shape)), u = data(3 * 2 * U * 4);
      const want = refSliceUpdateRows(t, shape, u, U, offsets);
      const target = lx.array(t, shape, dtype);
      const copy = lx.sliceUpdate(target, lx.array(u, [3, 2, U, 4], dtype), ints(offsets), { axis: 2 });
      expectClose(copy.toFloat32Array(), want, { rtol: 0, atol: 0, what: "sliceUpdate rows (copy)" });
      expectClose(target.toFloat32Array(), t, { rtol: 0, atol: 0, what: "the target keeps its values" });
      const owned = lx.array(t, shape, dtype);
      lx.eval(owned);
      const inPlace = lx.sliceUpdate(owned, lx.array(u, [3, 2, U, 4], dtype), ints(offsets), { axis: -2 });
      owned.dispose();
      expectClose(inPlace.toFloat32Array(), want, { rtol: 0, atol: 0, what: "sliceUpdate rows (in place)" });
    });
  });
}

describe("per-row ops in a compiled plan", () => {
  test("a KV-cache step for a batch: each entry written and attended at its own position, cache donated, replayed", () => {
    const [B, H, C, D] = [3, 2, 8, 4];
    const step = lx.compile(
      (cache: lx.LanesArray, kv: lx.LanesArray, q: lx.LanesArray, pos: lx.LanesArray) => {
        const written = lx.sliceUpdate(cache, lx.rope(kv, D, { offset: pos }), pos, { axis: 2 });
        const y = lx.scaledDotProductAttention(lx.rope(q, D, { offset: pos }), written, written, { causal: true, keyLength: lx.add(pos, 1) });
        return [y, written];
      },
      { donate: [0] },
    );
    let cache = lx.zeros([B, H, C, D]);
    let want = new Float64Array(B * H * C * D);
    const positions = [[0, 3, 6], [1, 4, 7], [2, 0, 1]];
    for (const p of positions) {
      const kv = Float32Array.from(randomData(B * H * D, next, -1, 1)), q = Float32Array.from(randomData(B * H * D, next, -1, 1));
      const [y, next_] = step(cache, lx.array(kv, [B, H, 1, D]), lx.array(q, [B, H, 1, D]), ints(p)) as [lx.LanesArray, lx.LanesArray];
      cache = next_;
      want = refSliceUpdateRows(want, [B, H, C, D], refRope(kv, [B, H, 1, D], D, 10000, p, false, 1, ropeAngles()), 1, p);
      const rq = refRope(q, [B, H, 1, D], D, 10000, p, false, 1, ropeAngles());
      expectClose(cache.toFloat32Array(), want, { rtol: 1e-6, atol: 1e-6, what: `cache after positions ${p}` });
      const wantY = refAttention(rq, want, want, { B, H, Lq: 1, D, Hk: H, Lk: C, Dv: D }, p.map((x) => x + 1), true);
      expectClose(y.toFloat32Array(), wantY, { rtol: 1e-5, atol: 1e-5, what: `attention at positions ${p}` });
    }
    step.dispose();
  });
});

describe("attention of float32 queries over a float16 KV cache", () => {
  test("gives float32 from q rounded to float16, with one key length and with one per batch entry", () => {
    const [B, H, Lq, D, Hk, C] = [2, 4, 3, 64, 2, 40];
    const data = (n: number, round: (x: number) => number) => Float32Array.from(randomData(n, next, -2, 2), round);
    const q = data(B * H * Lq * D, Math.fround), k = data(B * Hk * C * D, Math.f16round), v = data(B * Hk * C * D, Math.f16round);
    const K = lx.array(k, [B, Hk, C, D], "float16"), V = lx.array(v, [B, Hk, C, D], "float16");
    for (const lengths of [[33, 33], [9, 40]]) {
      const keyLength = lengths[0] === lengths[1] ? lengths[0]! : ints(lengths);
      const y = lx.scaledDotProductAttention(lx.array(q, [B, H, Lq, D]), K, V, { causal: true, keyLength });
      expect(y.dtype).toBe("float32");
      const rounded = lx.scaledDotProductAttention(lx.array(q.map(Math.f16round), [B, H, Lq, D]), K, V, { causal: true, keyLength });
      expect(Array.from(y.toFloat32Array())).toEqual(Array.from(rounded.toFloat32Array()));
      const want = refAttention(q.map(Math.f16round), k, v, { B, H, Lq, D, Hk, Lk: C, Dv: D }, lengths, true);
      expectClose(y.toFloat32Array(), want, { ...float16Running, what: `lengths ${lengths}` });
    }
  });
});

describe("per-row ops: bad input is a typed error", () => {
  test("shapes and dtypes are checked when the op is built", () => {
    const x = lx.ones([2, 3, 1, 8]);
    expect(() => lx.rope(x, 8, { offset: ints([1, 2, 3]) })).toThrow(/rope: offset must have shape \[2\] \(one per entry of the leading axis\), got \[3\]/);
    expect(() => lx.rope(x, 8, { offset: lx.array(new Float32Array([1, 2]), [2]) })).toThrow(lx.DTypeError);
    expect(() => lx.rope(lx.ones([2, 8]), 8, { offset: ints([0, 1]) })).toThrow(/per-row offsets need \[batch, \.\.\., seq, dim\]/);
    const kv = lx.ones([2, 1, 5, 8]);
    expect(() => lx.scaledDotProductAttention(x, kv, kv, { keyLength: ints([1]) })).toThrow(lx.ShapeError);
    expect(() => lx.scaledDotProductAttention(x, kv, kv, { keyLength: lx.array(new Float32Array([1, 2]), [2]) })).toThrow(/keyLength must be int32/);
    const cache = lx.zeros([2, 1, 5, 8]);
    expect(() => lx.sliceUpdate(cache, lx.ones([2, 1, 1, 8]), ints([0, 1]), { axis: 0 })).toThrow(/write along another axis/);
    expect(() => lx.sliceUpdate(cache, lx.ones([2, 1, 1, 8]), ints([0, 1, 2]), { axis: 2 })).toThrow(/offset must have shape \[2\]/);
    expect(() => lx.sliceUpdate(cache, lx.ones([2, 1, 1, 8]), lx.array(new Float32Array([0, 1]), [2]), { axis: 2 })).toThrow(lx.DTypeError);
    expect(() => lx.sliceUpdate(cache, lx.ones([2, 1, 6, 8]), ints([0, 0]), { axis: 2 })).toThrow(/does not fit target/);
  });

  test("an offset or key length out of range fails the evaluation with a device error naming it; the process goes on", () => {
    const cache = lx.zeros([2, 1, 5, 8]);
    lx.eval(cache); // a failure fails its whole command buffer: keep the cache out of it
    const bad = lx.sliceUpdate(cache, lx.ones([2, 1, 2, 8]), ints([1, 4]), { axis: 2 });
    // (The CPU names the row too; a GPU kernel reports the value.)
    expect(() => lx.eval(bad)).toThrow(/sliceUpdate: offset 4( of row 1)? is out of range \[0, 3\]/);
    const q = lx.ones([2, 1, 1, 8]);
    const y = lx.scaledDotProductAttention(q, cache, cache, { keyLength: ints([2, 6]) });
    expect(() => lx.eval(y)).toThrow(lx.DeviceError);
    expect(() => lx.eval(lx.scaledDotProductAttention(q, cache, cache, { keyLength: ints([-1, 0]) }))).toThrow(/key length -1( of batch entry 0)? is out of range/);
    const fine = lx.sliceUpdate(cache, lx.ones([2, 1, 2, 8]), ints([3, 0]), { axis: 2 });
    expect(lx.sum(fine).item()).toBe(2 * 2 * 8);
  });
});
