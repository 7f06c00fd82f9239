#include "timeline.hpp"

#include <algorithm>
#include <atomic>
#include <sstream>
#include <chrono>
#include <thread>

#include "config.hpp"
#include "backend.hpp"

namespace lanes {

void Timeline::signal(uint64_t value, const std::string* error) {
  std::vector<std::function<void()>> ready;
  bool wake = false;
  {
    std::unique_lock lock(mutex_);
    if (error) {
      failures_[value] = *error;
      has_failures_.store(true, std::memory_order_release);
    }
    completed_.store(value, std::memory_order_release);
    for (size_t i = 0; i < waiters_.size();) {
      if (waiters_[i].first <= value) {
        ready.push_back(std::move(waiters_[i].second));
        waiters_[i] = std::move(waiters_.back());
        waiters_.pop_back();
      } else {
        ++i;
      }
    }
    wake = sleepers_ > 0;
  }
  if (wake) reached_.notify_all();
  for (auto& fn : ready) fn();
}

namespace {

constexpr auto kSpin = std::chrono::microseconds(20);

// At most half the cores spin in waits at once: with more Workers than that, a waiter that
// spins takes a core another Worker needs to build its next graph, so the rest sleep.
std::atomic<int> g_spinning{0};
const int kMaxSpinning = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2);

struct SpinSlot {
  const bool held = g_spinning.fetch_add(1, std::memory_order_relaxed) < kMaxSpinning;
  ~SpinSlot() { g_spinning.fetch_sub(1, std::memory_order_relaxed); }
};

}  // namespace

bool Timeline::run_until(uint64_t value, std::chrono::steady_clock::time_point until) {
  auto reached = [&] { return completed_.load(std::memory_order_acquire) >= value; };
  if (!progress_) return spin_until(reached, until - std::chrono::steady_clock::now());
  for (;;) {
    while (!reached() && progress_())
      if (std::chrono::steady_clock::now() >= until) return reached();
    if (reached()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    for (int i = 0; i < 32 && !reached(); ++i) cpu_relax();
  }
}

std::optional<std::string> Timeline::wait(uint64_t value) {
  auto reached = [&] { return completed_.load(std::memory_order_acquire) >= value; };
  if (progress_) {
    // What this thread can do of the work, it does, spinning or not: running it here costs
    // no hand-off to another thread and no wake-up.
    while (!reached() && progress_()) {
    }
    SpinSlot slot;
    if (slot.held) run_until(value, std::chrono::steady_clock::now() + progress_spin_);
  } else {
    spin_until(reached, kSpin);
  }
  if (notify_ && !reached()) notify_(value);  // outside mutex_: it issues device calls
  std::unique_lock lock(mutex_);
  if (reached()) return error_at_locked(value);
  auto limit = config().watchdog;
  ++sleepers_;
  if (!limit) {
    reached_.wait(lock, reached);
    --sleepers_;
    return error_at_locked(value);
  }
  waiting_.emplace_back(std::this_thread::get_id(), value);
  bool done = reached_.wait_for(lock, *limit, reached);
  --sleepers_;
  waiting_.erase(std::find(waiting_.begin(), waiting_.end(), std::make_pair(std::this_thread::get_id(), value)));
  if (!done) {
    std::ostringstream msg;
    msg << "watchdog: waited " << limit->count() << " ms for stream " << stream_id_ << " to reach timeline value " << value
        << " (completed " << completed_.load() << "); threads waiting on this stream:";
    msg << " [this thread " << std::this_thread::get_id() << " for " << value << "]";
    for (auto& [thread, v] : waiting_) msg << " [thread " << thread << " for " << v << "]";
    return msg.str();
  }
  return error_at_locked(value);
}

std::optional<std::string> Timeline::error_at(uint64_t value) const {
  if (!has_failures_.load(std::memory_order_acquire)) return std::nullopt;
  std::unique_lock lock(mutex_);
  return error_at_locked(value);
}

std::optional<std::string> Timeline::error_at_locked(uint64_t value) const {
  auto it = failures_.find(value);
  if (it == failures_.end()) return std::nullopt;
  return it->second;
}

void Timeline::when_reached(uint64_t value, std::function<void()> fn) {
  {
    std::unique_lock lock(mutex_);
    if (completed_.load(std::memory_order_acquire) < value) {
      waiters_.emplace_back(value, std::move(fn));
      lock.unlock();
      if (notify_) notify_(value);
      return;
    }
  }
  fn();
}

}  // namespace lanes
