/**
 * Array creation and ops. Every op is lazy: it records a graph node on a stream and returns
 * at once; {@link eval} or reading the array computes it.
 * @module
 */
import { binaryOps, reduceOps, unaryOps } from "./abi.ts";
import { array, dtypeCode, LanesArray, shapeBuffer, type DType } from "./array.ts";
import { ShapeError } from "./errors.ts";
import { callForHandle, native, outPtr } from "./native.ts";
import { Scalar } from "./scalar.ts";
import { currentStream, type Stream } from "./stream.ts";

/** Options every op takes. */
export interface StreamOptions {
  /** The stream to run on; defaults to the current stream (see `withStream`). */
  stream?: Stream;
}

/** Options of reductions. */
export interface ReduceOptions extends StreamOptions {
  /** Keep reduced axes as size-1 dimensions. */
  keepdims?: boolean;
}

/** Options of creation ops. */
export interface CreationOptions extends StreamOptions {
  /** Element type (default float32). */
  dtype?: DType;
}

/**
 * An array, or a scalar that broadcasts. A number is passed to the kernel as a parameter (it
 * never becomes an array) and is weakly typed, as in MLX: `multiply(halfArray, 0.5)` stays
 * float16, `add(intArray, 1)` stays int32. Inside a compiled function a {@link Scalar}
 * parameter may stand in for the number.
 */
export type ArrayLike = LanesArray | number | Scalar;

function streamHandle(opts?: StreamOptions): number {
  return (opts?.stream ?? currentStream()).handle();
}

function asArray(x: ArrayLike, op: string): LanesArray {
  if (x instanceof Scalar) throw new ShapeError(`${op}: a compiled function's scalar parameter cannot be an operand here (only of arithmetic and comparisons)`);
  if (typeof x === "number") return array(x);
  if (!(x instanceof LanesArray)) throw new ShapeError(`${op}: an operand is ${describe(x)}, not an array or a number`);
  return x;
}

function describe(x: unknown): string {
  return x === null ? "null" : x === undefined ? "undefined" : typeof x === "object" ? (x.constructor?.name ?? "an object") : typeof x;
}

// A number an op takes as is (a stand-in for a compiled function's scalar cannot take its place).
function num(x: unknown, op: string, what: string): number {
  if (typeof x !== "number") throw new ShapeError(`${op}: ${what} must be a number, got ${describe(x)}`);
  return x;
}

// A number or a compiled function's scalar parameter, that must be an integer (a position).
function position(x: number | Scalar, op: string, what: string): number | Scalar {
  if (x instanceof Scalar) return x;
  if (!Number.isSafeInteger(x)) throw new ShapeError(`${op}: ${what} must be an integer, got ${String(x)}`);
  return x;
}

// A plan parameter index for a scalar stand-in, or -1 for a plain number.
function scalarParam(x: number | Scalar): number {
  return x instanceof Scalar ? x.index : -1;
}
// The number an op is built with: a stand-in's traced value.
function scalarValue(x: number | Scalar): number {
  return x instanceof Scalar ? x.traced : x;
}

function wrap(status: number): LanesArray {
  return new LanesArray(callForHandle(status));
}

// ---- creation ----

/** An array of `shape` filled with `value`. */
export function full(shape: readonly number[], value: number, opts?: CreationOptions): LanesArray {
  const dims = shapeBuffer(shape, "full");
  return wrap(
    native.lanes_array_full(num(value, "full", "the value"), dtypeCode(opts?.dtype ?? "float32"), dims.length ? dims : null, dims.length, streamHandle(opts), outPtr),
  );
}

/** An array of zeros. */
export function zeros(shape: readonly number[], opts?: CreationOptions): LanesArray {
  return full(shape, 0, opts);
}

/** An array of ones. */
export function ones(shape: readonly number[], opts?: CreationOptions): LanesArray {
  return full(shape, 1, opts);
}

/**
 * Evenly spaced values in [start, stop). `arange(n)` counts 0..n-1. The dtype defaults to
 * float32.
 */
