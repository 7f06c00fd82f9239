/**
 * Writes a GGUF with SmolLM2-135M-Instruct's exact architecture and tensor types (Q4_1 matrices,
 * a Q8_0 token embedding tied as the output head, F32 norms) and seeded random contents. Decode
 * speed depends on shapes and types, not on the values, so this stands in for the real 98 MB file
 * where it can't be copied (the GPU machine takes at most 64 MiB of carried files).
 *
 *   bun bench/llm-synthetic.ts OUT.gguf
 */
import { writeFileSync } from "node:fs";
import { readGguf } from "../src/models/gguf.ts";
import { llamaConfig, LlamaModel, type LlamaOptions, llamaShapes, type LlamaConfig, loadLlamaWeights } from "../src/models/llama.ts";
import { type EntryToWrite, randomTensorData, rng, type TensorToWrite, writeGguf } from "../test/support/gguf-writer.ts";

/** SmolLM2-135M-Instruct's dimensions, as its GGUF metadata gives them. */
export const smolLM2Config: LlamaConfig = {
  vocab: 49152,
  dim: 576,
  layers: 30,
  heads: 9,
  kvHeads: 3,
  headDim: 64,
  ropeDims: 64,
  ropeBase: 100000,
  hidden: 1536,
  normEps: 1e-5,
  attentionScale: 1 / 8,
  contextLength: 8192,
  tiedHead: true,
};

/** The bytes of a SmolLM2-shaped GGUF with seeded random weights. */
export function synthesizeSmolLM2(seed = 1): Uint8Array {
  const cfg = smolLM2Config;
  const u32 = (value: number): EntryToWrite => ({ type: "uint32", value });
  const f32 = (value: number): EntryToWrite => ({ type: "float32", value });
  const metadata: [string, EntryToWrite][] = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: "SmolLM2-135M-shaped random weights" }],
    ["llama.vocab_size", u32(cfg.vocab)],
    ["llama.context_length", u32(cfg.contextLength)],
    ["llama.embedding_length", u32(cfg.dim)],
    ["llama.block_count", u32(cfg.layers)],
    ["llama.feed_forward_length", u32(cfg.hidden)],
    ["llama.rope.dimension_count", u32(cfg.ropeDims)],
    ["llama.attention.head_count", u32(cfg.heads)],
    ["llama.attention.head_count_kv", u32(cfg.kvHeads)],
    ["llama.attention.layer_norm_rms_epsilon", f32(cfg.normEps)],
    ["llama.rope.freq_base", f32(cfg.ropeBase)],
  ];
  const random = rng(seed);
  const tensors: TensorToWrite[] = [];
  for (const [name, shape] of llamaShapes(cfg)) {
    const count = shape.reduce((a, b) => a * b, 1);
    const type = shape.length === 1 ? "F32" : name === "token_embd.weight" ? "Q8_0" : "Q4_1";
    // Norm weights near 1 and small matrix entries keep activations finite through 30 blocks.
    const data = type === "F32" ? new Uint8Array(Float32Array.from({ length: count }, () => 0.9 + 0.2 * random()).buffer) : randomTensorData(type, count, random, 0.05);
    tensors.push({ name, type, shape, data });
  }
  return writeGguf({ metadata, tensors });
}

/** A tokenizer-less GGUF (such as this script writes) as a model named "synthetic". */
export function loadSyntheticModel(path: string, opts: LlamaOptions = {}): LlamaModel {
  const file = readGguf(path);
  const config = llamaConfig(file);
  return new LlamaModel("synthetic", config, loadLlamaWeights(file, config), opts);
}

/** A prompt of `n` plain token ids, for a model without a tokenizer. */
export const idPrompt = (n: number): number[] => Array.from({ length: n }, (_, i) => 1000 + i);

if (import.meta.main) {
  const out = process.argv[2];
  if (!out) throw new Error("usage: bun bench/llm-synthetic.ts OUT.gguf");
  writeFileSync(out, synthesizeSmolLM2());
  console.log(`wrote ${out}`);
}
