// Brief spinning before a sleep. A wait that ends within microseconds is cheaper to catch
// spinning than through a futex: the wake costs the signalling thread and the waiter several
// microseconds each.
#pragma once

#include <chrono>

namespace lanes {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until `done()` or until `budget` has passed; returns `done()`.
template <class Done>
bool spin_until(Done&& done, std::chrono::nanoseconds budget) {
  auto until = std::chrono::steady_clock::now() + budget;
  do {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
  } while (std::chrono::steady_clock::now() < until);
  return done();
}

}  // namespace lanes
