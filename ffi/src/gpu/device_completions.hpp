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
//
// Such an epoch may go without a callback of its own (a CUDA host function holds its stream
// until a driver thread has run it: about 35 us per epoch on an H200). It then completes when
// a waiter's progress() sees its word, when a mark that a queue enqueued on demand arrives
// (arrive_through: everything the queue committed before it), or at the latest when the
// completion thread, which reads the words every millisecond while such epochs are
// outstanding, sees it. A mark only helps a waiter whose epoch is the last one queued: behind
// later work it arrives when that work is done too. A thread that waits for such an epoch
// hurries it instead, and the completion thread then reads the words every few microseconds
// until it has finished.
#pragma once
#include <atomic>
#include <chrono>
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
  // `collect_period`: how often the sleeping thread reads the words of epochs nobody hurries.
  DeviceCompletions(std::function<std::optional<std::string>()> poll, std::function<void()> thread_init,
                    std::chrono::microseconds collect_period = std::chrono::milliseconds(1));
  ~DeviceCompletions();
  DeviceCompletions(const DeviceCompletions&) = delete;
  DeviceCompletions& operator=(const DeviceCompletions&) = delete;

  // Registers an epoch; its device callback passes the returned token to arrive(). `reached`
  // (optional): the epoch's queue's counter word, at least `value` once the epoch finished.
  // Without `callback` (needs `reached`), no arrive() comes: the word alone completes it.
  void* expect(Complete complete, const uint64_t* reached = nullptr, uint64_t value = 0, bool callback = true);
  // An epoch registered without a callback whose device work will never run (its submission
  // failed): it completes now.
  void settle(void* token);
  // A thread waits for the epochs whose counter word is `reached` up to `value` and no mark
  // follows them closely: the completion thread reads the words every few microseconds until
  // they finished (those not registered yet are not hurried).
  void hurry(const uint64_t* reached, uint64_t value);
  // A mark covering every epoch whose counter word is `reached` and whose value is at most
  // `value`; its device callback passes it to arrive_through(), once all of them finished.
  void* new_mark(const uint64_t* reached, uint64_t value);
  static void arrive_through(void* mark);
  // A mark whose callback could not be enqueued.
  static void discard_mark(void* mark);
  // Runs, on the calling thread, the completions of epochs whose counter word reached its
  // value, and returns whether it ran any; returns at once if another thread is completing.
  // Takes no lock of the caller's.
  bool progress();
  // From the device callback. Never blocks on the device.
  static void arrive(void* token);

 private:
  struct Item {
    DeviceCompletions* owner;
    Complete complete;
    std::list<Item*>::iterator at;  // in outstanding_
    const uint64_t* reached;  // read with atomic loads: the device writes it
    uint64_t value;
    bool callback;
    std::atomic<int> references;  // the device callback's (if any) and the completion's
    bool hurried = false;  // a waiter hurries it (guarded by mutex_)
  };
  struct Mark {
    DeviceCompletions* owner;
    const uint64_t* reached;
    uint64_t value;
  };
  static void unref(Item* item);
  void arrived(Item* item);
  void marked(const Mark& mark);
  // Moves an outstanding item to ready_; the caller holds mutex_.
  void make_ready_locked(Item* item);
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
  const std::chrono::microseconds collect_period_;
  int64_t without_callback_ = 0;  // outstanding items that only their word completes
  int64_t hurried_ = 0;  // outstanding items a waiter hurries
  bool sleeping_ = false;
  bool stopping_ = false;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace lanes::gpu
