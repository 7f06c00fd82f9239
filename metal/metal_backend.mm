// The Metal backend: one MTLCommandQueue and one MTLSharedEvent (its Fence) per lanes stream.
//
// Commands are translated before the op lock (prepare: launch.mm records each command's
// dispatches); under it, a command buffer only replays the records into its compute encoder.
// Cross-stream dependencies end the encoder and encodeWaitForEvent:value: on the producer's
// event. Commit ends the encoder, encodeSignalEvent:value: with the epoch's sequence, adds a
// completed handler and commits. The handler only hands the epoch to the device's completion
// thread (gpu::DeviceCompletions), which reads the command buffer's status and the take
// kernels' error words and reports to the core; it never takes an op lock and never throws. A
// failed command buffer may never reach its encodeSignalEvent, so the completion raises the
// event to that sequence by hand before it reports: no other stream's wait hangs on it.
//
// Compiled plans: an instance is the plan's commands recorded once. A replay encodes the records
// into the epoch's command buffer; scalars bound to plan parameters are written into each
// dispatch's parameter block at encode time and passed with setBytes, which copies them into
// the command buffer there and then. So a replay never shares a parameter block with an earlier
// replay still in flight (a shared MTLBuffer written by the CPU at encode time would be
// overwritten before that replay ran), and it needs no extra buffer. Take kernels likewise get
// a fresh error word per replay.
//
// Written against Apple's documented Metal API. CI compiles and links it for macOS on Linux
// (docs/METAL.md); only the macOS workflow (.github/workflows/macos.yml) can run it.
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <optional>

#include "../ffi/src/backend.hpp"
#include "../ffi/src/gpu/kernel_layout.hpp"
#include "../ffi/src/status.hpp"
#include "kernel_source.hpp"
#include "metal_device.hpp"

// Errors beyond the project's flags, for this file's own code (not the headers above): nil where
// an API wants an object, and signed sizes and indices.
#pragma clang diagnostic error "-Wnullable-to-nonnull-conversion"
#pragma clang diagnostic error "-Wsign-conversion"

namespace lanes {
namespace metal {
namespace {

std::string describe(NSError* error) {
  const char* text = error ? [[error localizedDescription] UTF8String] : nullptr;
  return text ? std::string(text) : std::string("unknown Metal error");
}

// IEEE float semantics and precise math functions, like the other backends. The macOS 15 SDK
// replaces fastMathEnabled (deprecated there) with mathMode and mathFloatingPointFunctions.
void use_ieee_math(MTLCompileOptions* options) {
#if defined(__MAC_15_0) && __MAC_OS_X_VERSION_MAX_ALLOWED >= __MAC_15_0
  if (@available(macOS 15.0, *)) {
    options.mathMode = MTLMathModeSafe;
    options.mathFloatingPointFunctions = MTLMathFloatingPointFunctionsPrecise;
    return;
  }
#endif
#if !defined(__MAC_15_0) || __MAC_OS_X_VERSION_MIN_REQUIRED < __MAC_15_0
  options.fastMathEnabled = NO;
#endif
}

constexpr NSUInteger kMaxEpochsInFlight = 1024;

// A queue's timeline as other queues wait on it.
class MetalFence final : public Fence {
 public:
  explicit MetalFence(id<MTLSharedEvent> e) : event(e) {}
  id<MTLSharedEvent> event;
};

// A compiled plan's commands recorded once for the device; replays encode the records.
class MetalPlanInstance final : public PlanInstance {
 public:
  explicit MetalPlanInstance(ErrorWords& words) : recorded(words) {}
  MetalPrepared recorded;  // takes no error words: each replay takes its own
};

class MetalCommandBuffer final : public CommandBuffer {
 public:
  MetalCommandBuffer(const Device& device, id<MTLCommandQueue> queue, id<MTLSharedEvent> gate, uint64_t gate_value)
      : device_(device), buffer_([queue commandBufferWithUnretainedReferences]) {
    if (gate_value) [buffer_ encodeWaitForEvent:gate value:gate_value];
  }
  ~MetalCommandBuffer() override {
    for (const TakeCheck& t : replay_checks_) device_.error_words->give_back(t.word);
  }

