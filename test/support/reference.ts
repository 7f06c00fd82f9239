// Float64 reference implementations in plain JS, independent of the native code, and
// helpers to compare against them.

export type Shape = number[];

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function strides(shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = acc;
    acc *= shape[i]!;
  }
  return out;
}

export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)]!;
    const db = i < n - b.length ? 1 : b[i - (n - b.length)]!;
    if (da !== db && da !== 1 && db !== 1) throw new Error("no broadcast");
    out.push(da === 1 ? db : da);
  }
  return out;
}

// Index of `outIndex` (in `outShape`) inside an array of `shape` broadcast to `outShape`.
function broadcastIndex(outIndex: number, outShape: readonly number[], shape: readonly number[]): number {
  const off = outShape.length - shape.length;
  const st = strides(shape);
  let rem = outIndex;
  let idx = 0;
  for (let d = outShape.length - 1; d >= 0; d--) {
    const i = rem % outShape[d]!;
    rem = Math.floor(rem / outShape[d]!);
    if (d >= off && shape[d - off] !== 1) idx += i * st[d - off]!;
  }
  return idx;
}

export function refBinary(
  f: (x: number, y: number) => number,
  a: ArrayLike<number>,
  as: readonly number[],
  b: ArrayLike<number>,
  bs: readonly number[],
): { data: Float64Array; shape: number[] } {
  const shape = broadcastShapes(as, bs);
  const data = new Float64Array(numel(shape));
  for (let i = 0; i < data.length; i++) data[i] = f(a[broadcastIndex(i, shape, as)]!, b[broadcastIndex(i, shape, bs)]!);
  return { data, shape };
}

export function refMatmul(
  a: ArrayLike<number>,
  as: readonly number[],
  b: ArrayLike<number>,
  bs: readonly number[],
): { data: Float64Array; shape: number[] } {
  const M = as[as.length - 2]!, K = as[as.length - 1]!, N = bs[bs.length - 1]!;
  const batch = broadcastShapes(as.slice(0, -2), bs.slice(0, -2));
  const nb = numel(batch);
  const data = new Float64Array(nb * M * N);
  for (let bi = 0; bi < nb; bi++) {
    const ao = broadcastIndex(bi, batch, as.slice(0, -2)) * M * K;
    const bo = broadcastIndex(bi, batch, bs.slice(0, -2)) * K * N;
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += a[ao + i * K + k]! * b[bo + k * N + j]!;
        data[bi * M * N + i * N + j] = acc;
      }
  }
  return { data, shape: [...batch, M, N] };
}

export function refReduce(
  kind: "sum" | "max" | "mean",
  x: ArrayLike<number>,
  shape: readonly number[],
  axes: readonly number[] | undefined,
  keepdims: boolean,
): { data: Float64Array; shape: number[] } {
  const { groups, shape: outShape } = groupForReduce(x, shape, axes, keepdims);
  const total = (v: number[]) => v.reduce((s, x) => s + x, 0);
  const reduceGroup = {
    sum: total,
    mean: (v: number[]) => total(v) / v.length,
    max: (v: number[]) => (v.some(Number.isNaN) ? NaN : Math.max(...v)),
  }[kind];
  return { data: Float64Array.from(groups, reduceGroup), shape: outShape };
}

export function refSoftmax(x: ArrayLike<number>, shape: readonly number[], axis: number): Float64Array {
  const nd = shape.length;
  const a = axis < 0 ? axis + nd : axis;
  const L = shape[a]!;
  const inner = numel(shape.slice(a + 1));
  const outer = numel(shape.slice(0, a));
  const out = new Float64Array(numel(shape));
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let m = -Infinity;
      for (let l = 0; l < L; l++) m = Math.max(m, x[o * L * inner + l * inner + i]!);
      let s = 0;
      for (let l = 0; l < L; l++) s += Math.exp(x[o * L * inner + l * inner + i]! - m);
      for (let l = 0; l < L; l++) out[o * L * inner + l * inner + i] = Math.exp(x[o * L * inner + l * inner + i]! - m) / s;
    }
  return out;
}

// Deterministic test data (mulberry32), independent of lanes' own generator.
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomData(n: number, next: () => number, lo = -2, hi = 2): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * next();
  return out;
}

export function randomShape(next: () => number, ndim: number, maxDim = 7): number[] {
  return Array.from({ length: ndim }, () => 1 + Math.floor(next() * maxDim));
}

