#include "graph.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

#include "runtime.hpp"
#include "status.hpp"

namespace lanes {

const char* op_name(OpCode op, int subop) {
  switch (op) {
    case OpCode::FromData: return "array";
    case OpCode::Full: return "full";
    case OpCode::Arange: return "arange";
    case OpCode::Random: return subop == LANES_RANDOM_NORMAL ? "random.normal" : "random.uniform";
    case OpCode::Unary: {
      static const char* names[] = {"exp",  "log",     "negative", "abs",  "square",      "sqrt", "rsqrt",
                                    "tanh", "sigmoid", "silu",     "gelu", "geluApprox",  "sin",  "cos"};
      return subop >= 0 && subop < static_cast<int>(std::size(names)) ? names[subop] : "unary";
    }
    case OpCode::Binary: {
      static const char* names[] = {"add",   "subtract", "multiply", "divide", "maximum",
                                    "minimum", "power", "equal",    "less",   "greater"};
      return subop >= 0 && subop < static_cast<int>(std::size(names)) ? names[subop] : "binary";
    }
    case OpCode::Matmul: return "matmul";
    case OpCode::Reduce: {
      static const char* names[] = {"sum", "max", "mean", "min", "logsumexp", "variance", "argmax", "argmin"};
      return subop >= 0 && subop < static_cast<int>(std::size(names)) ? names[subop] : "reduce";
    }
    case OpCode::Softmax: return "softmax";
    case OpCode::AsType: return "astype";
    case OpCode::Where: return "where";
    case OpCode::View: return "view";
    case OpCode::Concatenate: return "concatenate";
    case OpCode::Take: return "take";
    case OpCode::RmsNorm: return "rmsNorm";
    case OpCode::LayerNorm: return "layerNorm";
    case OpCode::Attention: return "scaledDotProductAttention";
    case OpCode::Rope: return "rope";
    case OpCode::Download: return "read";
  }
  return "op";
}

namespace {

// The most dimensions an array may have (the C ABI's shape buffers are sized for it).
constexpr size_t kMaxDims = 32;

NodePtr node(OpCode op, OpParams params, Shape shape, DType dtype, std::vector<NodePtr> inputs, StreamPtr stream) {
  if (shape.size() > kMaxDims)
    throw_error(LANES_ERR_SHAPE, std::string(op_name(op, params.subop)) + ": the result would have " +
                                     std::to_string(shape.size()) + " dimensions (at most " + std::to_string(kMaxDims) + ")");
  return std::make_shared<Node>(op, std::move(params), std::move(shape), dtype, std::move(inputs), std::move(stream));
}

NodePtr cast(const NodePtr& a, DType dtype, const StreamPtr& stream) {
  return a->dtype == dtype ? a : make_astype(a, dtype, stream);
}

// For ops that need floating point: halves stay half, everything else becomes float32.
NodePtr as_floating(const NodePtr& a, const StreamPtr& stream) { return cast(a, floating_of(a->dtype), stream); }

}  // namespace

NodePtr make_from_data(const void* data, size_t nbytes, DType dtype, Shape shape) {
  int64_t n = checked_numel(shape, "array");
  size_t expected = static_cast<size_t>(n) * dtype_size(dtype);
  if (nbytes != expected)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "array: data has " + std::to_string(nbytes) + " bytes but shape " +
                                                shape_str(shape) + " of " + dtype_name(dtype) + " needs " +
                                                std::to_string(expected));
  if (n > 0 && !data) throw_error(LANES_ERR_INVALID_ARGUMENT, "array: data pointer is null");
  NodePtr out = node(OpCode::FromData, {}, std::move(shape), dtype, {}, nullptr);
  out->buffer = runtime().allocator().allocate(expected);
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
  if (op < LANES_OP_EXP || op > LANES_OP_COS)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "unary: unknown op " + std::to_string(op));
  bool keeps_int = op == LANES_OP_NEGATIVE || op == LANES_OP_ABS || op == LANES_OP_SQUARE;
  if (keeps_int && a->dtype == DType::Bool) a = cast(a, DType::Int32, stream);
  if (!keeps_int) a = as_floating(a, stream);
  OpParams p;
  p.subop = op;
  Shape shape = a->shape;
  DType dtype = a->dtype;
  return node(OpCode::Unary, p, std::move(shape), dtype, {std::move(a)}, std::move(stream));
}