  void encode(Command&& command, std::unique_ptr<Prepared> prepared) override {
    auto* p = static_cast<MetalPrepared*>(prepared.release());
    if (!p) {
      error = std::string("metal: ") + op_name(command.op, command.params.subop) + " was not prepared";
      return;
    }
    prepared_.emplace_back(p);  // keeps its buffers and error words until the epoch completed
    if (error) return;          // the epoch failed already; its remaining work is not encoded
    try {
      @autoreleasepool {
        id<MTLComputeCommandEncoder> e = encoder();
        for (const Dispatch& d : p->ops) encode_dispatch(e, d, nullptr, 0, nullptr);
      }
    } catch (const std::exception& e) {
      error = std::string(op_name(command.op, command.params.subop)) + ": " + e.what();
    }
  }

  void encode_wait(Fence& other, uint64_t value) override {
    auto& fence = static_cast<MetalFence&>(other);
    end_encoder();
    [buffer_ encodeWaitForEvent:fence.event value:value];
    waited_.push_back(fence.event);
  }

  void encode_plan(PlanInstance& instance, const double* scalars, int count, void* const*) override {
    auto& plan = static_cast<MetalPlanInstance&>(instance);  // the core holds it until this epoch completed
    if (error) return;
    try {
      @autoreleasepool {
        id<MTLComputeCommandEncoder> e = encoder();
        for (const Dispatch& d : plan.recorded.ops) {
          const ErrorWords::Word* word = nullptr;
          if (d.take) {
            replay_checks_.push_back(TakeCheck{device_.error_words->take(), d.take->axis, d.take->dim, d.take->what});
            word = &replay_checks_.back().word;
          }
          encode_dispatch(e, d, scalars, count, word);
        }
      }
    } catch (const std::exception& e) {
      error = std::string("compiled plan: ") + e.what();
    }
  }

  // Ends encoding; returns the command buffer to commit.
  id<MTLCommandBuffer> finish() {
    end_encoder();
    return buffer_;
  }

  // A take index out of range, reported by its kernel (read once the buffer completed).
  std::optional<std::string> take_error() const {
    for (const auto& p : prepared_)
      if (auto e = gpu::first_range_error(p->checks)) return e;
    return gpu::first_range_error(replay_checks_);
  }

  std::optional<std::string> error;  // at encode time

 private:
  id<MTLComputeCommandEncoder> encoder() {
    if (!encoder_) encoder_ = [buffer_ computeCommandEncoder];
    if (!encoder_) throw_error(LANES_ERR_DEVICE, "metal: could not create a compute encoder");
    return encoder_;
  }
  void end_encoder() {
    if (!encoder_) return;
    [encoder_ endEncoding];
    encoder_ = nil;
  }

  const Device& device_;
  id<MTLCommandBuffer> buffer_;
  id<MTLComputeCommandEncoder> encoder_ = nil;
  std::vector<std::unique_ptr<MetalPrepared>> prepared_;
  std::deque<TakeCheck> replay_checks_;  // a deque: encode_dispatch holds a pointer into it
  std::vector<id<MTLSharedEvent>> waited_;  // held until completion (the buffer holds no references)
};

class MetalQueue final : public Queue {
 public:
  explicit MetalQueue(const Device& device) : device_(device) {
    // A queue lets this many command buffers exist uncompleted; making one more blocks, and
    // new_command_buffer runs under the op lock. newCommandQueue's default is 64.
    queue_ = [device.device newCommandQueueWithMaxCommandBufferCount:kMaxEpochsInFlight];
    id<MTLSharedEvent> event = [device.device newSharedEvent];
    gate_ = [device.device newSharedEvent];
    if (!queue_ || !event || !gate_) throw_error(LANES_ERR_DEVICE, "metal: could not create a command queue");
    fence_ = std::make_shared<MetalFence>(event);
  }
  ~MetalQueue() override {
    gate_.signaledValue = gate_value_.load();  // paused work, if any, may finish
  }

