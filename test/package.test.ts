// Distribution, as a user meets it: the tarballs `scripts/pack.ts` makes (lanes and the
// cross-compiled @lanes/linux-x64-gnu) hold what they must and nothing else; a fresh project
// `bun add`s them and runs the README's ten-line example with no Zig and no repository build in
// reach; the example service compiled with `bun build --compile` runs from an empty folder on
// the library it embeds. The API reference in docs/api is what typedoc makes from the sources.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import * as lx from "../src/index.ts";
import { generate } from "../src/models/generate.ts";
import { encode } from "../src/models/tokenizer.ts";
import { loadModel } from "../src/models/weights.ts";
import { expectQuickstartOutput } from "./support/quickstart.ts";
import { serviceUrl } from "./support/service-url.ts";

const root = join(import.meta.dir, "..");
const scratch = mkdtempSync(join(tmpdir(), "lanes-package-"));
const bun = process.execPath;
// A PATH with bun and the system tools only: no zig (the repo's is reached via scripts/zig).
const bareEnv = { PATH: `${dirname(bun)}:/usr/bin:/bin`, HOME: join(scratch, "home"), TMPDIR: tmpdir() };
let lanesTarball = "";
let platformTarball = "";
const linuxX64 = process.platform === "linux" && process.arch === "x64";

