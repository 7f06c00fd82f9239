// Matmul cases shared by test/matmul.test.ts and the child processes it starts with a forced
// SIMD path (LANES_CPU_SIMD) or pool size (LANES_CPU_THREADS): operands in every layout the CPU
// kernel reads in place (transposed, batched, broadcast) and in float16/bfloat16, with a float64
// reference and an error bound for each.
//   bun test/support/matmul-cases.ts <out.bin>    writes every case's result, concatenated
import * as lx from "../../src/index.ts";
import { numel, randomData, rng } from "./reference.ts";
import { roundTo } from "./tolerance.ts";

export type MatmulCase = {
  name: string;
  /** Logical operands, row-major: A is [...batch, M, K], B is [...batch, K, N]. */
  a: Float32Array;
  aShape: number[];
  b: Float32Array;
  bShape: number[];
  /** Store the operand as its transpose and hand lanes a transposed view of it (strided, no copy). */
  transposeA?: boolean;
  transposeB?: boolean;
  dtype?: lx.ElementDType;
};

// The same data stored as [..., cols, rows].
function transposed(x: Float32Array, shape: number[]): Float32Array {
  const rows = shape.at(-2)!, cols = shape.at(-1)!, batch = numel(shape.slice(0, -2));
  const out = new Float32Array(x.length);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[b * rows * cols + j * rows + i] = x[b * rows * cols + i * cols + j]!;
  return out;
}

function operand(data: Float32Array, shape: number[], transpose: boolean | undefined, dtype: lx.ElementDType): lx.LanesArray {
  if (!transpose) return lx.array(data, shape, dtype);
  const stored = [...shape.slice(0, -2), shape.at(-1)!, shape.at(-2)!];
  const axes = shape.map((_, i) => i);
  [axes[axes.length - 2], axes[axes.length - 1]] = [axes.at(-1)!, axes.at(-2)!];
  return lx.transpose(lx.array(transposed(data, shape), stored, dtype), axes);
}

/** lanes' result for one case, as float32. */
export function runCase(c: MatmulCase): Float32Array {
  const dtype = c.dtype ?? "float32";
  using a = operand(c.a, c.aShape, c.transposeA, dtype);
  using b = operand(c.b, c.bShape, c.transposeB, dtype);
  using y = lx.matmul(a, b);
  return y.toFloat32Array();
}

/**
 * The exact product of the (dtype-rounded) operands in float64, and for each element a bound
 * on the error of any float32 summation order: K + 1 units of float32 roundoff times the sum
 * of |terms|, plus the final rounding to a half type.
 */
export function reference(c: MatmulCase): { want: Float64Array; bound: Float64Array } {
  const round = roundTo[c.dtype ?? "float32"]!;
  const a = Float64Array.from(c.a, round), b = Float64Array.from(c.b, round);
  const M = c.aShape.at(-2)!, K = c.aShape.at(-1)!, N = c.bShape.at(-1)!;
  const aBatch = numel(c.aShape.slice(0, -2)), bBatch = numel(c.bShape.slice(0, -2));
  const batch = Math.max(aBatch, bBatch);
  // Half an ulp of the output type, relative, and absolute where float16 goes subnormal.
  const outputUlp = c.dtype === "float16" ? 2 ** -11 : c.dtype === "bfloat16" ? 2 ** -8 : 0;
  const outputFloor = c.dtype === "float16" ? 2 ** -25 : 0;
  const want = new Float64Array(batch * M * N), bound = new Float64Array(batch * M * N);
  for (let bi = 0; bi < batch; bi++) {
    const ao = (aBatch === 1 ? 0 : bi) * M * K, bo = (bBatch === 1 ? 0 : bi) * K * N;
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let sum = 0, magnitude = 0;
        for (let k = 0; k < K; k++) {
          const term = a[ao + i * K + k]! * b[bo + k * N + j]!;
          sum += term;
          magnitude += Math.abs(term);
        }
        const o = bi * M * N + i * N + j;
        want[o] = sum;
        bound[o] = (K + 1) * 2 ** -24 * magnitude + outputUlp * Math.abs(sum) + outputFloor;
      }
  }
  return { want, bound };
}

const references = new WeakMap<MatmulCase, ReturnType<typeof reference>>();

/** Throws naming the first element of `got` outside the reference's bound. */
export function expectWithinBound(got: Float32Array, c: MatmulCase): void {
  const { want, bound } = references.get(c) ?? reference(c);
  references.set(c, { want, bound });
  if (got.length !== want.length) throw new Error(`${c.name}: ${got.length} values, want ${want.length}`);
  for (let i = 0; i < got.length; i++)
    if (!(Math.abs(got[i]! - want[i]!) <= bound[i]!)) throw new Error(`${c.name}: [${i}] got ${got[i]}, want ${want[i]} (bound ${bound[i]})`);
}

let cachedPathCases: MatmulCase[] | undefined;

/** Cases for the SIMD-path and thread-count runs: all large enough for the packed kernel. */
export function pathCases(): MatmulCase[] {
  return (cachedPathCases ??= makePathCases());
}

function makePathCases(): MatmulCase[] {
  const next = rng(20261201);
  const data = (shape: number[]) => randomData(numel(shape), next, -1, 1);
  const plain = (name: string, aShape: number[], bShape: number[], extra: Partial<MatmulCase> = {}): MatmulCase => ({
    name,
    a: data(aShape),
    aShape,
    b: data(bShape),
    bShape,
    ...extra,
  });
  return [
    plain("129x257 @ 257x255", [129, 257], [257, 255]),
    plain("97x301 @ 301x113, A and B transposed", [97, 301], [301, 113], { transposeA: true, transposeB: true }),
    plain("7x1030 @ 1030x70", [7, 1030], [1030, 70]),
    plain("300x64 @ 64x520, B transposed", [300, 64], [64, 520], { transposeB: true }),
    plain("3x70x90 @ 90x80 (broadcast B)", [3, 70, 90], [90, 80]),
    plain("2x65x127 @ 2x127x33, A transposed", [2, 65, 127], [2, 127, 33], { transposeA: true }),
    plain("float16 96x200 @ 200x72", [96, 200], [200, 72], { dtype: "float16" }),
    plain("bfloat16 96x200 @ 200x72, B transposed", [96, 200], [200, 72], { dtype: "bfloat16", transposeB: true }),
    plain("384x384 @ 384x384", [384, 384], [384, 384]),
    plain("300x3600 @ 3600x300 (k packed in two stages)", [300, 3600], [3600, 300]),
  ];
}

if (import.meta.main) {
  const results = pathCases().map(runCase);
  const out = new Float32Array(results.reduce((n, r) => n + r.length, 0));
  let offset = 0;
  for (const r of results) {
    out.set(r, offset);
    offset += r.length;
  }
  await Bun.write(process.argv[2]!, out);
}
