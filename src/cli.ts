#!/usr/bin/env bun
/**
 * The `lanes` command.
 *
 *   lanes serve [--port 8080] [--host 127.0.0.1] [--streams N] [--workers N] [--batch N] [--queue 64]
 *               [--timeout-ms 30000] [--api-key KEY] [--max-tokens 1024]
 *               [--max-prompt-tokens N] [--max-n 8] [--max-body-bytes 1048576]
 *               [--model NAME=ARCH[:weights.safetensors] | --model path/to/model.gguf]...
 *
 * Without --model, `serve` runs the three default models (transformer, hybrid, mlp) with
 * small seeded weights written to the cache folder on first use; the decoders among the models
 * are also served on the OpenAI endpoints with the byte tokenizer. The API key can come from
 * the LANES_API_KEY environment variable instead (which, unlike an argument, other users of
 * the machine cannot read).
 * @module
 */
import type { Architecture, Model } from "./models/models.ts";
import type { TextModel } from "./models/text.ts";
import { loadModel } from "./models/weights.ts";
import { byteTextModels, defaultModels, loadGgufTextModel } from "./serve/models.ts";
import { serve } from "./serve/server.ts";

const usage = `usage: lanes serve [--port N] [--host ADDR] [--streams N] [--workers N] [--batch N] [--queue N] [--timeout-ms N]
                   [--api-key KEY] [--max-tokens N] [--max-prompt-tokens N] [--max-n N] [--max-body-bytes N]
                   [--model NAME=ARCH[:weights.safetensors] | --model FILE.gguf]...`;

/** A bad command line: printed with the usage, exit status 2. */
class UsageError extends Error {}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith("--")) throw new UsageError(`${name} needs a value`);
  return v;
}

function numberFlag(args: string[], name: string): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`${name} takes a non-negative integer, got "${v}"`);
  return n;
}

/** The models named by --model, or the defaults: lanes models, and the text models of the OpenAI endpoints. */
function modelsOf(args: string[]): { models: Model[]; textModels: TextModel[] } {
  const specs = args.flatMap((a, i) => (args[i - 1] === "--model" ? [a] : []));
  if (specs.length === 0) {
    const models = defaultModels();
    return { models, textModels: byteTextModels(models) };
  }
  const models: Model[] = [];
  const textModels: TextModel[] = [];
  for (const spec of specs) {
    if (spec.endsWith(".gguf")) {
      textModels.push(loadGgufTextModel(spec));
      continue;
    }
    const m = /^([\w.-]+)=(mlp|transformer|hybrid)(?::(.+))?$/.exec(spec);
    if (!m) throw new UsageError(`--model takes NAME=ARCH[:weights.safetensors] or a .gguf file, got "${spec}"`);
    models.push(loadModel(m[2] as Architecture["name"], m[3], m[1]));
  }
  return { models, textModels: [...textModels, ...byteTextModels(models)] };
}

async function serveCommand(args: string[]): Promise<void> {
  const { models, textModels } = modelsOf(args);
  const apiKey = flag(args, "--api-key") ?? (process.env.LANES_API_KEY || undefined);
  const svc = await serve({
    models,
    textModels,
    workers: numberFlag(args, "--workers"),
    port: numberFlag(args, "--port") ?? 8080,
    hostname: flag(args, "--host"),
    streams: numberFlag(args, "--streams"),
    batch: numberFlag(args, "--batch"),
    queue: numberFlag(args, "--queue"),
    timeoutMs: numberFlag(args, "--timeout-ms"),
    maxTokens: numberFlag(args, "--max-tokens"),
    maxPromptTokens: numberFlag(args, "--max-prompt-tokens"),
    maxN: numberFlag(args, "--max-n"),
    maxBodyBytes: numberFlag(args, "--max-body-bytes"),
    apiKey,
  });
  const served = [...new Set([...models, ...textModels.map((t) => t.model)].map((m) => m.name))];
  const access = apiKey === undefined ? "no API key" : "API key required";
  console.log(`lanes serve: ${svc.url} (${svc.load().size} streams; models ${served.join(", ")}; OpenAI endpoints: ${textModels.map((t) => t.model.name).join(", ") || "none"}; ${access})`);
  const stop = async () => {
    console.log("lanes serve: draining in-flight requests");
    await svc.shutdown();
    for (const m of new Set([...models, ...textModels.map((t) => t.model)])) m.dispose();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

const [command = "help", ...args] = process.argv.slice(2);
if (command === "serve") {
  try {
    await serveCommand(args);
  } catch (e) {
    console.error(`lanes serve: ${(e as Error).message}`);
    if (e instanceof UsageError) console.error(usage);
    process.exit(2);
  }
} else {
  console.log(usage);
  process.exit(command === "help" ? 0 : 2);
}
