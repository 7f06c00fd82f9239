// Op translation for the CUDA backend: each Command becomes one or a few kernel launches on
// the epoch's CUstream. Strided and broadcast operands are read in place by the elementwise
// kernels; kernels that want plain rows get a contiguous copy first (a scratch buffer kept
// alive until the epoch completes).
#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "../ffi/src/gpu/kernel_layout.hpp"
#include "../ffi/src/gpu/op_dispatch.hpp"
#include "../ffi/src/status.hpp"
#include "device.hpp"

namespace lanes::cuda {
namespace {

using gpu::attention_suffix;
using gpu::collapse;
using gpu::group_for;
using gpu::is_contiguous;
using gpu::KShape;
using gpu::KStrides;
using gpu::read_strides;
using gpu::size_suffix;
using gpu::suffix;
using gpu::Walk;

CUdeviceptr base_ptr(const TensorArg& a) { return reinterpret_cast<CUdeviceptr>(a.data); }
CUdeviceptr data_ptr(const TensorArg& a) { return base_ptr(a) + a.offset * static_cast<int64_t>(dtype_size(a.dtype)); }

bool aligned16(CUdeviceptr p) { return p % 16 == 0; }

unsigned blocks_for(const Device& dev, int64_t n, int64_t per_block = 256) {
  int64_t want = (n + per_block - 1) / per_block;
  int64_t cap = int64_t(dev.sm_count) * 32;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(want, cap)));
}

template <class T>
void pack(StreamOp& op, const T& value) {
  size_t at = (op.args.size() + alignof(T) - 1) / alignof(T) * alignof(T);
  op.args.resize(at + sizeof(T));
  std::memcpy(op.args.data() + at, &value, sizeof(T));
  op.offsets.push_back(at);
}

template <class... Args>
void launch(LaunchContext& ctx, const std::string& name, unsigned gx, unsigned gy, unsigned gz, unsigned block,
            unsigned shared, const Args&... args) {
  // Per-thread cache (per device: each has its own module): lookups never contend.
  thread_local std::unordered_map<const Modules*, std::unordered_map<std::string, CUfunction>> t_functions;
  CUfunction& fn = t_functions[ctx.device.modules.get()][name];
  if (!fn) fn = ctx.device.modules->function(name);
  StreamOp op;
  op.function = fn;
  op.grid[0] = gx;
  op.grid[1] = gy;
  op.grid[2] = gz;
  op.block = block;
  op.shared = shared;
  op.overlap = ctx.overlap;
  (pack(op, args), ...);
  ctx.out.ops.push_back(std::move(op));
}

template <class... Args>
void launch_1d(LaunchContext& ctx, const std::string& name, int64_t n, const Args&... args) {
  if (n == 0) return;
  launch(ctx, name, blocks_for(ctx.device, n), 1, 1, 256, 0, args...);
}

// An error word for a kernel's range check (a take index, or a per-row value `what` outside
// [0, limit]); reported when the epoch completes.
CUdeviceptr range_check(LaunchContext& ctx, int axis, int64_t limit, const char* what = nullptr) {
  ErrorWords::Word word = ctx.error_words.take();
  ctx.out.checks.push_back(TakeCheck{word, axis, limit, what});
  return word.device;
}

// A contiguous copy of `a` in scratch (or `a` itself when already contiguous).
CUdeviceptr contiguous(const TensorArg& a, LaunchContext& ctx) {
  int64_t n = numel(a.shape);
  if (is_contiguous(a) || n == 0) return data_ptr(a);
  size_t es = dtype_size(a.dtype);
  CUdeviceptr dst = ctx.temp(static_cast<size_t>(n) * es);
  Walk w = collapse(a.shape, {contiguous_strides(a.shape), read_strides(a, a.shape)}, {0, a.offset});
  CUdeviceptr src = base_ptr(a);
  launch_1d(ctx, "copy_" + size_suffix(a.dtype), n, dst, w.strides[0], src, w.strides[1], w.shape, n);
  return dst;
}

}  // namespace

// The op kernels, in lanes::cuda beside LaunchContext, where gpu::translate_op finds them.

// ---- creation ----------------------------------------------------------------------------------

static void full(const Command& c, LaunchContext& ctx) {
  CUdeviceptr y = data_ptr(c.output);
  int64_t n = numel(c.output.shape);
  uint32_t bits = gpu::storage_bits(c.output.dtype, c.params.scalars[0]);
  launch_1d(ctx, "fill_" + size_suffix(c.output.dtype), n, y, n, bits);
}

static void arange(const Command& c, LaunchContext& ctx) {
  CUdeviceptr y = data_ptr(c.output);
  int64_t n = numel(c.output.shape);
  double start = c.params.scalars[0], step = c.params.scalars[1];
  launch_1d(ctx, std::string("arange_") + suffix(c.output.dtype), n, y, n, start, step);
}

static void random(const Command& c, LaunchContext& ctx) {
  CUdeviceptr y = data_ptr(c.output);
  int64_t n = numel(c.output.shape);
  uint64_t seed = c.params.seed;
  double a = c.params.scalars[0], b = c.params.scalars[1];
  int32_t normal = c.params.subop == LANES_RANDOM_NORMAL;
  launch_1d(ctx, "random_f32", (n + 1) / 2, y, n, seed, a, b, normal);
}

