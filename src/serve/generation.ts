/**
 * The service's generation loop: {@link generate} of lanes/models with the reason it stopped,
 * and the per-token pick the batch scheduler shares with it ({@link sample}: top-k, nucleus
 * (top-p) filtering, then a seeded draw).
 * @module
 */
import type { Stream } from "../stream.ts";
import { generate, type GenerateParams, type GenerateResult } from "../models/generate.ts";
import type { Model } from "../models/models.ts";
import { sample } from "../models/sampling.ts";

export { nucleusSize } from "../models/sampling.ts";

/** A generation request as the engine runs it: {@link GenerateParams}, whose `topP` is nucleus filtering and `stopIds` the end tokens. */
export type GenerationParams = GenerateParams;

/** Why a generation ended: an end token (`stop`), or `maxTokens` or the context (`length`). */
export type FinishReason = "stop" | "length";

/** Generated tokens (an end token excluded), their logits' checksums, and why it ended. */
export interface GenerationResult extends GenerateResult {
  finishReason: FinishReason;
}

/** The token a generation of `p` picks from `logits`: {@link sample} with its temperature, `topK` and `topP`. */
export function nextToken(logits: Float32Array, random: () => number, p: GenerationParams): number {
  return sample(logits, random, { temperature: p.temperature, topK: p.topK, topP: p.topP });
}

/**
 * Generates up to `maxTokens` tokens on `stream`, stopping early at an end token or the
 * model's context: {@link generate}, which runs greedy decoding one step ahead, with the reason
 * it stopped. `signal` is checked before every step is recorded; `onToken` sees each generated
 * token (never an end token).
 */
export async function runGeneration(
  model: Model,
  p: GenerationParams,
  stream: Stream,
  opts: { signal?: AbortSignal; onToken?: (token: number, index: number) => void } = {},
): Promise<GenerationResult> {
  const result = await generate(model, p, stream, opts);
  return { ...result, finishReason: result.endToken === undefined ? "length" : "stop" };
}
