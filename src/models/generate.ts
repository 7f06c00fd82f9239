/**
 * Running a model on a stream: token generation with a KV cache (greedy or seeded sampling),
 * and single forward passes summarized as top-k plus a bit-exact checksum. The service and
 * its serial reference both go through these functions.
 * @module
 */
import type { LanesArray } from "../array.ts";
import { evalAsync } from "../eval.ts";
import * as lx from "../index.ts";
import type { Stream } from "../stream.ts";
import type { DecoderState, Model, Step, StepTokens } from "./models.ts";
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
  /** False: no checksums, and a greedy generation never reads its logits (default true). */
  checksums?: boolean;
  /** Tokens that end the generation (not part of its output). */
  stopIds?: readonly number[];
}

/** Generated tokens and, per step, the checksum of the logits that chose them (unless turned off). */
export interface GenerateResult {
  tokens: number[];
  checksums: string[];
  /** The end token (one of `stopIds`) that stopped the generation, when one did. */
  endToken?: number;
}

/** Thrown when a generation stops because its signal aborted (client gone or timeout). */
export class CancelledError extends Error {
  override name = "CancelledError";
}

function freeState(state: DecoderState | undefined): void {
  for (const a of state?.caches ?? []) a.dispose();
}

/** A step recorded on the stream and not read yet, with its greedy token on the device. */
interface Recorded {
  step: Step;
  greedy?: LanesArray;
}

/**
 * Generates up to `maxTokens` tokens on `stream`. Each step is evaluated with `evalAsync`, so
 * the event loop serves other requests meanwhile; `signal` is checked before every step.
 *
 * Greedy decoding (temperature 0) runs one step ahead: each step's most likely token is taken on
 * the device (`argmax`: the first maximum, where a NaN counts as one) and fed to the next step,
 * which is queued before this one is read. The device then never waits for the host to read,
 * check and record, and the tokens are the same as reading each step first (for logits without
 * NaN, which the host's pick skips). A token in `stopIds` ends the generation; the step recorded
 * from it is dropped unread.
 */
export async function generate(
  model: Model,
  p: GenerateParams,
  stream: Stream,
  opts: {
    signal?: AbortSignal;
    onToken?: (token: number, index: number) => void;
    /** False: greedy decoding too reads each step before it records the next (same tokens). */
    ahead?: boolean;
  } = {},
): Promise<GenerateResult> {
  const random = seededRandom(p.seed ?? 0);
  const out: GenerateResult = { tokens: [], checksums: [] };
  if (p.topP !== undefined && !(p.topP > 0 && p.topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${p.topP}`);
  const ahead = model.kind === "decoder" && (p.temperature ?? 0) <= 0 && opts.ahead !== false;
  const recorded: Recorded[] = [];
  let state: DecoderState | undefined; // the newest recorded step's
  const record = (tokens: StepTokens): void => {
    if (opts.signal?.aborted) throw new CancelledError(`cancelled after ${out.tokens.length} tokens`);
    const step = model.step(tokens, state, stream);
    // The old caches are the new step's now (donated to a compiled step): without their handles
    // an eager step may update them in place.
    freeState(state);
    state = step.state;
    const r: Recorded = { step };
    recorded.push(r);
    if (ahead) r.greedy = step.greedy ?? step.scope.t(lx.argmax(step.logits, -1, { keepdims: true, stream }));
  };
  const fits = (index: number) => index < p.maxTokens && model.kind === "decoder" && state!.pos + 1 <= model.maxSeq;
  try {
    if (p.maxTokens > 0 && p.tokens.length <= model.maxSeq) record(p.tokens);
    for (let i = 0; recorded.length > 0; i++) {
      const { step, greedy } = recorded[0]!;
      if (greedy && fits(i + 1)) record(greedy);
      const newest = state === step.state;
      await evalAsync(greedy ?? step.logits, ...(newest ? step.state.caches : []));
      const logits = greedy && p.checksums === false ? undefined : step.logits.toFloat32Array();
      const token = greedy ? greedy.toInt32Array()[0]! : sample(logits!, random, { temperature: p.temperature, topK: p.topK, topP: p.topP });
      recorded.shift();
      step.scope.disposeExcept(newest ? step.state.caches : []);
      if (p.stopIds?.includes(token)) {
        out.endToken = token;  // a step recorded ahead from it is dropped below
        break;
      }
      out.tokens.push(token);
      if (p.checksums !== false) out.checksums.push(checksum(logits!));
      opts.onToken?.(token, i);
      if (!greedy && fits(i + 1)) record([token]);
    }
  } finally {
    for (const r of recorded) r.step.scope.disposeExcept([]);
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
