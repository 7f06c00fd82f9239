//! The CUDA kernel source, embedded in liblanes at build time for NVRTC. An @embedFile is in
//! zig's own dependency tracking, so editing a kernel rebuilds the library; clang's #embed and
//! .incbin were not (zig's cache kept the old object). Hidden: not part of the C ABI.
const kernels_cu: [*:0]const u8 = @embedFile("kernels.cu");
const quant_kernels_cu: [*:0]const u8 = @embedFile("quant_kernels.cu");
comptime {
    @export(&kernels_cu, .{ .name = "lanes_cuda_kernels_cu", .visibility = .hidden });
    @export(&quant_kernels_cu, .{ .name = "lanes_cuda_quant_kernels_cu", .visibility = .hidden });
}