NodePtr make_binary(int op, NodePtr a, NodePtr b, StreamPtr stream) {
  if (op < LANES_OP_ADD || op > LANES_OP_GREATER)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "binary: unknown op " + std::to_string(op));
  const char* name = op_name(OpCode::Binary, op);
  Shape shape = broadcast_shapes(a->shape, b->shape, name);
  bool comparison = op >= LANES_OP_EQUAL;
  DType common = promote(a->dtype, b->dtype);
  // Arithmetic on bools counts in int32; divide and power need floating point.
  if (!comparison && common == DType::Bool) common = DType::Int32;
  if (op == LANES_OP_DIVIDE || op == LANES_OP_POWER) common = floating_of(common);
  a = cast(a, common, stream);
  b = cast(b, common, stream);
  DType dtype = comparison ? DType::Bool : common;
  OpParams p;
  p.subop = op;
  return node(OpCode::Binary, p, std::move(shape), dtype, {std::move(a), std::move(b)}, std::move(stream));
}

NodePtr make_matmul(NodePtr a, NodePtr b, StreamPtr stream) {
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
  a = cast(a, dtype, stream);
  b = cast(b, dtype, stream);
  return node(OpCode::Matmul, {}, std::move(shape), dtype, {std::move(a), std::move(b)}, std::move(stream));
}

NodePtr make_reduce(int op, NodePtr a, std::vector<int> axes, bool all_axes, bool keepdims, StreamPtr stream) {
  if (op < LANES_REDUCE_SUM || op > LANES_REDUCE_ARGMIN)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "reduce: unknown op " + std::to_string(op));
  const char* name = op_name(OpCode::Reduce, op);
  bool arg = op == LANES_REDUCE_ARGMAX || op == LANES_REDUCE_ARGMIN;
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
  bool float_result = op == LANES_REDUCE_MEAN || op == LANES_REDUCE_LOGSUMEXP || op == LANES_REDUCE_VARIANCE;
  if (float_result) a = as_floating(a, stream);
  else if (op == LANES_REDUCE_SUM && a->dtype == DType::Bool) a = cast(a, DType::Int32, stream);
  DType dtype = arg ? DType::Int32 : a->dtype;
  OpParams p;
  p.subop = op;
  p.axes = std::move(axes);
  return node(OpCode::Reduce, p, std::move(shape), dtype, {std::move(a)}, std::move(stream));
}

NodePtr make_softmax(NodePtr a, int axis, StreamPtr stream) {
  OpParams p;
  int ndim = static_cast<int>(a->shape.size());
  if (ndim == 0) throw_error(LANES_ERR_SHAPE, "softmax: needs at least one dimension");
  p.axis = normalize_axis(axis, ndim, "softmax");
  a = as_floating(a, stream);
  Shape shape = a->shape;
  DType dtype = a->dtype;
  return node(OpCode::Softmax, p, std::move(shape), dtype, {std::move(a)}, std::move(stream));
}

NodePtr make_where(NodePtr cond, NodePtr a, NodePtr b, StreamPtr stream) {
  Shape shape = broadcast_shapes(broadcast_shapes(cond->shape, a->shape, "where"), b->shape, "where");
  DType dtype = promote(a->dtype, b->dtype);
  cond = cast(cond, DType::Bool, stream);
  a = cast(a, dtype, stream);
  b = cast(b, dtype, stream);
  return node(OpCode::Where, {}, std::move(shape), dtype, {std::move(cond), std::move(a), std::move(b)}, std::move(stream));
}

// ---- views and shape ops ----------------------------------------------------------------------

