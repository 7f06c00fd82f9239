// Handles: slot index + generation + kind tag, 52 bits so they survive a JS number. A stale,
// freed, garbage or foreign handle is rejected with an invalid-handle error, never
// dereferenced. Generations start at a per-process random offset so ids from another process
// run are rejected too (with overwhelming probability).
//
// Reads never lock: a slot's generation and reference count share one atomic word, and a
// reader pins the slot (count + 1) while it copies the object out, so the releaser of the last
// reference cannot free it underneath. Free slots are cached per thread, so creating and
// releasing handles touches no shared lock either (the shared free list is refilled in
// batches). Each slot also records the thread that created it, for handles that must die with
// their thread (a terminated Bun Worker).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "lock_order.hpp"
#include "status.hpp"

namespace lanes {

enum class HandleKind : uint64_t { Stream = 1, Array = 2, Queue = 3, Plan = 4 };

// A small id per thread (0 = none), recorded as the creator of the handles it makes.
uint32_t this_thread_token();

template <class T>
class HandleTable {
 public:
  HandleTable(HandleKind kind, const char* noun) : kind_(kind), noun_(noun) {
    std::random_device rd;
    generation_base_ = rd() & kGenMask;
    for (auto& c : chunks_) c.store(nullptr, std::memory_order_relaxed);
  }
  ~HandleTable() {
    for (auto& c : chunks_) delete[] c.load(std::memory_order_relaxed);
  }
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;

  // `owner`: the thread token the handle dies with (0: none).
  uint64_t insert(std::shared_ptr<T> object, uint32_t owner = 0) {
    uint32_t index = take_free_index();
    Slot& slot = *slot_at(index);
    uint64_t generation = generation_of(slot.word.load(std::memory_order_relaxed));
    slot.object = std::move(object);
    slot.owner.store(owner, std::memory_order_relaxed);
    slot.word.store(pack(generation, 1), std::memory_order_release);
    return encode(index, generation);
  }

  std::shared_ptr<T> get(uint64_t handle) const {
    Slot& slot = pin(handle);
    std::shared_ptr<T> copy = slot.object;
    const_cast<HandleTable*>(this)->drop(slot);
    return copy;
  }

  // Adds one reference.
  void retain(uint64_t handle) { pin(handle); }

  // Drops one reference; on the last one the slot is freed and the object handed back, so the
  // caller decides where its destructor runs.
  std::shared_ptr<T> release(uint64_t handle) {
    Slot& slot = pin(handle);
    drop(slot);
    return drop(slot);
  }

  // The creator recorded for `handle` (0 once it was handed over to no thread).
  uint32_t owner(uint64_t handle) const {
    Slot& slot = pin(handle);
    uint32_t o = slot.owner.load(std::memory_order_relaxed);
    const_cast<HandleTable*>(this)->drop(slot);
    return o;
  }
  // Forgets the creator of `handle` (its creation reference was released explicitly).
  void disown(uint64_t handle) {
    Slot& slot = pin(handle);
    slot.owner.store(0, std::memory_order_relaxed);
    drop(slot);
  }

  // Handles whose creator is `owner` (for releasing a dead thread's references). Not a
  // snapshot: handles made or freed meanwhile may or may not be listed.
  std::vector<uint64_t> owned_by(uint32_t owner) const {
    std::vector<uint64_t> out;
    uint32_t n = next_index_.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; ++i) {
      Slot* slot = slot_at(i);
      if (!slot || slot->owner.load(std::memory_order_relaxed) != owner) continue;
      uint64_t w = slot->word.load(std::memory_order_acquire);
      if (refs_of(w) > 0) out.push_back(encode(i, generation_of(w)));
    }
    return out;
  }