// ---- elementwise -------------------------------------------------------------------------------

static void unary(const Command& c, LaunchContext& ctx) {
  const TensorArg& x = c.inputs[0];
  int64_t n = numel(c.output.shape);
  Walk w = collapse(c.output.shape, {read_strides(x, c.output.shape)}, {x.offset});
  CUdeviceptr y = data_ptr(c.output), xp = base_ptr(x);
  int32_t op = c.params.subop, flags = w.contiguous ? 1 : 0;
  if (w.contiguous && aligned16(y) && aligned16(data_ptr(x))) flags |= 2;
  launch_1d(ctx, std::string("unary_") + suffix(c.output.dtype), n, y, xp, w.strides[0], w.shape, n, op, flags);
}

static void binary(const Command& c, LaunchContext& ctx) {
  const TensorArg &a = c.inputs[0], &b = c.inputs[1];
  const Shape& s = c.output.shape;
  int64_t n = numel(s);
  Walk w = collapse(s, {read_strides(a, s), read_strides(b, s)}, {a.offset, b.offset});
  CUdeviceptr y = data_ptr(c.output), ap = base_ptr(a), bp = base_ptr(b);
  int32_t op = c.params.subop, flags = w.contiguous ? 1 : 0;
  if (w.contiguous && aligned16(y) && aligned16(data_ptr(a)) && aligned16(data_ptr(b))) flags |= 2;
  launch_1d(ctx, std::string("binary_") + suffix(a.dtype), n, y, ap, w.strides[0], bp, w.strides[1], w.shape, n, op,
            flags);
}

static void binary_scalar(const Command& c, LaunchContext& ctx) {
  const TensorArg& a = c.inputs[0];
  const Shape& s = c.output.shape;
  int64_t n = numel(s);
  Walk w = collapse(s, {read_strides(a, s)}, {a.offset});
  CUdeviceptr y = data_ptr(c.output), ap = base_ptr(a);
  int32_t op = c.params.subop, flags = (w.contiguous ? 1 : 0) | (c.params.flags & 1 ? 4 : 0);
  if (w.contiguous && aligned16(y) && aligned16(data_ptr(a))) flags |= 2;
  double scalar = c.params.scalars[0];
  CUdeviceptr dyn = ctx.dynamic_scalar(c.params, 0);
  launch_1d(ctx, std::string("binary_scalar_") + suffix(a.dtype), n, y, ap, w.strides[0], w.shape, n, op, flags, scalar, dyn);
}

// The write of a sliceUpdate's update into its target at one offset for all rows: a strided copy
// (kernel copy_at_<kernel>) of n elements from x to y, moved by *dyn · step when the offset is a
// compiled plan's scalar parameter.
struct UpdateCopy {
  std::string kernel;
  CUdeviceptr y, x, dyn;
  Walk w;
  int64_t n, step;
};

static UpdateCopy update_copy(const Command& c, LaunchContext& ctx) {
  const TensorArg& update = c.inputs[1];
  int axis = c.params.axis;
  int64_t offset = static_cast<int64_t>(c.params.scalars[0]);
  Shape out_strides = contiguous_strides(c.output.shape);
  UpdateCopy u;
  u.y = base_ptr(c.output);
  u.x = base_ptr(update);
  u.n = numel(update.shape);
  u.dyn = ctx.dynamic_scalar(c.params, 0);
  // A run-time offset moves the write by offset · stride; a fixed one is in the walk already.
  u.w = collapse(update.shape, {out_strides, read_strides(update, update.shape)}, {u.dyn ? 0 : offset * out_strides[axis], update.offset});
  u.step = out_strides[axis];
  // An update of another float dtype (a plan's folded astype, Backend::slice_update_casts) is
  // cast as it is copied.
  u.kernel = update.dtype == c.output.dtype ? size_suffix(c.output.dtype) : std::string(suffix(update.dtype)) + "_" + suffix(c.output.dtype);
  return u;
}

// The target copied to the output unless it was donated (then they share memory), then the
// update written at the offset: both are strided copies.
static void slice_update(const Command& c, LaunchContext& ctx) {
  const TensorArg &target = c.inputs[0], &update = c.inputs[1];
  int axis = c.params.axis;
  int64_t offset = static_cast<int64_t>(c.params.scalars[0]);
  int64_t room = target.shape[axis] - update.shape[axis];
  bool per_row = c.inputs.size() > 2;  // an offset per leading entry, checked by the kernel
  if (!per_row && (offset < 0 || offset > room))
    throw_error(LANES_ERR_DEVICE, "offset " + std::to_string(offset) + " is out of range [0, " + std::to_string(room) +
                                      "] along axis " + std::to_string(axis));
  Shape out_strides = contiguous_strides(c.output.shape);
  CUdeviceptr y = base_ptr(c.output);
  std::string copy = "copy_" + size_suffix(c.output.dtype);
  if (!(c.params.flags & 1)) {
    int64_t n = numel(target.shape);
    Walk w = collapse(target.shape, {out_strides, read_strides(target, target.shape)}, {0, target.offset});
    if (n) launch_1d(ctx, copy, n, y, w.strides[0], base_ptr(target), w.strides[1], w.shape, n);
  }
  if (per_row) {
    gpu::RowWrite w = gpu::row_write(c);
    if (!w.n) return;
    CUdeviceptr u = contiguous(update, ctx), offsets = data_ptr(c.inputs[2]);
    CUdeviceptr err = range_check(ctx, axis, room, "sliceUpdate: offset");
    launch_1d(ctx, "copy_rows_" + size_suffix(c.output.dtype), w.n, y, u, offsets, w.n, w.per_entry, w.U, w.C, w.R, err);
    return;
  }
  UpdateCopy u = update_copy(c, ctx);
  if (u.n) launch_1d(ctx, "copy_at_" + u.kernel, u.n, u.y, u.w.strides[0], u.x, u.w.strides[1], u.w.shape, u.n, u.dyn, u.step);
}

