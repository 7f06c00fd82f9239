/**
 * The models `lanes serve` serves when none is named, and the way a GGUF file becomes a
 * {@link TextModel}.
 * @module
 */
import { existsSync } from "node:fs";
import { basename } from "node:path";
import type { Model } from "../models/models.ts";
import { GgufError } from "../models/gguf.ts";
import { loadTextModel } from "../models/text-model.ts";
import type { TextModel } from "../models/text.ts";
import { byteTextModel } from "../models/toy-text.ts";
import { loadModel } from "../models/weights.ts";

/** The three default models (small seeded weights, written to the cache folder on first use). */
export function defaultModels(): Model[] {
  return [loadModel("transformer"), loadModel("hybrid"), loadModel("mlp")];
}

/** Every decoder of `models` as a {@link TextModel} over the byte tokenizer, for the OpenAI endpoints. */
export function byteTextModels(models: readonly Model[]): TextModel[] {
  return models.filter((m) => m.kind === "decoder").map((m) => byteTextModel(m));
}

/** Thrown for a model file that cannot be served. */
export class ModelFileError extends Error {
  override name = "ModelFileError";
}

/** Loads a GGUF file as a {@link TextModel}. */
export function loadGgufTextModel(path: string): TextModel {
  if (!existsSync(path)) throw new ModelFileError(`no such model file: ${path}`);
  try {
    return loadTextModel(path, basename(path).replace(/\.gguf$/i, "").toLowerCase());
  } catch (e) {
    if (e instanceof GgufError) throw new ModelFileError(e.message.startsWith(path) ? e.message : `${path}: ${e.message}`);
    throw e;
  }
}
