// float32 square matmul: lanes against numpy (OpenBLAS) on the same number of threads, side by
// side in one run. The two alternate size by size for several rounds (each keeps its best), so
// a busy machine slows both alike. A numpy figure far below the rate it is known to reach here is
// re-measured a bounded number of times and, if it stays low, flagged rather than trusted.
//   bun bench/matmul.ts [64,256,512,1024,2048] [rounds]
// LANES_BENCH_NUMPY_GFLOPS overrides the known numpy rate at n >= 1024 (default: 170 GFLOP/s,
// numpy 2.3.4 on the 2-core AMD EPYC Zen 4 development machine).
import { existsSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { bestMs, runJsonChild } from "./timing.ts";

const here = import.meta.dir;
export const numpyVersion = "2.3.4";
const knownNumpyGflops = Number(process.env.LANES_BENCH_NUMPY_GFLOPS ?? 170);
// A baseline below this share of its known rate is measured again.
const lowShare = 0.8;
const maxExtraRounds = 3;

/** The benchmark venv's python with the pinned numpy from PyPI, created on first use. */
export function numpyPython(): string {
  const venv = join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? "/root", ".cache"), "lanes", "bench-venv");
  const python = join(venv, "bin", "python");
  const installed = existsSync(python) ? Bun.spawnSync([python, "-c", "import numpy; print(numpy.__version__)"]).stdout.toString().trim() : "";
  if (installed !== numpyVersion) {
    if (!existsSync(python) && Bun.spawnSync(["python3", "-m", "venv", venv], { stdio: ["ignore", "inherit", "inherit"] }).exitCode !== 0)
      throw new Error(`could not create ${venv}`);
    const pip = Bun.spawnSync([join(venv, "bin", "pip"), "install", "--quiet", "--disable-pip-version-check", `numpy==${numpyVersion}`], { stdio: ["ignore", "inherit", "inherit"] });
    if (pip.exitCode !== 0) throw new Error(`pip install numpy==${numpyVersion} failed`);
  }
  return python;
}

/** Threads both sides use: lanes' pool size (LANES_CPU_THREADS, else one per CPU). */
export function benchThreads(): number {
  return Number(process.env.LANES_CPU_THREADS ?? cpus().length);
}

/** numpy's environment for a fair baseline: our thread count, OpenBLAS left to pick its kernels. */
export function numpyEnv(): Record<string, string | undefined> {
  return { OPENBLAS_NUM_THREADS: String(benchThreads()), OPENBLAS_CORETYPE: undefined, OPENBLAS_L2_SIZE: undefined };
}

type NumpySgemm = { numpy: string; blas?: string; sgemm_GFLOPs: Record<string, number> };

function numpySgemm(python: string, sizes: number[]): NumpySgemm {
  return runJsonChild<NumpySgemm>([python, join(here, "numpy_baseline.py"), "sgemm", ...sizes.map(String)], numpyEnv());
}

function lanesSgemm(n: number): number {
  using a = lx.random.normal([n, n], { seed: 1 });
  using b = lx.random.normal([n, n], { seed: 2 });
  lx.eval(a, b);
  const repeat = n >= 2048 ? 3 : n >= 512 ? 8 : 40;
  const ms = bestMs(() => {
    using y = lx.matmul(a, b);
    lx.eval(y);
  }, repeat);
  return (2 * n ** 3) / ms / 1e6;
}

export type SgemmRow = { n: number; lanes: number; numpy: number; ratio: number; numpyLow: boolean };

/** Best-of GFLOP/s for each size, lanes and numpy alternating for `rounds` rounds. */
export function compareSgemm(sizes: number[], rounds = 3): { rows: SgemmRow[]; numpy: string; blas?: string } {
  const python = numpyPython();
  const best = { lanes: new Map<number, number>(), numpy: new Map<number, number>() };
  let info: NumpySgemm | undefined;
  // Size by size, numpy then lanes, so each pair runs within seconds of each other.
  const round = (which: number[]) => {
    for (const n of which) {
      info = numpySgemm(python, [n]);
      best.numpy.set(n, Math.max(best.numpy.get(n) ?? 0, info.sgemm_GFLOPs[String(n)]!));
      best.lanes.set(n, Math.max(best.lanes.get(n) ?? 0, lanesSgemm(n)));
    }
  };
  for (let r = 0; r < rounds; r++) round(sizes);
  const low = () => sizes.filter((n) => n >= 1024 && best.numpy.get(n)! < lowShare * knownNumpyGflops);
  for (let extra = 0; extra < maxExtraRounds && low().length > 0; extra++) {
    console.log(`numpy ran below ${lowShare} x its known ${knownNumpyGflops} GFLOP/s at ${low().join(", ")}: measuring again`);
    round(low());
  }
  const stillLow = new Set(low());
  const rows = sizes.map((n) => {
    const l = best.lanes.get(n)!, np = best.numpy.get(n)!;
    return { n, lanes: l, numpy: np, ratio: l / np, numpyLow: stillLow.has(n) };
  });
  return { rows, numpy: info!.numpy, blas: info!.blas };
}

/** Prints one line per size: lanes and numpy GFLOP/s, the ratio, and a flag on a low baseline. */
export function printSgemm(result: ReturnType<typeof compareSgemm>): void {
  console.log(`sgemm float32, ${benchThreads()} threads: lanes (${lx.backendName()}) vs numpy ${result.numpy} (${result.blas ?? "BLAS"}), best of alternating rounds`);
  for (const r of result.rows) {
    const flag = r.numpyLow ? `  BASELINE LOW: numpy below ${lowShare} x ${knownNumpyGflops} GFLOP/s, ratio not trusted` : "";
    console.log(`  ${String(r.n).padStart(5)}  lanes ${r.lanes.toFixed(1).padStart(6)} GFLOP/s   numpy ${r.numpy.toFixed(1).padStart(6)} GFLOP/s   ratio ${r.ratio.toFixed(2)}${flag}`);
  }
}

if (import.meta.main) {
  const sizes = (process.argv[2] ?? "64,256,512,1024,2048").split(",").map(Number);
  printSgemm(compareSgemm(sizes, Number(process.argv[3] ?? 3)));
}
