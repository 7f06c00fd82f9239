/**
 * Llama-architecture decoders from GGUF files (e.g. SmolLM2), run on lanes ops: token
 * embedding, RMSNorm, rotary grouped-query attention with a causal mask and a KV cache, SwiGLU
 * feed-forward, final norm and an output head (tied to the embedding when the file has no
 * `output.weight`).
 *
 * Quantized matrices (Q4_0, Q4_1, Q8_0) stay quantized in memory and are read by
 * `quantizedMatmul` and `take`; float ones load as float32 (`dequantize: true` loads every
 * weight as float32). The KV cache is preallocated and filled in place (kv-cache.ts), and a
 * decode step of one token runs as a compiled plan: one native call per token.
 * @module
 */
import type { LanesArray } from "../array.ts";
import * as lx from "../index.ts";
import type { Scalar } from "../scalar.ts";
import type { Stream } from "../stream.ts";
import { GgufError, type GgufFile, metadataValue, tensorBytes, tensorFloat32 } from "./gguf.ts";
import type { BatchDecoder, BatchPrefill, BatchStep, KVLayout } from "./batch.ts";
import { appendKV, cacheCapacity } from "./kv-cache.ts";
import { Scope, type Weights } from "./layers.ts";
import { type DecoderState, type Model, type Step, type StepTokens, stepIds, tokenCount } from "./models.ts";

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

const quantized: Record<string, lx.DType> = { Q4_0: "q4_0", Q4_1: "q4_1", Q8_0: "q8_0" };

// Matrices that read the same input, stacked by rows into one weight so that one matmul (one
// activation quantization, one dispatch) serves them all: a stack's name in a block, and its
// parts'. A column of a matmul does not depend on the other columns, so the results are those
// of the parts, bit for bit.
const stacks = { attn_qkv: ["attn_q", "attn_k", "attn_v"], ffn_gate_up: ["ffn_gate", "ffn_up"] } as const;
type StackName = keyof typeof stacks;

// Block `layer`'s stacks: the stacked weight's name and shape, and its parts' names.
function blockStacks(shapes: ReadonlyMap<string, number[]>, layer: number): { name: string; shape: number[]; parts: string[] }[] {
  const p = `blk.${layer}.`;
  return Object.entries(stacks).map(([stack, parts]) => {
    const names = parts.map((part) => `${p}${part}.weight`);
    const rows = names.reduce((n, name) => n + shapes.get(name)![0]!, 0);
    return { name: `${p}${stack}.weight`, shape: [rows, shapes.get(names[0]!)![1]!], parts: names };
  });
}

