// The CPU backend, shaped like a GPU: per-stream queues whose committed command buffers run
// on an executor thread or on the thread that waits for them, cross-stream waits on the other
// queue's fence, and completion reported from whichever thread ran the buffer. Every race a GPU
// backend could expose is exercised here too, under TSan.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../ffi/src/backend.hpp"
#include "cpu_features.hpp"
#include "kernels.hpp"

namespace lanes {
namespace {

// A compiled plan's commands. A replay runs them in place; only a command with a scalar
// parameter is copied, with the replay's value bound. It copies its inputs in and its outputs
// out itself (a memcpy each, not a command of its own).
class CpuPlanInstance final : public PlanInstance {
 public:
  CpuPlanInstance(std::vector<Command> commands, std::vector<PlanCopy> copies)
      : commands(std::move(commands)), copies(std::move(copies)) {}
  bool copies_bound() const override { return true; }
  const std::vector<Command> commands;
  const std::vector<PlanCopy> copies;
};

bool has_parameter(const Command& c) {
  for (int8_t d : c.params.dynamic)
    if (d >= 0) return true;
  return false;
}

// Runs `c`, or on failure returns what failed.
std::optional<std::string> run_command(const Command& c) {
  try {
    cpu::run_kernel(c);
  } catch (const std::exception& e) {
    return std::string(op_name(c.op, c.params.subop)) + ": " + e.what();
  }
  return std::nullopt;
}

class CpuLane;  // a queue's state and fence, below

class CpuCommandBuffer final : public CommandBuffer {
 public:
  void encode(Command&& command, std::unique_ptr<Prepared>) override { items_.emplace_back().command = std::move(command); }
  // The core keeps `instance` until this buffer's epoch completed.
  void encode_plan(PlanInstance& instance, const double* scalars, int count, void* const* bound) override {
    auto replay = std::make_unique<Replay>();
    replay->plan = &static_cast<CpuPlanInstance&>(instance);
    replay->scalar_count = std::min(count, kMaxPlanScalars);
    std::copy(scalars, scalars + replay->scalar_count, replay->scalars.begin());
    if (bound) replay->bound.assign(bound, bound + replay->plan->copies.size());
    items_.emplace_back().replay = std::move(replay);
  }
  void encode_wait(Fence& other, uint64_t value) override {
    Item& item = items_.emplace_back();
    item.wait_on = &other;
    item.wait_value = value;
  }

  // Runs every item in order; the first failure stops the rest and is returned.
  std::optional<std::string> execute();
  // Empties a buffer that ran, keeping its storage for the lane's next one.
  void clear() { items_.clear(); }

 private:
  struct Replay {
    const CpuPlanInstance* plan = nullptr;
    std::array<double, kMaxPlanScalars> scalars{};
    int scalar_count = 0;
    std::vector<void*> bound;  // the callers' addresses of the plan's copies
  };
  // One of: a command, a plan replay with its scalars, a wait on another queue's fence.
  struct Item {
    Command command;
    std::unique_ptr<Replay> replay;
    Fence* wait_on = nullptr;  // a CpuLane
    uint64_t wait_value = 0;
  };

  static void copy_bound(const Replay& r, bool into_plan) {
    const std::vector<PlanCopy>& copies = r.plan->copies;
    for (size_t j = 0; j < copies.size() && j < r.bound.size(); ++j) {
      if (copies[j].into_plan != into_plan) continue;
      if (into_plan)
        std::memcpy(copies[j].slot, r.bound[j], copies[j].bytes);
      else
        std::memcpy(r.bound[j], copies[j].slot, copies[j].bytes);
    }
  }

  static std::optional<std::string> replay(const Replay& r) {
    copy_bound(r, true);
    for (const Command& c : r.plan->commands) {
      std::optional<std::string> failed;
      if (has_parameter(c)) {
        Command bound = c;
        OpParams& p = bound.params;
        for (int i = 0; i < 3; ++i)
          if (p.dynamic[i] >= 0 && p.dynamic[i] < r.scalar_count) p.scalars[i] = r.scalars[p.dynamic[i]];
        failed = run_command(bound);
      } else {
        failed = run_command(c);
      }
      if (failed) return failed;
    }
    copy_bound(r, false);
    return std::nullopt;
  }

  std::vector<Item> items_;
};

// A queue's work and its timeline as other queues wait on it, shared by the queue, its
// executor thread, the waiters that run its work (progress) and the queues that wait on its
// fence, so that each may outlive the queue. Committed buffers run one at a time, in commit
// order, on whichever of those threads takes the next one first.
class CpuLane final : public Fence {
 public:
  // An empty command buffer, one that ran before where the lane kept one.
  std::unique_ptr<CpuCommandBuffer> fresh_buffer() {
    {
      std::lock_guard lock(mutex_);
      if (!spare_.empty()) {
        std::unique_ptr<CpuCommandBuffer> buffer = std::move(spare_.back());
        spare_.pop_back();
        return buffer;
      }
    }
    return std::make_unique<CpuCommandBuffer>();
  }

