// The CUDA backend: one non-blocking CUstream per lanes stream.
//
// Commit launches an epoch's kernels, then writes the epoch's sequence number to the
// stream's 64-bit device counter (cuStreamWriteValue64) and enqueues a host function. Other
// streams wait on that counter on the device (cuStreamWaitValue64), so cross-stream
// dependencies never block a host thread. The host function only bumps an atomic and wakes
// the queue's completion thread; that thread checks errors, poisons outputs of failed work,
// drops the epoch's buffers and signals the timeline. It is never inside a CUDA callback, so
// it may call CUDA (freeing memory), and it never takes an op lock. If the context dies
// (a sticky error), host functions stop running: the completion thread notices through
// cuStreamQuery and fails the outstanding epochs with the driver's message.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <algorithm>
#include <thread>
#include <unordered_map>

#include "../ffi/src/backend.hpp"
#include "../ffi/src/epoch_checks.hpp"
#include "../ffi/src/runtime.hpp"
#include "../ffi/src/status.hpp"
#include "../ffi/src/gpu/in_order_completions.hpp"
#include "device.hpp"
#include "staging.hpp"

namespace lanes {
namespace cuda {
namespace {

thread_local CUcontext t_current = nullptr;

bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, value) == 0;
}

// A stream's completion counter: the last sequence whose work finished, in its GPU's memory
// (waits on the same GPU read it there) and, with several GPUs, mirrored in pinned host memory
// that streams on the other GPUs wait on.
struct Counter {
  const Device* device = nullptr;
  CUdeviceptr address = 0;
  ErrorWords::Word host{};
  ErrorWords* words = nullptr;
  // Where a stream on `waiter` waits for this counter.
  CUdeviceptr address_for(const Device& waiter) const { return &waiter == device ? address : host.device; }

  // LANES_CUDA_SYNC=events (an experiment, measured in docs/CUDA.md): an event recorded after
  // each epoch still in flight, by sequence. Waiters make their stream wait on it.
  std::mutex events_mutex;  // leaf; held across cuStreamWaitEvent/cuEventRecord, which never block
  std::deque<std::pair<uint64_t, CUevent>> events;
  void record(uint64_t sequence, CUstream stream) {
    CUevent e = nullptr;
    check(driver().cuEventCreate(&e, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
    std::lock_guard lock(events_mutex);
    check(driver().cuEventRecord(e, stream), "cuEventRecord");
    events.emplace_back(sequence, e);
  }
  void wait(CUstream stream, uint64_t value) {
    std::lock_guard lock(events_mutex);
    for (auto& [seq, e] : events)
      if (seq >= value) {
        check(driver().cuStreamWaitEvent(stream, e, 0), "cuStreamWaitEvent");
        return;
      }
    // Not in flight any more: it completed already.
  }
  void completed(uint64_t sequence) {
    std::lock_guard lock(events_mutex);
    while (!events.empty() && events.front().first <= sequence) {
      driver().cuEventDestroy(events.front().second);
      events.pop_front();
    }
  }

  ~Counter() {
    for (auto& [seq, e] : events) driver().cuEventDestroy(e);
    if (words) words->give_back(host);
    if (!address) return;
    device->make_current();
    driver().cuMemFree(address);
  }
};

class CudaCommandBuffer final : public CommandBuffer {
 public:
  struct Item {
    Command command;
    std::shared_ptr<Timeline> wait_on;  // set: a wait, not a command
    uint64_t wait_value = 0;
    std::shared_ptr<Counter> wait_counter;
  };

  explicit CudaCommandBuffer(std::function<std::shared_ptr<Counter>(uint64_t)> counter_of)
      : counter_of_(std::move(counter_of)) {}

  void encode(Command command) override { items.push_back(Item{std::move(command), nullptr, 0, nullptr}); }
  void encode_wait(std::shared_ptr<Timeline> other, uint64_t value) override {
    std::shared_ptr<Counter> counter = counter_of_(other->stream_id());
    items.push_back(Item{Command{}, std::move(other), value, std::move(counter)});
  }
  void inject_failure(std::string reason) override { injected = std::move(reason); }

  std::vector<Item> items;
  std::optional<std::string> injected;

 private:
  std::function<std::shared_ptr<Counter>(uint64_t)> counter_of_;
};

class CudaBackend;

class CudaQueue final : public Queue {
 public:
  CudaQueue(CudaBackend& backend, Device& device, uint64_t stream_id, std::shared_ptr<Counter> counter);
  ~CudaQueue() override;

  std::unique_ptr<CommandBuffer> new_command_buffer() override;
  void commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, CompletionFn on_complete) override;
  void debug_pause(bool paused) override;

 private:
  struct Submission {
    std::unique_ptr<CudaCommandBuffer> buffer;
    uint64_t sequence = 0;
    CompletionFn on_complete;
    std::unique_ptr<LaunchContext> launched;
    std::optional<std::string> error;  // at launch time
    CUgraphExec graph = nullptr;       // LANES_CUDA_GRAPHS=1: destroyed at completion
  };

  static void host_done(void* completions);
  void complete(Submission& s, const std::optional<std::string>& sticky);

  CudaBackend& backend_;
  Device& device_;
  const uint64_t stream_id_;
  std::shared_ptr<Counter> counter_;
  CUstream stream_ = nullptr;
  std::mutex mutex_;  // leaf: launches and gates_; never taken by the host function
  // debug_pause: the stream waits on the device for a host-written word, so paused work still
  // sits in the CUDA stream in commit order (holding it back on the host could put another
  // stream's wait for it ahead of it in a shared hardware queue).
  std::vector<ErrorWords::Word> gates_;
  std::unique_ptr<gpu::InOrderCompletions> completions_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    const Driver& d = driver();
    int count = 0;
    check(d.cuDeviceGetCount(&count), "cuDeviceGetCount");
    if (count == 0) throw_error(LANES_ERR_DEVICE, "LANES_BACKEND=cuda: the driver reports no CUDA device");
    nvrtc();  // fail now, with a clear message, rather than at the first kernel
    for (int i = 0; i < count; ++i) devices_.push_back(open_device(i));
    // Streams on different GPUs read each other's arrays directly: peer access both ways.
    for (auto& a : devices_)
      for (auto& b : devices_) {
        if (a == b) continue;
        int can = 0;
        d.cuDeviceCanAccessPeer(&can, a->device, b->device);
        a->make_current();
        CUresult r = can ? d.cuCtxEnablePeerAccess(b->context, 0) : CUDA_SUCCESS;
        if (!can || (r != CUDA_SUCCESS && r != CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED)) peer_access_ = false;
      }
    devices_[0]->make_current();
  }

