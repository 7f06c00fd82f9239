/**
 * The chat ramp: 1 → 16 concurrent chats against a service's OpenAI endpoint, through the
 * official `openai` client, streamed. Per level: tokens/s, time to first token (p50, p99),
 * errors, and how many answers equal a serial in-process run of the same request (greedy at
 * temperature 0, the same seeded draws otherwise), decoded by the tokenizer in one piece.
 * @module
 */
import OpenAI from "openai";
import { generate } from "../../src/models/generate.ts";
import type { ChatMessage, TextModel } from "../../src/models/text.ts";
import { defaultStream } from "../../src/stream.ts";

/** One chat of the mix. */
export interface ChatCase {
  key: number;
  messages: ChatMessage[];
  temperature: number;
  seed: number;
}

const questions = [
  "What is a stream in lanes?",
  "Write a haiku about GPUs.",
  "List three prime numbers.",
  "Translate 'good morning' into French.",
  "def fib(n):",
  "Why is the sky blue?",
  "Summarize: every request runs on its own stream.",
  "Count from one to five.",
];

/** Distinct chats in the mix (each has one serial reference). */
export const distinctChats = 16;

/** The i-th chat: three in four greedy, one in four sampled at temperature 0.8 with a seed; every other one has a system message. */
export function chatCase(i: number): ChatCase {
  const key = i % distinctChats;
  const user: ChatMessage = { role: "user", content: questions[key % questions.length]! };
  const messages: ChatMessage[] = key % 2 === 1 ? [{ role: "system", content: "You are a concise assistant." }, user] : [user];
  return { key, messages, temperature: key % 4 === 3 ? 0.8 : 0, seed: 100 + key };
}

/** Prompt token ids of a chat, as the model's template and tokenizer make them. */
export function chatPromptTokens(tm: TextModel, messages: readonly ChatMessage[]): number[] {
  return tm.tokenizer.encode(tm.applyChatTemplate(messages, { addGenerationPrompt: true }), { special: true });
}

/**
 * The answer a serial run gives: `generate` of lanes/models on the default stream, cut at the
 * first end token, decoded in one piece.
 */
export async function serialAnswer(tm: TextModel, c: ChatCase, maxTokens: number): Promise<string> {
  const tokens = chatPromptTokens(tm, c.messages);
  const out = await generate(tm.model, { tokens, maxTokens, temperature: c.temperature, seed: c.seed }, defaultStream());
  const end = out.tokens.findIndex((t) => tm.tokenizer.stopIds.includes(t));
  return tm.tokenizer.decode(end < 0 ? out.tokens : out.tokens.slice(0, end), { skipSpecial: true });
}

/** Serial answers of every distinct chat. */
export async function serialAnswers(tm: TextModel, maxTokens: number): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (let key = 0; key < distinctChats; key++) out.set(key, await serialAnswer(tm, chatCase(key), maxTokens));
  return out;
}

/** One level's outcome. */
export interface ChatLevel {
  concurrency: number;
  chats: number;
  wallS: number;
  completionTokens: number;
  tokensPerS: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  errors: number;
  errorMessages: string[];
  equalSerial: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : 0;
}

/** `chats` streamed chats from `concurrency` clients at once, starting at chat `first` of the mix. */
export async function runChatLevel(client: OpenAI, model: string, concurrency: number, chats: number, maxTokens: number, expected: Map<number, string>, first = 0): Promise<ChatLevel> {
  let next = 0;
  const ttft: number[] = [];
  const errorMessages: string[] = [];
  let equal = 0;
  let completionTokens = 0;
  const t0 = performance.now();
  const one = async (c: ChatCase) => {
    const t = performance.now();
    let firstAt: number | undefined;
    let text = "";
    const stream = await client.chat.completions.create({
      model,
      messages: c.messages,
      max_tokens: maxTokens,
      temperature: c.temperature,
      seed: c.seed,
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta.content ?? "";
      if (piece.length > 0 || chunk.choices[0]?.finish_reason) firstAt ??= performance.now();
      text += piece;
      if (chunk.usage) completionTokens += chunk.usage.completion_tokens;
    }
    ttft.push((firstAt ?? performance.now()) - t);
    if (text === expected.get(c.key)) equal++;
  };
  const clientLoop = async () => {
    for (let i = next++; i < chats; i = next++) {
      try {
        await one(chatCase(first + i));
      } catch (e) {
        errorMessages.push((e as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, clientLoop));
  const wallS = (performance.now() - t0) / 1000;
  ttft.sort((a, b) => a - b);
  return {
    concurrency,
    chats,
    wallS,
    completionTokens,
    tokensPerS: completionTokens / wallS,
    ttftP50Ms: percentile(ttft, 50),
    ttftP99Ms: percentile(ttft, 99),
    errors: errorMessages.length,
    errorMessages,
    equalSerial: equal,
  };
}

/** Concurrency levels of the demo. */
export const chatLevels = [1, 2, 4, 8, 16];

/** Runs each level with `perClient` chats per client. */
export async function runChatRamp(client: OpenAI, model: string, maxTokens: number, expected: Map<number, string>, levels = chatLevels, perClient = 2): Promise<ChatLevel[]> {
  const out: ChatLevel[] = [];
  let first = 0;
  for (const c of levels) {
    out.push(await runChatLevel(client, model, c, c * perClient, maxTokens, expected, first));
    first += c * perClient;
  }
  return out;
}

/** The levels as a Markdown table. */
export function chatTable(rows: ChatLevel[]): string {
  const head = ["chats at once", "chats", "wall s", "tokens", "tok/s", "TTFT p50 ms", "TTFT p99 ms", "errors", "= serial"];
  const lines = [head, head.map(() => "---")];
  for (const r of rows)
    lines.push([r.concurrency, r.chats, r.wallS.toFixed(2), r.completionTokens, r.tokensPerS.toFixed(0), r.ttftP50Ms.toFixed(0), r.ttftP99Ms.toFixed(0), r.errors, `${r.equalSerial}/${r.chats}`].map(String));
  return lines.map((l) => `| ${l.join(" | ")} |`).join("\n");
}
