// A stream: one device queue, its open submission epoch, its timeline and its memory pool.
//
// Locks (DESIGN §3): `op_mtx` guards the queue and the open epoch and is only taken through a
// StreamOpLock; only encoding and commit happen under it. `fence_mtx` guards the stream's
// dependency state: what is committed and in flight, and the order in which committed epochs
// finish (an epoch whose cross-stream waits are not yet finished on the host is held until
// they are). It is reachable from an op lock only through StreamOpLock::with_fence_state, and
// completion paths take it alone, never with an op lock.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend.hpp"
#include "buffer.hpp"
#include "lock_order.hpp"
#include "timeline.hpp"

namespace lanes {

struct EpochBudget {
  uint32_t max_ops = 64;
  uint64_t max_bytes = uint64_t(64) << 20;
};

// A command ready to encode: translated before the op lock, with the memory it touches.
struct PlannedCommand {
  Command command;
  std::unique_ptr<Prepared> prepared;
  std::vector<std::shared_ptr<Buffer>> reads;   // inputs (checked for poison at completion)
  std::shared_ptr<Buffer> writes;               // output (poisoned if the epoch fails)
  std::vector<std::shared_ptr<Buffer>> scratch;
  std::shared_ptr<void> staging;                // Download: host memory the device writes
};

// A compiled plan's replay, ready to encode.
struct PlannedReplay {
  PlanInstance* instance = nullptr;
  std::vector<double> scalars;
  std::vector<void*> bound;  // the callers' addresses of the instance's own copies
  std::vector<std::shared_ptr<Buffer>> reads, writes;
  std::vector<std::shared_ptr<void>> keep;  // the instance, its arena, the plan's constants
  uint64_t kernels = 0;
};

// What a committed epoch must know when the device is done with it.
struct EpochRecord;

// The open batch of a stream's work: a command buffer plus what it has accumulated. Move-only;
// committing consumes it, so a committed epoch cannot be encoded into or committed again.
class SubmissionEpoch {
 public:
  // `record`: a finished one to reuse, or null. `stream`: the id of the stream it belongs to.
  SubmissionEpoch(std::unique_ptr<CommandBuffer> buffer, std::unique_ptr<EpochRecord> record, uint64_t stream, uint64_t sequence,
                  EpochBudget budget);
  SubmissionEpoch(SubmissionEpoch&&) noexcept;
  SubmissionEpoch& operator=(SubmissionEpoch&&) noexcept;
  ~SubmissionEpoch();
  SubmissionEpoch(const SubmissionEpoch&) = delete;
  SubmissionEpoch& operator=(const SubmissionEpoch&) = delete;

  uint64_t sequence() const;
  uint32_t ops() const;
  bool over_budget() const;

  void encode(PlannedCommand command);
  void encode_replay(PlannedReplay replay);
  // Waits on `timeline`'s stream reaching `value`, through its device fence.
  void encode_wait(const std::shared_ptr<Timeline>& timeline, const std::shared_ptr<Fence>& fence, uint64_t value);
  void inject_failure(std::string reason);

 private:
  friend class StreamOpLock;
  std::unique_ptr<CommandBuffer> buffer_;
  std::unique_ptr<EpochRecord> record_;
  uint64_t stream_;
  EpochBudget budget_;
  std::map<const Timeline*, uint64_t> waited_;  // skip waits this epoch already has
};

enum class LockingMode { PerStream, Global };
LockingMode locking_mode();
// The process-wide lock of LANES_LOCKING=global, held across a whole evaluation.
RankedMutex& global_evaluation_mutex();

class Stream : public std::enable_shared_from_this<Stream> {
 public:
  Stream(uint64_t id, int device, std::unique_ptr<Queue> queue, std::shared_ptr<MemoryPool> pool);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  uint64_t id() const { return id_; }
  int device() const { return device_; }
  const std::shared_ptr<Timeline>& timeline() const { return timeline_; }
  const std::shared_ptr<Fence>& fence() const { return fence_; }
  const std::shared_ptr<MemoryPool>& pool() const { return pool_; }
  bool disposed() const { return disposed_.load(std::memory_order_acquire); }

