// The main job: the service started in-process with a chat model on its OpenAI endpoint, driven
// by 1 → 16 concurrent chats through the official `openai` client. Prints tokens/s, time to
// first token (p50, p99) and errors per level, and checks every answer against a serial
// in-process run of the same chat (greedy at temperature 0, the same seeded draws otherwise).
// Exits 0 only when every chat succeeded and matched.
//
//   bun run demo                              SmolLM2-135M-Instruct (Q4_1 GGUF, fetched by scripts/setup.sh)
//   bun run demo --model path/to/model.gguf   another Llama-architecture GGUF
//   bun run demo --model toy                  the toy chat model (byte tokenizer, seeded weights)
//   bun run demo --max-tokens 64 --chats-per-client 2 --streams 16
import OpenAI from "openai";
import { backendName } from "lanes";
import { loadModel } from "lanes/models";
import { loadGgufTextModel, serve } from "lanes/serve";
import { byteTextModel } from "../src/models/toy-text.ts";
import { defaultModelPath } from "../src/models/text-model.ts";
import type { TextModel } from "../src/models/text.ts";
import { chatLevels, chatTable, runChatRamp, serialAnswers } from "../bench/serve/chat-ramp.ts";

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

function demoModel(choice: string): TextModel {
  if (choice === "toy") return byteTextModel(loadModel("transformer"));
  return loadGgufTextModel(choice === "smollm2" ? defaultModelPath() : choice);
}

const t0 = performance.now();
const choice = option("--model", process.env.LANES_DEMO_MODEL ?? "smollm2");
const maxTokens = Number(option("--max-tokens", "64"));
const perClient = Number(option("--chats-per-client", "2"));
// As many streams as chats at the top level: every chat runs at once, none waits in the queue.
const streams = Number(option("--streams", String(Math.max(...chatLevels))));
const tm = demoModel(choice);
const service = await serve({ textModels: [tm], port: 0, streams, timeoutMs: 600_000 });
let ok = false;
try {
  const expected = await serialAnswers(tm, maxTokens);
  const client = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: "unused", maxRetries: 0 });
  const rows = await runChatRamp(client, tm.model.name, maxTokens, expected, chatLevels, perClient);
  console.log(`lanes chat ramp — model ${tm.model.name} (${choice}), backend ${backendName()}, ${service.load().size} streams, ${maxTokens}-token answers, streamed`);
  console.log(chatTable(rows));
  for (const r of rows) for (const m of r.errorMessages.slice(0, 3)) console.log(`  error at ${r.concurrency} at once: ${m}`);
  ok = rows.every((r) => r.errors === 0 && r.equalSerial === r.chats);
} finally {
  await service.shutdown();
  tm.model.dispose();
}
console.log(`\n${ok ? "every chat succeeded and equals the serial run" : "FAILED: errors or mismatches above"} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(ok ? 0 : 1);