// Where a view reads or writes: [first byte, last byte + 1), from its offset and strides.
static std::pair<CUdeviceptr, CUdeviceptr> extent(const TensorArg& t) {
  if (numel(t.shape) == 0) return {0, 0};
  Shape strides = read_strides(t, t.shape);
  int64_t last = t.offset;
  for (size_t d = 0; d < t.shape.size(); ++d) last += (t.shape[d] - 1) * std::abs(strides[d]);
  int64_t size = static_cast<int64_t>(dtype_size(t.dtype));
  return {base_ptr(t) + t.offset * size, base_ptr(t) + (last + 1) * size};
}

static bool overlap(const TensorArg& a, const TensorArg& b) {
  auto [a0, a1] = extent(a);
  auto [b0, b1] = extent(b);
  return a0 < b1 && b0 < a1;
}

// A sliceUpdate that is one strided copy into its donated target at one offset for all rows.
static bool single_update_copy(const Command& c) {
  if (c.op != OpCode::SliceUpdate || !(c.params.flags & 1) || c.inputs.size() != 2 || numel(c.inputs[1].shape) == 0) return false;
  int64_t room = c.inputs[0].shape[c.params.axis] - c.inputs[1].shape[c.params.axis];
  int64_t offset = static_cast<int64_t>(c.params.scalars[0]);
  return c.params.dynamic[0] >= 0 || (offset >= 0 && offset <= room);
}

// Two sliceUpdates that are each one strided copy into a donated target, the target of each (all
// of it, not just the slice written) apart from everything the other reads or writes: then
// neither order is observable, and one launch can do both.
static bool independent_updates(const Command& a, const Command& b) {
  if (!single_update_copy(a) || !single_update_copy(b)) return false;
  if (overlap(a.output, b.output)) return false;
  for (const TensorArg& t : b.inputs)
    if (overlap(a.output, t)) return false;
  for (const TensorArg& t : a.inputs)
    if (overlap(b.output, t)) return false;
  return true;
}

bool translate_update_pair(const Command& a, const Command& b, LaunchContext& ctx) {
  if (!independent_updates(a, b)) return false;
  UpdateCopy u = update_copy(a, ctx), v = update_copy(b, ctx);
  if (u.kernel != v.kernel) return false;
  launch_1d(ctx, "copy_at_pair_" + u.kernel, u.n + v.n, u.y, u.w.strides[0], u.x, u.w.strides[1], u.w.shape, u.n, u.dyn, u.step, v.y,
            v.w.strides[0], v.x, v.w.strides[1], v.w.shape, v.n, v.dyn, v.step);
  return true;
}

// Whether a walk's operand reads elements offset, offset + 1, ... in the walk's order.
static bool reads_in_order(const gpu::KShape& shape, const gpu::KStrides& s) {
  int64_t stride = 1;
  for (int64_t d = shape.nd - 1; d >= 0; --d) {
    if (s.s[d] != stride) return false;
    stride *= shape.dims[d];
  }
  return true;
}

// A rope command's launch arguments, as rope_<dtype> and rope_store_pair_f32_<cache> take them.
struct RopeArgs {
  int64_t rows, L, D;
  int32_t dims, traditional;
  double base, scale, offset;
  CUdeviceptr dyn;
};

static RopeArgs rope_args(const Command& c, const LaunchContext& ctx) {
  const Shape& s = c.output.shape;
  RopeArgs r;
  r.D = s.back();
  r.L = s[s.size() - 2];
  r.rows = r.D ? numel(s) / r.D : 0;
  r.dims = c.params.axis;
  r.traditional = c.params.flags & 1;
  r.base = c.params.scalars[0];
  r.scale = c.params.scalars[1];
  r.offset = c.params.scalars[2];
  r.dyn = ctx.dynamic_scalar(c.params, 2);
  return r;
}

