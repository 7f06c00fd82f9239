// A set of pointers for one graph walk: open addressing over storage that outlives the walk, so
// a thread that evaluates graphs of one size allocates nothing for its sets after the first.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace lanes {

class PointerSet {
 public:
  // Returns whether `p` was not in the set (and is now).
  bool insert(const void* p) {
    if ((used_.size() + 1) * 2 > slots_.size()) grow();
    size_t i = find(p);
    if (slots_[i]) return false;
    slots_[i] = p;
    used_.push_back(i);
    return true;
  }
  bool contains(const void* p) const { return !slots_.empty() && slots_[find(p)] != nullptr; }
  size_t size() const { return used_.size(); }
  // Empties the set in time proportional to its size, keeping its storage.
  void clear() {
    for (size_t i : used_) slots_[i] = nullptr;
    used_.clear();
  }

 private:
  // The slot holding `p`, or the empty slot where it would go. Needs one empty slot.
  size_t find(const void* p) const {
    size_t mask = slots_.size() - 1;
    size_t i = (reinterpret_cast<uintptr_t>(p) >> 4) * 0x9E3779B97F4A7C15ull >> 20 & mask;
    while (slots_[i] && slots_[i] != p) i = (i + 1) & mask;
    return i;
  }
  void grow() {
    std::vector<const void*> old(std::max<size_t>(64, slots_.size() * 2), nullptr);
    old.swap(slots_);
    used_.clear();
    for (const void* p : old)
      if (p) {
        size_t i = find(p);
        slots_[i] = p;
        used_.push_back(i);
      }
  }

  std::vector<const void*> slots_;  // a power of two in size; null is empty
  std::vector<size_t> used_;        // the slots in use
};

// Sets borrowed for the length of one evaluation from those this thread keeps (an evaluation
// may start inside another on the same thread, which then gets sets of its own).
class BorrowedPointerSet {
 public:
  BorrowedPointerSet() {
    if (!spare().empty()) {
      set_ = std::move(spare().back());
      spare().pop_back();
    } else {
      set_ = std::make_unique<PointerSet>();
    }
  }
  ~BorrowedPointerSet() {
    set_->clear();
    if (spare().size() < 8) spare().push_back(std::move(set_));
  }
  BorrowedPointerSet(const BorrowedPointerSet&) = delete;
  BorrowedPointerSet& operator=(const BorrowedPointerSet&) = delete;
  PointerSet& operator*() { return *set_; }
  PointerSet* operator->() { return set_.get(); }

 private:
  static std::vector<std::unique_ptr<PointerSet>>& spare() {
    thread_local std::vector<std::unique_ptr<PointerSet>> sets;
    return sets;
  }
  std::unique_ptr<PointerSet> set_;
};

}  // namespace lanes
