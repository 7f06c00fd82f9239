// The CPU backend, shaped like a GPU: per-stream queues whose committed command buffers run
// on an executor thread, completion handlers on that thread, cross-stream waits on timeline
// values. Every race a GPU backend could expose is exercised here too, under TSan.
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "../backend.hpp"
#include "../epoch_checks.hpp"
#include "../runtime.hpp"
#include "../status.hpp"
#include "kernels.hpp"

namespace lanes {
namespace {

// Set when a queue is destroyed from its own worker thread (inside a completion): the worker
// must return without touching the queue again.
thread_local const void* t_destroyed_self = nullptr;

class CpuCommandBuffer final : public CommandBuffer {
 public:
  struct Item {
    Command command;
    std::shared_ptr<Timeline> wait_on;  // set: a wait, not a command
    uint64_t wait_value = 0;
  };

  void encode(Command command) override { items_.push_back(Item{std::move(command), nullptr, 0}); }
  void encode_wait(std::shared_ptr<Timeline> other, uint64_t value) override {
    items_.push_back(Item{Command{}, std::move(other), value});
  }

  void inject_failure(std::string reason) override { injected_ = std::move(reason); }

  // Runs every item; on failure marks every output of this buffer poisoned and returns why.
  std::optional<std::string> execute() {
    std::optional<std::string> error = injected_;
    for (Item& item : items_) {
      if (error) break;
      if (item.wait_on) {
        error = failed_wait(*item.wait_on, item.wait_value);
        continue;
      }
      error = run(item.command);
    }
    if (error)
      for (Item& item : items_)
        if (item.command.output.buffer) item.command.output.buffer->poisoned.store(true, std::memory_order_release);
    return error;
  }

 private:
  static std::optional<std::string> run(const Command& c) {
    if (auto poisoned = poisoned_input(c)) return poisoned;
    try {
      cpu::run_kernel(c);
    } catch (const std::exception& e) {
      return std::string(op_name(c.op, c.params.subop)) + ": " + e.what();
    }
    if (c.op != OpCode::Download) runtime().counters.kernels_executed.fetch_add(1, std::memory_order_relaxed);  // a copy
    return std::nullopt;
  }

  std::vector<Item> items_;
  std::optional<std::string> injected_;
};

class CpuQueue final : public Queue {
 public:
  CpuQueue() : worker_([this] { loop(); }) {}

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

  void debug_pause(bool paused) override {
    {
      std::lock_guard lock(mutex_);
      paused_ = paused;
    }
    ready_.notify_all();
  }

  void commit(std::unique_ptr<CommandBuffer> buffer, uint64_t, CompletionFn on_complete) override {
    std::unique_ptr<CpuCommandBuffer> cpu(static_cast<CpuCommandBuffer*>(buffer.release()));
    {
      std::lock_guard lock(mutex_);
      pending_.push_back(Submission{std::move(cpu), std::move(on_complete)});
    }
    ready_.notify_one();
  }

 private:
  struct Submission {
    std::unique_ptr<CpuCommandBuffer> buffer;
    CompletionFn on_complete;
  };

  void loop() {
    for (;;) {
      Submission next;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return stopping_ || (!paused_ && !pending_.empty()); });
        if (pending_.empty()) return;  // stopping, and every submission ran
        next = std::move(pending_.front());
        pending_.pop_front();
      }
      std::optional<std::string> error = next.buffer->execute();
      next.buffer.reset();  // release the epoch's temporaries before signalling
      next.on_complete(error ? &*error : nullptr);
      if (t_destroyed_self == this) return;  // the completion dropped the last stream reference
    }
  }

  std::mutex mutex_;  // leaf: guards the submission list only
  std::condition_variable ready_;
  std::deque<Submission> pending_;
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
  std::unique_ptr<Queue> new_queue(uint64_t, int) override { return std::make_unique<CpuQueue>(); }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace lanes
