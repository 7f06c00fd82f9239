// The HTTP service: the three default models (seeded weights written to ~/.cache/lanes/models
// on first use), each request on a stream of its own, engine Workers sharing the weights. The
// decoders are also served on the OpenAI-compatible endpoints, with the byte tokenizer.
//
//   bun examples/service.ts            (PORT, default 8080; 0 picks a free port; LANES_API_KEY to require a key)
//   curl -s localhost:8080/v1/generate -d '{"model":"transformer","prompt":"hello","max_tokens":8}'
//   curl -s localhost:8080/v1/chat/completions -d '{"model":"transformer","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
//
// SIGTERM or Ctrl-C drains the requests in flight, then exits 0.
import { backendName } from "lanes";
import { byteTextModels, defaultModels, serve } from "lanes/serve";

const models = defaultModels();
const service = await serve({ models, textModels: byteTextModels(models), port: Number(process.env.PORT ?? 8080), apiKey: process.env.LANES_API_KEY || undefined });
console.log(`lanes service on ${service.url} (backend ${backendName()}, ${service.load().size} streams, models ${models.map((m) => m.name).join(", ")})`);

async function stop(): Promise<void> {
  await service.shutdown();
  for (const m of models) m.dispose();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
