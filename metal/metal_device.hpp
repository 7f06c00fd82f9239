// One Metal device as the backend uses it, and what the op translation (launch.mm) needs
// while it encodes an epoch's commands into a compute encoder. Objective-C++ with ARC.
#pragma once
#import <Metal/Metal.h>

#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "../ffi/src/buffer.hpp"
#include "../ffi/src/command.hpp"

namespace lanes::metal {

// Buffers are shared-storage MTLBuffers; the core sees their `contents` pointers.
class BufferTable {
 public:
  void add(void* contents, id<MTLBuffer> buffer);
  id<MTLBuffer> remove(void* contents);
  // The buffer holding `contents` (a Buffer's data() pointer), or nil.
  id<MTLBuffer> find(const void* contents);

 private:
  std::shared_mutex mutex_;  // leaf; inserts and removals take it exclusively
  std::unordered_map<const void*, id<MTLBuffer>> buffers_;
};

// Pipelines compiled from the embedded kernel source, one per kernel name, cached.
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

// Small words kernels write to report errors (take's bad index), in one shared buffer.
class ErrorWords {
 public:
  struct Word {
    id<MTLBuffer> buffer;
    NSUInteger offset;
    int* host;
  };
  explicit ErrorWords(id<MTLDevice> device) : device_(device) {}
  Word take();
  void give_back(const Word& w);

 private:
  id<MTLDevice> device_;
  std::mutex mutex_;  // leaf
  std::vector<Word> free_;
};

struct TakeCheck {
  ErrorWords::Word word;
  int axis;
  int64_t dim;
};

struct Device {
  id<MTLDevice> device;
  BufferTable* buffers;
  Pipelines* pipelines;
  ErrorWords* error_words;
  bool simdgroup_matrix;  // Apple7 and later GPUs: SIMD-group matrices (the 8x8 matmul kernels)
};

// What one epoch's encoding needs; kept until the epoch completed.
struct EncodeContext {
  const Device& device;
  id<MTLComputeCommandEncoder> encoder;
  std::vector<std::shared_ptr<Buffer>> temps;
  std::vector<TakeCheck> take_checks;

  // Shared-storage scratch from the caching allocator; returns its contents pointer.
  void* temp(size_t bytes);
};

// Encodes the dispatches of one command. Throws lanes::Error on failure.
void encode_command(const Command& command, EncodeContext& ctx);

}  // namespace lanes::metal
