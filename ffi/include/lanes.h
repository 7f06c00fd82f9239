/*
 * lanes — C ABI.
 *
 * Streams and arrays are 53-bit-safe integer handles (kind tag, generation, slot). Every call
 * returns a lanes_status (0 = ok); on failure lanes_last_error() holds a message for the
 * calling thread. No C++ exception or abort crosses this boundary.
 *
 * Usage:
 *
 *   uint64_t s, a, b, y;
 *   float data[6] = {1, 2, 3, 4, 5, 6};
 *   int64_t shape[2] = {2, 3};
 *   lanes_stream_new(&s);
 *   lanes_array_from_data(data, sizeof data, LANES_FLOAT32, shape, 2, &a);
 *   lanes_array_unary(LANES_OP_EXP, a, s, &b);
 *   lanes_array_softmax(b, -1, s, &y);
 *   if (lanes_eval(&y, 1) != LANES_OK) fprintf(stderr, "%s\n", lanes_last_error());
 *   float out[6];
 *   lanes_array_read(y, out, sizeof out);
 *   lanes_array_release(a); lanes_array_release(b); lanes_array_release(y);
 *   lanes_stream_release(s);
 *
 * Threading: every function may be called from any thread at any time unless its line says
 * otherwise. Handles are not tied to the thread that made them.
 */
#ifndef LANES_H
#define LANES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define LANES_API __declspec(dllexport)
#else
#define LANES_API __attribute__((visibility("default")))
#endif

/* The codes below come from lanes_table.def, the one table of dtypes, status codes and ops. */
typedef int32_t lanes_status;
enum {
#define LANES_STATUS(code, NAME, name) LANES_##NAME = code,
#include "lanes_table.def"
};

typedef int32_t lanes_dtype;
enum {
#define LANES_DTYPE(code, NAME, name, bytes, block) LANES_##NAME = code,
#include "lanes_table.def"
};

typedef int32_t lanes_unary_op;
enum {
#define LANES_UNARY(code, NAME, name, rule) LANES_OP_##NAME = code,
#include "lanes_table.def"
};

typedef int32_t lanes_binary_op;
enum {
#define LANES_BINARY(code, NAME, name, rule) LANES_OP_##NAME = code,
#include "lanes_table.def"
};

typedef int32_t lanes_reduce_op;
enum {
#define LANES_REDUCE(code, NAME, name, rule) LANES_REDUCE_##NAME = code,
#include "lanes_table.def"
};

typedef int32_t lanes_random_kind;
enum {
#define LANES_RANDOM(code, NAME, name) LANES_RANDOM_##NAME = code,
#include "lanes_table.def"
};

/* Counters reported by lanes_stats_read, in this order. */
enum {
  LANES_STAT_KERNELS_EXECUTED = 0,
  LANES_STAT_EPOCHS_COMMITTED = 1,
  LANES_STAT_ACTIVE_BYTES = 2,
  LANES_STAT_PEAK_BYTES = 3,
  LANES_STAT_CACHED_BYTES = 4,
  LANES_STAT_LIVE_ARRAYS = 5,
  LANES_STAT_LIVE_STREAMS = 6,
  LANES_STAT_COUNT = 7,
};

/* The ABI's version, raised whenever a function is added or removed or an existing one's
 * arguments, result or meaning change. A caller built against one header must refuse a library
 * that reports another through lanes_abi_version_read. */
#define LANES_ABI_VERSION 3

/* ---- errors and library ---------------------------------------------------------------- */
LANES_API lanes_status lanes_abi_version_read(uint32_t* out_version); /* any thread, also before any other call and after lanes_shutdown */
LANES_API const char* lanes_last_error(void);          /* thread-local; valid until this thread's next call */
LANES_API lanes_status lanes_last_error_code(void);    /* thread-local status of this thread's last failure */
LANES_API const char* lanes_backend_name(void);        /* any thread */
LANES_API lanes_status lanes_stats_read(uint64_t* out, int32_t count); /* any thread; fills up to count counters */
LANES_API lanes_status lanes_stats_reset_peak(void);   /* any thread */
LANES_API lanes_status lanes_set_memory_limit(uint64_t bytes); /* any thread; 0 = no limit */
LANES_API lanes_status lanes_clear_cache(void);         /* any thread; frees the allocator's cached buffers */
LANES_API lanes_status lanes_set_epoch_budget(uint32_t max_ops, uint64_t max_bytes); /* any thread; applies to epochs opened later */

