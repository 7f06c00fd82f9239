/**
 * The OpenAI-compatible endpoints over {@link TextModel}s: `POST /v1/chat/completions` and
 * `POST /v1/completions`, whole or streamed (SSE chunks, then `data: [DONE]`). Each choice is a
 * job of its own on its own stream, its tokens decoded here with a decoder of its own and
 * filtered against the stop strings; all of a request's choices are admitted or refused (429)
 * together, before anything is sent.
 * @module
 */
import { randomUUID } from "node:crypto";
import { CancelledError } from "../../models/generate.ts";
import type { Call } from "../call.ts";
import type { FinishReason, GenerationResult } from "../generation.ts";
import { errorBody, json, readJsonBody, sseStream } from "../http.ts";
import { StopStringFilter } from "../stop-strings.ts";
import { type ChoiceJob, choiceJobs, type CompletionEndpoint, parseTextRequest, type TextRequest } from "./openai-request.ts";
import type { Route } from "./route.ts";

interface ChoiceOutcome {
  text: string;
  finishReason: FinishReason;
  completionTokens: number;
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/**
 * Runs one choice: `onText` gets its text as it becomes final (never part of a stop string).
 * A stop string ends the job early; `abandon` aborts when another choice of the request failed.
 */
async function runChoice(call: Call, r: TextRequest, choice: ChoiceJob, abandon: AbortSignal, onFirstToken: () => void, onText: (text: string) => void): Promise<ChoiceOutcome> {
  const stopped = new AbortController();
  const decoder = r.textModel.tokenizer.streamDecoder({ skipSpecial: true });
  const filter = new StopStringFilter(r.stop);
  let text = "";
  let tokens = 0;
  const emit = (piece: string) => {
    if (piece.length === 0) return;
    text += piece;
    onText(piece);
  };
  let result: GenerationResult | undefined;
  try {
    result = (await call.ctx.engine.run(choice.job, AbortSignal.any([call.signal, abandon, stopped.signal]), (token) => {
      if (filter.stopped) return;
      if (tokens++ === 0) onFirstToken();
      call.ctx.metrics.tokens(1);
      emit(filter.push(decoder.push(token)));
      if (filter.stopped) stopped.abort();
    })) as GenerationResult;
  } catch (e) {
    const endedByStopString = e instanceof CancelledError && filter.stopped && !call.signal.aborted && !abandon.aborted;
    if (!endedByStopString) throw e;
  }
  if (!filter.stopped) emit(filter.push(decoder.flush()));
  if (filter.stopped || result === undefined) return { text, finishReason: "stop", completionTokens: tokens };
  emit(filter.flush());
  return { text, finishReason: result.finishReason, completionTokens: tokens + (result.endToken === undefined ? 0 : 1) };
}

function usageOf(r: TextRequest, outcomes: ChoiceOutcome[]): Usage {
  const prompt = r.prompts.reduce((s, p) => s + p.length, 0);
  const completion = outcomes.reduce((s, o) => s + o.completionTokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** Runs every choice; the first failure abandons the others and fails the request. */
function runChoices(call: Call, r: TextRequest, choices: ChoiceJob[], onText: (choice: ChoiceJob, text: string) => void, onDone: (choice: ChoiceJob, o: ChoiceOutcome) => void): Promise<ChoiceOutcome[]> {
  const abandon = new AbortController();
  const t0 = performance.now();
  let first = true;
  const onFirstToken = () => {
    if (first) call.ctx.metrics.firstToken((performance.now() - t0) / 1000);
    first = false;
  };
  return Promise.all(
    choices.map(async (c) => {
      try {
        const o = await runChoice(call, r, c, abandon.signal, onFirstToken, (text) => onText(c, text));
        onDone(c, o);
        return o;
      } catch (e) {
        abandon.abort();
        throw e;
      }
    }),
  );
}

async function completionRoute(call: Call, endpoint: CompletionEndpoint): Promise<Response> {
  const { engine, limits, metrics, textModels } = call.ctx;
  const r = parseTextRequest(await readJsonBody(call.req, limits.maxBodyBytes), endpoint, textModels, limits);
  const choices = choiceJobs(r, limits);
  engine.admit(choices.length, r.textModel.model.name);
  metrics.promptTokens(r.prompts.reduce((s, p) => s + p.length, 0));
  const head = {
    id: `${endpoint === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID().replaceAll("-", "")}`,
    created: Math.floor(Date.now() / 1000),
    model: r.textModel.model.name,
  };
  if (r.stream) return streamed(call, r, choices, endpoint, head);

  const outcomes = await runChoices(call, r, choices, () => {}, () => {});
  const usage = usageOf(r, outcomes);
  if (endpoint === "chat")
    return json({
      ...head,
      object: "chat.completion",
      choices: outcomes.map((o, index) => ({ index, message: { role: "assistant", content: o.text }, logprobs: null, finish_reason: o.finishReason })),
      usage,
    });
  return json({
    ...head,
    object: "text_completion",
    choices: outcomes.map((o, index) => ({ index, text: o.text, logprobs: null, finish_reason: o.finishReason })),
    usage,
  });
}

function streamed(call: Call, r: TextRequest, choices: ChoiceJob[], endpoint: CompletionEndpoint, head: { id: string; created: number; model: string }): Response {
  const object = endpoint === "chat" ? "chat.completion.chunk" : "text_completion";
  const usageField = r.includeUsage ? { usage: null } : {};
  const chunk = (index: number, text: string | undefined, finishReason: FinishReason | null, role?: "assistant") => ({
    ...head,
    object,
    choices: [
      endpoint === "chat"
        ? { index, delta: { ...(role ? { role } : {}), ...(text === undefined ? {} : { content: text }) }, logprobs: null, finish_reason: finishReason }
        : { index, text: text ?? "", logprobs: null, finish_reason: finishReason },
    ],
    ...usageField,
  });
  const end = call.detach();
  const { response, sink } = sseStream(() => call.cancel());
  if (endpoint === "chat") for (const c of choices) sink.send(chunk(c.index, "", null, "assistant"));
  const sendText = (c: ChoiceJob, text: string) => sink.send(chunk(c.index, text, null));
  const sendFinish = (c: ChoiceJob, o: ChoiceOutcome) => sink.send(chunk(c.index, undefined, o.finishReason));
  void runChoices(call, r, choices, sendText, sendFinish)
    .then(
      (outcomes) => {
        if (r.includeUsage) sink.send({ ...head, object, choices: [], usage: usageOf(r, outcomes) });
        sink.done();
      },
      (e) => {
        if (call.clientGone) return;
        const error = call.httpError(e);
        sink.send(errorBody("openai", error.status, error.message, error.details));
      },
    )
    .finally(() => {
      sink.close();
      end();
    });
  return response;
}

/** The OpenAI-compatible endpoints. */
export const openAiRoutes: readonly Route[] = [
  { method: "POST", path: "/v1/chat/completions", style: "openai", handle: (call) => completionRoute(call, "chat") },
  { method: "POST", path: "/v1/completions", style: "openai", handle: (call) => completionRoute(call, "text") },
];