export function arange(start: number, stop?: number, step?: number, opts?: CreationOptions): LanesArray {
  const [lo, hi] = stop === undefined ? [0, start] : [start, stop];
  return wrap(
    native.lanes_array_arange(num(lo, "arange", "start"), num(hi, "arange", "stop"), num(step ?? 1, "arange", "step"), dtypeCode(opts?.dtype ?? "float32"), streamHandle(opts), outPtr),
  );
}

// ---- elementwise ----

function unary(op: keyof typeof unaryOps, a: LanesArray, opts?: StreamOptions): LanesArray {
  return wrap(native.lanes_array_unary(unaryOps[op], a.handle(), streamHandle(opts), outPtr));
}

function binary(op: keyof typeof binaryOps, a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  const code = binaryOps[op];
  if (a instanceof LanesArray && b instanceof LanesArray)
    return wrap(native.lanes_array_binary(code, a.handle(), b.handle(), streamHandle(opts), outPtr));
  const isScalar = (x: ArrayLike): x is number | Scalar => typeof x === "number" || x instanceof Scalar;
  if (a instanceof LanesArray && isScalar(b))
    return wrap(native.lanes_array_binary_scalar(code, a.handle(), scalarValue(b), 0, scalarParam(b), streamHandle(opts), outPtr));
  if (b instanceof LanesArray && isScalar(a))
    return wrap(native.lanes_array_binary_scalar(code, b.handle(), scalarValue(a), 1, scalarParam(a), streamHandle(opts), outPtr));
  if (!(typeof a === "number" || a instanceof Scalar) || !(typeof b === "number" || b instanceof Scalar))
    throw new ShapeError(`${op}: an operand is ${describe(typeof a === "number" || a instanceof Scalar ? b : a)}, not an array or a number`);
  // Two scalars: a one-element array holds the first.
  const left = array(scalarValue(a));
  try {
    return binary(op, left, b, opts);
  } finally {
    left.dispose();
  }
}

/** e^a, elementwise. */
export function exp(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("exp", a, opts);
}
/** Natural logarithm, elementwise. */
export function log(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("log", a, opts);
}
/** -a, elementwise. */
export function negative(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("negative", a, opts);
}

/** |a|, elementwise (int32 stays int32). */
export function abs(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("abs", a, opts);
}
/** a², elementwise (int32 stays int32). */
export function square(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("square", a, opts);
}
/** √a, elementwise. */
export function sqrt(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("sqrt", a, opts);
}
/** 1/√a, elementwise. */
export function rsqrt(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("rsqrt", a, opts);
}
/** tanh(a), elementwise. */
export function tanh(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("tanh", a, opts);
}
/** 1 / (1 + e^-a), elementwise. */
export function sigmoid(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("sigmoid", a, opts);
}
/** a · sigmoid(a), elementwise. */
export function silu(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("silu", a, opts);
}
/** GELU, exact form: a · Φ(a) = a/2 · (1 + erf(a/√2)). */
export function gelu(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("gelu", a, opts);
}
/** GELU, tanh approximation: a/2 · (1 + tanh(√(2/π) · (a + 0.044715 a³))). */
export function geluApprox(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("geluApprox", a, opts);
}
/** sin(a), elementwise. */
export function sin(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("sin", a, opts);
}
/** cos(a), elementwise. */
export function cos(a: LanesArray, opts?: StreamOptions): LanesArray {
  return unary("cos", a, opts);
}

/** a + b with broadcasting. */
export function add(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("add", a, b, opts);
}
/** a - b with broadcasting. */
export function subtract(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("subtract", a, b, opts);
}
/** a * b with broadcasting. */
export function multiply(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("multiply", a, b, opts);
}
/** a / b with broadcasting (always floating point). */
export function divide(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("divide", a, b, opts);
}
/** Elementwise maximum with broadcasting; NaN propagates. */
export function maximum(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("maximum", a, b, opts);
}

/** Elementwise minimum with broadcasting; NaN propagates. */
export function minimum(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("minimum", a, b, opts);
}
/** a ** b with broadcasting (always floating point). */
export function power(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("power", a, b, opts);
}

