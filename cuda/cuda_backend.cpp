// The CUDA backend: one non-blocking CUstream per lanes stream.
//
// Commands are translated into stream operations before the op lock (prepare), and issued
// onto the stream as they are encoded, so a long epoch's first kernels run while the rest is
// still being encoded. Commit writes the epoch's sequence number to the stream's 64-bit device
// counter (cuStreamWriteValue64) and to its mirror in pinned host memory. Other streams wait on
// that counter on the device (cuStreamWaitValue64), so cross-stream dependencies never block a
// host thread. An epoch completes (its error words read, its memory returned, the core told)
// where its mirror is seen to have reached it: by a thread that waits for it, or by the device's
// completion thread. A host function per epoch would hold the stream until a driver thread ran
// it (about 35 us on an H200, as long as a whole small graph), so the queue enqueues one only on
// demand (notify): for a thread about to sleep or a callback left for its work. If the context
// dies (a sticky error), the counters stop: the completion thread notices through cuStreamQuery
// and fails the outstanding epochs with the driver's message.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

#include "../ffi/src/backend.hpp"
#include "../ffi/src/gpu/kernel_layout.hpp"
#include "../ffi/src/shape.hpp"
#include "../ffi/src/status.hpp"
#include "device.hpp"
#include "staging.hpp"

namespace lanes {
namespace cuda {
namespace {

thread_local CUcontext t_current = nullptr;

// A stream's completion counter: the last sequence whose work finished, in its GPU's memory
// (waits on the same GPU read it there) and, with several GPUs, mirrored in pinned host memory
// that streams on the other GPUs wait on.
class CudaFence final : public Fence {
 public:
  CudaFence(const Device& device, ErrorWords& words) : device_(device), words_(words) {
    device_.make_current();  // a Worker's thread may have no context yet
    host_ = words_.take();  // zeroed; a mirror every GPU can read
    check(driver().cuMemAlloc(&address_, sizeof(uint64_t)), "allocating a stream counter");
    check(driver().cuMemsetD8(address_, 0, sizeof(uint64_t)), "clearing a stream counter");
  }
  ~CudaFence() override {
    words_.give_back(host_);
    device_.make_current();
    driver().cuMemFree(address_);
  }

  const Device& device() const { return device_; }
  CUdeviceptr address() const { return address_; }
  CUdeviceptr mirror() const { return host_.device; }
  // The mirror as the host reads it: waiting threads poll it (DeviceCompletions::progress).
  const uint64_t* host_word() const { return reinterpret_cast<const uint64_t*>(host_.host); }
  // Where a stream on `waiter` waits for this counter.
  CUdeviceptr address_for(const Device& waiter) const { return &waiter == &device_ ? address_ : host_.device; }

 private:
  const Device& device_;
  ErrorWords& words_;
  ErrorWords::Word host_{};
  CUdeviceptr address_ = 0;
};

// Pinned host blocks of one size, reused: where each replay of a plan copies its range-check
// words. Shared with the command buffers that hold one, so a block goes back safely whichever
// of the plan instance and the epoch goes first.
class HostBlocks {
 public:
  HostBlocks(const Device& device, size_t bytes) : device_(device), bytes_(bytes) {}
  ~HostBlocks() {
    device_.make_current();
    for (void* block : all_) driver().cuMemFreeHost(block);
  }
  HostBlocks(const HostBlocks&) = delete;
  HostBlocks& operator=(const HostBlocks&) = delete;

  int* take() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) {
      void* block = nullptr;
      device_.make_current();
      check(driver().cuMemHostAlloc(&block, bytes_, CU_MEMHOSTALLOC_PORTABLE), "cuMemHostAlloc");
      all_.push_back(block);
      return static_cast<int*>(block);
    }
    int* block = free_.back();
    free_.pop_back();
    return block;
  }
  void give_back(int* block) {
    std::lock_guard lock(mutex_);
    free_.push_back(block);
  }

