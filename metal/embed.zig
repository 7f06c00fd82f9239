//! The Metal kernel source, embedded in liblanes at build time for newLibraryWithSource. The
//! runtime compiler resolves no project #include, so the parameter header's text goes first
//! (kernels.metal then skips its #include of it); #line keeps compiler messages on
//! kernels.metal's own line numbers.
export const lanes_metal_kernel_source: [*:0]const u8 = @embedFile("kernel_params.hpp") ++ "#line 1 \"kernels.metal\"\n" ++ @embedFile("kernels.metal");
