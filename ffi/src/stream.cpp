#include "stream.hpp"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "config.hpp"
#include "runtime.hpp"
#include "status.hpp"

namespace lanes {
namespace {

std::atomic<uint32_t> g_budget_ops{64};
std::atomic<uint64_t> g_budget_bytes{uint64_t(64) << 20};
// Finished epoch records a stream keeps for reuse: its epochs complete one after another.
constexpr size_t kSpareRecords = 2;

}  // namespace

LockingMode locking_mode() { return config().global_locking ? LockingMode::Global : LockingMode::PerStream; }

RankedMutex& global_evaluation_mutex() {
  static RankedMutex* m = new RankedMutex(LockRank::Global, "global.evaluation");
  return *m;
}

void set_epoch_budget(EpochBudget budget) {
  g_budget_ops.store(budget.max_ops == 0 ? 1 : budget.max_ops);
  g_budget_bytes.store(budget.max_bytes == 0 ? 1 : budget.max_bytes);
}

EpochBudget epoch_budget() { return EpochBudget{g_budget_ops.load(), g_budget_bytes.load()}; }

// ---- EpochRecord ----------------------------------------------------------------------------------

struct Stream::Finishing {
  explicit Finishing(std::shared_ptr<Timeline> t) : timeline(std::move(t)) {}
  RankedMutex mutex{LockRank::StreamFence, "stream.fence_mtx"};
  const std::shared_ptr<Timeline> timeline;
  // Guarded by `mutex`:
  std::deque<std::unique_ptr<EpochRecord>> in_flight;  // commit order
  bool running = false;                                 // a thread is finishing epochs
  bool again = false;                                   // progress arrived meanwhile
  // Finished records kept for the stream's next epochs, with their vectors' storage.
  std::vector<std::unique_ptr<EpochRecord>> spare;
};

struct EpochRecord final : Completion {
  struct Read {
    Buffer* buffer;
    const char* op;
  };

  std::shared_ptr<Stream::Finishing> finishing;
  uint64_t sequence = 0;
  uint32_t ops = 0;
  uint64_t bytes = 0;
  uint64_t kernels = 0;
  std::vector<EpochHold> keep;  // every buffer the commands touch
  std::vector<Read> reads;
  std::vector<Buffer*> writes;
  std::vector<std::pair<std::shared_ptr<Timeline>, uint64_t>> waits;
  std::vector<std::shared_ptr<Fence>> fences;  // read by the device until the work ran
  std::vector<std::shared_ptr<void>> staging;
  std::vector<std::shared_ptr<void>> others;  // compiled plans' instances and constants
  std::optional<std::string> injected;
  // Written by complete(), read under the fence lock:
  std::optional<std::string> device_error;
  bool device_done = false;
  // The wait that advance() last asked to be called back from: it registers again only for
  // another one (a later stream of `waits`, once this one finished).
  const Timeline* called_back_by = nullptr;
  uint64_t called_back_at = 0;

  void complete(const char* error) noexcept override {
    std::shared_ptr<Stream::Finishing> state = finishing;
    try {
      if (error) device_error = std::string(error);
    } catch (...) {
      device_error.reset();
    }
    {
      std::lock_guard lock(state->mutex);
      device_done = true;
    }
    Stream::advance(state);  // may destroy this record
  }

  // Back to a new record's state, keeping the vectors' storage.
  void reset() {
    finishing.reset();
    sequence = 0;
    ops = 0;
    bytes = 0;
    kernels = 0;
    keep.clear();
    reads.clear();
    writes.clear();
    waits.clear();
    fences.clear();
    staging.clear();
    others.clear();
    injected.reset();
    device_error.reset();
    device_done = false;
    called_back_by = nullptr;
    called_back_at = 0;
  }

