#include "graph.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

#include "runtime.hpp"
#include "status.hpp"

namespace lanes {

namespace {

// The most dimensions an array may have (the C ABI's shape buffers are sized for it).
constexpr size_t kMaxDims = 32;

NodePtr node(OpCode op, OpParams params, Shape shape, DType dtype, NodeInputs inputs, StreamPtr stream) {
  if (shape.size() > kMaxDims)
    throw_error(LANES_ERR_SHAPE, std::string(op_name(op, params.subop)) + ": the result would have " +
                                     std::to_string(shape.size()) + " dimensions (at most " + std::to_string(kMaxDims) + ")");
  return std::make_shared<Node>(op, std::move(params), std::move(shape), dtype, std::move(inputs), std::move(stream));
}

enum class Rule { FLOAT, NUMERIC, ARITH, COMPARE, SAME, INDEX };

const Rule kUnaryRules[] = {
#define LANES_UNARY(code, NAME, name, rule) Rule::rule,
#include "lanes_table.def"
};
const Rule kBinaryRules[] = {
#define LANES_BINARY(code, NAME, name, rule) Rule::rule,
#include "lanes_table.def"
};
const Rule kReduceRules[] = {
#define LANES_REDUCE(code, NAME, name, rule) Rule::rule,
#include "lanes_table.def"
};
constexpr int kUnaryOps = static_cast<int>(std::size(kUnaryRules));
constexpr int kBinaryOps = static_cast<int>(std::size(kBinaryRules));
constexpr int kReduceOps = static_cast<int>(std::size(kReduceRules));

// Quantized arrays are storage for weights: only quantizedMatmul, take and astype read them.
void not_quantized(const NodePtr& a, const char* op) {
  if (is_quantized(a->dtype))
    throw_error(LANES_ERR_DTYPE, std::string(op) + ": " + dtype_name(a->dtype) + " " + shape_str(a->shape) +
                                     " is quantized; only quantizedMatmul, take (axis 0) and astype(float32) read quantized arrays");
}

// Converts `a` in place (a new astype node) unless it already has `dtype`.
void cast(NodePtr& a, DType dtype, const StreamPtr& stream) {
  if (a->dtype != dtype) a = make_astype(std::move(a), dtype, stream);
}

// For ops that need floating point: halves stay half, everything else becomes float32.
void as_floating(NodePtr& a, const StreamPtr& stream) { cast(a, floating_of(a->dtype), stream); }

}  // namespace

NodePtr make_from_data(const void* data, size_t nbytes, DType dtype, Shape shape) {
  int64_t n = checked_numel(shape, "array");
  if (is_quantized(dtype) && (shape.empty() || shape.back() % dtype_info(dtype).block != 0))
    throw_error(LANES_ERR_SHAPE, std::string("array: the last axis of a ") + dtype_name(dtype) + " array must be a multiple of " +
                                     std::to_string(dtype_info(dtype).block) + " (its block), got shape " + shape_str(shape));
  size_t expected = dtype_bytes(dtype, n);
  if (nbytes != expected)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "array: data has " + std::to_string(nbytes) + " bytes but shape " +
                                                shape_str(shape) + " of " + dtype_name(dtype) + " needs " +
                                                std::to_string(expected));
  if (n > 0 && !data) throw_error(LANES_ERR_INVALID_ARGUMENT, "array: data pointer is null");
  NodePtr out = node(OpCode::FromData, {}, std::move(shape), dtype, {}, nullptr);
  out->buffer = runtime().allocator().allocate(expected, 0, nullptr);
  if (expected) runtime().backend().upload(out->buffer->data(), data, expected);
  out->state.store(static_cast<uint64_t>(NodeState::Scheduled), std::memory_order_release);
  return out;
}

NodePtr make_full(double value, DType dtype, Shape shape, StreamPtr stream) {
  checked_numel(shape, "full");
  OpParams p;
  p.scalars[0] = value;
  return node(OpCode::Full, p, std::move(shape), dtype, {}, std::move(stream));
}

NodePtr make_arange(double start, double stop, double step, DType dtype, StreamPtr stream) {
  if (!(step != 0) || !std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step))
    throw_error(LANES_ERR_INVALID_ARGUMENT, "arange: start, stop and step must be finite and step non-zero (got " +
                                                std::to_string(start) + ", " + std::to_string(stop) + ", " +
                                                std::to_string(step) + ")");
  double count = std::ceil((stop - start) / step);
  if (count > static_cast<double>(kMaxElements))
    throw_error(LANES_ERR_SHAPE, "arange: too many elements");
  int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  OpParams p;
  p.scalars[0] = start;
  p.scalars[1] = step;
  return node(OpCode::Arange, p, Shape{n}, dtype, {}, std::move(stream));
}

