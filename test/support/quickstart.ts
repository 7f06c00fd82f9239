// The check on examples/quickstart.ts's printed line, wherever it runs (the repo, an installed package).
import { expect } from "bun:test";
import * as lx from "../../src/index.ts";

/** Softmax rows sum to 1, and |x[0]|² equals a float64 sum over the same counter-based numbers. */
export function expectQuickstartOutput(out: string): void {
  const m = /softmax rows sum to ([\d.]+), \|x\[0\]\|² = ([\d.]+)/.exec(out);
  expect(m).not.toBeNull();
  expect(Number(m![1])).toBeCloseTo(1, 4);
  // Element i depends only on (seed, i), so these 256 are row 0 of the example's x.
  using x = lx.random.normal([256], { seed: 1 });
  let sumSquares = 0;
  for (const v of x.toFloat32Array()) sumSquares += v * v;
  expect(Math.abs(Number(m![2]) - sumSquares)).toBeLessThan(1e-3 + 1e-5 * sumSquares);
}
