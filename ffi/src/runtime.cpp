#include "runtime.hpp"

#include <cstdlib>
#include <cstring>
#include <string>

#include "config.hpp"
#include "status.hpp"

namespace lanes {
namespace {

// LANES_BACKEND picks the backend; unset, Metal on macOS and the CPU elsewhere.
std::unique_ptr<Backend> select_backend() {
  const std::string& name = config().backend;
#if defined(__APPLE__)
  const char* available = "metal, cpu";
  if (name.empty() || name == "metal") return make_metal_backend(config().backend_settings);
#elif defined(__linux__)
  const char* available = "cpu, cuda";
  if (name == "cuda") return make_cuda_backend(config().backend_settings);
#else
  const char* available = "cpu";
#endif
  if (name.empty() || name == "cpu") return make_cpu_backend(config().backend_settings);
  throw_error(LANES_ERR_DEVICE, "LANES_BACKEND=" + name + " is not available in this build (have: " + available + ")");
}

}  // namespace

Runtime::Runtime()
    : backend_(select_backend()), allocator_(*backend_, [this] {
        return counters.epochs_completed.load(std::memory_order_acquire) <
               counters.epochs_committed.load(std::memory_order_acquire);
      }) {
  set_epoch_budget(EpochBudget{backend_->default_epoch_ops(), backend_->default_epoch_bytes()});
  default_stream_ = new_stream();
  default_stream_handle_ = streams.insert(default_stream_);
}

std::shared_ptr<Stream> Runtime::new_stream(int device) {
  int count = backend_->device_count();
  if (device < 0 || device >= count)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "stream: device " + std::to_string(device) + " does not exist (the " +
                                                backend_->name() + " backend has " + std::to_string(count) + ")");
  uint64_t id = next_stream_id_.fetch_add(1, std::memory_order_relaxed);
  return std::make_shared<Stream>(id, device, backend_->new_queue(device), allocator_.new_pool(device));
}

std::shared_ptr<Stream> Runtime::stream_or_default(uint64_t handle) {
  // The default stream lives as long as the runtime: no need to pin its slot.
  if (handle == 0 || handle == default_stream_handle_) return default_stream_;
  return streams.get(handle);
}

namespace {
std::atomic<bool> g_shut_down{false};
}

Runtime& runtime() {
  static Runtime* instance = new Runtime();
  return *instance;
}

Runtime& running_runtime() {
  if (g_shut_down.load(std::memory_order_acquire)) throw_error(LANES_ERR_DISPOSED, "lanes was shut down (lanes_shutdown)");
  return runtime();
}

void shutdown_runtime() {
  Runtime& rt = running_runtime();
  rt.stream_or_default(0)->synchronize();
  g_shut_down.store(true, std::memory_order_release);
}

uint32_t this_thread_token() {
  static std::atomic<uint32_t> next{1};
  thread_local uint32_t token = next.fetch_add(1, std::memory_order_relaxed);
  return token;
}

}  // namespace lanes
