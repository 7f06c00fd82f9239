/**
 * The byte-level BPE tokenizer of a GGUF model (`tokenizer.ggml.model = gpt2`), built from the
 * file's vocabulary, merges and token types with `@huggingface/tokenizers`. The pre-tokenizer
 * follows llama.cpp's for the file's `tokenizer.ggml.pre`: every number character on its own,
 * then GPT-2's split. Decoding maps the byte-level characters back to bytes itself, so a stream
 * of ids can be decoded without ever cutting a UTF-8 character.
 * @module
 */
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { GgufError, type GgufFile, metadataValue } from "./gguf.ts";
import type { Tokenizer } from "./text.ts";

// llama.cpp's token types (llama_token_type).
const tokenType = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

// Pre-tokenizers by `tokenizer.ggml.pre`, as llama.cpp's llama-vocab.cpp splits text for them.
const gpt2Split = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
const preTokenizers: Record<string, object> = {
  smollm: { type: "Sequence", pretokenizers: [{ type: "Split", pattern: { Regex: "\\p{N}" }, behavior: "Isolated", invert: false }, gpt2Split] },
  gpt2: gpt2Split,
};

// Names llama.cpp also treats as ending a generation when they are control tokens.
const endOfGenerationTexts = new Set(["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>"]);

// GPT-2's byte-to-character table (bytes_to_unicode), inverted: character code → byte.
function byteLevelDecoder(): Map<number, number> {
  const out = new Map<number, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out.set(printable ? b : 256 + extra++, b);
  }
  return out;
}

function stringArray(file: GgufFile, key: string): string[] {
  const e = file.metadata.get(key);
  if (!e || e.itemType !== "string") throw new GgufError(`metadata "${key}" is missing or not an array of strings`);
  return e.value as string[];
}

/** Decodes a stream of token ids into text, one id at a time. */
export interface StreamDecoder {
  /** The text that `id` completes (empty while a UTF-8 character is still incomplete). */
  push(id: number): string;
  /** What is left at the end (U+FFFD for an incomplete character). */
  flush(): string;
}

/** A GGUF model's tokenizer. */
export class GgufTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly stopIds: readonly number[];
  /** The id of the beginning-of-text token. */
  readonly bosId: number;
  readonly #withSpecial: HfTokenizer;
  readonly #plain: HfTokenizer;
  readonly #pieces: Uint8Array[];
  readonly #special: Uint8Array; // 1 where a token is a control token

  constructor(file: GgufFile) {
    const model = metadataValue(file, "tokenizer.ggml.model", "string");
    if (model !== "gpt2") throw new GgufError(`tokenizer.ggml.model "${model}" is not supported (only byte-level BPE, "gpt2")`);
    const pre = file.metadata.has("tokenizer.ggml.pre") ? metadataValue(file, "tokenizer.ggml.pre", "string") : "gpt2";
    const preTokenizer = preTokenizers[pre];
    if (!preTokenizer) throw new GgufError(`tokenizer.ggml.pre "${pre}" is not supported (have: ${Object.keys(preTokenizers).join(", ")})`);
    const tokens = stringArray(file, "tokenizer.ggml.tokens");
    const merges = stringArray(file, "tokenizer.ggml.merges");
    const typesEntry = file.metadata.get("tokenizer.ggml.token_type");
    const types = typesEntry?.value instanceof Int32Array ? typesEntry.value : new Int32Array(tokens.length).fill(tokenType.normal);
    if (types.length !== tokens.length) throw new GgufError(`tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`);
    this.vocabSize = tokens.length;
    this.bosId = file.metadata.has("tokenizer.ggml.bos_token_id") ? metadataValue(file, "tokenizer.ggml.bos_token_id", "number") : -1;

    const vocab: Record<string, number> = {};
    const added: object[] = [];
    const toByte = byteLevelDecoder();
    const encoder = new TextEncoder();
    this.#pieces = new Array(tokens.length);
    this.#special = new Uint8Array(tokens.length);
    const stops = new Set<number>();
    for (const key of ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]) {
      if (file.metadata.has(key)) stops.add(metadataValue(file, key, "number"));
    }
    tokens.forEach((text, id) => {
      vocab[text] = id;
      const type = types[id]!;
      if (type === tokenType.control || type === tokenType.userDefined) {
        added.push({ id, content: text, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type === tokenType.control });
        this.#pieces[id] = encoder.encode(text);
        if (type === tokenType.control) this.#special[id] = 1;
        if (type === tokenType.control && endOfGenerationTexts.has(text)) stops.add(id);
        return;
      }
      const bytes: number[] = [];
      for (const ch of text) {
        const b = toByte.get(ch.codePointAt(0)!);
        // A character outside the byte-level table stands for its own UTF-8.
        if (b === undefined) bytes.push(...encoder.encode(ch));
        else bytes.push(b);
      }
      this.#pieces[id] = Uint8Array.from(bytes);
    });
    for (const id of stops) if (id < 0 || id >= tokens.length) throw new GgufError(`stop token id ${id} is outside the vocabulary of ${tokens.length}`);
    this.stopIds = [...stops].sort((a, b) => a - b);

    const json = (withAdded: boolean) => ({
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: withAdded ? added : [],
      normalizer: null,
      pre_tokenizer: preTokenizer,
      post_processor: null,
      decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
    });
    const config = { clean_up_tokenization_spaces: false };
    this.#withSpecial = new HfTokenizer(json(true), config);
    this.#plain = new HfTokenizer(json(false), config);
  }

  encode(text: string, opts: { special?: boolean } = {}): number[] {
    if (text.length === 0) return [];
    return (opts.special ? this.#withSpecial : this.#plain).encode(text, { add_special_tokens: false }).ids;
  }

  /** The bytes token `id` stands for (empty for a special token when `skipSpecial`). */
  tokenBytes(id: number, skipSpecial = false): Uint8Array {
    const piece = this.#pieces[id];
    if (piece === undefined) throw new RangeError(`token id ${id} is outside the vocabulary of ${this.vocabSize}`);
    return skipSpecial && this.#special[id] ? new Uint8Array(0) : piece;
  }

  /** Whether `id` is a control token (rendered only when special tokens are). */
  isSpecial(id: number): boolean {
    return this.#special[id] === 1;
  }

  decode(ids: readonly number[], opts: { skipSpecial?: boolean } = {}): string {
    const d = this.streamDecoder(opts);
    let out = "";
    for (const id of ids) out += d.push(id);
    return out + d.flush();
  }

  streamDecoder(opts: { skipSpecial?: boolean } = {}): StreamDecoder {
    const utf8 = new TextDecoder("utf-8");
    return {
      push: (id) => utf8.decode(this.tokenBytes(id, opts.skipSpecial), { stream: true }),
      flush: () => utf8.decode(),
    };
  }
}
