// src/abi.ts against the two files it mirrors: every function of ffi/include/lanes.h with its
// argument and result types, and every code of ffi/include/lanes_table.def.
import { describe, expect, test } from "bun:test";
import { FFIType } from "bun:ffi";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { abiVersion, binaryOps, dtypes, randomKinds, reduceOps, Status, symbols, unaryOps } from "../src/abi.ts";
import { checkAbiVersion, native } from "../src/native.ts";
import { LanesError } from "../src/errors.ts";

const root = join(import.meta.dir, "..");
const header = readFileSync(join(root, "ffi/include/lanes.h"), "utf8");
const table = readFileSync(join(root, "ffi/include/lanes_table.def"), "utf8");

// Entries of one table macro: the arguments of every `LANES_<macro>(...)` line.
function entries(macro: string): string[][] {
  const out: string[][] = [];
  for (const m of table.matchAll(new RegExp(`^LANES_${macro}\\(([^)]*)\\)`, "gm"))) out.push(m[1]!.split(",").map((s) => s.trim()));
  return out;
}

const camel = (snake: string) => snake.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

// The FFI type a C parameter of lanes.h travels as (every pointer, text too, as a pointer).
function ffiType(cType: string): FFIType {
  const t = cType.replace(/\bconst\b/g, "").replace(/\s+/g, " ").trim();
  if (t.endsWith("*")) return FFIType.ptr;
  const scalar: Record<string, FFIType> = {
    uint64_t: FFIType.u64,
    int64_t: FFIType.i64,
    int32_t: FFIType.i32,
    uint32_t: FFIType.u32,
    double: FFIType.f64,
    lanes_status: FFIType.i32,
    lanes_dtype: FFIType.i32,
    lanes_unary_op: FFIType.i32,
    lanes_binary_op: FFIType.i32,
    lanes_reduce_op: FFIType.i32,
    lanes_random_kind: FFIType.i32,
  };
  const found = scalar[t];
  if (found === undefined) throw new Error(`no FFI type for C type '${cType}'`);
  return found;
}

describe("the C ABI as src/abi.ts declares it", () => {
  const prototypes = [...header.matchAll(/LANES_API\s+(const char\*|lanes_status)\s+(lanes_\w+)\(([^)]*)\)/g)].map((m) => ({
    returns: m[1]!,
    name: m[2]!,
    args: m[3]!.trim() === "void" ? [] : m[3]!.split(",").map((a) => a.trim().replace(/\s*\w+$/, "")),
  }));

  test("every function of lanes.h is declared, and nothing else", () => {
    expect(prototypes.length).toBeGreaterThan(50);
    expect(Object.keys(symbols).sort()).toEqual(prototypes.map((p) => p.name).sort());
  });

  test("each declaration has the header's argument and result types", () => {
    for (const p of prototypes) {
      const declared = symbols[p.name as keyof typeof symbols];
      const want = { args: p.args.map(ffiType), returns: p.returns === "const char*" ? FFIType.cstring : FFIType.i32 };
      expect({ name: p.name, args: [...declared.args] as FFIType[], returns: declared.returns as FFIType }).toEqual({ name: p.name, ...want });
    }
  });
});

describe("the codes of lanes_table.def", () => {
  test("dtypes: code, bytes and block size", () => {
    const want = Object.fromEntries(entries("DTYPE").map(([code, , name, bytes, block]) => [name, { code: +code!, bytes: +bytes!, block: +block! }]));
    expect(dtypes as Record<string, unknown>).toEqual(want);
  });

  test("status codes", () => {
    const want = Object.fromEntries(entries("STATUS").map(([code, NAME]) => [camel(NAME!.replace(/^ERR_/, "")), +code!]));
    expect(Status as Record<string, number>).toEqual(want);
  });

  test("unary, binary and reduction ops, and random distributions", () => {
    const codes = (macro: string) => Object.fromEntries(entries(macro).map(([code, , name]) => [name, +code!]));
    expect(unaryOps as Record<string, number>).toEqual(codes("UNARY"));
    expect(binaryOps as Record<string, number>).toEqual(codes("BINARY"));
    expect(reduceOps as Record<string, number>).toEqual(codes("REDUCE"));
    expect(randomKinds as Record<string, number>).toEqual(Object.fromEntries(entries("RANDOM").map(([code, , name]) => [name!.replace("random.", ""), +code!])));
  });
});

describe("the ABI version", () => {
  test("the header, the bindings and the loaded library agree", () => {
    const inHeader = Number(/#define LANES_ABI_VERSION (\d+)/.exec(header)?.[1]);
    expect(abiVersion).toBe(inHeader);
    const out = new Uint32Array(1);
    expect(native.lanes_abi_version_read(out)).toBe(Status.ok);
    expect(out[0]).toBe(inHeader);
    expect(native.lanes_abi_version_read(null)).toBe(Status.invalidArgument);
  });

  test("a library of another version, or of none, is refused with a message naming both", () => {
    expect(() => checkAbiVersion("/x/liblanes.so", abiVersion)).not.toThrow();
    for (const found of [abiVersion - 1, abiVersion + 1, "Symbol not found"]) {
      let error: unknown;
      try {
        checkAbiVersion("/x/liblanes.so", found);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(LanesError);
      expect(String(error)).toContain("/x/liblanes.so");
      expect(String(error)).toContain(`needs version ${abiVersion}`);
      expect(String(error)).toContain(typeof found === "number" ? `version ${found}` : "Symbol not found");
    }
  });

  test("loading a shared library that is not liblanes fails with that message, not on a missing symbol", () => {
    // The C library this process already has loaded: a real shared library without our symbols.
    const libc =
      process.platform === "darwin"
        ? "/usr/lib/libSystem.B.dylib"
        : readFileSync("/proc/self/maps", "utf8").match(/\s(\/\S*libc\.so[.\d]*)$/m)![1]!;
    const child = Bun.spawnSync([process.execPath, "-e", 'await import("./src/index.ts")'], {
      cwd: root,
      env: { ...process.env, LANES_LIBRARY_PATH: libc },
    });
    expect(child.exitCode).not.toBe(0);
    expect(child.stderr.toString()).toContain(`${libc} gave no C ABI version (`);
    expect(child.stderr.toString()).toContain("lanes_abi_version_read");
  });
});
