#!/usr/bin/env bun
/**
 * Builds the npm tarballs: `lanes` and the prebuilt platform packages it lists as
 * optionalDependencies (`@lanes/linux-x64-gnu`, `@lanes/linux-arm64-gnu`, `@lanes/darwin-arm64`).
 *
 *   bun scripts/pack.ts [--out dist] [--targets linux-x64-gnu,linux-arm64-gnu]
 *                       [--prebuilt darwin-arm64=path/to/liblanes.dylib]
 *
 * Linux libraries are cross-compiled here by Zig against glibc 2.28, for each architecture's
 * baseline CPU (the AVX2 kernels are chosen at run time), stripped; each is checked for its glibc
 * floor and for exporting only `lanes_*`. The darwin-arm64 library needs Apple's frameworks, so the
 * macOS workflow builds it and passes it with --prebuilt. Prints one tarball path per line.
 *
 * The published `lanes` manifest is the repository's package.json plus the optionalDependencies,
 * without devDependencies and with only the `build` script: the repository does not list the
 * platform packages itself because they are not on the registry, which `npm ci` would refuse.
 * @module
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const glibcFloor = [2, 28];

interface Platform {
  /** Directory under packages/ and the package's name under @lanes. */
  name: string;
  /** Zig target, for the ones built here. */
  zigTarget?: string;
  library: string;
}

const platforms: Platform[] = [
  { name: "linux-x64-gnu", zigTarget: `x86_64-linux-gnu.${glibcFloor.join(".")}`, library: "liblanes.so" },
  { name: "linux-arm64-gnu", zigTarget: `aarch64-linux-gnu.${glibcFloor.join(".")}`, library: "liblanes.so" },
  { name: "darwin-arm64", library: "liblanes.dylib" },
];

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function run(cmd: string[], cwd = root): string {
  const r = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${r.exitCode}):\n${r.stderr.toString()}${r.stdout.toString()}`);
  return r.stdout.toString();
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(path, JSON.stringify(value, null, 2) + "\n");
}

/** Fails unless the ELF library needs glibc ≤ the floor and exports only lanes_* functions. */
function checkElf(path: string): void {
  const syms = run(["readelf", "--dyn-syms", "--wide", path]);
  const newer = (a: number[], b: number[]) => a[0]! - b[0]! || a[1]! - b[1]!;
  const versions = [...syms.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
  const newest = versions.reduce((a, b) => (newer(b, a) > 0 ? b : a), [0, 0]);
  if (newer(newest, glibcFloor) > 0)
    throw new Error(`${path} needs GLIBC_${newest.join(".")}, above the floor ${glibcFloor.join(".")}`);
  const exported = syms
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 8 && f[4] === "GLOBAL" && f[6] !== "UND")
    .map((f) => f[7]!.split("@")[0]!);
  const foreign = exported.filter((s) => !s.startsWith("lanes_"));
  if (foreign.length) throw new Error(`${path} exports non-lanes symbols: ${foreign.slice(0, 5).join(", ")}`);
  if (exported.length < 20) throw new Error(`${path} exports only ${exported.length} lanes_ symbols`);
}

function npmPack(dir: string, out: string): string {
  const result = JSON.parse(run(["npm", "pack", "--json", "--pack-destination", out], dir)) as { filename: string }[];
  return join(out, result[0]!.filename);
}

const out = resolve(root, option("--out") ?? "dist");
const targets = (option("--targets") ?? "linux-x64-gnu,linux-arm64-gnu").split(",").filter(Boolean);
const prebuilt = new Map(
  process.argv.flatMap((a, i) => (process.argv[i - 1] === "--prebuilt" ? [a.split("=") as [string, string]] : [])),
);
const manifest = readJson(join(root, "package.json"));
const version = manifest.version as string;
rmSync(join(out, "stage"), { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const tarballs: string[] = [];

for (const platform of platforms) {
  let library = prebuilt.get(platform.name);
  if (!library && targets.includes(platform.name)) {
    if (!platform.zigTarget) throw new Error(`${platform.name} is built by the macOS workflow; pass --prebuilt ${platform.name}=PATH`);
    const prefix = join(out, "build", platform.name);
    run(["scripts/zig", "build", "-Doptimize=ReleaseFast", "-Dstrip=true", `-Dtarget=${platform.zigTarget}`, "--prefix", prefix]);
    library = join(prefix, "lib", platform.library);
  }
  if (!library) continue;
  if (platform.library.endsWith(".so")) checkElf(library);
  const stage = join(out, "stage", platform.name);
  mkdirSync(join(stage, "lib"), { recursive: true });
  const pkg = readJson(join(root, "packages", platform.name, "package.json"));
  if (pkg.version !== version) throw new Error(`packages/${platform.name} is version ${pkg.version}, lanes is ${version}`);
  writeJson(join(stage, "package.json"), pkg);
  copyFileSync(library, join(stage, "lib", platform.library));
  copyFileSync(join(root, "LICENSE"), join(stage, "LICENSE"));
  writeFileSync(join(stage, "README.md"), `# ${pkg.name}\n\n${pkg.description}. Installed by \`lanes\` as an optional dependency; not meant to be used directly.\n`);
  tarballs.push(npmPack(stage, out));
}

// lanes itself: the files its manifest lists, as npm selects them.
const listing = JSON.parse(run(["npm", "pack", "--dry-run", "--json"])) as { files: { path: string }[] }[];
const stage = join(out, "stage", "lanes");
for (const { path } of listing[0]!.files) {
  if (path === "package.json") continue;
  mkdirSync(dirname(join(stage, path)), { recursive: true });
  copyFileSync(join(root, path), join(stage, path));
}
const published: Record<string, unknown> = { ...manifest };
delete published.devDependencies;
published.scripts = { build: (manifest.scripts as Record<string, string>).build };
published.optionalDependencies = Object.fromEntries(platforms.map((p) => [`@lanes/${p.name}`, version]));
writeJson(join(stage, "package.json"), published);
tarballs.push(npmPack(stage, out));

for (const t of tarballs) console.log(t);
