// Device memory as the core sees it, and the caching allocator that owns it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "lock_order.hpp"

namespace lanes {

class Backend;
class Allocator;

// One device allocation. Returned to the allocator's cache when the last reference drops,
// which may happen on a completion thread.
class Buffer {
 public:
  Buffer(Allocator* owner, void* data, size_t bytes, size_t capacity, int device)
      : owner_(owner), data_(data), bytes_(bytes), capacity_(capacity), device_(device) {}
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  size_t capacity() const { return capacity_; }
  int device() const { return device_; }

  // Set when the work that writes this buffer failed; work that reads it fails in turn, so an
  // error follows the data to every dependent, on any stream.
  std::atomic<bool> poisoned{false};

 private:
  Allocator* owner_;
  void* data_;
  size_t bytes_;
  size_t capacity_;
  int device_;
};

struct MemoryStats {
  uint64_t active = 0;
  uint64_t peak = 0;
  uint64_t cached = 0;
};

class Allocator {
 public:
  // `work_in_flight` tells whether committed work may still return buffers.
  Allocator(Backend& backend, std::function<bool()> work_in_flight)
      : backend_(backend), work_in_flight_(std::move(work_in_flight)) {}

  // Throws an out-of-memory error once the limit is still exceeded after trimming the cache
  // and waiting for in-flight work to return buffers.
  std::shared_ptr<Buffer> allocate(size_t bytes, int device = 0);
  void set_limit(uint64_t bytes);
  MemoryStats stats() const;
  void reset_peak();
  void trim();

 private:
  friend class Buffer;
  void recycle(void* data, size_t capacity, int device);
  static size_t round_capacity(size_t bytes);
  void* take_cached_locked(size_t capacity, int device);
  void trim_locked();

  Backend& backend_;
  std::function<bool()> work_in_flight_;
  mutable RankedMutex mutex_{LockRank::Leaf, "allocator"};
  std::condition_variable_any returned_;
  std::multimap<std::pair<int, size_t>, void*> cache_;  // (device, capacity) -> memory
  uint64_t limit_ = 0;
  MemoryStats stats_;
};

}  // namespace lanes
