//! Builds liblanes (C ABI + portable C++20 core + CPU backend) and the native test executable.
//!
//!   zig build -Doptimize=ReleaseFast      zig-out/lib/liblanes.{so,dylib}
//!   zig build test [-Dsanitize=thread]     native tests (core compiled in, one TSan runtime)
const std = @import("std");

const core_sources = [_][]const u8{
    "ffi/src/api.cpp",
    "ffi/src/buffer.cpp",
    "ffi/src/completion_queue.cpp",
    "ffi/src/config.cpp",
    "ffi/src/eval.cpp",
    "ffi/src/graph.cpp",
    "ffi/src/lock_order.cpp",
    "ffi/src/op_names.cpp",
    "ffi/src/plan.cpp",
    "ffi/src/runtime.cpp",
    "ffi/src/sampling.cpp",
    "ffi/src/shape.cpp",
    "ffi/src/status.cpp",
    "ffi/src/stream.cpp",
    "ffi/src/timeline.cpp",
    "ffi/src/gpu/device_completions.cpp",
    "ffi/src/gpu/kernel_layout.cpp",
    "cpu/attention.cpp",
    "cpu/compute_pool.cpp",
    "cpu/cpu_features.cpp",
    "cpu/cpu_backend.cpp",
    "cpu/kernels.cpp",
    "cpu/libm.cpp",
    "cpu/quant.cpp",
    "cpu/sgemm.cpp",
    "cpu/reduce_simd.cpp",
    "cpu/row_exp_simd.cpp",
};

// The Metal backend (macOS): Objective-C++ with ARC; the kernel source is embedded by metal/embed.zig.
const metal_sources = [_][]const u8{
    "metal/launch.mm",
    "metal/metal_backend.mm",
};

// The CUDA backend: no CUDA headers or libraries at build time (driver, NVRTC and cuBLASLt are
// loaded with dlopen when LANES_BACKEND=cuda), so it builds everywhere Linux does.
const cuda_sources = [_][]const u8{
    "cuda/cuda_backend.cpp",
    "cuda/driver.cpp",
    "cuda/kernels_source.cpp",
    "cuda/launch.cpp",
    "cuda/matmul.cpp",
    "cuda/modules.cpp",
    "cuda/staging.cpp",
};

