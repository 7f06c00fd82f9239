/**
 * The three model architectures the service runs, built only from lanes ops:
 * - `mlp`: a classifier (mean of token embeddings, GELU hidden layer, class logits);
 * - `transformer`: a dense Llama-style decoder (RMSNorm, rotary grouped-query attention with a
 *   causal mask and KV cache, SwiGLU MLP, LM head tied to the embedding);
 * - `hybrid`: attention blocks with a gated linear recurrence layer between them and a
 *   separate LM head.
 * @module
 */
import type { LanesArray } from "../array.ts";
import * as lx from "../index.ts";
import type { Stream } from "../stream.ts";
import type { Scalar } from "../scalar.ts";
import { cacheCapacity } from "./kv-cache.ts";
import { attentionBlock, type DecoderConfig, mlpBlock, recurrenceBlock, Scope, weight, type Weights } from "./layers.ts";
import { byteVocab } from "./tokenizer.ts";

/** Per-request decoding state: the position and the caches (KV pairs, recurrence states). */
export interface DecoderState {
  pos: number;
  caches: LanesArray[];
}

/** One forward step's lazy outputs: the last position's logits and the next state. */
export interface Step {
  logits: LanesArray;
  /** The first most likely next token, int32 `[1]`, where the step computes it with the logits (a compiled decode step). */
  greedy?: LanesArray;
  state: DecoderState;
  scope: Scope;
}

/**
 * The token ids a step reads: numbers from the host, or an int32 `[L]` array already on the
 * device (a previous step's greedy token, so the step can be queued before that one is read).
 */
export type StepTokens = readonly number[] | LanesArray;

/**
 * `tokens` as the int32 array a step embeds, checked against `vocab` where they are on the host
 * (device ids come from the model's own argmax). A host array is `s`'s to free.
 */
export function stepIds(s: Scope, tokens: StepTokens, vocab: number, name: string): LanesArray {
  if (!Array.isArray(tokens)) {
    const ids = tokens as LanesArray;
    if (ids.dtype !== "int32" || ids.ndim !== 1 || ids.shape[0] === 0)
      throw new RangeError(`${name}: device token ids must be a non-empty int32 [L] array, got ${ids.dtype} [${ids.shape.join(", ")}]`);
    return ids;
  }
  if (tokens.length === 0) throw new RangeError(`${name}: a step needs at least one token`);
  for (const t of tokens) if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new RangeError(`${name}: token id ${t} is outside [0, ${vocab})`);
  return s.t(lx.array(Int32Array.from(tokens)));
}

/** How many tokens `tokens` holds. */
export function tokenCount(tokens: StepTokens): number {
  return Array.isArray(tokens) ? tokens.length : (tokens as LanesArray).shape[0]!;
}

/** A model the service can run. */
export interface Model {
  readonly name: string;
  /** The toy architectures by name, or "llama" for a GGUF Llama. */
  readonly architecture: Architecture["name"] | "llama";
  /** The float32 weights, by tensor name (shareable with Workers by id). */
  readonly weights: ReadonlyMap<string, LanesArray>;
  readonly kind: "classifier" | "decoder";
  /** Token ids accepted: [0, vocab). */
  readonly vocab: number;
  /** Longest prompt plus generation. */
  readonly maxSeq: number;
  /** Number of logits a step returns. */
  readonly outputs: number;
  /**
   * Records one step on `stream` (lazy): `tokens` follow `state` (undefined: a new sequence),
   * whose caches the step consumes.
   */
  step(tokens: StepTokens, state: DecoderState | undefined, stream: Stream): Step;
  /** Frees the weights. */
  dispose(): void;
}

/** Layer layout of a model kind, and the weights it needs (name → shape). */
export interface Architecture {
  name: "mlp" | "transformer" | "hybrid";
  config: DecoderConfig & { classes?: number; layers: ("attn" | "rec")[] };
  /** Every weight the architecture needs: tensor name → shape. */
  shapes(): Record<string, number[]>;
}

const decoderBase: DecoderConfig = { vocab: byteVocab, dim: 128, heads: 8, kvHeads: 2, hidden: 384, maxSeq: 512, ropeBase: 10000 };