/** a == b elementwise with broadcasting, as bool (NaN is unequal to everything). */
export function equal(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("equal", a, b, opts);
}
/** a < b elementwise with broadcasting, as bool. */
export function less(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("less", a, b, opts);
}
/** a > b elementwise with broadcasting, as bool. */
export function greater(a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return binary("greater", a, b, opts);
}

/** `cond ? a : b` elementwise, broadcasting all three; `cond` is converted to bool. */
export function where(cond: ArrayLike, a: ArrayLike, b: ArrayLike, opts?: StreamOptions): LanesArray {
  return wrap(native.lanes_array_where(asArray(cond, "where").handle(), asArray(a, "where").handle(), asArray(b, "where").handle(), streamHandle(opts), outPtr));
}

/**
 * Converts to another dtype: float→int truncates and saturates (NaN becomes 0), →bool is
 * "not zero", →float16/bfloat16 rounds to nearest even.
 */
export function astype(a: LanesArray, dtype: DType, opts?: StreamOptions): LanesArray {
  return wrap(native.lanes_array_astype(a.handle(), dtypeCode(dtype), streamHandle(opts), outPtr));
}

// ---- shape ops (strided views where the layout allows: no copy) ----

function axesBuffer(axes: number | readonly number[]): Int32Array {
  return Int32Array.from(typeof axes === "number" ? [axes] : axes);
}

function int64s(values: readonly number[], op: string): BigInt64Array {
  return BigInt64Array.from(values, (v) => {
    if (!Number.isSafeInteger(v)) throw new ShapeError(`${op}: ${v} is not an integer`);
    return BigInt(v);
  });
}

/**
 * The same data in a new shape (one dimension may be -1). A view, also of a strided `a` where
 * strides can express the new shape (numpy's rule); otherwise `a` is copied to contiguous first.
 */
export function reshape(a: LanesArray, shape: readonly number[], opts?: StreamOptions): LanesArray {
  const dims = int64s(shape, "reshape");
  return wrap(native.lanes_array_reshape(a.handle(), dims.length ? dims : null, dims.length, streamHandle(opts), outPtr));
}

/** Permutes the axes (default: reverses them). A view. */
export function transpose(a: LanesArray, axes?: readonly number[], opts?: StreamOptions): LanesArray {
  const ax = axes === undefined ? null : axesBuffer(axes);
  return wrap(native.lanes_array_transpose(a.handle(), ax && ax.length ? ax : null, ax === null ? -1 : ax.length, streamHandle(opts), outPtr));
}

/** Broadcasts to `shape` (numpy rules). A view with zero strides. */
export function broadcastTo(a: LanesArray, shape: readonly number[], opts?: StreamOptions): LanesArray {
  const dims = shapeBuffer(shape, "broadcastTo");
  return wrap(native.lanes_array_broadcast_to(a.handle(), dims.length ? dims : null, dims.length, streamHandle(opts), outPtr));
}

/** Inserts size-1 axes at `axis` (positions in the result). A view. */
export function expandDims(a: LanesArray, axis: number | readonly number[], opts?: StreamOptions): LanesArray {
  const ax = axesBuffer(axis);
  return wrap(native.lanes_array_expand_dims(a.handle(), ax.length ? ax : null, ax.length, streamHandle(opts), outPtr));
}

/** Removes size-1 axes (`axis`, or all of them). A view. */
export function squeeze(a: LanesArray, axis?: number | readonly number[], opts?: StreamOptions): LanesArray {
  const ax = axis === undefined ? null : axesBuffer(axis);
  return wrap(native.lanes_array_squeeze(a.handle(), ax && ax.length ? ax : null, ax === null ? -1 : ax.length, streamHandle(opts), outPtr));
}

/**
 * `a[starts[0]:stops[0]:steps[0], ...]` over the leading axes, with Python's rules (negative
 * indices count from the end, then clamp; negative steps go backwards). A view.
 */
