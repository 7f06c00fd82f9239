// Per-dtype tolerances for comparing lanes against float64 references: one place for all tests.
import { backendName, type DType, type ElementDType } from "../../src/index.ts";
import type { RopeAngles } from "./reference.ts";

export const tolerance: Record<ElementDType, { rtol: number; atol: number }> = {
  float32: { rtol: 1e-5, atol: 1e-6 },
  float16: { rtol: 2e-3, atol: 1e-3 }, // 10-bit mantissa: half an ulp is 4.9e-4 relative, plus rounding of the inputs
  bfloat16: { rtol: 1.6e-2, atol: 1e-2 }, // 7-bit mantissa: half an ulp is 3.9e-3 relative
  int32: { rtol: 0, atol: 0 },
  bool: { rtol: 0, atol: 0 },
};

// Attention over float16 values on the CPU keeps its running sum of weighted values in float16,
// as llama.cpp does: one rounding per key, of a sum up to the key count times max |v| (2 in the
// tests), so its error grows with the keys beyond what the output's own rounding explains.
export const float16Running = { rtol: 2e-3, atol: 5e-3 };

// Round a float64 to bfloat16 (nearest even), independently of lanes: through float32 bits.
export function bf16round(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  if (Number.isNaN(f[0]!)) return NaN;
  const bits = u[0]!;
  u[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
  return f[0]!;
}

export const roundTo: Partial<Record<ElementDType, (x: number) => number>> = {
  float32: Math.fround,
  float16: Math.f16round,
  bfloat16: bf16round,
};

// The rope angles the backend in use builds: the CPU's follow llama.cpp's float32 recurrence (so
// its rope gives llama.cpp's bits), the GPU backends compute them in float64.
export function ropeAngles(): RopeAngles {
  return backendName() === "cpu" ? "float32" : "float64";
}
