// The backend interface: the small surface every device translates (CPU, CUDA, Metal).
// All locking, epochs and graph logic live above it in the shared core.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "command.hpp"
#include "timeline.hpp"

namespace lanes {

// Commands recorded for one submission epoch. Only touched under its stream's op lock.
class CommandBuffer {
 public:
  virtual ~CommandBuffer() = default;
  virtual void encode(Command command) = 0;
  // Makes later commands wait until `other` reaches `value` (a cross-stream dependency).
  virtual void encode_wait(std::shared_ptr<Timeline> other, uint64_t value) = 0;
  // Test-only fault injection: the buffer fails on the device with `reason` instead of running.
  virtual void inject_failure(std::string reason) = 0;
};

// Runs on a backend thread once every command of a committed buffer ran (error set on
// failure). It must not take any op lock, and must not throw.
using CompletionFn = std::function<void(const std::string* error)>;

// One device queue per stream.
class Queue {
 public:
  virtual ~Queue() = default;
  virtual std::unique_ptr<CommandBuffer> new_command_buffer() = 0;
  // `sequence` is the epoch's timeline value: consecutive, starting at 1.
  virtual void commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, CompletionFn on_complete) = 0;
  // Test-only: while paused the queue starts no committed buffer (to exercise the watchdog).
  virtual void debug_pause(bool paused) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Devices this backend drives (streams pick one; 1 for the CPU and Metal).
  virtual int device_count() const { return 1; }
  // Returns null when the device is out of memory.
  virtual void* allocate(size_t bytes, int device) = 0;
  virtual void deallocate(void* data, size_t bytes, int device) = 0;
  virtual void upload(void* device_dst, const void* host_src, size_t bytes) = 0;
  // Called only once the work that wrote `device_src` completed.
  virtual void download(void* host_dst, const void* device_src, size_t bytes) = 0;
  // Host memory for a read of `bytes` done as a Download command on the array's own stream: the
  // copy is queued right behind the kernels that produce the array, so the reader waits for one
  // completion instead of a completion and then a copy. Shared, so a reader that gives up (the
  // watchdog) leaves the memory to the command in flight. Null: the reader waits for the array,
  // then calls download().
  virtual std::shared_ptr<void> read_staging(size_t bytes) { return nullptr; }
  virtual std::unique_ptr<Queue> new_queue(uint64_t stream_id, int device) = 0;
  // Output bytes after which an open epoch is committed by default. Each commit costs the
  // device a completion signal, so GPUs take larger epochs than the CPU.
  virtual uint64_t default_epoch_bytes() const { return uint64_t(64) << 20; }
  virtual uint32_t default_epoch_ops() const { return 64; }
  // How many freed bytes the allocator may keep cached for reuse.
  virtual uint64_t max_cached_bytes() const { return uint64_t(1) << 30; }
};

std::unique_ptr<Backend> make_cpu_backend();
// Throws a device error when there is no usable NVIDIA GPU, driver or NVRTC.
std::unique_ptr<Backend> make_cuda_backend();
// macOS only. Throws a device error when there is no Metal device.
std::unique_ptr<Backend> make_metal_backend();

}  // namespace lanes