 private:
  const Device& device_;
  const size_t bytes_;
  std::mutex mutex_;  // leaf
  std::vector<int*> free_;
  std::vector<void*> all_;
};

// A compiled plan on one device: its commands translated once (scalar parameters read from a
// device block), captured into a CUDA graph and instantiated. A replay writes the block from
// the stream (so it is ordered after the previous replay's reads) and launches the graph. The
// copies of the replay's inputs into the plan's memory and of its outputs out of it are in the
// graph too, their caller-side addresses in the block after the scalars: two kernels launched
// around the graph cost a replay about 12 us on an H200 (bench/torch_graph_epoch_tail.py).
class CudaPlanInstance final : public PlanInstance {
 public:
  CudaPlanInstance(const Device& device, std::vector<Command> commands, std::vector<PlanCopy> copies, Scratch& scratch)
      : device_(device), copies_(copies.size()) {
    const Driver& d = driver();
    device_.make_current();
    params_ = reinterpret_cast<CUdeviceptr>(scratch.allocate(8 * (kMaxPlanScalars + copies.size())));
    std::vector<std::pair<CUdeviceptr, size_t>> zeroed;
    auto next_context = [&] {
      prepared_.push_back(std::make_unique<CudaPrepared>(graph_words_));
      LaunchContext ctx{device_, graph_words_, scratch, *prepared_.back(), params_};
      ctx.zeroed = &zeroed;
      ctx.overlap = device_.overlap_kernels;
      return ctx;
    };
    auto add_copies = [&](bool into_plan) {
      for (size_t j = 0; j < copies.size(); ++j) {
        if (copies[j].into_plan != into_plan || copies[j].bytes == 0) continue;
        LaunchContext ctx = next_context();
        translate_bound_copy(reinterpret_cast<CUdeviceptr>(copies[j].slot), bound_word(j), into_plan, copies[j].bytes, ctx);
      }
    };
    add_copies(true);
    for (size_t i = 0; i < commands.size(); ++i) {
      LaunchContext ctx = next_context();
      if (i + 2 < commands.size() && translate_rope_updates(commands[i], commands[i + 1], commands[i + 2], ctx)) {
        i += 2;
        continue;
      }
      if (i + 1 < commands.size() && translate_update_pair(commands[i], commands[i + 1], ctx)) {
        ++i;
        continue;
      }
      translate(commands[i], ctx);
    }
    add_copies(false);
    lay_out_checks();
    for (const auto& [address, bytes] : zeroed) check(d.cuMemsetD8(address, 0, bytes), "zeroing a plan's counters");
    if (!zeroed.empty()) check(d.cuStreamSynchronize(nullptr), "zeroing a plan's counters");
    std::optional<std::string> error = capture();
    if (error && device_.overlap_kernels) {
      // A device or driver that cannot capture overlapping launches into a graph gets the same
      // graph with plain ones (each kernel waits for nothing more then).
      for (const auto& p : prepared_)
        for (StreamOp& op : p->ops) op.overlap = false;
      error = capture();
    }
    if (error) throw_error(LANES_ERR_DEVICE, "compiling a plan for " + device_.name + ": " + *error);
  }
  ~CudaPlanInstance() override {
    device_.make_current();  // for the graph and for graph_words_' memory
    if (exec_) driver().cuGraphExecDestroy(exec_);
  }

  bool copies_bound() const override { return true; }

  // Issued under the stream's op lock (an instance serves one stream): the scalars and copy
  // addresses that differ from the block's, then the graph. A word equal to the one last
  // written is left alone: the stream orders every write before the graphs that read it, so the
  // block still holds it. Replays of one input into an output the pool hands back each time
  // write nothing at all.
  std::optional<std::string> issue(CUstream stream, const double* scalars, int count, void* const* bound) {
    const Driver& d = driver();
    device_.make_current();
    auto write = [&](size_t word, uint64_t bits) -> CUresult {
      if (written_[word] && block_[word] == bits) return CUDA_SUCCESS;
      CUresult r = d.cuStreamWriteValue64(stream, params_ + 8 * static_cast<CUdeviceptr>(word), bits, 0);
      written_[word] = r == CUDA_SUCCESS;
      block_[word] = bits;
      return r;
    };
    for (int i = 0; i < count; ++i) {
      uint64_t bits;
      std::memcpy(&bits, &scalars[i], 8);
      if (CUresult r = write(static_cast<size_t>(i), bits); r != CUDA_SUCCESS) return "writing a plan's scalars: " + error_text(r);
    }
    for (size_t j = 0; j < copies_; ++j)
      if (CUresult r = write(kMaxPlanScalars + j, reinterpret_cast<uint64_t>(bound[j])); r != CUDA_SUCCESS)
        return "writing a plan's copy addresses: " + error_text(r);
    if (CUresult r = d.cuGraphLaunch(exec_, stream); r != CUDA_SUCCESS) return "cuGraphLaunch: " + error_text(r);
    return std::nullopt;
  }