export function slice(
  a: LanesArray,
  starts: readonly number[],
  stops: readonly number[],
  steps?: readonly number[],
  opts?: StreamOptions,
): LanesArray {
  const b = int64s(starts, "slice"), e = int64s(stops, "slice"), st = steps ? int64s(steps, "slice") : null;
  if (e.length !== b.length || (st && st.length !== b.length))
    throw new ShapeError(`slice: starts, stops and steps need the same length (${b.length}, ${e.length}, ${st?.length ?? "-"})`);
  return wrap(
    native.lanes_array_slice(a.handle(), b.length ? b : null, e.length ? e : null, st && st.length ? st : null, b.length, streamHandle(opts), outPtr),
  );
}

function join(arrays: readonly LanesArray[], axis: number, stack: boolean, opts?: StreamOptions): LanesArray {
  const ids = BigUint64Array.from(arrays, (x) => BigInt(x.handle()));
  return wrap(native.lanes_array_concatenate(ids.length ? ids : null, ids.length, axis, stack ? 1 : 0, streamHandle(opts), outPtr));
}

/** Joins arrays along an existing axis (dtypes promote). */
export function concatenate(arrays: readonly LanesArray[], axis = 0, opts?: StreamOptions): LanesArray {
  return join(arrays, axis, false, opts);
}

/** Joins same-shaped arrays along a new axis. */
export function stack(arrays: readonly LanesArray[], axis = 0, opts?: StreamOptions): LanesArray {
  return join(arrays, axis, true, opts);
}

/**
 * Gathers entries of `a` along `axis` at integer `indices` (the embedding lookup). Negative
 * indices count from the end; an index out of range makes evaluation fail with a
 * `DeviceError` naming it.
 */
export function take(a: LanesArray, indices: LanesArray | readonly number[], axis = 0, opts?: StreamOptions): LanesArray {
  const idx = indices instanceof LanesArray ? indices : array(Int32Array.from(indices));
  return wrap(native.lanes_array_take(a.handle(), idx.handle(), axis, streamHandle(opts), outPtr));
}

// ---- fused ops (one kernel each, like MLX's `fast` namespace) ----

/** RMS normalization over the last axis: `x / sqrt(mean(x²) + eps) * weight`. */
export function rmsNorm(x: LanesArray, weight: LanesArray | null, eps = 1e-5, opts?: StreamOptions): LanesArray {
  return wrap(native.lanes_array_rms_norm(x.handle(), weight ? weight.handle() : 0, num(eps, "rmsNorm", "eps"), streamHandle(opts), outPtr));
}

/** Layer normalization over the last axis: `(x - mean) / sqrt(var + eps) * weight + bias`. */
export function layerNorm(
  x: LanesArray,
  weight: LanesArray | null = null,
  bias: LanesArray | null = null,
  eps = 1e-5,
  opts?: StreamOptions,
): LanesArray {
  return wrap(
    native.lanes_array_layer_norm(x.handle(), weight ? weight.handle() : 0, bias ? bias.handle() : 0, num(eps, "layerNorm", "eps"), streamHandle(opts), outPtr),
  );
}

/** Options of {@link scaledDotProductAttention}. */
export interface AttentionOptions extends StreamOptions {
  /** Multiplies q·k (default 1/√dim). */
  scale?: number;
  /** Mask future keys; aligned to the end of the keys in use when they outnumber the queries (a KV cache). */
  causal?: boolean;
  /**
   * Attend over the first `keyLength` keys and values only (default: all): a KV cache
   * preallocated to its full length is attended over its filled prefix, with no slicing. An
   * int32 array `[batch]` gives each batch entry its own key length (a batch of sequences at
   * different positions); a length out of range fails the evaluation with a device error.
   */
  keyLength?: number | Scalar | LanesArray;
}

