// The GGUF reader: files written by the test round-trip, llama.cpp's gguf-py (numpy) dequantizes
// every tensor type to the same float32 values, the real SmolLM2 file's tensors match gguf-py
// bit for bit, and corrupt, truncated or unsupported files get a GgufError naming the tensor.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type GgmlTypeName, GgufError, parseGguf, readGguf, tensorFloat32 } from "../src/models/gguf.ts";
import { defaultModelPath } from "../src/models/text-model.ts";
import { readWithGgufPy } from "./support/gguf-reference.ts";
import { type EntryToWrite, randomTensorData, rng, type TensorToWrite, writeGguf } from "./support/gguf-writer.ts";

const types: GgmlTypeName[] = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"];

const metadata: [string, EntryToWrite][] = [
  ["general.architecture", { type: "string", value: "test" }],
  ["general.alignment", { type: "uint32", value: 64 }],
  ["t.u8", { type: "uint8", value: 250 }],
  ["t.i8", { type: "int8", value: -120 }],
  ["t.u16", { type: "uint16", value: 65000 }],
  ["t.i16", { type: "int16", value: -32000 }],
  ["t.u32", { type: "uint32", value: 4000000000 }],
  ["t.i32", { type: "int32", value: -2000000000 }],
  ["t.f32", { type: "float32", value: 1e-5 }],
  ["t.bool", { type: "bool", value: true }],
  ["t.string", { type: "string", value: "héllo 世界 🙂 <|im_start|>" }],
  ["t.u64", { type: "uint64", value: 18446744073709551557n }],
  ["t.i64", { type: "int64", value: -9007199254740993n }],
  ["t.f64", { type: "float64", value: Math.PI }],
  ["t.strings", { type: "array", itemType: "string", value: ["a", "", "Ġthe", "日本"] }],
  ["t.bools", { type: "array", itemType: "bool", value: [true, false, true] }],
  ["t.i32s", { type: "array", itemType: "int32", value: Int32Array.of(1, -2, 3) }],
  ["t.f32s", { type: "array", itemType: "float32", value: Float32Array.of(0.5, -1.25) }],
  ["t.u8s", { type: "array", itemType: "uint8", value: Uint8Array.of(0, 255) }],
  ["t.u64s", { type: "array", itemType: "uint64", value: BigUint64Array.of(1n, 2n ** 60n) }],
  ["t.f64s", { type: "array", itemType: "float64", value: Float64Array.of(1e300, -0.1) }],
  ["t.empty", { type: "array", itemType: "int16", value: new Int16Array(0) }],
  [
    "t.nested",
    {
      type: "array",
      itemType: "array",
      value: [{ type: "array", itemType: "int32", value: Int32Array.of(7, 8) } as unknown as number, { type: "array", itemType: "string", value: ["x"] } as unknown as number],
    },
  ],
];

function sampleTensors(seed: number): TensorToWrite[] {
  const random = rng(seed);
  return types.map((type, i) => ({ name: `t${i}.${type.toLowerCase()}`, type, shape: [3, 64], data: randomTensorData(type, 3 * 64, random) }));
}