bool translate_rope_updates(const Command& rope, const Command& a, const Command& b, LaunchContext& ctx) {
  if (rope.op != OpCode::Rope || rope.inputs.size() != 1 || rope.output.dtype != DType::Float32 || !is_contiguous(rope.output) ||
      !independent_updates(a, b))
    return false;
  // The key: the write whose update lies in the rope's output. The value's reads nothing the
  // rope writes, and neither cache is anything the rope reads or writes.
  bool a_keys = base_ptr(a.inputs[1]) == base_ptr(rope.output);
  const Command &keys = a_keys ? a : b, &values = a_keys ? b : a;
  if (base_ptr(keys.inputs[1]) != base_ptr(rope.output) || keys.inputs[1].dtype != DType::Float32 ||
      values.inputs[1].dtype != DType::Float32 || overlap(values.inputs[1], rope.output))
    return false;
  for (const Command* write : {&keys, &values})
    if (overlap(write->output, rope.inputs[0]) || overlap(write->output, rope.output)) return false;
  DType cache = keys.output.dtype;
  if (!is_floating(cache) || values.output.dtype != cache) return false;
  UpdateCopy k = update_copy(keys, ctx), v = update_copy(values, ctx);
  RopeArgs r = rope_args(rope, ctx);
  int64_t n = numel(rope.output.shape);
  int64_t from = k.w.strides[1].offset - rope.output.offset;
  if (r.rows == 0 || !reads_in_order(k.w.shape, k.w.strides[1]) || from < 0 || from + k.n > n) return false;
  CUdeviceptr x = contiguous(rope.inputs[0], ctx), y = data_ptr(rope.output);
  launch_1d(ctx, std::string("rope_store_pair_f32_") + suffix(cache), n + v.n, y, x, r.rows, r.L, r.D, r.dims, r.base, r.scale,
            r.offset, r.traditional, r.dyn, k.y, k.w.strides[0], k.w.shape, from, k.n, k.dyn, k.step, v.y, v.w.strides[0], v.x,
            v.w.strides[1], v.w.shape, v.n, v.dyn, v.step);
  return true;
}

static void where(const Command& c, LaunchContext& ctx) {
  const TensorArg &cond = c.inputs[0], &a = c.inputs[1], &b = c.inputs[2];
  const Shape& s = c.output.shape;
  int64_t n = numel(s);
  Walk w = collapse(s, {read_strides(cond, s), read_strides(a, s), read_strides(b, s)}, {cond.offset, a.offset, b.offset});
  CUdeviceptr y = data_ptr(c.output), cp = base_ptr(cond), ap = base_ptr(a), bp = base_ptr(b);
  launch_1d(ctx, "where_" + size_suffix(c.output.dtype), n, y, cp, w.strides[0], ap, w.strides[1], bp, w.strides[2],
            w.shape, n);
}

// A compiled plan's elementwise chain: every input read at the output's shape, in one kernel.
static void fused(const Command& c, LaunchContext& ctx) {
  int64_t n = numel(c.output.shape);
  Walk w = gpu::collapse_inputs(c);
  CUdeviceptr x[kMaxFusedInputs] = {};
  for (size_t k = 0; k < c.inputs.size(); ++k) x[k] = base_ptr(c.inputs[k]);
  int32_t inputs = static_cast<int32_t>(c.inputs.size()), contiguous = w.contiguous ? 1 : 0;
  launch_1d(ctx, "fused_f32", n, data_ptr(c.output), x[0], x[1], x[2], x[3], gpu::fused_walk(w), n,
            gpu::fused_code(c), inputs, contiguous);
}

static void dequantize(const Command& c, LaunchContext& ctx);

static void astype(const Command& c, LaunchContext& ctx) {
  const TensorArg& x = c.inputs[0];
  if (is_quantized(x.dtype)) {
    if (x.dtype != c.output.dtype) return dequantize(c, ctx);
    StreamOp op;
    op.call = [dst = data_ptr(c.output), src = base_ptr(x), bytes = dtype_bytes(x.dtype, numel(x.shape))](CUstream s) -> std::optional<std::string> {
      if (CUresult r = driver().cuMemcpyDtoDAsync(dst, src, bytes, s); r != CUDA_SUCCESS) return "copy: " + error_text(r);
      return std::nullopt;
    };
    ctx.out.ops.push_back(std::move(op));
    return;
  }
  int64_t n = numel(c.output.shape);
  Walk w = collapse(c.output.shape, {read_strides(x, c.output.shape)}, {x.offset});
  CUdeviceptr y = data_ptr(c.output), xp = base_ptr(x);
  launch_1d(ctx, std::string("astype_") + suffix(x.dtype) + "_" + suffix(c.output.dtype), n, y, xp, w.strides[0],
            w.shape, n);
}

// A read queued behind the kernels that produce its input (the input is contiguous). Up to
// kKernelReadBytes, a copy kernel writes the pinned host memory (which unified addressing maps
// for the device) instead of a copy engine's transfer.
constexpr size_t kKernelReadBytes = size_t(64) << 10;
static void download(const Command& c, LaunchContext& ctx) {
  const TensorArg& x = c.inputs[0];
  int64_t n = numel(x.shape);
  size_t bytes = static_cast<size_t>(n) * dtype_size(x.dtype);
  if (!ctx.device.read_by_copy && !is_quantized(x.dtype) && bytes <= kKernelReadBytes) {
    Walk w = collapse(x.shape, {contiguous_strides(x.shape), contiguous_strides(x.shape)}, {0, x.offset});
    CUdeviceptr host = reinterpret_cast<CUdeviceptr>(c.params.host_staging);
    launch_1d(ctx, "copy_" + size_suffix(x.dtype), n, host, w.strides[0], base_ptr(x), w.strides[1], w.shape, n);
    return;
  }
  StreamOp op;
  op.host_dst = c.params.host_staging;
  op.src = data_ptr(x);
  op.bytes = static_cast<size_t>(numel(x.shape)) * dtype_size(x.dtype);
  ctx.out.ops.push_back(std::move(op));
}