  const char* name() const override { return "cuda"; }
  int device_count() const override { return static_cast<int>(devices_.size()); }
  // A quarter of device memory: cuMemAlloc and cuMemFree are slow, and cuMemFree can
  // synchronize the device, so freed buffers are kept for reuse.
  uint64_t max_cached_bytes() const override { return cached_limit_; }
  // A host function stalls its stream until a host thread ran it: commit GPU epochs on the
  // op count (or an eval's end), not after every large output.
  uint64_t default_epoch_bytes() const override { return uint64_t(4) << 30; }

  void* allocate(size_t bytes, int device) override {
    devices_.at(device)->make_current();
    CUdeviceptr p = 0;
    CUresult r = driver().cuMemAlloc(&p, bytes);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) return nullptr;
    check(r, "cuMemAlloc");
    return reinterpret_cast<void*>(p);
  }
  void deallocate(void* data, size_t, int device) override {
    devices_.at(device)->make_current();
    driver().cuMemFree(reinterpret_cast<CUdeviceptr>(data));
  }
  // Unified addressing: copies find the pointer's device; any context may issue them. Small
  // copies go straight through; large ones through pinned staging (about twice as fast).
  void upload(void* dst, const void* src, size_t bytes) override {
    devices_[0]->make_current();
    if (bytes >= kStagedCopyBytes) return staging_.upload(reinterpret_cast<CUdeviceptr>(dst), src, bytes);
    check(driver().cuMemcpyHtoD(reinterpret_cast<CUdeviceptr>(dst), src, bytes), "copy to the device");
  }
  std::shared_ptr<void> read_staging(size_t bytes) override {
    if (bytes > ReadBlocks::kBytes || read_after_wait_) return nullptr;
    return read_blocks_.take();
  }

  void download(void* dst, const void* src, size_t bytes) override {
    devices_[0]->make_current();
    if (bytes >= kStagedCopyBytes) return staging_.download(dst, reinterpret_cast<CUdeviceptr>(src), bytes);
    check(driver().cuMemcpyDtoH(dst, reinterpret_cast<CUdeviceptr>(src), bytes), "copy from the device");
  }

