/**
 * A small GGUF writer for tests, written from the format description (not from our reader):
 * typed metadata, tensor infos, aligned data. Also random tensor contents of each type.
 */
import { type GgmlTypeName, GgmlType, ggmlTypeLayout, type GgufValue, type GgufValueTypeName, GgufValueType } from "../../src/models/gguf.ts";

/** A metadata entry to write. */
export interface EntryToWrite {
  type: GgufValueTypeName;
  itemType?: GgufValueTypeName;
  value: GgufValue;
}

/** A tensor to write: `type` a supported name or a raw ggml type code; `shape` row-major. */
export interface TensorToWrite {
  name: string;
  type: GgmlTypeName | number;
  shape: number[];
  data: Uint8Array;
  /** Written as the tensor's data offset instead of the real one (to make corrupt files). */
  offset?: number;
}

class Bytes {
  chunks: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.push(b);
  }
  u64(v: number | bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    this.push(b);
  }
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.push(b);
  }
  pad(alignment: number): void {
    const rem = this.length % alignment;
    if (rem) this.push(new Uint8Array(alignment - rem));
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

function scalar(out: Bytes, type: GgufValueTypeName, v: GgufValue): void {
  const b = new Uint8Array(8);
  const d = new DataView(b.buffer);
  switch (type) {
    case "string": return out.string(v as string);
    case "bool": return out.push(Uint8Array.of(v ? 1 : 0));
    case "uint8": d.setUint8(0, v as number); return out.push(b.subarray(0, 1));
    case "int8": d.setInt8(0, v as number); return out.push(b.subarray(0, 1));
    case "uint16": d.setUint16(0, v as number, true); return out.push(b.subarray(0, 2));
    case "int16": d.setInt16(0, v as number, true); return out.push(b.subarray(0, 2));
    case "uint32": d.setUint32(0, v as number, true); return out.push(b.subarray(0, 4));
    case "int32": d.setInt32(0, v as number, true); return out.push(b.subarray(0, 4));
    case "float32": d.setFloat32(0, v as number, true); return out.push(b.subarray(0, 4));
    case "uint64": d.setBigUint64(0, BigInt(v as bigint), true); return out.push(b);
    case "int64": d.setBigInt64(0, BigInt(v as bigint), true); return out.push(b);
    case "float64": d.setFloat64(0, v as number, true); return out.push(b);
    default: throw new Error(`scalar of type ${type}`);
  }
}

// An array's body: item type, count, items; items that are arrays are bodies themselves (no tag).
function arrayBody(out: Bytes, itemType: GgufValueTypeName, items: GgufValue): void {
  const list = [...(items as Iterable<GgufValue>)];
  out.u32(GgufValueType[itemType]);
  out.u64(list.length);
  for (const item of list) {
    if (itemType === "array") {
      const inner = item as unknown as EntryToWrite;
      arrayBody(out, inner.itemType!, inner.value);
    } else scalar(out, itemType, item);
  }
}

function value(out: Bytes, e: EntryToWrite): void {
  out.u32(GgufValueType[e.type]);
  if (e.type === "array") arrayBody(out, e.itemType!, e.value);
  else scalar(out, e.type, e.value);
}

/** Bytes of a GGUF file. Tensor data is laid out in the given order, each at an aligned offset. */
export function writeGguf(opts: { metadata: [string, EntryToWrite][]; tensors: TensorToWrite[]; alignment?: number; version?: number }): Uint8Array {
  const alignment = opts.alignment ?? 32;
  const out = new Bytes();
  out.push(new TextEncoder().encode("GGUF"));
  out.u32(opts.version ?? 3);
  out.u64(opts.tensors.length);
  out.u64(opts.metadata.length);
  for (const [key, e] of opts.metadata) {
    out.string(key);
    value(out, e);
  }
  let offset = 0;
  for (const t of opts.tensors) {
    out.string(t.name);
    out.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) out.u64(d);
    out.u32(typeof t.type === "number" ? t.type : GgmlType[t.type]);
    out.u64(t.offset ?? offset);
    offset += Math.ceil(t.data.length / alignment) * alignment;
  }
  out.pad(alignment);
  for (const t of opts.tensors) {
    out.push(t.data);
    out.pad(alignment);
  }
  return out.concat();
}

/** A seeded generator of uniform [0, 1) draws (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random contents of `count` elements of `type` (finite scales, every nibble/int8 value possible). */
export function randomTensorData(type: GgmlTypeName, count: number, random: () => number, scale = 1): Uint8Array {
  const normal = () => (random() + random() + random() - 1.5) * 2 * scale;
  if (type === "F32") return new Uint8Array(Float32Array.from({ length: count }, normal).buffer);
  if (type === "F16") return new Uint8Array(Float16Array.from({ length: count }, normal).buffer);
  if (type === "BF16") {
    const f = Float32Array.from({ length: count }, normal);
    return new Uint8Array(Uint16Array.from(new Uint32Array(f.buffer), (bits) => bits >>> 16).buffer);
  }
  const { blockBytes } = ggmlTypeLayout[type];
  const out = new Uint8Array((count / 32) * blockBytes);
  for (let at = 0; at < out.length; at += blockBytes) {
    for (let j = 0; j < blockBytes; j++) out[at + j] = Math.floor(random() * 256);
    const half = new Uint8Array(Float16Array.of((0.05 + random()) * scale * 0.2, (random() - 0.5) * scale).buffer);
    out.set(type === "Q4_1" ? half : half.subarray(0, 2), at);
  }
  return out;
}
