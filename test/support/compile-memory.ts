// Memory of compiled functions, measured in a process of its own (no other test's garbage):
// prints activeBytes and liveStreams at the baseline, while everything is alive, and after
// disposing the compiled functions, their outputs and the streams (and clearing the cache).
import * as lx from "../../src/index.ts";

lx.clearCache();
const base = lx.stats();
const w1 = lx.random.normal([32, 64], { seed: 11 }), w2 = lx.random.normal([64, 48], { seed: 12 });
const f = lx.compile(
  (x: lx.LanesArray, s: number) => {
    const y = lx.matmul(lx.multiply(lx.silu(lx.matmul(x, w1)), s), w2);
    return { y: lx.softmax(y, -1), n: lx.rmsNorm(lx.add(y, s), null) };
  },
  { scalars: [1] },
);
const streams = [lx.newStream(), lx.newStream()];
const x = lx.random.normal([16, 32], { seed: 1 });
const outs: lx.LanesArray[] = [];
for (let i = 0; i < 6; i++)
  for (const stream of streams) {
    const out = lx.withStream(stream, () => f(x, i));
    outs.push(out.y, out.n);
  }
await Promise.all(outs.map((o) => lx.evalAsync(o)));
// A second shape: a second plan with its own arenas.
const wide = lx.random.normal([40, 32], { seed: 2 });
outs.push(...Object.values(lx.withStream(streams[1]!, () => f(wide, 3))));
// A donating KV-cache loop.
const donating = lx.compile((c: lx.LanesArray, u: lx.LanesArray, p: number) => lx.sliceUpdate(c, u, p), { scalars: [2], donate: [0] });
let cache = lx.zeros([16, 32]);
for (let p = 0; p < 16; p++) {
  const row = lx.slice(x, [p], [p + 1]);
  cache = donating(cache, row, p);
  row.dispose();
}
lx.eval(cache, ...outs);
const alive = lx.stats();
for (const a of [...outs, cache, x, wide, w1, w2]) a.dispose();
f.dispose();
donating.dispose();
for (const s of streams) s.dispose();
lx.clearCache();
const after = lx.stats();
console.log(JSON.stringify({ base, alive, after, plans: f.planCount }));
