// Op translation for the Metal backend: each Command becomes one or a few recorded dispatches
// (pipeline, buffers, parameter block, grid). Recording runs in Backend::prepare, before the
// stream's op lock: pipeline lookups, buffer lookups, parameter structs, scratch and error words
// all happen here. encode_dispatch, under the lock, only replays a record into the epoch's
// compute encoder (a serial encoder: each dispatch sees the previous one's writes).
// The layout logic is shared with CUDA (ffi/src/gpu/kernel_layout.hpp); the parameter structs
// are metal/kernel_params.hpp, shared with metal/kernels.metal.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "../ffi/src/gpu/kernel_layout.hpp"
#include "../ffi/src/gpu/op_dispatch.hpp"
#include "../ffi/src/status.hpp"
#include "kernel_params.hpp"
#include "metal_device.hpp"

// Errors beyond the project's flags, for this file's own code (not the headers above): nil where
// an API wants an object, and signed sizes and indices.
#pragma clang diagnostic error "-Wnullable-to-nonnull-conversion"
#pragma clang diagnostic error "-Wsign-conversion"

namespace lanes::metal {
namespace {

using gpu::attention_suffix;
using gpu::collapse;
using gpu::group_for;
using gpu::read_strides;
using gpu::size_suffix;
using gpu::suffix;
using gpu::Walk;

// kernel_params.hpp's KShape and KStrides are gpu::KShape and gpu::KStrides in MSL's spelling.
static_assert(sizeof(long) == sizeof(int64_t), "kernel_params.hpp: long must be MSL's 64-bit integer");
static_assert(LANES_KERNEL_MAX_DIMS == gpu::kMaxDims);
static_assert(LANES_KERNEL_MAX_FUSED_STEPS == kMaxFusedSteps);

constexpr NSUInteger kParamsIndex = 8;
constexpr NSUInteger kMaxParamsBytes = 4096;  // setBytes:length:atIndex: takes at most 4 KB
// The threadgroup of the grid-stride kernels, and the one the row, attention and 16x16 matmul
// kernels are written for (their threadgroup arrays hold 256 entries).
constexpr NSUInteger kGroupThreads = 256;

// The op codes of each sub-op table (lanes_table.def), to reject a code no kernel knows.
constexpr int kUnaryOps = 0
#define LANES_UNARY(code, NAME, name, rule) +1
#include "lanes_table.def"
    ;
constexpr int kBinaryOps = 0
#define LANES_BINARY(code, NAME, name, rule) +1
#include "lanes_table.def"
    ;
constexpr int kReduceOps = 0
#define LANES_REDUCE(code, NAME, name, rule) +1
#include "lanes_table.def"
    ;

void check_subop(const Command& c, int count) {
  if (c.params.subop < 0 || c.params.subop >= count)
    throw_error(LANES_ERR_INTERNAL, "metal backend: no kernel for sub-op " + std::to_string(c.params.subop) + " of " +
                                        op_name(c.op, 0));
}

NSUInteger ns(int64_t v) { return static_cast<NSUInteger>(v); }

KShape kernel_shape(const gpu::KShape& s) {
  KShape k{};
  k.nd = s.nd;
  for (int d = 0; d < gpu::kMaxDims; ++d) k.dims[d] = s.dims[d];
  return k;
}

KStrides kernel_strides(const gpu::KStrides& s) {
  KStrides k{};
  k.offset = s.offset;
  for (int d = 0; d < gpu::kMaxDims; ++d) k.s[d] = s.s[d];
  return k;
}

// ---- recording -----------------------------------------------------------------------------

Dispatch kernel(RecordContext& ctx, const std::string& name) {
  Dispatch d;
  d.pipeline = ctx.device.pipelines->get(name);
  return d;
}

void emit(RecordContext& ctx, Dispatch&& d) { ctx.out.ops.push_back(std::move(d)); }

// Binds the buffer holding `address` at `index`, at `address`'s offset in it.
void bind(RecordContext& ctx, Dispatch& d, const void* address, NSUInteger index) {
  NSUInteger offset = 0;
  id<MTLBuffer> b = ctx.device.buffers->find(address, offset);
  if (!b) throw_error(LANES_ERR_INTERNAL, "metal: a kernel operand is not in a Metal buffer");
  d.buffers.push_back(Binding{index, b, offset});
}

// The first element of `a`'s view (its buffer's base plus its offset).
const void* element_address(const TensorArg& a) {
  return static_cast<const char*>(a.data) + a.offset * static_cast<int64_t>(dtype_size(a.dtype));
}

// Binds `a` at its first element, or at its buffer's base (kernels that walk `a` through
// strides and its offset).
void bind_arg(RecordContext& ctx, Dispatch& d, const TensorArg& a, NSUInteger index, bool at_offset) {
  bind(ctx, d, at_offset ? element_address(a) : a.data, index);
}

template <class P>
void params(Dispatch& d, const P& p) {
  static_assert(sizeof(P) <= kMaxParamsBytes, "setBytes takes at most 4 KB");
  d.params.resize(sizeof(P));
  std::memcpy(d.params.data(), &p, sizeof(P));
}

// Binds scalar `i` of `p` to the field at byte `at` of d's parameter block when it is a compiled
// plan's parameter; the block holds its fixed value otherwise.
void patch(RecordContext& ctx, Dispatch& d, const OpParams& p, int i, ScalarPatch::Kind kind, size_t at,
           DType dtype = DType::Float32, int64_t base = 0, int64_t scale = 1) {
  if (!ctx.dynamic(p, i)) return;
  d.patches.push_back(ScalarPatch{kind, p.dynamic[i], dtype, static_cast<uint32_t>(at), base, scale});
}

// A grid of min(n, 2^22) threads walking n items with a stride.
void dispatch_1d(Dispatch& d, int64_t n) {
  NSUInteger threads = std::min(kGroupThreads, d.pipeline.maxTotalThreadsPerThreadgroup);
  d.size = MTLSizeMake(ns(std::min<int64_t>(n, int64_t(1) << 22)), 1, 1);
  d.group = MTLSizeMake(threads, 1, 1);
  d.per_thread = true;
}

// `groups` threadgroups of `threads`; fails clearly where the pipeline cannot take that many
// threads per threadgroup (Metal would reject the dispatch).
void dispatch_groups(Dispatch& d, MTLSize groups, MTLSize threads) {
  NSUInteger total = threads.width * threads.height * threads.depth;
  if (total > d.pipeline.maxTotalThreadsPerThreadgroup)
    throw_error(LANES_ERR_DEVICE, "metal: a kernel needs " + std::to_string(total) + " threads per threadgroup, the GPU allows it " +
                                      std::to_string(d.pipeline.maxTotalThreadsPerThreadgroup));
  d.size = groups;
  d.group = threads;
  d.per_thread = false;
}

// A range-checking kernel's error word (a take index, or a per-row value `what` outside
// [0, dim]): taken now, or at each replay of a compiled plan.
void take_check(RecordContext& ctx, Dispatch& d, NSUInteger index, int axis, int64_t dim, const char* what = nullptr) {
  if (ctx.plan) {
    d.take = TakeSlot{index, axis, dim, what};
    return;
  }
  ErrorWords::Word word = ctx.device.error_words->take();
  ctx.out.checks.push_back(TakeCheck{word, axis, dim, what});  // given back with the record
  d.buffers.push_back(Binding{index, word.buffer, word.offset});
}

EwParams ew(const Walk& w, int64_t n, int op = 0) {
  EwParams p{};
  p.shape = kernel_shape(w.shape);
  KStrides* slots[4] = {&p.s0, &p.s1, &p.s2, &p.s3};
  for (size_t i = 0; i < w.strides.size() && i < 4; ++i) *slots[i] = kernel_strides(w.strides[i]);
  p.n = n;
  p.op = op;
  p.flags = w.contiguous ? 1 : 0;
  return p;
}

// A strided copy of `n` elements over `w`: its first operand places the destination (in the
// buffer at `dst`), its second reads the source (in the buffer at `src`).
Dispatch copy_dispatch(RecordContext& ctx, size_t element_bytes, const void* dst, const void* src, const Walk& w, int64_t n) {
  Dispatch d = kernel(ctx, "copy_" + std::to_string(element_bytes));
  bind(ctx, d, dst, 0);
  bind(ctx, d, src, 1);
  params(d, ew(w, n));
  dispatch_1d(d, n);
  return d;
}

// Where a kernel reads `a` as contiguous rows: `a` itself, or a copy of it in scratch.
const void* contiguous(const TensorArg& a, RecordContext& ctx) {
  int64_t n = numel(a.shape);
  if (gpu::is_contiguous(a) || n == 0) return element_address(a);
  void* dst = ctx.temp(static_cast<size_t>(n) * dtype_size(a.dtype));
  Walk w = collapse(a.shape, {contiguous_strides(a.shape), read_strides(a, a.shape)}, {0, a.offset});
  emit(ctx, copy_dispatch(ctx, dtype_size(a.dtype), dst, a.data, w, n));
  return dst;
}

}  // namespace

// The op kernels, in lanes::metal beside RecordContext, where gpu::translate_op finds them.

// ---- creation --------------------------------------------------------------------------------

static void full(const Command& c, RecordContext& ctx) {
  int64_t n = numel(c.output.shape);
  if (!n) return;
  FillParams p{.n = n,
               .bits = gpu::storage_bits(c.output.dtype, c.params.scalars[0]),
               .integral = 0,
               .start = 0,
               .step = 0,
               .istart = 0,
               .istep = 0};
  Dispatch d = kernel(ctx, "fill_" + size_suffix(c.output.dtype));
  bind_arg(ctx, d, c.output, 0, true);
  params(d, p);
  dispatch_1d(d, n);
  emit(ctx, std::move(d));
}

static void arange(const Command& c, RecordContext& ctx) {
  int64_t n = numel(c.output.shape);
  if (!n) return;
  double start = c.params.scalars[0], step = c.params.scalars[1];
  bool integral = start == static_cast<double>(static_cast<int64_t>(start)) && step == static_cast<double>(static_cast<int64_t>(step));
  FillParams p{.n = n,
               .bits = 0,
               .integral = integral ? 1 : 0,
               .start = static_cast<float>(start),
               .step = static_cast<float>(step),
               .istart = static_cast<int64_t>(start),
               .istep = static_cast<int64_t>(step)};
  Dispatch d = kernel(ctx, std::string("arange_") + suffix(c.output.dtype));
  bind_arg(ctx, d, c.output, 0, true);
  params(d, p);
  dispatch_1d(d, n);
  emit(ctx, std::move(d));
}

static void random(const Command& c, RecordContext& ctx) {
  int64_t n = numel(c.output.shape);
  if (!n) return;
  if (c.params.subop != LANES_RANDOM_UNIFORM && c.params.subop != LANES_RANDOM_NORMAL)
    throw_error(LANES_ERR_INTERNAL, "metal backend: no kernel for random sub-op " + std::to_string(c.params.subop));
  RandomParams p{.n = n,
                 .key0 = uint32_t(c.params.seed),
                 .key1 = uint32_t(c.params.seed >> 32),
                 .a = static_cast<float>(c.params.scalars[0]),
                 .b = static_cast<float>(c.params.scalars[1]),
                 .normal = c.params.subop == LANES_RANDOM_NORMAL ? 1 : 0};
  Dispatch d = kernel(ctx, "random_f32");
  bind_arg(ctx, d, c.output, 0, true);
  params(d, p);
  dispatch_1d(d, (n + 1) / 2);
  emit(ctx, std::move(d));
}

// ---- elementwise -------------------------------------------------------------------------------

// Unary, astype: one input read through strides.
static void map1(const Command& c, RecordContext& ctx, const std::string& name) {
  const TensorArg& x = c.inputs[0];
  int64_t n = numel(c.output.shape);
  if (!n) return;
  Walk w = collapse(c.output.shape, {read_strides(x, c.output.shape)}, {x.offset});
  Dispatch d = kernel(ctx, name);
  bind_arg(ctx, d, c.output, 0, true);
  bind_arg(ctx, d, x, 1, false);
  params(d, ew(w, n, c.params.subop));
  dispatch_1d(d, n);
  emit(ctx, std::move(d));
}

static void unary(const Command& c, RecordContext& ctx) {
  check_subop(c, kUnaryOps);
  map1(c, ctx, std::string("unary_") + suffix(c.output.dtype));
}

static void binary(const Command& c, RecordContext& ctx) {
  check_subop(c, kBinaryOps);
  const TensorArg &a = c.inputs[0], &b = c.inputs[1];
  const Shape& s = c.output.shape;
  int64_t n = numel(s);
  if (!n) return;
  Walk w = collapse(s, {read_strides(a, s), read_strides(b, s)}, {a.offset, b.offset});
  Dispatch d = kernel(ctx, std::string("binary_") + suffix(a.dtype));
  bind_arg(ctx, d, c.output, 0, true);
  bind_arg(ctx, d, a, 1, false);
  bind_arg(ctx, d, b, 2, false);
  params(d, ew(w, n, c.params.subop));
  dispatch_1d(d, n);
  emit(ctx, std::move(d));
}

// A compiled plan's elementwise chain in one kernel; unused input slots are bound to input 0.
static void fused(const Command& c, RecordContext& ctx) {
  int64_t n = numel(c.output.shape);
  if (!n) return;
  Walk w = gpu::collapse_inputs(c);
  EwParams e = ew(w, n);
  gpu::KFused code = gpu::fused_code(c);
  FusedParams p{};
  p.shape = e.shape;
  p.s0 = e.s0;
  p.s1 = e.s1;
  p.s2 = e.s2;
  p.s3 = e.s3;
  p.n = n;
  p.flags = e.flags;
  p.inputs = static_cast<int>(c.inputs.size());
  p.steps = code.steps;
  for (int k = 0; k < kMaxFusedSteps; ++k) {
    p.kind[k] = code.kind[k];
    p.subop[k] = code.subop[k];
    p.operand[k] = code.operand[k];
    p.value_first[k] = code.value_first[k];
    p.scalar[k] = code.scalar[k];
  }
  Dispatch d = kernel(ctx, "fused_f32");
  bind_arg(ctx, d, c.output, 0, true);
  for (size_t k = 0; k < size_t(kMaxFusedInputs); ++k)
    bind_arg(ctx, d, c.inputs[k < c.inputs.size() ? k : 0], k + 1, false);
  params(d, p);
  dispatch_1d(d, n);
  emit(ctx, std::move(d));
}

// `a op scalar`, or `scalar op a` (flags & 1): the scalar stored as a's type first, exactly as an
// array of that type would hold it.
static void binary_scalar(const Command& c, RecordContext& ctx) {
  check_subop(c, kBinaryOps);
  const TensorArg& a = c.inputs[0];
  const Shape& s = c.output.shape;
  int64_t n = numel(s);
  if (!n) return;
  Walk w = collapse(s, {read_strides(a, s)}, {a.offset});
  ScalarParams p{.shape = kernel_shape(w.shape),
                 .s0 = kernel_strides(w.strides[0]),
                 .n = n,
                 .op = c.params.subop,
                 .flags = w.contiguous ? 1 : 0,
                 .scalar_bits = gpu::storage_bits(a.dtype, c.params.scalars[0]),
                 .scalar_first = c.params.flags & 1};
  Dispatch d = kernel(ctx, std::string("binary_scalar_") + suffix(a.dtype));
  bind_arg(ctx, d, c.output, 0, true);
  bind_arg(ctx, d, a, 1, false);
  params(d, p);
  patch(ctx, d, c.params, 0, ScalarPatch::Kind::StorageBits, offsetof(ScalarParams, scalar_bits), a.dtype);
  dispatch_1d(d, n);
  emit(ctx, std::move(d));
}

// The target copied to the output unless it was donated (flags & 1: then they share memory),
// then the update written at the offset along the axis: both are strided copies.
static void slice_update(const Command& c, RecordContext& ctx) {
  const TensorArg &target = c.inputs[0], &update = c.inputs[1];
  size_t axis = static_cast<size_t>(c.params.axis);
  bool dynamic = ctx.dynamic(c.params, 0);  // checked by the plan at each replay
  bool per_row = c.inputs.size() > 2;       // an offset per leading entry, checked by the kernel
  int64_t offset = static_cast<int64_t>(c.params.scalars[0]);
  int64_t room = target.shape[axis] - update.shape[axis];
  if (!dynamic && !per_row && (offset < 0 || offset > room))
    throw_error(LANES_ERR_DEVICE, "offset " + std::to_string(offset) + " is out of range [0, " + std::to_string(room) +
                                      "] along axis " + std::to_string(axis));
  Shape out_strides = contiguous_strides(c.output.shape);
  size_t element_bytes = dtype_size(c.output.dtype);
  if (!(c.params.flags & 1)) {
    int64_t n = numel(target.shape);
    Walk w = collapse(target.shape, {out_strides, read_strides(target, target.shape)}, {c.output.offset, target.offset});
    if (n) emit(ctx, copy_dispatch(ctx, element_bytes, c.output.data, target.data, w, n));
  }
  if (per_row) {
    gpu::RowWrite w = gpu::row_write(c);
    if (!w.n) return;
    const void* u = contiguous(update, ctx);
    Dispatch d = kernel(ctx, "copy_rows_" + std::to_string(element_bytes));
    bind_arg(ctx, d, c.output, 0, true);
    bind(ctx, d, u, 1);
    bind_arg(ctx, d, c.inputs[2], 2, true);
    take_check(ctx, d, 3, c.params.axis, room, "sliceUpdate: offset");
    params(d, RowWriteParams{.n = w.n, .per_entry = w.per_entry, .U = w.U, .C = w.C, .R = w.R});
    dispatch_1d(d, w.n);
    emit(ctx, std::move(d));
    return;
  }
  int64_t n = numel(update.shape);
  if (!n) return;
  int64_t step = out_strides[axis];
  Walk w = collapse(update.shape, {out_strides, read_strides(update, update.shape)},
                    {c.output.offset + (dynamic ? 0 : offset * step), update.offset});
  Dispatch d = copy_dispatch(ctx, element_bytes, c.output.data, update.data, w, n);
  patch(ctx, d, c.params, 0, ScalarPatch::Kind::Int64, offsetof(EwParams, s0) + offsetof(KStrides, offset), DType::Float32,
        c.output.offset, step);
  emit(ctx, std::move(d));
}

static void where(const Command& c, RecordContext& ctx) {
  const TensorArg &cond = c.inputs[0], &a = c.inputs[1], &b = c.inputs[2];
  const Shape& s = c.output.shape;
  int64_t n = numel(s);
  if (!n) return;
  Walk w = collapse(s, {read_strides(cond, s), read_strides(a, s), read_strides(b, s)}, {cond.offset, a.offset, b.offset});
  Dispatch d = kernel(ctx, "where_" + size_suffix(c.output.dtype));
  bind_arg(ctx, d, c.output, 0, true);
  bind_arg(ctx, d, cond, 1, false);
  bind_arg(ctx, d, a, 2, false);
  bind_arg(ctx, d, b, 3, false);
  params(d, ew(w, n));
  dispatch_1d(d, n);
  emit(ctx, std::move(d));
}

static void dequantize(const Command& c, RecordContext& ctx);

static void astype(const Command& c, RecordContext& ctx) {
  const TensorArg& x = c.inputs[0];
  if (!is_quantized(x.dtype))
    return map1(c, ctx, std::string("astype_") + suffix(x.dtype) + "_" + suffix(c.output.dtype));
  if (c.output.dtype == DType::Float32) return dequantize(c, ctx);
  if (c.output.dtype != x.dtype)
    throw_error(LANES_ERR_INTERNAL, std::string("metal backend: no kernel for astype from ") + dtype_name(x.dtype) + " to " +
                                        dtype_name(c.output.dtype));
  // The same quantized type (a plan copying its input in): the blocks' bytes, in the widest words
  // that divide them (every buffer starts page-aligned).
  auto bytes = static_cast<int64_t>(dtype_bytes(x.dtype, numel(x.shape)));
  if (!bytes) return;
  int64_t width = bytes % 4 == 0 ? 4 : bytes % 2 == 0 ? 2 : 1;
  Shape words{bytes / width}, unit{1};
  Walk w = collapse(words, {unit, unit}, {0, 0});
  emit(ctx, copy_dispatch(ctx, static_cast<size_t>(width), c.output.data, x.data, w, bytes / width));
}

// ---- shape ops -------------------------------------------------------------------------------

static void concatenate(const Command& c, RecordContext& ctx) {
  Shape out_strides = contiguous_strides(c.output.shape);
  size_t axis = static_cast<size_t>(c.params.axis);
  int64_t at = 0;
  for (const TensorArg& in : c.inputs) {
    int64_t n = numel(in.shape);
    if (n) {
      Walk w = collapse(in.shape, {out_strides, read_strides(in, in.shape)}, {c.output.offset + at * out_strides[axis], in.offset});
      emit(ctx, copy_dispatch(ctx, dtype_size(in.dtype), c.output.data, in.data, w, n));
    }
    at += in.shape[axis];
  }
}

static void take_quantized(const Command& c, RecordContext& ctx);

static void take(const Command& c, RecordContext& ctx) {
  const TensorArg &a = c.inputs[0], &indices = c.inputs[1];
  if (is_quantized(a.dtype)) return take_quantized(c, ctx);
  size_t axis = static_cast<size_t>(c.params.axis);
  TakeParams p{.outer = 1, .dim = a.shape[axis], .inner = 1, .count = numel(indices.shape)};
  for (size_t d = 0; d < axis; ++d) p.outer *= a.shape[d];
  for (size_t d = axis + 1; d < a.shape.size(); ++d) p.inner *= a.shape[d];
  int64_t n = p.outer * p.count * p.inner;
  if (!n) return;
  const void* x = contiguous(a, ctx);
  const void* idx = contiguous(indices, ctx);
  Dispatch d = kernel(ctx, "take_" + size_suffix(a.dtype));
  bind_arg(ctx, d, c.output, 0, true);
  bind(ctx, d, x, 1);
  bind(ctx, d, idx, 2);
  take_check(ctx, d, 3, c.params.axis, p.dim);
  params(d, p);
  dispatch_1d(d, n);
  emit(ctx, std::move(d));
}

// ---- reductions and rows -----------------------------------------------------------------------

// The row kernels: `group` threads per row, 256 threads per threadgroup.
static void dispatch_rows(Dispatch& d, int group, int64_t rows) {
  int64_t per_group = static_cast<int64_t>(kGroupThreads) / group;
  dispatch_groups(d, MTLSizeMake(ns((rows + per_group - 1) / per_group), 1, 1), MTLSizeMake(kGroupThreads, 1, 1));
}

static void reduce(const Command& c, RecordContext& ctx) {
  check_subop(c, kReduceOps);
  const TensorArg& x = c.inputs[0];
  gpu::ReduceLayout L = gpu::reduce_layout(x, c.params.axes);
  const void* src;
  if (!L.permute) {
    src = contiguous(x, ctx);
  } else {
    // The reduced axes permuted to the end: [kept..., reduced...], contiguous.
    int64_t n = numel(x.shape);
    void* dst = ctx.temp(static_cast<size_t>(std::max<int64_t>(n, 1)) * dtype_size(x.dtype));
    if (n) {
      Walk w = collapse(L.permuted_shape, {contiguous_strides(L.permuted_shape), L.permuted_strides}, {0, x.offset});
      emit(ctx, copy_dispatch(ctx, dtype_size(x.dtype), dst, x.data, w, n));
    }
    src = dst;
  }
  int64_t outputs = L.outer * L.inner;
  if (!outputs) return;
  RowsParams p{.outer = L.outer,
               .len = L.reduced,
               .inner = L.inner,
               .op = c.params.subop,
               .layer = 0,
               .has_weight = 0,
               .has_bias = 0,
               .eps = 0};
  int group = group_for(L.reduced, L.inner);
  Dispatch d = kernel(ctx, std::string("reduce_") + suffix(x.dtype) + "_g" + std::to_string(group));
  bind_arg(ctx, d, c.output, 0, true);
  bind(ctx, d, src, 1);
  params(d, p);
  dispatch_rows(d, group, outputs);
  emit(ctx, std::move(d));
}

static void softmax(const Command& c, RecordContext& ctx) {
  const Shape& s = c.output.shape;
  size_t axis = static_cast<size_t>(c.params.axis);
  RowsParams p{.outer = 1, .len = s[axis], .inner = 1, .op = 0, .layer = 0, .has_weight = 0, .has_bias = 0, .eps = 0};
  for (size_t d = 0; d < axis; ++d) p.outer *= s[d];
  for (size_t d = axis + 1; d < s.size(); ++d) p.inner *= s[d];
  if (p.outer * p.inner == 0 || p.len == 0) return;
  const void* x = contiguous(c.inputs[0], ctx);
  int group = group_for(p.len, p.inner);
  Dispatch d = kernel(ctx, std::string("softmax_") + suffix(c.output.dtype) + "_g" + std::to_string(group));
  bind_arg(ctx, d, c.output, 0, true);
  bind(ctx, d, x, 1);
  params(d, p);
  dispatch_rows(d, group, p.outer * p.inner);
  emit(ctx, std::move(d));
}

static void norm(const Command& c, RecordContext& ctx, bool layer) {
  int64_t D = c.output.shape.back();
  int64_t count = D ? numel(c.output.shape) / D : 0;
  if (!count) return;
  bool has_weight = c.params.flags & 1, has_bias = layer && (c.params.flags & 2);
  const void* x = contiguous(c.inputs[0], ctx);
  const void* w = has_weight ? contiguous(c.inputs[1], ctx) : x;  // unused operands bind x
  const void* b = has_bias ? contiguous(c.inputs[has_weight ? 2 : 1], ctx) : x;
  RowsParams p{.outer = count,
               .len = D,
               .inner = 1,
               .op = 0,
               .layer = layer ? 1 : 0,
               .has_weight = has_weight ? 1 : 0,
               .has_bias = has_bias ? 1 : 0,
               .eps = static_cast<float>(c.params.scalars[0])};
  int group = group_for(D, 1);
  Dispatch d = kernel(ctx, std::string("norm_") + suffix(c.output.dtype) + "_g" + std::to_string(group));
  bind_arg(ctx, d, c.output, 0, true);
  bind(ctx, d, x, 1);
  bind(ctx, d, w, 2);
  bind(ctx, d, b, 3);
  params(d, p);
  dispatch_rows(d, group, count);
  emit(ctx, std::move(d));
}

// ---- fused ops -------------------------------------------------------------------------------

static void attention(const Command& c, RecordContext& ctx) {
  const Shape &qs = c.inputs[0].shape, &ks = c.inputs[1].shape, &vs = c.inputs[2].shape;
  // Keys in use: a prefix of k and v (scalars[1]); a plan's is checked at each replay, a
  // per-row one (a fourth input) by the kernel.
  auto used = static_cast<int64_t>(c.params.scalars[1]);
  bool per_row = c.inputs.size() > 3;
  if (!ctx.dynamic(c.params, 1) && !per_row && (used < 0 || used > ks[2]))
    throw_error(LANES_ERR_DEVICE, "key length " + std::to_string(used) + " is out of range for " + std::to_string(ks[2]) + " keys");
  AttnParams p{.B = qs[0],
               .H = qs[1],
               .Lq = qs[2],
               .D = qs[3],
               .Hk = ks[1],
               .Lk = ks[2],
               .Dv = vs[3],
               .used = used,
               .scale = static_cast<float>(c.params.scalars[0]),
               .causal = c.params.flags & 1};
  int64_t count = p.B * p.H * p.Lq;
  if (!count || !p.Dv) return;
  const void* q = contiguous(c.inputs[0], ctx);
  const void* k = contiguous(c.inputs[1], ctx);
  const void* v = contiguous(c.inputs[2], ctx);
  void* scores = ctx.temp(static_cast<size_t>(count) * static_cast<size_t>(std::max<int64_t>(p.Lk, 1)) * sizeof(float));
  Dispatch d = kernel(ctx, std::string(per_row ? "attention_rows_" : "attention_") + attention_suffix(c));
  bind_arg(ctx, d, c.output, 0, true);
  bind(ctx, d, q, 1);
  bind(ctx, d, k, 2);
  bind(ctx, d, v, 3);
  bind(ctx, d, scores, 4);
  if (per_row) {
    bind_arg(ctx, d, c.inputs[3], 5, true);
    take_check(ctx, d, 6, 2, p.Lk, "scaledDotProductAttention: key length");
  }
  params(d, p);
  patch(ctx, d, c.params, 1, ScalarPatch::Kind::Int64, offsetof(AttnParams, used));
  dispatch_groups(d, MTLSizeMake(ns(count), 1, 1), MTLSizeMake(kGroupThreads, 1, 1));
  emit(ctx, std::move(d));
}

static void rope(const Command& c, RecordContext& ctx) {
  const Shape& s = c.output.shape;
  int64_t D = s.back();
  double offset = std::floor(c.params.scalars[2]);  // the position offset: its floor, then the fraction
  RopeParams p{.rows = D ? numel(s) / D : 0,
               .L = s[s.size() - 2],
               .D = D,
               .dims = c.params.axis,
               .traditional = c.params.flags & 1,
               .base = static_cast<float>(c.params.scalars[0]),
               .scale = static_cast<float>(c.params.scalars[1]),
               .offset = static_cast<int64_t>(offset),
               .offset_fraction = static_cast<float>(c.params.scalars[2] - offset),
               .rows_per_entry = 0};
  if (!p.rows) return;
  bool per_row = c.inputs.size() > 1;  // the rows of leading entry b start at offsets[b]
  if (per_row) p.rows_per_entry = p.rows / s[0];
  const void* x = contiguous(c.inputs[0], ctx);
  Dispatch d = kernel(ctx, std::string(per_row ? "rope_rows_" : "rope_") + suffix(c.output.dtype));
  bind_arg(ctx, d, c.output, 0, true);
  bind(ctx, d, x, 1);
  if (per_row) bind_arg(ctx, d, c.inputs[1], 2, true);
  params(d, p);
  patch(ctx, d, c.params, 2, ScalarPatch::Kind::Int64, offsetof(RopeParams, offset));
  patch(ctx, d, c.params, 2, ScalarPatch::Kind::Fraction, offsetof(RopeParams, offset_fraction));
  dispatch_1d(d, p.rows * D);
  emit(ctx, std::move(d));
}

// ---- matmul ----------------------------------------------------------------------------------

// The SIMD-group kernel's threadgroup: four 32-wide SIMD-groups computing a 32x32 tile.
constexpr int64_t kSimdgroupTile = 32;
constexpr NSUInteger kSimdgroupThreads = 128;

// Y = A @ B as MatmulParams describe them (a and b: their buffers' bases; y: the output's first
// element). The SIMD-group kernel where the GPU has SIMD-group matrices and the output holds at
// least one whole 32x32 tile; the 16x16 kernel for smaller outputs (a 32x32 tile would mostly
// idle) and other GPUs.
static void matmul_dispatch(RecordContext& ctx, const MatmulParams& p, DType dtype, const void* y, const void* a, const void* b) {
  Dispatch d;
  int64_t tile = 16;
  if (ctx.device.simdgroup_matrix && p.M >= kSimdgroupTile && p.N >= kSimdgroupTile) {
    id<MTLComputePipelineState> simdgroup = ctx.device.pipelines->get(std::string("matmul_simdgroup_") + suffix(dtype));
    if (simdgroup.threadExecutionWidth == 32 && simdgroup.maxTotalThreadsPerThreadgroup >= kSimdgroupThreads) {
      d.pipeline = simdgroup;
      tile = kSimdgroupTile;
    }
  }
  if (!d.pipeline) d.pipeline = ctx.device.pipelines->get(std::string("matmul_") + suffix(dtype));
  bind(ctx, d, y, 0);
  bind(ctx, d, a, 1);
  bind(ctx, d, b, 2);
  params(d, p);
  MTLSize groups = MTLSizeMake(ns((p.N + tile - 1) / tile), ns((p.M + tile - 1) / tile), ns(std::min<int64_t>(p.batches, 65535)));
  dispatch_groups(d, groups, tile == kSimdgroupTile ? MTLSizeMake(kSimdgroupThreads, 1, 1) : MTLSizeMake(16, 16, 1));
  emit(ctx, std::move(d));
}

static void matmul(const Command& c, RecordContext& ctx) {
  const Shape& ys = c.output.shape;
  size_t nd = ys.size();
  MatmulParams p{};
  p.M = ys[nd - 2];
  p.N = ys[nd - 1];
  p.K = c.inputs[0].shape.back();
  Shape batch(ys.begin(), ys.end() - 2);
  p.batches = numel(batch);
  if (p.M * p.N * p.batches == 0) return;
  Shape a_view = batch, b_view = batch;
  a_view.insert(a_view.end(), {p.M, p.K});
  b_view.insert(b_view.end(), {p.K, p.N});
  Shape sa = read_strides(c.inputs[0], a_view), sb = read_strides(c.inputs[1], b_view);
  p.a_row = sa[nd - 2];
  p.a_col = sa[nd - 1];
  p.b_row = sb[nd - 2];
  p.b_col = sb[nd - 1];
  p.batch.nd = static_cast<long>(batch.size());
  for (size_t d = 0; d < batch.size(); ++d) {
    p.batch.dims[d] = batch[d];
    p.ab.s[d] = sa[d];
    p.bb.s[d] = sb[d];
  }
  p.ab.offset = c.inputs[0].offset;
  p.bb.offset = c.inputs[1].offset;
  matmul_dispatch(ctx, p, c.output.dtype, element_address(c.output), c.inputs[0].data, c.inputs[1].data);
}

// ---- quantized weights -------------------------------------------------------------------------

// Rows up to which quantizedMatmul dequantizes on the fly per output (decode); longer inputs (a
// prompt) dequantize the weights once into scratch and take the dense float32 matmul.
constexpr int64_t kMatvecRows = 16;

static void dequantize_into(RecordContext& ctx, DType type, const void* weights, const void* out, int64_t count) {
  Dispatch d = kernel(ctx, std::string("dequantize_") + suffix(type) + "_to_f32");
  bind(ctx, d, out, 0);
  bind(ctx, d, weights, 1);
  params(d, DequantParams{.count = count});
  dispatch_1d(d, count / 2);
  emit(ctx, std::move(d));
}

static void quantized_matmul(const Command& c, RecordContext& ctx) {
  const TensorArg &x = c.inputs[0], &w = c.inputs[1];
  int64_t k = x.shape.back(), n = w.shape[0];
  int64_t m = k ? numel(x.shape) / k : 0;
  if (m == 0 || n == 0) return;
  const void* xp = contiguous(x, ctx);
  if (m > kMatvecRows) {
    void* dense = ctx.temp(static_cast<size_t>(n * k) * sizeof(float));
    dequantize_into(ctx, w.dtype, w.data, dense, n * k);
    // y [m, n] = x [m, k] @ W^T: W is [n, k] row-major, so W^T reads (kk, j) at j·k + kk.
    MatmulParams p{};
    p.M = m;
    p.N = n;
    p.K = k;
    p.a_row = k;
    p.a_col = 1;
    p.b_row = 1;
    p.b_col = k;
    p.batches = 1;
    return matmul_dispatch(ctx, p, DType::Float32, element_address(c.output), xp, dense);
  }
  Dispatch d = kernel(ctx, std::string("quantized_matmul_") + suffix(w.dtype));
  bind_arg(ctx, d, c.output, 0, true);
  bind(ctx, d, xp, 1);
  bind(ctx, d, w.data, 2);
  params(d, QuantMatmulParams{.m = m, .k = k, .n = n});
  // Whole SIMD-groups per threadgroup (the kernel's shuffles need every lane), each taking
  // output columns in grid-stride order.
  NSUInteger width = std::max<NSUInteger>(d.pipeline.threadExecutionWidth, 1);
  NSUInteger threads = std::min(kGroupThreads, d.pipeline.maxTotalThreadsPerThreadgroup) / width * width;
  if (threads == 0) throw_error(LANES_ERR_DEVICE, "metal: quantized_matmul cannot run one SIMD-group per threadgroup");
  auto columns_per_group = static_cast<int64_t>(threads / width);
  int64_t groups = std::min<int64_t>((n + columns_per_group - 1) / columns_per_group, 1024);
  dispatch_groups(d, MTLSizeMake(ns(groups), 1, 1), MTLSizeMake(threads, 1, 1));
  emit(ctx, std::move(d));
}

static void take_quantized(const Command& c, RecordContext& ctx) {
  const TensorArg &a = c.inputs[0], &indices = c.inputs[1];
  int64_t dim = a.shape[0], k = a.shape[1], count = numel(indices.shape);
  if (count == 0 || k == 0) return;
  const void* idx = contiguous(indices, ctx);
  Dispatch d = kernel(ctx, std::string("take_dequantize_") + suffix(a.dtype));
  bind_arg(ctx, d, c.output, 0, true);
  bind(ctx, d, a.data, 1);
  bind(ctx, d, idx, 2);
  take_check(ctx, d, 3, 0, dim);
  params(d, TakeQuantParams{.count = count, .k = k, .dim = dim});
  dispatch_1d(d, count * k / 2);
  emit(ctx, std::move(d));
}

// The core issues Download only for a backend whose read_staging() gives memory; Metal's does not
// (a read is a memcpy from shared memory after the wait).
static void download(const Command& c, RecordContext&) {
  throw_error(LANES_ERR_INTERNAL, std::string("metal backend: no kernel for ") + op_name(c.op, c.params.subop));
}

static void dequantize(const Command& c, RecordContext& ctx) {
  const TensorArg& x = c.inputs[0];
  int64_t count = numel(x.shape);
  if (count) dequantize_into(ctx, x.dtype, x.data, element_address(c.output), count);
}

// ---- replay ----------------------------------------------------------------------------------

static void apply(unsigned char* block, const ScalarPatch& p, double v) {
  switch (p.kind) {
    case ScalarPatch::Kind::Int64: {
      int64_t value = p.base + static_cast<int64_t>(std::floor(v)) * p.scale;
      std::memcpy(block + p.at, &value, sizeof value);
      return;
    }
    case ScalarPatch::Kind::Fraction: {
      auto value = static_cast<float>(v - std::floor(v));
      std::memcpy(block + p.at, &value, sizeof value);
      return;
    }
    case ScalarPatch::Kind::StorageBits: {
      uint32_t value = gpu::storage_bits(p.dtype, v);
      std::memcpy(block + p.at, &value, sizeof value);
      return;
    }
  }
  throw_error(LANES_ERR_INTERNAL, "metal: unknown scalar patch");
}

void record(const Command& c, RecordContext& ctx) { gpu::translate_op(c, ctx, "metal"); }

void encode_dispatch(id<MTLComputeCommandEncoder> encoder, const Dispatch& d, const double* scalars, int count,
                     const ErrorWords::Word* word) {
  [encoder setComputePipelineState:d.pipeline];
  for (const Binding& b : d.buffers) [encoder setBuffer:b.buffer offset:b.offset atIndex:b.index];
  if (d.take) {
    if (!word) throw_error(LANES_ERR_INTERNAL, "metal: a take kernel has no error word");
    [encoder setBuffer:word->buffer offset:word->offset atIndex:d.take->index];
  }
  if (d.patches.empty()) {
    if (!d.params.empty()) [encoder setBytes:d.params.data() length:d.params.size() atIndex:kParamsIndex];
  } else {
    // setBytes copies the block into the command buffer now, so each replay keeps its own
    // values even while an earlier replay of the same plan has not run yet.
    unsigned char block[kMaxParamsBytes];
    std::memcpy(block, d.params.data(), d.params.size());
    for (const ScalarPatch& p : d.patches) {
      if (!scalars || p.param < 0 || p.param >= count) throw_error(LANES_ERR_INTERNAL, "metal: a plan parameter is missing");
      apply(block, p, scalars[p.param]);
    }
    [encoder setBytes:block length:d.params.size() atIndex:kParamsIndex];
  }
  if (d.per_thread) [encoder dispatchThreads:d.size threadsPerThreadgroup:d.group];
  else [encoder dispatchThreadgroups:d.size threadsPerThreadgroup:d.group];
}

}  // namespace lanes::metal
