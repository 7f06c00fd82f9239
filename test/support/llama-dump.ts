/**
 * llama.cpp's intermediate tensors for a prompt, from test/support/llama-dump.c run against
 * node-llama-cpp's prebuilt libraries (the reference engine of test/llm.test.ts).
 *
 * The dumper is compiled on first use with the project's pinned Zig (`scripts/zig cc`), against
 * llama.cpp's headers taken from the git bundle node-llama-cpp ships (the source its binaries
 * were built from), and cached in `$LANES_CACHE_DIR/llama-dump` (else `~/.cache/lanes/llama-dump`)
 * under a key of node-llama-cpp's version and the dumper's source. Nothing is downloaded.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dir, "..", "..");
const source = join(import.meta.dir, "llama-dump.c");

/** What llama-dump reports of llama.cpp's run, and where its tensors are. */
export interface LlamaDump {
  /** The folder with one subfolder per llama_decode call (0: the prompt; 1..: decode steps). */
  dir: string;
  /** The CPU backend library llama.cpp loaded (its best `libggml-cpu-*.so` for this CPU). */
  cpuBackend: string;
  /** That backend's features (`AVX512`, `AMX_INT8`, ... → "1"). */
  features: Record<string, string>;
  /** Weights llama.cpp repacked for its AMX kernels (its log's "amx repack tensor NAME"). */
  amxRepacked: string[];
  /** Weights repacked for its other repacked (interleaved) kernels. */
  otherRepacked: string[];
  /** llama.cpp's greedy token after each call. */
  tokens: number[];
  /** Removes `dir`. */
  dispose(): void;
}

function cacheBase(): string {
  return join(process.env.LANES_CACHE_DIR || join(homedir(), ".cache", "lanes"), "llama-dump");
}