namespace {

// A view of `a`'s data with a new shape and layout. Views of views point at the root, so a
// View node's input is always a computed (or uploaded) node.
NodePtr view(const NodePtr& a, Shape shape, std::vector<int64_t> strides, int64_t offset) {
  NodePtr root = a->op == OpCode::View ? a->inputs.front() : a;
  // The view lives on its source's stream: it is ready when the source is.
  NodePtr v = node(OpCode::View, {}, std::move(shape), a->dtype, {root}, root->stream);
  v->strides = std::move(strides);
  v->offset = offset;
  return v;
}

std::string axes_str(const std::vector<int>& axes) {
  std::string out = "[";
  for (size_t i = 0; i < axes.size(); ++i) out += (i ? ", " : "") + std::to_string(axes[i]);
  return out + "]";
}

}  // namespace

NodePtr make_reshape(NodePtr a, Shape shape, StreamPtr stream) {
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
  // A strided layout cannot always be re-read in a new shape: copy it to contiguous first.
  if (!a->contiguous()) a = make_astype(a, a->dtype, stream);
  Shape strides = contiguous_strides(shape);
  int64_t offset = a->offset;
  return view(a, std::move(shape), std::move(strides), offset);
}

NodePtr make_transpose(NodePtr a, std::vector<int> axes, bool reverse, StreamPtr stream) {
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
    strides.push_back(a->strides[ax]);
  }
  (void)stream;
  return view(a, std::move(shape), std::move(strides), a->offset);
}

NodePtr make_broadcast_to(NodePtr a, Shape shape, StreamPtr stream) {
  checked_numel(shape, "broadcastTo");
  if (broadcast_shapes(a->shape, shape, "broadcastTo") != shape || a->shape.size() > shape.size())
    throw_error(LANES_ERR_SHAPE, "broadcastTo: cannot broadcast " + shape_str(a->shape) + " to " + shape_str(shape));
  Shape strides(shape.size(), 0);
  size_t off = shape.size() - a->shape.size();
  for (size_t i = 0; i < a->shape.size(); ++i) strides[off + i] = a->shape[i] == 1 ? 0 : a->strides[i];
  (void)stream;
  return view(a, std::move(shape), std::move(strides), a->offset);
}

NodePtr make_expand_dims(NodePtr a, std::vector<int> axes, StreamPtr stream) {
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
      strides.push_back(a->strides[src]);
      ++src;
    }
  }
  (void)stream;
  return view(a, std::move(shape), std::move(strides), a->offset);
}

NodePtr make_squeeze(NodePtr a, std::vector<int> axes, bool all_unit_axes, StreamPtr stream) {
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
    strides.push_back(a->strides[i]);
  }
  (void)stream;
  return view(a, std::move(shape), std::move(strides), a->offset);
}

NodePtr make_slice(NodePtr a, const std::vector<int64_t>& starts, const std::vector<int64_t>& stops,
                   const std::vector<int64_t>& steps, StreamPtr stream) {
  size_t ndim = a->shape.size();
  if (starts.size() > ndim || stops.size() != starts.size() || (!steps.empty() && steps.size() != starts.size()))
    throw_error(LANES_ERR_SHAPE, "slice: starts, stops and steps must have one entry per sliced axis (at most " +
                                     std::to_string(ndim) + ") for " + shape_str(a->shape));
  Shape shape = a->shape, strides = a->strides;
  int64_t offset = a->offset;
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
    if (count > 0) offset += start * a->strides[i];
    strides[i] = a->strides[i] * step;
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
    bool same = a->shape.size() == first.size();
    for (int d = 0; same && d < ndim; ++d) same = d == ax || a->shape[d] == first[d];
    if (!same)
      throw_error(LANES_ERR_SHAPE, "concatenate: shapes " + shape_str(first) + " and " + shape_str(a->shape) +
                                       " differ outside axis " + std::to_string(ax));
    shape[ax] += a->shape[ax];
    dtype = promote(dtype, a->dtype);
  }
  checked_numel(shape, "concatenate");
  for (NodePtr& a : arrays) a = cast(a, dtype, stream);
  OpParams p;
  p.axis = ax;
  return node(OpCode::Concatenate, p, std::move(shape), dtype, std::move(arrays), std::move(stream));
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
  if (is_floating(indices->dtype))
    throw_error(LANES_ERR_DTYPE, std::string("take: indices must be integers, got ") + dtype_name(indices->dtype));
  indices = cast(indices, DType::Int32, stream);
  Shape shape(a->shape.begin(), a->shape.begin() + ax);
  shape.insert(shape.end(), indices->shape.begin(), indices->shape.end());
  shape.insert(shape.end(), a->shape.begin() + ax + 1, a->shape.end());
  checked_numel(shape, "take");
  OpParams p;
  p.axis = ax;
  DType dtype = a->dtype;
  return node(OpCode::Take, p, std::move(shape), dtype, {std::move(a), std::move(indices)}, std::move(stream));
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
  for (NodePtr& n : inputs) n = cast(n, dtype, stream);
  Shape shape = x->shape;
  return node(op, p, std::move(shape), dtype, std::move(inputs), std::move(stream));
}

}  // namespace

