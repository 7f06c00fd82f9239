#include "device_completions.hpp"

#include <algorithm>
#include <chrono>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include "../backend.hpp"
#include "../small_vector.hpp"

namespace lanes::gpu {
namespace {

constexpr auto kSpin = std::chrono::microseconds(20);
constexpr auto kSilence = std::chrono::milliseconds(50);
// How often the completion thread reads the counter words while a waiter hurries an epoch: a
// wake-up of this thread costs a few microseconds, a late one a gap on the device (the waiter
// is about to queue more work).
constexpr auto kHurriedPeriod = std::chrono::microseconds(20);

// Set while this thread runs completions: a completion that waits on a timeline must not
// re-enter progress() (its completing_ is held by this very thread).
thread_local bool t_completing = false;

struct Completing {
  Completing() { t_completing = true; }
  ~Completing() { t_completing = false; }
};

}  // namespace

DeviceCompletions::DeviceCompletions(std::function<std::optional<std::string>()> poll, std::function<void()> thread_init,
                                     std::chrono::microseconds collect_period)
    : poll_(std::move(poll)), collect_period_(collect_period), thread_([this, init = std::move(thread_init)] {
#if defined(__linux__)
        // Timed sleeps of this thread end within a microsecond of their time instead of the
        // default 50 us slack, which would be most of a hurried read's period.
        prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
#endif
        if (init) init();
        loop();
      }) {}

DeviceCompletions::~DeviceCompletions() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void* DeviceCompletions::expect(Complete complete, const uint64_t* reached, uint64_t value, bool callback) {
  auto* item = new Item{this, std::move(complete), {}, reached, value, callback, callback ? 2 : 1};
  std::lock_guard lock(mutex_);
  item->at = outstanding_.insert(outstanding_.end(), item);
  if (!callback) ++without_callback_;
  return item;
}

void DeviceCompletions::make_ready_locked(Item* item) {
  outstanding_.erase(item->at);
  item->at = outstanding_.end();
  if (!item->callback) --without_callback_;
  if (item->hurried) --hurried_;
  ready_.push_back(item);
  ready_count_.fetch_add(1, std::memory_order_release);
}

void DeviceCompletions::settle(void* token) {
  auto* item = static_cast<Item*>(token);
  bool wake;
  {
    std::lock_guard lock(mutex_);
    if (item->at == outstanding_.end()) return;
    make_ready_locked(item);
    wake = sleeping_;
  }
  if (wake) wake_.notify_one();
}

void DeviceCompletions::hurry(const uint64_t* reached, uint64_t value) {
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    for (Item* item : outstanding_) {
      if (item->reached != reached || item->value > value || item->hurried) continue;
      item->hurried = true;
      ++hurried_;
      wake = sleeping_;
    }
  }
  if (wake) wake_.notify_one();
}

void* DeviceCompletions::new_mark(const uint64_t* reached, uint64_t value) { return new Mark{this, reached, value}; }

void DeviceCompletions::arrive_through(void* mark) {
  auto* m = static_cast<Mark*>(mark);
  m->owner->marked(*m);
  delete m;
}

void DeviceCompletions::discard_mark(void* mark) { delete static_cast<Mark*>(mark); }

void DeviceCompletions::marked(const Mark& mark) {
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    for (auto it = outstanding_.begin(); it != outstanding_.end();) {
      Item* item = *it++;
      if (item->reached != mark.reached || item->value > mark.value) continue;
      make_ready_locked(item);
      wake = sleeping_;
    }
  }
  if (wake) wake_.notify_one();
}

void DeviceCompletions::unref(Item* item) {
  if (item->references.fetch_sub(1, std::memory_order_acq_rel) == 1) delete item;
}

void DeviceCompletions::arrive(void* token) {
  auto* item = static_cast<Item*>(token);
  item->owner->arrived(item);
}

void DeviceCompletions::arrived(Item* item) {
  bool wake;
  {
    std::lock_guard lock(mutex_);
    if (item->at == outstanding_.end()) {  // already taken by progress()
      wake = false;
    } else {
      make_ready_locked(item);
      wake = sleeping_;
    }
  }
  unref(item);
  if (wake) wake_.notify_one();
}

