/**
 * Llama-architecture decoders from GGUF files (e.g. SmolLM2), run on lanes ops: token
 * embedding, RMSNorm, rotary grouped-query attention with a causal mask and a KV cache, SwiGLU
 * feed-forward, final norm and an output head (tied to the embedding when the file has no
 * `output.weight`).
 *
 * Weights are dequantized to float32 at load time. Every product with a weight goes through
 * {@link linear} and every KV-cache update through {@link appendToCache}, so a quantized
 * matmul or an in-place cache append replaces one function each.
 * @module
 */
import type { LanesArray } from "../array.ts";
import * as lx from "../index.ts";
import type { Stream } from "../stream.ts";
import { GgufError, type GgufFile, metadataValue, tensorFloat32 } from "./gguf.ts";
import { Scope, type Weights } from "./layers.ts";
import type { DecoderState, Model, Step } from "./models.ts";

/** The dimensions of a Llama model, as its GGUF metadata gives them (plain data: it crosses Workers). */
export interface LlamaConfig {
  vocab: number;
  dim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Features per head that rotate (RoPE); the rest pass through. */
  ropeDims: number;
  ropeBase: number;
  hidden: number;
  normEps: number;
  /** q·k is multiplied by this. */
  attentionScale: number;
  contextLength: number;
  /** The output head is `token_embd.weight` (no `output.weight` in the file). */
  tiedHead: boolean;
}

function optionalNumber(file: GgufFile, key: string): number | undefined {
  return file.metadata.has(key) ? metadataValue(file, key, "number") : undefined;
}

/** Reads the model dimensions from a GGUF file's metadata; a file that is not a plain Llama gets a {@link GgufError}. */
export function llamaConfig(file: GgufFile): LlamaConfig {
  const arch = metadataValue(file, "general.architecture", "string");
  if (arch !== "llama") throw new GgufError(`general.architecture is "${arch}"; only "llama" is supported`);
  const key = (k: string) => `llama.${k}`;
  const num = (k: string) => metadataValue(file, key(k), "number");
  const experts = optionalNumber(file, key("expert_count")) ?? 0;
  if (experts > 0) throw new GgufError(`llama.expert_count is ${experts}: mixture-of-experts models are not supported`);
  const scaling = file.metadata.has(key("rope.scaling.type")) ? metadataValue(file, key("rope.scaling.type"), "string") : "none";
  if (scaling !== "none") throw new GgufError(`llama.rope.scaling.type "${scaling}" is not supported`);
  const dim = num("embedding_length");
  const heads = num("attention.head_count");
  const kvHeads = optionalNumber(file, key("attention.head_count_kv")) ?? heads;
  const headDim = optionalNumber(file, key("attention.key_length")) ?? dim / heads;
  const valueDim = optionalNumber(file, key("attention.value_length")) ?? headDim;
  const tokens = file.metadata.get("tokenizer.ggml.tokens")?.value;
  const vocab = optionalNumber(file, key("vocab_size")) ?? (Array.isArray(tokens) ? tokens.length : file.tensors.get("token_embd.weight")?.shape[0] ?? 0);
  const cfg: LlamaConfig = {
    vocab,
    dim,
    layers: num("block_count"),
    heads,
    kvHeads,
    headDim,
    ropeDims: optionalNumber(file, key("rope.dimension_count")) ?? headDim,
    ropeBase: optionalNumber(file, key("rope.freq_base")) ?? 10000,
    hidden: num("feed_forward_length"),
    normEps: num("attention.layer_norm_rms_epsilon"),
    attentionScale: optionalNumber(file, key("attention.scale")) || 1 / Math.sqrt(headDim),
    contextLength: num("context_length"),
    tiedHead: !file.tensors.has("output.weight"),
  };
  const bad = (what: string) => {
    throw new GgufError(`llama metadata: ${what}`);
  };
  for (const [k, v] of Object.entries(cfg)) if (typeof v === "number" && !(Number.isFinite(v) && v > 0)) bad(`${k} is ${v}`);
  for (const k of ["vocab", "dim", "layers", "heads", "kvHeads", "headDim", "ropeDims", "hidden", "contextLength"] as const)
    if (!Number.isInteger(cfg[k])) bad(`${k} is ${cfg[k]}, not an integer`);
  if (valueDim !== headDim) bad(`value head size ${valueDim} differs from key head size ${headDim}`);
  if (heads % kvHeads !== 0) bad(`${heads} query heads is not a multiple of ${kvHeads} KV heads`);
  if (cfg.ropeDims > headDim || cfg.ropeDims % 2 !== 0) bad(`rope.dimension_count ${cfg.ropeDims} does not fit head size ${headDim}`);
  return cfg;
}