NodePtr make_random(int kind, uint64_t seed, double a, double b, Shape shape, StreamPtr stream) {
  const char* name = kind == LANES_RANDOM_NORMAL ? "random.normal" : "random.uniform";
  if (kind != LANES_RANDOM_NORMAL && kind != LANES_RANDOM_UNIFORM)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "random: unknown distribution " + std::to_string(kind));
  checked_numel(shape, name);
  if (!std::isfinite(a) || !std::isfinite(b))
    throw_error(LANES_ERR_INVALID_ARGUMENT, std::string(name) + ": parameters must be finite");
  OpParams p;
  p.subop = kind;
  p.seed = seed;
  p.scalars[0] = a;
  p.scalars[1] = b;
  return node(OpCode::Random, p, std::move(shape), DType::Float32, {}, std::move(stream));
}

NodePtr make_unary(int op, NodePtr a, StreamPtr stream) {
  if (op < 0 || op >= kUnaryOps) throw_error(LANES_ERR_INVALID_ARGUMENT, "unary: unknown op " + std::to_string(op));
  not_quantized(a, op_name(OpCode::Unary, op));
  bool keeps_int = kUnaryRules[op] == Rule::NUMERIC;
  if (keeps_int && a->dtype == DType::Bool) cast(a, DType::Int32, stream);
  if (!keeps_int) as_floating(a, stream);
  OpParams p;
  p.subop = op;
  Shape shape = a->shape;
  DType dtype = a->dtype;
  return node(OpCode::Unary, p, std::move(shape), dtype, NodeInputs::of(std::move(a)), std::move(stream));
}

NodePtr make_binary(int op, NodePtr a, NodePtr b, StreamPtr stream) {
  if (op < 0 || op >= kBinaryOps) throw_error(LANES_ERR_INVALID_ARGUMENT, "binary: unknown op " + std::to_string(op));
  const char* name = op_name(OpCode::Binary, op);
  not_quantized(a, name);
  not_quantized(b, name);
  Shape shape = broadcast_shapes(a->shape, b->shape, name);
  bool comparison = kBinaryRules[op] == Rule::COMPARE;
  DType common = promote(a->dtype, b->dtype);
  // Arithmetic on bools counts in int32; divide and power need floating point.
  if (!comparison && common == DType::Bool) common = DType::Int32;
  if (kBinaryRules[op] == Rule::FLOAT) common = floating_of(common);
  cast(a, common, stream);
  cast(b, common, stream);
  DType dtype = comparison ? DType::Bool : common;
  OpParams p;
  p.subop = op;
  return node(OpCode::Binary, p, std::move(shape), dtype, NodeInputs::of(std::move(a), std::move(b)), std::move(stream));
}

NodePtr make_matmul(NodePtr a, NodePtr b, StreamPtr stream) {
  not_quantized(a, "matmul");
  if (is_quantized(b->dtype))
    throw_error(LANES_ERR_DTYPE, std::string("matmul: ") + dtype_name(b->dtype) + " weight " + shape_str(b->shape) +
                                     " is quantized: use quantizedMatmul(x, w), which computes x @ w^T");
  if (a->shape.size() < 2 || b->shape.size() < 2)
    throw_error(LANES_ERR_SHAPE, "matmul: operands must have at least 2 dimensions, got " + shape_str(a->shape) +
                                     " and " + shape_str(b->shape));
  int64_t k1 = a->shape[a->shape.size() - 1], k2 = b->shape[b->shape.size() - 2];
  if (k1 != k2)
    throw_error(LANES_ERR_SHAPE, "matmul: inner dimensions differ: " + shape_str(a->shape) + " @ " +
                                     shape_str(b->shape) + " (" + std::to_string(k1) + " != " + std::to_string(k2) + ")");
  Shape batch_a(a->shape.begin(), a->shape.end() - 2), batch_b(b->shape.begin(), b->shape.end() - 2);
  Shape shape = broadcast_shapes(batch_a, batch_b, "matmul");
  shape.push_back(a->shape[a->shape.size() - 2]);
  shape.push_back(b->shape.back());
  checked_numel(shape, "matmul");
  DType dtype = floating_of(promote(a->dtype, b->dtype));
  cast(a, dtype, stream);
  cast(b, dtype, stream);
  return node(OpCode::Matmul, {}, std::move(shape), dtype, NodeInputs::of(std::move(a), std::move(b)), std::move(stream));
}

