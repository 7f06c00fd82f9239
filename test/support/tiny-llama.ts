// A tiny Llama written as GGUF by the tests (every tensor type the loader reads), so the model
// code runs without the 98 MB file: its dimensions, metadata and seeded tensors.
import type { GgmlTypeName } from "../../src/models/gguf.ts";
import { type EntryToWrite, randomTensorData, rng, type TensorToWrite, writeGguf } from "./gguf-writer.ts";

export const cfg = { vocab: 40, dim: 64, heads: 4, kvHeads: 2, headDim: 16, hidden: 96, layers: 2, ropeBase: 10000, eps: 1e-5, context: 64 };
export const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
export const tokens = [...specials, ..."abcdefghijklmnopqrstuvwxyz0123456789", "ab"];

export function metadata(overrides: Record<string, EntryToWrite> = {}): [string, EntryToWrite][] {
  const base: Record<string, EntryToWrite> = {
    "general.architecture": { type: "string", value: "llama" },
    "llama.context_length": { type: "uint32", value: cfg.context },
    "llama.embedding_length": { type: "uint32", value: cfg.dim },
    "llama.block_count": { type: "uint32", value: cfg.layers },
    "llama.feed_forward_length": { type: "uint32", value: cfg.hidden },
    "llama.attention.head_count": { type: "uint32", value: cfg.heads },
    "llama.attention.head_count_kv": { type: "uint32", value: cfg.kvHeads },
    "llama.rope.freq_base": { type: "float32", value: cfg.ropeBase },
    "llama.attention.layer_norm_rms_epsilon": { type: "float32", value: cfg.eps },
    "tokenizer.ggml.model": { type: "string", value: "gpt2" },
    "tokenizer.ggml.pre": { type: "string", value: "smollm" },
    "tokenizer.ggml.tokens": { type: "array", itemType: "string", value: tokens },
    "tokenizer.ggml.token_type": { type: "array", itemType: "int32", value: Int32Array.from(tokens, (t) => (specials.includes(t) ? 3 : 1)) },
    "tokenizer.ggml.merges": { type: "array", itemType: "string", value: ["a b"] },
    "tokenizer.ggml.bos_token_id": { type: "uint32", value: 1 },
    "tokenizer.ggml.eos_token_id": { type: "uint32", value: 2 },
    "tokenizer.chat_template": { type: "string", value: "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}" },
  };
  return Object.entries({ ...base, ...overrides });
}

// Each kind of tensor in its own storage type, so the model runs on all six.
const storage: Record<string, GgmlTypeName> = {
  token_embd: "Q8_0", output: "Q4_0", attn_norm: "F32", ffn_norm: "F32", output_norm: "F32",
  attn_q: "Q4_1", attn_k: "Q4_0", attn_v: "F16", attn_output: "BF16", ffn_gate: "Q4_1", ffn_up: "Q8_0", ffn_down: "F16",
};

/**
 * The tiny model's tensors, seeded; with `outputHead`, an output head of its own (else tied to
 * the embedding); `storage` replaces the storage type of some kinds of tensor (`attn_q`, ...).
 */
export function tensors(seed: number, opts: { outputHead?: boolean; storage?: Record<string, GgmlTypeName> } = {}): TensorToWrite[] {
  const random = rng(seed);
  const q = cfg.heads * cfg.headDim, kv = cfg.kvHeads * cfg.headDim;
  const shapes: [string, number[]][] = [["token_embd.weight", [cfg.vocab, cfg.dim]], ["output_norm.weight", [cfg.dim]]];
  if (opts.outputHead) shapes.push(["output.weight", [cfg.vocab, cfg.dim]]);
  for (let i = 0; i < cfg.layers; i++)
    shapes.push(
      [`blk.${i}.attn_norm.weight`, [cfg.dim]], [`blk.${i}.attn_q.weight`, [q, cfg.dim]], [`blk.${i}.attn_k.weight`, [kv, cfg.dim]],
      [`blk.${i}.attn_v.weight`, [kv, cfg.dim]], [`blk.${i}.attn_output.weight`, [cfg.dim, q]], [`blk.${i}.ffn_norm.weight`, [cfg.dim]],
      [`blk.${i}.ffn_gate.weight`, [cfg.hidden, cfg.dim]], [`blk.${i}.ffn_up.weight`, [cfg.hidden, cfg.dim]], [`blk.${i}.ffn_down.weight`, [cfg.dim, cfg.hidden]],
    );
  return shapes.map(([name, shape]) => {
    const kind = name.split(".").at(-2)!;
    const type = opts.storage?.[kind] ?? storage[kind]!;
    const count = shape.reduce((a, b) => a * b, 1);
    // Norm weights near 1; matrices scaled so activations stay in a sensible range.
    const data = kind.endsWith("norm") ? new Uint8Array(Float32Array.from({ length: count }, () => 0.8 + 0.4 * random()).buffer) : randomTensorData(type, count, random, kind === "token_embd" ? 1 : 1 / Math.sqrt(shape[1]!));
    return { name, type, shape, data };
  });
}

/**
 * The tiny model's GGUF bytes: tensors seeded by `seed`, metadata `overrides`. With a head tied to
 * the embedding, greedy answers repeat one token; an `outputHead` of its own varies them.
 */
export function tinyLlamaGguf(seed: number, overrides: Record<string, EntryToWrite> = {}, opts: { outputHead?: boolean } = {}): Uint8Array {
  return writeGguf({ metadata: metadata(overrides), tensors: tensors(seed, opts) });
}
