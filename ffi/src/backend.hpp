// The backend interface: the small surface every device translates (CPU, CUDA, Metal). A
// backend sees this header and the vocabulary (dtypes, shapes, status codes, the op table)
// only; streams, epochs, timelines, memory pools and the graph live above it in the core.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "command.hpp"

namespace lanes {

// The environment switches that concern a backend, read once with the core's own
// (ffi/src/config.hpp, which the README lists) and handed to the backend when it is made.
struct BackendSettings {
  // LANES_CPU_SIMD: "scalar", "avx2" or "avx512" caps the CPU kernels' instruction set (tests
  // force each path); empty: the best this CPU has.
  std::string cpu_simd;
  // LANES_CPU_QUANT_SUM: "block" or "lane" picks how the quantized matmul sums (cpu/quant.cpp);
  // empty: as llama.cpp does on this CPU.
  std::string cpu_quant_sum;
  // LANES_CPU_LLAMA_BUILD: "avx512" or "avx2" picks whose arithmetic the kernels that follow
  // llama.cpp reproduce (cpu/cpu_features.hpp); empty: the build llama.cpp loads on this CPU.
  std::string cpu_llama_build;
  // LANES_CPU_THREADS: threads of the CPU compute pool, the caller included (1 to 1024; 1 runs
  // every job on its caller). 0 (unset or out of range): one per hardware thread.
  int cpu_threads = 0;
  // LANES_CACHE_DIR: compiled CUDA kernels (default $XDG_CACHE_HOME/lanes or ~/.cache/lanes).
  std::string cache_dir;
  // LANES_CUDA_TF32=1: float32 matmul may use TF32 tensor cores.
  bool cuda_tf32 = false;
  // LANES_CUDA_CUBLASLT=0: lanes' own matmul kernel instead of cuBLASLt.
  bool cuda_cublaslt = true;
  // LANES_CUDA_ALGO_INDEX=k: cuBLASLt's k-th candidate algorithm (default 0, its first choice).
  int cuda_algo_index = 0;
  // LANES_CUDA_READ=wait: a read of work in flight waits for it, then copies (instead of a copy
  // queued on the stream behind the kernels).
  bool cuda_read_wait = false;
  // LANES_CUDA_READ=copy: a small read is a copy engine's transfer instead of a copy kernel that
  // writes the host memory.
  bool cuda_read_copy = false;
  // LANES_CUDA_OVERLAP=0: a compiled plan's kernels start only once the one before completed
  // (else each may start while its predecessor finishes; sm_90 on).
  bool cuda_overlap = true;
};

// Brief spinning before a sleep, for waits on a device or a pool. A wait that ends within
// microseconds is cheaper to catch spinning than through a futex: the wake costs the signalling
// thread and the waiter several microseconds each.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until `done()` or until `budget` has passed; returns `done()`. The core is yielded
// between short bursts: with more busy threads than cores (a stream's executor, the thread
// that commits its next work and waits for it, pool threads, other processes), the thread this
// one waits for may be queued on this very core, and a spin that kept the core would delay it
// by the whole spin.
template <class Done>
bool spin_until(Done&& done, std::chrono::nanoseconds budget) {
  auto until = std::chrono::steady_clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= until) return done();
    std::this_thread::yield();
  }
}

// A queue's timeline as the device sees it, owned by the backend: other queues make their
// work wait until it reaches a value (a device counter on CUDA, a shared event on Metal, an
// atomic on the CPU). The core holds it while any wait on it may still read it.
class Fence {
 public:
  virtual ~Fence() = default;
};

// Device scratch for one command, from the stream's memory pool; the core keeps it until the
// command's epoch completed.
class Scratch {
 public:
  virtual void* allocate(size_t bytes) = 0;

 protected:
  ~Scratch() = default;
};

// A command translated for the device (kernel choice, launch shape, argument block), built
// before the stream's op lock is taken.
class Prepared {
 public:
  virtual ~Prepared() = default;
};

// A copy a plan replay makes between a caller's array and the plan's own memory: an input's
// bytes into its slot before the plan's commands, or an output's out of its slot after them.
struct PlanCopy {
  bool into_plan;
  void* slot;
  size_t bytes;
};

// A compiled plan's commands with their memory fixed, for one stream: a backend may translate
// them once (CUDA: one graph) and replay them with each call's scalar parameters.
class PlanInstance {
 public:
  virtual ~PlanInstance() = default;
  // Whether the instance makes instantiate's `copies` itself, between its slots and the
  // addresses each replay passes to encode_plan (`bound`, in the same order). Otherwise the
  // core encodes them as commands around the replay.
  virtual bool copies_bound() const { return false; }
};

// Commands recorded for one submission epoch. Only touched under its stream's op lock; nothing
// here may wait on the device.
class CommandBuffer {
 public:
  virtual ~CommandBuffer() = default;
  // `prepared` is what Backend::prepare returned for `command` (may be null).
  virtual void encode(Command&& command, std::unique_ptr<Prepared> prepared) = 0;
  // Makes later commands wait until `other` reaches `value` (a cross-stream dependency).
  virtual void encode_wait(Fence& other, uint64_t value) = 0;
  // Replays `instance`: each scalar bound to plan parameter i (OpParams::dynamic) takes
  // scalars[i]; `bound` holds the callers' addresses of the instance's copies (see
  // PlanInstance::copies_bound), or is null.
  virtual void encode_plan(PlanInstance& instance, const double* scalars, int count, void* const* bound) = 0;
};

