import * as lx from "../../../src/index.ts";
const mats = Number(process.env.MATS ?? 16);
const W = Array.from({ length: mats }, (_, i) => lx.random.normal([128, 384], { seed: i + 1, scale: 0.05 }));
const x = lx.random.normal([1, 128], { seed: 99 });
lx.eval(x, ...W);
const f = lx.compile((v: lx.LanesArray) => W.map((w) => lx.matmul(v, w)));
const once = () => { const ys = f(x) as lx.LanesArray[]; lx.eval(...ys); for (const y of ys) y.dispose(); };
for (let i = 0; i < 100; i++) once();
let best = 1e9;
for (let r = 0; r < 30; r++) { const t = performance.now(); for (let i = 0; i < 100; i++) once(); best = Math.min(best, (performance.now() - t) / 100); }
console.log(`threads ${process.env.LANES_CPU_THREADS ?? "default"}: ${mats} matvecs 128x384: ${(best * 1000).toFixed(1)} us a replay (${(mats * 128 * 384 * 4 / (best / 1000) / 1e9).toFixed(1)} GB/s)`);