NodePtr make_reduce(int op, NodePtr a, std::vector<int> axes, bool all_axes, bool keepdims, StreamPtr stream) {
  if (op < 0 || op >= kReduceOps) throw_error(LANES_ERR_INVALID_ARGUMENT, "reduce: unknown op " + std::to_string(op));
  const char* name = op_name(OpCode::Reduce, op);
  not_quantized(a, name);
  bool arg = kReduceRules[op] == Rule::INDEX;
  bool needs_elements = arg || op == LANES_REDUCE_MAX || op == LANES_REDUCE_MIN;
  int ndim = static_cast<int>(a->shape.size());
  if (arg && !all_axes && axes.size() != 1)
    throw_error(LANES_ERR_SHAPE, std::string(name) + ": takes one axis (or none, for the flattened array), got " +
                                     std::to_string(axes.size()));
  if (all_axes) {
    axes.clear();
    for (int i = 0; i < ndim; ++i) axes.push_back(i);
  }
  for (int& ax : axes) ax = normalize_axis(ax, ndim, name);
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    throw_error(LANES_ERR_SHAPE, std::string(name) + ": duplicate axis");
  Shape shape;
  int64_t reduced_count = 1;
  for (int i = 0; i < ndim; ++i) {
    bool reduced = std::binary_search(axes.begin(), axes.end(), i);
    if (reduced) reduced_count *= a->shape[i];
    if (!reduced) shape.push_back(a->shape[i]);
    else if (keepdims) shape.push_back(1);
  }
  if (needs_elements && reduced_count == 0)
    throw_error(LANES_ERR_SHAPE, std::string(name) + ": cannot reduce an empty selection of shape " + shape_str(a->shape));
  bool float_result = kReduceRules[op] == Rule::FLOAT;
  if (float_result) as_floating(a, stream);
  else if (op == LANES_REDUCE_SUM && a->dtype == DType::Bool) cast(a, DType::Int32, stream);
  DType dtype = arg ? DType::Int32 : a->dtype;
  OpParams p;
  p.subop = op;
  p.axes = std::move(axes);
  return node(OpCode::Reduce, p, std::move(shape), dtype, NodeInputs::of(std::move(a)), std::move(stream));
}

NodePtr make_softmax(NodePtr a, int axis, StreamPtr stream) {
  not_quantized(a, "softmax");
  OpParams p;
  int ndim = static_cast<int>(a->shape.size());
  if (ndim == 0) throw_error(LANES_ERR_SHAPE, "softmax: needs at least one dimension");
  p.axis = normalize_axis(axis, ndim, "softmax");
  as_floating(a, stream);
  Shape shape = a->shape;
  DType dtype = a->dtype;
  return node(OpCode::Softmax, p, std::move(shape), dtype, NodeInputs::of(std::move(a)), std::move(stream));
}

NodePtr make_where(NodePtr cond, NodePtr a, NodePtr b, StreamPtr stream) {
  for (const NodePtr* n : {&cond, &a, &b}) not_quantized(*n, "where");
  Shape shape = broadcast_shapes(broadcast_shapes(cond->shape, a->shape, "where"), b->shape, "where");
  DType dtype = promote(a->dtype, b->dtype);
  cast(cond, DType::Bool, stream);
  cast(a, dtype, stream);
  cast(b, dtype, stream);
  return node(OpCode::Where, {}, std::move(shape), dtype, NodeInputs::of(std::move(cond), std::move(a), std::move(b)), std::move(stream));
}

// ---- views and shape ops ----------------------------------------------------------------------

namespace {

// A view of `a`'s data with a new shape and layout. Views of views point at the root, so a
// View node's input is always a computed (or uploaded) node.
NodePtr view(const NodePtr& a, Shape shape, Shape strides, int64_t offset) {
  NodePtr root = a->op == OpCode::View ? a->inputs.front() : a;
  // The view lives on its source's stream: it is ready when the source is.
  NodePtr v = node(OpCode::View, {}, std::move(shape), a->dtype, NodeInputs::of(NodePtr(root)), root->stream);
  v->extras = std::make_unique<const NodeExtras>(NodeExtras{std::move(strides), offset, nullptr});
  return v;
}

std::string axes_str(const std::vector<int>& axes) {
  std::string out = "[";
  for (size_t i = 0; i < axes.size(); ++i) out += (i ? ", " : "") + std::to_string(axes[i]);
  return out + "]";
}

}  // namespace

NodePtr make_reshape(NodePtr a, Shape shape, StreamPtr stream) {
  not_quantized(a, "reshape");
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1 && infer < 0) {
      infer = static_cast<int>(i);
    } else if (shape[i] < 0) {
      throw_error(LANES_ERR_SHAPE, "reshape: invalid target shape " + shape_str(shape));
    } else {
      known *= shape[i];
    }
  }
  int64_t n = numel(a->shape);
  if (infer >= 0) {
    if (known == 0 || n % known != 0)
      throw_error(LANES_ERR_SHAPE, "reshape: cannot reshape " + shape_str(a->shape) + " into " + shape_str(shape));
    shape[infer] = n / known;
  }
  if (checked_numel(shape, "reshape") != n)
    throw_error(LANES_ERR_SHAPE, "reshape: cannot reshape " + shape_str(a->shape) + " (" + std::to_string(n) +
                                     " elements) into " + shape_str(shape));
  // A strided layout is re-read in the new shape where it can be; otherwise it is copied to
  // contiguous first.
  Shape strides;
  if (a->contiguous() || n == 0)
    strides = contiguous_strides(shape);
  else if (!reshaped_strides(a->shape, a->layout(), shape, strides)) {
    a = make_astype(a, a->dtype, stream);
    strides = contiguous_strides(shape);
  }
  int64_t offset = a->offset();
  return view(a, std::move(shape), std::move(strides), offset);
}