NodePtr make_rms_norm(NodePtr x, NodePtr weight, double eps, StreamPtr stream) {
  return make_norm(OpCode::RmsNorm, std::move(x), std::move(weight), nullptr, eps, std::move(stream));
}

NodePtr make_layer_norm(NodePtr x, NodePtr weight, NodePtr bias, double eps, StreamPtr stream) {
  return make_norm(OpCode::LayerNorm, std::move(x), std::move(weight), std::move(bias), eps, std::move(stream));
}

NodePtr make_attention(NodePtr q, NodePtr k, NodePtr v, double scale, bool causal, StreamPtr stream) {
  const char* op = "scaledDotProductAttention";
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
  OpParams p;
  p.scalars[0] = scale;
  p.flags = causal ? 1 : 0;
  std::vector<NodePtr> inputs{q, k, v};
  DType dtype = common_floating(inputs);
  for (NodePtr& n : inputs) n = cast(n, dtype, stream);
  Shape shape{qs[0], qs[1], qs[2], vs[3]};
  return node(OpCode::Attention, p, std::move(shape), dtype, std::move(inputs), std::move(stream));
}

NodePtr make_rope(NodePtr x, int dims, bool traditional, double base, double scale, int64_t offset, StreamPtr stream) {
  if (x->shape.size() < 2) throw_error(LANES_ERR_SHAPE, "rope: needs [..., seq, dim], got " + shape_str(x->shape));
  if (dims <= 0 || dims % 2 != 0 || dims > x->shape.back())
    throw_error(LANES_ERR_SHAPE, "rope: dims must be even and in (0, " + std::to_string(x->shape.back()) + "], got " + std::to_string(dims));
  if (!(base > 0) || !std::isfinite(base) || !std::isfinite(scale))
    throw_error(LANES_ERR_INVALID_ARGUMENT, "rope: base must be positive and finite and scale finite");
  OpParams p;
  p.axis = dims;
  p.scalars[0] = base;
  p.scalars[1] = scale;
  p.offset = offset;
  p.flags = traditional ? 1 : 0;
  x = as_floating(x, stream);
  Shape shape = x->shape;
  DType dtype = x->dtype;
  return node(OpCode::Rope, p, std::move(shape), dtype, {std::move(x)}, std::move(stream));
}

NodePtr make_astype(NodePtr a, DType dtype, StreamPtr stream) {
  Shape shape = a->shape;
  return node(OpCode::AsType, {}, std::move(shape), dtype, {std::move(a)}, std::move(stream));
}

NodePtr make_download(NodePtr a, std::shared_ptr<void> staging, StreamPtr stream) {
  OpParams p;
  p.host_staging = std::move(staging);
  DType dtype = a->dtype;
  return node(OpCode::Download, std::move(p), Shape{0}, dtype, {std::move(a)}, std::move(stream));
}

}  // namespace lanes
