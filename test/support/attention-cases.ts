// Seeded scaledDotProductAttention cases for the CPU kernel's paths: long key runs across the
// kernel's 64-key blocks, prefill tiles of many query rows, decode rows whose keys are split
// across chunks, per-row key lengths, head sizes that are not a multiple of 16, strided views,
// float32/float16/bfloat16, float32 queries over float16 keys and values (fewer than 64 query
// rows and 64 or more), and scores far apart (most weights underflow). Every process that
// builds them gets the same inputs, so children at each LANES_CPU_SIMD level can be compared
// bit for bit and the parent can check against float64.
import * as lx from "../../src/index.ts";
import { randomData, refAttention, rng } from "./reference.ts";
import { float16Running, roundTo } from "./tolerance.ts";

type FloatDType = "float32" | "float16" | "bfloat16";

/** One case: logical q [B, H, Lq, D], k [B, Hk, Lk, D], v [B, Hk, Lk, Dv] (row-major values). */
export interface AttentionCase {
  name: string;
  dtype: FloatDType;
  shape: { B: number; H: number; Lq: number; D: number; Hk: number; Lk: number; Dv: number };
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  causal: boolean;
  /** Keys of every batch entry (a number), or of each entry (per-row form). */
  keyLength: number | number[];
  /** k is given as a transposed [B, Hk, D, Lk] array (its last axis is strided), q as a transposed [B, Lq, H, D]. */
  strided: boolean;
  /** q (and so the output) is float32 over k and v of `dtype` (float16: a KV cache). */
  float32Query?: boolean;
  /** A looser tolerance than the dtype's, where the computation itself is the limit (see the case). */
  tolerance?: { rtol: number; atol: number };
}


export function attentionCases(): AttentionCase[] {
  const next = rng(4242);
  const out: AttentionCase[] = [];
  const add = (
    name: string,
    dtype: FloatDType,
    [B, H, Lq, D]: number[],
    [Hk, Lk, Dv]: number[],
    causal: boolean,
    keyLength: number | number[],
    strided = false,
    spread = 2,
    tolerance: { rtol: number; atol: number } | undefined = dtype === "float16" ? float16Running : undefined,
    float32Query = false,
  ) => {
    const round = roundTo[dtype]!;
    const data = (n: number, s: number, r = round) => Float32Array.from(randomData(n, next, -s, s), r);
    out.push({
      name,
      dtype,
      shape: { B: B!, H: H!, Lq: Lq!, D: D!, Hk: Hk!, Lk: Lk!, Dv: Dv! },
      q: data(B! * H! * Lq! * D!, spread, float32Query ? Math.fround : round),
      k: data(B! * Hk! * Lk! * D!, 2),
      v: data(B! * Hk! * Lk! * Dv!, 2),
      causal,
      keyLength,
      strided,
      float32Query,
      tolerance,
    });
  };
  for (const dtype of ["float32", "float16", "bfloat16"] as const) {
    add(`${dtype} decode, 300 keys split across chunks, grouped-query`, dtype, [1, 9, 1, 64], [3, 320, 64], true, 300);
    add(`${dtype} prefill 70 queries x 130 keys, causal, head 40`, dtype, [2, 4, 70, 40], [2, 130, 24], true, 130);
    add(`${dtype} one key`, dtype, [1, 2, 3, 64], [1, 8, 64], false, 1);
  }
  add("float32 keys 64, 65, 128, 129 (block edges), non-causal", "float32", [1, 2, 4, 32], [2, 129, 32], false, 129);
  add("float32 block edge 64", "float32", [1, 2, 1, 32], [2, 64, 32], true, 64);
  add("float32 block edge 65", "float32", [1, 2, 1, 32], [2, 65, 48], true, 65);
  add("float32 head 20, causal", "float32", [1, 2, 33, 20], [1, 33, 20], true, 33);
  add("float16 per-row key lengths 1, 64, 129, 0", "float16", [4, 6, 1, 64], [2, 200, 64], true, [1, 64, 129, 0]);
  add("float32 per-row key lengths with 5 queries", "float32", [2, 2, 5, 16], [1, 80, 16], true, [5, 70]);
  add("float16 strided q and k views", "float16", [1, 4, 19, 32], [2, 90, 32], true, 90, true);
  add("float32 strided q and k views, long", "float32", [1, 2, 2, 16], [1, 700, 16], false, 700, true);
  // Scores of magnitude ~100: their float32 rounding (~1e-5 absolute) becomes a relative error of
  // the weights e^(s - m), whatever the kernel does (the float64 reference has exact scores).
  add("float32 scores far apart (most weights underflow)", "float32", [1, 2, 40, 64], [1, 200, 64], true, 200, false, 40, { rtol: 2e-3, atol: 1e-5 });
  add("bfloat16 many heads per kv head", "bfloat16", [1, 16, 17, 8], [1, 17, 8], true, 17);
  // SmolLM2's decode and a short prompt over its float16 cache, and a head size past a whole 64.
  add("float32 q over float16 k/v, decode", "float16", [1, 9, 1, 64], [3, 400, 64], true, 300, false, 2, float16Running, true);
  add("float32 q over float16 k/v, prompt of 37", "float16", [1, 9, 37, 64], [3, 64, 64], true, 37, false, 2, float16Running, true);
  add("float32 q over float16 k/v, head 80, strided", "float16", [1, 4, 5, 80], [2, 70, 48], true, 70, true, 2, float16Running, true);
  // 64 query rows or more: llama.cpp's tiled flash attention (keys in tiles of 64 from key 0);
  // with a value size that is not a multiple of 16 it keeps its one-row path.
  add("float32 q over float16 k/v, prompt of 70 after 60 cached keys", "float16", [1, 9, 70, 64], [3, 140, 64], true, 130, false, 2, float16Running, true);
  add("float32 q over float16 k/v, 64 queries, per-row key lengths", "float16", [2, 4, 64, 32], [2, 150, 32], true, [64, 150], false, 2, float16Running, true);
  add("float32 q over float16 k/v, 64 queries, head 80, strided", "float16", [1, 4, 64, 80], [2, 100, 48], true, 100, true, 2, float16Running, true);
  add("float32 q over float16 k/v, 64 queries, values of 24", "float16", [1, 2, 64, 32], [1, 64, 24], true, 64, false, 2, float16Running, true);
  return out;
}