NodePtr make_transpose(NodePtr a, std::vector<int> axes, bool reverse, StreamPtr stream) {
  not_quantized(a, "transpose");
  int ndim = static_cast<int>(a->shape.size());
  if (reverse) {
    axes.clear();
    for (int i = ndim - 1; i >= 0; --i) axes.push_back(i);
  }
  if (static_cast<int>(axes.size()) != ndim)
    throw_error(LANES_ERR_SHAPE, "transpose: axes " + axes_str(axes) + " do not match " + std::to_string(ndim) + "-d array");
  std::vector<bool> used(ndim, false);
  Shape shape, strides;
  for (int& ax : axes) {
    ax = normalize_axis(ax, ndim, "transpose");
    if (used[ax]) throw_error(LANES_ERR_SHAPE, "transpose: repeated axis in " + axes_str(axes));
    used[ax] = true;
    shape.push_back(a->shape[ax]);
    strides.push_back(a->layout()[ax]);
  }
  (void)stream;
  return view(a, std::move(shape), std::move(strides), a->offset());
}

NodePtr make_broadcast_to(NodePtr a, Shape shape, StreamPtr stream) {
  not_quantized(a, "broadcastTo");
  checked_numel(shape, "broadcastTo");
  if (broadcast_shapes(a->shape, shape, "broadcastTo") != shape || a->shape.size() > shape.size())
    throw_error(LANES_ERR_SHAPE, "broadcastTo: cannot broadcast " + shape_str(a->shape) + " to " + shape_str(shape));
  Shape strides(shape.size(), 0);
  size_t off = shape.size() - a->shape.size();
  for (size_t i = 0; i < a->shape.size(); ++i) strides[off + i] = a->shape[i] == 1 ? 0 : a->layout()[i];
  (void)stream;
  return view(a, std::move(shape), std::move(strides), a->offset());
}

NodePtr make_expand_dims(NodePtr a, std::vector<int> axes, StreamPtr stream) {
  not_quantized(a, "expandDims");
  int out_ndim = static_cast<int>(a->shape.size() + axes.size());
  for (int& ax : axes) ax = normalize_axis(ax, out_ndim, "expandDims");
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    throw_error(LANES_ERR_SHAPE, "expandDims: repeated axis in " + axes_str(axes));
  Shape shape, strides;
  size_t src = 0;
  for (int i = 0; i < out_ndim; ++i) {
    if (std::binary_search(axes.begin(), axes.end(), i)) {
      shape.push_back(1);
      strides.push_back(0);
    } else {
      shape.push_back(a->shape[src]);
      strides.push_back(a->layout()[src]);
      ++src;
    }
  }
  (void)stream;
  return view(a, std::move(shape), std::move(strides), a->offset());
}

NodePtr make_squeeze(NodePtr a, std::vector<int> axes, bool all_unit_axes, StreamPtr stream) {
  not_quantized(a, "squeeze");
  int ndim = static_cast<int>(a->shape.size());
  if (all_unit_axes) {
    axes.clear();
    for (int i = 0; i < ndim; ++i)
      if (a->shape[i] == 1) axes.push_back(i);
  }
  for (int& ax : axes) {
    ax = normalize_axis(ax, ndim, "squeeze");
    if (a->shape[ax] != 1)
      throw_error(LANES_ERR_SHAPE, "squeeze: axis " + std::to_string(ax) + " of " + shape_str(a->shape) + " has size " +
                                       std::to_string(a->shape[ax]) + ", not 1");
  }
  Shape shape, strides;
  for (int i = 0; i < ndim; ++i) {
    if (std::find(axes.begin(), axes.end(), i) != axes.end()) continue;
    shape.push_back(a->shape[i]);
    strides.push_back(a->layout()[i]);
  }
  (void)stream;
  return view(a, std::move(shape), std::move(strides), a->offset());
}

NodePtr make_slice(NodePtr a, const Shape& starts, const Shape& stops,
                   const Shape& steps, StreamPtr stream) {
  not_quantized(a, "slice");
  size_t ndim = a->shape.size();
  if (starts.size() > ndim || stops.size() != starts.size() || (!steps.empty() && steps.size() != starts.size()))
    throw_error(LANES_ERR_SHAPE, "slice: starts, stops and steps must have one entry per sliced axis (at most " +
                                     std::to_string(ndim) + ") for " + shape_str(a->shape));
  Shape shape = a->shape, strides = a->layout();
  int64_t offset = a->offset();
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t dim = a->shape[i], step = steps.empty() ? 1 : steps[i];
    if (step == 0) throw_error(LANES_ERR_SHAPE, "slice: step 0 on axis " + std::to_string(i));
    // Python's rules: negative indices count from the end, then clamp to the axis.
    auto clamp = [&](int64_t v, int64_t lo, int64_t hi) {
      if (v < 0) v += dim;
      return std::min(std::max(v, lo), hi);
    };
    int64_t start = step > 0 ? clamp(starts[i], 0, dim) : clamp(starts[i], -1, dim - 1);
    int64_t stop = step > 0 ? clamp(stops[i], 0, dim) : clamp(stops[i], -1, dim - 1);
    int64_t count = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0)
                             : (start > stop ? (start - stop - step - 1) / -step : 0);
    shape[i] = count;
    if (count > 0) offset += start * strides[i];
    strides[i] *= step;
  }
  (void)stream;
  return view(a, std::move(shape), std::move(strides), offset);
}

