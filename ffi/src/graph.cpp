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
  }
  return "op";
}

namespace {

NodePtr node(OpCode op, OpParams params, Shape shape, DType dtype, std::vector<NodePtr> inputs, StreamPtr stream) {
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

NodePtr make_astype(NodePtr a, DType dtype, StreamPtr stream) {
  Shape shape = a->shape;
  return node(OpCode::AsType, {}, std::move(shape), dtype, {std::move(a)}, std::move(stream));
}

}  // namespace lanes
