// A node of the array graph (DESIGN §5). Immutable description plus an atomic state word:
//   pending → claimed(by one evaluation) → scheduled(stream timeline, value) | failed.
// An evaluation claims a pending node with a compare-and-swap; only the claimer touches the
// node's inputs, and it drops them once the node is scheduled (the encoded command keeps the
// input buffers alive), so a concurrent traversal never reads a released input.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "command.hpp"
#include "stream.hpp"

namespace lanes {

enum class NodeState : uint64_t { Pending = 0, Claimed = 1, Scheduled = 2, Failed = 3 };

inline constexpr uint64_t kStateMask = 3;
inline NodeState state_of(uint64_t word) { return static_cast<NodeState>(word & kStateMask); }
inline uint64_t claimed_by(uint64_t eval_id) { return (eval_id << 2) | static_cast<uint64_t>(NodeState::Claimed); }

struct Node {
  Node(OpCode op, OpParams params, Shape shape, DType dtype, std::vector<std::shared_ptr<Node>> inputs,
       std::shared_ptr<Stream> stream)
      : op(op), params(std::move(params)), shape(std::move(shape)), dtype(dtype), inputs(std::move(inputs)),
        stream(std::move(stream)) {}

  const OpCode op;
  const OpParams params;
  const Shape shape;
  const DType dtype;
  // Layout in the buffer, fixed at construction: computed nodes are contiguous (no strides); a
  // View node reads its one input's buffer (never itself a view) through these strides and
  // offset.
  Shape strides;
  int64_t offset = 0;

  // Owned by the claiming evaluation; cleared when the node is scheduled.
  std::vector<std::shared_ptr<Node>> inputs;
  std::shared_ptr<Stream> stream;
  std::shared_ptr<void> staging;  // Download only: the host memory the device writes

  std::atomic<uint64_t> state{static_cast<uint64_t>(NodeState::Pending)};

  // Written by the claimer before it publishes Scheduled/Failed (release); read-only after.
  std::shared_ptr<Buffer> buffer;
  std::shared_ptr<Stream> producer;  // the stream whose timeline marks it done; null: ready since creation
  uint64_t value = 0;
  std::string error;                    // Failed only
  lanes_status error_code = LANES_OK;   // Failed only

  size_t nbytes() const { return dtype_bytes(dtype, numel(shape)); }
  bool contiguous() const { return strides.empty() || strides == contiguous_strides(shape); }
  // The element strides this node is read through.
  Shape layout() const { return strides.empty() ? contiguous_strides(shape) : strides; }
};

}  // namespace lanes