  // Copies this replay's range-check words, in stream order behind its graph, into a host block
  // of its own (null when the plan has no checks), and adds each check, pointing into that
  // block, to `checks`. The block goes back to blocks() once the epoch completed.
  int* copy_checks(CUstream stream, std::vector<TakeCheck>& checks, std::optional<std::string>& error) const {
    if (check_runs_.empty()) return nullptr;
    int* block = nullptr;
    try {
      block = check_blocks_->take();
    } catch (const std::exception& e) {  // the graph runs already: the epoch must still hold its buffers
      error = std::string("a replay's range checks: ") + e.what();
      return nullptr;
    }
    for (const CheckRun& run : check_runs_)
      if (CUresult r = driver().cuMemcpyDtoHAsync(reinterpret_cast<char*>(block) + run.host_at, run.first, run.bytes, stream);
          r != CUDA_SUCCESS && !error)
        error = "copying a plan's range checks: " + error_text(r);
    size_t i = 0;
    for (const auto& p : prepared_)
      for (const TakeCheck& t : p->checks) {
        TakeCheck own = t;
        own.word = ErrorWords::Word{block + check_host_at_[i++] / sizeof(int), 0};
        checks.push_back(own);
      }
    return block;
  }
  const std::shared_ptr<HostBlocks>& blocks() const { return check_blocks_; }

 private:
  // Captures the prepared operations into a CUDA graph and instantiates it; what failed, if any.
  std::optional<std::string> capture() {
    const Driver& d = driver();
    CUstream stream = nullptr;
    check(d.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    CUgraph graph = nullptr;
    std::optional<std::string> error;
    CUresult r = d.cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_RELAXED);
    if (r != CUDA_SUCCESS) error = "cuStreamBeginCapture: " + error_text(r);
    // Each replay starts with its range-check words cleared.
    for (const CheckRun& run : check_runs_)
      if (CUresult m = d.cuMemsetD8Async(run.first, 0, run.bytes, stream); m != CUDA_SUCCESS && !error)
        error = "cuMemsetD8Async: " + error_text(m);
    for (const auto& p : prepared_)
      for (const StreamOp& op : p->ops)
        if (!error) error = op.issue(stream);
    if (r == CUDA_SUCCESS) {
      CUresult end = d.cuStreamEndCapture(stream, &graph);
      if (end != CUDA_SUCCESS && !error) error = "cuStreamEndCapture: " + error_text(end);
    }
    if (!error && graph) {
      CUresult inst = d.cuGraphInstantiateWithFlags(&exec_, graph, 0);
      if (inst != CUDA_SUCCESS) error = "cuGraphInstantiate: " + error_text(inst);
    }
    if (graph) d.cuGraphDestroy(graph);
    d.cuStreamDestroy(stream);
    return error;
  }

  CUdeviceptr bound_word(size_t j) const { return params_ + 8 * static_cast<CUdeviceptr>(kMaxPlanScalars + j); }

  // The checks' words in runs of consecutive device words (within one slab of graph_words_,
  // which hands out a slab's words in order), so a replay copies them out in one transfer per run.
  void lay_out_checks() {
    std::vector<CUdeviceptr> words;
    for (const auto& p : prepared_)
      for (const TakeCheck& t : p->checks) words.push_back(t.word.device);
    if (words.empty()) return;
    std::vector<CUdeviceptr> sorted = words;
    std::sort(sorted.begin(), sorted.end());
    constexpr size_t kWord = 2 * sizeof(int);
    size_t host_at = 0;
    for (CUdeviceptr w : sorted) {
      if (!check_runs_.empty() && check_runs_.back().first + check_runs_.back().bytes == w) {
        check_runs_.back().bytes += kWord;
      } else {
        check_runs_.push_back(CheckRun{w, kWord, host_at});
      }
      host_at += kWord;
    }
    for (CUdeviceptr w : words) {
      auto run = std::upper_bound(check_runs_.begin(), check_runs_.end(), w, [](CUdeviceptr x, const CheckRun& r) { return x < r.first; });
      --run;
      check_host_at_.push_back(run->host_at + (w - run->first));
    }
    check_blocks_ = std::make_shared<HostBlocks>(device_, host_at);
  }

