/**
 * A {@link TextModel} over any decoder of `models.ts` and the byte tokenizer, with a ChatML-like
 * chat template: the OpenAI endpoints can be served and tested without a real model's files.
 * @module
 */
import type { Model } from "./models.ts";
import type { ChatMessage, TextModel, Tokenizer } from "./text.ts";
import { bos, byteVocab } from "./tokenizer.ts";

/** The text of the byte tokenizer's one special token (BOS, id 256). */
export const bosText = "<s>";

function utf8Bytes(text: string): number[] {
  return [...new TextEncoder().encode(text)];
}

/** The byte tokenizer behind the {@link Tokenizer} interface; `stopIds` end a generation. */
export function byteTokenizer(stopIds: readonly number[] = [bos]): Tokenizer {
  const streamDecoder = (opts: { skipSpecial?: boolean } = {}) => {
    const utf8 = new TextDecoder();
    return {
      push(id: number): string {
        if (id < 256) return utf8.decode(Uint8Array.of(id), { stream: true });
        return opts.skipSpecial ? "" : utf8.decode() + bosText;
      },
      flush: () => utf8.decode(),
    };
  };
  return {
    stopIds,
    vocabSize: byteVocab,
    encode(text, opts = {}) {
      if (!opts.special) return utf8Bytes(text);
      return text.split(bosText).flatMap((part, i) => (i === 0 ? utf8Bytes(part) : [bos, ...utf8Bytes(part)]));
    },
    decode(ids, opts = {}) {
      const decoder = streamDecoder(opts);
      return ids.map((id) => decoder.push(id)).join("") + decoder.flush();
    },
    streamDecoder,
  };
}

/**
 * The toy chat template: BOS, then `<|im_start|>role\ncontent<|im_end|>\n` per message, then
 * `<|im_start|>assistant\n` when a generation prompt is asked for.
 */
export function chatMlPrompt(messages: readonly ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
  const turns = messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("");
  return bosText + turns + (opts.addGenerationPrompt ? "<|im_start|>assistant\n" : "");
}

/** `model` (a decoder over the byte vocabulary) as a {@link TextModel}. */
export function byteTextModel(model: Model, opts: { stopIds?: readonly number[] } = {}): TextModel {
  if (model.kind !== "decoder") throw new TypeError(`model "${model.name}" is a ${model.kind}, not a decoder`);
  if (model.vocab !== byteVocab) throw new TypeError(`model "${model.name}" has ${model.vocab} tokens, not the byte tokenizer's ${byteVocab}`);
  return {
    model,
    tokenizer: byteTokenizer(opts.stopIds),
    applyChatTemplate: chatMlPrompt,
    contextLength: model.maxSeq,
  };
}
