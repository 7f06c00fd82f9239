// The completion thread of one GPU: every queue of the device reports its finished epochs
// through it. A device callback (a CUDA host function, a Metal completed handler) only calls
// arrived(): it must not run completions itself, because they free memory (a device call) and
// signal timelines other work may wait on. One thread per device, not per stream, so many
// streams do not mean many threads; it spins briefly before it sleeps, so a completion that
// follows another closely costs no wake-up. Shared by the CUDA and Metal backends.
//
// An epoch may also name a host-visible counter word the device writes when it finishes. A
// thread that waits for it then calls progress(), which runs the completions of finished
// epochs on that thread, without the callback's and the completion thread's hand-offs (tens of
// microseconds on a small graph). Completions keep the order the callbacks would give them:
// one completer at a time, and an epoch never ahead of an earlier one of its queue.
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

  // Registers an epoch; its device callback passes the returned token to arrive(). `reached`
  // (optional): the epoch's queue's counter word, at least `value` once the epoch finished.
  void* expect(Complete complete, const uint64_t* reached = nullptr, uint64_t value = 0);
  // Runs, on the calling thread, the completions of epochs whose counter word reached its
  // value; returns at once if another thread is completing. Takes no lock of the caller's.
  void progress();
  // From the device callback. Never blocks on the device.
  static void arrive(void* token);

 private:
  struct Item {
    DeviceCompletions* owner;
    Complete complete;
    std::list<Item*>::iterator at;  // in outstanding_
    const uint64_t* reached;  // read with atomic loads: the device writes it
    uint64_t value;
    std::atomic<int> references{2};  // the device callback's and the completion's
  };
  static void unref(Item* item);
  void arrived(Item* item);
  void loop();
  Item* next_ready();
  // Completes the ready epochs; the caller holds completing_.
  bool run_ready();
  // Moves the outstanding epochs whose counter word reached their value to ready_.
  void collect_reached_locked();

  std::function<std::optional<std::string>()> poll_;
  std::mutex completing_;  // held while completions run, above mutex_
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