/* The calling thread's handles (arrays, streams, completion queues it created, retained and did
 * not release) are released when the thread exits. Bun Workers turn this on, so terminating a
 * Worker mid-eval leaks nothing. Not for threads that hand their handles to others unretained. */
LANES_API lanes_status lanes_thread_track_handles(int32_t on); /* calling thread only */
LANES_API lanes_status lanes_shutdown(void); /* any thread; waits for the default stream, then every later call fails with LANES_ERR_DISPOSED */
/* Test-only: with LANES_FAULT_INJECTION=1 in the environment, the next `count` epochs committed on
 * `stream` fail as if the device had failed them (else LANES_ERR_INVALID_ARGUMENT). */
LANES_API lanes_status lanes_debug_fail_next_epochs(uint64_t stream, uint32_t count); /* any thread */
/* Test-only, same switch: a paused stream starts none of its committed work until resumed. */
LANES_API lanes_status lanes_debug_pause_stream(uint64_t stream, int32_t paused); /* any thread */
/* Test-only, same switch: the encode after `after` more commands on `stream` fails with
 * LANES_ERR_INTERNAL, as a backend failing part-way through a batch would. */
LANES_API lanes_status lanes_debug_fail_next_encode(uint64_t stream, uint32_t after); /* any thread */

/* ---- streams ----------------------------------------------------------------------------- */
LANES_API lanes_status lanes_stream_new(uint64_t* out_stream);      /* any thread; caller owns one reference */
/* A stream on device `device` (0 .. lanes_device_count()-1); arrays it computes live there.
 * Streams on different devices may depend on each other (the CUDA backend enables peer access). */
LANES_API lanes_status lanes_stream_new_on(int32_t device, uint64_t* out_stream); /* any thread */
LANES_API lanes_status lanes_device_count(int32_t* out_count);                    /* any thread */
LANES_API lanes_status lanes_stream_default(uint64_t* out_stream);  /* any thread; the process-wide default stream, never freed */
LANES_API lanes_status lanes_stream_retain(uint64_t stream);        /* any thread; adds one reference (another Worker's copy) */
LANES_API lanes_status lanes_stream_release(uint64_t stream);       /* any thread; the last release waits for in-flight work, then frees */
LANES_API lanes_status lanes_stream_synchronize(uint64_t stream);   /* any thread; blocks until all committed and open work completes */