  // The host side of a finished epoch: errors follow the data, then the timeline moves on.
  void finish() {
    std::optional<std::string> error = injected ? injected : device_error;
    for (auto& [timeline, value] : waits) {
      if (error) break;
      if (auto e = timeline->error_at(value))
        error = "waited on stream " + std::to_string(timeline->stream_id()) + ", which failed: " + *e;
    }
    for (const Read& r : reads) {
      if (error) break;
      if (r.buffer->poisoned.load(std::memory_order_acquire)) error = std::string(r.op) + ": an input was produced by failed work";
    }
    if (error)
      for (Buffer* b : writes) b->poisoned.store(true, std::memory_order_release);
    Runtime& rt = runtime();
    if (!error) rt.counters.kernels_executed.fetch_add(kernels, std::memory_order_relaxed);
    std::shared_ptr<Timeline> timeline = finishing->timeline;
    uint64_t value = sequence;
    // Memory goes back before anyone waiting on the timeline wakes, and before the epoch counts
    // as completed: an allocation over the limit gives up only once nothing is in flight, so it
    // must never see this epoch done with its buffers still held.
    keep.clear();
    staging.clear();
    others.clear();
    rt.counters.epochs_completed.fetch_add(1, std::memory_order_release);
    rt.allocator().epoch_finished();
    timeline->signal(value, error ? &*error : nullptr);
  }
};

void Stream::advance(const std::shared_ptr<Finishing>& state) {
  {
    std::lock_guard lock(state->mutex);
    if (state->running) {
      state->again = true;
      return;
    }
    state->running = true;
  }
  for (;;) {
    std::unique_ptr<EpochRecord> ready;
    std::shared_ptr<Timeline> blocker;
    uint64_t blocker_value = 0;
    {
      std::lock_guard lock(state->mutex);
      state->again = false;
      if (!state->in_flight.empty() && state->in_flight.front()->device_done) {
        EpochRecord& front = *state->in_flight.front();
        for (auto& [timeline, value] : front.waits)
          if (timeline->completed() < value) {
            blocker = timeline;
            blocker_value = value;
            break;
          }
        if (!blocker) {
          ready = std::move(state->in_flight.front());
          state->in_flight.pop_front();
        } else if (front.called_back_by == blocker.get() && front.called_back_at == blocker_value) {
          blocker.reset();
        } else {
          front.called_back_by = blocker.get();
          front.called_back_at = blocker_value;
        }
      }
      if (!ready && !blocker && !state->again) {
        state->running = false;
        return;
      }
    }
    if (blocker) blocker->when_reached(blocker_value, [state] { advance(state); });
    if (ready) {
      ready->finish();
      ready->reset();
      std::lock_guard lock(state->mutex);
      if (state->spare.size() < kSpareRecords) state->spare.push_back(std::move(ready));
    }
  }
}

void* StreamScratch::allocate(size_t bytes) {
  out_.push_back(runtime().allocator().allocate(bytes, stream_.device(), stream_.pool()));
  return out_.back()->data();
}

// ---- SubmissionEpoch ---------------------------------------------------------------------------

SubmissionEpoch::SubmissionEpoch(std::unique_ptr<CommandBuffer> buffer, std::unique_ptr<EpochRecord> record, uint64_t stream,
                                 uint64_t sequence, EpochBudget budget)
    : buffer_(std::move(buffer)),
      record_(record ? std::move(record) : std::make_unique<EpochRecord>()),
      stream_(stream),
      budget_(budget) {
  record_->sequence = sequence;
}
SubmissionEpoch::SubmissionEpoch(SubmissionEpoch&&) noexcept = default;
SubmissionEpoch& SubmissionEpoch::operator=(SubmissionEpoch&&) noexcept = default;
SubmissionEpoch::~SubmissionEpoch() = default;

uint64_t SubmissionEpoch::sequence() const { return record_->sequence; }
uint32_t SubmissionEpoch::ops() const { return record_->ops; }
bool SubmissionEpoch::over_budget() const { return record_->ops >= budget_.max_ops || record_->bytes >= budget_.max_bytes; }

void SubmissionEpoch::encode(PlannedCommand c) {
  EpochRecord& r = *record_;
  const char* name = op_name(c.command.op, c.command.params.subop);
  if (c.command.op != OpCode::Download) ++r.kernels;
  buffer_->encode(std::move(c.command), std::move(c.prepared));
  ++r.ops;
  for (auto& b : c.reads) {
    r.reads.push_back(EpochRecord::Read{b.get(), name});
    r.keep.emplace_back(std::move(b), stream_);
  }
  if (c.writes) {
    r.bytes += c.writes->bytes();
    r.writes.push_back(c.writes.get());
    r.keep.emplace_back(std::move(c.writes), stream_);
  }
  for (auto& b : c.scratch) r.keep.emplace_back(std::move(b), stream_);
  if (c.staging) r.staging.push_back(std::move(c.staging));
}

void SubmissionEpoch::encode_replay(PlannedReplay p) {
  EpochRecord& r = *record_;
  buffer_->encode_plan(*p.instance, p.scalars.data(), static_cast<int>(p.scalars.size()), p.bound.empty() ? nullptr : p.bound.data());
  ++r.ops;
  r.kernels += p.kernels;
  for (auto& b : p.reads) {
    r.reads.push_back(EpochRecord::Read{b.get(), "compiled"});
    r.keep.emplace_back(std::move(b), stream_);
  }
  for (auto& b : p.writes) {
    r.bytes += b->bytes();
    r.writes.push_back(b.get());
    r.keep.emplace_back(std::move(b), stream_);
  }
  for (auto& k : p.keep) r.others.push_back(std::move(k));
}

void SubmissionEpoch::encode_wait(const std::shared_ptr<Timeline>& timeline, const std::shared_ptr<Fence>& fence,
                                  uint64_t value) {
  uint64_t& waited = waited_[timeline.get()];
  if (waited >= value) return;
  buffer_->encode_wait(*fence, value);
  waited = value;
  record_->waits.emplace_back(timeline, value);
  record_->fences.push_back(fence);
}

void SubmissionEpoch::inject_failure(std::string reason) { record_->injected = std::move(reason); }

// ---- Stream ------------------------------------------------------------------------------------

Stream::Stream(uint64_t id, int device, std::unique_ptr<Queue> queue, std::shared_ptr<MemoryPool> pool)
    : id_(id),
      device_(device),
      timeline_(std::make_shared<Timeline>(id)),
      pool_(std::move(pool)),
      queue_(std::move(queue)),
      fence_(queue_->fence()),
      finishing_(std::make_shared<Finishing>(timeline_)) {
  timeline_->set_progress(queue_->progress(), queue_->progress_spin());
  timeline_->set_notify(queue_->notify());
}

Stream::~Stream() { shutdown(); }

void Stream::debug_pause(bool paused) {
  StreamOpLock lock(*this);
  queue_->debug_pause(paused);
}

void Stream::flush_through(uint64_t value, Start start) {
  if (committed_.load(std::memory_order_acquire) >= value) return;
  if (disposed()) return;  // shutdown committed everything
  try {
    StreamOpLock lock(*this);
    if (lock.open_sequence() <= value) lock.commit(start);
  } catch (const Error&) {
    // Disposed concurrently: shutdown committed the work.
  }
}

void Stream::synchronize() {
  uint64_t target;
  {
    StreamOpLock lock(*this);
    target = lock.commit(Start::OnDemand);
  }
  if (target == 0) return;
  if (auto error = timeline_->wait(target))
    throw_error(LANES_ERR_DEVICE, "stream " + std::to_string(id_) + ": " + *error);
}

void Stream::shutdown() {
  uint64_t target = 0;
  {
    StreamOpLock lock(*this, StreamOpLock::kEvenIfDisposed);
    if (disposed_.exchange(true)) return;
    target = lock.commit(Start::OnDemand);
    open_.reset();
  }
  if (target) timeline_->wait(target);
  std::unique_ptr<Queue> queue;
  {
    StreamOpLock lock(*this, StreamOpLock::kEvenIfDisposed);
    queue = std::move(queue_);
  }
  queue.reset();  // joins the backend's threads, outside every lock
  std::vector<std::pair<void*, size_t>> blocks;
  pool_->drain(blocks, true);
  for (auto& [data, capacity] : blocks) runtime().allocator().release_block(data, capacity, device_);
}

// ---- StreamOpLock ------------------------------------------------------------------------------

StreamOpLock::StreamOpLock(Stream& stream) : StreamOpLock(stream, kEvenIfDisposed) {
  // The delegated constructor completed, so the destructor releases the lock when this throws.
  if (stream_.disposed_.load(std::memory_order_acquire)) {
    throw_error(LANES_ERR_DISPOSED, "stream " + std::to_string(stream_.id_) + " was disposed");
  }
}

StreamOpLock::StreamOpLock(Stream& stream, EvenIfDisposed) : stream_(stream) { stream_.op_mtx_.lock(); }

StreamOpLock::~StreamOpLock() { stream_.op_mtx_.unlock(); }

RankedMutex& StreamOpLock::fence_mutex() { return stream_.finishing_->mutex; }

SubmissionEpoch& StreamOpLock::open_epoch() {
  if (!stream_.open_) {
    uint64_t next = stream_.committed_.load(std::memory_order_relaxed) + 1;
    std::unique_ptr<EpochRecord> record;
    with_fence_state([&] {
      std::vector<std::unique_ptr<EpochRecord>>& spare = stream_.finishing_->spare;
      if (spare.empty()) return;
      record = std::move(spare.back());
      spare.pop_back();
    });
    stream_.open_.emplace(stream_.queue_->new_command_buffer(), std::move(record), stream_.id_, next, epoch_budget());
  }
  return *stream_.open_;
}

uint64_t StreamOpLock::open_sequence() const {
  return stream_.open_ ? stream_.open_->sequence() : stream_.committed_.load(std::memory_order_relaxed) + 1;
}

uint64_t StreamOpLock::encode(PlannedCommand command) {
  stream_.op_mtx_.assert_held();
  if (uint32_t n = stream_.encode_failure_after_.load(std::memory_order_relaxed); n > 0) {
    stream_.encode_failure_after_.store(n - 1, std::memory_order_relaxed);
    if (n == 1) throw_error(LANES_ERR_INTERNAL, "injected encode failure on stream " + std::to_string(stream_.id_));
  }
  SubmissionEpoch& epoch = open_epoch();
  uint64_t value = epoch.sequence();
  epoch.encode(std::move(command));
  if (epoch.over_budget()) commit(Start::Now);
  return value;
}

uint64_t StreamOpLock::encode_replay(PlannedReplay replay) {
  stream_.op_mtx_.assert_held();
  SubmissionEpoch& epoch = open_epoch();
  uint64_t value = epoch.sequence();
  epoch.encode_replay(std::move(replay));
  if (epoch.over_budget()) commit(Start::Now);
  return value;
}

void StreamOpLock::encode_wait(const Stream& producer, uint64_t value) {
  if (&producer == &stream_) return;  // same queue: ordered already
  const std::shared_ptr<Timeline>& other = producer.timeline_;
  if (other->completed() >= value && !other->error_at(value)) return;
  open_epoch().encode_wait(other, producer.fence_, value);
}

uint64_t StreamOpLock::commit(Start start) {
  stream_.op_mtx_.assert_held();
  if (!stream_.open_ || stream_.open_->ops() == 0) return stream_.committed_.load(std::memory_order_relaxed);
  SubmissionEpoch epoch = std::move(*stream_.open_);
  stream_.open_.reset();
  uint64_t seq = epoch.sequence();
  uint32_t pending = stream_.injected_failures_.load(std::memory_order_relaxed);
  while (pending > 0 && !stream_.injected_failures_.compare_exchange_weak(pending, pending - 1)) {
  }
  if (pending > 0) epoch.inject_failure("injected fault on stream " + std::to_string(stream_.id_));
  EpochRecord* record = epoch.record_.get();
  record->finishing = stream_.finishing_;
  with_fence_state([&] { stream_.finishing_->in_flight.push_back(std::move(epoch.record_)); });
  runtime().counters.epochs_committed.fetch_add(1, std::memory_order_relaxed);
  stream_.queue_->commit(std::move(epoch.buffer_), seq, record, start);
  // Published only once the queue has the work: a stream that sees `seq` committed may make
  // the device wait for it, and a device wait queued ahead of the work it waits for (in a
  // hardware queue two CUDA streams share) would never be released.
  stream_.committed_.store(seq, std::memory_order_release);
  return seq;
}

}  // namespace lanes
