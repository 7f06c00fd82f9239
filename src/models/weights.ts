/**
 * Model weights: loading from `.safetensors` (the same path for real weights and for the
 * defaults) and writing small default weights, from a fixed seed, into a cache folder on first
 * use, so the service runs with no download.
 * @module
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { ElementDType, LanesArray } from "../array.ts";
import * as lx from "../index.ts";
import { type Architecture, architectures, buildModel, type Model } from "./models.ts";
import { loadSafetensors, saveSafetensors, type TensorBytes } from "./safetensors.ts";
import { seededRandom } from "./sampling.ts";

/** Where default weights are written: `$LANES_CACHE_DIR/models`, else `~/.cache/lanes/models`. */
export function modelCacheDir(): string {
  return join(process.env.LANES_CACHE_DIR || join(homedir(), ".cache", "lanes"), "models");
}

/** The stored dtype of each default model, so the loader's three float paths all run. */
const defaultDtypes: Record<Architecture["name"], ElementDType> = { transformer: "float32", hybrid: "bfloat16", mlp: "float16" };
const formatVersion = "1";

function initialValues(name: string, shape: number[], random: () => number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  if (/norm$/.test(name)) return out.fill(1);
  if (/^b\d$/.test(name)) return out;
  const scale = name === "embed" ? 0.5 : 1 / Math.sqrt(shape[0]!);
  for (let i = 0; i < n; i += 2) {
    const u1 = random() || 1e-12, u2 = random();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2) * scale;
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2) * scale;
  }
  return out;
}

function storageBytes(values: Float32Array, shape: number[], dtype: ElementDType): Uint8Array {
  if (dtype === "float32") return new Uint8Array(values.buffer.slice(0));
  using f = lx.array(values, shape);
  using h = lx.astype(f, dtype);
  const bits = h.toTypedArray() as Uint16Array;
  return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
}

/** Writes the default weights of `arch` (seeded, so every machine gets the same file). */
export function writeDefaultWeights(arch: Architecture, path: string, seed = 1234): void {
  const random = seededRandom(seed);
  const dtype = defaultDtypes[arch.name];
  const tensors: Record<string, TensorBytes> = {};
  for (const [name, shape] of Object.entries(arch.shapes()).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const local = name.split(".").pop()!;
    tensors[name] = { dtype, shape, data: storageBytes(initialValues(local, shape, random), shape, dtype) };
  }
  const tmp = `${path}.${process.pid}.tmp`;
  saveSafetensors(tmp, tensors, { architecture: arch.name, seed: String(seed), format: formatVersion });
  renameSync(tmp, path);
}

/** The default weights file of `arch`, written first if missing. */
export function defaultWeightsPath(arch: Architecture): string {
  const dir = modelCacheDir();
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${arch.name}-v${formatVersion}.safetensors`);
  if (!existsSync(path)) writeDefaultWeights(arch, path);
  return path;
}

/**
 * Loads a model: `architecture` picks the layer layout; `path` is a `.safetensors` file with
 * the tensors `architectures[architecture].shapes()` lists (any of float32, float16, bfloat16;
 * computed in float32). Without `path`, the default weights are used.
 */
export function loadModel(architecture: Architecture["name"], path?: string, name: string = architecture): Model {
  const arch = architectures[architecture];
  if (!arch) throw new Error(`unknown architecture "${architecture}" (have: ${Object.keys(architectures).join(", ")})`);
  const stored = loadSafetensors(path ?? defaultWeightsPath(arch));
  const weights = new Map<string, LanesArray>();
  try {
    for (const [key, a] of stored) {
      weights.set(key, a.dtype === "float32" ? a : lx.astype(a, "float32"));
    }
    lx.eval(...weights.values());
  } finally {
    for (const [key, a] of stored) if (weights.get(key) !== a) a.dispose();
  }
  try {
    return buildModel(name, arch, weights);
  } catch (e) {
    for (const a of weights.values()) a.dispose();
    throw e;
  }
}
