// Which llama.cpp CPU build's arithmetic lanes' CPU kernels follow in this process (cpu/cpu_features.hpp,
// llama_build): LANES_CPU_LLAMA_BUILD, else "avx512" on an x86 CPU with AVX-512 F, BW, DQ and VL, else "avx2".
import { readFileSync } from "node:fs";

export type LlamaBuild = "avx512" | "avx2";

/** The build lanes follows here, read the way the library reads it. */
export function lanesLlamaBuild(env: Record<string, string | undefined> = process.env): LlamaBuild {
  const asked = env.LANES_CPU_LLAMA_BUILD;
  if (asked === "avx512" || asked === "avx2") return asked;
  if (process.arch !== "x64" || process.platform !== "linux") return "avx2";
  const flags = new Set((readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1] ?? "").trim().split(/\s+/));
  return ["avx512f", "avx512bw", "avx512dq", "avx512vl"].every((f) => flags.has(f)) ? "avx512" : "avx2";
}

/** SiLU inputs across exp's ranges (subnormal results, overflow, the 126 and 192 exponent bounds) and a tail off the vector widths. */
export function siluInputs(): Float32Array {
  const extremes = [0, -0, 1e-30, -1e-30, 87, -87, 88.8, -88.8, 100, -100, 103, -103, 150, -150, 200, -200, 3e38, -3e38, Infinity, -Infinity];
  let s = 12345;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  return Float32Array.from({ length: 1003 }, (_, i) => (i < extremes.length ? extremes[i]! : (next() * 2 - 1) * 40));
}
