// The CPU matmul kernels against a float64 reference: sizes around the microkernel's panel and
// tile edges, transposed, batched and half-precision operands, every SIMD path this CPU has
// (forced with LANES_CPU_SIMD in a child process), and bitwise-equal results for any pool size
// (LANES_CPU_THREADS).
import { describe, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sameBits } from "../examples/workloads.ts";
import { expectWithinBound, pathCases, runCase, type MatmulCase } from "./support/matmul-cases.ts";
import { numel, randomData, rng } from "./support/reference.ts";

const next = rng(20261202);

function square(name: string, M: number, K: number, N: number, extra: Partial<MatmulCase> = {}): MatmulCase {
  return { name, a: randomData(M * K, next, -1, 1), aShape: [M, K], b: randomData(K * N, next, -1, 1), bShape: [K, N], ...extra };
}

function outputSize(c: MatmulCase): number {
  return Math.max(numel(c.aShape.slice(0, -2)), numel(c.bShape.slice(0, -2))) * c.aShape.at(-2)! * c.bShape.at(-1)!;
}

// Runs the path cases in a child process with `env` set; returns each case's result.
function runInChild(env: Record<string, string>): Float32Array[] {
  const dir = mkdtempSync(join(tmpdir(), "lanes-matmul-"));
  try {
    const out = join(dir, "out.bin");
    const childEnv: Record<string, string> = { ...(process.env as Record<string, string>), LANES_BACKEND: "cpu", ...env };
    for (const key of ["LANES_CPU_SIMD", "LANES_CPU_THREADS"]) if (!(key in env)) delete childEnv[key];
    const proc = Bun.spawnSync([process.execPath, join(import.meta.dir, "support", "matmul-cases.ts"), out], { env: childEnv, timeout: 120_000 });
    if (proc.exitCode !== 0) throw new Error(`child with ${JSON.stringify(env)} failed: ${proc.stderr.toString()}`);
    const all = new Float32Array(readFileSync(out).buffer.slice(0));
    let offset = 0;
    return pathCases().map((c) => {
      const n = outputSize(c);
      const r = all.subarray(offset, offset + n);
      offset += n;
      return r;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// The SIMD levels this CPU runs (Linux x86-64 reports its flags; elsewhere only the scalar
// loop can be forced).
function supportedPaths(): string[] {
  const paths = ["scalar"];
  if (process.arch !== "x64" || !existsSync("/proc/cpuinfo")) return paths;
  const flags = new Set(/^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim().split(/\s+/) ?? []);
  if (flags.has("avx2") && flags.has("fma")) paths.push("avx2");
  if (flags.has("avx512f")) paths.push("avx512");
  return paths;
}

describe("matmul kernels (CPU)", () => {
  test("every M, N, K in {1, 15, 16, 17, 31, 33, 63, 65, 127, 129, 255, 257}", () => {
    const sizes = [1, 15, 16, 17, 31, 33, 63, 65, 127, 129, 255, 257];
    for (const M of sizes)
      for (const N of sizes)
        for (const K of sizes) {
          const c = square(`${M}x${K} @ ${K}x${N}`, M, K, N);
          expectWithinBound(runCase(c), c);
        }
  }, 120_000);

  test("transposed, batched and broadcast operands, float16 and bfloat16 inputs", () => {
    for (const c of pathCases()) expectWithinBound(runCase(c), c);
    for (const [M, K, N] of [
      [257, 129, 33],
      [33, 257, 129],
    ] as const) {
      for (const transposeA of [false, true])
        for (const transposeB of [false, true]) {
          const c = square(`${M}x${K} @ ${K}x${N}, transposed A ${transposeA}, B ${transposeB}`, M, K, N, { transposeA, transposeB });
          expectWithinBound(runCase(c), c);
        }
      const batched: MatmulCase = {
        name: `4x${M}x${K} @ 4x${K}x${N}`,
        a: randomData(4 * M * K, next, -1, 1),
        aShape: [4, M, K],
        b: randomData(4 * K * N, next, -1, 1),
        bShape: [4, K, N],
      };
      expectWithinBound(runCase(batched), batched);
      for (const dtype of ["float16", "bfloat16"] as const) {
        const c = square(`${dtype} ${M}x${K} @ ${K}x${N}`, M, K, N, { dtype, transposeB: true });
        expectWithinBound(runCase(c), c);
      }
    }
  }, 60_000);

  test("every SIMD path this CPU has (LANES_CPU_SIMD) matches the reference; AVX2 and AVX-512 agree bitwise", () => {
    const paths = supportedPaths();
    const results = Object.fromEntries(paths.map((p) => [p, runInChild({ LANES_CPU_SIMD: p })]));
    const cases = pathCases();
    for (const p of paths)
      results[p]!.forEach((r, i) => {
        try {
          expectWithinBound(r, cases[i]!);
        } catch (e) {
          throw new Error(`LANES_CPU_SIMD=${p}: ${(e as Error).message}`);
        }
      });
    if (results.avx2 && results.avx512)
      results.avx2.forEach((r, i) => {
        if (!sameBits(r, results.avx512![i]!)) throw new Error(`${cases[i]!.name}: AVX2 and AVX-512 results differ`);
      });
  }, 120_000);

  test("results are bitwise identical for 1, 2, 3 and 5 pool threads (LANES_CPU_THREADS)", () => {
    const [one, ...others] = [1, 2, 3, 5].map((n) => runInChild({ LANES_CPU_THREADS: String(n) }));
    const cases = pathCases();
    one!.forEach((r, i) => expectWithinBound(r, cases[i]!));
    others.forEach((run, t) =>
      run.forEach((r, i) => {
        if (!sameBits(r, one![i]!)) throw new Error(`${cases[i]!.name}: ${[2, 3, 5][t]} threads differ from 1`);
      }),
    );
  }, 120_000);
});
