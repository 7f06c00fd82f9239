/**
 * The inference service on `Bun.serve`: a stream per request from a bounded pool, engine
 * Workers that share the weights by handle, cancellation on disconnect, Prometheus metrics,
 * and the ramp benchmark that checks every response against a serial run.
 *
 * ```ts
 * import { loadModel } from "lanes/models";
 * import { serve } from "lanes/serve";
 * const service = await serve({ models: [loadModel("transformer")], port: 8080 });
 * console.log(`listening on ${service.url}`);
 * ```
 * @module
 */
export { benchServe, defaultModels, type BenchServeOptions } from "./bench.ts";
export { InProcessEngine, QueueFullError, WorkerEngine, type Engine, type EngineLoad, type Job } from "./engine.ts";
export { Metrics } from "./metrics.ts";
export { serve, type ServeOptions, type Service } from "./server.ts";
