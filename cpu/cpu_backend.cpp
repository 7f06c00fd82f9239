// The CPU backend, shaped like a GPU: per-stream queues whose committed command buffers run
// on an executor thread, cross-stream waits on the other queue's fence, and completion
// reported from that thread. Every race a GPU backend could expose is exercised here too,
// under TSan.
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

// Set when a queue is destroyed from its own worker thread (inside a completion): the worker
// must return without touching the queue again.
thread_local const void* t_destroyed_self = nullptr;

// A queue's timeline as other queues wait on it: the last sequence whose work ran.
class CpuFence final : public Fence {
 public:
  void reach(uint64_t value) {
    {
      std::lock_guard lock(mutex_);
      value_.store(value, std::memory_order_release);
    }
    reached_.notify_all();
  }
  void wait(uint64_t value) {
    if (value_.load(std::memory_order_acquire) >= value) return;
    std::unique_lock lock(mutex_);
    reached_.wait(lock, [&] { return value_.load(std::memory_order_acquire) >= value; });
  }

 private:
  std::atomic<uint64_t> value_{0};
  std::mutex mutex_;  // leaf
  std::condition_variable reached_;
};

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

class CpuCommandBuffer final : public CommandBuffer {
 public:
  void encode(const Command& command, std::unique_ptr<Prepared>) override {
    items_.emplace_back();
    items_.back().command = command;
  }
  // The core keeps `instance` until this buffer's epoch completed.
  void encode_plan(PlanInstance& instance, const double* scalars, int count, void* const* bound) override {
    Item& item = items_.emplace_back();
    item.plan = &static_cast<CpuPlanInstance&>(instance);
    item.scalar_count = std::min(count, kMaxPlanScalars);
    std::copy(scalars, scalars + item.scalar_count, item.scalars.begin());
    if (bound) item.bound.assign(bound, bound + item.plan->copies.size());
  }
  void encode_wait(Fence& other, uint64_t value) override {
    Item& item = items_.emplace_back();
    item.wait_on = static_cast<CpuFence*>(&other);
    item.wait_value = value;
  }

  // Runs every item in order; the first failure stops the rest and is returned.
  std::optional<std::string> execute() {
    for (const Item& item : items_) {
      std::optional<std::string> failed;
      if (item.wait_on) {
        item.wait_on->wait(item.wait_value);
      } else if (item.plan) {
        failed = replay(item);
      } else {
        failed = run_command(item.command);
      }
      if (failed) return failed;
    }
    return std::nullopt;
  }

 private:
  // One of: a command, a plan replay with its scalars, a wait on another queue's fence.
  struct Item {
    Command command;
    const CpuPlanInstance* plan = nullptr;
    std::array<double, kMaxPlanScalars> scalars{};
    int scalar_count = 0;
    CpuFence* wait_on = nullptr;
    uint64_t wait_value = 0;
    std::vector<void*> bound;  // the callers' addresses of the plan's copies
  };

  static void copy_bound(const Item& item, bool into_plan) {
    const std::vector<PlanCopy>& copies = item.plan->copies;
    for (size_t j = 0; j < copies.size() && j < item.bound.size(); ++j) {
      if (copies[j].into_plan != into_plan) continue;
      if (into_plan)
        std::memcpy(copies[j].slot, item.bound[j], copies[j].bytes);
      else
        std::memcpy(item.bound[j], copies[j].slot, copies[j].bytes);
    }
  }

  static std::optional<std::string> replay(const Item& item) {
    copy_bound(item, true);
    for (const Command& c : item.plan->commands) {
      std::optional<std::string> failed;
      if (has_parameter(c)) {
        Command bound = c;
        OpParams& p = bound.params;
        for (int i = 0; i < 3; ++i)
          if (p.dynamic[i] >= 0 && p.dynamic[i] < item.scalar_count) p.scalars[i] = item.scalars[p.dynamic[i]];
        failed = run_command(bound);
      } else {
        failed = run_command(c);
      }
      if (failed) return failed;
    }
    copy_bound(item, false);
    return std::nullopt;
  }

  std::vector<Item> items_;
};

class CpuQueue final : public Queue {
 public:
  CpuQueue() : fence_(std::make_shared<CpuFence>()), worker_([this] { loop(); }) {}

  ~CpuQueue() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    if (worker_.get_id() == std::this_thread::get_id()) {
      worker_.detach();
      t_destroyed_self = this;
    } else {
      worker_.join();
    }
  }

  std::unique_ptr<CommandBuffer> new_command_buffer() override { return std::make_unique<CpuCommandBuffer>(); }
  std::shared_ptr<Fence> fence() override { return fence_; }

  void debug_pause(bool paused) override {
    {
      std::lock_guard lock(mutex_);
      paused_ = paused;
    }
    ready_.notify_all();
  }

  void commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, Completion* done) override {
    std::unique_ptr<CpuCommandBuffer> cpu(static_cast<CpuCommandBuffer*>(buffer.release()));
    {
      std::lock_guard lock(mutex_);
      pending_.push_back(Submission{std::move(cpu), sequence, done});
      submitted_.fetch_add(1, std::memory_order_release);
    }
    ready_.notify_one();
  }

 private:
  struct Submission {
    std::unique_ptr<CpuCommandBuffer> buffer;
    uint64_t sequence = 0;
    Completion* done = nullptr;
  };

  void loop() {
    uint64_t taken = 0;
    for (;;) {
      Submission next;
      // The next submission usually follows within microseconds (a stream's next eval, a
      // compiled step's replay): catching it spinning spares both threads a futex wake.
      spin_until([&] { return submitted_.load(std::memory_order_acquire) != taken; }, kIdleSpin);
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return stopping_ || (!paused_ && !pending_.empty()); });
        if (pending_.empty()) return;  // stopping, and every submission ran
        next = std::move(pending_.front());
        pending_.pop_front();
        ++taken;
      }
      std::optional<std::string> error = next.buffer->execute();
      next.buffer.reset();
      fence_->reach(next.sequence);
      next.done->complete(error ? error->c_str() : nullptr);
      if (t_destroyed_self == this) return;  // the completion dropped the last stream reference
    }
  }

  std::shared_ptr<CpuFence> fence_;
  std::mutex mutex_;  // leaf: guards the submission list only
  std::condition_variable ready_;
  std::deque<Submission> pending_;
  std::atomic<uint64_t> submitted_{0};  // submissions ever made; the worker spins on it when idle
  static constexpr std::chrono::microseconds kIdleSpin{50};
  bool stopping_ = false;
  bool paused_ = false;
  std::thread worker_;
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
  bool matmul_epilogue(int64_t, int64_t, int64_t) const override { return true; }
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
