/**
 * The models `lanes serve` serves when none is named, and the way a GGUF file becomes a
 * {@link TextModel}.
 * @module
 */
import { existsSync } from "node:fs";
import type { Model } from "../models/models.ts";
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
  throw new ModelFileError(`GGUF loading not available yet: cannot serve ${path} (this build has no GGUF loader)`);
}
