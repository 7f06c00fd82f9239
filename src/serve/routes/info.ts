/**
 * What the service tells about itself: `GET /v1/models` (OpenAI's list, plus lanes' own),
 * `GET /healthz` and Prometheus `GET /metrics`.
 * @module
 */
import { backendName } from "../../native.ts";
import type { Call } from "../call.ts";
import { json } from "../http.ts";
import type { Route } from "./route.ts";

function modelsRoute(call: Call): Response {
  const { models, textModels, startedAt } = call.ctx;
  return json({
    object: "list",
    data: [...textModels.values()].map((t) => ({ id: t.model.name, object: "model", created: startedAt, owned_by: "lanes", context_length: t.contextLength })),
    models: [...models.values()].map((m) => ({ name: m.name, kind: m.kind, vocab: m.vocab, max_seq: m.maxSeq })),
  });
}

function healthRoute(call: Call): Response {
  return json({ ok: true, pid: process.pid, backend: backendName(), streams: call.ctx.engine.load().size, workers: call.ctx.workers });
}

function metricsRoute(call: Call): Response {
  return new Response(call.ctx.metrics.render(call.ctx.engine.load()), { headers: { "content-type": "text/plain; version=0.0.4" } });
}

/** The information endpoints. */
export const infoRoutes: readonly Route[] = [
  { method: "GET", path: "/v1/models", style: "openai", handle: modelsRoute },
  { method: "GET", path: "/healthz", style: "openai", public: true, handle: healthRoute },
  { method: "GET", path: "/metrics", style: "openai", handle: metricsRoute },
];