NodePtr make_concatenate(std::vector<NodePtr> arrays, int axis, StreamPtr stream) {
  if (arrays.empty()) throw_error(LANES_ERR_INVALID_ARGUMENT, "concatenate: needs at least one array");
  const Shape& first = arrays.front()->shape;
  int ndim = static_cast<int>(first.size());
  if (ndim == 0) throw_error(LANES_ERR_SHAPE, "concatenate: cannot concatenate 0-d arrays");
  int ax = normalize_axis(axis, ndim, "concatenate");
  Shape shape = first;
  shape[ax] = 0;
  DType dtype = arrays.front()->dtype;
  for (const NodePtr& a : arrays) {
    not_quantized(a, "concatenate");
    bool same = a->shape.size() == first.size();
    for (int d = 0; same && d < ndim; ++d) same = d == ax || a->shape[d] == first[d];
    if (!same)
      throw_error(LANES_ERR_SHAPE, "concatenate: shapes " + shape_str(first) + " and " + shape_str(a->shape) +
                                       " differ outside axis " + std::to_string(ax));
    shape[ax] += a->shape[ax];
    dtype = promote(dtype, a->dtype);
  }
  checked_numel(shape, "concatenate");
  for (NodePtr& a : arrays) cast(a, dtype, stream);
  OpParams p;
  p.axis = ax;
  return node(OpCode::Concatenate, p, std::move(shape), dtype, NodeInputs(std::move(arrays)), std::move(stream));
}

NodePtr make_stack(std::vector<NodePtr> arrays, int axis, StreamPtr stream) {
  if (arrays.empty()) throw_error(LANES_ERR_INVALID_ARGUMENT, "stack: needs at least one array");
  for (const NodePtr& a : arrays)
    if (a->shape != arrays.front()->shape)
      throw_error(LANES_ERR_SHAPE, "stack: shapes " + shape_str(arrays.front()->shape) + " and " + shape_str(a->shape) + " differ");
  int ax = normalize_axis(axis, static_cast<int>(arrays.front()->shape.size()) + 1, "stack");
  for (NodePtr& a : arrays) a = make_expand_dims(a, {ax}, stream);
  return make_concatenate(std::move(arrays), ax, std::move(stream));
}

NodePtr make_take(NodePtr a, NodePtr indices, int axis, StreamPtr stream) {
  int ndim = static_cast<int>(a->shape.size());
  if (ndim == 0) throw_error(LANES_ERR_SHAPE, "take: cannot index a 0-d array");
  int ax = normalize_axis(axis, ndim, "take");
  not_quantized(indices, "take");
  if (is_quantized(a->dtype) && (ax != 0 || ndim != 2))
    throw_error(LANES_ERR_SHAPE, std::string("take: a quantized array is taken from by rows: needs a 2-D array and axis 0, got ") +
                                     shape_str(a->shape) + " and axis " + std::to_string(axis));
  if (is_floating(indices->dtype))
    throw_error(LANES_ERR_DTYPE, std::string("take: indices must be integers, got ") + dtype_name(indices->dtype));
  cast(indices, DType::Int32, stream);
  Shape shape(a->shape.begin(), a->shape.begin() + ax);
  shape.insert(shape.end(), indices->shape.begin(), indices->shape.end());
  shape.insert(shape.end(), a->shape.begin() + ax + 1, a->shape.end());
  checked_numel(shape, "take");
  OpParams p;
  p.axis = ax;
  DType dtype = is_quantized(a->dtype) ? DType::Float32 : a->dtype;
  return node(OpCode::Take, p, std::move(shape), dtype, NodeInputs::of(std::move(a), std::move(indices)), std::move(stream));
}

// ---- fused ops ---------------------------------------------------------------------------------

namespace {

void check_last_dim(const char* op, const char* what, const NodePtr& p, const NodePtr& x) {
  if (p->shape.size() != 1 || p->shape[0] != x->shape.back())
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": " + what + " of shape " + shape_str(p->shape) + " does not match the last axis of " +
                                     shape_str(x->shape));
}

DType common_floating(const std::vector<NodePtr>& nodes) {
  DType d = nodes.front()->dtype;
  for (const NodePtr& n : nodes) d = promote(d, n->dtype);
  return floating_of(d);
}

void check_eps(const char* op, double eps) {
  if (!(eps >= 0) || !std::isfinite(eps))
    throw_error(LANES_ERR_INVALID_ARGUMENT, std::string(op) + ": eps must be finite and non-negative, got " + std::to_string(eps));
}

}  // namespace

