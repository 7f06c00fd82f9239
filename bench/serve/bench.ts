/**
 * The service benchmark: starts the service in-process with the three default models, runs the
 * ramp with every response checked against a serial run, repeats it in a child process with
 * the global-lock mode for comparison, and optionally the torture run.
 *
 *   bun run bench-serve                       (= bun bench/serve/bench.ts --torture)
 *   bun bench/serve/bench.ts [--torture] [--no-global] [--json] [--streams N] [--workers N]
 * @module
 */
import { spawnSync } from "node:child_process";
import { backendName } from "../../src/native.ts";
import { stats } from "../../src/stats.ts";
import type { Model } from "../../src/models/models.ts";
import { defaultModels } from "../../src/serve/models.ts";
import { serve } from "../../src/serve/server.ts";
import { type LevelResult, rampLevels, rampTable, runRamp, runTorture, serialReferences } from "./ramp.ts";

/** Options of {@link benchServe}. */
export interface BenchServeOptions {
  /** Also run the ramp under LANES_LOCKING=global (in a child process) and compare. */
  compareGlobal?: boolean;
  torture?: boolean;
  /** Print the ramp rows as one JSON line (for the parent of a comparison run). */
  json?: boolean;
  /** Levels to run (default: the full ramp). */
  levels?: [number, number][];
  streams?: number;
  /** Engine Workers (see ServeOptions.workers). */
  workers?: number;
}

/** Runs the benchmark; returns true when every check passed. */
export async function benchServe(opts: BenchServeOptions = {}): Promise<boolean> {
  const models = defaultModels();
  const byName = new Map(models.map((m) => [m.name, m]));
  const svc = await serve({ models, port: 0, streams: opts.streams, workers: opts.workers });
  let ok = true;
  try {
    const expected = await serialReferences(byName);
    const rows = await runRamp(svc.url, expected, opts.levels ?? rampLevels);
    ok &&= rows.every((r) => r.errors === 0 && r.equalSerial === r.requests);
    if (opts.json) {
      console.log(JSON.stringify(rows));
      return ok;
    }
    let global: LevelResult[] | undefined;
    if (opts.compareGlobal) {
      const args = [import.meta.path, "--json"];
      if (opts.streams !== undefined) args.push("--streams", String(opts.streams));
      if (opts.workers !== undefined) args.push("--workers", String(opts.workers));
      const child = spawnSync(process.execPath, args, {
        encoding: "utf8",
        env: { ...process.env, LANES_LOCKING: "global" },
        maxBuffer: 1 << 24,
      });
      if (child.status !== 0) throw new Error(`global-lock ramp failed: ${child.stderr}`);
      global = JSON.parse(child.stdout.trim().split("\n").pop()!) as LevelResult[];
    }
    const total = rows.reduce((n, r) => n + r.requests, 0);
    const health = (await (await fetch(svc.url + "/healthz")).json()) as { workers: number };
    const threads = health.workers ? `${health.workers} engine Workers` : "the HTTP thread";
    console.log(`lanes serve ramp — backend ${backendName()}, ${svc.load().size} streams on ${threads}, ${total} requests over ${byName.size} models`);
    console.log(rampTable(rows, global));
    const idle = () => svc.metrics.inFlight === 0 && svc.load().busy === 0;
    if (opts.torture) ok = (await torture(svc.url, byName, idle)) && ok;
  } finally {
    await svc.shutdown();
    for (const m of models) m.dispose();
  }
  return ok;
}

// Waits until no request runs (abandoned ones finish at their next step), then lets the
// garbage collector and the arrays' finalizers run.
async function settle(idle: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!idle() && Date.now() < deadline) await Bun.sleep(10);
  for (let i = 0; i < 5; i++) {
    Bun.gc(true);
    await Bun.sleep(20);
  }
}

async function torture(url: string, models: Map<string, Model>, idle: () => boolean): Promise<boolean> {
  const longTokens = 48;
  const expectedLong = await serialReferences(models, longTokens);
  await settle(idle);
  const before = stats();
  const rssBefore = process.memoryUsage().rss;
  const pidBefore = ((await (await fetch(url + "/healthz")).json()) as { pid: number }).pid;
  const t0 = performance.now();
  const r = await runTorture(url, expectedLong, longTokens);
  const seconds = (performance.now() - t0) / 1000;
  const health = await fetch(url + "/healthz");
  const pidAfter = ((await health.json()) as { pid: number }).pid;
  await settle(idle);
  const after = stats();
  const rssAfter = process.memoryUsage().rss;
  const memoryBack = after.activeBytes <= before.activeBytes + (1 << 20) && after.liveArrays <= before.liveArrays + 8;
  console.log(`\ntorture (12 → 16 → 20 concurrent, ${longTokens}-token generations, disconnects, bad requests) in ${seconds.toFixed(1)} s:`);
  console.log(`  sent ${r.sent}: verified equal to serial ${r.verified}, mismatches ${r.mismatches}, abandoned mid-request ${r.cancelled}, bad requests rejected with 400 ${r.badRejected}`);
  console.log(`  unexpected: ${r.unexpected.length ? r.unexpected.slice(0, 5).join("; ") : "none"}`);
  console.log(`  still up: ${health.status === 200}, same pid: ${pidAfter === pidBefore} (${pidAfter})`);
  console.log(`  lanes memory: active ${before.activeBytes} → ${after.activeBytes} bytes, live arrays ${before.liveArrays} → ${after.liveArrays}; RSS ${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB`);
  return r.mismatches === 0 && r.unexpected.length === 0 && health.status === 200 && pidAfter === pidBefore && memoryBack;
}

function numberFlag(args: string[], name: string): number | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const n = Number(args[i + 1]);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} takes a non-negative integer, got "${args[i + 1]}"`);
  return n;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const ok = await benchServe({
    compareGlobal: !args.includes("--no-global") && !args.includes("--json"),
    torture: args.includes("--torture"),
    json: args.includes("--json"),
    streams: numberFlag(args, "--streams"),
    workers: numberFlag(args, "--workers"),
  });
  process.exit(ok ? 0 : 1);
}
