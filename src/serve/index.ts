/**
 * The inference service on `Bun.serve`: lanes' own endpoints and OpenAI-compatible ones
 * (`/v1/chat/completions`, `/v1/completions`, `/v1/models`), continuous batching of the decode
 * steps of a model's requests (or a stream per request from a bounded pool), engine Workers that
 * share the weights by handle, cancellation on disconnect,
 * API-key access control, request caps and Prometheus metrics.
 *
 * ```ts
 * import { byteTextModels, defaultModels, serve } from "lanes/serve";
 * const models = defaultModels();
 * const service = await serve({ models, textModels: byteTextModels(models), port: 8080 });
 * console.log(`listening on ${service.url}`);
 * ```
 * @module
 */
export type { ChatMessage, TextModel, Tokenizer } from "../models/text.ts";
export { InProcessEngine, QueueFullError, WorkerEngine, type Engine, type EngineLoad, type Job, type JobResult, type OnToken } from "./engine.ts";
export { BatchingEngine } from "./batching.ts";
export { nextToken, nucleusSize, runGeneration, type FinishReason, type GenerationParams, type GenerationResult } from "./generation.ts";
export { Metrics } from "./metrics.ts";
export { byteTextModels, defaultModels, loadGgufTextModel, ModelFileError } from "./models.ts";
export { serve, type ServeOptions, type Service } from "./server.ts";