  const Device& device_;
  ErrorWords graph_words_{ErrorWords::Memory::Device};  // outlives prepared_, which gives them back
  size_t copies_;
  CUdeviceptr params_ = 0;
  // What the stream last wrote to each word of the block (scalars, then copy addresses).
  std::vector<uint64_t> block_ = std::vector<uint64_t>(kMaxPlanScalars + copies_, 0);
  std::vector<bool> written_ = std::vector<bool>(kMaxPlanScalars + copies_, false);
  std::vector<std::unique_ptr<CudaPrepared>> prepared_;
  struct CheckRun {
    CUdeviceptr first;
    size_t bytes;
    size_t host_at;  // its offset in a replay's host block
  };
  std::vector<CheckRun> check_runs_;
  std::vector<size_t> check_host_at_;  // each check's word in a host block, in prepared_ order
  std::shared_ptr<HostBlocks> check_blocks_;
  CUgraphExec exec_ = nullptr;
};

class CudaCommandBuffer final : public CommandBuffer {
 public:
  CudaCommandBuffer(const Device& device, CUstream stream) : device_(device), stream_(stream) {}
  ~CudaCommandBuffer() override {
    for (auto& [blocks, block] : check_blocks_) blocks->give_back(block);
  }

  // A plan's range-check words are its graph's, cleared by each replay: the next replay may be
  // queued before this epoch's completion could read them, so each replay copies them out.
  void encode_plan(PlanInstance& instance, const double* scalars, int count, void* const* bound) override {
    auto& plan = static_cast<CudaPlanInstance&>(instance);
    if (error) return;
    error = plan.issue(stream_, scalars, count, bound);
    if (error) return;
    if (int* block = plan.copy_checks(stream_, replay_checks_, error)) check_blocks_.emplace_back(plan.blocks(), block);
  }

  void encode(Command&&, std::unique_ptr<Prepared> prepared) override {
    auto* p = static_cast<CudaPrepared*>(prepared.release());
    prepared_.emplace_back(p);
    if (error) return;  // the epoch failed already; its remaining work is not issued
    device_.make_current();
    for (const StreamOp& op : p->ops)
      if (auto e = op.issue(stream_)) {
        error = e;
        return;
      }
  }

  void encode_wait(Fence& other, uint64_t value) override {
    auto& fence = static_cast<CudaFence&>(other);
    device_.make_current();
    CUresult r = driver().cuStreamWaitValue64(stream_, fence.address_for(device_), value, CU_STREAM_WAIT_VALUE_GEQ);
    if (r != CUDA_SUCCESS && !error) error = "cuStreamWaitValue64: " + error_text(r);
  }

  // A take index out of range, reported by its kernel.
  std::optional<std::string> take_error() const {
    for (const auto& p : prepared_)
      if (auto e = take_error_of(*p)) return e;
    return gpu::first_range_error(replay_checks_);
  }

  std::optional<std::string> error;  // at issue time

 private:
  static std::optional<std::string> take_error_of(const CudaPrepared& p) { return gpu::first_range_error(p.checks); }

  const Device& device_;
  CUstream stream_;
  std::vector<std::unique_ptr<CudaPrepared>> prepared_;
  std::vector<TakeCheck> replay_checks_;  // each replay's, pointing into its host block
  std::vector<std::pair<std::shared_ptr<HostBlocks>, int*>> check_blocks_;
};

class CudaBackend;

class CudaQueue final : public Queue {
 public:
  CudaQueue(CudaBackend& backend, Device& device);
  ~CudaQueue() override;

