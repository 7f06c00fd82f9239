#include "stream.hpp"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "runtime.hpp"
#include "status.hpp"

namespace lanes {
namespace {

RankedMutex& global_submission_mutex() {
  static RankedMutex* m = new RankedMutex(LockRank::StreamOp, "global.submission");
  return *m;
}

std::atomic<uint32_t> g_budget_ops{64};
std::atomic<uint64_t> g_budget_bytes{uint64_t(64) << 20};

}  // namespace

LockingMode locking_mode() {
  static const LockingMode mode = [] {
    const char* v = std::getenv("LANES_LOCKING");
    return (v && std::strcmp(v, "global") == 0) ? LockingMode::Global : LockingMode::PerStream;
  }();
  return mode;
}

void set_epoch_budget(EpochBudget budget) {
  g_budget_ops.store(budget.max_ops == 0 ? 1 : budget.max_ops);
  g_budget_bytes.store(budget.max_bytes == 0 ? 1 : budget.max_bytes);
}

EpochBudget epoch_budget() { return EpochBudget{g_budget_ops.load(), g_budget_bytes.load()}; }

// ---- SubmissionEpoch -------------------------------------------------------------------------

void SubmissionEpoch::encode(Command command) {
  bytes_ += command.output.buffer ? command.output.buffer->bytes() : 0;
  ++ops_;
  buffer_->encode(std::move(command));
}

void SubmissionEpoch::encode_wait(const std::shared_ptr<Timeline>& other, uint64_t value) {
  uint64_t& waited = waited_[other.get()];
  if (waited >= value) return;
  waited = value;
  buffer_->encode_wait(other, value);
}

void SubmissionEpoch::inject_failure(std::string reason) { buffer_->inject_failure(std::move(reason)); }

void SubmissionEpoch::commit(Queue& queue, CompletionFn on_complete) && {
  queue.commit(std::move(buffer_), sequence_, std::move(on_complete));
}

// ---- Stream ------------------------------------------------------------------------------------

Stream::Stream(uint64_t id, int device, std::unique_ptr<Queue> queue)
    : id_(id), device_(device), timeline_(std::make_shared<Timeline>(id)), queue_(std::move(queue)) {}

Stream::~Stream() { shutdown(); }

void Stream::on_epoch_complete(uint64_t sequence, const std::string* error) {
  // Completion path: never op_mtx; the fence lock (or the global lock) only.
  {
    RankedMutex& m = locking_mode() == LockingMode::Global ? global_submission_mutex() : fence_mtx_;
    std::lock_guard lock(m);
    --fence_.in_flight;
  }
  runtime().counters.epochs_completed.fetch_add(1, std::memory_order_relaxed);
  // Waiters may free the stream once signalled: keep the timeline alive on our own.
  std::shared_ptr<Timeline> timeline = timeline_;
  timeline->signal(sequence, error);
}

void Stream::debug_pause(bool paused) {
  StreamOpLock lock(*this);
  queue_->debug_pause(paused);
}

void Stream::flush_through(uint64_t value) {
  if (committed_.load(std::memory_order_acquire) >= value) return;
  if (disposed()) return;  // shutdown committed everything
  try {
    StreamOpLock lock(*this);
    if (lock.open_sequence() <= value) lock.commit();
  } catch (const Error&) {
    // Disposed concurrently: shutdown committed the work.
  }
}

void Stream::synchronize() {
  uint64_t target;
  {
    StreamOpLock lock(*this);
    target = lock.commit();
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
    target = lock.commit();
    open_.reset();
  }
  if (target) timeline_->wait(target);
  std::unique_ptr<Queue> queue;
  {
    StreamOpLock lock(*this, StreamOpLock::kEvenIfDisposed);
    queue = std::move(queue_);
  }
  queue.reset();  // joins the backend's threads, outside every lock
}

// ---- StreamOpLock ------------------------------------------------------------------------------

StreamOpLock::StreamOpLock(Stream& stream) : StreamOpLock(stream, kEvenIfDisposed) {
  // The delegated constructor completed, so the destructor releases the lock when this throws.
  if (stream_.disposed_.load(std::memory_order_acquire)) {
    throw_error(LANES_ERR_DISPOSED, "stream " + std::to_string(stream_.id_) + " was disposed");
  }
}

StreamOpLock::StreamOpLock(Stream& stream, EvenIfDisposed)
    : stream_(stream), held_(locking_mode() == LockingMode::Global ? global_submission_mutex() : stream.op_mtx_) {
  held_.lock();
}

StreamOpLock::~StreamOpLock() { held_.unlock(); }

RankedMutex* StreamOpLock::fence_mutex() {
  // In global mode the one global lock already covers the fence state.
  return locking_mode() == LockingMode::Global ? nullptr : &stream_.fence_mtx_;
}

SubmissionEpoch& StreamOpLock::open_epoch() {
  if (!stream_.open_) {
    uint64_t next = stream_.committed_.load(std::memory_order_relaxed) + 1;
    stream_.open_.emplace(stream_.queue_->new_command_buffer(), next, epoch_budget());
  }
  return *stream_.open_;
}

uint64_t StreamOpLock::open_sequence() const {
  return stream_.open_ ? stream_.open_->sequence() : stream_.committed_.load(std::memory_order_relaxed) + 1;
}

uint64_t StreamOpLock::encode(Command command) {
  held_.assert_held();
  SubmissionEpoch& epoch = open_epoch();
  uint64_t value = epoch.sequence();
  epoch.encode(std::move(command));
  if (epoch.over_budget()) commit();
  return value;
}

void StreamOpLock::encode_wait(const std::shared_ptr<Timeline>& other, uint64_t value) {
  if (other.get() == stream_.timeline_.get()) return;  // same queue: ordered already
  if (other->completed() >= value && !other->error_at(value)) return;
  open_epoch().encode_wait(other, value);
}

uint64_t StreamOpLock::commit() {
  held_.assert_held();
  if (!stream_.open_ || stream_.open_->ops() == 0) return stream_.committed_.load(std::memory_order_relaxed);
  SubmissionEpoch epoch = std::move(*stream_.open_);
  stream_.open_.reset();
  uint64_t seq = epoch.sequence();
  with_fence_state([&](FenceState& f) {
    f.last_committed = seq;
    ++f.in_flight;
  });
  runtime().counters.epochs_committed.fetch_add(1, std::memory_order_relaxed);
  uint32_t pending = stream_.injected_failures_.load(std::memory_order_relaxed);
  while (pending > 0 && !stream_.injected_failures_.compare_exchange_weak(pending, pending - 1)) {
  }
  if (pending > 0) epoch.inject_failure("injected fault on stream " + std::to_string(stream_.id_));
  Stream* s = &stream_;
  std::move(epoch).commit(*stream_.queue_, [s, seq](const std::string* e) { s->on_epoch_complete(seq, e); });
  // Published only once the queue has the work: a stream that sees `seq` committed may make
  // the device wait for it, and a device wait queued ahead of the work it waits for (in a
  // hardware queue two CUDA streams share) would never be released.
  stream_.committed_.store(seq, std::memory_order_release);
  return seq;
}

}  // namespace lanes