  std::unique_ptr<CommandBuffer> new_command_buffer() override {
    uint64_t gate = gate_value_.load();
    return std::make_unique<MetalCommandBuffer>(device_, queue_, gate_, gate > gate_.signaledValue ? gate : 0);
  }
  std::shared_ptr<Fence> fence() override { return fence_; }
  void commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, Completion* done, Start) override;
  // Epochs opened while paused begin by waiting for the gate event, which resuming raises.
  void debug_pause(bool paused) override {
    if (paused) gate_value_.fetch_add(1);
    else gate_.signaledValue = gate_value_.load();
  }

 private:
  const Device& device_;
  id<MTLCommandQueue> queue_;
  std::shared_ptr<MetalFence> fence_;
  id<MTLSharedEvent> gate_;
  std::atomic<uint64_t> gate_value_{0};
};

void MetalQueue::commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, Completion* done, Start) {
  @autoreleasepool {
    std::shared_ptr<MetalCommandBuffer> b(static_cast<MetalCommandBuffer*>(buffer.release()));
    id<MTLCommandBuffer> cb = b->finish();
    id<MTLSharedEvent> event = fence_->event;
    // Always signal, so other streams' waits and the completion thread move on.
    [cb encodeSignalEvent:event value:sequence];
    void* token = device_.completions->expect([b, cb, event, sequence, done](const std::optional<std::string>& lost) mutable {
      @autoreleasepool {
        std::optional<std::string> error = b->error;
        if (!error && lost) error = lost;
        if (!error && cb.status == MTLCommandBufferStatusError) error = "Metal command buffer failed: " + describe(cb.error);
        if (!error) error = b->take_error();
        if (error && event.signaledValue < sequence) event.signaledValue = sequence;  // release waiters
        b.reset();  // buffers and error words back before the core finishes (it may free this queue)
        done->complete(error ? error->c_str() : nullptr);
      }
    });
    // On Metal's own thread: no Metal call and no lock that is ever held across one.
    [cb addCompletedHandler:^(id<MTLCommandBuffer> finished) {
      gpu::DeviceCompletions::arrive(token);
    }];
    [cb commit];
  }
}

class MetalBackend final : public Backend {
 public:
  MetalBackend() {
    id<MTLDevice> device = MTLCreateSystemDefaultDevice();
    if (!device) throw_error(LANES_ERR_DEVICE, "LANES_BACKEND=metal: no Metal device on this machine");
    buffers_ = std::make_unique<BufferTable>();
    pipelines_ = std::make_unique<Pipelines>(device);
    error_words_ = std::make_unique<ErrorWords>(device);
    // Metal reports a lost device through command buffer errors, so there is nothing to poll.
    completions_ = std::make_unique<gpu::DeviceCompletions>([]() -> std::optional<std::string> { return std::nullopt; }, nullptr);
    device_ = Device{device, buffers_.get(), pipelines_.get(), error_words_.get(), completions_.get(),
                     [device supportsFamily:MTLGPUFamilyApple7]};
  }

  const char* name() const override { return "metal"; }

  void* allocate(size_t bytes, int) override {
    id<MTLBuffer> b = [device_.device newBufferWithLength:bytes options:MTLResourceStorageModeShared];
    if (!b) return nullptr;
    void* contents = [b contents];
    buffers_->add(contents, b);
    return contents;
  }
  void deallocate(void* data, size_t, int) override { buffers_->remove(data); }
  // Unified memory: the CPU writes and reads shared buffers directly.
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }

  std::unique_ptr<Prepared> prepare(const Command& command, int, Scratch& scratch) override {
    @autoreleasepool {
      auto prepared = std::make_unique<MetalPrepared>(*error_words_);
      RecordContext ctx{device_, scratch, *prepared};
      record(command, ctx);
      return prepared;
    }
  }

  std::unique_ptr<PlanInstance> instantiate(std::vector<Command> commands, std::vector<PlanCopy>, int, Scratch& scratch) override {
    @autoreleasepool {
      auto instance = std::make_unique<MetalPlanInstance>(*error_words_);
      RecordContext ctx{device_, scratch, instance->recorded, true};
      for (const Command& c : commands) record(c, ctx);
      return instance;
    }
  }

  std::unique_ptr<Queue> new_queue(int) override { return std::make_unique<MetalQueue>(device_); }

