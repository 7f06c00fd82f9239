/**
 * The GGUF format (llama.cpp's model files, version 3): a header, typed metadata key/values,
 * tensor descriptions, then the tensor data at an aligned offset. This reader checks every
 * length and offset against the file before use, so a corrupt or truncated file is a
 * {@link GgufError} naming the key or tensor, never an out-of-range read. Tensor types F32,
 * F16, BF16, Q8_0, Q4_0 and Q4_1 dequantize to float32 in JS (block layouts of ggml-quants).
 * @module
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { LanesError } from "../errors.ts";

/** A GGUF file that cannot be used: malformed, truncated, of an unsupported type, or not fitting the model. */
export class GgufError extends LanesError {
  /** The tensor concerned, when there is one. */
  readonly tensor: string | undefined;
  constructor(message: string, tensor?: string) {
    super("INVALID_ARGUMENT", message);
    this.tensor = tensor;
  }
}

/** Metadata value types, by their GGUF codes. */
export const GgufValueType = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

/** The name of a metadata value type. */
export type GgufValueTypeName = keyof typeof GgufValueType;

/** A numeric metadata array, read into the typed array of its element type. */
export type GgufNumericArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array;

/** A metadata value: 64-bit integers are bigints, numeric arrays typed arrays. */
export type GgufValue = number | bigint | boolean | string | GgufNumericArray | string[] | boolean[] | GgufValue[];

/** A metadata value with its type (`itemType` for arrays). */
export interface GgufEntry {
  type: GgufValueTypeName;
  itemType?: GgufValueTypeName;
  value: GgufValue;
}

/** Tensor types this reader loads, by their ggml codes. */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 8, BF16: 30 } as const;

/** The name of a supported tensor type. */
export type GgmlTypeName = keyof typeof GgmlType;

// ggml's other type codes, for a clear message when a file uses one this reader does not load.
const otherTypeNames: Record<number, string> = {
  6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
  16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS",
  24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
};

/** Elements per block and bytes per block of each tensor type. */
export const ggmlTypeLayout: Record<GgmlTypeName, { blockSize: number; blockBytes: number }> = {
  F32: { blockSize: 1, blockBytes: 4 },
  F16: { blockSize: 1, blockBytes: 2 },
  BF16: { blockSize: 1, blockBytes: 2 },
  Q8_0: { blockSize: 32, blockBytes: 34 },
  Q4_0: { blockSize: 32, blockBytes: 18 },
  Q4_1: { blockSize: 32, blockBytes: 20 },
};

const typeByCode = new Map<number, GgmlTypeName>(Object.entries(GgmlType).map(([k, v]) => [v, k as GgmlTypeName]));

/** One tensor's description. `shape` is row-major (outermost first): GGUF's `ne` reversed. */
export interface GgufTensorInfo {
  name: string;
  type: GgmlTypeName;
  shape: number[];
  /** Byte offset from the start of the file. */
  offset: number;
  byteLength: number;
}

/** A parsed GGUF file: metadata, tensor infos, and (when read) the bytes behind them. */
export interface GgufFile {
  version: number;
  metadata: Map<string, GgufEntry>;
  tensors: Map<string, GgufTensorInfo>;
  alignment: number;
  /** Where the tensor data section starts in the file. */
  dataOffset: number;
  /** The file's bytes from offset 0 (all of them when tensor data was read, else the header part). */
  bytes: Uint8Array;
}

const magic = 0x46554747; // "GGUF" little-endian
const maxArrayItems = 1 << 28;
const maxStringBytes = 1 << 30;
const maxDims = 4;

class Reader {
  pos = 0;
  readonly view: DataView;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });
  constructor(
    readonly bytes: Uint8Array,
    readonly source: string,
    readonly fileSize: number,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(n: number, what: string): void {
    if (this.pos + n > this.bytes.byteLength) {
      const where = this.bytes.byteLength < this.fileSize ? "the part of the file read" : `the file (${this.fileSize} bytes)`;
      throw new TruncatedHeader(`${this.source}: truncated: ${what} at byte ${this.pos} needs ${n} bytes, past the end of ${where}`);
    }
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  /** A u64 that must be a count or size no larger than `max`. */
  count(what: string, max: number): number {
    const v = this.u64(what);
    if (v > BigInt(max)) throw new GgufError(`${this.source}: corrupt: ${what} is ${v} (at most ${max} possible here)`);
    return Number(v);
  }
  string(what: string): string {
    const n = this.count(`${what} length`, maxStringBytes);
    this.need(n, what);
    const s = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return this.#decoder.decode(s);
    } catch {
      throw new GgufError(`${this.source}: corrupt: ${what} is not valid UTF-8`);
    }
  }
}