namespace {

// rmsNorm and layerNorm: the same inputs and checks, one kernel flag apart.
NodePtr make_norm(OpCode op, NodePtr x, NodePtr weight, NodePtr bias, double eps, StreamPtr stream) {
  const char* name = op_name(op, 0);
  for (const NodePtr* n : {&x, &weight, &bias})
    if (*n) not_quantized(*n, name);
  if (x->shape.empty()) throw_error(LANES_ERR_SHAPE, std::string(name) + ": needs at least one dimension");
  check_eps(name, eps);
  std::vector<NodePtr> inputs{x};
  OpParams p;
  p.scalars[0] = eps;
  if (weight) {
    check_last_dim(name, "weight", weight, x);
    inputs.push_back(weight);
    p.flags |= 1;
  }
  if (bias) {
    check_last_dim(name, "bias", bias, x);
    inputs.push_back(bias);
    p.flags |= 2;
  }
  DType dtype = common_floating(inputs);
  for (NodePtr& n : inputs) cast(n, dtype, stream);
  Shape shape = x->shape;
  return node(op, p, std::move(shape), dtype, NodeInputs(std::move(inputs)), std::move(stream));
}

}  // namespace

NodePtr make_rms_norm(NodePtr x, NodePtr weight, double eps, StreamPtr stream) {
  return make_norm(OpCode::RmsNorm, std::move(x), std::move(weight), nullptr, eps, std::move(stream));
}

NodePtr make_layer_norm(NodePtr x, NodePtr weight, NodePtr bias, double eps, StreamPtr stream) {
  return make_norm(OpCode::LayerNorm, std::move(x), std::move(weight), std::move(bias), eps, std::move(stream));
}

namespace {

// A per-row operand: one int32 per entry of the leading axis (`rows` of them), contiguous so
// every backend reads it as a plain vector.
NodePtr per_row(NodePtr a, int64_t rows, const char* op, const char* what, const StreamPtr& stream) {
  if (a->dtype != DType::Int32)
    throw_error(LANES_ERR_DTYPE, std::string(op) + ": " + what + " must be int32, got " + dtype_name(a->dtype));
  if (a->shape.size() != 1 || a->shape[0] != rows)
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": " + what + " must have shape [" + std::to_string(rows) +
                                     "] (one per entry of the leading axis), got " + shape_str(a->shape));
  if (!a->contiguous()) a = make_astype(std::move(a), DType::Int32, stream);
  return a;
}

// scaledDotProductAttention over the first `key_length` keys, or (key_lengths set) over the
// first key_lengths[b] keys of each batch entry b.
NodePtr attention_node(NodePtr q, NodePtr k, NodePtr v, double scale, bool causal, int64_t key_length, int key_length_param,
                       NodePtr key_lengths, StreamPtr stream) {
  const char* op = "scaledDotProductAttention";
  for (const NodePtr* n : {&q, &k, &v}) not_quantized(*n, op);
  if (q->shape.size() != 4 || k->shape.size() != 4 || v->shape.size() != 4)
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": q, k, v must be [batch, heads, seq, dim], got " + shape_str(q->shape) + ", " +
                                     shape_str(k->shape) + ", " + shape_str(v->shape));
  const Shape &qs = q->shape, &ks = k->shape, &vs = v->shape;
  bool ok = qs[0] == ks[0] && ks[0] == vs[0] && ks[1] == vs[1] && ks[2] == vs[2] && qs[3] == ks[3] && ks[1] > 0 &&
            qs[1] % ks[1] == 0;
  if (!ok)
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": incompatible q " + shape_str(qs) + ", k " + shape_str(ks) + ", v " + shape_str(vs) +
                                     " (need equal batch, k/v sharing heads and length, q heads a multiple of k heads, equal q/k dim)");
  if (!std::isfinite(scale)) scale = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(1, qs[3])));
  if (key_length < 0) key_length = ks[2];
  if (key_length > ks[2])
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": key length " + std::to_string(key_length) + " exceeds the " +
                                     std::to_string(ks[2]) + " keys of k " + shape_str(ks));
  if (key_lengths) key_lengths = per_row(std::move(key_lengths), qs[0], op, "keyLength", stream);
  OpParams p;
  p.scalars[0] = scale;
  p.scalars[1] = static_cast<double>(key_length);
  p.dynamic[1] = static_cast<int8_t>(key_length_param);
  p.flags = causal ? 1 : 0;
  std::vector<NodePtr> inputs{q, k, v};
  // float32 queries over a float16 KV cache: k and v are read as they are stored, not widened
  // copies of the whole cache; the scores use q rounded to float16 and the output is float32.
  bool f16_cache = q->dtype == DType::Float32 && k->dtype == DType::Float16 && v->dtype == DType::Float16;
  DType dtype = f16_cache ? DType::Float32 : common_floating(inputs);
  if (!f16_cache)
    for (NodePtr& n : inputs) cast(n, dtype, stream);
  if (key_lengths) inputs.push_back(std::move(key_lengths));
  Shape shape{qs[0], qs[1], qs[2], vs[3]};
  return node(OpCode::Attention, p, std::move(shape), dtype, NodeInputs(std::move(inputs)), std::move(stream));
}

