// Op translation for the Metal backend: each Command becomes one or a few dispatches in the
// epoch's compute encoder (a serial encoder: each dispatch sees the previous one's writes).
// The layout logic is shared with CUDA (ffi/src/gpu/kernel_layout.hpp); this file only binds
// buffers and parameter structs (metal/kernel_params.hpp, shared with metal/kernels.metal).
#include <algorithm>

#include "../ffi/src/gpu/kernel_layout.hpp"
#include "../ffi/src/runtime.hpp"
#include "../ffi/src/status.hpp"
#include "kernel_params.hpp"
#include "metal_device.hpp"

// Errors beyond the project's flags, for this file's own code (not the headers above): nil where
// an API wants an object, and signed sizes and indices.
#pragma clang diagnostic error "-Wnullable-to-nonnull-conversion"
#pragma clang diagnostic error "-Wsign-conversion"

namespace lanes::metal {
namespace {

using gpu::collapse;
using gpu::group_for;
using gpu::read_strides;
using gpu::size_suffix;
using gpu::suffix;
using gpu::Walk;

// kernel_params.hpp's KShape and KStrides are gpu::KShape and gpu::KStrides in MSL's spelling.
static_assert(sizeof(long) == sizeof(int64_t), "kernel_params.hpp: long must be MSL's 64-bit integer");
static_assert(LANES_KERNEL_MAX_DIMS == gpu::kMaxDims);

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

constexpr NSUInteger kParamsIndex = 8;

// Binds the buffer holding `data` (an element pointer inside it) at `index`.
void bind(EncodeContext& ctx, const void* base, size_t byte_offset, NSUInteger index) {
  id<MTLBuffer> b = ctx.device.buffers->find(base);
  if (!b) throw_error(LANES_ERR_INTERNAL, "metal: a kernel operand is not a Metal buffer");
  [ctx.encoder setBuffer:b offset:byte_offset atIndex:index];
}

void bind_arg(EncodeContext& ctx, const TensorArg& a, NSUInteger index, bool with_offset) {
  bind(ctx, a.buffer->data(), with_offset ? static_cast<size_t>(a.offset) * dtype_size(a.dtype) : 0, index);
}

template <class P>
void params(EncodeContext& ctx, const P& p) {
  [ctx.encoder setBytes:&p length:sizeof(P) atIndex:kParamsIndex];
}

void use(EncodeContext& ctx, const std::string& name) {
  [ctx.encoder setComputePipelineState:ctx.device.pipelines->get(name)];
}

// A grid of min(n, cap) threads walking n items with a stride.
void dispatch_1d(EncodeContext& ctx, int64_t n) {
  NSUInteger threads = static_cast<NSUInteger>(std::min<int64_t>(n, int64_t(1) << 22));
  [ctx.encoder dispatchThreads:MTLSizeMake(threads, 1, 1) threadsPerThreadgroup:MTLSizeMake(256, 1, 1)];
}

void dispatch_groups(EncodeContext& ctx, NSUInteger x, NSUInteger y = 1, NSUInteger z = 1) {
  [ctx.encoder dispatchThreadgroups:MTLSizeMake(x, y, z) threadsPerThreadgroup:MTLSizeMake(256, 1, 1)];
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

// A contiguous copy of `a` (or `a` itself): returns the base pointer and byte offset to bind.
std::pair<const void*, size_t> contiguous(const TensorArg& a, EncodeContext& ctx) {
  int64_t n = numel(a.shape);
  if (gpu::is_contiguous(a) || n == 0) return {a.buffer->data(), static_cast<size_t>(a.offset) * dtype_size(a.dtype)};
  void* dst = ctx.temp(static_cast<size_t>(n) * dtype_size(a.dtype));
  Walk w = collapse(a.shape, {contiguous_strides(a.shape), read_strides(a, a.shape)}, {0, a.offset});
  use(ctx, "copy_" + size_suffix(a.dtype));
  bind(ctx, dst, 0, 0);
  bind_arg(ctx, a, 1, false);
  params(ctx, ew(w, n));
  dispatch_1d(ctx, n);
  return {dst, 0};
}

void bind_contiguous(EncodeContext& ctx, const std::pair<const void*, size_t>& c, NSUInteger index) { bind(ctx, c.first, c.second, index); }

// ---- ops -------------------------------------------------------------------------------------

void full(const Command& c, EncodeContext& ctx) {
  int64_t n = numel(c.output.shape);
  if (!n) return;
  FillParams p{.n = n,
               .bits = gpu::storage_bits(c.output.dtype, c.params.scalars[0]),
               .integral = 0,
               .start = 0,
               .step = 0,
               .istart = 0,
               .istep = 0};
  use(ctx, "fill_" + size_suffix(c.output.dtype));
  bind_arg(ctx, c.output, 0, true);
  params(ctx, p);
  dispatch_1d(ctx, n);
}

void arange(const Command& c, EncodeContext& ctx) {
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
  use(ctx, std::string("arange_") + suffix(c.output.dtype));
  bind_arg(ctx, c.output, 0, true);
  params(ctx, p);
  dispatch_1d(ctx, n);
}

void random(const Command& c, EncodeContext& ctx) {
  int64_t n = numel(c.output.shape);
  if (!n) return;
  RandomParams p{.n = n,
                 .key0 = uint32_t(c.params.seed),
                 .key1 = uint32_t(c.params.seed >> 32),
                 .a = static_cast<float>(c.params.scalars[0]),
                 .b = static_cast<float>(c.params.scalars[1]),
                 .normal = c.params.subop == LANES_RANDOM_NORMAL ? 1 : 0};
  use(ctx, "random_f32");
  bind_arg(ctx, c.output, 0, true);
  params(ctx, p);
  dispatch_1d(ctx, (n + 1) / 2);
}

// Unary, astype: one input read through strides.
void map1(const Command& c, EncodeContext& ctx, const std::string& kernel) {
  const TensorArg& x = c.inputs[0];
  int64_t n = numel(c.output.shape);
  if (!n) return;
  Walk w = collapse(c.output.shape, {read_strides(x, c.output.shape)}, {x.offset});
  use(ctx, kernel);
  bind_arg(ctx, c.output, 0, true);
  bind_arg(ctx, x, 1, false);
  params(ctx, ew(w, n, c.params.subop));
  dispatch_1d(ctx, n);
}

void binary(const Command& c, EncodeContext& ctx) {
  const TensorArg &a = c.inputs[0], &b = c.inputs[1];
  const Shape& s = c.output.shape;
  int64_t n = numel(s);
  if (!n) return;
  Walk w = collapse(s, {read_strides(a, s), read_strides(b, s)}, {a.offset, b.offset});
  use(ctx, std::string("binary_") + suffix(a.dtype));
  bind_arg(ctx, c.output, 0, true);
  bind_arg(ctx, a, 1, false);
  bind_arg(ctx, b, 2, false);
  params(ctx, ew(w, n, c.params.subop));
  dispatch_1d(ctx, n);
}

void where(const Command& c, EncodeContext& ctx) {
  const TensorArg &cond = c.inputs[0], &a = c.inputs[1], &b = c.inputs[2];
  const Shape& s = c.output.shape;
  int64_t n = numel(s);
  if (!n) return;
  Walk w = collapse(s, {read_strides(cond, s), read_strides(a, s), read_strides(b, s)}, {cond.offset, a.offset, b.offset});
  EwParams p = ew(w, n);
  p.flags = 0;
  use(ctx, "where_" + size_suffix(c.output.dtype));
  bind_arg(ctx, c.output, 0, true);
  bind_arg(ctx, cond, 1, false);
  bind_arg(ctx, a, 2, false);
  bind_arg(ctx, b, 3, false);
  params(ctx, p);
  dispatch_1d(ctx, n);
}

void concatenate(const Command& c, EncodeContext& ctx) {
  std::vector<int64_t> out_strides = contiguous_strides(c.output.shape);
  size_t axis = static_cast<size_t>(c.params.axis);
  int64_t at = 0;
  for (const TensorArg& in : c.inputs) {
    int64_t n = numel(in.shape);
    if (n) {
      Walk w = collapse(in.shape, {out_strides, read_strides(in, in.shape)}, {c.output.offset + at * out_strides[axis], in.offset});
      use(ctx, "copy_" + size_suffix(in.dtype));
      bind_arg(ctx, c.output, 0, false);
      bind_arg(ctx, in, 1, false);
      EwParams p = ew(w, n);
      p.flags = 0;
      params(ctx, p);
      dispatch_1d(ctx, n);
    }
    at += in.shape[axis];
  }
}

void take(const Command& c, EncodeContext& ctx) {
  const TensorArg &a = c.inputs[0], &indices = c.inputs[1];
  size_t axis = static_cast<size_t>(c.params.axis);
  TakeParams p{.outer = 1, .dim = a.shape[axis], .inner = 1, .count = numel(indices.shape)};
  for (size_t d = 0; d < axis; ++d) p.outer *= a.shape[d];
  for (size_t d = axis + 1; d < a.shape.size(); ++d) p.inner *= a.shape[d];
  int64_t n = p.outer * p.count * p.inner;
  if (!n) return;
  auto x = contiguous(a, ctx), idx = contiguous(indices, ctx);
  ErrorWords::Word word = ctx.device.error_words->take();
  ctx.take_checks.push_back(TakeCheck{word, c.params.axis, p.dim});
  use(ctx, "take_" + size_suffix(a.dtype));
  bind_arg(ctx, c.output, 0, true);
  bind_contiguous(ctx, x, 1);
  bind_contiguous(ctx, idx, 2);
  [ctx.encoder setBuffer:word.buffer offset:word.offset atIndex:3];
  params(ctx, p);
  dispatch_1d(ctx, n);
}

void rows(EncodeContext& ctx, const std::string& prefix, int group, int64_t rows_count) {
  use(ctx, prefix + "_g" + std::to_string(group));
  int64_t per_group = 256 / group;
  dispatch_groups(ctx, static_cast<NSUInteger>((rows_count + per_group - 1) / per_group));
}

void reduce(const Command& c, EncodeContext& ctx) {
  const TensorArg& x = c.inputs[0];
  gpu::ReduceLayout L = gpu::reduce_layout(x, c.params.axes);
  std::pair<const void*, size_t> src;
  if (!L.permute) {
    src = contiguous(x, ctx);
  } else {
    int64_t n = numel(x.shape);
    void* dst = ctx.temp(static_cast<size_t>(std::max<int64_t>(n, 1)) * dtype_size(x.dtype));
    if (n) {
      Walk w = collapse(L.permuted_shape, {contiguous_strides(L.permuted_shape), L.permuted_strides}, {0, x.offset});
      use(ctx, "copy_" + size_suffix(x.dtype));
      bind(ctx, dst, 0, 0);
      bind_arg(ctx, x, 1, false);
      EwParams p = ew(w, n);
      p.flags = 0;
      params(ctx, p);
      dispatch_1d(ctx, n);
    }
    src = {dst, 0};
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
  bind_arg(ctx, c.output, 0, true);
  bind_contiguous(ctx, src, 1);
  params(ctx, p);
  rows(ctx, std::string("reduce_") + suffix(x.dtype), group_for(L.reduced, L.inner), outputs);
}

void softmax(const Command& c, EncodeContext& ctx) {
  const Shape& s = c.output.shape;
  size_t axis = static_cast<size_t>(c.params.axis);
  RowsParams p{.outer = 1, .len = s[axis], .inner = 1, .op = 0, .layer = 0, .has_weight = 0, .has_bias = 0, .eps = 0};
  for (size_t d = 0; d < axis; ++d) p.outer *= s[d];
  for (size_t d = axis + 1; d < s.size(); ++d) p.inner *= s[d];
  if (p.outer * p.inner == 0 || p.len == 0) return;
  auto x = contiguous(c.inputs[0], ctx);
  bind_arg(ctx, c.output, 0, true);
  bind_contiguous(ctx, x, 1);
  params(ctx, p);
  rows(ctx, std::string("softmax_") + suffix(c.output.dtype), group_for(p.len, p.inner), p.outer * p.inner);
}

void norm(const Command& c, EncodeContext& ctx, bool layer) {
  int64_t D = c.output.shape.back();
  int64_t count = D ? numel(c.output.shape) / D : 0;
  if (!count) return;
  bool has_weight = c.params.flags & 1, has_bias = layer && (c.params.flags & 2);
  auto x = contiguous(c.inputs[0], ctx);
  auto w = has_weight ? contiguous(c.inputs[1], ctx) : x;  // unused operands bind x
  auto b = has_bias ? contiguous(c.inputs[has_weight ? 2 : 1], ctx) : x;
  RowsParams p{.outer = count,
               .len = D,
               .inner = 1,
               .op = 0,
               .layer = layer ? 1 : 0,
               .has_weight = has_weight ? 1 : 0,
               .has_bias = has_bias ? 1 : 0,
               .eps = static_cast<float>(c.params.scalars[0])};
  bind_arg(ctx, c.output, 0, true);
  bind_contiguous(ctx, x, 1);
  bind_contiguous(ctx, w, 2);
  bind_contiguous(ctx, b, 3);
  params(ctx, p);
  rows(ctx, std::string("norm_") + suffix(c.output.dtype), group_for(D, 1), count);
}

void attention(const Command& c, EncodeContext& ctx) {
  const Shape &qs = c.inputs[0].shape, &ks = c.inputs[1].shape, &vs = c.inputs[2].shape;
  AttnParams p{.B = qs[0],
               .H = qs[1],
               .Lq = qs[2],
               .D = qs[3],
               .Hk = ks[1],
               .Lk = ks[2],
               .Dv = vs[3],
               .scale = static_cast<float>(c.params.scalars[0]),
               .causal = c.params.flags & 1};
  int64_t count = p.B * p.H * p.Lq;
  if (!count || !p.Dv) return;
  auto q = contiguous(c.inputs[0], ctx), k = contiguous(c.inputs[1], ctx), v = contiguous(c.inputs[2], ctx);
  void* scratch = ctx.temp(static_cast<size_t>(count) * static_cast<size_t>(std::max<int64_t>(p.Lk, 1)) * sizeof(float));
  use(ctx, std::string("attention_") + suffix(c.output.dtype));
  bind_arg(ctx, c.output, 0, true);
  bind_contiguous(ctx, q, 1);
  bind_contiguous(ctx, k, 2);
  bind_contiguous(ctx, v, 3);
  bind(ctx, scratch, 0, 4);
  params(ctx, p);
  dispatch_groups(ctx, static_cast<NSUInteger>(count));
}

void rope(const Command& c, EncodeContext& ctx) {
  const Shape& s = c.output.shape;
  int64_t D = s.back();
  RopeParams p{.rows = D ? numel(s) / D : 0,
               .L = s[s.size() - 2],
               .D = D,
               .dims = c.params.axis,
               .traditional = c.params.flags & 1,
               .base = static_cast<float>(c.params.scalars[0]),
               .scale = static_cast<float>(c.params.scalars[1]),
               .offset = c.params.offset};
  if (!p.rows) return;
  auto x = contiguous(c.inputs[0], ctx);
  use(ctx, std::string("rope_") + suffix(c.output.dtype));
  bind_arg(ctx, c.output, 0, true);
  bind_contiguous(ctx, x, 1);
  params(ctx, p);
  dispatch_1d(ctx, p.rows * D);
}

// The SIMD-group kernel's threadgroup: four 32-wide SIMD-groups computing a 32x32 tile.
constexpr int64_t kSimdgroupTile = 32;
constexpr NSUInteger kSimdgroupThreads = 128;

// The SIMD-group kernel where the GPU has SIMD-group matrices and the output holds at least one
// whole 32x32 tile; the 16x16 kernel for smaller outputs (a 32x32 tile would mostly idle) and
// other GPUs. Returns the pipeline to use and its tile edge.
std::pair<id<MTLComputePipelineState>, int64_t> matmul_pipeline(EncodeContext& ctx, const MatmulParams& p, DType dtype) {
  if (ctx.device.simdgroup_matrix && p.M >= kSimdgroupTile && p.N >= kSimdgroupTile) {
    id<MTLComputePipelineState> simdgroup = ctx.device.pipelines->get(std::string("matmul_simdgroup_") + suffix(dtype));
    if (simdgroup.threadExecutionWidth == 32 && simdgroup.maxTotalThreadsPerThreadgroup >= kSimdgroupThreads)
      return {simdgroup, kSimdgroupTile};
  }
  return {ctx.device.pipelines->get(std::string("matmul_") + suffix(dtype)), 16};
}

void matmul(const Command& c, EncodeContext& ctx) {
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
  std::vector<int64_t> sa = read_strides(c.inputs[0], a_view), sb = read_strides(c.inputs[1], b_view);
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
  auto [pipeline, tile] = matmul_pipeline(ctx, p, c.output.dtype);
  [ctx.encoder setComputePipelineState:pipeline];
  bind_arg(ctx, c.output, 0, true);
  bind_arg(ctx, c.inputs[0], 1, false);
  bind_arg(ctx, c.inputs[1], 2, false);
  params(ctx, p);
  MTLSize groups = MTLSizeMake(static_cast<NSUInteger>((p.N + tile - 1) / tile), static_cast<NSUInteger>((p.M + tile - 1) / tile),
                               static_cast<NSUInteger>(std::min<int64_t>(p.batches, 65535)));
  MTLSize threads = tile == kSimdgroupTile ? MTLSizeMake(kSimdgroupThreads, 1, 1) : MTLSizeMake(16, 16, 1);
  [ctx.encoder dispatchThreadgroups:groups threadsPerThreadgroup:threads];
}

}  // namespace

void encode_command(const Command& c, EncodeContext& ctx) {
  switch (c.op) {
    case OpCode::Full: return full(c, ctx);
    case OpCode::Arange: return arange(c, ctx);
    case OpCode::Random: return random(c, ctx);
    case OpCode::Unary: return map1(c, ctx, std::string("unary_") + suffix(c.output.dtype));
    case OpCode::AsType: return map1(c, ctx, std::string("astype_") + suffix(c.inputs[0].dtype) + "_" + suffix(c.output.dtype));
    case OpCode::Binary: return binary(c, ctx);
    case OpCode::Where: return where(c, ctx);
    case OpCode::Matmul: return matmul(c, ctx);
    case OpCode::Reduce: return reduce(c, ctx);
    case OpCode::Softmax: return softmax(c, ctx);
    case OpCode::Concatenate: return concatenate(c, ctx);
    case OpCode::Take: return take(c, ctx);
    case OpCode::RmsNorm: return norm(c, ctx, false);
    case OpCode::LayerNorm: return norm(c, ctx, true);
    case OpCode::Attention: return attention(c, ctx);
    case OpCode::Rope: return rope(c, ctx);
    case OpCode::FromData:
    case OpCode::View:
    case OpCode::Download: break;  // no read_staging(): reads copy after the wait
  }
  throw_error(LANES_ERR_INTERNAL, "metal backend: no kernel for op");
}

}  // namespace lanes::metal
