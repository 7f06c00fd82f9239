/**
 * OpenAI request bodies (`/v1/chat/completions`, `/v1/completions`) checked against the served
 * models and the service's caps, and mapped to one generation job per choice.
 * @module
 */
import { randomInt } from "node:crypto";
import type { ChatMessage, TextModel } from "../../models/text.ts";
import type { Limits } from "../call.ts";
import type { Job } from "../engine.ts";
import { HttpError } from "../http.ts";

/** Which OpenAI endpoint a body is for. */
export type CompletionEndpoint = "chat" | "text";

/** A checked OpenAI request. */
export interface TextRequest {
  textModel: TextModel;
  /** Token ids of each prompt (chat: one, the rendered template). */
  prompts: number[][];
  /** Choices per prompt. */
  n: number;
  /** Asked for; undefined: as many as the cap and the context allow. */
  maxTokens: number | undefined;
  temperature: number;
  topP: number;
  topK: number | undefined;
  /** The first choice's seed (choice i uses seed + i); undefined: a random seed per choice. */
  seed: number | undefined;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

/** One choice's job and where its answer goes. */
export interface ChoiceJob {
  index: number;
  prompt: number;
  job: Job & { kind: "generate" };
}

/** At most this many stop strings, as OpenAI allows. */
export const maxStopStrings = 4;

const invalid = (param: string, message: string, code = "invalid_value") => new HttpError(400, message, { param, code });

function isInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v);
}

function numberIn(b: Record<string, unknown>, param: string, lo: number, hi: number, fallback: number, openLow = false): number {
  const v = b[param] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v > hi || v < lo || (openLow && v === lo))
    throw invalid(param, `"${param}" must be a number in ${openLow ? "(" : "["}${lo}, ${hi}]`);
  return v;
}

// Fields that would change the answer in ways this service does not implement: refused, not ignored.
const unsupported: [param: string, inUse: (v: unknown) => boolean][] = [
  ["logprobs", (v) => v !== false && v !== null],
  ["top_logprobs", (v) => v !== null],
  ["echo", (v) => v !== false && v !== null],
  ["suffix", (v) => v !== null && v !== ""],
  ["best_of", (v) => v !== null && v !== 1],
  ["tools", (v) => v !== null && !(Array.isArray(v) && v.length === 0)],
  ["functions", (v) => v !== null && !(Array.isArray(v) && v.length === 0)],
  ["tool_choice", (v) => v !== null && v !== "none"],
  ["response_format", (v) => v !== null && !(typeof v === "object" && (v as { type?: unknown }).type === "text")],
  ["logit_bias", (v) => v !== null && !(typeof v === "object" && Object.keys(v as object).length === 0)],
  ["presence_penalty", (v) => v !== null && v !== 0],
  ["frequency_penalty", (v) => v !== null && v !== 0],
];

function chatMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw invalid("messages", `"messages" must be a non-empty array`);
  return value.map((m, i) => {
    const param = `messages[${i}]`;
    if (typeof m !== "object" || m === null) throw invalid(param, `${param} must be an object`);
    const { role, content } = m as { role?: unknown; content?: unknown };
    const mapped = role === "developer" ? "system" : role;
    if (mapped !== "system" && mapped !== "user" && mapped !== "assistant")
      throw invalid(`${param}.role`, `${param}.role must be "system", "developer", "user" or "assistant"`);
    return { role: mapped, content: messageText(content, `${param}.content`) };
  });
}

function messageText(content: unknown, param: string): string {
  if (typeof content === "string") return content;
  if (content === null || content === undefined) return "";
  if (Array.isArray(content))
    return content
      .map((part, j) => {
        const p = part as { type?: unknown; text?: unknown };
        if (p?.type !== "text" || typeof p.text !== "string") throw invalid(`${param}[${j}]`, `${param}[${j}] must be a text part ({"type": "text", "text": "..."}); this server reads text only`);
        return p.text;
      })
      .join("");
  throw invalid(param, `${param} must be a string or an array of text parts`);
}

function textPrompts(value: unknown, tm: TextModel): number[][] {
  const isTokenList = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((t) => isInt(t) && t >= 0 && t < tm.tokenizer.vocabSize);
  const encode = (text: string) => tm.tokenizer.encode(text, { special: true });
  if (typeof value === "string") return [encode(value)];
  if (isTokenList(value)) return [value];
  if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "string")) return value.map(encode);
  if (Array.isArray(value) && value.length > 0 && value.every(isTokenList)) return value;
  throw invalid("prompt", `"prompt" must be a string, an array of strings, or token ids in [0, ${tm.tokenizer.vocabSize}) (an array, or an array of arrays)`);
}

function checkPromptLength(tokens: number[], param: string, maxTokens: number | undefined, tm: TextModel, limits: Limits): void {
  const context = tm.contextLength;
  if (tokens.length === 0) throw invalid(param, `the prompt is empty`);
  if (limits.maxPromptTokens !== undefined && tokens.length > limits.maxPromptTokens)
    throw invalid(param, `the prompt is ${tokens.length} tokens, over this server's limit of ${limits.maxPromptTokens} (--max-prompt-tokens)`, "prompt_too_long");
  if (tokens.length >= context)
    throw invalid(param, `the prompt is ${tokens.length} tokens; the model's context is ${context}, which leaves none to generate`, "context_length_exceeded");
  if (maxTokens !== undefined && tokens.length + maxTokens > context)
    throw invalid("max_tokens", `the prompt (${tokens.length} tokens) plus max_tokens (${maxTokens}) exceed the model's context of ${context} tokens`, "context_length_exceeded");
}