  void submit(std::unique_ptr<CpuCommandBuffer> buffer, uint64_t sequence, Completion* done, Start start) {
    {
      std::lock_guard lock(mutex_);
      pending_.push_back(Submission{std::move(buffer), sequence, done, std::chrono::steady_clock::now()});
      ++submitted_;
      if (start == Start::OnDemand) {
        // An executor that checks on a timer finds OnDemand work by itself (see executor_loop).
        if (!asleep_) return;
      } else {
        released_through_ = sequence;
        startable_.fetch_add(1, std::memory_order_release);
      }
    }
    ready_.notify_one();
  }

  // Hands every submission so far to the executor: nobody is about to run it on their thread.
  void release() {
    {
      std::lock_guard lock(mutex_);
      if (pending_.empty() || released_through_ >= pending_.back().sequence) return;
      released_through_ = pending_.back().sequence;
      startable_.fetch_add(1, std::memory_order_release);
    }
    ready_.notify_one();
  }

  // Runs the next submission on this thread unless another thread is running one (or the lane
  // is paused); returns whether it ran one.
  bool run_next() {
    if (t_running) return false;  // inside a completion: never nest runs
    std::unique_lock lock(mutex_);
    if (paused_ || running_ || pending_.empty()) return false;
    Submission next = take_locked();
    lock.unlock();
    run(next);
    return true;
  }

  void executor_loop() {
    auto quiet_since = std::chrono::steady_clock::now();
    uint64_t seen_submitted = 0;
    for (;;) {
      std::unique_lock lock(mutex_);
      if (!can_start_locked()) {
        // The next submission usually follows within microseconds (a stream's next eval, a
        // compiled step's replay): catching it spinning spares both threads a futex wake.
        uint64_t seen = startable_.load(std::memory_order_acquire);
        lock.unlock();
        spin_until([&] { return startable_.load(std::memory_order_acquire) != seen; }, kIdleSpin);
        lock.lock();
      }
      for (;;) {
        if (stopping_ && pending_.empty()) return;
        if (can_start_locked()) break;
        if (paused_) {
          ready_.wait(lock);
          continue;
        }
        auto now = std::chrono::steady_clock::now();
        if (submitted_ != seen_submitted) {
          seen_submitted = submitted_;
          quiet_since = now;
        }
        if (!running_ && !pending_.empty()) {
          // OnDemand work that nobody ran or asked for (a replay whose results were never
          // evaluated) still starts, a little later.
          auto due = pending_.front().committed_at + kOnDemandGrace;
          if (now >= due) break;
          ready_.wait_until(lock, due);
          continue;
        }
        // While a stream is in use the executor looks on a timer, so that committing OnDemand
        // work never pays for waking it (a futex wake cost a compiled decode step 9-20 us
        // here); after a quiet spell it sleeps until a submission wakes it.
        if (now - quiet_since < kQuietSpell) {
          ready_.wait_until(lock, now + kOnDemandGrace);
          continue;
        }
        asleep_ = true;
        ready_.wait(lock);
        asleep_ = false;
      }
      Submission next = take_locked();
      lock.unlock();
      run(next);
    }
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
  }
  void pause(bool paused) {
    {
      std::lock_guard lock(mutex_);
      paused_ = paused;
    }
    ready_.notify_all();
  }
  // Whether this thread is running one of this lane's submissions (in its completion, that is).
  bool running_here() const { return t_running == this; }

  // The fence: other queues' work waits here for this lane to reach `value`.
  void wait(uint64_t value) {
    if (reached_.load(std::memory_order_acquire) >= value) return;
    release();
    std::unique_lock lock(mutex_);
    reached_cv_.wait(lock, [&] { return reached_.load(std::memory_order_acquire) >= value; });
  }

 private:
  struct Submission {
    std::unique_ptr<CpuCommandBuffer> buffer;
    uint64_t sequence = 0;
    Completion* done = nullptr;
    std::chrono::steady_clock::time_point committed_at;
  };

  bool can_start_locked() const {
    return !running_ && !pending_.empty() && (stopping_ || (!paused_ && pending_.front().sequence <= released_through_));
  }

  Submission take_locked() {
    running_ = true;
    Submission next = std::move(pending_.front());
    pending_.pop_front();
    return next;
  }

  void run(Submission& next) {
    t_running = this;
    std::optional<std::string> error = next.buffer->execute();
    next.buffer->clear();
    {
      std::lock_guard lock(mutex_);
      reached_.store(next.sequence, std::memory_order_release);
      if (spare_.size() < kSpareBuffers) spare_.push_back(std::move(next.buffer));
    }
    next.buffer.reset();
    reached_cv_.notify_all();
    // Still the runner while completing: the next submission's completion must come after.
    next.done->complete(error ? error->c_str() : nullptr);
    bool wake;
    {
      std::lock_guard lock(mutex_);
      running_ = false;
      wake = !pending_.empty() || stopping_;
    }
    t_running = nullptr;
    if (wake) ready_.notify_one();
  }