function decoderShapes(cfg: Architecture["config"], tiedHead: boolean): Record<string, number[]> {
  const hd = cfg.dim / cfg.heads;
  const out: Record<string, number[]> = { embed: [cfg.vocab, cfg.dim], norm: [cfg.dim] };
  if (!tiedHead) out.head = [cfg.dim, cfg.vocab];
  cfg.layers.forEach((kind, i) => {
    const p = `layers.${i}`;
    if (kind === "attn") {
      Object.assign(out, {
        [`${p}.attn_norm`]: [cfg.dim],
        [`${p}.wq`]: [cfg.dim, cfg.heads * hd],
        [`${p}.wk`]: [cfg.dim, cfg.kvHeads * hd],
        [`${p}.wv`]: [cfg.dim, cfg.kvHeads * hd],
        [`${p}.wo`]: [cfg.heads * hd, cfg.dim],
      });
    } else {
      Object.assign(out, {
        [`${p}.rec_norm`]: [cfg.dim],
        [`${p}.wa`]: [cfg.dim, cfg.dim],
        [`${p}.wu`]: [cfg.dim, cfg.dim],
        [`${p}.wg`]: [cfg.dim, cfg.dim],
        [`${p}.wout`]: [cfg.dim, cfg.dim],
      });
    }
    Object.assign(out, {
      [`${p}.mlp_norm`]: [cfg.dim],
      [`${p}.w1`]: [cfg.dim, cfg.hidden],
      [`${p}.w3`]: [cfg.dim, cfg.hidden],
      [`${p}.w2`]: [cfg.hidden, cfg.dim],
    });
  });
  return out;
}

/** The architectures, with the sizes of the default (small, seeded) weights. */
export const architectures: Record<Architecture["name"], Architecture> = {
  mlp: {
    name: "mlp",
    config: { ...decoderBase, hidden: 128, classes: 8, layers: [] },
    shapes() {
      const c = this.config;
      return { embed: [c.vocab, c.dim], w1: [c.dim, c.hidden], b1: [c.hidden], w2: [c.hidden, c.classes!], b2: [c.classes!] };
    },
  },
  transformer: {
    name: "transformer",
    config: { ...decoderBase, layers: ["attn", "attn", "attn", "attn"] },
    shapes() {
      return decoderShapes(this.config, true);
    },
  },
  hybrid: {
    name: "hybrid",
    config: { ...decoderBase, layers: ["attn", "rec", "attn"] },
    shapes() {
      return decoderShapes(this.config, false);
    },
  },
};

function checkShapes(arch: Architecture, w: Weights): void {
  for (const [name, shape] of Object.entries(arch.shapes())) weight(w, name, shape);
}

// What both model kinds share: the checked weights and the dimensions from the architecture.
abstract class BaseModel {
  readonly vocab: number;
  readonly maxSeq: number;
  readonly architecture: Architecture["name"];
  constructor(
    readonly name: string,
    protected readonly arch: Architecture,
    protected readonly w: Weights,
  ) {
    checkShapes(arch, w);
    this.architecture = arch.name;
    this.vocab = arch.config.vocab;
    this.maxSeq = arch.config.maxSeq;
  }
  get weights(): ReadonlyMap<string, LanesArray> {
    return this.w;
  }
  dispose(): void {
    for (const a of this.w.values()) a.dispose();
  }
}

class Classifier extends BaseModel implements Model {
  readonly kind = "classifier";
  get outputs(): number {
    return this.arch.config.classes!;
  }
  step(tokens: StepTokens, _state: DecoderState | undefined, stream: Stream): Step {
    const s = new Scope();
    const w = this.w;
    const logits = lx.withStream(stream, () => {
      const x = s.t(lx.mean(s.t(lx.take(w.get("embed")!, stepIds(s, tokens, this.vocab, this.name))), 0, { keepdims: true }));
      const h = s.t(lx.gelu(s.t(lx.add(s.t(lx.matmul(x, w.get("w1")!)), w.get("b1")!))));
      return s.t(lx.reshape(s.t(lx.add(s.t(lx.matmul(h, w.get("w2")!)), w.get("b2")!)), [this.outputs]));
    });
    return { logits, state: { pos: tokenCount(tokens), caches: [] }, scope: s };
  }
}

class Decoder extends BaseModel implements Model {
  readonly kind = "decoder";
  readonly #compiled: boolean;
  // The decode step of one token: (token id, position, key length, caches...) -> [logits, caches...].
  readonly #decode: lx.CompiledFunction<[LanesArray, number, number, ...LanesArray[]], LanesArray[]>;