function withTempFile<T>(bytes: Uint8Array, fn: (path: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "lanes-gguf-"));
  try {
    const path = join(dir, "model.gguf");
    writeFileSync(path, bytes);
    return fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function expectGgufError(fn: () => unknown, message: RegExp, tensor?: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(GgufError);
  expect((caught as GgufError).message).toMatch(message);
  expect((caught as GgufError).code).toBe("INVALID_ARGUMENT");
  expect((caught as GgufError).tensor).toBe(tensor);
}

/** Index of the first element whose bits differ, or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

describe("GGUF files written by the test", () => {
  const tensors = sampleTensors(11);
  const bytes = writeGguf({ metadata, tensors, alignment: 64 });

  test("round-trip: metadata of every value type, tensor infos, aligned data offsets", () => {
    const file = parseGguf(bytes);
    expect(file.version).toBe(3);
    expect(file.alignment).toBe(64);
    expect(file.dataOffset % 64).toBe(0);
    expect([...file.metadata.keys()]).toEqual(metadata.map(([k]) => k));
    for (const [key, e] of metadata) {
      const got = file.metadata.get(key)!;
      expect(got.type).toBe(e.type);
      expect(got.itemType).toBe(e.itemType);
      if (key === "t.nested") expect(got.value).toEqual([Int32Array.of(7, 8), ["x"]]);
      else if (e.type === "float32") expect(got.value).toBe(Math.fround(e.value as number));
      else expect(got.value).toEqual(e.value);
    }
    for (const t of tensors) {
      const info = file.tensors.get(t.name)!;
      expect(info.type).toBe(t.type as GgmlTypeName);
      expect(info.shape).toEqual(t.shape);
      expect(info.offset % 64).toBe(0);
      expect(bytes.subarray(info.offset, info.offset + info.byteLength)).toEqual(t.data);
    }
  });

  test("gguf-py reads the same metadata and dequantizes every type to the same float32 bits", () => {
    withTempFile(bytes, (path) => {
      const ref = readWithGgufPy(path);
      expect(ref.metadata["t.string"]!.value).toBe("héllo 世界 🙂 <|im_start|>");
      expect(ref.metadata["t.u64"]!.value).toBe("18446744073709551557");
      expect(ref.metadata["t.i32s"]).toEqual({ types: ["ARRAY", "INT32"], value: [1, -2, 3] });
      expect(ref.metadata["t.bools"]!.value).toEqual([true, false, true]);
      const file = readGguf(path);
      expect(ref.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
      for (const t of ref.tensors) {
        const info = file.tensors.get(t.name)!;
        expect(info.type as string).toBe(t.type);
        expect(info.shape).toEqual(t.shape);
        expect(info.offset).toBe(t.offset);
        const ours = tensorFloat32(file, t.name);
        expect(ours.length).toBe(t.values.length);
        expect(`${t.name}: first differing element ${firstBitDifference(ours, t.values)}`).toBe(`${t.name}: first differing element -1`);
      }
    });
  }, 60_000);

});

describe("bad GGUF files get a GgufError", () => {
  const tensors = sampleTensors(12);
  const good = writeGguf({ metadata: metadata.slice(0, 3), tensors, alignment: 64 });
  const goodFile = parseGguf(good);
  const lastTensor = tensors[tensors.length - 1]!.name;

  test("truncated in the header, in the tensor infos, or in the data (naming the tensor cut)", () => {
    expectGgufError(() => parseGguf(good.subarray(0, 6)), /truncated: version/);
    expectGgufError(() => parseGguf(good.subarray(0, 40)), /truncated/);
    const lastInfo = good.lastIndexOf(new TextEncoder().encode(lastTensor).at(-1)!, goodFile.dataOffset) + 1;
    expectGgufError(() => parseGguf(good.subarray(0, lastInfo + 6)), new RegExp(`truncated: tensor "${lastTensor.replace(".", "\\.")}" dimension 0 at byte`), lastTensor);
    const last = goodFile.tensors.get(lastTensor)!;
    expectGgufError(() => parseGguf(good.subarray(0, last.offset + 5)), new RegExp(`truncated: tensor "${lastTensor.replace(".", "\\.")}" needs bytes`), lastTensor);
    withTempFile(good.subarray(0, good.length - 100), (path) => {
      expectGgufError(() => readGguf(path), /truncated/, lastTensor);
      expectGgufError(() => readGguf(path, { tensorData: false }), /truncated/, lastTensor);
    });
  });

  test("corrupt: magic, version, lengths, value types, alignment, offsets, dimensions, duplicates", () => {
    const patched = (at: number, write: (d: DataView) => void) => {
      const b = good.slice();
      write(new DataView(b.buffer, at));
      return b;
    };
    expectGgufError(() => parseGguf(patched(0, (d) => d.setUint32(0, 0x46554746, true))), /not a GGUF file/);
    expectGgufError(() => parseGguf(patched(4, (d) => d.setUint32(0, 7, true))), /version 7/);
    expectGgufError(() => parseGguf(patched(8, (d) => d.setBigUint64(0, 1n << 50n, true))), /corrupt: tensor count/);
    expectGgufError(() => parseGguf(patched(24, (d) => d.setBigUint64(0, 1n << 40n, true))), /corrupt: metadata key 0 length/);
    const firstValueType = 24 + 8 + "general.architecture".length;
    expectGgufError(() => parseGguf(patched(firstValueType, (d) => d.setUint32(0, 13, true))), /unknown value type 13/);
    const badAlignment = writeGguf({ metadata: [["general.alignment", { type: "uint32", value: 48 }]], tensors: [] });
    expectGgufError(() => parseGguf(badAlignment), /alignment is 48/);
    const one = (t: Partial<TensorToWrite>, extra: TensorToWrite[] = []) =>
      writeGguf({ metadata: [], tensors: [{ name: "w", type: "F32", shape: [2, 32], data: new Uint8Array(256), ...t }, ...extra] });
    expectGgufError(() => parseGguf(one({ shape: [] })), /"w" has 0 dimensions/, "w");
    expectGgufError(() => parseGguf(one({ shape: [1, 1, 1, 1, 2] })), /"w" has 5 dimensions/, "w");
    expectGgufError(() => parseGguf(one({}, [{ name: "w", type: "F32", shape: [2], data: new Uint8Array(8) }])), /"w" appears twice/, "w");
    expectGgufError(() => parseGguf(one({ type: "Q4_0", shape: [2, 48], data: new Uint8Array(54) })), /rows of 48 elements, not a multiple of 32/, "w");
    expectGgufError(() => parseGguf(one({ offset: 4 })), /"w" data offset 4 is not a multiple of the alignment 32/, "w");
  });

  test("unknown and unsupported tensor types name the tensor and the type", () => {
    const file = (type: number) => writeGguf({ metadata: [], tensors: [{ name: "blk.0.ffn_up.weight", type, shape: [1, 256], data: new Uint8Array(144) }] });
    expectGgufError(() => parseGguf(file(12)), /"blk\.0\.ffn_up\.weight" has unsupported type Q4_K \(12\); supported: F32, F16, Q4_0, Q4_1, Q8_0, BF16/, "blk.0.ffn_up.weight");
    expectGgufError(() => parseGguf(file(99)), /"blk\.0\.ffn_up\.weight" has unknown type 99/, "blk.0.ffn_up.weight");
  });
});

describe("the real SmolLM2-135M-Instruct file", () => {
  test("header: llama metadata, 272 tensors (Q8_0 embedding, Q4_1 matrices, F32 norms)", () => {
    const file = readGguf(defaultModelPath(), { tensorData: false });
    expect(file.version).toBe(3);
    expect(file.metadata.get("general.architecture")!.value).toBe("llama");
    expect(file.metadata.get("tokenizer.ggml.pre")!.value).toBe("smollm");
    expect(file.tensors.size).toBe(272);
    const counts: Record<string, number> = {};
    for (const t of file.tensors.values()) counts[t.type] = (counts[t.type] ?? 0) + 1;
    expect(counts).toEqual({ Q8_0: 1, Q4_1: 210, F32: 61 });
    expect(file.tensors.get("token_embd.weight")!.shape).toEqual([49152, 576]);
    expect(file.bytes.byteLength).toBeLessThan(10 << 20);
    expect([...file.tensors.values()]).toEqual([...readGguf(defaultModelPath()).tensors.values()]);
    expectGgufError(() => tensorFloat32(file, "blk.29.ffn_down.weight"), /its data was not read/, "blk.29.ffn_down.weight");
  }, 60_000);

  test("dequantized tensors equal gguf-py's bit for bit (Q8_0, Q4_1, F32)", () => {
    const names = ["token_embd.weight", "output_norm.weight", ...["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"].map((n) => `blk.29.${n}.weight`)];
    const ref = readWithGgufPy(defaultModelPath(), names);
    expect(ref.tensors.map((t) => t.name).sort()).toEqual([...names].sort());
    const file = readGguf(defaultModelPath());
    for (const t of ref.tensors) {
      expect(file.tensors.get(t.name)!.shape).toEqual(t.shape);
      expect(`${t.name}: first differing element ${firstBitDifference(tensorFloat32(file, t.name), t.values)}`).toBe(`${t.name}: first differing element -1`);
    }
  }, 120_000);
});