// ---- shape ops -------------------------------------------------------------------------------

static void concatenate(const Command& c, LaunchContext& ctx) {
  const Shape& ys = c.output.shape;
  int axis = c.params.axis;
  Shape out_strides = contiguous_strides(ys);
  int64_t at = 0;
  CUdeviceptr y = base_ptr(c.output);
  for (const TensorArg& in : c.inputs) {
    int64_t n = numel(in.shape);
    if (n) {
      Walk w = collapse(in.shape, {out_strides, read_strides(in, in.shape)}, {c.output.offset + at * out_strides[axis], in.offset});
      CUdeviceptr x = base_ptr(in);
      launch_1d(ctx, "copy_" + size_suffix(in.dtype), n, y, w.strides[0], x, w.strides[1], w.shape, n);
    }
    at += in.shape[axis];
  }
}

static void take_quantized(const Command& c, LaunchContext& ctx);

static void take(const Command& c, LaunchContext& ctx) {
  const TensorArg &a = c.inputs[0], &indices = c.inputs[1];
  if (is_quantized(a.dtype)) return take_quantized(c, ctx);
  int axis = c.params.axis;
  int64_t dim = a.shape[axis], outer = 1, inner = 1, count = numel(indices.shape);
  for (int d = 0; d < axis; ++d) outer *= a.shape[d];
  for (int d = axis + 1; d < static_cast<int>(a.shape.size()); ++d) inner *= a.shape[d];
  int64_t n = outer * count * inner;
  if (n == 0) return;
  CUdeviceptr x = contiguous(a, ctx), idx = contiguous(indices, ctx), y = data_ptr(c.output);
  CUdeviceptr err = range_check(ctx, axis, dim);
  launch_1d(ctx, "take_" + size_suffix(a.dtype), n, y, x, idx, outer, dim, inner, count, err);
}

// ---- reductions and rows -----------------------------------------------------------------------

static void launch_rows(LaunchContext& ctx, const std::string& prefix, int group, int64_t rows, const auto&... args) {
  int64_t per_block = 256 / group;
  unsigned grid = static_cast<unsigned>((rows + per_block - 1) / per_block);
  launch(ctx, prefix + "_g" + std::to_string(group), grid, 1, 1, 256, 0, args...);
}

static void reduce(const Command& c, LaunchContext& ctx) {
  const TensorArg& x = c.inputs[0];
  gpu::ReduceLayout L = gpu::reduce_layout(x, c.params.axes);
  CUdeviceptr src;
  if (!L.permute) {
    src = contiguous(x, ctx);
  } else {
    // The reduced axes permuted to the end: [kept..., reduced...], contiguous.
    int64_t n = numel(x.shape);
    src = ctx.temp(static_cast<size_t>(std::max<int64_t>(n, 1)) * dtype_size(x.dtype));
    Walk w = collapse(L.permuted_shape, {contiguous_strides(L.permuted_shape), L.permuted_strides}, {0, x.offset});
    CUdeviceptr xp = base_ptr(x);
    launch_1d(ctx, "copy_" + size_suffix(x.dtype), n, src, w.strides[0], xp, w.strides[1], w.shape, n);
  }
  int64_t outputs = L.outer * L.inner;
  if (outputs == 0) return;
  CUdeviceptr y = data_ptr(c.output);
  int64_t outer = L.outer, R = L.reduced, inner = L.inner;
  int32_t op = c.params.subop;
  launch_rows(ctx, std::string("reduce_") + suffix(x.dtype), group_for(R, inner), outputs, y, src, outer, R, inner, op);
}

static void softmax(const Command& c, LaunchContext& ctx) {
  const Shape& s = c.output.shape;
  int axis = c.params.axis;
  int64_t outer = 1, L = s[axis], inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (int d = axis + 1; d < static_cast<int>(s.size()); ++d) inner *= s[d];
  int64_t rows = outer * inner;
  if (rows == 0 || L == 0) return;
  CUdeviceptr x = contiguous(c.inputs[0], ctx), y = data_ptr(c.output);
  launch_rows(ctx, std::string("softmax_") + suffix(c.output.dtype), group_for(L, inner), rows, y, x,
              outer, L, inner);
}

static void norm(const Command& c, LaunchContext& ctx, bool layer) {
  int64_t D = c.output.shape.back();
  int64_t rows = D ? numel(c.output.shape) / D : 0;
  if (rows == 0) return;
  bool has_weight = c.params.flags & 1, has_bias = layer && (c.params.flags & 2);
  CUdeviceptr x = contiguous(c.inputs[0], ctx), y = data_ptr(c.output);
  CUdeviceptr w = has_weight ? contiguous(c.inputs[1], ctx) : 0;
  CUdeviceptr b = has_bias ? contiguous(c.inputs[has_weight ? 2 : 1], ctx) : 0;
  double eps = c.params.scalars[0];
  int32_t is_layer = layer ? 1 : 0;
  launch_rows(ctx, std::string("norm_") + suffix(c.output.dtype), group_for(D, 1), rows, y, x, w, b,
              rows, D, eps, is_layer);
}

