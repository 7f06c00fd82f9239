#include "status.hpp"

namespace lanes {
namespace {
thread_local std::string t_message;
thread_local lanes_status t_code = LANES_OK;
}  // namespace

void throw_error(lanes_status code, const std::string& message) { throw Error(code, message); }

void set_last_error(lanes_status code, const std::string& message) {
  t_code = code;
  t_message = message;
}

const char* last_error_message() { return t_message.c_str(); }
lanes_status last_error_code() { return t_code; }

}  // namespace lanes
