#include "buffer.hpp"

#include <chrono>
#include <string>

#include "backend.hpp"
#include "status.hpp"

namespace lanes {
namespace {
constexpr auto kInFlightGrace = std::chrono::seconds(2);
constexpr uint64_t kHoldCount = 0xffffffffu;
constexpr uint64_t kMixedHolders = 0xffffffffu;
}  // namespace

Buffer::~Buffer() { owner_.give_back(home_.get(), data_, capacity_, device_); }

void Buffer::add_epoch_hold(uint64_t stream) {
  uint64_t id = stream < kMixedHolders ? stream : kMixedHolders;
  uint64_t word = epoch_holds_.load(std::memory_order_relaxed);
  for (;;) {
    uint64_t count = word & kHoldCount;
    uint64_t holder = count == 0 || word >> 32 == id ? id : kMixedHolders;
    if (epoch_holds_.compare_exchange_weak(word, holder << 32 | (count + 1), std::memory_order_acq_rel, std::memory_order_relaxed))
      return;
  }
}

void Buffer::drop_epoch_hold() {
  uint64_t word = epoch_holds_.load(std::memory_order_relaxed);
  for (;;) {
    uint64_t count = (word & kHoldCount) - 1;
    uint64_t next = count == 0 ? 0 : (word & ~kHoldCount) | count;
    if (epoch_holds_.compare_exchange_weak(word, next, std::memory_order_acq_rel, std::memory_order_relaxed)) return;
  }
}

bool Buffer::held_only_by(const std::shared_ptr<Buffer>& buffer, uint64_t stream) {
  // References first, holds second: a hold released in between (count, then reference) then
  // shows as a reference too many, never as one too few. The fence makes a reference dropped
  // before the first read also show its count dropped.
  long references = buffer.use_count();
  std::atomic_thread_fence(std::memory_order_acquire);
  uint64_t word = buffer->epoch_holds_.load(std::memory_order_acquire);
  uint64_t count = word & kHoldCount;
  if (count != 0 && word >> 32 != stream) return false;
  return references - static_cast<long>(count) == 1;
}

// ---- MemoryPool ---------------------------------------------------------------------------------

MemoryPool::~MemoryPool() {
  std::vector<std::pair<void*, size_t>> blocks;
  drain(blocks, true);
  for (auto& [data, capacity] : blocks) allocator_.release_block(data, capacity, device_);
}

void* MemoryPool::take(size_t capacity, size_t& got) {
  std::lock_guard lock(mutex_);
  for (auto it = blocks_.lower_bound(capacity); it != blocks_.end() && it->first <= capacity + capacity / 4; ++it) {
    if (it->second.empty()) continue;
    void* data = it->second.back();
    it->second.pop_back();
    got = it->first;
    cached_ -= got;
    allocator_.cached_.fetch_sub(got, std::memory_order_relaxed);
    return data;
  }
  return nullptr;
}

bool MemoryPool::keep(void* data, size_t capacity) {
  std::lock_guard lock(mutex_);
  if (retired_ || cached_ + capacity > max_cached_) return false;
  blocks_[capacity].push_back(data);
  cached_ += capacity;
  allocator_.cached_.fetch_add(capacity, std::memory_order_relaxed);
  return true;
}

void MemoryPool::drain(std::vector<std::pair<void*, size_t>>& out, bool retire) {
  std::lock_guard lock(mutex_);
  for (auto& [capacity, list] : blocks_)
    for (void* data : list) out.emplace_back(data, capacity);
  allocator_.cached_.fetch_sub(cached_, std::memory_order_relaxed);
  blocks_.clear();
  cached_ = 0;
  retired_ = retired_ || retire;
}

// ---- Allocator ----------------------------------------------------------------------------------

Allocator::Allocator(Backend& backend, std::function<bool()> work_in_flight)
    : backend_(backend), work_in_flight_(std::move(work_in_flight)) {}

size_t Allocator::round_capacity(size_t bytes) {
  if (bytes <= 256) return 256;
  if (bytes <= (size_t(1) << 20)) {
    size_t c = 256;
    while (c < bytes) c <<= 1;
    return c;
  }
  const size_t page = size_t(1) << 16;
  return (bytes + page - 1) / page * page;
}

std::shared_ptr<MemoryPool> Allocator::new_pool(int device) {
  auto pool = std::make_shared<MemoryPool>(*this, device, backend_.max_cached_bytes() / 4);
  std::lock_guard lock(mutex_);
  std::erase_if(pools_, [](const std::weak_ptr<MemoryPool>& p) { return p.expired(); });
  pools_.push_back(pool);
  return pool;
}

bool Allocator::over_limit(size_t capacity) const {
  uint64_t limit = limit_.load(std::memory_order_relaxed);
  return limit != 0 && active_.load(std::memory_order_relaxed) + capacity > limit;
}

void Allocator::wait_for_returns(size_t capacity) {
  trim();
  if (!over_limit(capacity)) return;
  // Buffers held by in-flight epochs come back as their completions run.
  waiting_.fetch_add(1, std::memory_order_acq_rel);
  {
    std::unique_lock lock(mutex_);
    returned_.wait_for(lock, kInFlightGrace, [&] { return !over_limit(capacity) || !work_in_flight_(); });
  }
  waiting_.fetch_sub(1, std::memory_order_acq_rel);
}

std::shared_ptr<Buffer> Allocator::allocate(size_t bytes, int device, const std::shared_ptr<MemoryPool>& pool) {
  size_t capacity = round_capacity(bytes);
  if (over_limit(capacity)) {
    wait_for_returns(capacity);
    if (over_limit(capacity))
      throw_error(LANES_ERR_OUT_OF_MEMORY, "allocation of " + std::to_string(bytes) + " bytes exceeds the memory limit (" +
                                               std::to_string(active_.load()) + " of " + std::to_string(limit_.load()) +
                                               " bytes in use)");
  }
  size_t got = capacity;
  void* data = pool && pool->device() == device ? pool->take(capacity, got) : nullptr;
  if (!data) {
    std::lock_guard lock(mutex_);
    auto it = shared_.lower_bound({device, capacity});
    if (it != shared_.end() && it->first.first == device && it->first.second <= capacity + capacity / 4) {
      data = it->second;
      got = it->first.second;
      cached_.fetch_sub(got, std::memory_order_relaxed);
      shared_.erase(it);
    }
  }
  if (!data) {
    got = capacity;
    data = backend_.allocate(capacity, device);
    if (!data) {
      trim();
      data = backend_.allocate(capacity, device);
    }
    if (!data) throw_error(LANES_ERR_OUT_OF_MEMORY, "device allocation of " + std::to_string(bytes) + " bytes failed");
  }
  uint64_t active = active_.fetch_add(got, std::memory_order_relaxed) + got;
  uint64_t peak = peak_.load(std::memory_order_relaxed);
  while (active > peak && !peak_.compare_exchange_weak(peak, active, std::memory_order_relaxed)) {
  }
  try {
    return std::make_shared<Buffer>(*this, pool && pool->device() == device ? pool : nullptr, data, bytes, got, device);
  } catch (...) {
    give_back(nullptr, data, got, device);
    throw;
  }
}

bool Allocator::room_for(size_t capacity) const {
  uint64_t limit = limit_.load(std::memory_order_relaxed);
  return limit == 0 || active_.load(std::memory_order_relaxed) + cached_.load(std::memory_order_relaxed) + capacity <= limit;
}

void Allocator::give_back(MemoryPool* home, void* data, size_t capacity, int device) {
  active_.fetch_sub(capacity, std::memory_order_relaxed);
  if (!(room_for(capacity) && home && home->keep(data, capacity))) release_block(data, capacity, device);
  wake_waiters();
}

void Allocator::epoch_finished() { wake_waiters(); }

void Allocator::wake_waiters() {
  if (waiting_.load(std::memory_order_acquire) == 0) return;
  std::lock_guard lock(mutex_);
  returned_.notify_all();
}

void Allocator::release_block(void* data, size_t capacity, int device) {
  if (room_for(capacity) && cached_.load(std::memory_order_relaxed) + capacity <= backend_.max_cached_bytes()) {
    std::lock_guard lock(mutex_);
    shared_.emplace(std::make_pair(device, capacity), data);
    cached_.fetch_add(capacity, std::memory_order_relaxed);
    return;
  }
  backend_.deallocate(data, capacity, device);
}

void Allocator::set_limit(uint64_t bytes) { limit_.store(bytes, std::memory_order_relaxed); }

MemoryStats Allocator::stats() const {
  return MemoryStats{active_.load(), peak_.load(), cached_.load()};
}

void Allocator::reset_peak() { peak_.store(active_.load()); }

void Allocator::trim() {
  std::vector<std::shared_ptr<MemoryPool>> pools;
  std::vector<std::pair<void*, size_t>> shared_blocks;
  std::vector<int> shared_devices;
  {
    std::lock_guard lock(mutex_);
    for (auto& weak : pools_)
      if (auto p = weak.lock()) pools.push_back(std::move(p));
    for (auto& [key, data] : shared_) {
      shared_blocks.emplace_back(data, key.second);
      shared_devices.push_back(key.first);
      cached_.fetch_sub(key.second, std::memory_order_relaxed);
    }
    shared_.clear();
  }
  for (size_t i = 0; i < shared_blocks.size(); ++i) backend_.deallocate(shared_blocks[i].first, shared_blocks[i].second, shared_devices[i]);
  for (auto& pool : pools) {
    std::vector<std::pair<void*, size_t>> blocks;
    pool->drain(blocks, false);
    for (auto& [data, capacity] : blocks) backend_.deallocate(data, capacity, pool->device());
  }
}

}  // namespace lanes
