// The CPU rope keeps the cos/sin table of its last call for the next one (the q and k of every
// layer share positions): calls that differ in any of offset, per-row offsets, base, scale, dims
// or sequence length, one after another, each agree with the reference.
import { describe, test } from "bun:test";
import * as lx from "../src/index.ts";
import { expectClose, randomData, refRope, rng } from "./support/reference.ts";
import { ropeAngles } from "./support/tolerance.ts";

const next = rng(314);

describe("rope's cached cos/sin table", () => {
  test("consecutive calls that change one parameter each agree with float64", () => {
    const shape = [2, 3, 4, 16];
    const x = randomData(2 * 3 * 4 * 16, next);
    const X = lx.array(x, shape);
    const calls: { dims: number; base: number; scale: number; offset: number | number[]; traditional: boolean; length?: number }[] = [
      { dims: 16, base: 10000, scale: 1, offset: 5, traditional: false },
      { dims: 16, base: 10000, scale: 1, offset: 5, traditional: true }, // same table, other pairing
      { dims: 16, base: 10000, scale: 1, offset: 6, traditional: false },
      { dims: 16, base: 10000, scale: 1, offset: [6, 6], traditional: false }, // per-row, same positions
      { dims: 16, base: 10000, scale: 1, offset: [6, 900], traditional: false },
      { dims: 16, base: 100000, scale: 1, offset: [6, 900], traditional: false },
      { dims: 16, base: 100000, scale: 0.5, offset: [6, 900], traditional: false },
      { dims: 8, base: 100000, scale: 0.5, offset: [6, 900], traditional: false },
      { dims: 8, base: 100000, scale: 0.5, offset: [6, 900], traditional: false, length: 3 },
      { dims: 16, base: 10000, scale: 1, offset: 5, traditional: false }, // back to the first
    ];
    for (const c of calls) {
      const L = c.length ?? 4;
      const s = [2, 3, L, 16];
      const input = L === 4 ? X : lx.slice(X, [0, 0, 0, 0], s);
      const xs = L === 4 ? x : input.toFloat32Array();
      const offset = typeof c.offset === "number" ? c.offset : lx.array(Int32Array.from(c.offset));
      const got = lx.rope(input, c.dims, { base: c.base, scale: c.scale, offset, traditional: c.traditional }).toFloat32Array();
      const starts = typeof c.offset === "number" ? [c.offset, c.offset] : c.offset;
      expectClose(got, refRope(xs, s, c.dims, c.base, starts, c.traditional, c.scale, ropeAngles()), { rtol: 1e-5, atol: 2e-5, what: JSON.stringify(c) });
    }
  });
});
