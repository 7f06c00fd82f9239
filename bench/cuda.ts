// The CUDA benchmarks: lanes against PyTorch on the same GPU, in one run.
//   LANES_BACKEND=cuda bun bench/cuda.ts      (python3 with torch on the path)
// Writes bench/results/cuda-<gpu>.json. Each ratio is ours / PyTorch (higher is better).
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { perOp } from "./per-op.ts";
import { workerCounts } from "./scaling.ts";
import { bestMs } from "./timing.ts";

if (lx.backendName() !== "cuda") throw new Error("run with LANES_BACKEND=cuda");
const here = import.meta.dir;

function python(args: string[]): Record<string, unknown> {
  const r = spawnSync("python3", [join(here, "torch_baseline.py"), ...args], { encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`torch baseline failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

type Row = { name: string; unit: string; lanes: number; torch: number; ratio: number };
const rows: Row[] = [];
function row(name: string, unit: string, lanes: number, torch: number) {
  rows.push({ name, unit, lanes, torch, ratio: lanes / torch });
  console.log(`${name.padEnd(28)} ${lanes.toFixed(1).padStart(9)} ${unit.padEnd(7)} torch ${torch.toFixed(1).padStart(9)}  ratio ${(lanes / torch).toFixed(2)}`);
}

// --concurrency: only the round trip and the concurrency table (the figures issue 13 tracks).
const concurrencyOnly = process.argv.includes("--concurrency");
const torchKernels = python([concurrencyOnly ? "roundtrip" : "kernels"]) as Record<string, number>;
for (const dtype of concurrencyOnly ? [] : (["float32", "bfloat16"] as const)) {
  const tag = dtype === "float32" ? "f32" : "bf16";
  for (const n of [1024, 2048, 4096, 8192]) {
    using a = lx.astype(lx.random.normal([n, n], { seed: 1 }), dtype);
    using b = lx.astype(lx.random.normal([n, n], { seed: 2 }), dtype);
    lx.eval(a, b);
    const s = perOp(() => lx.matmul(a, b), Math.max(3, Math.min(50, Math.floor(4e11 / (2 * n ** 3)))));
    row(`matmul ${tag} ${n}`, "TFLOP/s", (2 * n ** 3) / s / 1e12, torchKernels[`matmul_${tag}_${n}`]!);
  }
  const n = 8192;
  using x = lx.astype(lx.random.normal([n, n], { seed: 3 }), dtype);
  using y = lx.astype(lx.random.normal([n, n], { seed: 4 }), dtype);
  using w = lx.astype(lx.random.normal([n], { seed: 5 }), dtype);
  lx.eval(x, y, w);
  const bytes = n * n * (dtype === "float32" ? 4 : 2);
  row(`softmax ${tag} 8192²`, "GB/s", (2 * bytes) / perOp(() => lx.softmax(x, -1), 20) / 1e9, torchKernels[`softmax_${tag}`]!);
  row(`rmsNorm ${tag} 8192²`, "GB/s", (2 * bytes) / perOp(() => lx.rmsNorm(x, w), 20) / 1e9, torchKernels[`rmsnorm_${tag}`]!);
  row(`add ${tag} 8192²`, "GB/s", (3 * bytes) / perOp(() => lx.add(x, y), 20) / 1e9, torchKernels[`add_${tag}`]!);
}

// Host <-> device copies of 256 MB: lanes' array() upload and toFloat32Array() download.
if (!concurrencyOnly) {
  const host = new Float32Array(64 << 20).map((_, i) => i % 1000);
  let up = Infinity, down = Infinity;
  for (let r = 0; r < 4; r++) {
    let t = performance.now();
    const a = lx.array(host, [host.length]);
    up = Math.min(up, (performance.now() - t) / 1000);
    t = performance.now();
    a.toFloat32Array();
    down = Math.min(down, (performance.now() - t) / 1000);
    a.dispose();
  }
  row("upload 256 MB (array())", "GB/s", host.byteLength / up / 1e9, torchKernels.upload!);
  row("download 256 MB (toFloat32Array)", "GB/s", host.byteLength / down / 1e9, torchKernels.download!);
}

// The serving loop's round trip: build a small graph and read its result.
{
  using x = lx.random.normal([64, 64], { seed: 6 });
  using w = lx.random.normal([64, 64], { seed: 7 });
  lx.eval(x, w);
  const once = () => {
    using y = lx.softmax(lx.matmul(x, w), -1);
    y.toFloat32Array();
  };
  // Microseconds per round trip: 500 in a row, best of 3 after a warm-up.
  const perRoundTripUs = (fn: () => void) => (bestMs(() => { for (let i = 0; i < 500; i++) fn(); }, 3) / 500) * 1000;
  const us = perRoundTripUs(once);
  rows.push({ name: "graph + read round trip (64x64)", unit: "us", lanes: us, torch: torchKernels.read_roundtrip_us!, ratio: torchKernels.read_roundtrip_us! / us });
  console.log(`${"graph + read round trip (64x64)".padEnd(28)} ${us.toFixed(1).padStart(9)} us      torch ${torchKernels.read_roundtrip_us!.toFixed(1).padStart(9)}  ratio ${(torchKernels.read_roundtrip_us! / us).toFixed(2)} (torch time / lanes time)`);
  const step = lx.compile((a: lx.LanesArray) => lx.softmax(lx.matmul(a, w), -1));
  const compiledOnce = () => {
    using y = step(x);
    y.toFloat32Array();
  };
  const cus = perRoundTripUs(compiledOnce);
  rows.push({ name: "compiled graph + read round trip (64x64)", unit: "us", lanes: cus, torch: torchKernels.read_roundtrip_us!, ratio: torchKernels.read_roundtrip_us! / cus });
  console.log(`${"compiled + read round trip".padEnd(28)} ${cus.toFixed(1).padStart(9)} us      torch ${torchKernels.read_roundtrip_us!.toFixed(1).padStart(9)}  ratio ${(torchKernels.read_roundtrip_us! / cus).toFixed(2)} (torch time / lanes time)`);
  step.dispose();
}

// Concurrency: Workers on their own streams (lanes eager and compiled, per-stream and global
// locking) against Python threads on their own torch.cuda.Streams (eager, CUDA-graph replay
// synchronized each time, and pipelined), all running the same 29-kernel 64x64 graph.
function lanesScaling(mode: "eager" | "compiled", locking: string, graphs: number): Record<string, number> {
  const r = spawnSync(process.execPath, [join(here, "scaling.ts"), "small", mode, String(graphs)], {
    encoding: "utf8",
    env: { ...process.env, LANES_LOCKING: locking },
  });
  if (r.status !== 0) throw new Error(`scaling (${mode}, ${locking}) failed: ${r.stderr}`);
  const throughput = JSON.parse(r.stdout.trim().split("\n").pop()!).throughput;
  console.log(JSON.stringify({ series: `lanes ${mode} ${locking}`, throughput }));
  return throughput;
}
// A baseline that fails is reported (NaN in the table) rather than losing the whole run.
function torchScaling(mode: string): Record<string, number> {
  try {
    const { throughput } = python(["scaling", mode]) as { throughput: Record<string, number> };
    console.log(JSON.stringify({ series: `torch ${mode}`, throughput }));
    return throughput;
  } catch (e) {
    console.log(`torch ${mode} failed: ${String(e).slice(0, 2000)}`);
    return Object.fromEntries(workerCounts.map((w) => [w, Number.NaN]));
  }
}
const series: Record<string, Record<string, number>> = {
  "lanes eager": lanesScaling("eager", "per-stream", 400),
  "lanes eager global": lanesScaling("eager", "global", 400),
  "lanes compiled": lanesScaling("compiled", "per-stream", 2000),
  "lanes compiled global": lanesScaling("compiled", "global", 2000),
  "torch eager": torchScaling("eager"),
  "torch graph": torchScaling("graph"),
  "torch graph pipelined": torchScaling("pipelined"),
};
console.log(`\n29-kernel graphs/s  ${Object.keys(series).map((k) => k.padStart(22)).join("")}`);
for (const w of workerCounts) console.log(`${String(w).padStart(2)} workers        ${Object.values(series).map((v) => v[w]!.toFixed(0).padStart(22)).join("")}`);
const ratio = (a: string, b: string) => workerCounts.map((w) => (series[a]![w]! / series[b]![w]!).toFixed(2)).join(" / ");
console.log(`lanes eager / torch eager (1..16):          ${ratio("lanes eager", "torch eager")}`);
console.log(`lanes eager / lanes eager global:            ${ratio("lanes eager", "lanes eager global")}`);
console.log(`lanes compiled / torch eager:               ${ratio("lanes compiled", "torch eager")}`);
console.log(`lanes compiled / torch graph (sync each):   ${ratio("lanes compiled", "torch graph")}`);
console.log(`lanes compiled / torch graph pipelined:     ${ratio("lanes compiled", "torch graph pipelined")}`);

const gpu = String(torchKernels.gpu ?? "gpu");
mkdirSync(join(here, "results"), { recursive: true });
const file = join(here, "results", `cuda-${gpu.replace(/[^A-Za-z0-9]+/g, "-")}.json`);
writeFileSync(
  file,
  JSON.stringify({ date: new Date().toISOString(), gpu, torch: torchKernels.torch, kernels: rows, scaling: series }, null, 2),
);
console.log(`\nwrote ${file}`);
