// A Worker that takes handles and starts long work, then waits to be terminated.
import * as lx from "../../src/index.ts";

declare const self: Worker;
const s = lx.newStream();
const arrays: lx.LanesArray[] = [];
for (let i = 0; i < 50; i++) arrays.push(lx.random.normal([64, 64], { seed: i, stream: s }));
const big = lx.random.normal([512, 512], { seed: 9, stream: s });
const chain: lx.LanesArray[] = [];
let h = big;
for (let k = 0; k < 9; k++) chain.push((h = lx.matmul(h, big, { stream: s })));
void lx.evalAsync(h);
setInterval(() => {}, 1000); // stay alive until terminated, whatever the work's speed
self.postMessage([...arrays, big, ...chain].map((a) => a.id));
