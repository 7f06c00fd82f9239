// Building graph nodes: shape and dtype inference with typed errors, and the implicit casts
// that type promotion needs. Nothing here runs a kernel.
#pragma once
#include <memory>
#include <vector>

#include "node.hpp"

namespace lanes {

using StreamPtr = std::shared_ptr<Stream>;

NodePtr make_from_data(const void* data, size_t nbytes, DType dtype, Shape shape);
NodePtr make_full(double value, DType dtype, Shape shape, StreamPtr stream);
NodePtr make_arange(double start, double stop, double step, DType dtype, StreamPtr stream);
NodePtr make_random(int kind, uint64_t seed, double a, double b, Shape shape, StreamPtr stream);
NodePtr make_unary(int op, NodePtr a, StreamPtr stream);
NodePtr make_binary(int op, NodePtr a, NodePtr b, StreamPtr stream);
NodePtr make_matmul(NodePtr a, NodePtr b, StreamPtr stream);
NodePtr make_reduce(int op, NodePtr a, std::vector<int> axes, bool all_axes, bool keepdims, StreamPtr stream);
NodePtr make_softmax(NodePtr a, int axis, StreamPtr stream);
NodePtr make_where(NodePtr cond, NodePtr a, NodePtr b, StreamPtr stream);
// Views where the layout allows (no copy), else a copy then a view.
NodePtr make_reshape(NodePtr a, Shape shape, StreamPtr stream);
NodePtr make_transpose(NodePtr a, std::vector<int> axes, bool reverse, StreamPtr stream);
NodePtr make_broadcast_to(NodePtr a, Shape shape, StreamPtr stream);
NodePtr make_expand_dims(NodePtr a, std::vector<int> axes, StreamPtr stream);
NodePtr make_squeeze(NodePtr a, std::vector<int> axes, bool all_unit_axes, StreamPtr stream);
NodePtr make_slice(NodePtr a, const Shape& starts, const Shape& stops,
                   const Shape& steps, StreamPtr stream);
NodePtr make_concatenate(std::vector<NodePtr> arrays, int axis, StreamPtr stream);
NodePtr make_stack(std::vector<NodePtr> arrays, int axis, StreamPtr stream);
NodePtr make_take(NodePtr a, NodePtr indices, int axis, StreamPtr stream);
// Fused ops: one kernel each. Null weight/bias mean none.
NodePtr make_rms_norm(NodePtr x, NodePtr weight, double eps, StreamPtr stream);
NodePtr make_layer_norm(NodePtr x, NodePtr weight, NodePtr bias, double eps, StreamPtr stream);
// `key_length` < 0: every key. The `*_param` arguments bind a scalar to a compiled plan's
// parameter (-1: fixed).
NodePtr make_attention(NodePtr q, NodePtr k, NodePtr v, double scale, bool causal, int64_t key_length, int key_length_param,
                       StreamPtr stream);
NodePtr make_rope(NodePtr x, int dims, bool traditional, double base, double scale, int64_t offset, int offset_param,
                  StreamPtr stream);
// Per-row forms: `offsets` / `key_lengths` hold one int32 per entry of the leading axis.
NodePtr make_attention_rows(NodePtr q, NodePtr k, NodePtr v, double scale, bool causal, NodePtr key_lengths, StreamPtr stream);
NodePtr make_rope_rows(NodePtr x, int dims, bool traditional, double base, double scale, NodePtr offsets, StreamPtr stream);
NodePtr make_slice_update_rows(NodePtr target, NodePtr update, int axis, NodePtr offsets, StreamPtr stream);
NodePtr make_astype(NodePtr a, DType dtype, StreamPtr stream);
// A read of contiguous `a` into host `staging` (a->nbytes() bytes), as a command on `stream`.
NodePtr make_download(NodePtr a, std::shared_ptr<void> staging, StreamPtr stream);
// `a op scalar` (or `scalar op a`): the scalar is a kernel parameter, never an array.
NodePtr make_binary_scalar(int op, NodePtr a, double scalar, bool scalar_first, int scalar_param, StreamPtr stream);
// x [..., k] @ w^T for a quantized w [n, k]: float32 [..., n].
NodePtr make_quantized_matmul(NodePtr x, NodePtr w, StreamPtr stream);
// `target` with `update` written at `offset` along `axis` (in place when nothing else sees
// the target's memory).
NodePtr make_slice_update(NodePtr target, NodePtr update, int axis, int64_t offset, int offset_param, StreamPtr stream);
// A compiled function's input while it is traced.
NodePtr make_placeholder(DType dtype, Shape shape);

}  // namespace lanes
