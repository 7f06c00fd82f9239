#include "staging.hpp"

#include <algorithm>
#include <cstring>

namespace lanes::cuda {
std::unique_ptr<Staging::Slot> Staging::take() {
  {
    std::lock_guard lock(mutex_);
    if (!free_.empty()) {
      std::unique_ptr<Slot> s = std::move(free_.back());
      free_.pop_back();
      return s;
    }
  }
  const Driver& d = driver();
  auto s = std::make_unique<Slot>();
  for (int i = 0; i < 2; ++i) {
    check(d.cuMemHostAlloc(&s->chunk[i], kChunk, CU_MEMHOSTALLOC_PORTABLE), "allocating pinned staging");
    check(d.cuEventCreate(&s->done[i], CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING), "cuEventCreate");
  }
  check(d.cuStreamCreate(&s->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  return s;
}

std::shared_ptr<void> ReadBlocks::take() {
  void* block = nullptr;
  {
    std::lock_guard lock(*mutex_);
    if (!free_->empty()) {
      block = free_->back();
      free_->pop_back();
    }
  }
  if (!block) check(driver().cuMemHostAlloc(&block, kBytes, CU_MEMHOSTALLOC_PORTABLE), "allocating pinned memory for a read");
  // The deleter holds the free list, so a block outliving the backend still has somewhere to go.
  return std::shared_ptr<void>(block, [mutex = mutex_, free = free_](void* b) {
    std::lock_guard lock(*mutex);
    free->push_back(b);
  });
}

void Staging::give_back(std::unique_ptr<Slot> slot) {
  std::lock_guard lock(mutex_);
  free_.push_back(std::move(slot));
}

void Staging::download(void* dst, CUdeviceptr src, size_t bytes) {
  const Driver& d = driver();
  std::unique_ptr<Slot> s = take();
  size_t chunks = (bytes + kChunk - 1) / kChunk;
  auto size_of = [&](size_t i) { return std::min(kChunk, bytes - i * kChunk); };
  auto start = [&](size_t i) {
    check(d.cuMemcpyDtoHAsync(s->chunk[i % 2], src + i * kChunk, size_of(i), s->stream), "copy from the device");
    check(d.cuEventRecord(s->done[i % 2], s->stream), "cuEventRecord");
  };
  start(0);
  for (size_t i = 0; i < chunks; ++i) {
    if (i + 1 < chunks) start(i + 1);  // the next chunk's DMA overlaps this chunk's memcpy
    check(d.cuEventSynchronize(s->done[i % 2]), "copy from the device");
    std::memcpy(static_cast<char*>(dst) + i * kChunk, s->chunk[i % 2], size_of(i));
  }
  give_back(std::move(s));
}

void Staging::upload(CUdeviceptr dst, const void* src, size_t bytes) {
  const Driver& d = driver();
  std::unique_ptr<Slot> s = take();
  size_t chunks = (bytes + kChunk - 1) / kChunk;
  for (size_t i = 0; i < chunks; ++i) {
    size_t n = std::min(kChunk, bytes - i * kChunk);
    if (i >= 2) check(d.cuEventSynchronize(s->done[i % 2]), "copy to the device");  // its chunk is free again
    std::memcpy(s->chunk[i % 2], static_cast<const char*>(src) + i * kChunk, n);
    check(d.cuMemcpyHtoDAsync(dst + i * kChunk, s->chunk[i % 2], n, s->stream), "copy to the device");
    check(d.cuEventRecord(s->done[i % 2], s->stream), "cuEventRecord");
  }
  check(d.cuStreamSynchronize(s->stream), "copy to the device");
  give_back(std::move(s));
}

}  // namespace lanes::cuda
