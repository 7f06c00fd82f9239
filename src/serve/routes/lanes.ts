/**
 * lanes' own endpoints over any model, with the byte tokenizer for text prompts:
 * `POST /v1/generate` (tokens, text and per-step logits checksums; SSE with `stream: true`) and
 * `POST /v1/forward` (one forward pass summarized as top-k logits and a checksum).
 * @module
 */
import type { ForwardSummary } from "../../models/generate.ts";
import type { Model } from "../../models/models.ts";
import { decode, encode } from "../../models/tokenizer.ts";
import type { Call } from "../call.ts";
import type { Job } from "../engine.ts";
import type { GenerationResult } from "../generation.ts";
import { errorBody, HttpError, json, readJsonBody, sseStream } from "../http.ts";
import type { Route } from "./route.ts";

/** A validated lanes request: the job it runs and whether to stream it. */
export interface LanesRequest {
  model: Model;
  job: Job;
  promptTokens: number;
  stream: boolean;
}

/** Top-k entries a forward pass reports unless the request asks for another number. */
export const defaultForwardTopK = 5;

function isInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v);
}

const bad = (message: string) => new HttpError(400, message);

function promptTokens(b: Record<string, unknown>, model: Model): number[] {
  if (b.prompt_tokens !== undefined) {
    if (b.prompt !== undefined) throw bad(`give "prompt" or "prompt_tokens", not both`);
    if (!Array.isArray(b.prompt_tokens) || b.prompt_tokens.length === 0) throw bad(`"prompt_tokens" must be a non-empty array of token ids`);
    if (!b.prompt_tokens.every((t) => isInt(t) && t >= 0 && t < model.vocab)) throw bad(`"prompt_tokens" must hold integers in [0, ${model.vocab})`);
    return b.prompt_tokens as number[];
  }
  if (typeof b.prompt === "string" && b.prompt.length > 0) {
    if (b.prompt.length > model.maxSeq * 4) throw bad(`"prompt" is too long`);
    return encode(b.prompt);
  }
  throw bad(`give "prompt" (a non-empty string) or "prompt_tokens"`);
}

/** Checks a `/v1/generate` or `/v1/forward` body and maps it to its job; throws a 400 naming the first problem. */
export function parseLanesRequest(body: unknown, models: ReadonlyMap<string, Model>, maxTokensLimit: number, kind: Job["kind"]): LanesRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw bad("body must be a JSON object");
  const b = body as Record<string, unknown>;
  const names = [...models.keys()].join(", ");
  if (typeof b.model !== "string") throw bad(`"model" must be a string (one of: ${names})`);
  const model = models.get(b.model);
  if (!model) throw bad(`unknown model "${b.model}" (have: ${names})`);
  const tokens = promptTokens(b, model);
  const maxTokens = b.max_tokens ?? (kind === "forward" ? 1 : 16);
  if (!isInt(maxTokens) || maxTokens < 1 || maxTokens > maxTokensLimit) throw bad(`"max_tokens" must be an integer in [1, ${maxTokensLimit}]`);
  if (tokens.length + (model.kind === "decoder" && kind === "generate" ? maxTokens : 0) > model.maxSeq)
    throw bad(`prompt (${tokens.length} tokens) plus max_tokens exceeds the model's ${model.maxSeq}`);
  const temperature = b.temperature ?? 0;
  if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature < 0 || temperature > 5) throw bad(`"temperature" must be a number in [0, 5]`);
  const topK = b.top_k;
  if (topK !== undefined && (!isInt(topK) || topK < 1)) throw bad(`"top_k" must be a positive integer`);
  const seed = b.seed ?? 0;
  if (!isInt(seed) || seed < 0 || seed > 0xffffffff) throw bad(`"seed" must be an integer in [0, 2^32)`);
  if (b.stream !== undefined && typeof b.stream !== "boolean") throw bad(`"stream" must be a boolean`);
  const job: Job =
    kind === "forward"
      ? { kind, model: model.name, tokens, topK: (topK as number | undefined) ?? defaultForwardTopK }
      : { kind, model: model.name, params: { tokens, maxTokens, temperature, topK: topK as number | undefined, seed } };
  return { model, job, promptTokens: tokens.length, stream: b.stream === true };
}

async function parse(call: Call, kind: Job["kind"]): Promise<LanesRequest> {
  const body = await readJsonBody(call.req, call.ctx.limits.maxBodyBytes);
  return parseLanesRequest(body, call.ctx.models, call.ctx.limits.maxTokens, kind);
}

async function generateRoute(call: Call): Promise<Response> {
  const r = await parse(call, "generate");
  const { engine, metrics } = call.ctx;
  if (r.stream) {
    const end = call.detach();
    const { response, sink } = sseStream(() => call.cancel());
    void engine
      .run(r.job, call.signal, (token, index) => {
        metrics.tokens(1);
        sink.send({ index, token, text: decode([token]) });
      })
      .then(
        () => sink.done(),
        (e) => {
          if (call.clientGone) return;
          const error = call.httpError(e);
          sink.send(errorBody("lanes", error.status, error.message));
        },
      )
      .finally(() => {
        sink.close();
        end();
      });
    return response;
  }
  const result = (await engine.run(r.job, call.signal)) as GenerationResult;
  metrics.tokens(result.tokens.length);
  return json({
    model: r.model.name,
    tokens: result.tokens,
    text: decode(result.tokens),
    checksums: result.checksums,
    usage: { prompt_tokens: r.promptTokens, completion_tokens: result.tokens.length },
  });
}

async function forwardRoute(call: Call): Promise<Response> {
  const r = await parse(call, "forward");
  const result = (await call.ctx.engine.run(r.job, call.signal)) as ForwardSummary;
  return json({ model: r.model.name, top_k: result.top, checksum: result.checksum });
}

/** The lanes endpoints. */
export const lanesRoutes: readonly Route[] = [
  { method: "POST", path: "/v1/generate", style: "lanes", handle: generateRoute },
  { method: "POST", path: "/v1/forward", style: "lanes", handle: forwardRoute },
];
