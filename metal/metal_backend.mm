// The Metal backend: one MTLCommandQueue and one MTLSharedEvent per lanes stream.
//
// A SubmissionEpoch's command buffer holds the current MTLCommandBuffer (unretained
// references: the epoch keeps every bound buffer alive itself until completion) and compute
// encoder; commands are encoded as they arrive, under the stream's op lock. Cross-stream
// dependencies end the encoder and `encodeWaitForEvent:value:` on the producer's event; commit
// ends the encoder, `encodeSignalEvent:value:` with the epoch's sequence number, adds a
// completed handler and commits. The handler only records the status and wakes the queue's
// completion thread (gpu::InOrderCompletions), which checks errors, poisons the outputs of
// failed work and signals the timeline; it never takes an op lock and never throws. A failed
// command buffer never reaches its encodeSignalEvent, so the completion signals that value on
// the event by hand: no other stream's wait hangs on it.
//
// Written against Apple's documented Metal API. CI compiles and links it for macOS on Linux
// (docs/METAL.md); only the macOS workflow (.github/workflows/macos.yml) can run it.
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "../ffi/src/backend.hpp"
#include "../ffi/src/epoch_checks.hpp"
#include "../ffi/src/gpu/in_order_completions.hpp"
#include "../ffi/src/runtime.hpp"
#include "../ffi/src/status.hpp"
#include "metal_device.hpp"

// Errors beyond the project's flags, for this file's own code (not the headers above): nil where
// an API wants an object, and signed sizes and indices.
#pragma clang diagnostic error "-Wnullable-to-nonnull-conversion"
#pragma clang diagnostic error "-Wsign-conversion"

extern "C" const char* const lanes_metal_kernel_source;  // metal/embed.zig

namespace lanes {
namespace metal {
namespace {

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  return end && *end == 0 && n > 0 ? n : fallback;
}

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

// A stream's event registry entry: other streams wait on it.
struct Event {
  id<MTLSharedEvent> event;
};

class MetalBackend;

class MetalCommandBuffer final : public CommandBuffer {
 public:
  MetalCommandBuffer(MetalBackend& backend, id<MTLCommandQueue> queue, id<MTLSharedEvent> gate, uint64_t gate_value);
  void encode(Command command) override;
  void encode_wait(std::shared_ptr<Timeline> other, uint64_t value) override;
  void inject_failure(std::string reason) override { injected = std::move(reason); }

  // Ends encoding; returns the command buffer to commit.
  id<MTLCommandBuffer> finish();

  struct Wait {
    std::shared_ptr<Timeline> timeline;
    uint64_t value;
    std::shared_ptr<Event> event;
  };
  std::vector<Command> commands;
  std::vector<Wait> waits;
  std::optional<std::string> injected;
  std::optional<std::string> encode_error;
  std::unique_ptr<EncodeContext> context;

 private:
  id<MTLComputeCommandEncoder> encoder();

  MetalBackend& backend_;
  id<MTLCommandBuffer> buffer_;
};

class MetalQueue final : public Queue {
 public:
  MetalQueue(MetalBackend& backend, uint64_t stream_id, std::shared_ptr<Event> event);
  ~MetalQueue() override;
  std::unique_ptr<CommandBuffer> new_command_buffer() override;
  void commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, CompletionFn on_complete) override;
  void debug_pause(bool paused) override;

 private:
  struct Submission {
    std::unique_ptr<MetalCommandBuffer> buffer;
    uint64_t sequence = 0;
    CompletionFn on_complete;
    std::optional<std::string> device_error;  // written by the completed handler before signal()
  };
  void complete(Submission& s, const std::optional<std::string>& sticky);

