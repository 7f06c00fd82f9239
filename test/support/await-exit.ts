// Awaits evalAsync on several streams (one of them failing) and then simply ends: the process
// must exit on its own, promptly, with nothing left keeping the event loop alive.
import * as lx from "../../src/index.ts";

const streams = [lx.newStream(), lx.newStream(), lx.newStream()];
const ys = streams.map((stream, i) => lx.sum(lx.matmul(lx.random.normal([128, 128], { seed: i, stream }), lx.ones([128, 8], { stream }), { stream })));
await Promise.all(ys.map((y) => lx.evalAsync(y)));
await lx.evalAsync(ys[0]!); // already computed
let rejected = "";
try {
  await lx.evalAsync(lx.take(lx.ones([4]), [9]));
} catch (e) {
  rejected = (e as Error).name;
}
for (const s of streams) s.dispose();
console.log(JSON.stringify({ done: true, rejected, finite: ys.every((y) => Number.isFinite(y.item())) }));
