//! The Metal kernel source, embedded in liblanes at build time for newLibraryWithSource.
export const lanes_metal_kernel_source: [*:0]const u8 = @embedFile("kernels.metal");