/**
 * `softmax(q kᵀ · scale [+ causal mask]) v` for `[batch, heads, seq, dim]` inputs, fused and
 * numerically stable. k/v may have fewer heads than q (grouped-query attention); a query that
 * sees no key gets zeros. Mixed dtypes compute in their common type, except a float32 q over
 * float16 k and v (a float16 KV cache): the cache is read as it is and the result is float32, as
 * llama.cpp's flash attention computes it; q is rounded to float16 for the scores, except on the
 * CPU for 64 query rows or more with a value size that is a multiple of 16 (llama.cpp's tiled
 * path, which keeps q float32).
 */
export function scaledDotProductAttention(q: LanesArray, k: LanesArray, v: LanesArray, opts?: AttentionOptions): LanesArray {
  const scale = num(opts?.scale ?? NaN, "scaledDotProductAttention", "scale");
  if (opts?.keyLength instanceof LanesArray)
    return wrap(
      native.lanes_array_attention_rows(q.handle(), k.handle(), v.handle(), scale, opts.causal ? 1 : 0, opts.keyLength.handle(), streamHandle(opts), outPtr),
    );
  const keyLength = position(opts?.keyLength ?? -1, "scaledDotProductAttention", "keyLength");
  return wrap(
    native.lanes_array_attention(
      q.handle(),
      k.handle(),
      v.handle(),
      scale,
      opts?.causal ? 1 : 0,
      scalarValue(keyLength),
      scalarParam(keyLength),
      streamHandle(opts),
      outPtr,
    ),
  );
}

/** Options of {@link rope}. */
export interface RopeOptions extends StreamOptions {
  /** Frequency base (default 10000). */
  base?: number;
  /**
   * Position of the first row along the sequence axis (default 0), for incremental decoding. An
   * int32 array `[batch]` gives each entry of the leading axis its own position (`x` is then
   * `[batch, ..., seq, dim]`): a batch of sequences decoding at different positions.
   */
  offset?: number | Scalar | LanesArray;
  /** Positions are multiplied by this (default 1). */
  scale?: number;
  /** Rotate neighbouring pairs (2i, 2i+1) instead of halves (i, i + dims/2, the Llama/HF layout). */
  traditional?: boolean;
}

/**
 * Rotary position embeddings over the first `dims` features of `[..., seq, dim]`: pair i at
 * position p turns by `p · base^(-2i/dims)`.
 */
export function rope(x: LanesArray, dims: number, opts?: RopeOptions): LanesArray {
  const [d, traditional, base, scale] = [num(dims, "rope", "dims"), opts?.traditional ? 1 : 0, num(opts?.base ?? 10000, "rope", "base"), num(opts?.scale ?? 1, "rope", "scale")];
  if (opts?.offset instanceof LanesArray)
    return wrap(native.lanes_array_rope_rows(x.handle(), d, traditional, base, scale, opts.offset.handle(), streamHandle(opts), outPtr));
  const offset = position(opts?.offset ?? 0, "rope", "offset");
  return wrap(
    native.lanes_array_rope(
      x.handle(),
      d,
      traditional,
      base,
      scale,
      scalarValue(offset),
      scalarParam(offset),
      streamHandle(opts),
      outPtr,
    ),
  );
}

/** Options of {@link sliceUpdate}. */
export interface SliceUpdateOptions extends StreamOptions {
  /** The axis `offset` counts along (default 0). */
  axis?: number;
}

/**
 * `target` with `update` written at `offset` along `axis` (every other axis matches). When
 * nothing else can see the target's memory (its array disposed, no other array built from it,
 * no work in flight on it), the update is written in place: a preallocated KV cache grows by
 * one token without a copy. Otherwise the target is copied first. Either way the result is a
 * new array and the target keeps its values.
 *
 * An int32 array `offset` of shape `[target.shape[0]]` writes each entry of the leading axis at
 * its own offset (along an `axis` other than 0): one token for each of a batch of KV caches at
 * different positions. An offset out of range fails the evaluation with a device error.
 */
