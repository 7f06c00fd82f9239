// The benchmark suite: every figure is ours against a baseline measured in the same run.
//   bun run bench            (writes bench/results/<machine>.json and <machine>-scaling.svg)
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, hostname } from "node:os";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { native } from "../src/native.ts";
import { compareSgemm, numpyEnv, numpyPython, printSgemm } from "./matmul.ts";
import { workerCounts } from "./scaling.ts";
import { bestMs, runJsonChild } from "./timing.ts";

type Case = { name: string; ours: number; baseline: number; unit: string; ratio: number; baseline_name: string };
const cases: Case[] = [];
const here = import.meta.dir;
const machine = process.env.LANES_BENCH_MACHINE ?? `${hostname()}-${cpus().length}cpu`;

function record(name: string, ours: number, baseline: number, unit: string, baselineName: string, higherIsBetter = true) {
  const ratio = higherIsBetter ? ours / baseline : baseline / ours;
  cases.push({ name, ours, baseline, unit, ratio, baseline_name: baselineName });
  console.log(`${name.padEnd(44)} ${ours.toPrecision(4).padStart(10)} ${unit.padEnd(10)} vs ${baseline.toPrecision(4).padStart(10)} (${baselineName})  ratio ${ratio.toFixed(2)}`);
}

// ---- 1. FFI cost -----------------------------------------------------------------------------
{
  const n = 100_000;
  const noop = bestMs(() => {
    for (let i = 0; i < n; i++) native.lanes_last_error_code();
  });
  const a = lx.ones([4]), b = lx.ones([4]);
  lx.eval(a, b);
  let createOnly = Infinity;
  for (let r = 0; r < 5; r++) {
    const batch: lx.LanesArray[] = [];
    const t = performance.now();
    for (let i = 0; i < n; i++) batch.push(lx.add(a, b));
    createOnly = Math.min(createOnly, performance.now() - t);
    for (const m of batch) m.dispose();
  }
  record("ffi: graph node creation (add)", (createOnly / n) * 1e6, (noop / n) * 1e6, "ns/node", "no-op bun:ffi call", false);
  const syncRound = bestMs(() => {
    for (let i = 0; i < 2000; i++) {
      using y = lx.add(a, b);
      lx.eval(y);
    }
  });
  record("ffi: sync eval round-trip, 1-op graph", (syncRound / 2000) * 1e3, (noop / n) * 1e3, "us", "no-op bun:ffi call", false);
  // Measured as the sync case is (a warm-up round, then the best of 5), in rounds of 250 with a
  // turn of the event loop between them: awaits of settled promises never let the loop turn, and
  // after 2 ms without a turn evalAsync stops running work on the calling thread (src/eval.ts),
  // so longer rounds back to back would time that guard instead of the round trip.
  const asyncCalls = 250;
  let asyncRound = Infinity;
  for (let r = 0; r < 6; r++) {
    await new Promise((resolve) => setImmediate(resolve));
    const t = performance.now();
    for (let i = 0; i < asyncCalls; i++) {
      using y = lx.add(a, b);
      await lx.evalAsync(y);
    }
    if (r > 0) asyncRound = Math.min(asyncRound, performance.now() - t);
  }
  record("ffi: async eval round-trip, 1-op graph", (asyncRound / asyncCalls) * 1e3, (syncRound / 2000) * 1e3, "us", "sync eval round-trip", false);
}

// ---- 3. CPU kernels against numpy (same thread count) -------------------------------------------
const rows = 4096, cols = 1024; // 16 MiB per array: well past L2
{
  const sgemm = compareSgemm([64, 256, 512, 1024, 2048]);
  printSgemm(sgemm);
  for (const r of sgemm.rows)
    record(`sgemm ${r.n}${r.numpyLow ? " (numpy baseline low)" : ""}`, r.lanes, r.numpy, "GFLOP/s", `numpy ${sgemm.numpy} (OpenBLAS)`);
  const base = runJsonChild<Record<string, number>>([numpyPython(), join(here, "numpy_baseline.py"), "stream", String(rows), String(cols)], numpyEnv());
  const x = lx.random.normal([rows, cols], { seed: 3 }), y = lx.random.normal([rows, cols], { seed: 4 });
  lx.eval(x, y);
  const bytes = rows * cols * 4;
  const gbps = (moved: number, fn: () => void) => moved / bestMs(fn) / 1e6;
  const softmax = gbps(2 * bytes, () => {
    using z = lx.softmax(x, -1);
    lx.eval(z);
  });
  const sum = gbps(bytes, () => {
    using z = lx.sum(x, -1);
    lx.eval(z);
  });
  const add = gbps(3 * bytes, () => {
    using z = lx.add(x, y);
    lx.eval(z);
  });
  record("softmax (4096x1024, last axis)", softmax, base.softmax_GBps!, "GB/s", "numpy");
  record("sum (4096x1024, last axis)", sum, base.sum_GBps!, "GB/s", "numpy");
  record("add (4096x1024)", add, base.add_GBps!, "GB/s", "numpy");
  record("softmax vs memcpy ceiling", softmax, base.memcpy_GBps!, "GB/s", "numpy memcpy");
  record("sum vs memcpy ceiling", sum, base.memcpy_GBps!, "GB/s", "numpy memcpy");
  record("add vs memcpy ceiling", add, base.memcpy_GBps!, "GB/s", "numpy memcpy");
}