  // MLX's defaults for Apple GPUs: epochs of about 40 ops and 40 MB.
  uint64_t default_epoch_bytes() const override { return uint64_t(40) << 20; }
  uint32_t default_epoch_ops() const override { return 40; }

 private:
  std::unique_ptr<BufferTable> buffers_;
  std::unique_ptr<Pipelines> pipelines_;
  std::unique_ptr<ErrorWords> error_words_;
  std::unique_ptr<gpu::DeviceCompletions> completions_;
  Device device_{};
};

}  // namespace

// ---- shared pieces -----------------------------------------------------------------------------

void BufferTable::add(void* contents, id<MTLBuffer> buffer) {
  std::unique_lock lock(mutex_);
  buffers_[reinterpret_cast<uintptr_t>(contents)] = Entry{buffer, [buffer length]};
}

void BufferTable::remove(void* contents) {
  std::unique_lock lock(mutex_);
  buffers_.erase(reinterpret_cast<uintptr_t>(contents));
}

id<MTLBuffer> BufferTable::find(const void* address, NSUInteger& offset) {
  auto at = reinterpret_cast<uintptr_t>(address);
  std::shared_lock lock(mutex_);
  auto it = buffers_.upper_bound(at);  // the first buffer starting after `address`
  if (it == buffers_.begin()) return nil;
  --it;
  if (at - it->first >= it->second.length) return nil;
  offset = at - it->first;
  return it->second.buffer;
}

id<MTLComputePipelineState> Pipelines::get(const std::string& name) {
  {
    std::shared_lock lock(mutex_);
    if (auto it = pipelines_.find(name); it != pipelines_.end()) return it->second;
  }
  id<MTLLibrary> library;
  {
    std::lock_guard lock(library_mutex_);
    if (!library_) {
      NSString* source = [NSString stringWithUTF8String:kernel_source().c_str()];
      if (!source) throw_error(LANES_ERR_INTERNAL, "metal: the kernel source is not UTF-8");
      MTLCompileOptions* options = [MTLCompileOptions new];
      use_ieee_math(options);
      NSError* error = nil;
      library_ = [device_ newLibraryWithSource:source options:options error:&error];
      if (!library_) throw_error(LANES_ERR_DEVICE, "Metal could not compile lanes' kernels: " + describe(error));
    }
    library = library_;
  }
  NSString* function_name = [NSString stringWithUTF8String:name.c_str()];
  if (!function_name) throw_error(LANES_ERR_INTERNAL, "metal: kernel name " + name + " is not UTF-8");
  id<MTLFunction> fn = [library newFunctionWithName:function_name];
  if (!fn) throw_error(LANES_ERR_INTERNAL, "metal: no kernel named " + name);
  NSError* error = nil;
  id<MTLComputePipelineState> pipeline = [device_ newComputePipelineStateWithFunction:fn error:&error];
  if (!pipeline) throw_error(LANES_ERR_DEVICE, "metal: pipeline " + name + ": " + describe(error));
  std::unique_lock lock(mutex_);  // insert only under the exclusive lock
  return pipelines_.emplace(name, pipeline).first->second;
}

ErrorWords::Word ErrorWords::take() {
  std::lock_guard lock(mutex_);
  if (free_.empty()) {
    constexpr NSUInteger kWords = 1024;
    id<MTLBuffer> slab = [device_ newBufferWithLength:kWords * 2 * sizeof(int) options:MTLResourceStorageModeShared];
    if (!slab) throw_error(LANES_ERR_OUT_OF_MEMORY, "metal: could not allocate error words");
    for (NSUInteger i = kWords; i-- > 0;)
      free_.push_back(Word{slab, i * 2 * sizeof(int), static_cast<int*>([slab contents]) + 2 * i});
  }
  Word w = free_.back();
  free_.pop_back();
  w.host[0] = 0;
  w.host[1] = 0;
  return w;
}

void ErrorWords::give_back(const Word& w) {
  std::lock_guard lock(mutex_);
  free_.push_back(w);
}

}  // namespace metal

std::unique_ptr<Backend> make_metal_backend(const BackendSettings&) {
  @autoreleasepool {
    return std::make_unique<metal::MetalBackend>();
  }
}

}  // namespace lanes
