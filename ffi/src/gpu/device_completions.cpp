#include "device_completions.hpp"

#include <chrono>

#include "../backend.hpp"

namespace lanes::gpu {
namespace {

constexpr auto kSpin = std::chrono::microseconds(20);
constexpr auto kSilence = std::chrono::milliseconds(50);

}  // namespace

DeviceCompletions::DeviceCompletions(std::function<std::optional<std::string>()> poll, std::function<void()> thread_init)
    : poll_(std::move(poll)), thread_([this, init = std::move(thread_init)] {
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

void* DeviceCompletions::expect(Complete complete) {
  auto* item = new Item{this, std::move(complete), {}};
  std::lock_guard lock(mutex_);
  item->at = outstanding_.insert(outstanding_.end(), item);
  return item;
}

void DeviceCompletions::arrive(void* token) {
  auto* item = static_cast<Item*>(token);
  item->owner->arrived(item);
}

void DeviceCompletions::arrived(Item* item) {
  bool wake;
  {
    std::lock_guard lock(mutex_);
    if (item->at == outstanding_.end()) return;  // already completed as lost
    outstanding_.erase(item->at);
    item->at = outstanding_.end();
    ready_.push_back(item);
    ready_count_.fetch_add(1, std::memory_order_release);
    wake = sleeping_;
  }
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

void DeviceCompletions::loop() {
  for (;;) {
    if (Item* item = next_ready()) {
      item->complete(std::nullopt);
      delete item;
      continue;
    }
    if (spin_until([&] { return ready_count_.load(std::memory_order_acquire) > 0; }, kSpin)) continue;
    std::list<Item*> lost_items;
    std::optional<std::string> lost;
    {
      std::unique_lock lock(mutex_);
      if (stopping_ && ready_.empty() && outstanding_.empty()) return;
      sleeping_ = true;
      bool woke = wake_.wait_for(lock, kSilence, [&] { return !ready_.empty() || stopping_; });
      sleeping_ = false;
      if (woke || outstanding_.empty()) continue;
      lock.unlock();
      lost = poll_();  // nothing arrived while work is outstanding: is the device still alive?
      lock.lock();
      if (lost) {
        lost_items.splice(lost_items.end(), outstanding_);
        for (Item* item : lost_items) item->at = outstanding_.end();
      }
    }
    for (Item* item : lost_items) {
      item->complete(lost);
      delete item;
    }
  }
}

}  // namespace lanes::gpu
