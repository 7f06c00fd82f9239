/**
 * The service's generation loop: {@link generate} of lanes/models plus what the OpenAI
 * endpoints need from it, nucleus (top-p) filtering and end tokens. With neither, it gives the
 * same tokens and checksums as `generate` for the same request.
 * @module
 */
import { evalAsync } from "../eval.ts";
import type { Stream } from "../stream.ts";
import { CancelledError, type GenerateParams, type GenerateResult } from "../models/generate.ts";
import type { DecoderState, Model } from "../models/models.ts";
import { checksum, sample, seededRandom, topIndices } from "../models/sampling.ts";

/** A generation request as the engine runs it. */
export interface GenerationParams extends GenerateParams {
  /** Nucleus sampling: only the most likely tokens whose probabilities add up to `topP` are candidates (default 1: all). */
  topP?: number;
  /** Tokens that end the generation (not part of its output). */
  stopIds?: readonly number[];
  /** Record each step's logits checksum in the result (default true); the OpenAI endpoints need none. */
  checksums?: boolean;
}

/** Why a generation ended: an end token (`stop`), or `maxTokens` or the context (`length`). */
export type FinishReason = "stop" | "length";

/** Generated tokens (an end token excluded), their logits' checksums, and why it ended. */
export interface GenerationResult extends GenerateResult {
  finishReason: FinishReason;
  /** The end token that stopped it, when one did. */
  endToken?: number;
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

function freeState(state: DecoderState | undefined): void {
  for (const a of state?.caches ?? []) a.dispose();
}

/**
 * Generates up to `maxTokens` tokens on `stream`, stopping early at an end token or the
 * model's context. Each step is evaluated with `evalAsync`; `signal` is checked before every
 * step; `onToken` sees each generated token (never an end token).
 */
export async function runGeneration(
  model: Model,
  p: GenerationParams,
  stream: Stream,
  opts: { signal?: AbortSignal; onToken?: (token: number, index: number) => void } = {},
): Promise<GenerationResult> {
  const random = seededRandom(p.seed ?? 0);
  const out: GenerationResult = { tokens: [], checksums: [], finishReason: "length" };
  let state: DecoderState | undefined;
  let input: readonly number[] = p.tokens;
  try {
    for (let i = 0; i < p.maxTokens && (state?.pos ?? 0) + input.length <= model.maxSeq; i++) {
      if (opts.signal?.aborted) throw new CancelledError(`cancelled after ${i} tokens`);
      const step = model.step(input, state, stream);
      // The old caches are the step's inputs now: without their handles an eager step updates
      // them in place.
      freeState(state);
      state = undefined;
      let logits: Float32Array;
      try {
        await evalAsync(step.logits, ...step.state.caches);
        logits = step.logits.toFloat32Array();
      } catch (e) {
        step.scope.disposeExcept([]);
        freeState(step.state);
        throw e;
      }
      step.scope.disposeExcept(step.state.caches);
      state = step.state;
      const token = nextToken(logits, random, p);
      if (p.stopIds?.includes(token)) {
        out.finishReason = "stop";
        out.endToken = token;
        break;
      }
      out.tokens.push(token);
      if (p.checksums !== false) out.checksums.push(checksum(logits));
      opts.onToken?.(token, i);
      if (model.kind === "classifier") break;
      input = [token];
    }
  } finally {
    freeState(state);
  }
  return out;
}
