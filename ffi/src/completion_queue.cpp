#include "completion_queue.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>

#include "status.hpp"

namespace lanes {

CompletionQueue::~CompletionQueue() {
  if (read_fd_ >= 0) close(read_fd_);
  if (write_fd_ >= 0) close(write_fd_);
}

void CompletionQueue::post(uint64_t token, int32_t status) {
  int ring = -1;
  {
    std::lock_guard lock(mutex_);
    if (records_.empty()) ring = write_fd_;
    records_.push_back(Record{token, status});
  }
  posted_.notify_all();
  // A full pipe already has a wake-up pending; nothing else can go wrong that a reader could fix.
  if (ring >= 0) {
    char byte = 1;
    ssize_t ignored = write(ring, &byte, 1);
    (void)ignored;
  }
}

int32_t CompletionQueue::drain(uint64_t* tokens, int32_t* statuses, int32_t capacity) {
  std::lock_guard lock(mutex_);
  int32_t n = 0;
  while (n < capacity && !records_.empty()) {
    tokens[n] = records_.front().token;
    statuses[n] = records_.front().status;
    records_.pop_front();
    ++n;
  }
  return n;
}

void CompletionQueue::wait(uint32_t timeout_ms) {
  std::unique_lock lock(mutex_);
  posted_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !records_.empty(); });
}

int CompletionQueue::fd() {
  std::lock_guard lock(mutex_);
  if (read_fd_ >= 0) return read_fd_;
  int fds[2];
  if (pipe(fds) != 0) throw_error(LANES_ERR_DEVICE, std::string("completion queue: pipe: ") + std::strerror(errno));
  for (int f : fds) {
    fcntl(f, F_SETFL, fcntl(f, F_GETFL) | O_NONBLOCK);
    fcntl(f, F_SETFD, FD_CLOEXEC);
  }
  read_fd_ = fds[0];
  write_fd_ = fds[1];
  // Records posted before anyone polled still need their wake-up.
  if (!records_.empty()) {
    char byte = 1;
    ssize_t ignored = write(write_fd_, &byte, 1);
    (void)ignored;
  }
  return read_fd_;
}

}  // namespace lanes
