#include "completion_queue.hpp"

#include <chrono>
#include <mutex>

namespace lanes {

void CompletionQueue::post(uint64_t token, int32_t status) {
  {
    std::lock_guard lock(mutex_);
    records_.push_back(Record{token, status});
  }
  posted_.notify_all();
}

int32_t CompletionQueue::drain(uint64_t* tokens, int32_t* statuses, int32_t capacity) {
  std::lock_guard lock(mutex_);
  int32_t n = 0;
  while (n < capacity && !records_.empty()) {
    tokens[n] = records_.front().token;
    statuses[n] = records_.front().status;
    records_.pop_front();
    ++n;
  }
  return n;
}

void CompletionQueue::wait(uint32_t timeout_ms) {
  std::unique_lock lock(mutex_);
  posted_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !records_.empty(); });
}

}  // namespace lanes
