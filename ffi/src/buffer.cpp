#include "buffer.hpp"

#include <chrono>
#include <string>

#include "backend.hpp"
#include "status.hpp"

namespace lanes {
namespace {
constexpr auto kInFlightGrace = std::chrono::seconds(2);
}  // namespace

Buffer::~Buffer() { owner_->recycle(data_, capacity_, device_); }

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

void* Allocator::take_cached_locked(size_t capacity, int device) {
  auto it = cache_.lower_bound({device, capacity});
  if (it == cache_.end() || it->first.first != device || it->first.second > capacity + capacity / 4) return nullptr;
  void* p = it->second;
  stats_.cached -= it->first.second;
  cache_.erase(it);
  return p;
}

void Allocator::trim_locked() {
  for (auto& [key, p] : cache_) backend_.deallocate(p, key.second, key.first);
  cache_.clear();
  stats_.cached = 0;
}

std::shared_ptr<Buffer> Allocator::allocate(size_t bytes, int device) {
  size_t capacity = round_capacity(bytes);
  std::unique_lock lock(mutex_);
  auto over_limit = [&] { return limit_ != 0 && stats_.active + capacity > limit_; };
  void* data = nullptr;
  if (!over_limit()) data = take_cached_locked(capacity, device);
  if (!data && over_limit()) {
    trim_locked();
    // Buffers held by in-flight epochs come back as their completions run.
    if (work_in_flight_()) returned_.wait_for(lock, kInFlightGrace, [&] { return !over_limit() || !work_in_flight_(); });
    if (over_limit())
      throw_error(LANES_ERR_OUT_OF_MEMORY, "allocation of " + std::to_string(bytes) + " bytes exceeds the memory limit (" +
                                               std::to_string(stats_.active) + " of " + std::to_string(limit_) +
                                               " bytes in use)");
  }
  if (!data) {
    data = backend_.allocate(capacity, device);
    if (!data) {
      trim_locked();
      data = backend_.allocate(capacity, device);
    }
    if (!data) throw_error(LANES_ERR_OUT_OF_MEMORY, "device allocation of " + std::to_string(bytes) + " bytes failed");
  }
  stats_.active += capacity;
  if (stats_.active > stats_.peak) stats_.peak = stats_.active;
  lock.unlock();
  try {
    return std::make_shared<Buffer>(this, data, bytes, capacity, device);
  } catch (...) {
    recycle(data, capacity, device);
    throw;
  }
}

void Allocator::recycle(void* data, size_t capacity, int device) {
  {
    std::unique_lock lock(mutex_);
    stats_.active -= capacity;
    if (stats_.cached + capacity <= backend_.max_cached_bytes() && (limit_ == 0 || stats_.active + stats_.cached + capacity <= limit_)) {
      cache_.emplace(std::make_pair(device, capacity), data);
      stats_.cached += capacity;
      data = nullptr;
    }
  }
  if (data) backend_.deallocate(data, capacity, device);
  returned_.notify_all();
}

void Allocator::set_limit(uint64_t bytes) {
  std::unique_lock lock(mutex_);
  limit_ = bytes;
}

MemoryStats Allocator::stats() const {
  std::unique_lock lock(mutex_);
  return stats_;
}

void Allocator::reset_peak() {
  std::unique_lock lock(mutex_);
  stats_.peak = stats_.active;
}

void Allocator::trim() {
  std::unique_lock lock(mutex_);
  trim_locked();
}

}  // namespace lanes