  static constexpr std::chrono::microseconds kIdleSpin{50};
  static constexpr std::chrono::milliseconds kOnDemandGrace{1};
  static constexpr std::chrono::milliseconds kQuietSpell{20};
  // Buffers kept for reuse: a stream's epochs come one after another, so a couple suffice.
  static constexpr size_t kSpareBuffers = 2;
  static thread_local const CpuLane* t_running;

  std::mutex mutex_;  // leaf
  std::condition_variable ready_;       // the executor waits here for startable work
  std::condition_variable reached_cv_;  // fence waiters wait here
  std::deque<Submission> pending_;
  std::vector<std::unique_ptr<CpuCommandBuffer>> spare_;
  uint64_t released_through_ = 0;  // the executor starts submissions up to this sequence
  std::atomic<uint64_t> startable_{0};  // bumped when work becomes the executor's; it spins on it
  std::atomic<uint64_t> reached_{0};
  bool running_ = false;
  uint64_t submitted_ = 0;
  bool asleep_ = false;  // the executor sleeps with no timer: a submission must wake it
  bool stopping_ = false;
  bool paused_ = false;
};

thread_local const CpuLane* CpuLane::t_running = nullptr;

std::optional<std::string> CpuCommandBuffer::execute() {
  for (const Item& item : items_) {
    std::optional<std::string> failed;
    if (item.wait_on) {
      static_cast<CpuLane*>(item.wait_on)->wait(item.wait_value);
    } else if (item.replay) {
      failed = replay(*item.replay);
    } else {
      failed = run_command(item.command);
    }
    if (failed) return failed;
  }
  return std::nullopt;
}

class CpuQueue final : public Queue {
 public:
  CpuQueue() : lane_(std::make_shared<CpuLane>()), executor_([lane = lane_] { lane->executor_loop(); }) {}

  ~CpuQueue() override {
    lane_->stop();
    // Destroyed inside one of its own completions (the last stream reference went with it):
    // the executor finishes what is left once this thread is done, holding the lane itself.
    if (executor_.get_id() == std::this_thread::get_id() || lane_->running_here())
      executor_.detach();
    else
      executor_.join();
  }

  std::unique_ptr<CommandBuffer> new_command_buffer() override { return lane_->fresh_buffer(); }
  std::shared_ptr<Fence> fence() override { return lane_; }
  std::function<bool()> progress() override {
    return [lane = lane_] { return lane->run_next(); };
  }
  // A waiter that cannot run the work (another thread is running earlier work) would only take
  // a core from that thread.
  std::chrono::microseconds progress_spin() const override { return std::chrono::microseconds(20); }
  std::function<void(uint64_t)> notify() override {
    return [lane = lane_](uint64_t) { lane->release(); };
  }
  void debug_pause(bool paused) override { lane_->pause(paused); }

  void commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, Completion* done, Start start) override {
    lane_->submit(std::unique_ptr<CpuCommandBuffer>(static_cast<CpuCommandBuffer*>(buffer.release())), sequence, done, start);
  }

 private:
  std::shared_ptr<CpuLane> lane_;
  std::thread executor_;
};

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  void* allocate(size_t bytes, int) override { return std::aligned_alloc(64, (bytes + 63) / 64 * 64); }
  void deallocate(void* data, size_t, int) override { std::free(data); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  // Small reads of work in flight go through the same Download command as on the GPU (one extra
  // small copy here), so the shared read path runs in every CPU test and sanitizer lane.
  std::shared_ptr<void> read_staging(size_t bytes) override {
    if (bytes > kStagedReadBytes) return nullptr;
    return std::shared_ptr<void>(std::malloc(bytes), std::free);
  }
  static constexpr size_t kStagedReadBytes = size_t(64) << 10;
  // The epilogue runs over the product in place, right after the same matmul kernel.
  bool matmul_epilogue(OpCode, int64_t, int64_t, int64_t) const override { return true; }
  // A folded norm runs as its own command would, into memory of the product's.
  bool matmul_norm_prologue(int64_t, int64_t) const override { return true; }
  // A pair epilogue runs as the chain's own command would, over the product stored aside.
  bool matmul_pair_epilogue(int64_t, int64_t, int64_t) const override { return true; }
  std::unique_ptr<PlanInstance> instantiate(std::vector<Command> commands, std::vector<PlanCopy> copies, int, Scratch&) override {
    return std::make_unique<CpuPlanInstance>(std::move(commands), std::move(copies));
  }
  std::unique_ptr<Queue> new_queue(int) override { return std::make_unique<CpuQueue>(); }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendSettings& settings) {
  cpu::configure(settings);
  return std::make_unique<CpuBackend>();
}

}  // namespace lanes
