#!/usr/bin/env bun
/**
 * The `lanes` command.
 *
 *   lanes serve [--port 8080] [--streams N] [--workers N] [--queue 64] [--timeout-ms 30000]
 *               [--model NAME=ARCH[:weights.safetensors]]...
 *   lanes bench-serve [--torture] [--no-global] [--streams N] [--workers N]
 *
 * Without --model, `serve` runs the three default models (transformer, hybrid, mlp) with
 * small seeded weights written to the cache folder on first use.
 * @module
 */
import type { Architecture } from "./models/models.ts";
import { loadModel } from "./models/weights.ts";
import { benchServe, defaultModels } from "./serve/bench.ts";
import { serve } from "./serve/server.ts";

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function numberFlag(args: string[], name: string): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} takes a non-negative integer, got "${v}"`);
  return n;
}

const [command = "help", ...args] = process.argv.slice(2);
if (command === "serve") {
  const specs = args.flatMap((a, i) => (args[i - 1] === "--model" ? [a] : []));
  const models = specs.length
    ? specs.map((spec) => {
        const m = /^([\w.-]+)=(mlp|transformer|hybrid)(?::(.+))?$/.exec(spec);
        if (!m) throw new Error(`--model takes NAME=ARCH[:weights.safetensors], got "${spec}"`);
        return loadModel(m[2] as Architecture["name"], m[3], m[1]);
      })
    : defaultModels();
  const svc = await serve({
    models,
    workers: numberFlag(args, "--workers"),
    port: numberFlag(args, "--port") ?? 8080,
    hostname: flag(args, "--host"),
    streams: numberFlag(args, "--streams"),
    queue: numberFlag(args, "--queue"),
    timeoutMs: numberFlag(args, "--timeout-ms"),
  });
  console.log(`lanes serve: ${svc.url} (${svc.load().size} streams; models ${models.map((m) => m.name).join(", ")})`);
  const stop = async () => {
    console.log("lanes serve: draining in-flight requests");
    await svc.shutdown();
    for (const m of models) m.dispose();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else if (command === "bench-serve") {
  const ok = await benchServe({
    compareGlobal: !args.includes("--no-global") && !args.includes("--json"),
    torture: args.includes("--torture"),
    json: args.includes("--json"),
    streams: numberFlag(args, "--streams"),
    workers: numberFlag(args, "--workers"),
  });
  process.exit(ok ? 0 : 1);
} else {
  console.log("usage: lanes serve [--port N] [--streams N] [--workers N] [--queue N] [--timeout-ms N] [--model NAME=ARCH[:file]]...\n       lanes bench-serve [--torture] [--no-global] [--streams N] [--workers N]");
  process.exit(command === "help" ? 0 : 2);
}