  MetalBackend& backend_;
  const uint64_t stream_id_;
  std::shared_ptr<Event> event_;
  id<MTLCommandQueue> queue_;
  // debug_pause: epochs opened while paused first wait for this event to reach gate_value_.
  id<MTLSharedEvent> gate_;
  std::atomic<uint64_t> gate_value_{0};
  std::unique_ptr<gpu::InOrderCompletions> completions_;
};

class MetalBackend final : public Backend {
 public:
  MetalBackend() {
    id<MTLDevice> device = MTLCreateSystemDefaultDevice();
    if (!device) throw_error(LANES_ERR_DEVICE, "LANES_BACKEND=metal: no Metal device on this machine");
    buffers_ = std::make_unique<BufferTable>();
    pipelines_ = std::make_unique<Pipelines>(device);
    error_words_ = std::make_unique<ErrorWords>(device);
    device_ = Device{device, buffers_.get(), pipelines_.get(), error_words_.get(), [device supportsFamily:MTLGPUFamilyApple7]};
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

  std::unique_ptr<Queue> new_queue(uint64_t stream_id, int) override {
    auto event = std::make_shared<Event>();
    event->event = [device_.device newSharedEvent];
    {
      std::lock_guard lock(events_mutex_);
      events_[stream_id] = event;
    }
    return std::make_unique<MetalQueue>(*this, stream_id, std::move(event));
  }

  // MLX's defaults for Apple GPUs: epochs of about 40 ops and 40 MB, from the environment if set.
  uint64_t default_epoch_bytes() const override { return env_or("LANES_METAL_EPOCH_MB", 40) << 20; }
  uint32_t default_epoch_ops() const override { return static_cast<uint32_t>(env_or("LANES_METAL_EPOCH_OPS", 40)); }

  std::shared_ptr<Event> event_of(uint64_t id) {
    std::lock_guard lock(events_mutex_);
    auto it = events_.find(id);
    std::shared_ptr<Event> e = it == events_.end() ? nullptr : it->second.lock();
    if (!e) throw_error(LANES_ERR_INTERNAL, "metal: waiting on stream " + std::to_string(id) + ", which has no event");
    return e;
  }
  void forget_event(uint64_t id) {
    std::lock_guard lock(events_mutex_);
    events_.erase(id);
  }

  const Device& device() const { return device_; }

 private:
  std::unique_ptr<BufferTable> buffers_;
  std::unique_ptr<Pipelines> pipelines_;
  std::unique_ptr<ErrorWords> error_words_;
  Device device_;
  std::mutex events_mutex_;  // leaf
  std::unordered_map<uint64_t, std::weak_ptr<Event>> events_;
};

// ---- command buffer ----------------------------------------------------------------------------

MetalCommandBuffer::MetalCommandBuffer(MetalBackend& backend, id<MTLCommandQueue> queue, id<MTLSharedEvent> gate,
                                       uint64_t gate_value)
    : backend_(backend), buffer_([queue commandBufferWithUnretainedReferences]) {
  context = std::make_unique<EncodeContext>(EncodeContext{backend.device(), nil, {}, {}});
  if (gate_value) [buffer_ encodeWaitForEvent:gate value:gate_value];
}

id<MTLComputeCommandEncoder> MetalCommandBuffer::encoder() {
  if (!context->encoder) context->encoder = [buffer_ computeCommandEncoder];
  return context->encoder;
}

void MetalCommandBuffer::encode(Command command) {
  if (!injected && !encode_error) {
    try {
      encoder();
      encode_command(command, *context);
    } catch (const std::exception& e) {
      encode_error = std::string(op_name(command.op, command.params.subop)) + ": " + e.what();
    }
  }
  commands.push_back(std::move(command));  // keeps its buffers alive until completion
}

void MetalCommandBuffer::encode_wait(std::shared_ptr<Timeline> other, uint64_t value) {
  std::shared_ptr<Event> event = backend_.event_of(other->stream_id());
  if (context->encoder) {
    [context->encoder endEncoding];
    context->encoder = nil;
  }
  [buffer_ encodeWaitForEvent:event->event value:value];
  waits.push_back(Wait{std::move(other), value, std::move(event)});
}

id<MTLCommandBuffer> MetalCommandBuffer::finish() {
  if (context->encoder) {
    [context->encoder endEncoding];
    context->encoder = nil;
  }
  return buffer_;
}

// ---- queue -------------------------------------------------------------------------------------

MetalQueue::MetalQueue(MetalBackend& backend, uint64_t stream_id, std::shared_ptr<Event> event)
    : backend_(backend), stream_id_(stream_id), event_(std::move(event)) {
  queue_ = [backend.device().device newCommandQueue];
  gate_ = [backend.device().device newSharedEvent];
  if (!queue_ || !gate_) throw_error(LANES_ERR_DEVICE, "metal: could not create a command queue");
  // Metal reports lost devices through command buffer errors, so there is nothing to poll.
  completions_ = std::make_unique<gpu::InOrderCompletions>([]() -> std::optional<std::string> { return std::nullopt; }, nullptr);
}

MetalQueue::~MetalQueue() {
  gate_.signaledValue = gate_value_.load();  // paused work, if any, may finish
  completions_.reset();
  backend_.forget_event(stream_id_);
}

std::unique_ptr<CommandBuffer> MetalQueue::new_command_buffer() {
  uint64_t gate = gate_value_.load();
  return std::make_unique<MetalCommandBuffer>(backend_, queue_, gate_, gate > gate_.signaledValue ? gate : 0);
}

void MetalQueue::commit(std::unique_ptr<CommandBuffer> buffer, uint64_t sequence, CompletionFn on_complete) {
  auto s = std::make_shared<Submission>();
  s->buffer.reset(static_cast<MetalCommandBuffer*>(buffer.release()));
  s->sequence = sequence;
  s->on_complete = std::move(on_complete);
  id<MTLCommandBuffer> cb = s->buffer->finish();
  [cb encodeSignalEvent:event_->event value:sequence];
  gpu::InOrderCompletions* completions = completions_.get();
  Submission* raw = s.get();  // alive until its completion ran, which waits for this handler
  [cb addCompletedHandler:^(id<MTLCommandBuffer> done) {
    if (done.status == MTLCommandBufferStatusError) raw->device_error = "Metal command buffer failed: " + describe(done.error);
    completions->signal();
  }];
  completions_->push([this, s](const std::optional<std::string>& sticky) { complete(*s, sticky); }, true);
  [cb commit];
}

void MetalQueue::debug_pause(bool paused) {
  if (paused) gate_value_.fetch_add(1);
  else gate_.signaledValue = gate_value_.load();
}

void MetalQueue::complete(Submission& s, const std::optional<std::string>& sticky) {
  MetalCommandBuffer& b = *s.buffer;
  std::optional<std::string> error = b.injected ? b.injected : b.encode_error ? b.encode_error : s.device_error ? s.device_error : sticky;
  if (error && event_->event.signaledValue < s.sequence) event_->event.signaledValue = s.sequence;  // release waiters
  for (MetalCommandBuffer::Wait& w : b.waits) {
    if (error) break;
    error = failed_wait(*w.timeline, w.value);
  }
  for (const Command& c : b.commands) {
    if (error) break;
    error = poisoned_input(c);
  }
  for (const TakeCheck& t : b.context->take_checks) {
    if (!error && t.word.host[0])
      error = "take: index " + std::to_string(t.word.host[1]) + " is out of range for axis " + std::to_string(t.axis) +
              " of size " + std::to_string(t.dim);
    backend_.device().error_words->give_back(t.word);
  }
  uint64_t kernels = 0;
  for (const Command& c : b.commands) {
    ++kernels;
    if (error) c.output.buffer->poisoned.store(true, std::memory_order_release);
  }
  if (!error) runtime().counters.kernels_executed.fetch_add(kernels, std::memory_order_relaxed);
  CompletionFn done = std::move(s.on_complete);
  s.buffer.reset();  // release the epoch's buffers and scratch before signalling
  done(error ? &*error : nullptr);
}

}  // namespace

// ---- shared pieces -----------------------------------------------------------------------------

void BufferTable::add(void* contents, id<MTLBuffer> buffer) {
  std::unique_lock lock(mutex_);
  buffers_[contents] = buffer;
}

id<MTLBuffer> BufferTable::remove(void* contents) {
  std::unique_lock lock(mutex_);
  auto it = buffers_.find(contents);
  if (it == buffers_.end()) return nil;
  id<MTLBuffer> b = it->second;
  buffers_.erase(it);
  return b;
}

id<MTLBuffer> BufferTable::find(const void* contents) {
  std::shared_lock lock(mutex_);
  auto it = buffers_.find(contents);
  return it == buffers_.end() ? nil : it->second;
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
      NSString* source = [NSString stringWithUTF8String:lanes_metal_kernel_source];
      if (!source) throw_error(LANES_ERR_INTERNAL, "metal: the embedded kernel source is not UTF-8");
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

void* EncodeContext::temp(size_t bytes) {
  temps.push_back(runtime().allocator().allocate(bytes));
  return temps.back()->data();
}

}  // namespace metal

std::unique_ptr<Backend> make_metal_backend() {
  @autoreleasepool {
    return std::make_unique<metal::MetalBackend>();
  }
}

}  // namespace lanes
