// The completion thread of one GPU: every queue of the device reports its finished epochs
// through it. A device callback (a CUDA host function, a Metal completed handler) only calls
// arrived(): it must not run completions itself, because they free memory (a device call) and
// signal timelines other work may wait on. One thread per device, not per stream, so many
// streams do not mean many threads; it spins briefly before it sleeps, so a completion that
// follows another closely costs no wake-up. Shared by the CUDA and Metal backends.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace lanes::gpu {

class DeviceCompletions {
 public:
  // Runs one epoch's completion; `lost` is set when the device can no longer report.
  using Complete = std::function<void(const std::optional<std::string>& lost)>;

  // `poll` runs on the completion thread when epochs are outstanding and nothing arrived for
  // 50 ms: it returns an error once the device is lost (its callbacks will never come), and
  // every outstanding epoch then completes with it. `thread_init` runs first on the thread.
  DeviceCompletions(std::function<std::optional<std::string>()> poll, std::function<void()> thread_init);
  ~DeviceCompletions();
  DeviceCompletions(const DeviceCompletions&) = delete;
  DeviceCompletions& operator=(const DeviceCompletions&) = delete;

  // Registers an epoch; its device callback passes the returned token to arrive().
  void* expect(Complete complete);
  // From the device callback. Never blocks on the device.
  static void arrive(void* token);

 private:
  struct Item {
    DeviceCompletions* owner;
    Complete complete;
    std::list<Item*>::iterator at;  // in outstanding_
  };
  void arrived(Item* item);
  void loop();
  Item* next_ready();

  std::function<std::optional<std::string>()> poll_;
  std::mutex mutex_;  // leaf: the lists
  std::list<Item*> outstanding_;
  std::deque<Item*> ready_;
  std::atomic<uint64_t> ready_count_{0};
  bool sleeping_ = false;
  bool stopping_ = false;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace lanes::gpu
