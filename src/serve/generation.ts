/**
 * The service's generation loop: {@link generate} of lanes/models with the reason it stopped,
 * and the per-token pick the batch scheduler shares with it (nucleus (top-p) filtering, then
 * sampling).
 * @module
 */
import type { Stream } from "../stream.ts";
import { generate, type GenerateParams, type GenerateResult } from "../models/generate.ts";
import type { Model } from "../models/models.ts";
import { sample, topIndices } from "../models/sampling.ts";

/** A generation request as the engine runs it: {@link GenerateParams}, whose `topP` is nucleus filtering and `stopIds` the end tokens. */
export type GenerationParams = GenerateParams;

/** Why a generation ended: an end token (`stop`), or `maxTokens` or the context (`length`). */
export type FinishReason = "stop" | "length";

/** Generated tokens (an end token excluded), their logits' checksums, and why it ended. */
export interface GenerationResult extends GenerateResult {
  finishReason: FinishReason;
}

/**
 * How many of the most likely tokens nucleus sampling keeps: the fewest whose probabilities
 * (softmax of `logits / temperature` over the `topK` most likely) add up to at least `topP`.
 */
export function nucleusSize(logits: Float32Array, temperature: number, topP: number, topK = logits.length): number {
  const candidates = topIndices(logits, topK);
  const top = logits[candidates[0]!]!;
  const weights = candidates.map((i) => Math.exp((logits[i]! - top) / temperature));
  const target = topP * weights.reduce((s, w) => s + w, 0);
  let cumulative = 0;
  for (let j = 0; j < weights.length; j++) {
    cumulative += weights[j]!;
    if (cumulative >= target) return j + 1;
  }
  return weights.length;
}

/** The token a generation of `p` picks from `logits` (greedy at temperature 0; else sampled with `random`, after top-k and top-p). */
export function nextToken(logits: Float32Array, random: () => number, p: GenerationParams): number {
  const temperature = p.temperature ?? 0;
  const filtered = temperature > 0 && p.topP !== undefined && p.topP < 1;
  const topK = filtered ? nucleusSize(logits, temperature, p.topP!, p.topK) : p.topK;
  return sample(logits, random, { temperature, topK });
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
