// Completion of a GPU queue's epochs, in submission order, on a thread of its own. A device
// callback (a CUDA host function, a Metal completed handler) only calls signal(): it must not
// run completions itself, because they free memory (a device call) and signal timelines that
// other queues' completions may wait on. Shared by the CUDA and Metal backends.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace lanes::gpu {

class InOrderCompletions {
 public:
  // Runs one epoch's completion; `sticky` is set when the device can no longer report.
  using Complete = std::function<void(const std::optional<std::string>& sticky)>;

  // `poll` runs on the completion thread when epochs are outstanding and nothing arrived for
  // 50 ms: it returns an error once the device is lost (its callbacks will never come), and
  // every outstanding epoch then completes with it. `thread_init` runs first on the thread.
  InOrderCompletions(std::function<std::optional<std::string>()> poll, std::function<void()> thread_init);
  // Stops the thread once nothing is outstanding. May run on the completion thread itself (a
  // completion dropped the owner's last reference): then the thread exits on return.
  ~InOrderCompletions();
  InOrderCompletions(const InOrderCompletions&) = delete;
  InOrderCompletions& operator=(const InOrderCompletions&) = delete;

  // Queues an epoch. With `awaits_signal`, it completes after its signal(); without (its
  // device callback could not be enqueued), as soon as it reaches the front.
  void push(Complete complete, bool awaits_signal);
  // From the device callback of the oldest awaited epoch: no locks held across device calls.
  void signal();

 private:
  struct Entry {
    Complete complete;
    bool awaits_signal;
  };
  void loop();

  std::function<std::optional<std::string>()> poll_;
  std::mutex mutex_;  // leaf: entries_
  std::deque<Entry> entries_;
  std::atomic<uint64_t> arrived_{0};
  std::atomic<bool> stopping_{false};
  std::mutex wake_mutex_;  // leaf, held only around the condition variable
  std::condition_variable wake_;
  uint64_t consumed_ = 0;  // arrivals already matched to entries (completion thread only)
  std::thread thread_;
};

}  // namespace lanes::gpu