  std::unique_ptr<Queue> new_queue(uint64_t stream_id, int device_index) override {
    if (device_index > 0 && !peer_access_)
      throw_error(LANES_ERR_DEVICE, "cuda: streams on device " + std::to_string(device_index) +
                                        " need peer access between the GPUs, which the driver does not offer here");
    Device& device = *devices_.at(device_index);
    device.make_current();
    auto counter = std::make_shared<Counter>();
    counter->device = &device;
    counter->host = error_words_.take();  // zeroed; a mirror every GPU can read
    check(driver().cuMemAlloc(&counter->address, sizeof(uint64_t)), "allocating a stream counter");
    check(driver().cuMemsetD8(counter->address, 0, sizeof(uint64_t)), "clearing a stream counter");
    counter->words = &error_words_;
    {
      std::lock_guard lock(counters_mutex_);
      counters_[stream_id] = counter;
    }
    return std::make_unique<CudaQueue>(*this, device, stream_id, std::move(counter));
  }

  // The counter of stream `id`; it stays alive while a wait that reads it is in flight.
  std::shared_ptr<Counter> counter_of(uint64_t id) {
    std::lock_guard lock(counters_mutex_);
    auto it = counters_.find(id);
    std::shared_ptr<Counter> c = it == counters_.end() ? nullptr : it->second.lock();
    if (!c) throw_error(LANES_ERR_INTERNAL, "cuda: waiting on stream " + std::to_string(id) + ", which has no counter");
    return c;
  }
  void forget_counter(uint64_t id) {
    std::lock_guard lock(counters_mutex_);
    counters_.erase(id);
  }

  bool multi_device() const { return devices_.size() > 1; }
  ErrorWords& error_words() { return error_words_; }

 private:
  std::unique_ptr<Device> open_device(int index) {
    const Driver& d = driver();
    auto dev = std::make_unique<Device>();
    dev->index = index;
    check(d.cuDeviceGet(&dev->device, index), "cuDeviceGet");
    char name[256] = {};
    d.cuDeviceGetName(name, sizeof name - 1, dev->device);
    dev->name = name;
    check(d.cuDeviceGetAttribute(&dev->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev->device), "attribute");
    check(d.cuDeviceGetAttribute(&dev->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev->device), "attribute");
    check(d.cuDeviceGetAttribute(&dev->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev->device), "attribute");
    int mem_ops = 0;
    d.cuDeviceGetAttribute(&mem_ops, CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS, dev->device);
    if (!mem_ops)
      throw_error(LANES_ERR_DEVICE, "LANES_BACKEND=cuda: " + dev->name +
                                        " does not support 64-bit stream memory operations, which lanes' timelines use");
    check(d.cuDevicePrimaryCtxRetain(&dev->context, dev->device), "cuDevicePrimaryCtxRetain");
    dev->make_current();
    dev->modules = std::make_unique<Modules>(dev->cc_major, dev->cc_minor);
    dev->modules->prefetch([](const void* p) { static_cast<const Device*>(p)->make_current(); }, dev.get());
    size_t free_bytes = 0, total_bytes = 0;
    if (index == 0 && d.cuMemGetInfo(&free_bytes, &total_bytes) == CUDA_SUCCESS)
      cached_limit_ = std::max<uint64_t>(cached_limit_, total_bytes / 4);
    dev->tf32 = env_is("LANES_CUDA_TF32", "1");
    dev->use_cublaslt = !env_is("LANES_CUDA_CUBLASLT", "0");
    dev->graphs = env_is("LANES_CUDA_GRAPHS", "1");
    dev->event_sync = env_is("LANES_CUDA_SYNC", "events");
    if (const CublasLt* lt = cublaslt(); lt && dev->use_cublaslt)
      if (lt->cublasLtCreate(&dev->cublaslt_handle) != 0) dev->cublaslt_handle = nullptr;
    return dev;
  }

  static constexpr size_t kStagedCopyBytes = size_t(1) << 20;
  std::vector<std::unique_ptr<Device>> devices_;
  Staging staging_;
  ReadBlocks read_blocks_;
  // LANES_CUDA_READ=wait: every read waits for its array, then copies (for comparison).
  bool read_after_wait_ = env_is("LANES_CUDA_READ", "wait");
  bool peer_access_ = true;
  uint64_t cached_limit_ = uint64_t(1) << 30;
  ErrorWords error_words_;
  std::mutex counters_mutex_;  // leaf
  std::unordered_map<uint64_t, std::weak_ptr<Counter>> counters_;
};