DeviceCompletions::Item* DeviceCompletions::next_ready() {
  std::lock_guard lock(mutex_);
  if (ready_.empty()) return nullptr;
  Item* item = ready_.front();
  ready_.pop_front();
  ready_count_.fetch_sub(1, std::memory_order_relaxed);
  return item;
}

bool DeviceCompletions::run_ready() {
  Completing mark;
  bool any = false;
  while (Item* item = next_ready()) {
    item->complete(std::nullopt);
    unref(item);
    any = true;
  }
  return any;
}

void DeviceCompletions::collect_reached_locked() {
  // Each queue's word is read once, so a later epoch of a queue is never taken while an
  // earlier one, read before the device moved on, is left behind.
  // Inline storage: waiters call this in a spin loop, which must not allocate.
  struct Seen {
    const uint64_t* word;
    uint64_t value;
  };
  SmallVector<Seen, 8> seen;
  for (auto it = outstanding_.begin(); it != outstanding_.end();) {
    Item* item = *it;
    if (!item->reached) {
      ++it;
      continue;
    }
    const Seen* known = std::find_if(seen.begin(), seen.end(), [&](const Seen& s) { return s.word == item->reached; });
    if (known == seen.end()) {
      seen.push_back(Seen{item->reached, __atomic_load_n(item->reached, __ATOMIC_ACQUIRE)});
      known = &seen.back();
    }
    if (known->value < item->value) {
      ++it;
      continue;
    }
    ++it;
    make_ready_locked(item);
  }
}

bool DeviceCompletions::progress() {
  if (t_completing) return false;
  std::unique_lock completing(completing_, std::try_to_lock);
  if (!completing) return false;
  {
    std::lock_guard lock(mutex_);
    collect_reached_locked();
  }
  return run_ready();
}

void DeviceCompletions::loop() {
  auto last_completed = std::chrono::steady_clock::now();
  bool hurrying = false;  // hurried_ > 0 when this thread last looked (under mutex_)
  for (;;) {
    // completing_ only while there is something to complete: a waiter's progress() gives up
    // when it finds the lock taken.
    if (ready_count_.load(std::memory_order_acquire) > 0) {
      std::lock_guard completing(completing_);
      run_ready();
      last_completed = std::chrono::steady_clock::now();
      continue;
    }
    // While an epoch is hurried the short sleeps below read the words anyway: no spin then.
    if (!hurrying && spin_until([&] { return ready_count_.load(std::memory_order_acquire) > 0; }, kSpin)) continue;
    std::list<Item*> lost_items;
    std::optional<std::string> lost;
    {
      std::unique_lock lock(mutex_);
      if (stopping_ && ready_.empty() && outstanding_.empty()) return;
      sleeping_ = true;
      std::chrono::microseconds period = hurried_ > 0 ? kHurriedPeriod : without_callback_ > 0 ? collect_period_ : kSilence;
      int64_t hurried = hurried_;
      // A newly hurried epoch ends the sleep, so that its reads begin at once.
      wake_.wait_for(lock, period, [&] { return !ready_.empty() || stopping_ || hurried_ > hurried; });
      sleeping_ = false;
      hurrying = hurried_ > 0;
      if (outstanding_.empty()) last_completed = std::chrono::steady_clock::now();
      if (!ready_.empty() || outstanding_.empty()) continue;
      collect_reached_locked();
      if (!ready_.empty()) continue;
      auto now = std::chrono::steady_clock::now();
      if (now - last_completed < kSilence) {
        if (stopping_) std::this_thread::yield();  // the last epochs are still running
        continue;
      }
      last_completed = now;
      lock.unlock();
      lost = poll_();  // nothing arrived while work is outstanding: is the device still alive?
      lock.lock();
      if (lost) {
        lost_items.splice(lost_items.end(), outstanding_);
        for (Item* item : lost_items) item->at = outstanding_.end();
        without_callback_ = 0;
        hurried_ = 0;
      }
    }
    if (lost_items.empty()) continue;
    std::lock_guard completing(completing_);
    for (Item* item : lost_items) {  // their callbacks will never come
      item->complete(lost);
      delete item;
    }
  }
}

}  // namespace lanes::gpu
