#include "timeline.hpp"

namespace lanes {

void Timeline::signal(uint64_t value, const std::string* error) {
  std::vector<std::function<void()>> ready;
  {
    std::unique_lock lock(mutex_);
    if (error) failures_[value] = *error;
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
  }
  reached_.notify_all();
  for (auto& fn : ready) fn();
}

std::optional<std::string> Timeline::wait(uint64_t value) {
  std::unique_lock lock(mutex_);
  reached_.wait(lock, [&] { return completed_.load(std::memory_order_acquire) >= value; });
  return error_at_locked(value);
}

std::optional<std::string> Timeline::error_at(uint64_t value) const {
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
      return;
    }
  }
  fn();
}

}  // namespace lanes
