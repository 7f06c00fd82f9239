/**
 * The `.safetensors` format (Hugging Face): an 8-byte little-endian header length, a JSON
 * header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}`, then
 * the tensor bytes. lanes reads and writes float32, float16 and bfloat16 tensors (and int32,
 * bool), and checks every header field before any byte reaches the native core.
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import { arrayFromBytes, type ElementDType, type LanesArray } from "../array.ts";

/** A `.safetensors` file that cannot be loaded: malformed, truncated or unsupported. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

const fileDtypes: Record<string, ElementDType> = { F32: "float32", F16: "float16", BF16: "bfloat16", I32: "int32", BOOL: "bool" };
const bytesPer: Record<ElementDType, number> = { float32: 4, float16: 2, bfloat16: 2, int32: 4, bool: 1 };
const maxHeaderBytes = 100 << 20;

/** One tensor's description in a header. */
export interface TensorInfo {
  dtype: ElementDType;
  shape: number[];
  /** Byte range within the data section. */
  begin: number;
  end: number;
}

/** Parses and validates the header; returns the tensors and where their data starts. */
export function parseHeader(bytes: Uint8Array, source = "safetensors"): { tensors: Map<string, TensorInfo>; dataStart: number; metadata: Record<string, string> } {
  if (bytes.byteLength < 8) throw new SafetensorsError(`${source}: ${bytes.byteLength} bytes is too short for a header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(maxHeaderBytes, bytes.byteLength - 8)))
    throw new SafetensorsError(`${source}: header length ${headerLength} exceeds the file (${bytes.byteLength} bytes)`);
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart)));
  } catch (e) {
    throw new SafetensorsError(`${source}: header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    throw new SafetensorsError(`${source}: header must be a JSON object`);
  const dataBytes = bytes.byteLength - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const ranges: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== "object" || info === null) throw new SafetensorsError(`${source}: tensor "${name}" is not an object`);
    const dtype = typeof info.dtype === "string" ? fileDtypes[info.dtype] : undefined;
    if (!dtype) throw new SafetensorsError(`${source}: tensor "${name}" has unsupported dtype ${JSON.stringify(info.dtype)} (lanes reads F32, F16, BF16, I32, BOOL)`);
    if (!Array.isArray(info.shape) || !info.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new SafetensorsError(`${source}: tensor "${name}" has an invalid shape ${JSON.stringify(info.shape)}`);
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1])
      throw new SafetensorsError(`${source}: tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    const [begin, end] = offsets as [number, number];
    const shape = info.shape as number[];
    const expected = shape.reduce((n, d) => n * d, 1) * bytesPer[dtype];
    if (end - begin !== expected)
      throw new SafetensorsError(`${source}: tensor "${name}" of shape [${shape.join(", ")}] ${dtype} needs ${expected} bytes, its offsets span ${end - begin}`);
    if (end > dataBytes) throw new SafetensorsError(`${source}: tensor "${name}" ends at byte ${end}, past the data (${dataBytes} bytes): truncated file?`);
    tensors.set(name, { dtype, shape, begin, end });
    ranges.push([begin, end, name]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++)
    if (ranges[i]![0] < ranges[i - 1]![1]) throw new SafetensorsError(`${source}: tensors "${ranges[i - 1]![2]}" and "${ranges[i]![2]}" overlap`);
  return { tensors, dataStart, metadata };
}

/** Loads every tensor of a file (or of its bytes) as lanes arrays, in their stored dtype. */
export function loadSafetensors(file: string | Uint8Array): Map<string, LanesArray> {
  let bytes: Uint8Array;
  if (typeof file === "string") {
    try {
      bytes = readFileSync(file);
    } catch (e) {
      throw new SafetensorsError(`${file}: cannot read (${(e as Error).message})`);
    }
  } else {
    bytes = file;
  }
  const source = typeof file === "string" ? file : "safetensors";
  const { tensors, dataStart } = parseHeader(bytes, source);
  const out = new Map<string, LanesArray>();
  try {
    for (const [name, t] of tensors) out.set(name, arrayFromBytes(bytes.subarray(dataStart + t.begin, dataStart + t.end), t.shape, t.dtype));
  } catch (e) {
    for (const a of out.values()) a.dispose();
    throw e;
  }
  return out;
}

/** A tensor to write: its dtype, shape and raw little-endian bytes. */
export interface TensorBytes {
  dtype: ElementDType;
  shape: number[];
  data: Uint8Array;
}

/** Writes tensors to a `.safetensors` file (names sorted, data 8-byte aligned). */
export function saveSafetensors(path: string, tensors: Record<string, TensorBytes>, metadata: Record<string, string> = {}): void {
  const codes = Object.fromEntries(Object.entries(fileDtypes).map(([k, v]) => [v, k])) as Record<ElementDType, string>;
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = Object.keys(tensors).sort();
  for (const name of names) {
    const t = tensors[name]!;
    header[name] = { dtype: codes[t.dtype], shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += " ";
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const name of names) {
    out.set(tensors[name]!.data, at);
    at += tensors[name]!.data.byteLength;
  }
  writeFileSync(path, out);
}
