// A node of the array graph (DESIGN §5). Immutable description plus an atomic state word:
//   pending → claimed(by one evaluation) → scheduled(stream timeline, value) | failed.
// An evaluation claims a pending node with a compare-and-swap; only the claimer touches the
// node's inputs, and it drops them once the node is scheduled (the encoded command keeps the
// input buffers alive), so a concurrent traversal never reads a released input.
//
// Programs keep many nodes alive, and building one is on every op's path: what only some
// kinds of node carry (a view's layout, a download's staging memory, a failure) lives out of
// line, so the common node is one small allocation.
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

struct Node;
using NodePtr = std::shared_ptr<Node>;

// A node's inputs: up to kInline in place (most ops take one to three), more on the heap
// (concatenate takes any number). Empty once moved from.
class NodeInputs {
 public:
  static constexpr size_t kInline = 3;

  NodeInputs() = default;
  explicit NodeInputs(std::vector<NodePtr> nodes) {
    if (nodes.size() > kInline) spilled_ = std::make_unique<NodePtr[]>(nodes.size());
    for (NodePtr& n : nodes) data()[size_++] = std::move(n);
  }
  // In place, without the vector: the path every elementwise op takes.
  template <class... Nodes>
  static NodeInputs of(Nodes&&... nodes) {
    static_assert(sizeof...(Nodes) <= kInline);
    NodeInputs in;
    ((in.inline_[in.size_++] = std::forward<Nodes>(nodes)), ...);
    return in;
  }
  NodeInputs(NodeInputs&& other) noexcept { take(other); }
  NodeInputs& operator=(NodeInputs&& other) noexcept {
    if (this != &other) {
      clear();
      take(other);
    }
    return *this;
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const NodePtr* begin() const { return data(); }
  const NodePtr* end() const { return data() + size_; }
  const NodePtr& front() const { return data()[0]; }
  const NodePtr& operator[](size_t i) const { return data()[i]; }
  void clear() {
    for (size_t i = 0; i < size_; ++i) data()[i].reset();
    spilled_.reset();
    size_ = 0;
  }

 private:
  NodePtr* data() { return spilled_ ? spilled_.get() : inline_; }
  const NodePtr* data() const { return spilled_ ? spilled_.get() : inline_; }
  void take(NodeInputs& other) {
    if (other.spilled_) {
      spilled_ = std::move(other.spilled_);
    } else {
      for (size_t i = 0; i < other.size_; ++i) inline_[i] = std::move(other.inline_[i]);
    }
    size_ = other.size_;
    other.size_ = 0;
  }

  NodePtr inline_[kInline];
  std::unique_ptr<NodePtr[]> spilled_;
  size_t size_ = 0;
};

// What a View or Download node carries besides the common fields; fixed at construction.
struct NodeExtras {
  // A view reads its one input's buffer (never itself a view) through these element strides
  // and offset.
  Shape strides;
  int64_t offset = 0;
  std::shared_ptr<void> staging;  // Download: the host memory the device writes
};

struct NodeFailure {
  lanes_status code;
  std::string message;
};

struct Node {
  Node(OpCode op, OpParams params, Shape shape, DType dtype, NodeInputs inputs, std::shared_ptr<Stream> stream)
      : op(op), dtype(dtype), params(std::move(params)), shape(std::move(shape)), inputs(std::move(inputs)),
        stream(std::move(stream)) {}

  const OpCode op;
  const DType dtype;
  const OpParams params;
  const Shape shape;
  // Set before the node is published, read-only after.
  std::unique_ptr<const NodeExtras> extras;

  // Owned by the claiming evaluation; cleared when the node is scheduled.
  NodeInputs inputs;
  std::shared_ptr<Stream> stream;

  std::atomic<uint64_t> state{static_cast<uint64_t>(NodeState::Pending)};

  // Written by the claimer before it publishes Scheduled/Failed (release); read-only after.
  std::shared_ptr<Buffer> buffer;
  std::shared_ptr<Stream> producer;  // the stream whose timeline marks it done; null: ready since creation
  uint64_t value = 0;
  std::unique_ptr<const NodeFailure> failure;  // Failed only

  size_t nbytes() const { return dtype_bytes(dtype, numel(shape)); }
  // Element strides of the buffer; empty: contiguous (computed nodes).
  const Shape& strides() const {
    static const Shape kContiguous{};
    return extras ? extras->strides : kContiguous;
  }
  int64_t offset() const { return extras ? extras->offset : 0; }
  void* staging() const { return extras ? extras->staging.get() : nullptr; }
  bool contiguous() const { return strides().empty() || strides() == contiguous_strides(shape); }
  // The element strides this node is read through.
  Shape layout() const { return strides().empty() ? contiguous_strides(shape) : strides(); }
  // The node as a command's argument: its memory (once it has a buffer) and how it is laid out.
  TensorArg tensor() const {
    TensorArg t;
    t.data = buffer ? buffer->data() : nullptr;
    t.shape = shape;
    t.dtype = dtype;
    t.strides = strides();
    t.offset = offset();
    return t;
  }
};

}  // namespace lanes
