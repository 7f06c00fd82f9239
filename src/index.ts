/**
 * lanes: array computations on GPU streams, concurrently and safely from any thread.
 *
 * ```ts
 * import * as lx from "lanes";
 * using s = lx.newStream();
 * const y = lx.softmax(lx.matmul(a, b, { stream: s }), -1, { stream: s });
 * await lx.evalAsync(y);
 * ```
 * @module
 */
export { array, arrayFromBytes, arrayFromId, LanesArray, tidy, type DType, type ElementDType, type NestedNumbers, type Tidied, type TypedArrayOf } from "./array.ts";
export {
  DeviceError,
  DisposedError,
  DTypeError,
  InvalidHandleError,
  LanesError,
  OutOfMemoryError,
  ShapeError,
  type ErrorCode,
} from "./errors.ts";
export { compile, Plan, planFromId, type CompiledFunction, type CompiledResult, type CompileOptions } from "./compile.ts";
export { eval, evalAsync } from "./eval.ts";
export { backendName, libraryPath } from "./native.ts";
export {
  abs,
  add,
  arange,
  argmax,
  argmin,
  astype,
  broadcastTo,
  concatenate,
  cos,
  divide,
  equal,
  exp,
  expandDims,
  full,
  gelu,
  greater,
  layerNorm,
  geluApprox,
  less,
  log,
  logsumexp,
  matmul,
  max,
  maximum,
  mean,
  min,
  minimum,
  multiply,
  negative,
  ones,
  power,
  quantizedMatmul,
  rmsNorm,
  rope,
  reshape,
  rsqrt,
  scaledDotProductAttention,
  sigmoid,
  silu,
  sin,
  slice,
  sliceUpdate,
  softmax,
  sqrt,
  square,
  squeeze,
  stack,
  subtract,
  sum,
  take,
  tanh,
  transpose,
  variance,
  where,
  zeros,
  type ArrayLike,
  type AttentionOptions,
  type RopeOptions,
  type SliceUpdateOptions,
  type CreationOptions,
  type ReduceOptions,
  type StreamOptions,
} from "./ops.ts";
export * as random from "./random.ts";
export { Scalar } from "./scalar.ts";
export * as debug from "./debug.ts";
export { clearCache, resetPeakMemory, setEpochBudget, setMemoryLimit, shutdown, stats, type Stats } from "./stats.ts";
export { currentStream, defaultStream, deviceCount, newStream, type NewStreamOptions, Stream, streamFromId, synchronize, withStream } from "./stream.ts";
