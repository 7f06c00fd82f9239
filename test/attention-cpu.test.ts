// The CPU attention kernel and SiLU: every path (LANES_CPU_SIMD=scalar, avx2, avx512 in child
// processes), following each llama.cpp build's rounding (LANES_CPU_LLAMA_BUILD), against float64,
// and bit for bit against each other within a build; a row's result does not depend on what
// else is in the call (decode rows whose keys are split across chunks equal the same rows in a
// larger batch; a prefill row equals the decode step at its position).
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { attentionCases, outputDtype, referenceAttention, runAttention } from "./support/attention-cases.ts";
import { lanesLlamaBuild, siluInputs } from "./support/llama-builds.ts";
import { expectClose, randomData, rng } from "./support/reference.ts";
import { roundTo, tolerance } from "./support/tolerance.ts";

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("hex");

describe("attention and SiLU on the CPU at each SIMD level, following each llama.cpp build (child processes)", () => {
  const cases = attentionCases();
  const levels = ["scalar", "avx2", "avx512", ""];
  const runs = (["avx512", "avx2"] as const).flatMap((build) =>
    levels.map((level) => {
      const proc = Bun.spawnSync([process.execPath, join(import.meta.dir, "support", "attention-paths.ts")], {
        env: { ...process.env, LANES_CPU_SIMD: level, LANES_CPU_LLAMA_BUILD: build },
        timeout: 120_000,
      });
      const line = proc.stdout.toString().trim().split("\n").pop() ?? "";
      const parsed = (line.startsWith("{") ? JSON.parse(line) : { attention: {}, silu: "" }) as { attention: Record<string, string>; silu: string };
      return { build, level, exitCode: proc.exitCode, stderr: proc.stderr.toString(), results: parsed.attention, silu: parsed.silu };
    }),
  );
  const what = (run: (typeof runs)[number]) => `LANES_CPU_LLAMA_BUILD=${run.build} LANES_CPU_SIMD=${run.level || "(default)"}`;
  const floats = (hex: string) => new Float32Array(Buffer.from(hex, "hex").buffer.slice(0));

  test("each level and build agrees with float64 within the dtype's tolerance", () => {
    const x = siluInputs();
    // e^-x held in float32, as every path holds it: past 88.72 it is +inf, so SiLU gives -0, and
    // NaN at -inf (-inf / inf).
    const siluWant = Array.from(x, (v) => v / (1 + Math.fround(Math.exp(-v))));
    for (const run of runs) {
      expect(run.exitCode, `${what(run)}: ${run.stderr}`).toBe(0);
      for (const c of cases) {
        const hex = run.results[c.name];
        expect(hex, c.name).toBeDefined();
        const want = referenceAttention(c);
        const round = roundTo[outputDtype(c)]!;
        // The reference rounded to the output dtype, then the dtype's tolerance.
        expectClose(floats(hex!), Float64Array.from(want, round), { ...(c.tolerance ?? tolerance[c.dtype]), what: `${c.name} (${what(run)})` });
      }
      expectClose(floats(run.silu), siluWant, { rtol: 1e-6, atol: 1e-37, what: `silu (${what(run)})` });
    }
  });

  test("within a build, scalar, AVX2, AVX-512 and the default give bitwise identical results", () => {
    for (const build of ["avx512", "avx2"]) {
      const [first, ...rest] = runs.filter((r) => r.build === build);
      expect(Object.keys(first!.results).length).toBe(cases.length);
      for (const other of rest) {
        for (const c of cases) if (other.results[c.name] !== first!.results[c.name]) throw new Error(`${c.name}: ${what(other)} differs from ${what(first!)}`);
        if (other.silu !== first!.silu) throw new Error(`silu: ${what(other)} differs from ${what(first!)}`);
      }
    }
  });

  test("this process (default level and build) gives the children's bits", () => {
    const mine = runs.find((r) => r.build === lanesLlamaBuild() && r.level === "")!;
    for (const c of cases) expect(bits(runAttention(c)), c.name).toBe(mine.results[c.name]!);
    expect(bits(lx.silu(lx.array(siluInputs())).toFloat32Array())).toBe(mine.silu);
  });
});