function run(cmd: string[], cwd: string, env: Record<string, string> = { ...process.env } as Record<string, string>): string {
  const r = Bun.spawnSync(cmd, { cwd, env, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} exited ${r.exitCode}:\n${r.stderr.toString()}\n${r.stdout.toString()}`);
  return r.stdout.toString();
}

function tarList(tarball: string): string[] {
  return run(["tar", "-tzf", tarball], scratch).split("\n").filter(Boolean).sort();
}

beforeAll(() => {
  mkdirSync(bareEnv.HOME, { recursive: true });
  if (!linuxX64) return;
  const out = run([bun, "scripts/pack.ts", "--targets", "linux-x64-gnu", "--out", join(scratch, "dist")], root).trim().split("\n");
  platformTarball = out.find((p) => p.includes("lanes-linux-x64-gnu"))!;
  lanesTarball = out.find((p) => /lanes-\d/.test(p))!;
}, 600_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.if(linuxX64)("packages", () => {
  test("the lanes tarball holds the TS sources, the native sources to build from, docs files, and nothing else", () => {
    const files = tarList(lanesTarball).map((f) => f.replace(/^package\//, ""));
    const allowed = [/^src\/.+\.ts$/, /^ffi\/include\/lanes(\.h|_table\.def)$/, /^ffi\/src\/.+\.(cpp|hpp)$/, /^ffi\/lanes\.map$/, /^cpu\/.+\.(cpp|hpp)$/, /^cuda\/.+\.(cpp|hpp|cu|zig)$/, /^metal\/.+\.(mm|hpp|metal|zig)$/, /^build\.zig$/, /^scripts\/zig$/, /^(package\.json|README\.md|LICENSE|CHANGELOG\.md)$/];
    expect(files.filter((f) => !allowed.some((r) => r.test(f)))).toEqual([]);
    for (const needed of ["package.json", "README.md", "LICENSE", "src/index.ts", "src/models/index.ts", "src/serve/index.ts", "src/serve/engine-worker.ts", "src/cli.ts", "ffi/include/lanes.h", "ffi/include/lanes_table.def", "cpu/kernels.cpp", "cuda/kernels.cu", "build.zig", "metal/kernels.metal"])
      expect(files).toContain(needed);
    // Every TS source of the repository ships (nothing the API imports is left out).
    const sources = (dir: string): string[] =>
      readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(`${dir}/${e.name}`) : [`${dir}/${e.name}`]));
    for (const s of sources("src")) expect(files).toContain(s);

    const manifest = JSON.parse(run(["tar", "-xzOf", lanesTarball, "package/package.json"], scratch)) as Record<string, unknown>;
    expect(manifest.optionalDependencies).toEqual({ "@lanes/linux-x64-gnu": "0.1.0", "@lanes/linux-arm64-gnu": "0.1.0", "@lanes/darwin-arm64": "0.1.0" });
    expect(manifest.devDependencies).toBeUndefined();
    expect(Object.keys(manifest.exports as object)).toEqual([".", "./models", "./serve", "./package.json"]);
  });

  test("@lanes/linux-x64-gnu holds only the library, with its platform fields", () => {
    expect(tarList(platformTarball)).toEqual(["package/LICENSE", "package/README.md", "package/lib/liblanes.so", "package/package.json"]);
    const manifest = JSON.parse(run(["tar", "-xzOf", platformTarball, "package/package.json"], scratch)) as Record<string, unknown>;
    expect([manifest.os, manifest.cpu, manifest.libc]).toEqual([["linux"], ["x64"], ["glibc"]]);
  });

  test("a fresh project bun-adds the tarballs and runs the ten-line example, with no Zig on PATH", () => {
    const app = join(scratch, "app");
    mkdirSync(app);
    // The override stands in for the registry, which doesn't have the platform package.
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, overrides: { "@lanes/linux-x64-gnu": `file:${platformTarball}` } }));
    run([bun, "add", lanesTarball], app, bareEnv);
    expect(readdirSync(join(app, "node_modules", "@lanes"))).toEqual(["linux-x64-gnu"]);
    expect(Bun.spawnSync(["which", "zig"], { env: bareEnv }).exitCode).not.toBe(0);

    copyFileSync(join(root, "examples", "quickstart.ts"), join(app, "index.ts"));
    writeFileSync(join(app, "where.ts"), `import { libraryPath } from "lanes";\nconsole.log(libraryPath());\n`);
    expect(run([bun, "where.ts"], app, bareEnv).trim()).toBe(join(app, "node_modules", "@lanes", "linux-x64-gnu", "lib", "liblanes.so"));

    const out = run([bun, "index.ts"], app, bareEnv);
    expectQuickstartOutput(out);

    // With none of the three places holding a library, the error lists each and how to build.
    renameSync(join(app, "node_modules", "@lanes"), join(scratch, "platform-away"));
    try {
      const r = Bun.spawnSync([bun, "where.ts"], { cwd: app, env: { ...bareEnv, LANES_LIBRARY_PATH: "/nonexistent/liblanes.so" }, stderr: "pipe" });
      expect(r.exitCode).not.toBe(0);
      const message = r.stderr.toString();
      expect(message).toContain(
        `native library not found (tried: /nonexistent/liblanes.so, ${join(app, "node_modules", "lanes", "zig-out", "lib", "liblanes.so")}, @lanes/linux-x64-gnu (not installed))`,
      );
      expect(message).toContain("bun run build");
    } finally {
      renameSync(join(scratch, "platform-away"), join(app, "node_modules", "@lanes"));
    }
  }, 120_000);

  test("the service compiled with bun build --compile runs from an empty folder on its embedded library", async () => {
    const app = join(scratch, "app");
    for (const f of ["service.ts", "embed-library.ts", "service-executable.ts"]) copyFileSync(join(root, "examples", f), join(app, f));
    run([bun, "build", "--compile", "service-executable.ts", "node_modules/lanes/src/serve/engine-worker.ts", "--outfile", "lanes-service"], app, bareEnv);
    const elsewhere = join(scratch, "elsewhere");
    mkdirSync(elsewhere);
    renameSync(join(app, "lanes-service"), join(elsewhere, "lanes-service"));
    renameSync(join(app, "node_modules"), join(scratch, "node_modules-away")); // nothing on disk to load from

    const proc = Bun.spawn([join(elsewhere, "lanes-service")], { cwd: elsewhere, env: { ...bareEnv, PORT: "0", LANES_SERVE_WORKERS: "2" }, stdout: "pipe", stderr: "pipe" });
    try {
      const url = await serviceUrl(proc, "lanes-service");
      const requests = ["compiled", "single file", "no repo"].map(async (prompt) => {
        const res = await fetch(`${url}/v1/generate`, { method: "POST", body: JSON.stringify({ model: "hybrid", prompt, max_tokens: 10 }) });
        expect(res.status).toBe(200);
        return ((await res.json()) as { tokens: number[] }).tokens;
      });
      const served = await Promise.all(requests);

      // The executable wrote its default weights under its own HOME; the same seeded weights here.
      const model = loadModel("hybrid");
      using stream = lx.newStream();
      for (const [i, prompt] of ["compiled", "single file", "no repo"].entries())
        expect(served[i]).toEqual((await generate(model, { tokens: encode(prompt), maxTokens: 10 }, stream)).tokens);
      model.dispose();
      expect(readdirSync(join(bareEnv.HOME, ".cache", "lanes", "models")).length).toBeGreaterThan(0);

      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    } finally {
      proc.kill();
      renameSync(join(scratch, "node_modules-away"), join(app, "node_modules"));
    }
  }, 120_000);
});

describe("API reference", () => {
  test("docs/api is what typedoc makes from the sources, with every export documented", () => {
    const out = join(scratch, "api");
    // typedoc.json treats warnings (an undocumented export, a broken link) as errors.
    run([join(root, "node_modules", ".bin", "typedoc"), "--out", out], root);
    const listing = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listing(join(dir, e.name)).map((f) => `${e.name}/${f}`) : [e.name])).sort();
    const made = listing(out);
    expect(listing(join(root, "docs", "api"))).toEqual(made);
    for (const f of made) expect(readFileSync(join(root, "docs", "api", f), "utf8")).toBe(readFileSync(join(out, f), "utf8"));
  }, 120_000);
});