// The header runs past the bytes read so far: the caller reads more, or reports truncation.
class TruncatedHeader extends GgufError {}

const valueTypeNames = new Map<number, GgufValueTypeName>(Object.entries(GgufValueType).map(([k, v]) => [v, k as GgufValueTypeName]));
const itemBytes: Partial<Record<GgufValueTypeName, number>> = {
  uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, bool: 1, uint64: 8, int64: 8, float64: 8,
};

function valueType(r: Reader, what: string): GgufValueTypeName {
  const code = r.u32(`${what} type`);
  const name = valueTypeNames.get(code);
  if (!name) throw new GgufError(`${r.source}: corrupt: ${what} has unknown value type ${code}`);
  return name;
}

function scalar(r: Reader, type: GgufValueTypeName, what: string): number | bigint | boolean | string {
  const v = r.view;
  const at = r.pos;
  switch (type) {
    case "string":
      return r.string(what);
    case "bool": {
      const b = r.u8(what);
      if (b > 1) throw new GgufError(`${r.source}: corrupt: ${what} is a bool of value ${b}`);
      return b === 1;
    }
    default: {
      const n = itemBytes[type]!;
      r.need(n, what);
      r.pos += n;
      switch (type) {
        case "uint8": return v.getUint8(at);
        case "int8": return v.getInt8(at);
        case "uint16": return v.getUint16(at, true);
        case "int16": return v.getInt16(at, true);
        case "uint32": return v.getUint32(at, true);
        case "int32": return v.getInt32(at, true);
        case "float32": return v.getFloat32(at, true);
        case "uint64": return v.getBigUint64(at, true);
        case "int64": return v.getBigInt64(at, true);
        default: return v.getFloat64(at, true);
      }
    }
  }
}

function numericArray(r: Reader, type: GgufValueTypeName, n: number, what: string): GgufNumericArray {
  const size = itemBytes[type]!;
  r.need(n * size, what);
  // Copied out: the source offset need not be aligned for the typed array.
  const raw = r.bytes.slice(r.pos, r.pos + n * size);
  r.pos += n * size;
  const b = raw.buffer;
  switch (type) {
    case "uint8": return raw;
    case "int8": return new Int8Array(b);
    case "uint16": return new Uint16Array(b);
    case "int16": return new Int16Array(b);
    case "uint32": return new Uint32Array(b);
    case "int32": return new Int32Array(b);
    case "float32": return new Float32Array(b);
    case "uint64": return new BigUint64Array(b);
    case "int64": return new BigInt64Array(b);
    default: return new Float64Array(b);
  }
}

function value(r: Reader, type: GgufValueTypeName, what: string): GgufEntry {
  return type === "array" ? arrayValue(r, what, 0) : { type, value: scalar(r, type, what) };
}