// ---- fused ops -------------------------------------------------------------------------------

constexpr unsigned kAttentionBlock = 128;  // Chunk::threads (cuda/kernels.cu)
constexpr int64_t kAttentionChunk = 32;    // Chunk::keys
// From twice as many rows as SMs, a block per row fills the device; fewer rows (a decode step's
// heads) take a block per chunk of 32 keys and a combining pass, whose records (a float per
// value feature and two per chunk) must fit this many bytes.
constexpr size_t kAttentionPartsLimit = size_t(64) << 20;

static void attention(const Command& c, LaunchContext& ctx) {
  const Shape &qs = c.inputs[0].shape, &ks = c.inputs[1].shape, &vs = c.inputs[2].shape;
  int64_t B = qs[0], H = qs[1], Lq = qs[2], D = qs[3], Hk = ks[1], Lk = ks[2], Dv = vs[3];
  int64_t used = static_cast<int64_t>(c.params.scalars[1]);  // keys in use: a prefix of k and v
  CUdeviceptr dyn = ctx.dynamic_scalar(c.params, 1);
  bool per_row = c.inputs.size() > 3;  // a key length per batch entry, checked by the kernel
  if (!dyn && !per_row && (used < 0 || used > Lk))
    throw_error(LANES_ERR_DEVICE, "key length " + std::to_string(used) + " is out of range for " + std::to_string(Lk) + " keys");
  int64_t rows = B * H * Lq;
  if (rows == 0 || Dv == 0) return;
  CUdeviceptr q = contiguous(c.inputs[0], ctx), k = contiguous(c.inputs[1], ctx), v = contiguous(c.inputs[2], ctx);
  CUdeviceptr y = data_ptr(c.output);
  float scale = static_cast<float>(c.params.scalars[0]);
  int32_t causal = c.params.flags & 1;
  CUdeviceptr lengths = per_row ? data_ptr(c.inputs[3]) : 0;
  CUdeviceptr err = per_row ? range_check(ctx, 2, Lk, "scaledDotProductAttention: key length") : 0;
  // The block-per-row path keeps a row's running sums of its value columns in shared memory;
  // both paths take the same limit, so a prefill and a decode step of one model agree.
  size_t acc_bytes = static_cast<size_t>(Dv) * 4;
  if (acc_bytes > (40u << 10))
    throw_error(LANES_ERR_SHAPE, "scaledDotProductAttention: " + std::to_string(Dv) + " value features exceed the CUDA kernel's 10240");
  std::string suffix = attention_suffix(c);
  int64_t chunks = std::max<int64_t>(1, (Lk + kAttentionChunk - 1) / kAttentionChunk);
  bool few_rows = rows < 2 * int64_t(ctx.device.sm_count) && chunks <= 65535;
  size_t parts_bytes = few_rows ? static_cast<size_t>(rows * chunks * (Dv + 2)) * 4 : 0;
  if (few_rows && parts_bytes <= kAttentionPartsLimit) {
    CUdeviceptr parts = ctx.temp(parts_bytes);
    // A compiled plan's row counters let each row's last chunk combine; eager takes a kernel.
    CUdeviceptr counters = ctx.zeroed_temp(static_cast<size_t>(rows) * 4);
    launch(ctx, "attention_part_" + suffix, static_cast<unsigned>(rows), static_cast<unsigned>(chunks), 1,
           kAttentionBlock, 0, y, parts, counters, q, k, v, B, H, Lq, D, Hk, Lk, Dv, scale, causal, used, dyn, lengths, err);
    if (!counters)
      launch(ctx, "attention_combine_" + suffix, static_cast<unsigned>(rows), 1, 1, 64, 0, y, parts, chunks, B, H, Lq, D,
             Hk, Lk, Dv, scale, causal, used, dyn, lengths, err);
    return;
  }
  launch(ctx, "attention_" + suffix, static_cast<unsigned>(rows), 1, 1, kAttentionBlock, static_cast<unsigned>(acc_bytes),
         y, q, k, v, B, H, Lq, D, Hk, Lk, Dv, scale, causal, used, dyn, lengths, err);
}

static void rope(const Command& c, LaunchContext& ctx) {
  RopeArgs r = rope_args(c, ctx);
  if (r.rows == 0) return;
  CUdeviceptr x = contiguous(c.inputs[0], ctx), y = data_ptr(c.output);
  // Per-row form: the rows of leading entry b start at offsets[b].
  CUdeviceptr offsets = c.inputs.size() > 1 ? data_ptr(c.inputs[1]) : 0;
  int64_t rows_per_entry = offsets ? r.rows / c.output.shape[0] : r.rows;
  launch_1d(ctx, std::string("rope_") + suffix(c.output.dtype), r.rows * r.D, y, x, r.rows, r.L, r.D, r.dims, r.base, r.scale,
            r.offset, r.traditional, r.dyn, offsets, rows_per_entry);
}

// ---- quantized weights -------------------------------------------------------------------------

// A product's epilogue as its kernel takes it: the chain's inputs after the product (input 0),
// their walk over the output and the chain's code.
struct Epilogue {
  CUdeviceptr x[kMaxFusedInputs] = {};
  gpu::KFusedWalk walk;
  gpu::KFused code;
  int32_t inputs = 0, contiguous = 0;
};