  std::unique_ptr<CommandBuffer> new_command_buffer() override {
    return std::make_unique<CudaCommandBuffer>(device_, stream_);
  }
  std::shared_ptr<Fence> fence() override { return fence_; }
  std::function<bool()> progress() override {
    // Completions free memory (driver calls): the waiting thread needs the device's context.
    return [device = &device_] {
      device->make_current();
      return device->completions->progress();
    };
  }
  // A mark (a host function) queued now runs after everything committed so far: it reports
  // `value` promptly only when `value` is the last epoch committed. Behind later work (a step
  // queued ahead of the one read) it would report `value` only once that work is done too, and
  // the completion thread's reads of the counter word are hurried instead.
  std::function<void(uint64_t)> notify() override {
    return [marks = marks_, device = &device_, word = fence_->host_word()](uint64_t value) {
      std::lock_guard lock(marks->mutex);
      if (!marks->stream) return;
      if (value < marks->committed && value != marks->marked) {
        device->completions->hurry(word, value);
        return;
      }
      if (marks->marked >= marks->committed) return;
      device->make_current();
      void* mark = device->completions->new_mark(word, marks->committed);
      if (driver().cuLaunchHostFunc(marks->stream, &gpu::DeviceCompletions::arrive_through, mark) != CUDA_SUCCESS) {
        gpu::DeviceCompletions::discard_mark(mark);  // a dead context: the completion thread's poll reports it
        return;
      }
      marks->marked = marks->committed;
    };
  }
  void commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, Completion* done, Start) override;
  void debug_pause(bool paused) override;

 private:
  // What notify() needs, shared with it because it may run after the queue is gone.
  struct Marks {
    std::mutex mutex;  // held across a commit's stream writes, so `committed` follows the stream
    CUstream stream = nullptr;  // null once the queue is gone
    uint64_t committed = 0;  // the last epoch whose counter writes are on the stream
    uint64_t marked = 0;  // the last epoch a mark covers
  };