function nodeLlamaCppVersion(): string {
  return JSON.parse(readFileSync(join(root, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version;
}

/** Folder of node-llama-cpp's prebuilt CPU libraries for this platform. */
export function llamaBinDir(): string {
  const name = `${process.platform}-${process.arch}`;
  const dir = join(root, "node_modules", "@node-llama-cpp", name, "bins", name);
  if (!existsSync(dir) || !readdirSync(dir).some((f) => /^libllama\..*so$/.test(f)))
    throw new Error(`${dir}: no libllama (node-llama-cpp's prebuilt binaries for ${name}; run npm ci)`);
  return dir;
}

function run(cmd: string[], what: string, env?: Record<string, string | undefined>): string {
  const p = Bun.spawnSync(cmd, { cwd: root, env: env ?? process.env, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${what} failed (exit ${p.exitCode}): ${cmd.join(" ")}\n${p.stderr.toString()}${p.stdout.toString()}`);
  return p.stdout.toString();
}

// Renames `tmp` to `final` unless another process got there first (then `tmp` is dropped).
function publish(tmp: string, final: string): void {
  try {
    renameSync(tmp, final);
  } catch (e) {
    if (!existsSync(final)) throw e;
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** llama.cpp's headers (include/, ggml/include/) from node-llama-cpp's git bundle, extracted once. */
function llamaHeaders(version: string): string {
  const dir = join(cacheBase(), `llama.cpp-headers-node-llama-cpp-${version}`);
  if (existsSync(join(dir, "include", "llama.h"))) return dir;
  mkdirSync(cacheBase(), { recursive: true });
  const tmp = mkdtempSync(join(cacheBase(), "headers-"));
  try {
    const bundle = join(root, "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");
    run(["git", "clone", "--quiet", "--bare", bundle, join(tmp, "repo.git")], "cloning llama.cpp's source from node-llama-cpp's bundle");
    const out = join(tmp, "headers");
    mkdirSync(out);
    const p = Bun.spawnSync(["sh", "-c", 'git --git-dir "$1" archive --format=tar HEAD include ggml/include | tar -x -C "$2"', "sh", join(tmp, "repo.git"), out]);
    if (p.exitCode !== 0 || !existsSync(join(out, "include", "llama.h"))) throw new Error(`extracting llama.cpp's headers from ${bundle} failed: ${p.stderr.toString()}`);
    publish(out, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** The llama-dump executable: built with `scripts/zig cc` on first use, then taken from the cache. */
export function llamaDumper(): string {
  const version = nodeLlamaCppVersion();
  const key = createHash("sha256").update(readFileSync(source)).digest("hex").slice(0, 12);
  const exe = join(cacheBase(), `llama-dump-node-llama-cpp-${version}-${key}`);
  if (existsSync(exe)) return exe;
  const headers = llamaHeaders(version);
  const bin = llamaBinDir();
  const lib = (prefix: string) => {
    const f = readdirSync(bin).find((n) => n.startsWith(prefix) && n.endsWith(".so"));
    if (!f) throw new Error(`${bin}: no ${prefix}*.so`);
    return join(bin, f);
  };
  const tmp = `${exe}.${process.pid}.tmp`;
  // No rpath: the executable is shared by every checkout; the libraries are found through
  // LD_LIBRARY_PATH when it runs (runLlamaDump).
  run([join(root, "scripts", "zig"), "cc", "-O1", "-o", tmp, source, "-I", join(headers, "include"), "-I", join(headers, "ggml", "include"), lib("libllama."), lib("libggml."), lib("libggml-base")], "compiling test/support/llama-dump.c with scripts/zig cc");
  publish(tmp, exe);
  return exe;
}

/**
 * Runs llama.cpp on `ids` (one batch), then `steps` greedy decode steps, writing every tensor
 * into a new temporary folder. `cpuVariant` (e.g. "haswell") makes llama.cpp load that CPU
 * backend (libggml-cpu-VARIANT.so) instead of the best one for this CPU, to check the comparison
 * on other kernels; `noRepack` keeps it from repacking weights for its AMX (or other) kernels.
 */
export function runLlamaDump(modelPath: string, ids: readonly number[], steps: number, opts: { cpuVariant?: string; noRepack?: boolean } = {}): LlamaDump {
  const exe = llamaDumper();
  const bin = llamaBinDir();
  const dir = mkdtempSync(join(tmpdir(), "lanes-llama-dump-"));
  let backendDir = bin;
  if (opts.cpuVariant) {
    const lib = `libggml-cpu-${opts.cpuVariant}.so`;
    if (!existsSync(join(bin, lib))) throw new Error(`${bin}: no ${lib}`);
    backendDir = join(dir, "backend");
    mkdirSync(backendDir);
    symlinkSync(join(bin, lib), join(backendDir, lib));
  }
  const out = join(dir, "tensors");
  mkdirSync(out);
  const env: Record<string, string | undefined> = { ...process.env, LD_LIBRARY_PATH: [bin, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":") };
  if (opts.noRepack) env.LLAMA_DUMP_NO_REPACK = "1";
  try {
    const stdout = run([exe, backendDir, modelPath, out, String(steps), ...ids.map(String)], "llama-dump", env);
    const facts = JSON.parse(stdout.trim().split("\n").at(-1)!);
    return { dir: out, ...facts, dispose: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** One dumped tensor: ggml's ne (ne[0] innermost) and its elements as float32. */
export interface DumpedTensor {
  ne: [number, number, number, number];
  data: Float32Array;
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The tensors of one llama_decode call, looked up by the end of their file name. */
export class DumpCall {
  readonly files: string[];
  constructor(readonly dir: string) {
    this.files = readdirSync(dir).sort();
  }

  /** The file names ending in `suffix`, in graph order. */
  named(suffix: string): string[] {
    return this.files.filter((f) => f.endsWith(suffix));
  }

  /** The only tensor whose file name ends in `suffix` (throws if none or several). */
  get(suffix: string): DumpedTensor {
    const found = this.named(suffix);
    if (found.length !== 1) throw new Error(`${this.dir}: ${found.length} tensors named *${suffix}`);
    return this.read(found[0]!);
  }

  read(name: string): DumpedTensor {
    const b = readFileSync(join(this.dir, name));
    const h = new Int32Array(b.buffer, b.byteOffset, 6);
    const ne: [number, number, number, number] = [h[1]!, h[2]!, h[3]!, h[4]!];
    const n = ne[0] * ne[1] * ne[2] * ne[3];
    if (h[0] === 0) return { ne, data: new Float32Array(b.buffer.slice(b.byteOffset + 24, b.byteOffset + 24 + 4 * n)) };
    if (h[0] === 1) return { ne, data: Float32Array.from(new Uint16Array(b.buffer.slice(b.byteOffset + 24, b.byteOffset + 24 + 2 * n)), f16ToF32) };
    throw new Error(`${name}: ggml type ${h[0]} (only f32 and f16 are dumped)`);
  }
}
