// Errors inside the core are C++ exceptions of one type carrying a lanes_status; the C ABI
// turns them into status codes (see abi_guard) so nothing throws across the boundary.
#pragma once
#include <stdexcept>
#include <string>

#include "lanes.h"

namespace lanes {

class Error : public std::runtime_error {
 public:
  Error(lanes_status code, const std::string& message) : std::runtime_error(message), code_(code) {}
  lanes_status code() const { return code_; }

 private:
  lanes_status code_;
};

[[noreturn]] void throw_error(lanes_status code, const std::string& message);

// Thread-local record of the last failure on this thread.
void set_last_error(lanes_status code, const std::string& message);
const char* last_error_message();
lanes_status last_error_code();

// Runs `body` and converts any exception to a status code; the only exit from the core.
template <class Body>
lanes_status abi_guard(Body&& body) noexcept {
  try {
    body();
    return LANES_OK;
  } catch (const Error& e) {
    set_last_error(e.code(), e.what());
    return e.code();
  } catch (const std::bad_alloc&) {
    set_last_error(LANES_ERR_OUT_OF_MEMORY, "host out of memory");
    return LANES_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(LANES_ERR_INTERNAL, std::string("internal error: ") + e.what());
    return LANES_ERR_INTERNAL;
  } catch (...) {
    set_last_error(LANES_ERR_INTERNAL, "internal error: unknown exception");
    return LANES_ERR_INTERNAL;
  }
}

}  // namespace lanes