static Epilogue epilogue_of(const Command& product) {
  Command chain = epilogue_command(product);
  Walk w = gpu::collapse_inputs(chain);
  Epilogue e;
  for (size_t k = 1; k < chain.inputs.size(); ++k) e.x[k] = base_ptr(chain.inputs[k]);
  e.walk = gpu::fused_walk(w);
  e.code = gpu::fused_code(chain);
  e.inputs = static_cast<int32_t>(chain.inputs.size());
  e.contiguous = w.contiguous ? 1 : 0;
  return e;
}

// A pair epilogue's chain as a command of its two inputs (the product's halves, never stored:
// only their count and the chain's code matter).
static Command pair_command(const Command& product) {
  Command chain;
  chain.op = OpCode::Fused;
  chain.params.fused = product.params.fused;
  chain.inputs.resize(2, product.output);
  chain.output = product.output;
  return chain;
}

static void quantized_matmul(const Command& c, LaunchContext& ctx) {
  const TensorArg &x = c.inputs[0], &w = c.inputs[1];
  int64_t k = x.shape.back(), n = w.shape[0];
  int64_t m = k ? numel(x.shape) / k : 0;
  if (m == 0 || n == 0) return;
  CUdeviceptr y = data_ptr(c.output), xp = data_ptr(x), wp = base_ptr(w);
  std::string type = suffix(w.dtype);
  bool norm = c.params.flags & kNormPrologue;  // only where matmul_norm_prologue allowed it
  bool pair = c.params.flags & kPairEpilogue;  // only where matmul_pair_epilogue allowed it
  if (norm && (m > kMatvecRows || (c.params.fused && !pair) || !is_contiguous(x) || x.offset != 0 || !is_contiguous(c.inputs[2])))
    throw_error(LANES_ERR_INTERNAL, "quantizedMatmul: a norm prologue outside the matvec's shapes");
  if (pair && (m > kMatvecRows || k > kMatvecPairColumns || n % 2 != 0))
    throw_error(LANES_ERR_INTERNAL, "quantizedMatmul: a pair epilogue outside the matvec's shapes");
  if (pair) n /= 2;  // output columns, each from two weight rows
  if (m <= kMatvecRows) {
    const int64_t blocks_cap = int64_t(ctx.device.sm_count) * 4;
    unsigned grid = static_cast<unsigned>(std::min<int64_t>(blocks_cap, (n + 7) / 8)), threads = 256;
    // A warp with at most two columns spends most of its time staging: the build that stages
    // four activation blocks at once (quant_kernels.cu), in blocks of more warps, which share
    // the staging.
    bool few = pair || n <= int64_t(grid) * 8 * 2;
    if (few) {
      grid = static_cast<unsigned>(std::min<int64_t>(blocks_cap, (n + kMatvecFewWarps - 1) / kMatvecFewWarps));
      threads = 32 * kMatvecFewWarps;
    }
    if (pair) {
      gpu::KFused code = gpu::fused_code(pair_command(c));
      if (norm)
        launch(ctx, "quantized_matvec_norm_pair_" + type, grid, 1, 1, threads, 0, y, xp, m, k, wp, n, data_ptr(c.inputs[2]),
               c.params.scalars[0], code);
      else
        launch(ctx, "quantized_matvec_pair_" + type, grid, 1, 1, threads, 0, y, xp, m, k, wp, n, code);
      return;
    }
    if (few) type += "_few";
    if (norm) {
      launch(ctx, "quantized_matvec_norm_" + type, grid, 1, 1, threads, 0, y, xp, m, k, wp, n, data_ptr(c.inputs[2]),
             c.params.scalars[0]);
      return;
    }
    if (!c.params.fused) {
      launch(ctx, "quantized_matvec_" + type, grid, 1, 1, threads, 0, y, xp, m, k, k, wp, n);
      return;
    }
    Epilogue e = epilogue_of(c);
    launch(ctx, "quantized_matvec_epilogue_" + type, grid, 1, 1, threads, 0, y, xp, m, k, k, wp, n, e.x[1], e.x[2], e.x[3], e.walk,
           e.code, e.inputs, e.contiguous);
    return;
  }
  int64_t count = n * k;
  CUdeviceptr dense = ctx.temp(static_cast<size_t>(count) * 4);
  launch_1d(ctx, "dequantize_" + type + "_to_f32", count / 2, dense, wp, count);
  CUdeviceptr rounded = ctx.temp(static_cast<size_t>(m * k) * 4);
  launch_1d(ctx, "quantized_activations_f32", m * k, rounded, xp, m, k, k);
  xp = rounded;
  // y [m, n] = x [m, k] @ W^T: W is [n, k] row-major, so W^T reads (kk, j) at j·k + kk.
  MatmulOperands mo{xp, dense, y, 1, m, n, k, 0, k, 1, 0, 1, k, DType::Float32};
  if (!(ctx.device.use_cublaslt && matmul_cublaslt(mo, ctx))) {
    KShape kb{};
    KStrides ab{}, bb{};
    int64_t a_row = k, a_col = 1, b_row = 1, b_col = k, batches = 1;
    launch(ctx, "matmul_f32", static_cast<unsigned>((n + 15) / 16), static_cast<unsigned>((m + 15) / 16), 1, 256, 0, y, xp,
           dense, m, n, k, a_row, a_col, b_row, b_col, kb, ab, bb, batches);
  }
  // A plan's epilogue over the stored product, in place (each element reads only its own).
  if (c.params.fused) fused(epilogue_command(c), ctx);
}