NodePtr rope_node(NodePtr x, int dims, bool traditional, double base, double scale, int64_t offset, int offset_param,
                  NodePtr offsets, StreamPtr stream) {
  not_quantized(x, "rope");
  if (x->shape.size() < 2) throw_error(LANES_ERR_SHAPE, "rope: needs [..., seq, dim], got " + shape_str(x->shape));
  if (dims <= 0 || dims % 2 != 0 || dims > x->shape.back())
    throw_error(LANES_ERR_SHAPE, "rope: dims must be even and in (0, " + std::to_string(x->shape.back()) + "], got " + std::to_string(dims));
  if (!(base > 0) || !std::isfinite(base) || !std::isfinite(scale))
    throw_error(LANES_ERR_INVALID_ARGUMENT, "rope: base must be positive and finite and scale finite");
  std::vector<NodePtr> inputs;
  if (offsets) {
    if (x->shape.size() < 3)
      throw_error(LANES_ERR_SHAPE, "rope: per-row offsets need [batch, ..., seq, dim], got " + shape_str(x->shape));
    inputs.push_back(per_row(std::move(offsets), x->shape[0], "rope", "offset", stream));
  }
  OpParams p;
  p.axis = dims;
  p.scalars[0] = base;
  p.scalars[1] = scale;
  p.scalars[2] = static_cast<double>(offset);
  p.dynamic[2] = static_cast<int8_t>(offset_param);
  p.flags = traditional ? 1 : 0;
  as_floating(x, stream);
  Shape shape = x->shape;
  DType dtype = x->dtype;
  inputs.insert(inputs.begin(), std::move(x));
  return node(OpCode::Rope, p, std::move(shape), dtype, NodeInputs(std::move(inputs)), std::move(stream));
}

}  // namespace

NodePtr make_attention(NodePtr q, NodePtr k, NodePtr v, double scale, bool causal, int64_t key_length, int key_length_param,
                       StreamPtr stream) {
  return attention_node(std::move(q), std::move(k), std::move(v), scale, causal, key_length, key_length_param, nullptr, std::move(stream));
}

NodePtr make_attention_rows(NodePtr q, NodePtr k, NodePtr v, double scale, bool causal, NodePtr key_lengths, StreamPtr stream) {
  return attention_node(std::move(q), std::move(k), std::move(v), scale, causal, -1, -1, std::move(key_lengths), std::move(stream));
}

NodePtr make_rope(NodePtr x, int dims, bool traditional, double base, double scale, int64_t offset, int offset_param,
                  StreamPtr stream) {
  return rope_node(std::move(x), dims, traditional, base, scale, offset, offset_param, nullptr, std::move(stream));
}

NodePtr make_rope_rows(NodePtr x, int dims, bool traditional, double base, double scale, NodePtr offsets, StreamPtr stream) {
  return rope_node(std::move(x), dims, traditional, base, scale, 0, -1, std::move(offsets), std::move(stream));
}

NodePtr make_astype(NodePtr a, DType dtype, StreamPtr stream) {
  if (is_quantized(dtype) && dtype != a->dtype)
    throw_error(LANES_ERR_DTYPE, std::string("astype: cannot quantize to ") + dtype_name(dtype) +
                                     " (quantized arrays are made from their bytes: array(bytes, shape, dtype))");
  if (is_quantized(a->dtype) && dtype != a->dtype && dtype != DType::Float32)
    throw_error(LANES_ERR_DTYPE, std::string("astype: ") + dtype_name(a->dtype) + " dequantizes to float32 only, not " +
                                     dtype_name(dtype));
  Shape shape = a->shape;
  return node(OpCode::AsType, {}, std::move(shape), dtype, NodeInputs::of(std::move(a)), std::move(stream));
}

NodePtr make_download(NodePtr a, std::shared_ptr<void> staging, StreamPtr stream) {
  DType dtype = a->dtype;
  NodePtr n = node(OpCode::Download, {}, Shape{0}, dtype, NodeInputs::of(std::move(a)), std::move(stream));
  n->extras = std::make_unique<const NodeExtras>(NodeExtras{{}, 0, std::move(staging)});
  return n;
}

