// A stream's host-visible timeline: a monotonically increasing completed value, plus the
// values whose work failed (poisoned). Waiters spin briefly, then block on a condition variable.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lock_order.hpp"

namespace lanes {

class Timeline {
 public:
  explicit Timeline(uint64_t stream_id) : stream_id_(stream_id) {}

  uint64_t stream_id() const { return stream_id_; }
  uint64_t completed() const { return completed_.load(std::memory_order_acquire); }

  // Publishes `value` as completed (failed if `error` is set). Called by backend completion
  // threads in increasing order; runs the callbacks that were waiting for it.
  void signal(uint64_t value, const std::string* error);

  // Blocks until `value` completed; returns its error, if it failed.
  std::optional<std::string> wait(uint64_t value);
  // Does what it can of the work up to `value` on this thread (Queue::progress) and spins until
  // `deadline` at most beyond that, never sleeping; returns whether `value` completed.
  bool run_until(uint64_t value, std::chrono::steady_clock::time_point deadline);

  // Set once, before the timeline is shared: what waits call on their thread (Queue::progress),
  // and how long they spin once it does nothing (Queue::progress_spin).
  void set_progress(std::function<bool()> progress, std::chrono::nanoseconds spin) {
    progress_ = std::move(progress);
    progress_spin_ = spin;
  }
  // Set once, before the timeline is shared: what wait() calls before it sleeps and
  // when_reached() calls when it leaves a callback (Queue::notify).
  void set_notify(std::function<void(uint64_t)> notify) { notify_ = std::move(notify); }

  // Error recorded for a completed `value`, if any.
  std::optional<std::string> error_at(uint64_t value) const;

  // Runs `fn` once `value` completed: now on this thread, or later on the signalling thread.
  void when_reached(uint64_t value, std::function<void()> fn);

 private:
  std::optional<std::string> error_at_locked(uint64_t value) const;

  const uint64_t stream_id_;
  std::function<bool()> progress_;
  std::chrono::nanoseconds progress_spin_{0};
  std::function<void(uint64_t)> notify_;
  std::atomic<uint64_t> completed_{0};
  std::atomic<bool> has_failures_{false};
  mutable RankedMutex mutex_{LockRank::Leaf, "timeline"};
  std::condition_variable_any reached_;
  // Failed (poisoned) values -> message. Each failed epoch poisons exactly its own value;
  // work that waited on it fails in turn and poisons its own.
  std::map<uint64_t, std::string> failures_;
  std::vector<std::pair<uint64_t, std::function<void()>>> waiters_;
  // Host threads blocked in wait() (for the watchdog's diagnostic).
  std::vector<std::pair<std::thread::id, uint64_t>> waiting_;
  int sleepers_ = 0;  // threads blocked on reached_
};

}  // namespace lanes