  CudaBackend& backend_;
  Device& device_;
  std::shared_ptr<CudaFence> fence_;
  std::shared_ptr<Marks> marks_ = std::make_shared<Marks>();
  CUstream stream_ = nullptr;
  // debug_pause: the stream waits on the device for a host-written word, so paused work still
  // sits in the CUDA stream in commit order (holding it back on the host could put another
  // stream's wait for it ahead of it in a shared hardware queue).
  std::vector<ErrorWords::Word> gates_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendSettings& settings) : settings_(settings) {
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
  // A matmul's epilogue runs in lanes' own matmul kernel, which a matmul alone takes at these
  // shapes too; a quantized product's in the matvec kernel, or over the dense path's product.
  bool matmul_epilogue(OpCode op, int64_t M, int64_t N, int64_t K) const override {
    if (op == OpCode::QuantizedMatmul) return true;
    return small_matmul(M, N, K, DType::Float32) || !settings_.cuda_cublaslt;
  }
  bool slice_update_casts() const override { return true; }
  // The matvec stages a row per 32 threads, as the norm kernel takes rows of 32 to 1023.
  bool matmul_norm_prologue(int64_t M, int64_t K) const override { return M <= kMatvecRows && gpu::group_for(K, 1) == 32; }
  // The matvec's warp sums both columns of a pair over one staged tile of activations, in the
  // build for warps of at most two pairs (4 blocks of 8 warps per SM; the launch's blocks of
  // kMatvecFewWarps warps leave fewer pairs a warp still).
  bool matmul_pair_epilogue(int64_t M, int64_t N, int64_t K) const override {
    int sms = devices_.front()->sm_count;
    for (const auto& d : devices_) sms = std::min(sms, d->sm_count);
    return M <= kMatvecRows && K <= kMatvecPairColumns && N <= int64_t(sms) * 4 * 8 * 2;
  }

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
    if (bytes > ReadBlocks::kBytes || settings_.cuda_read_wait) return nullptr;
    devices_[0]->make_current();
    return read_blocks_.take();
  }
  void download(void* dst, const void* src, size_t bytes) override {
    devices_[0]->make_current();
    if (bytes >= kStagedCopyBytes) return staging_.download(dst, reinterpret_cast<CUdeviceptr>(src), bytes);
    check(driver().cuMemcpyDtoH(dst, reinterpret_cast<CUdeviceptr>(src), bytes), "copy from the device");
  }

  std::unique_ptr<Prepared> prepare(const Command& command, int device_index, Scratch& scratch) override {
    Device& device = *devices_.at(device_index);
    device.make_current();
    auto prepared = std::make_unique<CudaPrepared>(error_words_);
    LaunchContext ctx{device, error_words_, scratch, *prepared};
    translate(command, ctx);
    return prepared;
  }

  std::unique_ptr<PlanInstance> instantiate(std::vector<Command> commands, std::vector<PlanCopy> copies, int device_index,
                                            Scratch& scratch) override {
    return std::make_unique<CudaPlanInstance>(*devices_.at(device_index), std::move(commands), std::move(copies), scratch);
  }

  std::unique_ptr<Queue> new_queue(int device_index) override {
    if (device_index > 0 && !peer_access_)
      throw_error(LANES_ERR_DEVICE, "cuda: streams on device " + std::to_string(device_index) +
                                        " need peer access between the GPUs, which the driver does not offer here");
    return std::make_unique<CudaQueue>(*this, *devices_.at(device_index));
  }

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
    dev->modules = std::make_unique<Modules>(dev->cc_major, dev->cc_minor, settings_.cache_dir);
    dev->modules->prefetch([](const void* p) { static_cast<const Device*>(p)->make_current(); }, dev.get());
    size_t free_bytes = 0, total_bytes = 0;
    if (index == 0 && d.cuMemGetInfo(&free_bytes, &total_bytes) == CUDA_SUCCESS)
      cached_limit_ = std::max<uint64_t>(cached_limit_, total_bytes / 4);
    dev->tf32 = settings_.cuda_tf32;
    dev->use_cublaslt = settings_.cuda_cublaslt;
    dev->algo_index = settings_.cuda_algo_index;
    dev->read_by_copy = settings_.cuda_read_copy;
    // Graphs keep overlapping launches from CUDA 12.3 on.
    int driver_version = 0;
    dev->overlap_kernels = settings_.cuda_overlap && dev->cc_major >= 9 && d.cuLaunchKernelEx &&
                           d.cuDriverGetVersion(&driver_version) == CUDA_SUCCESS && driver_version >= 12030;
    if (const CublasLt* lt = cublaslt(); lt && dev->use_cublaslt)
      if (lt->cublasLtCreate(&dev->cublaslt_handle) != 0) dev->cublaslt_handle = nullptr;
    // An idle stream of its own: querying it answers at once, and fails once the context died.
    check(d.cuStreamCreate(&dev->probe, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    Device* raw = dev.get();
    dev->completions = std::make_unique<gpu::DeviceCompletions>(
        [raw]() -> std::optional<std::string> {
          CUresult r = driver().cuStreamQuery(raw->probe);
          if (r == CUDA_SUCCESS || r == CUDA_ERROR_NOT_READY) return std::nullopt;
          return "the CUDA context failed (" + error_text(r) + "); restart the process to use the GPU again";
        },
        [raw] { raw->make_current(); });
    return dev;
  }

  static constexpr size_t kStagedCopyBytes = size_t(1) << 20;
  const BackendSettings settings_;
  std::vector<std::unique_ptr<Device>> devices_;
  Staging staging_;
  ReadBlocks read_blocks_;
  bool peer_access_ = true;
  uint64_t cached_limit_ = uint64_t(1) << 30;
  ErrorWords error_words_;
};

// ---- queue ---------------------------------------------------------------------------------