export function sliceUpdate(target: LanesArray, update: LanesArray, offset: number | Scalar | LanesArray, opts?: SliceUpdateOptions): LanesArray {
  if (offset instanceof LanesArray)
    return wrap(native.lanes_array_slice_update_rows(target.handle(), update.handle(), opts?.axis ?? 0, offset.handle(), streamHandle(opts), outPtr));
  offset = position(offset, "sliceUpdate", "offset");
  return wrap(
    native.lanes_array_slice_update(
      target.handle(),
      update.handle(),
      opts?.axis ?? 0,
      scalarValue(offset),
      scalarParam(offset),
      streamHandle(opts),
      outPtr,
    ),
  );
}

// ---- matmul ----

/** Matrix product of `[..., M, K]` and `[..., K, N]`; batch dimensions broadcast. */
export function matmul(a: LanesArray, b: LanesArray, opts?: StreamOptions): LanesArray {
  return wrap(native.lanes_array_matmul(a.handle(), b.handle(), streamHandle(opts), outPtr));
}

/**
 * `x @ wᵀ` for weights `w` of shape `[n, k]` kept quantized (`q4_0`, `q4_1`, `q8_0`, as a GGUF
 * file stores them): `x` is `[..., k]`, the result float32 `[..., n]`. Weights are read in
 * their blocks; activations are quantized to 8 bits per block on the way, as llama.cpp does.
 */
export function quantizedMatmul(x: LanesArray, w: LanesArray, opts?: StreamOptions): LanesArray {
  return wrap(native.lanes_array_quantized_matmul(x.handle(), w.handle(), streamHandle(opts), outPtr));
}

// ---- reductions ----

function reduce(op: keyof typeof reduceOps, a: LanesArray, axis: number | readonly number[] | undefined, opts?: ReduceOptions): LanesArray {
  const axes = axis === undefined ? null : Int32Array.from(typeof axis === "number" ? [axis] : axis);
  const count = axes === null ? -1 : axes.length;
  return wrap(
    native.lanes_array_reduce(reduceOps[op], a.handle(), axes && axes.length ? axes : null, count, opts?.keepdims ? 1 : 0, streamHandle(opts), outPtr),
  );
}

/** Sum over `axis` (one or several; all when omitted). */
export function sum(a: LanesArray, axis?: number | readonly number[], opts?: ReduceOptions): LanesArray {
  return reduce("sum", a, axis, opts);
}
/** Maximum over `axis` (one or several; all when omitted); NaN propagates. */
export function max(a: LanesArray, axis?: number | readonly number[], opts?: ReduceOptions): LanesArray {
  return reduce("max", a, axis, opts);
}
/** Mean over `axis` (one or several; all when omitted). */
export function mean(a: LanesArray, axis?: number | readonly number[], opts?: ReduceOptions): LanesArray {
  return reduce("mean", a, axis, opts);
}

/** Minimum over `axis` (one or several; all when omitted); NaN propagates. */
export function min(a: LanesArray, axis?: number | readonly number[], opts?: ReduceOptions): LanesArray {
  return reduce("min", a, axis, opts);
}
/** log(sum(exp(a))) over `axis`, computed stably (max-shifted). */
export function logsumexp(a: LanesArray, axis?: number | readonly number[], opts?: ReduceOptions): LanesArray {
  return reduce("logsumexp", a, axis, opts);
}
/** Population variance (ddof 0) over `axis`, two-pass. */
export function variance(a: LanesArray, axis?: number | readonly number[], opts?: ReduceOptions): LanesArray {
  return reduce("variance", a, axis, opts);
}
/** Index (int32) of the first maximum along `axis`, or of the flattened array when omitted. */
export function argmax(a: LanesArray, axis?: number, opts?: ReduceOptions): LanesArray {
  return reduce("argmax", a, axis, opts);
}
/** Index (int32) of the first minimum along `axis`, or of the flattened array when omitted. */
export function argmin(a: LanesArray, axis?: number, opts?: ReduceOptions): LanesArray {
  return reduce("argmin", a, axis, opts);
}

/** Softmax along `axis` (default: the last), numerically stable. */
export function softmax(a: LanesArray, axis = -1, opts?: StreamOptions): LanesArray {
  return wrap(native.lanes_array_softmax(a.handle(), axis, streamHandle(opts), outPtr));
}
