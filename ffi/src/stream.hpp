// A stream: one device queue, its open submission epoch and its timeline.
//
// Locks (DESIGN §3): `op_mtx` guards the queue and the open epoch and is only taken through a
// StreamOpLock; `fence_mtx` guards the FenceState and is only reachable through
// StreamOpLock::with_fence_state (or, for completion handlers, which never take op_mtx,
// through the epoch's completion path). In LANES_LOCKING=global mode one process-wide mutex
// replaces both, over the same critical sections, for comparison with MLX PR #2104.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "backend.hpp"
#include "lock_order.hpp"
#include "timeline.hpp"

namespace lanes {

struct EpochBudget {
  uint32_t max_ops = 64;
  uint64_t max_bytes = uint64_t(64) << 20;
};

// The open batch of a stream's work: a command buffer plus what it has accumulated. Move-only;
// committing consumes it, so a committed epoch cannot be encoded into or committed again.
class SubmissionEpoch {
 public:
  SubmissionEpoch(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, EpochBudget budget)
      : buffer_(std::move(buffer)), sequence_(sequence), budget_(budget) {}
  SubmissionEpoch(SubmissionEpoch&&) = default;
  SubmissionEpoch& operator=(SubmissionEpoch&&) = default;
  SubmissionEpoch(const SubmissionEpoch&) = delete;
  SubmissionEpoch& operator=(const SubmissionEpoch&) = delete;

  uint64_t sequence() const { return sequence_; }
  uint32_t ops() const { return ops_; }
  bool over_budget() const { return ops_ >= budget_.max_ops || bytes_ >= budget_.max_bytes; }

  void encode(Command command);
  void encode_wait(const std::shared_ptr<Timeline>& other, uint64_t value);
  void inject_failure(std::string reason);
  // Hands the commands to `queue`; `on_complete` runs on a backend thread.
  void commit(Queue& queue, CompletionFn on_complete) &&;

 private:
  std::unique_ptr<CommandBuffer> buffer_;
  uint64_t sequence_;
  EpochBudget budget_;
  uint32_t ops_ = 0;
  uint64_t bytes_ = 0;
  std::map<const Timeline*, uint64_t> waited_;  // skip waits this epoch already has
};

// Dependency state of a stream, guarded by fence_mtx.
struct FenceState {
  uint64_t last_committed = 0;
  uint32_t in_flight = 0;
};

enum class LockingMode { PerStream, Global };
LockingMode locking_mode();

class Stream {
 public:
  Stream(uint64_t id, int device, std::unique_ptr<Queue> queue);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  uint64_t id() const { return id_; }
  int device() const { return device_; }
  const std::shared_ptr<Timeline>& timeline() const { return timeline_; }
  bool disposed() const { return disposed_.load(std::memory_order_acquire); }

  // Commits the open epoch if `value` is in it, so waiting on `value` cannot stall.
  void flush_through(uint64_t value);
  // Commits open work and blocks until everything committed so far completed; throws a
  // device error if the last epoch failed.
  void synchronize();
  // Defined disposal with work in flight: commit, wait for completion, then free the queue.
  // Later encodes fail with a disposed error. Idempotent.
  void shutdown();

  // Test-only (LANES_FAULT_INJECTION=1): the next `count` epochs committed on this stream fail.
  void inject_failures(uint32_t count) { injected_failures_.fetch_add(count, std::memory_order_relaxed); }
  // Test-only: holds back (or releases) the stream's committed work. Disposed streams ignore it.
  void debug_pause(bool paused);

 private:
  friend class StreamOpLock;
  void on_epoch_complete(uint64_t sequence, const std::string* error);

  const uint64_t id_;
  const int device_;
  const std::shared_ptr<Timeline> timeline_;
  RankedMutex op_mtx_{LockRank::StreamOp, "stream.op_mtx"};
  RankedMutex fence_mtx_{LockRank::StreamFence, "stream.fence_mtx"};
  // Guarded by op_mtx_:
  std::unique_ptr<Queue> queue_;
  std::optional<SubmissionEpoch> open_;
  // Guarded by fence_mtx_:
  FenceState fence_;
  // Lock-free mirrors for fast paths.
  std::atomic<uint64_t> committed_{0};
  std::atomic<bool> disposed_{false};
  std::atomic<uint32_t> injected_failures_{0};
};

// Holds a stream's op lock. Only encode and commit happen under it; nothing here waits on the
// device.
class [[nodiscard]] StreamOpLock {
 public:
  // Throws a disposed error if the stream was disposed.
  explicit StreamOpLock(Stream& stream);
  ~StreamOpLock();
  StreamOpLock(const StreamOpLock&) = delete;
  StreamOpLock& operator=(const StreamOpLock&) = delete;

  // Encodes `command` into the open epoch; returns the timeline value that will mark it done.
  uint64_t encode(Command command);
  void encode_wait(const std::shared_ptr<Timeline>& other, uint64_t value);
  // Rotates the epoch if it holds any work. Returns the last committed value.
  uint64_t commit();
  uint64_t open_sequence() const;

  // For disposal only: takes the lock whatever the stream's state.
  enum EvenIfDisposed { kEvenIfDisposed };
  StreamOpLock(Stream& stream, EvenIfDisposed);

  template <class Fn>
  auto with_fence_state(Fn&& fn) {
    RankedMutex* m = fence_mutex();
    if (m) m->lock();
    struct Unlock {
      RankedMutex* m;
      ~Unlock() {
        if (m) m->unlock();
      }
    } unlock{m};
    return fn(stream_.fence_);
  }

 private:
  RankedMutex* fence_mutex();
  SubmissionEpoch& open_epoch();

  Stream& stream_;
  RankedMutex& held_;
};

// Epoch budget for epochs opened from now on (tests use tiny ones).
void set_epoch_budget(EpochBudget budget);
EpochBudget epoch_budget();

}  // namespace lanes