CudaQueue::CudaQueue(CudaBackend& backend, Device& device)
    : backend_(backend), device_(device), fence_(std::make_shared<CudaFence>(device, backend.error_words())) {
  device_.make_current();
  check(driver().cuStreamCreate(&stream_, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  marks_->stream = stream_;
}

CudaQueue::~CudaQueue() {
  device_.make_current();
  for (ErrorWords::Word& gate : gates_) reinterpret_cast<volatile uint64_t*>(gate.host)[0] = 1;
  {
    std::lock_guard lock(marks_->mutex);
    marks_->stream = nullptr;
  }
  driver().cuStreamSynchronize(stream_);  // gates opened: nothing still reads them; marks ran
  for (ErrorWords::Word& gate : gates_) backend_.error_words().give_back(gate);
  driver().cuStreamDestroy(stream_);
}

void CudaQueue::commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, Completion* done, Start) {
  std::shared_ptr<CudaCommandBuffer> b(static_cast<CudaCommandBuffer*>(buffer.release()));
  const Driver& d = driver();
  device_.make_current();
  void* item = device_.completions->expect(
      [b, done](const std::optional<std::string>& lost) mutable {
        std::optional<std::string> error = b->error ? b->error : lost ? lost : b->take_error();
        b.reset();  // error words back before the core finishes (it may free this queue)
        done->complete(error ? error->c_str() : nullptr);
      },
      fence_->host_word(), sequence, /*callback=*/false);
  // Always signal, so other streams' waits and the completion thread move on. The host mirror
  // is written last: with the write's memory barrier, a thread that reads it sees the epoch's
  // results, error words and staged reads.
  std::lock_guard lock(marks_->mutex);
  CUresult r = d.cuStreamWriteValue64(stream_, fence_->address(), sequence, 0);
  if (r == CUDA_SUCCESS) r = d.cuStreamWriteValue64(stream_, fence_->mirror(), sequence, 0);
  if (r != CUDA_SUCCESS) {
    if (!b->error) b->error = "CUDA stream: " + error_text(r);
    device_.completions->settle(item);
    return;
  }
  marks_->committed = sequence;
}

void CudaQueue::debug_pause(bool paused) {
  if (paused) {
    device_.make_current();
    ErrorWords::Word gate = backend_.error_words().take();  // zeroed
    check(driver().cuStreamWaitValue64(stream_, gate.device, 1, CU_STREAM_WAIT_VALUE_GEQ), "pausing a stream");
    gates_.push_back(gate);
    return;
  }
  for (ErrorWords::Word& gate : gates_) reinterpret_cast<volatile uint64_t*>(gate.host)[0] = 1;
}

}  // namespace

// ---- shared pieces -------------------------------------------------------------------------

void Device::make_current() const {
  if (t_current == context) return;
  check(driver().cuCtxSetCurrent(context), "cuCtxSetCurrent");
  t_current = context;
}

std::optional<std::string> StreamOp::issue(CUstream stream) const {
  if (call) return call(stream);
  CUresult r;
  if (host_dst) {
    r = driver().cuMemcpyDtoHAsync(host_dst, src, bytes, stream);
    if (r != CUDA_SUCCESS) return "copy from the device: " + error_text(r);
    return std::nullopt;
  }
  void* params[32];
  size_t n = std::min<size_t>(offsets.size(), 32);
  for (size_t i = 0; i < n; ++i) params[i] = const_cast<unsigned char*>(args.data()) + offsets[i];
  if (overlap) {
    CUlaunchAttribute attribute{};
    attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmatic_stream_serialization_allowed = 1;
    CUlaunchConfig config{grid[0], grid[1], grid[2], block, 1, 1, shared, stream, &attribute, 1};
    r = driver().cuLaunchKernelEx(&config, function, params, nullptr);
  } else {
    r = driver().cuLaunchKernel(function, grid[0], grid[1], grid[2], block, 1, 1, shared, stream, params, nullptr);
  }
  if (r != CUDA_SUCCESS) return "kernel launch: " + error_text(r);
  return std::nullopt;
}

ErrorWords::~ErrorWords() {
  for (CUdeviceptr slab : device_slabs_) driver().cuMemFree(slab);
}

ErrorWords::Word ErrorWords::take() {
  std::lock_guard lock(mutex_);
  if (free_.empty() && memory_ == Memory::Device) {
    constexpr int kWords = 256;
    CUdeviceptr dev = 0;
    // One word more than handed out: two slabs' words are never consecutive, so a plan's runs
    // of consecutive words (CudaPlanInstance::lay_out_checks) never span two allocations.
    check(driver().cuMemAlloc(&dev, (kWords + 1) * 2 * sizeof(int)), "allocating error words");
    device_slabs_.push_back(dev);
    for (int i = kWords - 1; i >= 0; --i) free_.push_back(Word{nullptr, dev + 2 * i * sizeof(int)});
  }
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
  if (w.host) {
    w.host[0] = 0;
    w.host[1] = 0;
  }
  return w;
}

void ErrorWords::give_back(Word w) {
  std::lock_guard lock(mutex_);
  free_.push_back(w);
}

}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(const BackendSettings& settings) { return std::make_unique<cuda::CudaBackend>(settings); }

}  // namespace lanes
