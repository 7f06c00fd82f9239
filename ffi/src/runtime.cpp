#include "runtime.hpp"

#include <cstdlib>
#include <cstring>
#include <string>

#include "status.hpp"

namespace lanes {
namespace {

std::unique_ptr<Backend> select_backend() {
  const char* name = std::getenv("LANES_BACKEND");
  if (!name || !*name || std::strcmp(name, "cpu") == 0) return make_cpu_backend();
#if defined(__linux__)
  if (std::strcmp(name, "cuda") == 0) return make_cuda_backend();
  throw_error(LANES_ERR_DEVICE, std::string("LANES_BACKEND=") + name + " is not available in this build (have: cpu, cuda)");
#else
  throw_error(LANES_ERR_DEVICE, std::string("LANES_BACKEND=") + name + " is not available in this build (have: cpu)");
#endif
}

}  // namespace

Runtime::Runtime()
    : backend_(select_backend()), allocator_(*backend_, [this] {
        return counters.epochs_completed.load(std::memory_order_acquire) <
               counters.epochs_committed.load(std::memory_order_acquire);
      }) {
  set_epoch_budget(EpochBudget{epoch_budget().max_ops, backend_->default_epoch_bytes()});
  default_stream_handle_ = streams.insert(new_stream());
}

std::shared_ptr<Stream> Runtime::new_stream() {
  uint64_t id = next_stream_id_.fetch_add(1, std::memory_order_relaxed);
  return std::make_shared<Stream>(id, backend_->new_queue(id));
}

std::shared_ptr<Stream> Runtime::stream_or_default(uint64_t handle) {
  return streams.get(handle == 0 ? default_stream_handle_ : handle);
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

bool fault_injection_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("LANES_FAULT_INJECTION");
    return v && std::strcmp(v, "1") == 0;
  }();
  return enabled;
}

}  // namespace lanes
