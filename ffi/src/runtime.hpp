// Process-wide state: the backend, the allocator, the handle tables and the counters. Created
// on first use and deliberately never destroyed, so a process that exits with work in flight
// never runs destructors under live backend threads.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

#include "backend.hpp"
#include "buffer.hpp"
#include "completion_queue.hpp"
#include "handle_table.hpp"
#include "node.hpp"
#include "plan.hpp"
#include "stream.hpp"

namespace lanes {

struct Counters {
  std::atomic<uint64_t> kernels_executed{0};
  std::atomic<uint64_t> epochs_committed{0};
  std::atomic<uint64_t> epochs_completed{0};
};

class Runtime {
 public:
  Runtime();

  Backend& backend() { return *backend_; }
  Allocator& allocator() { return allocator_; }

  // A stream on `device` (0..device_count-1); throws an invalid-argument error otherwise.
  std::shared_ptr<Stream> new_stream(int device = 0);
  // Resolves a stream handle; 0 means the default stream.
  std::shared_ptr<Stream> stream_or_default(uint64_t handle);
  uint64_t default_stream_handle() const { return default_stream_handle_; }
  uint64_t next_eval_id() { return next_eval_id_.fetch_add(1, std::memory_order_relaxed); }

  HandleTable<Stream> streams{HandleKind::Stream, "stream"};
  HandleTable<Node> arrays{HandleKind::Array, "array"};
  HandleTable<CompletionQueue> queues{HandleKind::Queue, "completion queue"};
  HandleTable<Plan> plans{HandleKind::Plan, "plan"};
  Counters counters;

 private:
  std::unique_ptr<Backend> backend_;
  Allocator allocator_;
  std::atomic<uint64_t> next_stream_id_{1};
  std::atomic<uint64_t> next_eval_id_{1};
  std::shared_ptr<Stream> default_stream_;
  uint64_t default_stream_handle_ = 0;
};

// The process-wide runtime. Completion paths use it unconditionally.
Runtime& runtime();
// The runtime for an ABI entry point: throws a disposed error once lanes_shutdown() ran.
Runtime& running_runtime();
// Waits for all work, then makes every later call fail with a disposed error.
void shutdown_runtime();


}  // namespace lanes
