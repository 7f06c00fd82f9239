// Handles: slot index + generation + kind tag, 52 bits so they survive a JS number. A stale,
// freed, garbage or foreign handle is rejected with an invalid-handle error, never
// dereferenced. Generations start at a per-process random offset so ids from another process
// run are rejected too (with overwhelming probability).
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lock_order.hpp"
#include "status.hpp"

namespace lanes {

enum class HandleKind : uint64_t { Stream = 1, Array = 2, Queue = 3 };

template <class T>
class HandleTable {
 public:
  HandleTable(HandleKind kind, const char* noun, LockRank rank)
      : kind_(kind), noun_(noun), mutex_(rank, noun) {
    std::random_device rd;
    generation_base_ = rd() & kGenMask;
  }

  uint64_t insert(std::shared_ptr<T> object) {
    std::unique_lock lock(mutex_);
    uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      if (slots_.size() >= kIndexMask)
        throw_error(LANES_ERR_OUT_OF_MEMORY, std::string("too many live ") + noun_ + "s");
      index = static_cast<uint32_t>(slots_.size());
      slots_.push_back(Slot{nullptr, generation_base_, 0});
    }
    Slot& slot = slots_[index];
    slot.object = std::move(object);
    slot.refs = 1;
    ++live_;
    return encode(index, slot.generation);
  }

  std::shared_ptr<T> get(uint64_t handle) const {
    std::shared_lock lock(mutex_);
    return slot_for(handle).object;
  }

  void retain(uint64_t handle) {
    std::unique_lock lock(mutex_);
    ++slot_for(handle).refs;
  }

  // Drops one reference; on the last one the slot is freed and the object handed back, so its
  // destructor runs outside this lock.
  std::shared_ptr<T> release(uint64_t handle) {
    std::unique_lock lock(mutex_);
    Slot& slot = slot_for(handle);
    if (--slot.refs > 0) return nullptr;
    std::shared_ptr<T> object = std::move(slot.object);
    slot.generation = (slot.generation + 1) & kGenMask;
    free_.push_back(static_cast<uint32_t>(&slot - slots_.data()));
    --live_;
    return object;
  }

  uint64_t live() const {
    std::shared_lock lock(mutex_);
    return live_;
  }

 private:
  static constexpr uint64_t kIndexBits = 24;
  static constexpr uint64_t kGenBits = 24;
  static constexpr uint64_t kIndexMask = (uint64_t(1) << kIndexBits) - 1;
  static constexpr uint64_t kGenMask = (uint64_t(1) << kGenBits) - 1;

  struct Slot {
    std::shared_ptr<T> object;
    uint64_t generation;
    uint32_t refs;
  };

  uint64_t encode(uint32_t index, uint64_t generation) const {
    return (static_cast<uint64_t>(kind_) << (kIndexBits + kGenBits)) | (generation << kIndexBits) | index;
  }

  const Slot& slot_for(uint64_t handle) const { return const_cast<HandleTable*>(this)->slot_for(handle); }
  Slot& slot_for(uint64_t handle) {
    uint64_t kind = handle >> (kIndexBits + kGenBits);
    uint64_t generation = (handle >> kIndexBits) & kGenMask;
    uint64_t index = handle & kIndexMask;
    if (kind != static_cast<uint64_t>(kind_) || index >= slots_.size() || !slots_[index].object ||
        slots_[index].generation != generation)
      throw_error(LANES_ERR_INVALID_HANDLE, std::string("invalid ") + noun_ + " handle " + std::to_string(handle) +
                                                " (freed, stale, or never created in this process)");
    return slots_[index];
  }

  const HandleKind kind_;
  const char* noun_;
  mutable RankedSharedMutex mutex_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
  uint64_t generation_base_;
  uint64_t live_ = 0;
};

}  // namespace lanes