const Sanitizer = enum { none, thread };

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const sanitize = b.option(Sanitizer, "sanitize", "Build with a sanitizer (thread)") orelse .none;
    const strip = b.option(bool, "strip", "Leave debug info out of the library (the prebuilt packages)");
    const lock_debug = b.option(bool, "lock-debug", "Track lock ranks and owners (default: on in Debug)") orelse (optimize == .debug);
    // Zig finds frameworks for linking only through an explicit system framework path, so a
    // macOS build from another OS (the Metal check) names the SDK: -Dmacos-sdk=DIR --libc FILE.
    const macos_sdk = b.option([]const u8, "macos-sdk", "Apple SDK folder: its System/Library/Frameworks become a system framework path (cross-compiling for macOS)");

    var flags: std.ArrayList([]const u8) = .empty;
    flags.appendSlice(b.allocator, &.{ "-std=c++20", "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-Wall", "-Wextra", "-Wno-unused-parameter" }) catch @panic("oom");
    if (lock_debug) flags.append(b.allocator, "-DLANES_LOCK_DEBUG=1") catch @panic("oom");

    // The shared library.
    const lib_mod = b.createModule(.{
        .target = target,
        .optimize = optimize,
        .link_libcpp = true,
        .sanitize_thread = sanitize == .thread,
        .strip = strip,
    });
    lib_mod.addIncludePath(b.path("ffi/include"));
    lib_mod.addCSourceFiles(.{ .files = &core_sources, .flags = flags.items });
    addBackends(b, lib_mod, target, optimize, flags.items, macos_sdk);
    const lib = b.addLibrary(.{ .name = "lanes", .linkage = .dynamic, .root_module = lib_mod });
    if (target.result.os.tag == .linux) lib.setVersionScript(b.path("ffi/lanes.map"));
    b.installArtifact(lib);

    // The native test executable: the core compiled in, lock debugging always on.
    var test_flags: std.ArrayList([]const u8) = .empty;
    test_flags.appendSlice(b.allocator, flags.items) catch @panic("oom");
    if (!lock_debug) test_flags.append(b.allocator, "-DLANES_LOCK_DEBUG=1") catch @panic("oom");
    const test_mod = b.createModule(.{
        .target = target,
        .optimize = optimize,
        .link_libcpp = true,
        .sanitize_thread = sanitize == .thread,
    });
    test_mod.addIncludePath(b.path("ffi/include"));
    test_mod.addIncludePath(b.path("ffi/src"));
    test_mod.addCSourceFiles(.{ .files = &core_sources, .flags = test_flags.items });
    addBackends(b, test_mod, target, optimize, test_flags.items, macos_sdk);
    test_mod.addCSourceFiles(.{ .files = &.{"ffi/test/native_test.cpp"}, .flags = test_flags.items });
    const test_exe = b.addExecutable(.{ .name = "lanes-native-test", .root_module = test_mod });
    const install_test = b.addInstallArtifact(test_exe, .{});

    const native_test_step = b.step("native-test", "Build (without running) the native test executable");
    native_test_step.dependOn(&install_test.step);

    const run_tests = b.addRunArtifact(test_exe);
    run_tests.setEnvironmentVariable("TSAN_OPTIONS", "halt_on_error=1 second_deadlock_stack=1");
    run_tests.has_side_effects = true;
    run_tests.step.dependOn(&install_test.step);
    const test_step = b.step("test", "Build and run the native tests");
    test_step.dependOn(&run_tests.step);
}

// The GPU backends a target gets: CUDA on Linux (nothing to link: loaded at run time), Metal
// on macOS (the Metal and Foundation frameworks).
fn addBackends(b: *std.Build, module: *std.Build.Module, target: std.Build.ResolvedTarget, optimize: std.builtin.OptimizeMode, flags: []const []const u8, macos_sdk: ?[]const u8) void {
    switch (target.result.os.tag) {
        .linux => addBackend(b, module, target, optimize, &cuda_sources, flags, "-DLANES_CUDA_EMBED_OBJECT", "cuda"),
        .macos => {
            addBackend(b, module, target, optimize, &metal_sources, flags, "-fobjc-arc", "metal");
            if (macos_sdk) |sdk| module.addSystemFrameworkPath(.{ .cwd_relative = b.pathJoin(&.{ sdk, "System/Library/Frameworks" }) });
            module.linkFramework("Metal", .{});
            module.linkFramework("Foundation", .{});
        },
        else => {},
    }
}

// A backend's sources with one extra flag, and its kernel source embedded by `<dir>/embed.zig`
// (an @embedFile, which zig's cache tracks, so editing a kernel rebuilds the library).
fn addBackend(b: *std.Build, module: *std.Build.Module, target: std.Build.ResolvedTarget, optimize: std.builtin.OptimizeMode, sources: []const []const u8, flags: []const []const u8, flag: []const u8, dir: []const u8) void {
    var backend_flags: std.ArrayList([]const u8) = .empty;
    backend_flags.appendSlice(b.allocator, flags) catch @panic("oom");
    backend_flags.append(b.allocator, flag) catch @panic("oom");
    module.addCSourceFiles(.{ .files = sources, .flags = backend_flags.items });
    const kernels = b.addObject(.{
        .name = b.fmt("{s}_kernels", .{dir}),
        .root_module = b.createModule(.{ .root_source_file = b.path(b.fmt("{s}/embed.zig", .{dir})), .target = target, .optimize = optimize, .pic = true }),
    });
    module.addObject(kernels);
}
