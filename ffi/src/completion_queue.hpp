// Completion records for one JS thread. Completion paths post; the JS thread drains with an
// ordinary call, so no foreign thread ever enters JavaScript. A post to an empty queue also
// writes a byte to a pipe whose read end the thread's event loop polls: it wakes exactly when
// there is something to drain, with no timer.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>

#include "lock_order.hpp"

namespace lanes {

class CompletionQueue {
 public:
  CompletionQueue() = default;
  ~CompletionQueue();
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  void post(uint64_t token, int32_t status);
  int32_t drain(uint64_t* tokens, int32_t* statuses, int32_t capacity);
  void wait(uint32_t timeout_ms);
  // The pipe's read end (made on first use).
  int fd();

 private:
  struct Record {
    uint64_t token;
    int32_t status;
  };
  RankedMutex mutex_{LockRank::Leaf, "completion_queue"};
  std::condition_variable_any posted_;
  std::deque<Record> records_;
  int read_fd_ = -1;
  int write_fd_ = -1;
};

}  // namespace lanes
