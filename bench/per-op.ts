// Seconds per op: `repeat` independent ops evaluated together (so launches overlap the GPU
// like back-to-back PyTorch calls), best of 3.
import * as lx from "../src/index.ts";

/** Best-of-3 seconds per op for `repeat` ops from `build`, evaluated in one eval. */
export function perOp(build: () => lx.LanesArray, repeat: number): number {
  using warm = build();
  lx.eval(warm);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    const ys = Array.from({ length: repeat }, build);
    lx.eval(...ys);
    best = Math.min(best, (performance.now() - t) / 1000 / repeat);
    for (const y of ys) y.dispose();
  }
  return best;
}
