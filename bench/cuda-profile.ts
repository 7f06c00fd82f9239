// Where a compiled replay of the 29-kernel 64×64 graph spends its time on one stream: the host
// call that issues it against the wait for it, and replays issued back to back (bounding the
// device's time per replay). Eager building of the same graph is timed alongside;
// bench/ncu-replay.sh runs this under Nsight Compute for the kernels' own durations.
//   LANES_BACKEND=cuda bun bench/cuda-profile.ts [replays]
import * as lx from "../src/index.ts";
import { smallGraph } from "./small-graph.ts";

const replays = Number(process.argv[2] ?? 2000);
const x = lx.random.normal([64, 64], { seed: 1 });
const w = lx.random.normal([64, 64], { seed: 2, scale: 0.1 });
const b = lx.random.normal([1, 64], { seed: 3 });
lx.eval(x, w, b);
const compiled = lx.compile((v: lx.LanesArray) => smallGraph(v, w, b));
for (let i = 0; i < 50; i++) {
  const y = compiled(x) as lx.LanesArray;
  lx.eval(y);
  y.dispose();
}
let issueMs = 0, waitMs = 0;
const t0 = performance.now();
for (let i = 0; i < replays; i++) {
  const t = performance.now();
  const y = compiled(x) as lx.LanesArray;
  const issued = performance.now();
  lx.eval(y);
  waitMs += performance.now() - issued;
  issueMs += issued - t;
  y.dispose();
}
const totalUs = ((performance.now() - t0) / replays) * 1000;
console.log(`compiled replay + eval: ${totalUs.toFixed(1)} us (issue ${((issueMs / replays) * 1000).toFixed(1)} us, wait ${((waitMs / replays) * 1000).toFixed(1)} us)`);
// Pipelined: 100 replays in a row, one eval of the last. Each replay takes at least its device
// time, so this bounds the graph's kernel time from above when the host issues faster.
let pipelinedUs = Infinity;
for (let r = 0; r < 5; r++) {
  const outs: lx.LanesArray[] = [];
  const t = performance.now();
  for (let i = 0; i < 100; i++) outs.push(compiled(x) as lx.LanesArray);
  lx.eval(outs[outs.length - 1]!);
  pipelinedUs = Math.min(pipelinedUs, ((performance.now() - t) / 100) * 1000);
  for (const o of outs) o.dispose();
}
console.log(`compiled replays pipelined (100, one eval): ${pipelinedUs.toFixed(1)} us per replay`);
const eagerT = performance.now();
for (let i = 0; i < replays / 4; i++) {
  const y = lx.tidy(() => smallGraph(x, w, b));
  lx.eval(y);
  y.dispose();
}
console.log(`eager build + eval: ${(((performance.now() - eagerT) / (replays / 4)) * 1000).toFixed(1)} us`);
compiled.dispose();