// Throws a readable error naming the first element outside |got - want| <= atol + rtol*|want|.
export function expectClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  { rtol = 1e-5, atol = 1e-6, what = "" }: { rtol?: number; atol?: number; what?: string } = {},
): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (Number.isNaN(w)) {
      if (!Number.isNaN(g)) throw new Error(`${what}: [${i}] got ${g}, want NaN`);
      continue;
    }
    if (!Number.isFinite(w)) {
      if (g !== w) throw new Error(`${what}: [${i}] got ${g}, want ${w}`);
      continue;
    }
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) throw new Error(`${what}: [${i}] got ${g}, want ${w}`);
  }
}

// Gathers, for every output of a reduction, its input values in increasing flat-index order.
export function groupForReduce(
  x: ArrayLike<number>,
  shape: readonly number[],
  axes: readonly number[] | undefined,
  keepdims: boolean,
): { groups: number[][]; shape: number[] } {
  const nd = shape.length;
  const ax = (axes ?? shape.map((_, i) => i)).map((a) => (a < 0 ? a + nd : a));
  const keepShape = shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const outShape = keepdims ? keepShape : shape.filter((_, i) => !ax.includes(i));
  const groups: number[][] = Array.from({ length: numel(keepShape) }, () => []);
  const st = strides(shape);
  const ost = strides(keepShape);
  for (let i = 0; i < numel(shape); i++) {
    let rem = i;
    let o = 0;
    for (let d = 0; d < nd; d++) {
      const idx = Math.floor(rem / st[d]!);
      rem -= idx * st[d]!;
      if (!ax.includes(d)) o += idx * ost[d]!;
    }
    groups[o]!.push(x[i]!);
  }
  return { groups, shape: outShape };
}

// erf in float64: Taylor series below 3, asymptotic erfc above (both far below float32 error).
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax, sum = ax;
    for (let n = 1; n < 60; n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  const z = 1 / (ax * ax);
  const erfc = (Math.exp(-ax * ax) / (ax * Math.sqrt(Math.PI))) * (1 - z / 2 + (3 * z * z) / 4 - (15 * z * z * z) / 8 + (105 * z ** 4) / 16);
  return Math.sign(x) * (1 - erfc);
}

// ---- shape-op references: plain index arithmetic ----

function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return idx;
}

function ravel(idx: readonly number[], shape: readonly number[]): number {
  let i = 0;
  for (let d = 0; d < shape.length; d++) i = i * shape[d]! + idx[d]!;
  return i;
}

export function refTranspose(x: ArrayLike<number>, shape: readonly number[], axes: readonly number[]) {
  const out = axes.map((a) => shape[a]!);
  const data = Array.from({ length: numel(out) }, (_, i) => {
    const oi = unravel(i, out);
    const src = new Array<number>(shape.length);
    axes.forEach((a, k) => (src[a] = oi[k]!));
    return x[ravel(src, shape)]!;
  });
  return { data, shape: out };
}

// Python slice semantics per axis, for the leading axes.
export function refSlice(x: ArrayLike<number>, shape: readonly number[], starts: number[], stops: number[], steps: number[]) {
  const picks = shape.map((dim, d) => {
    if (d >= starts.length) return Array.from({ length: dim }, (_, i) => i);
    const step = steps[d]!;
    const norm = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + dim : v, lo), hi);
    const start = step > 0 ? norm(starts[d]!, 0, dim) : norm(starts[d]!, -1, dim - 1);
    const stop = step > 0 ? norm(stops[d]!, 0, dim) : norm(stops[d]!, -1, dim - 1);
    const out: number[] = [];
    for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
    return out;
  });
  const out = picks.map((p) => p.length);
  const data = Array.from({ length: numel(out) }, (_, i) => x[ravel(unravel(i, out).map((k, d) => picks[d]![k]!), shape)]!);
  return { data, shape: out };
}

export function refTake(x: ArrayLike<number>, shape: readonly number[], indices: readonly number[], axis: number) {
  const dim = shape[axis]!;
  const out = [...shape.slice(0, axis), indices.length, ...shape.slice(axis + 1)];
  const data = Array.from({ length: numel(out) }, (_, i) => {
    const oi = unravel(i, out);
    const k = indices[oi[axis]!]!;
    oi[axis] = k < 0 ? k + dim : k;
    return x[ravel(oi, shape)]!;
  });
  return { data, shape: out };
}

export function refConcatenate(parts: { data: ArrayLike<number>; shape: number[] }[], axis: number) {
  const out = [...parts[0]!.shape];
  out[axis] = parts.reduce((s, p) => s + p.shape[axis]!, 0);
  const data = Array.from({ length: numel(out) }, (_, i) => {
    const oi = unravel(i, out);
    let k = oi[axis]!;
    for (const p of parts) {
      if (k < p.shape[axis]!) {
        oi[axis] = k;
        return p.data[ravel(oi, p.shape)]!;
      }
      k -= p.shape[axis]!;
    }
    throw new Error("unreachable");
  });
  return { data, shape: out };
}

