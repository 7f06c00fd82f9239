/**
 * Running a model on a stream: token generation with a KV cache (greedy or seeded sampling),
 * and single forward passes summarized as top-k plus a bit-exact checksum. The service and
 * its serial reference both go through these functions.
 * @module
 */
import { evalAsync } from "../eval.ts";
import type { Stream } from "../stream.ts";
import type { DecoderState, Model } from "./models.ts";
import { checksum, sample, type SampleOptions, seededRandom, topIndices } from "./sampling.ts";

/** What a generation needs besides the model. */
export interface GenerateParams {
  tokens: readonly number[];
  maxTokens: number;
  temperature?: number;
  topK?: number;
  /** Nucleus sampling mass in (0, 1] (see {@link SampleOptions.topP}). */
  topP?: number;
  seed?: number;
}

/** Generated tokens and, per step, the checksum of the logits that chose them. */
export interface GenerateResult {
  tokens: number[];
  checksums: string[];
}

/** Thrown when a generation stops because its signal aborted (client gone or timeout). */
export class CancelledError extends Error {
  override name = "CancelledError";
}

function freeState(state: DecoderState | undefined): void {
  for (const a of state?.caches ?? []) a.dispose();
}

/**
 * Generates up to `maxTokens` tokens on `stream`. Each step is evaluated with `evalAsync`, so
 * the event loop serves other requests meanwhile; `signal` is checked before every step.
 */
export async function generate(
  model: Model,
  p: GenerateParams,
  stream: Stream,
  opts: { signal?: AbortSignal; onToken?: (token: number, index: number) => void } = {},
): Promise<GenerateResult> {
  const random = seededRandom(p.seed ?? 0);
  const out: GenerateResult = { tokens: [], checksums: [] };
  let state: DecoderState | undefined;
  let input: readonly number[] = p.tokens;
  try {
    for (let i = 0; i < p.maxTokens && (state?.pos ?? 0) + input.length <= model.maxSeq; i++) {
      if (opts.signal?.aborted) throw new CancelledError(`cancelled after ${i} tokens`);
      const step = model.step(input, state, stream);
      let logits: Float32Array;
      try {
        await evalAsync(step.logits, ...step.state.caches);
        logits = step.logits.toFloat32Array();
      } catch (e) {
        step.scope.disposeExcept([]);
        throw e;
      }
      step.scope.disposeExcept(step.state.caches);
      freeState(state);
      state = step.state;
      const token = sample(logits, random, { temperature: p.temperature, topK: p.topK, topP: p.topP });
      out.tokens.push(token);
      out.checksums.push(checksum(logits));
      opts.onToken?.(token, i);
      if (model.kind === "classifier") break;
      input = [token];
    }
  } finally {
    freeState(state);
  }
  return out;
}

/** One forward pass, summarized. */
export interface ForwardSummary {
  top: { index: number; logit: number }[];
  checksum: string;
}

/** Runs `tokens` through the model once and summarizes the last position's logits. */
export async function forward(model: Model, tokens: readonly number[], stream: Stream, k = 5): Promise<ForwardSummary> {
  const step = model.step(tokens, undefined, stream);
  try {
    await evalAsync(step.logits);
    const logits = step.logits.toFloat32Array();
    return { top: topIndices(logits, k).map((index) => ({ index, logit: logits[index]! })), checksum: checksum(logits) };
  } finally {
    step.scope.disposeExcept([]);
    freeState(step.state);
  }
}