/** Every tensor a Llama of `cfg` needs: GGUF name → row-major shape (`[out, in]` for matrices). */
export function llamaShapes(cfg: LlamaConfig): Map<string, number[]> {
  const q = cfg.heads * cfg.headDim;
  const kv = cfg.kvHeads * cfg.headDim;
  const out = new Map<string, number[]>([
    ["token_embd.weight", [cfg.vocab, cfg.dim]],
    ["output_norm.weight", [cfg.dim]],
  ]);
  if (!cfg.tiedHead) out.set("output.weight", [cfg.vocab, cfg.dim]);
  for (let i = 0; i < cfg.layers; i++) {
    const p = `blk.${i}.`;
    out.set(`${p}attn_norm.weight`, [cfg.dim]);
    out.set(`${p}attn_q.weight`, [q, cfg.dim]);
    out.set(`${p}attn_k.weight`, [kv, cfg.dim]);
    out.set(`${p}attn_v.weight`, [kv, cfg.dim]);
    out.set(`${p}attn_output.weight`, [cfg.dim, q]);
    out.set(`${p}ffn_norm.weight`, [cfg.dim]);
    out.set(`${p}ffn_gate.weight`, [cfg.hidden, cfg.dim]);
    out.set(`${p}ffn_up.weight`, [cfg.hidden, cfg.dim]);
    out.set(`${p}ffn_down.weight`, [cfg.dim, cfg.hidden]);
  }
  return out;
}

/**
 * Checks that the file's tensors are exactly those of `cfg` with the right shapes; the first
 * that isn't gets a {@link GgufError} naming it.
 */
