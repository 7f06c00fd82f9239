/**
 * Building blocks the models share, written with lanes ops only, and the {@link Scope} that
 * frees a step's intermediate arrays once it was evaluated.
 * @module
 */
import type { LanesArray } from "../array.ts";
import * as lx from "../index.ts";
import type { Scalar } from "../scalar.ts";
import { appendKV } from "./kv-cache.ts";

/** Collects the arrays a model step creates, so they can be freed together after evaluation. */
export class Scope {
  readonly #arrays: LanesArray[] = [];

  /** Tracks `a` and returns it. */
  t(a: LanesArray): LanesArray {
    this.#arrays.push(a);
    return a;
  }

  /** Frees every tracked array except those in `keep`. */
  disposeExcept(keep: readonly LanesArray[]): void {
    const kept = new Set(keep);
    for (const a of this.#arrays) if (!kept.has(a)) a.dispose();
    this.#arrays.length = 0;
  }
}

/** Named weights, float32, owned by the model. */
export type Weights = Map<string, LanesArray>;

/** The weight `name`, or a clear error naming what the file lacks. */
export function weight(w: Weights, name: string, shape: readonly number[]): LanesArray {
  const a = w.get(name);
  if (!a) throw new Error(`weights: missing tensor "${name}"`);
  if (a.shape.length !== shape.length || a.shape.some((d, i) => d !== shape[i]))
    throw new Error(`weights: tensor "${name}" has shape [${a.shape.join(", ")}], expected [${shape.join(", ")}]`);
  return a;
}

/** Dense decoder dimensions. */
export interface DecoderConfig {
  vocab: number;
  dim: number;
  heads: number;
  kvHeads: number;
  hidden: number;
  maxSeq: number;
  ropeBase: number;
}

/**
 * x + Attention(rmsNorm(x)) with rotary positions and a KV cache (preallocated to `capacity`
 * positions and filled in place, see kv-cache.ts; `keys` positions are in use after this
 * step); returns [x, k, v]. Consumes `cache`.
 */
export function attentionBlock(
  s: Scope,
  w: Weights,
  p: string,
  cfg: DecoderConfig,
  x: LanesArray,
  pos: number | Scalar,
  keys: number | Scalar,
  cache: readonly [LanesArray, LanesArray] | undefined,
  capacity: number,
): [LanesArray, LanesArray, LanesArray] {
  const L = x.shape[1]!;
  const hd = cfg.dim / cfg.heads;
  const h = s.t(lx.rmsNorm(x, w.get(`${p}.attn_norm`)!, 1e-5));
  const heads = (t: LanesArray, n: number) => s.t(lx.transpose(s.t(lx.reshape(t, [1, L, n, hd])), [0, 2, 1, 3]));
  const q = s.t(lx.rope(heads(s.t(lx.matmul(h, w.get(`${p}.wq`)!)), cfg.heads), hd, { offset: pos, base: cfg.ropeBase }));
  const kNew = s.t(lx.rope(heads(s.t(lx.matmul(h, w.get(`${p}.wk`)!)), cfg.kvHeads), hd, { offset: pos, base: cfg.ropeBase }));
  const k = appendKV(s, cache?.[0], kNew, pos, capacity);
  const v = appendKV(s, cache?.[1], heads(s.t(lx.matmul(h, w.get(`${p}.wv`)!)), cfg.kvHeads), pos, capacity);
  const a = s.t(lx.scaledDotProductAttention(q, k, v, { causal: true, keyLength: keys }));
  const merged = s.t(lx.reshape(s.t(lx.transpose(a, [0, 2, 1, 3])), [1, L, cfg.dim]));
  return [s.t(lx.add(x, s.t(lx.matmul(merged, w.get(`${p}.wo`)!)))), k, v];
}

/** x + SwiGLU(rmsNorm(x)). */
export function mlpBlock(s: Scope, w: Weights, p: string, x: LanesArray): LanesArray {
  const h = s.t(lx.rmsNorm(x, w.get(`${p}.mlp_norm`)!, 1e-5));
  const gate = s.t(lx.silu(s.t(lx.matmul(h, w.get(`${p}.w1`)!))));
  const up = s.t(lx.matmul(h, w.get(`${p}.w3`)!));
  return s.t(lx.add(x, s.t(lx.matmul(s.t(lx.multiply(gate, up)), w.get(`${p}.w2`)!))));
}

/**
 * x + a gated linear recurrence over the sequence (state-space style):
 * `state_t = a_t ⊙ state_{t-1} + (1 − a_t) ⊙ u_t`, `a = σ(h Wa)`, `u = h Wu`, output
 * `(state ⊙ silu(h Wg)) Wout`. Returns [x, last state].
 */
export function recurrenceBlock(s: Scope, w: Weights, p: string, dim: number, x: LanesArray, state: LanesArray | undefined): [LanesArray, LanesArray] {
  const L = x.shape[1]!;
  const h = s.t(lx.rmsNorm(x, w.get(`${p}.rec_norm`)!, 1e-5));
  const a = s.t(lx.sigmoid(s.t(lx.matmul(h, w.get(`${p}.wa`)!))));
  const u = s.t(lx.matmul(h, w.get(`${p}.wu`)!));
  const g = s.t(lx.silu(s.t(lx.matmul(h, w.get(`${p}.wg`)!))));
  let st = state ?? s.t(lx.zeros([1, 1, dim]));
  const one = s.t(lx.full([], 1)); // tracked here: a number operand would make an untracked scalar array
  const steps: LanesArray[] = [];
  for (let t = 0; t < L; t++) {
    const at = s.t(lx.slice(a, [0, t, 0], [1, t + 1, dim]));
    const ut = s.t(lx.slice(u, [0, t, 0], [1, t + 1, dim]));
    st = s.t(lx.add(s.t(lx.multiply(at, st)), s.t(lx.multiply(s.t(lx.subtract(one, at)), ut))));
    steps.push(st);
  }
  const seq = steps.length === 1 ? steps[0]! : s.t(lx.concatenate(steps, 1));
  const y = s.t(lx.matmul(s.t(lx.multiply(seq, g)), w.get(`${p}.wout`)!));
  return [s.t(lx.add(x, y)), st];
}