  // Commits the open epoch if `value` is in it, so waiting on `value` cannot stall.
  void flush_through(uint64_t value, Start start);
  // Commits open work and blocks until everything committed so far completed; throws a
  // device error if the last epoch failed.
  void synchronize();
  // Defined disposal with work in flight: commit, wait for completion, then free the queue.
  // Later encodes fail with a disposed error. Idempotent.
  void shutdown();

  // Test-only (LANES_FAULT_INJECTION=1): the next `count` epochs committed on this stream fail.
  void inject_failures(uint32_t count) { injected_failures_.fetch_add(count, std::memory_order_relaxed); }
  // Test-only: the encode after `after` more commands on this stream throws an internal error.
  void inject_encode_failure(uint32_t after) { encode_failure_after_.store(after + 1, std::memory_order_relaxed); }
  // Test-only: holds back (or releases) the stream's committed work. Disposed streams ignore it.
  void debug_pause(bool paused);

 private:
  friend class StreamOpLock;
  friend struct EpochRecord;
  struct Finishing;

  // Runs, in commit order, the host side of every epoch the device is done with whose
  // cross-stream waits have finished on the host too.
  static void advance(const std::shared_ptr<Finishing>& state);

  const uint64_t id_;
  const int device_;
  const std::shared_ptr<Timeline> timeline_;
  const std::shared_ptr<MemoryPool> pool_;
  RankedMutex op_mtx_{LockRank::StreamOp, "stream.op_mtx"};
  // Guarded by op_mtx_:
  std::unique_ptr<Queue> queue_;
  std::shared_ptr<Fence> fence_;
  std::optional<SubmissionEpoch> open_;
  // The dependency state, guarded by its fence_mtx; shared with completion callbacks that
  // may outlive the stream object.
  std::shared_ptr<Finishing> finishing_;
  // Lock-free mirrors for fast paths.
  std::atomic<uint64_t> committed_{0};
  std::atomic<bool> disposed_{false};
  std::atomic<uint32_t> injected_failures_{0};
  std::atomic<uint32_t> encode_failure_after_{0};
};

// Scratch a backend asks for while preparing a command or instantiating a plan: buffers from
// the stream's pool, appended to `out`, which the caller keeps as long as the work needs them.
class StreamScratch final : public Scratch {
 public:
  StreamScratch(Stream& stream, std::vector<std::shared_ptr<Buffer>>& out) : stream_(stream), out_(out) {}
  void* allocate(size_t bytes) override;

 private:
  Stream& stream_;
  std::vector<std::shared_ptr<Buffer>>& out_;
};

// Holds a stream's op lock. Only encode and commit happen under it; nothing here waits on the
// device or allocates device memory.
class [[nodiscard]] StreamOpLock {
 public:
  // Throws a disposed error if the stream was disposed.
  explicit StreamOpLock(Stream& stream);
  ~StreamOpLock();
  StreamOpLock(const StreamOpLock&) = delete;
  StreamOpLock& operator=(const StreamOpLock&) = delete;

  // Encodes `command` into the open epoch; returns the timeline value that will mark it done.
  uint64_t encode(PlannedCommand command);
  uint64_t encode_replay(PlannedReplay replay);
  // Makes the open epoch wait for `producer` to reach `value` (nothing if it already did).
  void encode_wait(const Stream& producer, uint64_t value);
  // Rotates the epoch if it holds any work. Returns the last committed value.
  uint64_t commit(Start start);
  uint64_t open_sequence() const;

  // For disposal only: takes the lock whatever the stream's state.
  enum EvenIfDisposed { kEvenIfDisposed };
  StreamOpLock(Stream& stream, EvenIfDisposed);

  // Runs `fn` with the stream's fence lock held (the only way to take it under an op lock).
  template <class Fn>
  auto with_fence_state(Fn&& fn) {
    std::lock_guard lock(fence_mutex());
    return fn();
  }

 private:
  RankedMutex& fence_mutex();
  SubmissionEpoch& open_epoch();

  Stream& stream_;
};

// Epoch budget for epochs opened from now on (tests use tiny ones).
void set_epoch_budget(EpochBudget budget);
EpochBudget epoch_budget();

}  // namespace lanes