// An array's body: item type, count, items. Items that are arrays carry no type tag of their own.
function arrayValue(r: Reader, what: string, depth: number): GgufEntry {
  const itemType = valueType(r, `${what} item`);
  const n = r.count(`${what} item count`, maxArrayItems);
  if (itemType === "array") {
    if (depth >= 4) throw new GgufError(`${r.source}: corrupt: ${what} nests arrays more than 4 deep`);
    const out: GgufValue[] = [];
    for (let i = 0; i < n; i++) out.push(arrayValue(r, `${what}[${i}]`, depth + 1).value);
    return { type: "array", itemType, value: out };
  }
  if (itemType === "string") {
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = r.string(`${what}[${i}]`);
    return { type: "array", itemType, value: out };
  }
  if (itemType === "bool") {
    const out: boolean[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = scalar(r, "bool", `${what}[${i}]`) as boolean;
    return { type: "array", itemType, value: out };
  }
  return { type: "array", itemType, value: numericArray(r, itemType, n, what) };
}

function tensorInfo(r: Reader, index: number): Omit<GgufTensorInfo, "offset"> & { relative: bigint } {
  const name = r.string(`tensor ${index} name`);
  try {
    return tensorShapeAndType(r, name);
  } catch (e) {
    // Name the tensor whose description is bad, keeping the error's class.
    if (e instanceof GgufError && e.tensor === undefined) throw new (e.constructor as typeof GgufError)(e.message, name);
    throw e;
  }
}

function tensorShapeAndType(r: Reader, name: string): Omit<GgufTensorInfo, "offset"> & { relative: bigint } {
  const nDims = r.u32(`tensor "${name}" dimension count`);
  if (nDims < 1 || nDims > maxDims) throw new GgufError(`${r.source}: corrupt: tensor "${name}" has ${nDims} dimensions (1 to ${maxDims} allowed)`, name);
  const ne: number[] = [];
  let elements = 1;
  for (let d = 0; d < nDims; d++) {
    const n = r.count(`tensor "${name}" dimension ${d}`, Number.MAX_SAFE_INTEGER);
    ne.push(n);
    elements *= n;
  }
  if (elements > r.fileSize * 8) throw new GgufError(`${r.source}: corrupt: tensor "${name}" has ${elements} elements, more than the file could hold`, name);
  const code = r.u32(`tensor "${name}" type`);
  const type = typeByCode.get(code);
  if (!type) {
    const known = otherTypeNames[code];
    throw new GgufError(
      `${r.source}: tensor "${name}" has ${known ? `unsupported type ${known} (${code})` : `unknown type ${code}`}; supported: ${Object.keys(GgmlType).join(", ")}`,
      name,
    );
  }
  const { blockSize, blockBytes } = ggmlTypeLayout[type];
  if (ne[0]! % blockSize !== 0) throw new GgufError(`${r.source}: tensor "${name}" of type ${type} has rows of ${ne[0]} elements, not a multiple of ${blockSize}`, name);
  const relative = r.u64(`tensor "${name}" offset`);
  return { name, type, shape: ne.reverse(), byteLength: (elements / blockSize) * blockBytes, relative };
}

/**
 * Parses a GGUF file held in `bytes` (all of it, or a prefix holding at least the header).
 * `fileSize`: the whole file's size, when `bytes` is only a prefix. Tensor ranges are checked
 * against `fileSize`.
 */
export function parseGguf(bytes: Uint8Array, source = "gguf", fileSize = bytes.byteLength): GgufFile {
  const r = new Reader(bytes, source, fileSize);
  const m = r.u32("magic");
  if (m !== magic) throw new GgufError(`${source}: not a GGUF file (magic 0x${m.toString(16).padStart(8, "0")}, expected "GGUF")`);
  const version = r.u32("version");
  if (version !== 2 && version !== 3) throw new GgufError(`${source}: GGUF version ${version} is not supported (2 or 3)`);
  const tensorCount = r.count("tensor count", fileSize);
  const kvCount = r.count("metadata count", fileSize);
  const metadata = new Map<string, GgufEntry>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string(`metadata key ${i}`);
    metadata.set(key, value(r, valueType(r, `metadata "${key}"`), `metadata "${key}"`));
  }
  const alignmentEntry = metadata.get("general.alignment");
  const alignment = alignmentEntry ? Number(alignmentEntry.value) : 32;
  if (!Number.isInteger(alignment) || alignment < 1 || alignment > 1 << 20 || (alignment & (alignment - 1)) !== 0)
    throw new GgufError(`${source}: corrupt: general.alignment is ${String(alignmentEntry?.value)} (a power of two expected)`);
  const infos = [];
  for (let i = 0; i < tensorCount; i++) infos.push(tensorInfo(r, i));
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  const tensors = new Map<string, GgufTensorInfo>();
  for (const { relative, ...info } of infos) {
    if (tensors.has(info.name)) throw new GgufError(`${source}: corrupt: tensor "${info.name}" appears twice`, info.name);
    if (relative % BigInt(alignment) !== 0n) throw new GgufError(`${source}: corrupt: tensor "${info.name}" data offset ${relative} is not a multiple of the alignment ${alignment}`, info.name);
    const offset = dataOffset + Number(relative);
    if (relative > BigInt(fileSize) || offset + info.byteLength > fileSize)
      throw new GgufError(`${source}: truncated: tensor "${info.name}" needs bytes [${offset}, ${offset + info.byteLength}) but the file has ${fileSize}`, info.name);
    tensors.set(info.name, { ...info, offset });
  }
  return { version, metadata, tensors, alignment, dataOffset, bytes };
}

