// For `bun build --compile`: embeds this platform's prebuilt liblanes in the executable (Bun's
// file-import pattern) and points lanes at it. Import it before anything that imports "lanes".
// Change the package to the platform you compile for (@lanes/linux-arm64-gnu, @lanes/darwin-arm64).
import library from "@lanes/linux-x64-gnu/lib/liblanes.so" with { type: "file" };

process.env.LANES_LIBRARY_PATH ||= library;
