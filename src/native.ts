/**
 * Loading liblanes and calling it. Every call returns a status; `check` turns a failure into
 * a typed error with the message the native side kept for this thread.
 * @module
 */
import { dlopen, ptr, suffix } from "bun:ffi";
import { abiVersion, symbols } from "./abi.ts";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { errorFor, LanesError } from "./errors.ts";

const packageRoot = resolve(dirname(import.meta.path), "..");
const libraryName = `liblanes.${suffix}`;

/** The package that carries the prebuilt library for this platform. */
export function platformPackage(): string {
  return process.platform === "linux" ? `@lanes/linux-${process.arch}-gnu` : `@lanes/${process.platform}-${process.arch}`;
}

// In order: LANES_LIBRARY_PATH, a local build (zig-out/lib), the platform package.
function candidatePaths(): string[] {
  const paths: string[] = [];
  const fromEnv = process.env.LANES_LIBRARY_PATH;
  if (fromEnv) paths.push(fromEnv);
  paths.push(join(packageRoot, "zig-out", "lib", libraryName));
  try {
    paths.push(join(dirname(Bun.resolveSync(`${platformPackage()}/package.json`, packageRoot)), "lib", libraryName));
  } catch {
    paths.push(`${platformPackage()} (not installed)`);
  }
  return paths;
}

let loadedFrom = "";

/**
 * Throws unless the library at `path` is of the ABI these bindings declare. `found` is the
 * version it reported, or why none could be read from it.
 */
export function checkAbiVersion(path: string, found: number | string): void {
  if (found === abiVersion) return;
  const what = typeof found === "number" ? `is of C ABI version ${found}` : `gave no C ABI version (${found})`;
  throw new LanesError(
    "INTERNAL",
    `lanes: ${path} ${what}, but this lanes package needs version ${abiVersion}. Rebuild the library (bun run build) ` +
      `or install the ${platformPackage()} of the same release.`,
  );
}

// Opened for its one symbol, so that a library of another ABI is named as such instead of
// failing on whichever symbol it happens to lack, or being called with the wrong meanings.
function openVersioned(path: string): { version: number | string; close(): void } {
  try {
    const lib = dlopen(path, { lanes_abi_version_read: symbols.lanes_abi_version_read });
    const out = new Uint32Array(new ArrayBuffer(4));
    const status = lib.symbols.lanes_abi_version_read(ptr(out));
    return { version: status === 0 ? out[0]! : `status ${status}`, close: () => lib.close() };
  } catch (e) {
    return { version: e instanceof Error ? e.message : String(e), close: () => {} };
  }
}

function open() {
  const tried = candidatePaths();
  for (const path of tried) {
    if (!existsSync(path)) continue;
    loadedFrom = path;
    const versioned = openVersioned(path);
    try {
      checkAbiVersion(path, versioned.version);
      return dlopen(path, symbols);
    } finally {
      versioned.close();  // after the full open, which holds the library loaded
    }
  }
  throw new LanesError(
    "INTERNAL",
    `lanes: native library not found (tried: ${tried.join(", ")}). Install the prebuilt package for this ` +
      `platform (${platformPackage()}), or build it with \`bun run build\` (zig build -Doptimize=ReleaseFast) in the lanes package folder.`,
  );
}

/** The raw symbols of liblanes. */
export const native = open().symbols;

// A Worker's handles are released natively when its thread ends, even if it is terminated
// mid-eval before any JS cleanup could run.
if (!Bun.isMainThread) native.lanes_thread_track_handles(1);

// Per-thread scratch for out-parameters: each Worker has its own copy of this module. Its
// storage is an explicit ArrayBuffer: small typed arrays made from a length keep their data in
// GC-managed storage that may move, which would leave a cached pointer dangling.
const outWords = new Uint32Array(new ArrayBuffer(8));
/** Address of the 64-bit out-parameter slot. */
export const outPtr = ptr(outWords);

/** The handle written to the out-parameter slot by the last call. */
export function outHandle(): number {
  return outWords[0]! + outWords[1]! * 4294967296;
}

/** Throws the typed error for `status` unless it is ok. */
export function check(status: number): void {
  if (status !== 0) throw errorFor(status, String(native.lanes_last_error()));
}

/** Runs a call that writes a handle to the out slot; returns the handle. */
export function callForHandle(status: number): number {
  check(status);
  return outHandle();
}

/** The file liblanes was loaded from: `LANES_LIBRARY_PATH`, a local build, or the platform package. */
export function libraryPath(): string {
  return loadedFrom;
}

/** Name of the backend in use ("cpu", "cuda", "metal"). */
export function backendName(): string {
  return String(native.lanes_backend_name());
}
