// src/models/text.ts
/** One chat message, as in OpenAI's API. */
export interface ChatMessage { role: "system" | "user" | "assistant"; content: string }

/** Text <-> token ids for one model. */
export interface Tokenizer {
  /** Token ids of `text`. `special`: parse special-token text such as "<|im_start|>" as the special token. */
  encode(text: string, opts?: { special?: boolean }): number[];
  /** Text of `ids` (special tokens rendered as their text unless `skipSpecial`). */
  decode(ids: readonly number[], opts?: { skipSpecial?: boolean }): string;
  /** A decoder for streaming: push one id at a time, get the text that is complete so far (never half a UTF-8 character). */
  streamDecoder(opts?: { skipSpecial?: boolean }): { push(id: number): string; flush(): string };
  /** Ids that end a generation (EOS, and the chat end token such as <|im_end|>). */
  readonly stopIds: readonly number[];
  readonly vocabSize: number;
}

/** A model the OpenAI endpoints can serve: a decoder (`Model` of models.ts, kind "decoder") plus its tokenizer and chat template. */
export interface TextModel {
  readonly model: import("./models.ts").Model;
  readonly tokenizer: Tokenizer;
  /** The prompt text for `messages` (the model's own template, rendered with @huggingface/jinja). */
  applyChatTemplate(messages: readonly ChatMessage[], opts?: { addGenerationPrompt?: boolean }): string;
  /** Context length (prompt + generation). */
  readonly contextLength: number;
}
