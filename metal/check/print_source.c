// Prints the kernel source metal/embed.zig embeds, as newLibraryWithSource receives it.
#include <stdio.h>

extern const char* const lanes_metal_kernel_source;

int main(void) { return fputs(lanes_metal_kernel_source, stdout) < 0; }
