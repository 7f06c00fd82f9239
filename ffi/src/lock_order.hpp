// Ranked mutexes: the fixed lock order of DESIGN §3 made checkable.
//
// (global evaluation lock →) stream op lock → stream fence lock → leaf locks. A thread may only acquire a
// lock whose rank is strictly greater than every rank it already holds, so two op locks (same
// rank) can never be held together. Builds with LANES_LOCK_DEBUG keep a per-thread stack of
// held ranks and abort with both lock names on a violation, and record the owning thread so
// "must hold" assertions are exact.
#pragma once
#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <thread>

namespace lanes {

enum class LockRank : int {
  Global = 5,  // LANES_LOCKING=global only: one lock around each whole evaluation
  StreamTable = 10,
  StreamOp = 20,
  StreamFence = 30,
  Leaf = 40,
};

namespace lock_debug {
#ifdef LANES_LOCK_DEBUG
inline constexpr bool enabled = true;
#else
inline constexpr bool enabled = false;
#endif
void on_acquire(LockRank rank, const char* name);
void on_release(LockRank rank, const char* name);
}  // namespace lock_debug

// Records which thread holds a lock, for exact "caller must hold" assertions.
class DebugOwner {
 public:
  void set() {
    if constexpr (lock_debug::enabled) owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  void clear() {
    if constexpr (lock_debug::enabled) owner_.store(std::thread::id(), std::memory_order_relaxed);
  }
  void assert_held(const char* name) const;

 private:
  std::atomic<std::thread::id> owner_{};
};

class RankedMutex {
 public:
  RankedMutex(LockRank rank, const char* name) : rank_(rank), name_(name) {}
  RankedMutex(const RankedMutex&) = delete;
  RankedMutex& operator=(const RankedMutex&) = delete;

  void lock() {
    if constexpr (lock_debug::enabled) lock_debug::on_acquire(rank_, name_);
    mutex_.lock();
    owner_.set();
  }
  void unlock() {
    owner_.clear();
    mutex_.unlock();
    if constexpr (lock_debug::enabled) lock_debug::on_release(rank_, name_);
  }
  void assert_held() const { owner_.assert_held(name_); }
  const char* name() const { return name_; }

 private:
  std::mutex mutex_;
  LockRank rank_;
  const char* name_;
  DebugOwner owner_;
};

class RankedSharedMutex {
 public:
  RankedSharedMutex(LockRank rank, const char* name) : rank_(rank), name_(name) {}
  RankedSharedMutex(const RankedSharedMutex&) = delete;
  RankedSharedMutex& operator=(const RankedSharedMutex&) = delete;

  void lock() {
    if constexpr (lock_debug::enabled) lock_debug::on_acquire(rank_, name_);
    mutex_.lock();
  }
  void unlock() {
    mutex_.unlock();
    if constexpr (lock_debug::enabled) lock_debug::on_release(rank_, name_);
  }
  void lock_shared() {
    if constexpr (lock_debug::enabled) lock_debug::on_acquire(rank_, name_);
    mutex_.lock_shared();
  }
  void unlock_shared() {
    mutex_.unlock_shared();
    if constexpr (lock_debug::enabled) lock_debug::on_release(rank_, name_);
  }

 private:
  std::shared_mutex mutex_;
  LockRank rank_;
  const char* name_;
};

}  // namespace lanes
