// Host <-> device copies through pinned staging buffers: a large copy moves in 8 MiB chunks,
// double-buffered, so the DMA of one chunk overlaps the CPU copy of the previous one and the
// transfer runs at pinned-memory speed without pinning the caller's memory.
#pragma once
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "driver.hpp"

namespace lanes::cuda {

// Pinned blocks for small reads done on the array's stream (Backend::read_staging). Kept for the
// life of the process, like the chunks above.
class ReadBlocks {
 public:
  static constexpr size_t kBytes = size_t(1) << 20;
  // A block of kBytes; it comes back here when the last owner lets go.
  std::shared_ptr<void> take();

 private:
  std::shared_ptr<std::mutex> mutex_ = std::make_shared<std::mutex>();  // leaf: the free blocks
  std::shared_ptr<std::vector<void*>> free_ = std::make_shared<std::vector<void*>>();
};

class Staging {
 public:
  void download(void* dst, CUdeviceptr src, size_t bytes);
  void upload(CUdeviceptr dst, const void* src, size_t bytes);

 private:
  static constexpr size_t kChunk = size_t(8) << 20;
  // Two pinned chunks, their events and a copy stream: one caller at a time.
  struct Slot {
    void* chunk[2] = {nullptr, nullptr};
    CUevent done[2] = {nullptr, nullptr};
    CUstream stream = nullptr;
  };
  std::unique_ptr<Slot> take();
  void give_back(std::unique_ptr<Slot> slot);

  std::mutex mutex_;  // leaf: the free slots
  std::vector<std::unique_ptr<Slot>> free_;
};

}  // namespace lanes::cuda