// How a backend reports a committed buffer: exactly once, with null when every command ran or
// with why it failed. Called on the device's completion path, never under an op lock, and
// never from inside a driver callback that forbids driver calls.
class Completion {
 public:
  virtual void complete(const char* error) noexcept = 0;

 protected:
  ~Completion() = default;
};

// When committed work starts. A device starts it at once either way; a queue that runs on host
// threads (the CPU) may leave OnDemand work for the thread that commits it, which is about to
// wait for it or to evaluate what it produces: that thread then runs it in progress(), with no
// hand-off to another thread, unless notify() or a wait on the queue's fence asks for it first.
enum class Start : uint8_t { Now, OnDemand };

// One device queue per stream.
class Queue {
 public:
  virtual ~Queue() = default;
  virtual std::unique_ptr<CommandBuffer> new_command_buffer() = 0;
  // `sequence` is the epoch's timeline value, consecutive from 1: the queue's fence reaches it
  // once the buffer's work ran (failed or not), and then `done` is called. Never throws: a
  // failure to submit is reported through `done`.
  virtual void commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, Completion* done, Start start) = 0;
  virtual std::shared_ptr<Fence> fence() = 0;
  // What a thread waiting for this queue's work calls: it does, on that thread, what it can of
  // that work (the CPU: runs the next committed buffer if no other thread runs one; a GPU: the
  // completions of work the device already finished, see gpu::DeviceCompletions), and returns
  // whether it did anything. It may be called after the queue is gone, so it holds only what
  // outlives queues. Empty: nothing to do, completions come from the backend's own threads.
  virtual std::function<bool()> progress() { return {}; }
  // How long a waiter keeps calling progress() once it does nothing, before it sleeps: long
  // where a wake-up costs more than a small graph's whole run (a GPU), short where the waiter
  // would take a core from the thread it waits for (the CPU).
  virtual std::chrono::microseconds progress_spin() const { return std::chrono::microseconds(300); }
  // What a thread calls before it sleeps waiting for this queue's epoch `value`, or when it
  // leaves a callback for it: a queue whose epochs do not all report on their own (see
  // CudaQueue) then has that epoch report as soon as it finished, and OnDemand work starts.
  // Safe after the queue is gone, like progress(). Empty: every epoch reports.
  virtual std::function<void(uint64_t value)> notify() { return {}; }
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
  // Host translation of `command` for a stream on `device`, outside the stream's op lock.
  // Null: encoded as it is.
  virtual std::unique_ptr<Prepared> prepare(const Command& command, int device, Scratch& scratch) { return nullptr; }
  // An instance of a compiled plan's `commands` for streams on `device`. Their memory stays
  // put while the instance lives; `scratch` is kept as long. `copies`: what each replay copies
  // in and out, which the instance may make itself (PlanInstance::copies_bound).
  // Whether a compiled plan may give this float32 product (`op` Matmul or QuantizedMatmul; M x K
  // by K x N, M counting every row of any batch for QuantizedMatmul) an epilogue: the
  // elementwise chain that alone reads its product, as the same command with OpParams::fused
  // set (see epilogue_command). Only where the backend computes the product exactly as it does
  // for the same op alone, so the result keeps eager's bits.
  virtual bool matmul_epilogue(OpCode op, int64_t M, int64_t N, int64_t K) const { return false; }
  // Whether a compiled plan may fold a float32 rmsNorm with a weight, over rows of K, into the
  // QuantizedMatmul of M rows that alone reads it (see kNormPrologue). Only where the backend
  // normalizes the rows exactly as the norm alone does.
  virtual bool matmul_norm_prologue(int64_t M, int64_t K) const { return false; }
  // Whether a compiled plan may give a QuantizedMatmul of M rows, K features and 2 * N weight
  // rows a gated pair epilogue (see kPairEpilogue), with or without a norm prologue. Only where
  // each half's sums keep the bits the product alone has.
  virtual bool matmul_pair_epilogue(int64_t M, int64_t N, int64_t K) const { return false; }
  // Whether a compiled plan may give a SliceUpdate (one offset for all rows) an update of
  // another float dtype, which the backend casts as astype does while it copies.
  virtual bool slice_update_casts() const { return false; }
  virtual std::unique_ptr<PlanInstance> instantiate(std::vector<Command> commands, std::vector<PlanCopy> copies, int device,
                                                    Scratch& scratch) = 0;
  virtual std::unique_ptr<Queue> new_queue(int device) = 0;
  // Output bytes after which an open epoch is committed by default. Each commit costs the
  // device a completion signal, so GPUs take larger epochs than the CPU.
  virtual uint64_t default_epoch_bytes() const { return uint64_t(64) << 20; }
  virtual uint32_t default_epoch_ops() const { return 64; }
  // How many freed bytes may stay cached for reuse.
  virtual uint64_t max_cached_bytes() const { return uint64_t(1) << 30; }
};

std::unique_ptr<Backend> make_cpu_backend(const BackendSettings& settings);
// Throws a device error when there is no usable NVIDIA GPU, driver or NVRTC.
std::unique_ptr<Backend> make_cuda_backend(const BackendSettings& settings);
// macOS only. Throws a device error when there is no Metal device.
std::unique_ptr<Backend> make_metal_backend(const BackendSettings& settings);

}  // namespace lanes