function readRange(fd: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, out, got, length - got, got);
    if (n === 0) break;
    got += n;
  }
  return got === length ? out : out.subarray(0, got);
}

/**
 * Reads a GGUF file. With `tensorData: false` only the header part is read (metadata and
 * tensor infos, e.g. a tokenizer), growing the read until the header fits.
 */
export function readGguf(path: string, opts: { tensorData?: boolean } = {}): GgufFile {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    if (opts.tensorData !== false) return parseGguf(readRange(fd, size), path, size);
    for (let length = Math.min(size, 4 << 20); ; length = Math.min(size, length * 4)) {
      try {
        return parseGguf(readRange(fd, length), path, size);
      } catch (e) {
        if (!(e instanceof TruncatedHeader) || length === size) throw e;
      }
    }
  } finally {
    closeSync(fd);
  }
}

let f16Table: Float32Array | undefined;
function halfToFloat(): Float32Array {
  if (!f16Table) f16Table = new Float32Array(new Float16Array(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer));
  return f16Table;
}

/** Dequantizes `count` elements of `type` stored in `src` (from its first byte) into float32. */
export function dequantize(type: GgmlTypeName, src: Uint8Array, count: number): Float32Array {
  const { blockSize, blockBytes } = ggmlTypeLayout[type];
  if (count % blockSize !== 0 || src.byteLength < (count / blockSize) * blockBytes)
    throw new GgufError(`dequantize: ${count} elements of ${type} need ${(count / blockSize) * blockBytes} bytes, have ${src.byteLength}`);
  const out = new Float32Array(count);
  if (type === "F32") {
    out.set(new Float32Array(src.slice(0, count * 4).buffer));
    return out;
  }
  const half = halfToFloat();
  const u16 = (at: number) => src[at]! | (src[at + 1]! << 8);
  if (type === "F16") {
    for (let i = 0; i < count; i++) out[i] = half[u16(2 * i)]!;
    return out;
  }
  if (type === "BF16") {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = u16(2 * i) << 16;
    return out;
  }
  const blocks = count / 32;
  for (let b = 0, at = 0, o = 0; b < blocks; b++, at += blockBytes, o += 32) {
    const d = half[u16(at)]!;
    if (type === "Q8_0") {
      for (let j = 0; j < 32; j++) out[o + j] = ((src[at + 2 + j]! << 24) >> 24) * d;
    } else if (type === "Q4_0") {
      for (let j = 0; j < 16; j++) {
        const q = src[at + 2 + j]!;
        out[o + j] = ((q & 15) - 8) * d;
        out[o + j + 16] = ((q >> 4) - 8) * d;
      }
    } else {
      const m = half[u16(at + 2)]!;
      for (let j = 0; j < 16; j++) {
        const q = src[at + 4 + j]!;
        out[o + j] = (q & 15) * d + m;
        out[o + j + 16] = (q >> 4) * d + m;
      }
    }
  }
  return out;
}

/** The bytes of tensor `name` (a view into `file.bytes`, no copy). */
export function tensorBytes(file: GgufFile, name: string): Uint8Array {
  const t = file.tensors.get(name);
  if (!t) throw new GgufError(`${name}: no such tensor in the file`, name);
  if (t.offset + t.byteLength > file.bytes.byteLength) throw new GgufError(`tensor "${name}": its data was not read (header-only read)`, name);
  return file.bytes.subarray(t.offset, t.offset + t.byteLength);
}

/** Tensor `name` dequantized to float32, row-major in `info.shape`. */
export function tensorFloat32(file: GgufFile, name: string): Float32Array {
  const t = file.tensors.get(name);
  if (!t) throw new GgufError(`${name}: no such tensor in the file`, name);
  return dequantize(t.type, tensorBytes(file, name), t.shape.reduce((a, b) => a * b, 1));
}

/** A metadata value, or a {@link GgufError} naming the key when it is missing or not of `kind`. */
export function metadataValue<K extends "number" | "string" | "boolean">(
  file: GgufFile,
  key: string,
  kind: K,
): K extends "number" ? number : K extends "string" ? string : boolean {
  const e = file.metadata.get(key);
  if (!e) throw new GgufError(`metadata "${key}" is missing`);
  const v = typeof e.value === "bigint" ? Number(e.value) : e.value;
  if (typeof v !== kind) throw new GgufError(`metadata "${key}" is ${e.type}, expected a ${kind}`);
  return v as never;
}