/** lx's result for one case, as float32. */
export function runAttention(c: AttentionCase): Float32Array {
  const { B, H, Lq, D, Hk, Lk, Dv } = c.shape;
  const qDtype = c.float32Query ? "float32" : c.dtype;
  let q: lx.LanesArray, k: lx.LanesArray;
  if (c.strided) {
    const qt = new Float32Array(c.q.length), kt = new Float32Array(c.k.length);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < Lq; i++)
          for (let d = 0; d < D; d++) qt[((b * Lq + i) * H + h) * D + d] = c.q[((b * H + h) * Lq + i) * D + d]!;
    for (let b = 0; b < B; b++)
      for (let h = 0; h < Hk; h++)
        for (let j = 0; j < Lk; j++)
          for (let d = 0; d < D; d++) kt[((b * Hk + h) * D + d) * Lk + j] = c.k[((b * Hk + h) * Lk + j) * D + d]!;
    q = lx.transpose(lx.array(qt, [B, Lq, H, D], qDtype), [0, 2, 1, 3]);
    k = lx.transpose(lx.array(kt, [B, Hk, D, Lk], c.dtype), [0, 1, 3, 2]);
  } else {
    q = lx.array(c.q, [B, H, Lq, D], qDtype);
    k = lx.array(c.k, [B, Hk, Lk, D], c.dtype);
  }
  const v = lx.array(c.v, [B, Hk, Lk, Dv], c.dtype);
  const keyLength = typeof c.keyLength === "number" ? c.keyLength : lx.array(Int32Array.from(c.keyLength));
  return lx.scaledDotProductAttention(q, k, v, { causal: c.causal, keyLength }).toFloat32Array();
}

/**
 * float64 attention of a case: row (b, h, i) over its entry's first keys, causal aligned to their
 * end. A float32 q over float16 k/v is rounded to float16 first where the op specifies it (fewer
 * than 64 query rows, or values not a multiple of 16 long).
 */
export function referenceAttention(c: AttentionCase): Float64Array {
  const tiled = c.shape.Lq >= 64 && c.shape.Dv % 16 === 0;
  const q = c.float32Query && c.dtype === "float16" && !tiled ? c.q.map(Math.f16round) : c.q;
  return refAttention(q, c.k, c.v, c.shape, c.keyLength, c.causal);
}

/** The dtype of a case's output. */
export function outputDtype(c: AttentionCase): FloatDType {
  return c.float32Query ? "float32" : c.dtype;
}
