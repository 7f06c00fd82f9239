// Completion records for one JS thread. Backend threads post; the JS thread drains with an
// ordinary call, so no foreign thread ever enters JavaScript.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>

#include "lock_order.hpp"

namespace lanes {

class CompletionQueue {
 public:
  void post(uint64_t token, int32_t status);
  int32_t drain(uint64_t* tokens, int32_t* statuses, int32_t capacity);
  void wait(uint32_t timeout_ms);

 private:
  struct Record {
    uint64_t token;
    int32_t status;
  };
  RankedMutex mutex_{LockRank::Leaf, "completion_queue"};
  std::condition_variable_any posted_;
  std::deque<Record> records_;
};

}  // namespace lanes
