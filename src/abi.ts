/**
 * The C ABI as TypeScript sees it: the symbols of `ffi/include/lanes.h` with their FFI types,
 * and the codes of `ffi/include/lanes_table.def` (dtypes, status codes, ops). `test/abi.test.ts`
 * checks every entry here against those two files, so they cannot drift.
 * @module
 */
import { FFIType } from "bun:ffi";

const { i32, u32, i64, u64, f64, cstring } = FFIType;
const pointer = FFIType.ptr;

/**
 * The C ABI version these declarations match (`LANES_ABI_VERSION` in lanes.h). A library that
 * reports another through `lanes_abi_version_read` is refused when it loads.
 */
export const abiVersion = 3;

/** Every exported function of liblanes, with its argument and result types. */
export const symbols = {
  lanes_abi_version_read: { args: [pointer], returns: i32 },
  lanes_last_error: { args: [], returns: cstring },
  lanes_last_error_code: { args: [], returns: i32 },
  lanes_backend_name: { args: [], returns: cstring },
  lanes_stats_read: { args: [pointer, i32], returns: i32 },
  lanes_stats_reset_peak: { args: [], returns: i32 },
  lanes_set_memory_limit: { args: [u64], returns: i32 },
  lanes_clear_cache: { args: [], returns: i32 },
  lanes_set_epoch_budget: { args: [u32, u64], returns: i32 },
  lanes_thread_track_handles: { args: [i32], returns: i32 },
  lanes_shutdown: { args: [], returns: i32 },
  lanes_debug_fail_next_epochs: { args: [u64, u32], returns: i32 },
  lanes_debug_pause_stream: { args: [u64, i32], returns: i32 },
  lanes_debug_fail_next_encode: { args: [u64, u32], returns: i32 },
  lanes_stream_new: { args: [pointer], returns: i32 },
  lanes_stream_new_on: { args: [i32, pointer], returns: i32 },
  lanes_device_count: { args: [pointer], returns: i32 },
  lanes_stream_default: { args: [pointer], returns: i32 },
  lanes_stream_retain: { args: [u64], returns: i32 },
  lanes_stream_release: { args: [u64], returns: i32 },
  lanes_stream_synchronize: { args: [u64], returns: i32 },
  lanes_array_from_data: { args: [pointer, u64, i32, pointer, i32, pointer], returns: i32 },
  lanes_array_full: { args: [f64, i32, pointer, i32, u64, pointer], returns: i32 },
  lanes_array_arange: { args: [f64, f64, f64, i32, u64, pointer], returns: i32 },
  lanes_array_random: { args: [i32, u64, f64, f64, pointer, i32, u64, pointer], returns: i32 },
  lanes_array_unary: { args: [i32, u64, u64, pointer], returns: i32 },
  lanes_array_binary: { args: [i32, u64, u64, u64, pointer], returns: i32 },
  lanes_array_binary_scalar: { args: [i32, u64, f64, i32, i32, u64, pointer], returns: i32 },
  lanes_array_matmul: { args: [u64, u64, u64, pointer], returns: i32 },
  lanes_array_reduce: { args: [i32, u64, pointer, i32, i32, u64, pointer], returns: i32 },
  lanes_array_softmax: { args: [u64, i32, u64, pointer], returns: i32 },
  lanes_array_where: { args: [u64, u64, u64, u64, pointer], returns: i32 },
  lanes_array_reshape: { args: [u64, pointer, i32, u64, pointer], returns: i32 },
  lanes_array_transpose: { args: [u64, pointer, i32, u64, pointer], returns: i32 },
  lanes_array_broadcast_to: { args: [u64, pointer, i32, u64, pointer], returns: i32 },
  lanes_array_expand_dims: { args: [u64, pointer, i32, u64, pointer], returns: i32 },
  lanes_array_squeeze: { args: [u64, pointer, i32, u64, pointer], returns: i32 },
  lanes_array_slice: { args: [u64, pointer, pointer, pointer, i32, u64, pointer], returns: i32 },
  lanes_array_concatenate: { args: [pointer, i32, i32, i32, u64, pointer], returns: i32 },
  lanes_array_take: { args: [u64, u64, i32, u64, pointer], returns: i32 },
  lanes_array_rms_norm: { args: [u64, u64, f64, u64, pointer], returns: i32 },
  lanes_array_layer_norm: { args: [u64, u64, u64, f64, u64, pointer], returns: i32 },
  lanes_array_attention: { args: [u64, u64, u64, f64, i32, i64, i32, u64, pointer], returns: i32 },
  lanes_array_rope: { args: [u64, i32, i32, f64, f64, i64, i32, u64, pointer], returns: i32 },
  lanes_array_slice_update: { args: [u64, u64, i32, i64, i32, u64, pointer], returns: i32 },
  lanes_array_rope_rows: { args: [u64, i32, i32, f64, f64, u64, u64, pointer], returns: i32 },
  lanes_array_slice_update_rows: { args: [u64, u64, i32, u64, u64, pointer], returns: i32 },
  lanes_array_attention_rows: { args: [u64, u64, u64, f64, i32, u64, u64, pointer], returns: i32 },
  lanes_array_quantized_matmul: { args: [u64, u64, u64, pointer], returns: i32 },
  lanes_array_astype: { args: [u64, i32, u64, pointer], returns: i32 },
  lanes_array_info: { args: [u64, pointer, pointer, pointer, i32], returns: i32 },
  lanes_array_read: { args: [u64, pointer, u64], returns: i32 },
  lanes_array_retain: { args: [u64], returns: i32 },
  lanes_array_release: { args: [u64], returns: i32 },
  lanes_eval: { args: [pointer, i32], returns: i32 },
  lanes_eval_async: { args: [pointer, i32, u64, u64, u32, pointer], returns: i32 },
  lanes_array_placeholder: { args: [i32, pointer, i32, pointer], returns: i32 },
  lanes_plan_new: { args: [pointer, i32, pointer, i32, i32, pointer, pointer, pointer], returns: i32 },
  lanes_plan_retain: { args: [u64], returns: i32 },
  lanes_plan_release: { args: [u64], returns: i32 },
  lanes_plan_run: { args: [u64, u64, pointer, i32, pointer, i32, pointer, i32], returns: i32 },
  lanes_plan_info: { args: [u64, pointer, pointer, pointer, pointer, pointer], returns: i32 },
  lanes_plan_meta: { args: [u64, pointer, i32, pointer], returns: i32 },
  lanes_logits_sample: { args: [pointer, i64, f64, i64, f64, f64, pointer, pointer], returns: i32 },
  lanes_completion_queue_new: { args: [pointer], returns: i32 },
  lanes_completion_queue_release: { args: [u64], returns: i32 },
  lanes_completion_queue_drain: { args: [u64, pointer, pointer, i32, pointer], returns: i32 },
  lanes_completion_queue_wait: { args: [u64, u32], returns: i32 },
  lanes_completion_queue_fd: { args: [u64, pointer], returns: i32 },
} as const;