function concat<T extends Uint8Array | Float32Array>(parts: T[], make: (length: number) => T): T {
  const out = make(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The weights of `file` as lanes arrays (evaluated), by GGUF tensor name: quantized matrices
 * as they are stored, everything else (and, with `dequantize`, everything) as float32. A
 * block's q, k and v matrices, and its gate and up matrices, are stored stacked by rows where
 * they load as one dtype, as `blk.N.attn_qkv.weight` and `blk.N.ffn_gate_up.weight` (one
 * matmul each, the same results bit for bit).
 */
export function loadLlamaWeights(file: GgufFile, cfg: LlamaConfig, opts: { dequantize?: boolean } = {}): Weights {
  const shapes = checkLlamaTensors(file, cfg);
  const weights: Weights = new Map();
  const dtypeOf = (name: string) => (opts.dequantize ? undefined : quantized[file.tensors.get(name)!.type]);
  const fusedPart = new Set<string>();
  try {
    for (let i = 0; i < cfg.layers; i++)
      for (const { name: fused, shape, parts } of blockStacks(shapes, i)) {
        const type = dtypeOf(parts[0]!);
        if (parts.some((n) => dtypeOf(n) !== type)) continue;
        const w = type
          ? lx.arrayFromBytes(concat(parts.map((n) => tensorBytes(file, n)), (n) => new Uint8Array(n)), shape, type)
          : lx.array(concat(parts.map((n) => tensorFloat32(file, n)), (n) => new Float32Array(n)), shape);
        lx.eval(w);
        weights.set(fused, w);
        for (const n of parts) fusedPart.add(n);
      }
    for (const [name, shape] of shapes) {
      if (fusedPart.has(name)) continue;
      const type = dtypeOf(name);
      const w = type ? lx.arrayFromBytes(tensorBytes(file, name), shape, type) : lx.array(tensorFloat32(file, name), shape);
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
 * multiplies activations. A quantized weight is read in its blocks; a float one through a
 * transposed view (no copy).
 */
export function linear(s: Scope, x: LanesArray, w: LanesArray): LanesArray {
  if (w.dtype === "q4_0" || w.dtype === "q4_1" || w.dtype === "q8_0") return s.t(lx.quantizedMatmul(x, w));
  return s.t(lx.matmul(x, s.t(lx.transpose(w))));
}

/** How a {@link LlamaModel} runs. */
export interface LlamaOptions {
  /** Decode steps of one token run as a compiled plan (default true); false runs every op eagerly. */
  compiled?: boolean;
  /**
   * The KV cache's dtype (default float16, as llama.cpp keeps it): attention then reads
   * queries, keys and values at half precision and accumulates in float32.
   */
  kvCache?: "float16" | "float32";
}

// Where a step's tokens sit: one position for a single sequence, or an int32 array [batch]
// with each sequence's own position (a batched decode step).
type Position = number | Scalar | LanesArray;

/**
 * A Llama decoder on lanes ops; implements the service's {@link Model}, and {@link BatchDecoder}:
 * one decode step for many sequences at once (see {@link DecodeBatch}).
 */
export class LlamaModel implements BatchDecoder {
  readonly kind = "decoder";
  readonly architecture = "llama";
  readonly vocab: number;
  readonly maxSeq: number;
  readonly outputs: number;
  readonly #compiled: boolean;
  readonly #kvDtype: "float16" | "float32";
  // Output rows of each part of a stack (attn_q, ffn_up, ...).
  readonly #partRows: Map<string, number>;
  // The decode step of one token: (token id, position, key length, caches...) -> [logits, caches...].
  readonly #decode: lx.CompiledFunction<[LanesArray, number, number, ...LanesArray[]], LanesArray[]>;
  // The decode step of a batch, one token per sequence: (token ids [B], positions [B], caches...)
  // -> [logits [B, vocab], greedy tokens [B], caches...]. One plan per (B, cache capacity).
  readonly #decodeBatch: lx.CompiledFunction<[LanesArray, LanesArray, ...LanesArray[]], LanesArray[]>;
  /** The KV caches of a batched decode step (see {@link BatchDecoder.kvLayout}). */
  readonly kvLayout: KVLayout;

  constructor(
    readonly name: string,
    readonly config: LlamaConfig,
    readonly weights: ReadonlyMap<string, LanesArray>,
    opts: LlamaOptions = {},
  ) {
    const shapes = llamaShapes(config);
    this.#partRows = new Map(Object.values(stacks).flatMap((parts) => parts.map((n): [string, number] => [n, shapes.get(`blk.0.${n}.weight`)![0]!])));
    for (let i = 0; i < config.layers; i++)
      for (const { name, shape, parts } of blockStacks(shapes, i)) {
        if (!weights.has(name)) continue;
        shapes.set(name, shape);
        for (const part of parts) shapes.delete(part);
      }
    for (const [tensor, shape] of shapes) {
      const w = weights.get(tensor);
      if (!w || w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i]))
        throw new GgufError(`weight "${tensor}" is ${w ? `[${w.shape.join(", ")}]` : "missing"}, expected [${shape.join(", ")}]`, tensor);
    }
    this.vocab = config.vocab;
    this.maxSeq = config.contextLength;
    this.outputs = config.vocab;
    this.#compiled = opts.compiled ?? true;
    this.#kvDtype = opts.kvCache ?? "float16";
    const caches = Array.from({ length: 2 * config.layers }, (_, i) => i + 3);
    this.#decode = lx.compile(
      (ids: LanesArray, pos: number, keys: number, ...cache: LanesArray[]) => {
        const s = new Scope();
        const capacity = cache[0]!.shape[2]!;
        const { logits, caches: next } = this.#forward(s, ids, 1, pos, keys, cache, capacity, 1);
        // The greedy token with the logits: a generation one step ahead feeds it to the next
        // step without an op of its own between the steps.
        return [logits, s.t(lx.argmax(logits, -1)), ...next];
      },
      { scalars: [1, 2], donate: caches },
    );
    this.kvLayout = { caches: 2 * config.layers, kvHeads: config.kvHeads, headDim: config.headDim, dtype: this.#kvDtype };
    this.#decodeBatch = lx.compile(
      (ids: LanesArray, positions: LanesArray, ...cache: LanesArray[]) => {
        const s = new Scope();
        const keys = s.t(lx.add(positions, 1));
        const { logits, caches: next } = this.#forward(s, ids, 1, positions, keys, cache, cache[0]!.shape[2]!, 1);
        return [logits, s.t(lx.argmax(logits, -1)), ...next];
      },
      { donate: caches.map((i) => i - 1), maxPlans: 64 },
    );
  }

  #w(name: string): LanesArray {
    return this.weights.get(name)!;
  }

  step(tokens: StepTokens, state: DecoderState | undefined, stream: Stream): Step {
    const step = this.stepLogits(tokens, state, stream, 1);
    return { ...step, logits: step.scope.t(lx.reshape(step.logits, [this.vocab], { stream })) };
  }

  /**
   * Like {@link step}, but the logits of the last `positions` tokens, `[positions, vocab]`
   * (all of them for perplexity; the answer's positions to check a continuation). Consumes
   * `state`'s caches.
   */
  stepLogits(tokens: StepTokens, state: DecoderState | undefined, stream: Stream, positions = tokenCount(tokens)): Step {
    const cfg = this.config;
    const pos = state?.pos ?? 0;
    const L = tokenCount(tokens);
    if (L === 0) throw new RangeError(`${this.name}: a step needs at least one token`);
    if (pos + L > cfg.contextLength) throw new RangeError(`${this.name}: ${pos + L} positions exceed the context length ${cfg.contextLength}`);
    if (!Number.isInteger(positions) || positions < 1 || positions > L) throw new RangeError(`${this.name}: positions ${positions} is outside [1, ${L}]`);
    const s = new Scope();
    const capacity = cacheCapacity(pos + L, cfg.contextLength);
    return lx.withStream(stream, () => {
      const ids = stepIds(s, tokens, cfg.vocab, this.name);
      if (this.#compiled && L === 1 && state && state.caches[0]!.shape[2]! >= pos + 1) {
        const [logits, greedy, ...caches] = this.#decode(ids, pos, pos + 1, ...state.caches);
        return { logits: s.t(logits!), greedy: s.t(greedy!), state: { pos: pos + 1, caches }, scope: s };
      }
      const { logits, caches } = this.#forward(s, ids, L, pos, pos + L, state?.caches, capacity, positions);
      return { logits, state: { pos: pos + L, caches }, scope: s };
    });
  }

  /**
   * One decode step of a batch of sequences, one token each: `tokens` (host ids, or an int32
   * array on the device such as a step's `greedy`) and `positions` (where each token goes, i.e.
   * how many its sequence has in the cache) are int32 `[slots]`, the
   * caches `[slots, kvHeads, capacity, headDim]` as {@link kvLayout} describes (consumed). A
   * compiled plan per (slots, capacity): one native call for the whole batch.
   */
  decodeBatch(tokens: Int32Array | LanesArray, positions: Int32Array, caches: readonly LanesArray[], stream: Stream): BatchStep {
    const host = tokens instanceof Int32Array;
    const slots = host ? tokens.length : tokens.shape[0]!;
    const capacity = caches[0]?.shape[2] ?? 0;
    if (positions.length !== slots) throw new RangeError(`${this.name}: ${slots} tokens but ${positions.length} positions`);
    if (caches.length !== this.kvLayout.caches) throw new RangeError(`${this.name}: a batched step takes ${this.kvLayout.caches} caches, got ${caches.length}`);
    if (host) {
      for (const t of tokens) if (t < 0 || t >= this.vocab) throw new RangeError(`${this.name}: token id ${t} is outside [0, ${this.vocab})`);
    } else if (tokens.dtype !== "int32" || tokens.ndim !== 1) {
      throw new RangeError(`${this.name}: device token ids must be int32 [slots], got ${tokens.dtype} [${tokens.shape.join(", ")}]`);
    }
    for (const p of positions) if (p < 0 || p >= capacity) throw new RangeError(`${this.name}: position ${p} is outside the cache's capacity ${capacity}`);
    const s = new Scope();
    return lx.withStream(stream, () => {
      const ids = host ? s.t(lx.array(tokens)) : tokens;
      const pos = s.t(lx.array(positions));
      const [logits, greedy, ...next] = this.#decodeBatch(ids, pos, ...caches);
      return { logits: s.t(logits!), greedy: s.t(greedy!), caches: next, scope: s };
    });
  }

  /**
   * Prompts prefilled together in one forward pass, each from position 0, right-padded to the
   * longest (padding only ever follows a prompt's tokens, so causal attention keeps each prompt to
   * its own): the logits at each prompt's last token, `[k, vocab]`, and caches `[k, kvHeads,
   * capacity, headDim]` whose row j holds prompt j's keys and values at positions 0..length-1
   * (past them, padding that no later step reads: each writes its token before attending to it).
   * Each row's logits equal those of the prompt prefilled alone.
   */
  prefillBatch(prompts: readonly (readonly number[])[], stream: Stream): BatchPrefill {
    const cfg = this.config;
    if (prompts.length === 0) throw new RangeError(`${this.name}: a batched prefill needs at least one prompt`);
    const L = Math.max(...prompts.map((p) => p.length));
    if (prompts.some((p) => p.length === 0)) throw new RangeError(`${this.name}: a prompt is empty`);
    if (L > cfg.contextLength) throw new RangeError(`${this.name}: a prompt of ${L} tokens exceeds the context length ${cfg.contextLength}`);
    const ids = new Int32Array(prompts.length * L);
    prompts.forEach((p, j) => {
      for (const [i, t] of p.entries()) {
        if (!Number.isInteger(t) || t < 0 || t >= cfg.vocab) throw new RangeError(`${this.name}: token id ${t} is outside [0, ${cfg.vocab})`);
        ids[j * L + i] = t;
      }
    });
    const s = new Scope();
    return lx.withStream(stream, () => {
      const last = s.t(lx.array(Int32Array.from(prompts, (p, j) => j * L + p.length - 1)));
      const { logits, caches } = this.#forward(s, s.t(lx.array(ids)), L, 0, L, undefined, cacheCapacity(L, cfg.contextLength), last);
      return { logits, caches, scope: s };
    });
  }

  // The forward pass of `L` tokens per sequence at `pos` (ids: [batch * L]); the caches grow to
  // `capacity` (a compiled step passes its own, so its shapes stay). Logits of the last `last`
  // positions of each sequence, or of the rows `last` picks among the batch * L positions.
  #forward(
    s: Scope,
    ids: LanesArray,
    L: number,
    pos: Position,
    keys: Position,
    cache: readonly LanesArray[] | undefined,
    capacity: number,
    last: number | LanesArray,
  ): { logits: LanesArray; caches: LanesArray[] } {
    const cfg = this.config;
    const caches: LanesArray[] = [];
    const B = ids.shape[0]! / L;
    let x = s.t(lx.reshape(s.t(lx.take(this.#w("token_embd.weight"), ids)), [B, L, cfg.dim]));
    for (let i = 0; i < cfg.layers; i++) {
      const [y, k, v] = this.#attention(s, i, x, pos, keys, cache?.[2 * i], cache?.[2 * i + 1], capacity);
      caches.push(k, v);
      x = this.#feedForward(s, i, y);
    }
    let rows: LanesArray;
    if (typeof last === "number") rows = s.t(lx.reshape(last === L ? x : s.t(lx.slice(x, [0, L - last, 0], [B, L, cfg.dim])), [B * last, cfg.dim]));
    else rows = s.t(lx.take(s.t(lx.reshape(x, [B * L, cfg.dim])), last, 0));
    const h = s.t(lx.rmsNorm(rows, this.#w("output_norm.weight"), cfg.normEps));
    return { logits: linear(s, h, this.#w(cfg.tiedHead ? "token_embd.weight" : "output.weight")), caches };
  }

  #attention(
    s: Scope,
    i: number,
    x: LanesArray,
    pos: Position,
    keys: Position,
    kCache: LanesArray | undefined,
    vCache: LanesArray | undefined,
    capacity: number,
  ): [LanesArray, LanesArray, LanesArray] {
    const cfg = this.config;
    const [B, L] = x.shape as [number, number, number];
    const p = `blk.${i}.`;
    const h = s.t(lx.rmsNorm(x, this.#w(`${p}attn_norm.weight`), cfg.normEps));
    const heads = (t: LanesArray, n: number) => s.t(lx.transpose(s.t(lx.reshape(t, [B, L, n, cfg.headDim])), [0, 2, 1, 3]));
    // GGUF llama weights rotate adjacent feature pairs (llama.cpp's "normal" RoPE).
    const rope = (t: LanesArray) => s.t(lx.rope(t, cfg.ropeDims, { base: cfg.ropeBase, offset: pos, traditional: true }));
    const kv = (t: LanesArray) => (t.dtype === this.#kvDtype ? t : s.t(lx.astype(t, this.#kvDtype)));
    // q stays float32: over a float16 cache, attention rounds it to float16 for the scores and
    // returns float32, as llama.cpp's flash attention does.
    let q: LanesArray, kr: LanesArray, vx: LanesArray;
    const qkv = this.weights.get(`${p}attn_qkv.weight`);
    if (qkv && B === 1) {
      // One sequence: a rope over the q and k heads' rows at once (one op instead of two; rope
      // is per row and position, so the same bits), then split by heads.
      const y = linear(s, h, qkv);
      const qRows = this.#partRows.get("attn_q")!, kRows = this.#partRows.get("attn_k")!, qkHeads = cfg.heads + cfg.kvHeads;
      const qk = rope(heads(s.t(lx.slice(y, [0, 0, 0], [1, L, qRows + kRows])), qkHeads));
      q = s.t(lx.slice(qk, [0, 0, 0, 0], [1, cfg.heads, L, cfg.headDim]));
      kr = s.t(lx.slice(qk, [0, cfg.heads, 0, 0], [1, qkHeads, L, cfg.headDim]));
      vx = s.t(lx.slice(y, [0, 0, qRows + kRows], [1, L, y.shape[2]!]));
    } else {
      const [qx, kx, vxs] = this.#linears(s, h, i, "attn_qkv") as [LanesArray, LanesArray, LanesArray];
      [q, kr, vx] = [rope(heads(qx, cfg.heads)), rope(heads(kx, cfg.kvHeads)), vxs];
    }
    const k = appendKV(s, kCache, kv(kr), pos, capacity);
    const v = appendKV(s, vCache, kv(heads(vx, cfg.kvHeads)), pos, capacity);
    const a = s.t(lx.scaledDotProductAttention(q, k, v, { causal: true, scale: cfg.attentionScale, keyLength: keys }));
    const merged = s.t(lx.reshape(s.t(lx.transpose(a, [0, 2, 1, 3])), [B, L, cfg.heads * cfg.headDim]));
    return [s.t(lx.add(x, linear(s, merged, this.#w(`${p}attn_output.weight`)))), k, v];
  }

  #feedForward(s: Scope, i: number, x: LanesArray): LanesArray {
    const p = `blk.${i}.`;
    const h = s.t(lx.rmsNorm(x, this.#w(`${p}ffn_norm.weight`), this.config.normEps));
    const [gateX, up] = this.#linears(s, h, i, "ffn_gate_up") as [LanesArray, LanesArray];
    const gate = s.t(lx.silu(gateX));
    return s.t(lx.add(x, linear(s, s.t(lx.multiply(gate, up)), this.#w(`${p}ffn_down.weight`))));
  }

  // h times each of block i's matrices in `stack`: one matmul by the stacked weight where the
  // model has it, its columns then split.
  #linears(s: Scope, h: LanesArray, i: number, stack: StackName): LanesArray[] {
    const p = `blk.${i}.`;
    const parts = stacks[stack];
    const w = this.weights.get(`${p}${stack}.weight`);
    if (!w) return parts.map((part) => linear(s, h, this.#w(`${p}${part}.weight`)));
    const y = linear(s, h, w);
    const lead = y.shape.slice(0, -1);
    const out: LanesArray[] = [];
    let at = 0;
    for (const part of parts) {
      const rows = this.#partRows.get(part)!;
      out.push(s.t(lx.slice(y, [...lead.map(() => 0), at], [...lead, at + rows])));
      at += rows;
    }
    return out;
  }

  dispose(): void {
    this.#decode.dispose();
    this.#decodeBatch.dispose();
    for (const w of this.weights.values()) w.dispose();
  }
}
