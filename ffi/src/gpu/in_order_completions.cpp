#include "in_order_completions.hpp"

#include <chrono>

namespace lanes::gpu {
namespace {
thread_local const void* t_destroyed_self = nullptr;
}

InOrderCompletions::InOrderCompletions(std::function<std::optional<std::string>()> poll, std::function<void()> thread_init)
    : poll_(std::move(poll)), thread_([this, init = std::move(thread_init)] {
        if (init) init();
        loop();
      }) {}

InOrderCompletions::~InOrderCompletions() {
  {
    std::lock_guard lock(wake_mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();
    t_destroyed_self = this;
  } else {
    thread_.join();
  }
}

void InOrderCompletions::push(Complete complete, bool awaits_signal) {
  {
    std::lock_guard lock(mutex_);
    entries_.push_back(Entry{std::move(complete), awaits_signal});
  }
  if (!awaits_signal) {
    std::lock_guard lock(wake_mutex_);
    wake_.notify_one();
  }
}

void InOrderCompletions::signal() {
  arrived_.fetch_add(1, std::memory_order_release);
  {
    std::lock_guard lock(wake_mutex_);
  }
  wake_.notify_one();
}

void InOrderCompletions::loop() {
  std::optional<std::string> sticky;
  for (;;) {
    {
      std::unique_lock lock(wake_mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(50),
                     [&] { return arrived_.load(std::memory_order_acquire) > consumed_ || stopping_; });
    }
    for (;;) {
      Entry next;
      {
        std::lock_guard lock(mutex_);
        if (entries_.empty()) {
          if (stopping_) return;
          break;
        }
        Entry& front = entries_.front();
        bool arrived = arrived_.load(std::memory_order_acquire) > consumed_;
        if (front.awaits_signal && !arrived && !sticky) {
          sticky = poll_();  // nothing arrived: is the device still alive?
          if (!sticky) break;
        }
        if (front.awaits_signal && arrived) ++consumed_;
        next = std::move(front);
        entries_.pop_front();
      }
      next.complete(sticky);
      if (t_destroyed_self == this) return;
    }
  }
}

}  // namespace lanes::gpu