  constructor(name: string, arch: Architecture, w: Weights, opts: { compiled?: boolean } = {}) {
    super(name, arch, w);
    this.#compiled = opts.compiled ?? true;
    const caches = arch.config.layers.flatMap((kind) => (kind === "attn" ? [0, 1] : [0]));
    const firstAttn = arch.config.layers.indexOf("attn");
    this.#decode = lx.compile(
      (ids: LanesArray, pos: number, keys: number, ...cache: LanesArray[]) => {
        const capacity = firstAttn >= 0 ? cache[this.#cacheIndex(firstAttn)]!.shape[2]! : 0;
        const { logits, caches: next } = this.#forward(new Scope(), ids, 1, pos, keys, cache, capacity);
        return [logits, ...next];
      },
      { scalars: [1, 2], donate: caches.map((_, i) => i + 3) },
    );
  }

  get outputs(): number {
    return this.arch.config.vocab;
  }

  // Where layer `layer`'s state starts among the caches (two arrays per attention layer, one per recurrence).
  #cacheIndex(layer: number): number {
    return this.arch.config.layers.slice(0, layer).reduce((n, kind) => n + (kind === "attn" ? 2 : 1), 0);
  }

  step(tokens: StepTokens, state: DecoderState | undefined, stream: Stream): Step {
    const cfg = this.arch.config;
    const s = new Scope();
    const pos = state?.pos ?? 0;
    const L = tokenCount(tokens);
    const firstAttn = cfg.layers.indexOf("attn");
    const held = state && firstAttn >= 0 ? state.caches[this.#cacheIndex(firstAttn)]!.shape[2]! : 0;
    return lx.withStream(stream, () => {
      const ids = stepIds(s, tokens, cfg.vocab, this.name);
      if (this.#compiled && L === 1 && state && (firstAttn < 0 || held >= pos + 1)) {
        const [logits, ...caches] = this.#decode(ids, pos, pos + 1, ...state.caches);
        return { logits: s.t(logits!), state: { pos: pos + 1, caches }, scope: s };
      }
      const { logits, caches } = this.#forward(s, ids, L, pos, pos + L, state?.caches, cacheCapacity(pos + L, cfg.maxSeq));
      return { logits, state: { pos: pos + L, caches }, scope: s };
    });
  }

  // The forward pass of `L` tokens at `pos`; attention caches grow to `capacity`.
  #forward(
    s: Scope,
    ids: LanesArray,
    L: number,
    pos: number | Scalar,
    keys: number | Scalar,
    state: readonly LanesArray[] | undefined,
    capacity: number,
  ): { logits: LanesArray; caches: LanesArray[] } {
    const cfg = this.arch.config;
    const w = this.w;
    const caches: LanesArray[] = [];
    let x = s.t(lx.reshape(s.t(lx.take(w.get("embed")!, ids)), [1, L, cfg.dim]));
    let c = 0;
    cfg.layers.forEach((kind, i) => {
      const p = `layers.${i}`;
      if (kind === "attn") {
        const prev = state ? ([state[c]!, state[c + 1]!] as const) : undefined;
        const [y, k, v] = attentionBlock(s, w, p, cfg, x, pos, keys, prev, capacity);
        caches.push(k, v);
        c += 2;
        x = y;
      } else {
        const [y, st] = recurrenceBlock(s, w, p, cfg.dim, x, state?.[c]);
        caches.push(st);
        c += 1;
        x = y;
      }
      x = mlpBlock(s, w, p, x);
    });
    const last = s.t(lx.reshape(s.t(lx.slice(x, [0, L - 1, 0], [1, L, cfg.dim])), [1, cfg.dim]));
    const h = s.t(lx.rmsNorm(last, w.get("norm")!, 1e-5));
    const head = w.get("head") ?? s.t(lx.transpose(w.get("embed")!));
    return { logits: s.t(lx.reshape(s.t(lx.matmul(h, head)), [cfg.vocab])), caches };
  }

  override dispose(): void {
    this.#decode.dispose();
    super.dispose();
  }
}

/**
 * Builds a model of `arch` from float32 weights (converted by the caller). A decoder runs its
 * one-token steps as a compiled plan unless `compiled` is false.
 */
export function buildModel(name: string, arch: Architecture, weights: Weights, opts: { compiled?: boolean } = {}): Model {
  return arch.name === "mlp" ? new Classifier(name, arch, weights) : new Decoder(name, arch, weights, opts);
}