  // Live handles (a scan: for statistics, not the hot path).
  uint64_t live() const {
    uint64_t count = 0;
    uint32_t n = next_index_.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; ++i)
      if (Slot* slot = slot_at(i); slot && refs_of(slot->word.load(std::memory_order_relaxed)) > 0) ++count;
    return count;
  }

 private:
  static constexpr uint64_t kIndexBits = 24;
  static constexpr uint64_t kGenBits = 24;
  static constexpr uint64_t kIndexMask = (uint64_t(1) << kIndexBits) - 1;
  static constexpr uint64_t kGenMask = (uint64_t(1) << kGenBits) - 1;
  static constexpr uint32_t kChunkBits = 12;
  static constexpr uint32_t kChunkSize = uint32_t(1) << kChunkBits;
  static constexpr uint32_t kChunks = uint32_t(1) << (kIndexBits - kChunkBits);
  static constexpr size_t kLocalFree = 64;

  struct Slot {
    std::atomic<uint64_t> word{0};  // generation << 32 | references
    std::shared_ptr<T> object;      // set while references > 0
    std::atomic<uint32_t> owner{0};
    uint32_t index = 0;
  };

  static uint64_t pack(uint64_t generation, uint64_t refs) { return (generation << 32) | refs; }
  static uint64_t generation_of(uint64_t word) { return word >> 32; }
  static uint64_t refs_of(uint64_t word) { return word & 0xffffffffu; }

  uint64_t encode(uint32_t index, uint64_t generation) const {
    return (static_cast<uint64_t>(kind_) << (kIndexBits + kGenBits)) | (generation << kIndexBits) | index;
  }

  Slot* slot_at(uint32_t index) const {
    Slot* chunk = chunks_[index >> kChunkBits].load(std::memory_order_acquire);
    return chunk ? &chunk[index & (kChunkSize - 1)] : nullptr;
  }

  [[noreturn]] void invalid(uint64_t handle) const {
    throw_error(LANES_ERR_INVALID_HANDLE, std::string("invalid ") + noun_ + " handle " + std::to_string(handle) +
                                              " (freed, stale, or never created in this process)");
  }

  // Adds a reference to the live slot `handle` names, or throws.
  Slot& pin(uint64_t handle) const {
    uint64_t kind = handle >> (kIndexBits + kGenBits);
    uint64_t generation = (handle >> kIndexBits) & kGenMask;
    uint64_t index = handle & kIndexMask;
    if (kind != static_cast<uint64_t>(kind_) || index >= next_index_.load(std::memory_order_acquire)) invalid(handle);
    Slot* slot = slot_at(static_cast<uint32_t>(index));
    if (!slot) invalid(handle);
    uint64_t w = slot->word.load(std::memory_order_acquire);
    do {
      if (generation_of(w) != generation || refs_of(w) == 0) invalid(handle);
    } while (!slot->word.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire));
    return *slot;
  }

  // Drops a reference; the one that drops the last frees the slot and returns its object.
  std::shared_ptr<T> drop(Slot& slot) {
    uint64_t before = slot.word.fetch_sub(1, std::memory_order_acq_rel);
    if (refs_of(before) != 1) return nullptr;
    std::shared_ptr<T> object = std::move(slot.object);
    slot.object.reset();
    slot.owner.store(0, std::memory_order_relaxed);
    slot.word.store(pack((generation_of(before) + 1) & kGenMask, 0), std::memory_order_release);
    give_back_index(slot.index);
    return object;
  }

  struct LocalFree {
    HandleTable* table = nullptr;
    std::vector<uint32_t> indices;
  };
  // Each thread's caches of free slots, handed back to their tables when the thread exits.
  // Handles released later in the thread's exit (other thread_local destructors run after
  // this one) go straight to the shared list.
  static inline thread_local bool t_caches_gone = false;
  struct LocalCaches {
    std::vector<LocalFree> caches;
    ~LocalCaches() {
      for (LocalFree& c : caches) {
        std::lock_guard lock(c.table->free_mutex_);
        c.table->free_.insert(c.table->free_.end(), c.indices.begin(), c.indices.end());
      }
      t_caches_gone = true;
    }
  };
  LocalFree* local() {
    if (t_caches_gone) return nullptr;
    thread_local LocalCaches mine;
    for (LocalFree& c : mine.caches)
      if (c.table == this) return &c;
    mine.caches.push_back(LocalFree{this, {}});
    return &mine.caches.back();
  }

  uint32_t take_free_index() {
    LocalFree* mine = local();
    if (!mine) {
      std::lock_guard lock(free_mutex_);
      if (!free_.empty()) {
        uint32_t index = free_.back();
        free_.pop_back();
        return index;
      }
    } else {
      if (mine->indices.empty()) {
        std::lock_guard lock(free_mutex_);
        size_t take = std::min(free_.size(), kLocalFree / 2);
        mine->indices.insert(mine->indices.end(), free_.end() - static_cast<std::ptrdiff_t>(take), free_.end());
        free_.resize(free_.size() - take);
      }
      if (!mine->indices.empty()) {
        uint32_t index = mine->indices.back();
        mine->indices.pop_back();
        return index;
      }
    }
    uint32_t index = next_index_.load(std::memory_order_relaxed);
    for (;;) {
      if (index >= kIndexMask) throw_error(LANES_ERR_OUT_OF_MEMORY, std::string("too many live ") + noun_ + "s");
      ensure_chunk(index);
      if (next_index_.compare_exchange_weak(index, index + 1, std::memory_order_acq_rel)) break;
    }
    Slot* slot = slot_at(index);
    slot->word.store(pack(generation_base_, 0), std::memory_order_relaxed);
    return index;
  }

  void give_back_index(uint32_t index) {
    LocalFree* mine = local();
    if (!mine) {
      std::lock_guard lock(free_mutex_);
      free_.push_back(index);
      return;
    }
    mine->indices.push_back(index);
    if (mine->indices.size() < kLocalFree) return;
    std::lock_guard lock(free_mutex_);
    free_.insert(free_.end(), mine->indices.begin() + kLocalFree / 2, mine->indices.end());
    mine->indices.resize(kLocalFree / 2);
  }

  void ensure_chunk(uint32_t index) {
    std::atomic<Slot*>& chunk = chunks_[index >> kChunkBits];
    if (chunk.load(std::memory_order_acquire)) return;
    std::lock_guard lock(free_mutex_);
    if (chunk.load(std::memory_order_relaxed)) return;
    Slot* slots = new Slot[kChunkSize];
    uint32_t first = index & ~(kChunkSize - 1);
    for (uint32_t i = 0; i < kChunkSize; ++i) slots[i].index = first + i;
    chunk.store(slots, std::memory_order_release);
  }

  const HandleKind kind_;
  const char* noun_;
  uint64_t generation_base_;
  std::atomic<Slot*> chunks_[kChunks];
  std::atomic<uint32_t> next_index_{0};
  RankedMutex free_mutex_{LockRank::Leaf, "handle free list"};
  std::vector<uint32_t> free_;
};

}  // namespace lanes
