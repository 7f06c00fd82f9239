#include <iterator>

#include "command.hpp"

namespace lanes {
namespace {

const char* const kKindNames[] = {
#define LANES_KIND(NAME, name, arity) #name,
#include "lanes_table.def"
};
const int kKindArity[] = {
#define LANES_KIND(NAME, name, arity) arity,
#include "lanes_table.def"
};
const char* const kUnaryNames[] = {
#define LANES_UNARY(code, NAME, name, rule) #name,
#include "lanes_table.def"
};
const char* const kBinaryNames[] = {
#define LANES_BINARY(code, NAME, name, rule) #name,
#include "lanes_table.def"
};
const char* const kReduceNames[] = {
#define LANES_REDUCE(code, NAME, name, rule) #name,
#include "lanes_table.def"
};
const char* const kRandomNames[] = {
#define LANES_RANDOM(code, NAME, name) #name,
#include "lanes_table.def"
};

template <size_t N>
const char* pick(const char* const (&names)[N], int subop, const char* fallback) {
  return subop >= 0 && subop < static_cast<int>(N) ? names[subop] : fallback;
}

}  // namespace

const char* op_name(OpCode op, int subop) {
  switch (op) {
    case OpCode::Unary: return pick(kUnaryNames, subop, "unary");
    case OpCode::Binary:
    case OpCode::BinaryScalar: return pick(kBinaryNames, subop, "binary");
    case OpCode::Reduce: return pick(kReduceNames, subop, "reduce");
    case OpCode::Random: return pick(kRandomNames, subop, "random");
    default: return pick(kKindNames, static_cast<int>(op), "op");
  }
}

int op_arity(OpCode op) { return kKindArity[static_cast<int>(op)]; }

}  // namespace lanes