static void take_quantized(const Command& c, LaunchContext& ctx) {
  const TensorArg &a = c.inputs[0], &indices = c.inputs[1];
  int64_t dim = a.shape[0], k = a.shape[1], count = numel(indices.shape);
  if (count == 0 || k == 0) return;
  CUdeviceptr idx = contiguous(indices, ctx), y = data_ptr(c.output), wp = base_ptr(a);
  CUdeviceptr err = range_check(ctx, 0, dim);
  launch_1d(ctx, std::string("take_dequantize_") + suffix(a.dtype), count * k / 2, y, wp, idx, count, k, dim, err);
}

static void dequantize(const Command& c, LaunchContext& ctx) {
  const TensorArg& x = c.inputs[0];
  int64_t count = numel(x.shape);
  if (count == 0) return;
  CUdeviceptr y = data_ptr(c.output), wp = base_ptr(x);
  launch_1d(ctx, std::string("dequantize_") + suffix(x.dtype) + "_to_f32", count / 2, y, wp, count);
}

static void matmul(const Command& c, LaunchContext& ctx) {
  const Shape& ys = c.output.shape;
  int nd = static_cast<int>(ys.size());
  int64_t M = ys[nd - 2], N = ys[nd - 1], K = c.inputs[0].shape.back();
  Shape batch(ys.begin(), ys.end() - 2);
  int64_t batches = numel(batch);
  if (M * N * batches == 0) return;
  CUdeviceptr y = data_ptr(c.output);
  if (K == 0 && !c.params.fused) {
    int64_t n = M * N * batches;
    uint32_t zero = 0;
    launch_1d(ctx, "fill_" + size_suffix(c.output.dtype), n, y, n, zero);
    return;
  }
  Shape a_view = batch, b_view = batch;
  a_view.insert(a_view.end(), {M, K});
  b_view.insert(b_view.end(), {K, N});
  Shape sa = read_strides(c.inputs[0], a_view), sb = read_strides(c.inputs[1], b_view);
  MatmulOperands m{base_ptr(c.inputs[0]) + c.inputs[0].offset * static_cast<int64_t>(dtype_size(c.output.dtype)),
                   base_ptr(c.inputs[1]) + c.inputs[1].offset * static_cast<int64_t>(dtype_size(c.output.dtype)),
                   y, batches, M, N, K, 0, sa[nd - 2], sa[nd - 1], 0, sb[nd - 2], sb[nd - 1], c.output.dtype};
  bool flat = gpu::flat_batch_stride(batch, sa, m.a_batch) && gpu::flat_batch_stride(batch, sb, m.b_batch);
  bool own = c.params.fused || small_matmul(M, N, K, c.output.dtype);
  if (!own && flat && ctx.device.use_cublaslt && matmul_cublaslt(m, ctx)) return;
  // lanes' own kernel: any strides, any batch layout.
  KShape kb{};
  KStrides ab{}, bb{};
  kb.nd = static_cast<int64_t>(batch.size());
  for (size_t d = 0; d < batch.size(); ++d) {
    kb.dims[d] = batch[d];
    ab.s[d] = sa[d];
    bb.s[d] = sb[d];
  }
  CUdeviceptr a = base_ptr(c.inputs[0]), b = base_ptr(c.inputs[1]);
  ab.offset = c.inputs[0].offset;
  bb.offset = c.inputs[1].offset;
  int64_t a_row = m.a_row, a_col = m.a_col, b_row = m.b_row, b_col = m.b_col;
  unsigned gx = static_cast<unsigned>((N + 15) / 16), gy = static_cast<unsigned>((M + 15) / 16);
  unsigned gz = static_cast<unsigned>(std::min<int64_t>(batches, 65535));
  if (!c.params.fused) {
    launch(ctx, std::string("matmul_") + suffix(c.output.dtype), gx, gy, gz, 256, 0, y, a, b, M, N, K, a_row, a_col, b_row,
           b_col, kb, ab, bb, batches);
    return;
  }
  Epilogue e = epilogue_of(c);
  launch(ctx, "matmul_epilogue_f32", gx, gy, gz, 256, 0, y, a, b, M, N, K, a_row, a_col, b_row, b_col, kb, ab, bb, batches,
         e.x[1], e.x[2], e.x[3], e.walk, e.code, e.inputs, e.contiguous);
}

void translate(const Command& c, LaunchContext& ctx) { gpu::translate_op(c, ctx, "cuda"); }

void translate_bound_copy(CUdeviceptr slot, CUdeviceptr bound, bool into_plan, size_t bytes, LaunchContext& ctx) {
  int64_t n = static_cast<int64_t>(bytes);
  launch_1d(ctx, "copy_bound", (n + 15) / 16, slot, bound, into_plan ? 1 : 0, n);
}

}  // namespace lanes::cuda
