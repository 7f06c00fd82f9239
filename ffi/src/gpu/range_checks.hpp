// Range checks of GPU kernels (a take index, a per-row offset or key length): each checking
// kernel gets an error word from its backend's pool of host-visible words, writes it when a
// value is out of range, and the message is made once the epoch completed. The word types are
// the backend's (pinned mapped memory on CUDA, a shared buffer on Metal); what is done with
// them is the same, so it is here.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../backend.hpp"
#include "kernel_layout.hpp"

namespace lanes::gpu {

// A range-checking kernel's error word and what its message needs (range_error): a take index
// (`what` null) or a per-row offset or key length. `Word` has `int* host`: [flag, value].
template <class Word>
struct RangeCheck {
  Word word;
  int axis;
  int64_t dim;
  const char* what = nullptr;
};

// The first out-of-range value the kernels of `checks` (RangeChecks) reported, as its message.
template <class Checks>
std::optional<std::string> first_range_error(const Checks& checks) {
  for (const auto& t : checks) {
    volatile int* word = t.word.host;
    if (word[0]) return range_error(t.what, t.axis, t.dim, word[1]);
  }
  return std::nullopt;
}

// A translated command: the device operations `Op` it issues and the error words of its range
// checks, which go back to `Words` when it is destroyed, after its epoch completed.
template <class Op, class Words>
class Prepared final : public lanes::Prepared {
 public:
  using Check = RangeCheck<typename Words::Word>;
  explicit Prepared(Words& words) : words_(words) {}
  ~Prepared() override {
    for (const Check& t : checks) words_.give_back(t.word);
  }
  std::vector<Op> ops;
  std::vector<Check> checks;

 private:
  Words& words_;
};

}  // namespace lanes::gpu