// ---- queue ---------------------------------------------------------------------------------

CudaQueue::CudaQueue(CudaBackend& backend, Device& device, uint64_t stream_id, std::shared_ptr<Counter> counter)
    : backend_(backend), device_(device), stream_id_(stream_id), counter_(std::move(counter)) {
  device_.make_current();
  check(driver().cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  completions_ = std::make_unique<gpu::InOrderCompletions>(
      [this]() -> std::optional<std::string> {
        CUresult r = driver().cuStreamQuery(stream_);
        if (r == CUDA_SUCCESS || r == CUDA_ERROR_NOT_READY) return std::nullopt;
        return "the CUDA context failed (" + error_text(r) + "); restart the process to use the GPU again";
      },
      [this] { device_.make_current(); });
}

CudaQueue::~CudaQueue() {
  completions_.reset();  // the stream's work completed before its queue is freed
  backend_.forget_counter(stream_id_);
  device_.make_current();
  for (ErrorWords::Word& gate : gates_) reinterpret_cast<volatile uint64_t*>(gate.host)[0] = 1;
  driver().cuStreamSynchronize(stream_);  // gates opened: nothing still reads them
  for (ErrorWords::Word& gate : gates_) backend_.error_words().give_back(gate);
  driver().cuStreamDestroy(stream_);
}

std::unique_ptr<CommandBuffer> CudaQueue::new_command_buffer() {
  CudaBackend* backend = &backend_;
  return std::make_unique<CudaCommandBuffer>([backend](uint64_t id) { return backend->counter_of(id); });
}

void CudaQueue::host_done(void* completions) {
  // Inside a CUDA callback: no CUDA calls and no lock that is ever held across one.
  static_cast<gpu::InOrderCompletions*>(completions)->signal();
}

void CudaQueue::commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, CompletionFn on_complete) {
  auto s = std::make_shared<Submission>();
  s->buffer.reset(static_cast<CudaCommandBuffer*>(buffer.release()));
  s->sequence = sequence;
  s->on_complete = std::move(on_complete);
  const Driver& d = driver();
  std::lock_guard lock(mutex_);
  device_.make_current();
  s->launched = std::make_unique<LaunchContext>(LaunchContext{device_, backend_.error_words(), stream_, {}, {}});
  if (!s->buffer->injected) {
    // LANES_CUDA_GRAPHS=1 (an experiment, measured in docs/CUDA.md): the epoch's launches are
    // captured into a graph, instantiated and launched as one.
    bool capturing = device_.graphs && d.cuStreamBeginCapture(stream_, CU_STREAM_CAPTURE_MODE_RELAXED) == CUDA_SUCCESS;
    try {
      for (CudaCommandBuffer::Item& item : s->buffer->items) {
        if (item.wait_on && device_.event_sync) item.wait_counter->wait(stream_, item.wait_value);
        else if (item.wait_on)
          check(d.cuStreamWaitValue64(stream_, item.wait_counter->address_for(device_), item.wait_value, CU_STREAM_WAIT_VALUE_GEQ),
                "cuStreamWaitValue64");
        else launch_command(item.command, *s->launched);
      }
    } catch (const std::exception& e) {
      s->error = e.what();
    }
    if (capturing) {
      CUgraph graph = nullptr;
      CUresult r = d.cuStreamEndCapture(stream_, &graph);
      if (r == CUDA_SUCCESS && !s->error) r = d.cuGraphInstantiateWithFlags(&s->graph, graph, 0);
      if (r == CUDA_SUCCESS && !s->error) r = d.cuGraphLaunch(s->graph, stream_);
      if (graph) d.cuGraphDestroy(graph);
      if (r != CUDA_SUCCESS && !s->error) s->error = "CUDA graph of stream " + std::to_string(stream_id_) + ": " + error_text(r);
    }
  }
  // Always signal, so other streams' waits and the completion thread move on.
  if (device_.event_sync) {
    try {
      counter_->record(sequence, stream_);
    } catch (const std::exception& e) {
      if (!s->error) s->error = e.what();
    }
  }
  CUresult w = d.cuStreamWriteValue64(stream_, counter_->address, sequence, 0);
  if (w == CUDA_SUCCESS && backend_.multi_device()) w = d.cuStreamWriteValue64(stream_, counter_->host.device, sequence, 0);
  CUresult h = w == CUDA_SUCCESS ? d.cuLaunchHostFunc(stream_, &CudaQueue::host_done, completions_.get()) : w;
  if (h != CUDA_SUCCESS && !s->error) s->error = "CUDA stream " + std::to_string(stream_id_) + ": " + error_text(h);
  completions_->push([this, s](const std::optional<std::string>& sticky) { complete(*s, sticky); }, h == CUDA_SUCCESS);
}

