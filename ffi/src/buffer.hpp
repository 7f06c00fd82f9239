// Device memory as the core sees it: buffers, each stream's pool of freed blocks, and the
// allocator behind them.
//
// A buffer returns to the pool of the stream it was allocated for, so a stream reuses its own
// blocks without touching anything another stream touches. Work that reads a buffer holds it
// until that work completed, so a block in a pool is free to reuse at once. The allocator only
// sees pool misses (a shared cache, then the device) and keeps the counters and the limit.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "lock_order.hpp"

namespace lanes {

class Backend;
class Allocator;
class MemoryPool;

// One device allocation. Returned to its pool when the last reference drops, which may happen
// on a completion thread.
class Buffer {
 public:
  Buffer(Allocator& owner, std::shared_ptr<MemoryPool> home, void* data, size_t bytes, size_t capacity, int device)
      : owner_(owner), home_(std::move(home)), data_(data), bytes_(bytes), capacity_(capacity), device_(device) {}
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

  // Work that `stream` encoded holds this buffer until it completed (see EpochHold).
  void add_epoch_hold(uint64_t stream);
  void drop_epoch_hold();
  // Whether the caller's reference is the only one besides those `stream`'s encoded work holds.
  // A stream runs its work in order, so what it encodes next may then write the buffer in place.
  static bool held_only_by(const std::shared_ptr<Buffer>& buffer, uint64_t stream);

 private:
  Allocator& owner_;
  std::shared_ptr<MemoryPool> home_;
  void* data_;
  size_t bytes_;
  size_t capacity_;
  int device_;
  // The holding stream's id in the high half (kMixedHolders once two streams hold it), the
  // number of epoch holds in the low half.
  std::atomic<uint64_t> epoch_holds_{0};
};

// A reference an epoch keeps on a buffer it reads or writes, counted on the buffer. Made from a
// reference moved in while its stream encodes, under its op lock: the count then rises with no
// new reference, which another stream's held_only_by() refuses by the holder, and the same
// stream's cannot run meanwhile.
class EpochHold {
 public:
  EpochHold(std::shared_ptr<Buffer> buffer, uint64_t stream) : buffer_(std::move(buffer)) {
    if (buffer_) buffer_->add_epoch_hold(stream);
  }
  EpochHold(EpochHold&& other) noexcept = default;
  EpochHold& operator=(EpochHold&& other) noexcept {
    release();
    buffer_ = std::move(other.buffer_);
    return *this;
  }
  ~EpochHold() { release(); }

 private:
  // The count drops before the reference does: held_only_by() reads them in the other order,
  // so a hold in between is never missed.
  void release() {
    if (!buffer_) return;
    buffer_->drop_epoch_hold();
    buffer_.reset();
  }
  std::shared_ptr<Buffer> buffer_;
};

struct MemoryStats {
  uint64_t active = 0;
  uint64_t peak = 0;
  uint64_t cached = 0;
};

// A stream's freed blocks. Its lock is taken by the stream's allocations and by whoever drops
// the stream's buffers (usually its completions), never by other streams.
class MemoryPool {
 public:
  MemoryPool(Allocator& allocator, int device, size_t max_cached)
      : allocator_(allocator), device_(device), max_cached_(max_cached) {}
  ~MemoryPool();

  int device() const { return device_; }
  // A block of `capacity` (or up to a quarter larger), or null.
  void* take(size_t capacity, size_t& got);
  // False when the pool is full or retired: the caller hands the block on.
  bool keep(void* data, size_t capacity);
  // Empties the pool into `out` (for trimming or retirement); a retired pool keeps nothing.
  void drain(std::vector<std::pair<void*, size_t>>& out, bool retire);

 private:
  Allocator& allocator_;
  const int device_;
  const size_t max_cached_;
  RankedMutex mutex_{LockRank::Leaf, "stream memory pool"};
  // Capacity -> its free blocks. A capacity's list stays when it empties: a stream frees and
  // takes blocks of the same few sizes over and over, and this way that allocates nothing.
  std::map<size_t, std::vector<void*>> blocks_;
  size_t cached_ = 0;
  bool retired_ = false;
};

class Allocator {
 public:
  // `work_in_flight` tells whether committed work may still return buffers.
  Allocator(Backend& backend, std::function<bool()> work_in_flight);

  // A stream's pool (registered, so trim() reaches it).
  std::shared_ptr<MemoryPool> new_pool(int device);
  // Throws an out-of-memory error once the limit is still exceeded after trimming the caches
  // and waiting for in-flight work to return buffers. Takes no lock while it calls the device.
  std::shared_ptr<Buffer> allocate(size_t bytes, int device, const std::shared_ptr<MemoryPool>& pool);
  void set_limit(uint64_t bytes);
  MemoryStats stats() const;
  void reset_peak();
  // Frees every cached block (the shared cache and every pool's).
  void trim();
  // Wakes allocations waiting on in-flight work: an epoch has finished and returned its buffers.
  void epoch_finished();

  static size_t round_capacity(size_t bytes);
  // A block no pool keeps any more (a retired pool's): into the shared cache, or freed.
  void release_block(void* data, size_t capacity, int device);

 private:
  friend class Buffer;
  friend class MemoryPool;
  void give_back(MemoryPool* home, void* data, size_t capacity, int device);
  void wait_for_returns(size_t capacity);
  void wake_waiters();
  bool over_limit(size_t capacity) const;
  // Whether a freed block of `capacity` may stay cached under the memory limit.
  bool room_for(size_t capacity) const;

  Backend& backend_;
  std::function<bool()> work_in_flight_;
  std::atomic<uint64_t> active_{0};
  std::atomic<uint64_t> peak_{0};
  std::atomic<uint64_t> cached_{0};
  std::atomic<uint64_t> limit_{0};
  std::atomic<int> waiting_{0};
  RankedMutex mutex_{LockRank::Leaf, "allocator"};
  std::condition_variable_any returned_;
  std::multimap<std::pair<int, size_t>, void*> shared_;  // (device, capacity) -> block
  std::vector<std::weak_ptr<MemoryPool>> pools_;
};

}  // namespace lanes
