// ggml's quantized blocks (GGUF's Q4_0, Q4_1, Q8_0), built in plain JS from random codes and
// float16 scales, with their exact float64 values, independent of lanes' own code. Layouts:
//   Q4_0: 18 bytes = f16 d, 16 bytes of nibbles; weight e (0..15) is the low nibble of byte e,
//         weight e + 16 its high nibble; value (q - 8) * d.
//   Q4_1: 20 bytes = f16 d, f16 m, 16 bytes of nibbles (same order); value q * d + m.
//   Q8_0: 34 bytes = f16 d, 32 int8; value q * d.

export type QuantType = "q4_0" | "q4_1" | "q8_0";
export const quantTypes: QuantType[] = ["q4_0", "q4_1", "q8_0"];
export const blockBytes: Record<QuantType, number> = { q4_0: 18, q4_1: 20, q8_0: 34 };

/** The value of float16 bits, decoded by hand. */
export function halfValue(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/** Float16 bits of the float16 nearest to v. */
export function halfBits(v: number): number {
  return new Uint16Array(new Float16Array([v]).buffer)[0]!;
}

export interface QuantMatrix {
  type: QuantType;
  n: number;
  k: number;
  bytes: Uint8Array;
  /** Exact values, [n, k] row-major: what the blocks mean. */
  values: Float64Array;
  /** The part of each value that multiplies the scale alone ((q - 8) d, q d, q d): [n, k]. */
  scaled: Float64Array;
  /** Q4_1's min per block ([n, k / 32]); zeros for the other types. */
  mins: Float64Array;
}

/**
 * Scales for a block: `scale()` gives float16 bits. "moderate" draws |d| in [1e-3, 0.1];
 * "extreme" also gives zero, subnormal, the largest normal and negative scales.
 */
export function scaleSource(next: () => number, kind: "moderate" | "extreme"): () => number {
  return () => {
    const r = next();
    if (kind === "extreme") {
      if (r < 0.1) return 0;
      if (r < 0.25) return 1 + Math.floor(next() * 0x3ff) + (next() < 0.5 ? 0x8000 : 0); // subnormal
      if (r < 0.35) return next() < 0.5 ? 0x7bff : 0xfbff; // ±65504
    }
    const v = (1e-3 + next() * 0.099) * (next() < 0.3 ? -1 : 1);
    return halfBits(v);
  };
}

export function buildBlocks(type: QuantType, n: number, k: number, next: () => number, scale: () => number): QuantMatrix {
  if (k % 32 !== 0) throw new Error("k must be a multiple of 32");
  const nb = k / 32, bb = blockBytes[type];
  const bytes = new Uint8Array(n * nb * bb);
  const values = new Float64Array(n * k), scaled = new Float64Array(n * k), mins = new Float64Array(n * nb);
  for (let j = 0; j < n; j++)
    for (let b = 0; b < nb; b++) {
      const at = (j * nb + b) * bb;
      const dBits = scale();
      bytes[at] = dBits & 0xff;
      bytes[at + 1] = dBits >> 8;
      const d = halfValue(dBits);
      let m = 0;
      if (type === "q4_1") {
        const mBits = scale();
        bytes[at + 2] = mBits & 0xff;
        bytes[at + 3] = mBits >> 8;
        m = halfValue(mBits);
      }
      mins[j * nb + b] = m;
      for (let e = 0; e < 32; e++) {
        let s: number;
        if (type === "q8_0") {
          const q = Math.floor(next() * 256) - 128;
          bytes[at + 2 + e] = q & 0xff;
          s = q * d;
        } else {
          const q = Math.floor(next() * 16);
          const byte = at + (type === "q4_0" ? 2 : 4) + (e % 16);
          bytes[byte] = e < 16 ? (bytes[byte]! & 0xf0) | q : (bytes[byte]! & 0x0f) | (q << 4);
          s = type === "q4_0" ? (q - 8) * d : q * d;
        }
        scaled[j * k + b * 32 + e] = s;
        values[j * k + b * 32 + e] = type === "q4_1" ? s + m : s; // no "+ 0": it would turn -0 into +0
      }
    }
  return { type, n, k, bytes, values, scaled, mins };
}