/**
 * How rope angles are built: "float64" computes position · base^(-2i/dims) exactly; "float32" as
 * llama.cpp (and lanes' CPU backend) do: theta starts at the position and is multiplied by the
 * float32 base^(-2/dims) once per frequency, rounding to float32 each time, then scaled. The two
 * drift apart by about i · 2^-24 · theta, which at positions in the thousands exceeds float32
 * tolerances.
 */
export type RopeAngles = "float64" | "float32";

function ropeAngles(position: number, scale: number, dims: number, base: number, angles: RopeAngles): number[] {
  const half = dims / 2;
  if (angles === "float64") return Array.from({ length: half }, (_, i) => position * scale * Math.pow(base, (-2 * i) / dims));
  const f = Math.fround, step = f(Math.pow(base, f(-2 / dims)));
  const out: number[] = [];
  for (let i = 0, theta = f(position); i < half; i++, theta = f(theta * step)) out.push(f(f(scale) * theta));
  return out;
}

/**
 * Rotary embedding in float64 of x [N, ..., L, D]: row l of leading entry n sits at position
 * (start + l) · scale, where start is `starts` or, per entry, starts[n]. The first `dims`
 * features rotate as halves or (`traditional`) as adjacent pairs; the rest pass through.
 */
export function refRope(
  x: ArrayLike<number>, shape: readonly number[], dims: number, base: number, starts: number | readonly number[], traditional: boolean, scale = 1,
  angles: RopeAngles = "float64",
): Float64Array {
  const D = shape.at(-1)!, L = shape.at(-2)!;
  const rowsPerEntry = x.length / D / shape[0]!;
  const out = Float64Array.from(x);
  for (let r = 0; r < x.length / D; r++) {
    const start = typeof starts === "number" ? starts : starts[Math.floor(r / rowsPerEntry)]!;
    const thetas = ropeAngles(start + (r % L), scale, dims, base, angles);
    for (let i = 0; i < dims / 2; i++) {
      const theta = thetas[i]!;
      const [a, b] = traditional ? [2 * i, 2 * i + 1] : [i, i + dims / 2];
      const xa = x[r * D + a]!, xb = x[r * D + b]!;
      out[r * D + a] = xa * Math.cos(theta) - xb * Math.sin(theta);
      out[r * D + b] = xa * Math.sin(theta) + xb * Math.cos(theta);
    }
  }
  return out;
}

/** The dimensions of an attention: q [B, H, Lq, D], k [B, Hk, Lk, D], v [B, Hk, Lk, Dv]. */
export interface AttentionShape {
  B: number;
  H: number;
  Lq: number;
  D: number;
  Hk: number;
  Lk: number;
  Dv: number;
}

/**
 * Scaled dot-product attention in float64, scale 1/√D, query head h reading key head
 * h / (H / Hk). Entry b attends to its first `keyLength` (or keyLength[b]) keys, and with
 * `causal` query row i sees them up to i + keys − Lq (aligned to their end); a row that sees
 * none is 0.
 */
export function refAttention(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, { B, H, Lq, D, Hk, Lk, Dv }: AttentionShape,
  keyLength: number | readonly number[], causal: boolean,
): Float64Array {
  const out = new Float64Array(B * H * Lq * Dv);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++) {
    const keys = typeof keyLength === "number" ? keyLength : keyLength[b]!;
    for (let h = 0; h < H; h++) {
      const kv = b * Hk + Math.floor(h / (H / Hk));
      for (let i = 0; i < Lq; i++) {
        const seen = causal ? Math.min(keys, Math.max(0, i + keys - Lq + 1)) : keys;
        const s: number[] = [];
        for (let j = 0; j < seen; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[((b * H + h) * Lq + i) * D + d]! * k[(kv * Lk + j) * D + d]!;
          s.push(dot * scale);
        }
        const m = Math.max(...s);
        const p = s.map((x) => Math.exp(x - m));
        const total = p.reduce((a, x) => a + x, 0);
        for (let d = 0; d < Dv; d++) {
          let acc = 0;
          p.forEach((pj, j) => (acc += pj * v[(kv * Lk + j) * Dv + d]!));
          out[((b * H + h) * Lq + i) * Dv + d] = seen ? acc / total : 0;
        }
      }
    }
  }
  return out;
}
