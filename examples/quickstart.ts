// The ten-line example from the README: two requests on two streams at once, checked in JS.
import * as lx from "lanes";

using a = lx.newStream(), b = lx.newStream();
const x = lx.random.normal([256, 256], { seed: 1 });
const p = lx.softmax(lx.matmul(x, x, { stream: a }), -1, { stream: a }); // request 1 on stream a
const q = lx.sum(lx.square(x, { stream: b }), 1, { stream: b }); // request 2 on stream b
await lx.evalAsync(p, q); // both streams run concurrently; the event loop stays free
const rowSums = lx.sum(p, -1).toFloat32Array(); // every softmax row sums to 1
console.log(`backend ${lx.backendName()}: softmax rows sum to ${rowSums[0]!.toFixed(4)}, |x[0]|² = ${q.toFloat32Array()[0]!.toFixed(3)}`);