// ---- 4. Memory: a transformer block's forward pass ---------------------------------------------
{
  const [T, D, H, F, V] = [128, 256, 4, 1024, 2000];
  const w = (shape: number[], seed: number) => lx.random.normal(shape, { seed, scale: 0.05 });
  const weights = { emb: w([V, D], 1), wq: w([D, D], 2), wk: w([D, D], 3), wv: w([D, D], 4), wo: w([D, D], 5), w1: w([D, F], 6), w2: w([F, D], 7), g: lx.ones([D]) };
  lx.eval(...Object.values(weights));
  lx.clearCache();
  const weightBytes = Object.values(weights).reduce((n, a) => n + a.size * 4, 0);
  const base = lx.stats().activeBytes;
  lx.resetPeakMemory();
  const tokens = lx.array(Int32Array.from({ length: T }, (_, i) => (i * 7) % V));
  const tensors: lx.LanesArray[] = [];
  const t = <A extends lx.LanesArray>(a: A) => (tensors.push(a), a);
  const x = t(lx.take(weights.emb, tokens));
  const h = t(lx.rmsNorm(x, weights.g, 1e-5));
  const heads = (m: lx.LanesArray) => t(lx.transpose(t(lx.reshape(t(lx.matmul(h, m)), [1, T, H, D / H])), [0, 2, 1, 3]));
  const att = t(lx.scaledDotProductAttention(heads(weights.wq), heads(weights.wk), heads(weights.wv), { causal: true }));
  const merged = t(lx.reshape(t(lx.transpose(att, [0, 2, 1, 3])), [T, D]));
  const x2 = t(lx.add(x, t(lx.matmul(merged, weights.wo))));
  const out = t(lx.add(x2, t(lx.matmul(t(lx.silu(t(lx.matmul(t(lx.rmsNorm(x2, weights.g, 1e-5)), weights.w1)))), weights.w2))));
  lx.eval(out);
  const peak = lx.stats().peakBytes - base;
  const live = tensors.reduce((n, a) => n + a.size * 4, 0); // every intermediate, as if none were freed or viewed
  record("memory: transformer block forward, peak bytes", peak, live + T * 4, "bytes", "sum of its tensors (no reuse)", false);
  void weightBytes;
}

// ---- 2. Scaling: Workers on their own streams, per-stream locking vs one global lock ------------
const scaling: Record<string, Record<string, Record<number, number>>> = {};
for (const kind of ["small", "large"]) {
  for (const mode of ["per-stream", "global"]) {
    const r = runJsonChild<{ throughput: Record<number, number> }>([process.execPath, join(here, "scaling.ts"), kind], { LANES_LOCKING: mode === "global" ? "global" : "" });
    (scaling[kind] ??= {})[mode] = r.throughput;
  }
  for (const w of workerCounts)
    record(`scaling ${kind} graphs, ${w} Workers`, scaling[kind]!["per-stream"]![w]!, scaling[kind]!["global"]![w]!, "graphs/s", "lanes global-lock mode");
}

// ---- output ----------------------------------------------------------------------------------
mkdirSync(join(here, "results"), { recursive: true });
writeFileSync(join(here, "results", `${machine}.json`), JSON.stringify({ machine, date: new Date().toISOString(), backend: lx.backendName(), cases, scaling }, null, 2));
writeFileSync(join(here, "results", `${machine}-scaling.svg`), svg(scaling));
console.log(`wrote bench/results/${machine}.json and ${machine}-scaling.svg`);

function svg(data: typeof scaling): string {
  const W = 640, Hh = 300, pad = 50;
  const series: { label: string; points: number[]; color: string }[] = [];
  const colors = { "small per-stream": "#1f77b4", "small global": "#aec7e8", "large per-stream": "#d62728", "large global": "#ff9896" };
  for (const kind of Object.keys(data))
    for (const mode of Object.keys(data[kind]!)) {
      const max = Math.max(...Object.values(data[kind]!).flatMap((m) => Object.values(m)));
      series.push({ label: `${kind} ${mode}`, points: workerCounts.map((w) => data[kind]![mode]![w]! / max), color: (colors as Record<string, string>)[`${kind} ${mode}`] ?? "#000" });
    }
  const x = (i: number) => pad + (i * (W - 2 * pad)) / (workerCounts.length - 1);
  const y = (v: number) => Hh - pad + -v * (Hh - 2 * pad);
  const lines = series
    .map((s, k) => `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.points.map((p, i) => `${x(i)},${y(p)}`).join(" ")}"/><text x="${W - pad - 150}" y="${pad + 14 * k}" fill="${s.color}" font-size="12">${s.label}</text>`)
    .join("");
  const ticks = workerCounts.map((w, i) => `<text x="${x(i) - 4}" y="${Hh - pad + 16}" font-size="12">${w}</text>`).join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${Hh}"><rect width="100%" height="100%" fill="white"/><text x="${pad}" y="20" font-size="14">lanes scaling on ${machine}: graphs/s per kind, normalized to its best (x: Workers)</text><line x1="${pad}" y1="${Hh - pad}" x2="${W - pad}" y2="${Hh - pad}" stroke="#444"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${Hh - pad}" stroke="#444"/>${ticks}${lines}</svg>`;
}