/** Element types. Quantized types (`q4_0`, `q4_1`, `q8_0`) hold weights in ggml's 32-element blocks. */
export type DType = "float32" | "int32" | "bool" | "float16" | "bfloat16" | "q4_0" | "q4_1" | "q8_0";

/** The dtypes that hold one value per element (every dtype but the quantized ones). */
export type ElementDType = Exclude<DType, "q4_0" | "q4_1" | "q8_0">;

/** dtype → `lanes_dtype` code, bytes per element (per block when quantized) and block size. */
export const dtypes: Record<DType, { code: number; bytes: number; block: number }> = {
  float32: { code: 0, bytes: 4, block: 1 },
  int32: { code: 1, bytes: 4, block: 1 },
  bool: { code: 2, bytes: 1, block: 1 },
  float16: { code: 3, bytes: 2, block: 1 },
  bfloat16: { code: 4, bytes: 2, block: 1 },
  q4_0: { code: 5, bytes: 18, block: 32 },
  q4_1: { code: 6, bytes: 20, block: 32 },
  q8_0: { code: 7, bytes: 34, block: 32 },
};

/** Status codes of the C ABI (`lanes_status`). */
export const Status = {
  ok: 0,
  invalidArgument: 1,
  shape: 2,
  dtype: 3,
  invalidHandle: 4,
  disposed: 5,
  device: 6,
  outOfMemory: 7,
  internal: 8,
} as const;

/** Unary op codes (`lanes_unary_op`). */
export const unaryOps = {
  exp: 0,
  log: 1,
  negative: 2,
  abs: 3,
  square: 4,
  sqrt: 5,
  rsqrt: 6,
  tanh: 7,
  sigmoid: 8,
  silu: 9,
  gelu: 10,
  geluApprox: 11,
  sin: 12,
  cos: 13,
} as const;

/** Binary op codes (`lanes_binary_op`). */
export const binaryOps = {
  add: 0,
  subtract: 1,
  multiply: 2,
  divide: 3,
  maximum: 4,
  minimum: 5,
  power: 6,
  equal: 7,
  less: 8,
  greater: 9,
} as const;

/** Reduction codes (`lanes_reduce_op`). */
export const reduceOps = {
  sum: 0,
  max: 1,
  mean: 2,
  min: 3,
  logsumexp: 4,
  variance: 5,
  argmax: 6,
  argmin: 7,
} as const;

/** Random distributions (`lanes_random_kind`). */
export const randomKinds = { uniform: 0, normal: 1 } as const;
