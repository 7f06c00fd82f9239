#include "lock_order.hpp"

#include <cstdio>
#include <cstdlib>

namespace lanes {
namespace lock_debug {
namespace {
struct Held {
  LockRank rank;
  const char* name;
};
constexpr int kMaxHeld = 16;
thread_local Held t_held[kMaxHeld];
thread_local int t_count = 0;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "lanes: %s\n", what);
  std::fflush(stderr);
  std::abort();
}
}  // namespace

void on_acquire(LockRank rank, const char* name) {
  // Report the highest-ranked lock held: the innermost one the acquisition conflicts with.
  int worst = -1;
  for (int i = 0; i < t_count; ++i)
    if (t_held[i].rank >= rank && (worst < 0 || t_held[i].rank > t_held[worst].rank)) worst = i;
  if (worst >= 0) {
    char msg[256];
    std::snprintf(msg, sizeof msg, "lock order violation: acquiring '%s' (rank %d) while holding '%s' (rank %d)", name,
                  static_cast<int>(rank), t_held[worst].name, static_cast<int>(t_held[worst].rank));
    die(msg);
  }
  if (t_count == kMaxHeld) die("lock order tracking: too many locks held");
  t_held[t_count++] = Held{rank, name};
}

void on_release(LockRank rank, const char* name) {
  for (int i = t_count - 1; i >= 0; --i) {
    if (t_held[i].rank == rank && t_held[i].name == name) {
      for (int j = i; j + 1 < t_count; ++j) t_held[j] = t_held[j + 1];
      --t_count;
      return;
    }
  }
  die("lock order tracking: releasing a lock this thread does not hold");
}
}  // namespace lock_debug

void DebugOwner::assert_held(const char* name) const {
  if constexpr (lock_debug::enabled) {
    if (owner_.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
      std::fprintf(stderr, "lanes: '%s' must be held by the calling thread\n", name);
      std::fflush(stderr);
      std::abort();
    }
  }
}

}  // namespace lanes
