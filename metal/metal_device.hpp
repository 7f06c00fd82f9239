// One Metal device as the backend uses it, and what the op translation (launch.mm) records for
// a command: the dispatches it becomes, recorded by Backend::prepare before the stream's op lock
// and replayed into the epoch's compute encoder under it. Objective-C++ with ARC: the recorded
// dispatches hold their pipelines and buffers strongly until they are destroyed, after their
// epoch completed.
#pragma once
#import <Metal/Metal.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "../ffi/src/backend.hpp"
#include "../ffi/src/gpu/device_completions.hpp"
#include "../ffi/src/gpu/range_checks.hpp"

namespace lanes::metal {

// Buffers are shared-storage MTLBuffers; the core sees their `contents` pointers, and pointers
// inside them (a compiled plan's arena slots).
class BufferTable {
 public:
  void add(void* contents, id<MTLBuffer> buffer);
  void remove(void* contents);
  // The buffer holding `address` and the byte offset of `address` in it; nil when none does.
  id<MTLBuffer> find(const void* address, NSUInteger& offset);

 private:
  struct Entry {
    id<MTLBuffer> buffer;
    NSUInteger length;
  };
  std::shared_mutex mutex_;  // leaf; inserts and removals take it exclusively
  std::map<uintptr_t, Entry> buffers_;  // by contents address
};

// Pipelines compiled from the kernel source (metal/kernel_source.hpp), one per kernel name, cached.
class Pipelines {
 public:
  explicit Pipelines(id<MTLDevice> device) : device_(device) {}
  id<MTLComputePipelineState> get(const std::string& name);  // throws a device error

 private:
  id<MTLDevice> device_;
  std::mutex library_mutex_;  // leaf: compiles the library once
  id<MTLLibrary> library_ = nil;
  std::shared_mutex mutex_;  // leaf: lookups shared, inserts exclusive (never under the shared lock)
  std::unordered_map<std::string, id<MTLComputePipelineState>> pipelines_;
};

// Small words kernels write to report errors (take's bad index): pairs of ints in shared buffers.
class ErrorWords {
 public:
  struct Word {
    id<MTLBuffer> buffer;
    NSUInteger offset;
    int* host;
  };
  explicit ErrorWords(id<MTLDevice> device) : device_(device) {}
  Word take();  // zeroed
  void give_back(const Word& w);

 private:
  id<MTLDevice> device_;
  std::mutex mutex_;  // leaf
  std::vector<Word> free_;
};

using TakeCheck = gpu::RangeCheck<ErrorWords::Word>;

struct Device {
  id<MTLDevice> device;
  BufferTable* buffers;
  Pipelines* pipelines;
  ErrorWords* error_words;
  gpu::DeviceCompletions* completions;
  bool simdgroup_matrix;  // Apple7 and later GPUs: SIMD-group matrices (the 8x8 matmul kernels)
};

// A compiled plan's run-time scalar, written into a dispatch's parameter block at each replay
// (the kernels never see a double: Metal has none).
struct ScalarPatch {
  enum class Kind : uint8_t {
    Int64,        // base + floor(v) * scale, as a 64-bit integer
    Fraction,     // v - floor(v), as a float
    StorageBits,  // v as `dtype` stores it (gpu::storage_bits), as 32 bits
  };
  Kind kind;
  int8_t param;  // the plan parameter (OpParams::dynamic)
  DType dtype;
  uint32_t at;  // byte offset in the parameter block
  int64_t base, scale;
};

struct Binding {
  NSUInteger index;
  id<MTLBuffer> buffer;
  NSUInteger offset;
};

// Where a compiled plan's take kernel gets its error word: a fresh one per replay, so replays in
// flight together never share one.
struct TakeSlot {
  NSUInteger index;
  int axis;
  int64_t dim;
  const char* what = nullptr;
};

// One recorded dispatch: pipeline, buffers, parameter block (setBytes at index 8), grid.
struct Dispatch {
  id<MTLComputePipelineState> pipeline = nil;
  std::vector<Binding> buffers;
  std::vector<unsigned char> params;
  std::vector<ScalarPatch> patches;  // compiled plans only
  std::optional<TakeSlot> take;      // compiled plans only
  MTLSize size = MTLSizeMake(1, 1, 1);   // threads (per_thread) or threadgroups
  MTLSize group = MTLSizeMake(1, 1, 1);  // threads per threadgroup
  bool per_thread = true;
};

// A translated command (or, in a plan instance, every command of the plan): its dispatches and
// range checks.
using MetalPrepared = gpu::Prepared<Dispatch, ErrorWords>;

// What recording one command needs.
struct RecordContext {
  const Device& device;
  Scratch& scratch;
  MetalPrepared& out;
  // Recording a compiled plan: scalars bound to plan parameters become patches, and take
  // kernels get their error words at each replay.
  bool plan = false;

  bool dynamic(const OpParams& p, int i) const { return plan && p.dynamic[i] >= 0; }
  // Device scratch, alive until the command's epoch completed (a plan's: as long as its instance).
  void* temp(size_t bytes) { return scratch.allocate(bytes); }
};

// Records the dispatches of one command. Throws lanes::Error on failure.
void record(const Command& command, RecordContext& ctx);

// Encodes one recorded dispatch. `scalars` (`count` of them): a plan replay's parameters, null
// outside plans. `word`: the error word of a dispatch with a take slot. Throws lanes::Error.
void encode_dispatch(id<MTLComputeCommandEncoder> encoder, const Dispatch& d, const double* scalars, int count,
                     const ErrorWords::Word* word);

}  // namespace lanes::metal