void CudaQueue::debug_pause(bool paused) {
  std::lock_guard lock(mutex_);
  if (paused) {
    ErrorWords::Word gate = backend_.error_words().take();  // zeroed
    device_.make_current();
    check(driver().cuStreamWaitValue64(stream_, gate.device, 1, CU_STREAM_WAIT_VALUE_GEQ), "pausing a stream");
    gates_.push_back(gate);
    return;
  }
  for (ErrorWords::Word& gate : gates_) reinterpret_cast<volatile uint64_t*>(gate.host)[0] = 1;
}

void CudaQueue::complete(Submission& s, const std::optional<std::string>& sticky) {
  CudaCommandBuffer& b = *s.buffer;
  std::optional<std::string> error = b.injected ? b.injected : s.error ? s.error : sticky;
  for (CudaCommandBuffer::Item& item : b.items) {
    if (error) break;
    if (item.wait_on) {
      // Already reached on the device; this waits for its host-side completion, which
      // records whether it failed.
      error = failed_wait(*item.wait_on, item.wait_value);
      continue;
    }
    error = poisoned_input(item.command);
  }
  if (s.launched) {
    for (const TakeCheck& t : s.launched->take_checks) {
      volatile int* word = t.word.host;
      if (!error && word[0])
        error = "take: index " + std::to_string(word[1]) + " is out of range for axis " + std::to_string(t.axis) +
                " of size " + std::to_string(t.dim);
      s.launched->error_words.give_back(t.word);
    }
  }
  uint64_t commands = 0;
  for (CudaCommandBuffer::Item& item : b.items) {
    if (!item.command.output.buffer) continue;
    if (item.command.op != OpCode::Download) ++commands;  // a copy, not a kernel
    if (error) item.command.output.buffer->poisoned.store(true, std::memory_order_release);
  }
  if (!error) runtime().counters.kernels_executed.fetch_add(commands, std::memory_order_relaxed);
  CompletionFn done = std::move(s.on_complete);
  if (s.graph) driver().cuGraphExecDestroy(s.graph);
  if (device_.event_sync) counter_->completed(s.sequence);
  s.buffer.reset();  // release the epoch's buffers and scratch before signalling
  s.launched.reset();
  done(error ? &*error : nullptr);
}

}  // namespace

// ---- shared pieces -------------------------------------------------------------------------

void Device::make_current() const {
  if (t_current == context) return;
  check(driver().cuCtxSetCurrent(context), "cuCtxSetCurrent");
  t_current = context;
}

ErrorWords::Word ErrorWords::take() {
  std::lock_guard lock(mutex_);
  if (free_.empty()) {
    constexpr int kWords = 1024;  // a slab of 1024 two-int words, pinned and mapped
    void* host = nullptr;
    check(driver().cuMemHostAlloc(&host, kWords * 2 * sizeof(int), CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP),
          "cuMemHostAlloc");
    CUdeviceptr dev = 0;
    check(driver().cuMemHostGetDevicePointer(&dev, host, 0), "cuMemHostGetDevicePointer");
    for (int i = kWords - 1; i >= 0; --i)
      free_.push_back(Word{static_cast<int*>(host) + 2 * i, dev + 2 * i * sizeof(int)});
  }
  Word w = free_.back();
  free_.pop_back();
  w.host[0] = 0;
  w.host[1] = 0;
  return w;
}

void ErrorWords::give_back(Word w) {
  std::lock_guard lock(mutex_);
  free_.push_back(w);
}

CUdeviceptr LaunchContext::temp(size_t bytes) {
  temps.push_back(runtime().allocator().allocate(bytes, device.index));
  return reinterpret_cast<CUdeviceptr>(temps.back()->data());
}

}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<cuda::CudaBackend>(); }

}  // namespace lanes