/* ---- arrays: creation (all lazy except from_data, which copies `data` before returning) ---- */
LANES_API lanes_status lanes_array_from_data(const void* data, uint64_t nbytes, lanes_dtype dtype,
                                             const int64_t* shape, int32_t ndim, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_full(double value, lanes_dtype dtype, const int64_t* shape, int32_t ndim,
                                        uint64_t stream, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_arange(double start, double stop, double step, lanes_dtype dtype,
                                          uint64_t stream, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_random(lanes_random_kind kind, uint64_t seed, double a, double b,
                                          const int64_t* shape, int32_t ndim, uint64_t stream,
                                          uint64_t* out); /* any thread; uniform [a,b) or normal(mean=a, std=b) */

/* ---- arrays: ops (lazy; `stream` 0 means the default stream) ------------------------------- */
LANES_API lanes_status lanes_array_unary(lanes_unary_op op, uint64_t a, uint64_t stream, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_binary(lanes_binary_op op, uint64_t a, uint64_t b, uint64_t stream,
                                          uint64_t* out); /* any thread; numpy broadcasting */
/* `a op scalar` (`scalar op a` when scalar_first != 0). The scalar is a kernel parameter, never
 * an array, and weakly typed as in MLX: it takes a's type when that type holds it.
 * Parameters named *_param bind a scalar to a compiled plan's scalar parameter while tracing
 * (see lanes_plan_new); -1 fixes it. */
LANES_API lanes_status lanes_array_binary_scalar(lanes_binary_op op, uint64_t a, double scalar, int32_t scalar_first,
                                                 int32_t scalar_param, uint64_t stream, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_matmul(uint64_t a, uint64_t b, uint64_t stream, uint64_t* out); /* any thread; [...,M,K]x[...,K,N] */
LANES_API lanes_status lanes_array_reduce(lanes_reduce_op op, uint64_t a, const int32_t* axes, int32_t naxes,
                                          int32_t keepdims, uint64_t stream, uint64_t* out); /* any thread; naxes<0: all axes */
LANES_API lanes_status lanes_array_softmax(uint64_t a, int32_t axis, uint64_t stream, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_where(uint64_t cond, uint64_t a, uint64_t b, uint64_t stream,
                                         uint64_t* out); /* any thread; cond ? a : b, three-way broadcasting */
/* Shape ops. reshape/transpose/broadcast_to/expand_dims/squeeze/slice are strided views
 * (no copy) where the layout allows. naxes < 0: transpose reverses, squeeze drops every size-1
 * axis. slice: Python rules per axis (negative indices count from the end, then clamp);
 * steps may be NULL (all 1). take: indices are int32 (negative ones count from the end); an
 * index out of range fails the evaluation with a device error naming it. */
LANES_API lanes_status lanes_array_reshape(uint64_t a, const int64_t* shape, int32_t ndim, uint64_t stream,
                                           uint64_t* out); /* any thread; one dimension may be -1 */
LANES_API lanes_status lanes_array_transpose(uint64_t a, const int32_t* axes, int32_t naxes, uint64_t stream,
                                             uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_broadcast_to(uint64_t a, const int64_t* shape, int32_t ndim, uint64_t stream,
                                                uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_expand_dims(uint64_t a, const int32_t* axes, int32_t naxes, uint64_t stream,
                                               uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_squeeze(uint64_t a, const int32_t* axes, int32_t naxes, uint64_t stream,
                                           uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_slice(uint64_t a, const int64_t* starts, const int64_t* stops, const int64_t* steps,
                                         int32_t count, uint64_t stream, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_concatenate(const uint64_t* arrays, int32_t count, int32_t axis, int32_t stack,
                                               uint64_t stream, uint64_t* out); /* any thread; stack != 0: new axis */
LANES_API lanes_status lanes_array_take(uint64_t a, uint64_t indices, int32_t axis, uint64_t stream,
                                        uint64_t* out); /* any thread */
/* Fused ops, one kernel each; a weight or bias handle of 0 means none. */
LANES_API lanes_status lanes_array_rms_norm(uint64_t x, uint64_t weight, double eps, uint64_t stream,
                                            uint64_t* out); /* any thread; over the last axis */
LANES_API lanes_status lanes_array_layer_norm(uint64_t x, uint64_t weight, uint64_t bias, double eps, uint64_t stream,
                                              uint64_t* out); /* any thread; over the last axis */
/* [B,H,L,D]; scale NaN: 1/sqrt(D). Only the first `key_length` keys and values are used
 * (< 0: all), so a preallocated KV cache is attended over its filled prefix. */
LANES_API lanes_status lanes_array_attention(uint64_t q, uint64_t k, uint64_t v, double scale, int32_t causal,
                                             int64_t key_length, int32_t key_length_param, uint64_t stream,
                                             uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_rope(uint64_t x, int32_t dims, int32_t traditional, double base, double scale,
                                        int64_t offset, int32_t offset_param, uint64_t stream,
                                        uint64_t* out); /* any thread; [..., L, D] */
/* `target` with `update` written at `offset` along `axis`. When nothing else can see the
 * target's memory (its handle released, no other array built from it, no work in flight on
 * it) the update is written in place: a KV cache grows without copies. */
LANES_API lanes_status lanes_array_slice_update(uint64_t target, uint64_t update, int32_t axis, int64_t offset,
                                                int32_t offset_param, uint64_t stream, uint64_t* out); /* any thread */
/* Per-row forms for a batch of sequences (one decode step of many requests at once): `offsets`
 * and `key_lengths` are int32 arrays [N] with one value per entry of the leading axis (N =
 * x.shape[0], target.shape[0], q.shape[0]), so each row of the batch sits at its own position.
 * rope_rows: row b of x [N, ..., L, D] starts at position offsets[b].
 * slice_update_rows: row b of `update` is written at offsets[b] along `axis` (not 0) of row b of
 * `target`, in place under the same condition as lanes_array_slice_update.
 * attention_rows: row b of q attends over the first key_lengths[b] keys and values of row b.
 * An offset or key length out of range fails the evaluation with a device error naming it. */
LANES_API lanes_status lanes_array_rope_rows(uint64_t x, int32_t dims, int32_t traditional, double base, double scale,
                                             uint64_t offsets, uint64_t stream, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_slice_update_rows(uint64_t target, uint64_t update, int32_t axis, uint64_t offsets,
                                                     uint64_t stream, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_attention_rows(uint64_t q, uint64_t k, uint64_t v, double scale, int32_t causal,
                                                  uint64_t key_lengths, uint64_t stream, uint64_t* out); /* any thread */
/* x [..., k] @ w^T for a quantized w [n, k] (LANES_Q4_0, LANES_Q4_1, LANES_Q8_0): float32 [..., n]. */
LANES_API lanes_status lanes_array_quantized_matmul(uint64_t x, uint64_t w, uint64_t stream, uint64_t* out); /* any thread */
LANES_API lanes_status lanes_array_astype(uint64_t a, lanes_dtype dtype, uint64_t stream, uint64_t* out); /* any thread */

/* ---- arrays: inspection and lifetime ------------------------------------------------------- */
LANES_API lanes_status lanes_array_info(uint64_t a, int32_t* out_dtype, int32_t* out_ndim, int64_t* out_shape,
                                        int32_t shape_capacity); /* any thread */
LANES_API lanes_status lanes_array_read(uint64_t a, void* dst, uint64_t nbytes); /* any thread; evaluates and blocks until ready */
LANES_API lanes_status lanes_array_retain(uint64_t a);  /* any thread */
LANES_API lanes_status lanes_array_release(uint64_t a); /* any thread; the node lives on while other arrays use it */

/* ---- evaluation ---------------------------------------------------------------------------- */
LANES_API lanes_status lanes_eval(const uint64_t* arrays, int32_t count); /* any thread; blocks until all are computed */
/* Posts `token` to `queue` when all are computed. With `run_us` > 0 (at most 1000) the calling
 * thread first works on them itself for up to that long, never sleeping: on the CPU it runs
 * their committed work (a buffer it started runs to its end, even past `run_us`); on a GPU it
 * completes what the device finished. For a caller that expects them within microseconds and
 * would pay more for a hand-off to another thread and a wake-up. *out_ran_us is -1 when the work
 * was left to the stream (`token` is posted later); otherwise all were computed without error by
 * the time the call returned, nothing is posted, and it holds how many microseconds the call
 * worked on them (which may exceed `run_us` by the buffer it finished). */
LANES_API lanes_status lanes_eval_async(const uint64_t* arrays, int32_t count, uint64_t queue, uint64_t token,
                                        uint32_t run_us, int32_t* out_ran_us); /* any thread */

/* ---- compiled plans: trace once, replay from any thread on any stream ---------------------- */
/* An input of a function being traced: it has a shape and dtype but never a value. */
LANES_API lanes_status lanes_array_placeholder(lanes_dtype dtype, const int64_t* shape, int32_t ndim,
                                               uint64_t* out); /* any thread */
/* Freezes the graph from the placeholders `inputs` to `outputs` into a plan with `scalars`
 * scalar parameters (ops traced with *_param = i read parameter i). `donate` (NULL: none)
 * marks inputs a replay may write in place. Arrays the graph reads that do not depend on the
 * inputs are constants: evaluated now and held by the plan. `meta` (NULL: none) is stored as
 * is, for the caller. */
LANES_API lanes_status lanes_plan_new(const uint64_t* inputs, int32_t n_inputs, const uint64_t* outputs,
                                      int32_t n_outputs, int32_t scalars, const uint8_t* donate,
                                      const char* meta, uint64_t* out_plan); /* any thread */
LANES_API lanes_status lanes_plan_retain(uint64_t plan);  /* any thread */
LANES_API lanes_status lanes_plan_release(uint64_t plan); /* any thread; replays in flight finish first */
/* One replay on `stream` (0: the default stream), encoded and committed by this call: writes
 * `n_outputs` new array handles. Given as many valid input handles as the plan has inputs,
 * the call releases the handles of donated inputs (their caller gives them up), whether the
 * replay then succeeds or not. Replays of one plan may run at once on any number of streams. */
LANES_API lanes_status lanes_plan_run(uint64_t plan, uint64_t stream, const uint64_t* inputs, int32_t n_inputs,
                                      const double* scalars, int32_t n_scalars, uint64_t* out_outputs,
                                      int32_t n_outputs); /* any thread */
/* Counts of a plan's array inputs, outputs, scalar parameters and steps, and its arena's bytes. */
LANES_API lanes_status lanes_plan_info(uint64_t plan, int32_t* out_inputs, int32_t* out_outputs, int32_t* out_scalars,
                                       int32_t* out_steps, uint64_t* out_arena_bytes); /* any thread */
/* The plan's `meta` text: its length in *out_length, and up to `capacity` bytes of it in `out`. */
LANES_API lanes_status lanes_plan_meta(uint64_t plan, char* out, int32_t capacity, int32_t* out_length); /* any thread */

/* ---- sampling, on the host ---------------------------------------------------------------- */
/* The token drawn from `n` (1 to 2^31 - 1) float32 logits in host memory at `temperature` (> 0,
   finite): among the `top_k` most likely (0: all), then the fewest most likely whose
   probabilities reach `top_p` (in (0, 1]; 1: all), the inverse of their cumulative distribution
   at `u` (in [0, 1)). Weights are e^((logit - max) / temperature) in float64; ties rank the lower
   index first; NaN logits and tokens of weight 0 are never drawn, and where the largest logit is
   infinite the tokens at it share every draw. *out_kept: how many candidates the cuts left (0
   when every logit is NaN, and then *out_token is 0). A pure function of its arguments. */
LANES_API lanes_status lanes_logits_sample(const float* logits, int64_t n, double temperature, int64_t top_k, double top_p,
                                           double u, int64_t* out_token, int64_t* out_kept); /* any thread */

/* ---- completion queues: one per JS thread, drained with ordinary calls ------------------- */
LANES_API lanes_status lanes_completion_queue_new(uint64_t* out_queue);   /* any thread */
LANES_API lanes_status lanes_completion_queue_release(uint64_t queue);    /* any thread; late completions are dropped */
LANES_API lanes_status lanes_completion_queue_drain(uint64_t queue, uint64_t* out_tokens, int32_t* out_status,
                                                    int32_t capacity, int32_t* out_count); /* any thread; never blocks */
LANES_API lanes_status lanes_completion_queue_wait(uint64_t queue, uint32_t timeout_ms); /* any thread; blocks until non-empty or timeout */
/* A file descriptor that becomes readable when a completion is posted to an empty queue, for an
 * event loop to poll (bytes written to it carry no meaning: drain the queue when it wakes).
 * Owned by the queue; closed when the queue is released. */
LANES_API lanes_status lanes_completion_queue_fd(uint64_t queue, int32_t* out_fd); /* any thread */

#ifdef __cplusplus
}
#endif
#endif /* LANES_H */
