// Prints the kernel source the Metal backend compiles (metal/kernel_source.hpp: the op codes of
// lanes_table.def, then what metal/embed.zig embeds), as newLibraryWithSource receives it.
#include <cstdio>

#include "../kernel_source.hpp"

int main() { return std::fputs(lanes::metal::kernel_source().c_str(), stdout) < 0; }