describe("a row's result does not depend on the rest of the call", () => {
  const next = rng(77);
  const f16 = (n: number) => Float32Array.from(randomData(n, next), roundTo.float16!);
  // float32 and bfloat16 split a decode row's keys across chunks; float16 takes them one at a time.
  const dtypes = ["float32", "float16", "bfloat16"] as const;

  for (const dtype of dtypes)
    test(`${dtype}: decode rows (keys split across chunks where the path splits) equal the same rows in a batch of 8`, () => {
      const [H, Hk, C, D] = [9, 3, 600, 64];
      const q = f16(H * D), k = f16(Hk * C * D), v = f16(Hk * C * D);
      for (const keys of [1, 63, 64, 65, 300, 577, 600]) {
        const alone = lx.scaledDotProductAttention(lx.array(q, [1, H, 1, D], dtype), lx.array(k, [1, Hk, C, D], dtype), lx.array(v, [1, Hk, C, D], dtype), { keyLength: keys, causal: true });
        const tile = (x: Float32Array) => Float32Array.from({ length: 8 * x.length }, (_, i) => x[i % x.length]!);
        const batch = lx.scaledDotProductAttention(lx.array(tile(q), [8, H, 1, D], dtype), lx.array(tile(k), [8, Hk, C, D], dtype), lx.array(tile(v), [8, Hk, C, D], dtype), {
          keyLength: lx.array(Int32Array.from({ length: 8 }, (_, b) => (b === 5 ? keys : Math.max(1, keys - b)))),
          causal: true,
        });
        const a = alone.toFloat32Array(), all = batch.toFloat32Array();
        expect(bits(all.subarray(5 * a.length, 6 * a.length)), `${keys} keys`).toBe(bits(a));
      }
    });

  test("float32 q over float16 k/v, 64 query rows or more: a row is the same in a prefill of 150 and in one of its last 64", () => {
    const [H, Hk, L, D] = [6, 2, 150, 32];
    const q = Float32Array.from(randomData(H * L * D, next)), k = f16(Hk * L * D), v = f16(Hk * L * D);
    const K = lx.array(k, [1, Hk, L, D], "float16"), V = lx.array(v, [1, Hk, L, D], "float16");
    const whole = lx.scaledDotProductAttention(lx.array(q, [1, H, L, D]), K, V, { causal: true }).toFloat32Array();
    const T = 64;
    const tail = new Float32Array(H * T * D);
    for (let h = 0; h < H; h++) tail.set(q.subarray((h * L + L - T) * D, (h + 1) * L * D), h * T * D);
    const part = lx.scaledDotProductAttention(lx.array(tail, [1, H, T, D]), K, V, { causal: true }).toFloat32Array();
    for (let h = 0; h < H; h++) expect(bits(part.subarray(h * T * D, (h + 1) * T * D)), `head ${h}`).toBe(bits(whole.subarray((h * L + L - T) * D, (h + 1) * L * D)));
  });

  for (const dtype of dtypes)
    test(`${dtype}: each row of a causal prefill equals a decode step at its position, bit for bit`, () => {
      const [H, Hk, L, D] = [6, 2, 150, 32];
      const q = f16(H * L * D), k = f16(Hk * L * D), v = f16(Hk * L * D);
      const K = lx.array(k, [1, Hk, L, D], dtype), V = lx.array(v, [1, Hk, L, D], dtype);
      const prefill = lx.scaledDotProductAttention(lx.array(q, [1, H, L, D], dtype), K, V, { causal: true }).toFloat32Array();
      for (const i of [0, 15, 16, 63, 64, 100, 149]) {
        const qi = new Float32Array(H * D);
        for (let h = 0; h < H; h++) qi.set(q.subarray((h * L + i) * D, (h * L + i + 1) * D), h * D);
        const step = lx.scaledDotProductAttention(lx.array(qi, [1, H, 1, D], dtype), K, V, { causal: true, keyLength: i + 1 }).toFloat32Array();
        for (let h = 0; h < H; h++) expect(bits(step.subarray(h * D, (h + 1) * D)), `row ${i} head ${h}`).toBe(bits(prefill.subarray((h * L + i) * D, (h * L + i + 1) * D)));
      }
    });
});