NodePtr make_binary_scalar(int op, NodePtr a, double scalar, bool scalar_first, int scalar_param, StreamPtr stream) {
  if (op < 0 || op >= kBinaryOps) throw_error(LANES_ERR_INVALID_ARGUMENT, "binary: unknown op " + std::to_string(op));
  const char* name = op_name(OpCode::Binary, op);
  not_quantized(a, name);
  // The scalar is weakly typed, as a Python scalar is in MLX: it takes the array's type when
  // that type holds it (any float type; an int type for an integral value). A compiled plan's
  // scalar is typed by the value it was traced with; its replays check they keep that kind.
  bool integral = std::isfinite(scalar) && scalar == std::trunc(scalar) && std::fabs(scalar) <= 2147483647.0;
  Rule rule = kBinaryRules[op];
  DType compute = a->dtype;
  if (!is_floating(compute)) compute = integral && rule != Rule::FLOAT ? DType::Int32 : DType::Float32;
  cast(a, compute, stream);
  OpParams p;
  p.subop = op;
  p.scalars[0] = scalar;
  p.dynamic[0] = static_cast<int8_t>(scalar_param);
  p.flags = scalar_first ? 1 : 0;
  Shape shape = a->shape;
  DType dtype = rule == Rule::COMPARE ? DType::Bool : compute;
  return node(OpCode::BinaryScalar, p, std::move(shape), dtype, NodeInputs::of(std::move(a)), std::move(stream));
}

NodePtr make_quantized_matmul(NodePtr x, NodePtr w, StreamPtr stream) {
  const char* op = "quantizedMatmul";
  if (!is_quantized(w->dtype))
    throw_error(LANES_ERR_DTYPE, std::string(op) + ": w must be quantized (q4_0, q4_1 or q8_0), got " + dtype_name(w->dtype));
  not_quantized(x, op);
  if (w->shape.size() != 2 || x->shape.empty() || x->shape.back() != w->shape[1])
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": needs x [..., k] and w [n, k], got x " + shape_str(x->shape) + " and w " +
                                     shape_str(w->shape));
  cast(x, DType::Float32, stream);
  if (!x->contiguous()) x = make_astype(x, DType::Float32, stream);
  Shape shape = x->shape;
  shape.back() = w->shape[0];
  return node(OpCode::QuantizedMatmul, {}, std::move(shape), DType::Float32, NodeInputs::of(std::move(x), std::move(w)), std::move(stream));
}

namespace {

// sliceUpdate's checks: `update` fits `target` along axis `ax` (every other axis equal).
int slice_update_axis(const NodePtr& target, const NodePtr& update, int axis) {
  const char* op = "sliceUpdate";
  not_quantized(target, op);
  not_quantized(update, op);
  int ndim = static_cast<int>(target->shape.size());
  if (ndim == 0) throw_error(LANES_ERR_SHAPE, std::string(op) + ": the target needs at least one dimension");
  int ax = normalize_axis(axis, ndim, op);
  bool fits = update->shape.size() == target->shape.size();
  for (int d = 0; fits && d < ndim; ++d) fits = d == ax ? update->shape[d] <= target->shape[d] : update->shape[d] == target->shape[d];
  if (!fits)
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": update " + shape_str(update->shape) + " does not fit target " +
                                     shape_str(target->shape) + " along axis " + std::to_string(ax));
  return ax;
}

}  // namespace

NodePtr make_slice_update(NodePtr target, NodePtr update, int axis, int64_t offset, int offset_param, StreamPtr stream) {
  const char* op = "sliceUpdate";
  int ax = slice_update_axis(target, update, axis);
  int64_t room = target->shape[ax] - update->shape[ax];
  if (offset < 0 || offset > room)
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": offset " + std::to_string(offset) + " is out of range [0, " +
                                     std::to_string(room) + "] for update " + shape_str(update->shape) + " in " +
                                     shape_str(target->shape));
  cast(update, target->dtype, stream);
  OpParams p;
  p.axis = ax;
  p.scalars[0] = static_cast<double>(offset);
  p.dynamic[0] = static_cast<int8_t>(offset_param);
  Shape shape = target->shape;
  DType dtype = target->dtype;
  return node(OpCode::SliceUpdate, p, std::move(shape), dtype, NodeInputs::of(std::move(target), std::move(update)), std::move(stream));
}

NodePtr make_slice_update_rows(NodePtr target, NodePtr update, int axis, NodePtr offsets, StreamPtr stream) {
  const char* op = "sliceUpdate";
  if (!target->shape.empty() && normalize_axis(axis, static_cast<int>(target->shape.size()), op) == 0)
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": per-row offsets index the leading axis, so they write along another axis (got axis " +
                                     std::to_string(axis) + " of " + shape_str(target->shape) + ")");
  int ax = slice_update_axis(target, update, axis);
  offsets = per_row(std::move(offsets), target->shape[0], op, "offset", stream);
  cast(update, target->dtype, stream);
  OpParams p;
  p.axis = ax;
  Shape shape = target->shape;
  DType dtype = target->dtype;
  return node(OpCode::SliceUpdate, p, std::move(shape), dtype, NodeInputs::of(std::move(target), std::move(update), std::move(offsets)),
              std::move(stream));
}

NodePtr make_placeholder(DType dtype, Shape shape) {
  checked_numel(shape, "placeholder");
  return node(OpCode::Placeholder, {}, std::move(shape), dtype, {}, nullptr);
}

}  // namespace lanes