/** Checks an OpenAI body; throws a 400 (404 for an unknown model) naming the first problem and any cap it passes. */
export function parseTextRequest(body: unknown, endpoint: CompletionEndpoint, models: ReadonlyMap<string, TextModel>, limits: Limits): TextRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalid("body", "body must be a JSON object");
  const b = body as Record<string, unknown>;
  if (typeof b.model !== "string") throw invalid("model", `"model" must be a string (one of: ${[...models.keys()].join(", ")})`);
  const textModel = models.get(b.model);
  if (!textModel) throw new HttpError(404, `the model "${b.model}" does not exist (served: ${[...models.keys()].join(", ")})`, { param: "model", code: "model_not_found" });
  for (const [param, inUse] of unsupported)
    if (b[param] !== undefined && inUse(b[param])) throw invalid(param, `"${param}" is not supported by this server`, "unsupported_parameter");

  const n = b.n ?? 1;
  if (!isInt(n) || n < 1 || n > limits.maxN) throw invalid("n", `"n" must be an integer in [1, ${limits.maxN}] (--max-n)`);
  const maxParam = b.max_completion_tokens !== undefined && b.max_completion_tokens !== null ? "max_completion_tokens" : "max_tokens";
  const maxTokens = b[maxParam] ?? undefined;
  if (maxTokens !== undefined) {
    if (!isInt(maxTokens) || maxTokens < 1) throw invalid(maxParam, `"${maxParam}" must be a positive integer`);
    if (maxTokens > limits.maxTokens) throw invalid(maxParam, `"${maxParam}" is ${maxTokens}, over this server's limit of ${limits.maxTokens} (--max-tokens)`);
  }
  const temperature = numberIn(b, "temperature", 0, 2, 1);
  const topP = numberIn(b, "top_p", 0, 1, 1, true);
  const topK = b.top_k ?? undefined;
  if (topK !== undefined && (!isInt(topK) || topK < 1)) throw invalid("top_k", `"top_k" must be a positive integer`);
  const seed = b.seed ?? undefined;
  if (seed !== undefined && !isInt(seed)) throw invalid("seed", `"seed" must be an integer`);
  const stop = b.stop === undefined || b.stop === null ? [] : typeof b.stop === "string" ? [b.stop] : b.stop;
  if (!Array.isArray(stop) || stop.length > maxStopStrings || !stop.every((s) => typeof s === "string" && s.length > 0))
    throw invalid("stop", `"stop" must be a non-empty string or an array of at most ${maxStopStrings} of them`);
  const stream = b.stream ?? false;
  if (typeof stream !== "boolean") throw invalid("stream", `"stream" must be a boolean`);
  const options = b.stream_options ?? undefined;
  if (options !== undefined && !stream) throw invalid("stream_options", `"stream_options" is only allowed with "stream": true`);
  if (options !== undefined && (typeof options !== "object" || Array.isArray(options))) throw invalid("stream_options", `"stream_options" must be an object`);
  const includeUsage = (options as { include_usage?: unknown } | undefined)?.include_usage ?? false;
  if (typeof includeUsage !== "boolean") throw invalid("stream_options.include_usage", `"stream_options.include_usage" must be a boolean`);

  let prompts: number[][];
  if (endpoint === "chat") {
    const text = textModel.applyChatTemplate(chatMessages(b.messages), { addGenerationPrompt: true });
    prompts = [textModel.tokenizer.encode(text, { special: true })];
  } else {
    prompts = textPrompts(b.prompt, textModel);
  }
  const promptParam = endpoint === "chat" ? "messages" : "prompt";
  for (const p of prompts) checkPromptLength(p, promptParam, maxTokens as number | undefined, textModel, limits);
  return { textModel, prompts, n, maxTokens: maxTokens as number | undefined, temperature, topP, topK: topK as number | undefined, seed: seed as number | undefined, stop: stop as string[], stream, includeUsage };
}

// A seed as the sampler takes it: 32 bits, mixing in the high bits of a larger one.
function seed32(seed: number): number {
  return ((seed >>> 0) ^ Math.floor(seed / 2 ** 32)) >>> 0;
}

/** One generation job per choice: prompt-major (choice `p * n + j` is prompt p's j-th), choice i seeded with seed + i. */
export function choiceJobs(r: TextRequest, limits: Limits): ChoiceJob[] {
  const stopIds = r.textModel.tokenizer.stopIds;
  return r.prompts.flatMap((tokens, p) =>
    Array.from({ length: r.n }, (_, j) => {
      const index = p * r.n + j;
      const maxTokens = r.maxTokens ?? Math.min(limits.maxTokens, r.textModel.contextLength - tokens.length);
      const seed = r.seed === undefined ? randomInt(2 ** 32) : seed32(r.seed + index);
      const params = { tokens, maxTokens, temperature: r.temperature, topP: r.topP, topK: r.topK, seed, stopIds, checksums: false };
      return { index, prompt: p, job: { kind: "generate" as const, model: r.textModel.model.name, params } };
    }),
  );
}
