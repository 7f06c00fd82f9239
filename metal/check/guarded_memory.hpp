// Memory for the kernel emulations (metal/check/*_emulation.cpp) that ends exactly at a page no
// access may touch: a kernel reading or writing past an operand's end stops the run (SIGSEGV,
// reported by report_fault) instead of passing unnoticed.
#pragma once
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>

// `bytes` of memory followed directly by a page that faults on any access.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t bytes) {
    size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size_t data_pages = (bytes + page - 1) / page;
    map_bytes_ = (data_pages + 1) * page;
    map_ = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map_ == MAP_FAILED) std::abort();
    unsigned char* guard = static_cast<unsigned char*>(map_) + data_pages * page;
    if (mprotect(guard, page, PROT_NONE) != 0) std::abort();
    data_ = guard - bytes;
  }
  ~GuardedBuffer() { munmap(map_, map_bytes_); }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  unsigned char* data() const { return data_; }

 private:
  void* map_;
  size_t map_bytes_;
  unsigned char* data_;
};

// The SIGSEGV / SIGBUS handler the emulations install.
inline void report_fault(int) {
  const char message[] = "FAIL a kernel accessed memory past the end of an operand or the output\n";
  ssize_t ignored = write(2, message, sizeof message - 1);
  (void)ignored;
  _exit(1);
}