export function checkLlamaTensors(file: GgufFile, cfg: LlamaConfig): Map<string, number[]> {
  const shapes = llamaShapes(cfg);
  for (const [name, shape] of shapes) {
    const t = file.tensors.get(name);
    if (!t) throw new GgufError(`tensor "${name}" is missing (a llama of ${cfg.layers} blocks needs it)`, name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new GgufError(
        `tensor "${name}" has shape [${t.shape.join(", ")}], but the architecture (width ${cfg.dim}, ${cfg.heads} heads of ${cfg.headDim}, ${cfg.kvHeads} KV heads, FFN ${cfg.hidden}, vocabulary ${cfg.vocab}) needs [${shape.join(", ")}]`,
        name,
      );
  }
  for (const name of file.tensors.keys())
    if (!shapes.has(name)) throw new GgufError(`tensor "${name}" is not part of a plain llama (biases, rope factors and experts are not supported)`, name);
  return shapes;
}

/** Dequantizes every weight of `file` to float32 lanes arrays (evaluated), by GGUF tensor name. */
export function loadLlamaWeights(file: GgufFile, cfg: LlamaConfig): Weights {
  const shapes = checkLlamaTensors(file, cfg);
  const weights: Weights = new Map();
  try {
    for (const [name, shape] of shapes) {
      const w = lx.array(tensorFloat32(file, name), shape);
      lx.eval(w);
      weights.set(name, w);
    }
  } catch (e) {
    for (const w of weights.values()) w.dispose();
    throw e;
  }
  return weights;
}

/**
 * `x · wᵀ` for a weight `w` stored `[out, in]` (GGUF's layout): the one place a weight
 * multiplies activations. The transposed operand is read in place.
 */
export function linear(s: Scope, x: LanesArray, w: LanesArray): LanesArray {
  return s.t(lx.matmul(x, s.t(lx.transpose(w))));
}

/**
 * The KV cache after appending `k`/`v` (`[1, kvHeads, L, headDim]`) to `cache` along the
 * sequence axis: the one place the cache grows.
 */
export function appendToCache(s: Scope, cache: readonly [LanesArray, LanesArray] | undefined, k: LanesArray, v: LanesArray): [LanesArray, LanesArray] {
  if (!cache) return [k, v];
  return [s.t(lx.concatenate([cache[0], k], 2)), s.t(lx.concatenate([cache[1], v], 2))];
}

/** A Llama decoder on lanes ops; implements the service's {@link Model}. */
export class LlamaModel implements Model {
  readonly kind = "decoder";
  /** A dense Llama-layout decoder, the same layer layout as the built-in "transformer". */
  readonly architecture = "transformer";
  readonly vocab: number;
  readonly maxSeq: number;
  readonly outputs: number;

  constructor(
    readonly name: string,
    readonly config: LlamaConfig,
    readonly weights: ReadonlyMap<string, LanesArray>,
  ) {
    for (const [tensor, shape] of llamaShapes(config)) {
      const w = weights.get(tensor);
      if (!w || w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i]))
        throw new GgufError(`weight "${tensor}" is ${w ? `[${w.shape.join(", ")}]` : "missing"}, expected [${shape.join(", ")}]`, tensor);
    }
    this.vocab = config.vocab;
    this.maxSeq = config.contextLength;
    this.outputs = config.vocab;
  }

  #w(name: string): LanesArray {
    return this.weights.get(name)!;
  }

  step(tokens: readonly number[], state: DecoderState | undefined, stream: Stream): Step {
    const step = this.stepLogits(tokens, state, stream, 1);
    return { ...step, logits: step.scope.t(lx.reshape(step.logits, [this.vocab], { stream })) };
  }

  /**
   * Like {@link step}, but the logits of the last `positions` tokens, `[positions, vocab]`
   * (all of them for perplexity; the answer's positions to check a continuation).
   */
  stepLogits(tokens: readonly number[], state: DecoderState | undefined, stream: Stream, positions = tokens.length): Step {
    const cfg = this.config;
    if (tokens.length === 0) throw new RangeError(`${this.name}: a step needs at least one token`);
    for (const t of tokens) if (!Number.isInteger(t) || t < 0 || t >= cfg.vocab) throw new RangeError(`${this.name}: token id ${t} is outside [0, ${cfg.vocab})`);
    const pos = state?.pos ?? 0;
    if (pos + tokens.length > cfg.contextLength) throw new RangeError(`${this.name}: ${pos + tokens.length} positions exceed the context length ${cfg.contextLength}`);
    if (!Number.isInteger(positions) || positions < 1 || positions > tokens.length) throw new RangeError(`${this.name}: positions ${positions} is outside [1, ${tokens.length}]`);
    const s = new Scope();
    const caches: LanesArray[] = [];
    const L = tokens.length;
    const logits = lx.withStream(stream, () => {
      let x = s.t(lx.reshape(s.t(lx.take(this.#w("token_embd.weight"), s.t(lx.array(Int32Array.from(tokens))))), [1, L, cfg.dim]));
      for (let i = 0; i < cfg.layers; i++) {
        const prev = state ? ([state.caches[2 * i]!, state.caches[2 * i + 1]!] as const) : undefined;
        const [y, k, v] = this.#attention(s, i, x, pos, prev);
        caches.push(k, v);
        x = this.#feedForward(s, i, y);
      }
      const last = s.t(lx.reshape(positions === L ? x : s.t(lx.slice(x, [0, L - positions, 0], [1, L, cfg.dim])), [positions, cfg.dim]));
      const h = s.t(lx.rmsNorm(last, this.#w("output_norm.weight"), cfg.normEps));
      return linear(s, h, this.#w(cfg.tiedHead ? "token_embd.weight" : "output.weight"));
    });
    return { logits, state: { pos: pos + L, caches }, scope: s };
  }

  #attention(s: Scope, i: number, x: LanesArray, pos: number, cache: readonly [LanesArray, LanesArray] | undefined): [LanesArray, LanesArray, LanesArray] {
    const cfg = this.config;
    const L = x.shape[1]!;
    const p = `blk.${i}.`;
    const h = s.t(lx.rmsNorm(x, this.#w(`${p}attn_norm.weight`), cfg.normEps));
    const heads = (t: LanesArray, n: number) => s.t(lx.transpose(s.t(lx.reshape(t, [1, L, n, cfg.headDim])), [0, 2, 1, 3]));
    // GGUF llama weights rotate adjacent feature pairs (llama.cpp's "normal" RoPE).
    const rope = (t: LanesArray) => s.t(lx.rope(t, cfg.ropeDims, { base: cfg.ropeBase, offset: pos, traditional: true }));
    const q = rope(heads(linear(s, h, this.#w(`${p}attn_q.weight`)), cfg.heads));
    const [k, v] = appendToCache(
      s,
      cache,
      rope(heads(linear(s, h, this.#w(`${p}attn_k.weight`)), cfg.kvHeads)),
      heads(linear(s, h, this.#w(`${p}attn_v.weight`)), cfg.kvHeads),
    );
    const a = s.t(lx.scaledDotProductAttention(q, k, v, { causal: true, scale: cfg.attentionScale }));
    const merged = s.t(lx.reshape(s.t(lx.transpose(a, [0, 2, 1, 3])), [1, L, cfg.heads * cfg.headDim]));
    return [s.t(lx.add(x, linear(s, merged, this.#w(`${p}attn_output.weight`)))), k, v];
  }

  #feedForward(s: Scope, i: number, x: LanesArray): LanesArray {
    const p = `blk.${i}.`;
    const h = s.t(lx.rmsNorm(x, this.#w(`${p}ffn_norm.weight`), this.config.normEps));
    const gate = s.t(lx.silu(linear(s, h, this.#w(`${p}ffn_gate.weight`))));
    const up = linear(s, h, this.#w(`${p}ffn_up.weight`));
    return s.t(lx.add(x, linear(s, s.t(lx.multiply(gate, up)), this.#w(`${p}ffn_down.weight`))));
  }

  dispose(): void {
    for (const w of this.weights.values()) w.dispose();
  }
}
