// The soak: many evaluations from several Workers over shared streams, each graph with a
// cross-stream dependency, every result compared with the serial one; memory, RSS and handle
// counts compared before and after.
//
//   bun bench/soak.ts [evals=10000] [workers=8] [streams=16]
import * as lx from "../src/index.ts";
import { buildGraph, graphKinds } from "../examples/workloads.ts";
import type { SoakResult, SoakSetup } from "./soak-worker.ts";

export type SoakReport = {
  evals: number;
  workers: number;
  streams: number;
  seconds: number;
  mismatches: number;
  errors: string[];
  rssStartMB: number;
  rssEndMB: number;
  rssPhasesMB: number[];
  // Live array handles after each quarter. JSC's conservative stack scan may keep the last
  // graph of a Worker alive until its next GC, so a handful can remain; they must not grow.
  liveArraysPhases: number[];
  activeBytesStart: number;
  activeBytesEnd: number;
  liveArraysStart: number;
  liveArraysEnd: number;
  liveStreamsStart: number;
  liveStreamsEnd: number;
};

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    Bun.gc(true);
    await Bun.sleep(20);
  }
  lx.clearCache();
}

function ask<T>(worker: Worker, message: unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<T>) => resolve(e.data);
    worker.onerror = (e) => reject(new Error(e.message));
    worker.postMessage(message);
  });
}

function snapshot() {
  return { stats: lx.stats(), rss: process.memoryUsage().rss };
}

// Workers stay up for a warm-up phase and the measured phase, so Worker start-up (heaps, JIT,
// allocator pools) is not counted as growth; memory is compared around the measured phase.
export async function runSoak(evals: number, workers: number, streamCount: number): Promise<SoakReport> {
  const jobs = Array.from({ length: 48 }, (_, i) => ({ kind: graphKinds[i % graphKinds.length]!, seed: 5000 + i }));
  const expected = jobs.map(({ kind, seed }) => {
    using y = buildGraph(kind, seed);
    using z = lx.softmax(y, -1);
    return z.toFloat32Array();
  });
  const streams = Array.from({ length: streamCount }, () => lx.newStream());
  const pool = Array.from({ length: workers }, () => new Worker(new URL("./soak-worker.ts", import.meta.url).href));
  try {
    await Promise.all(pool.map((w, i) => ask(w, { worker: i, streamIds: streams.map((s) => s.id), jobs, expected } satisfies SoakSetup)));
    const phase = (n: number) => Promise.all(pool.map((w) => ask<SoakResult>(w, { evals: n })));
    await phase(Math.max(50, Math.ceil(evals / workers / 4)));
    await settle();
    const start = snapshot();
    // The measured evals run in four phases; RSS after each shows whether it keeps growing.
    const t0 = performance.now();
    const results: SoakResult[] = [];
    const rssPhasesMB: number[] = [];
    const liveArraysPhases: number[] = [];
    for (let p = 0; p < 4; p++) {
      results.push(...(await phase(Math.ceil(evals / workers / 4))));
      await settle();
      rssPhasesMB.push(process.memoryUsage().rss / 2 ** 20);
      liveArraysPhases.push(lx.stats().liveArrays);
    }
    const seconds = (performance.now() - t0) / 1000;
    const end = snapshot();
    return {
      evals: results.reduce((n, r) => n + r.evals, 0),
      workers,
      streams: streamCount,
      seconds,
      mismatches: results.reduce((n, r) => n + r.mismatches, 0),
      errors: results.flatMap((r) => r.errors),
      rssStartMB: start.rss / 2 ** 20,
      rssEndMB: end.rss / 2 ** 20,
      rssPhasesMB,
      liveArraysPhases,
      activeBytesStart: start.stats.activeBytes,
      activeBytesEnd: end.stats.activeBytes,
      liveArraysStart: start.stats.liveArrays,
      liveArraysEnd: end.stats.liveArrays,
      liveStreamsStart: start.stats.liveStreams,
      liveStreamsEnd: end.stats.liveStreams,
    };
  } finally {
    await Promise.all(pool.map((w) => ask(w, "stop")));
    for (const w of pool) w.terminate();
    for (const s of streams) s.dispose();
  }
}

if (import.meta.main) {
  const [evals = 10000, workers = 8, streams = 16] = process.argv.slice(2).map(Number);
  const r = await runSoak(evals, workers, streams);
  console.log(`lanes soak — backend ${lx.backendName()}, ${r.workers} Workers, ${r.streams} streams`);
  console.table({
    evals: r.evals,
    seconds: Number(r.seconds.toFixed(1)),
    "evals/s": Math.round(r.evals / r.seconds),
    mismatches: r.mismatches,
    errors: r.errors.length,
    "RSS MB start → after each quarter": `${r.rssStartMB.toFixed(1)} → ${r.rssPhasesMB.map((m) => m.toFixed(1)).join(" → ")}`,
    "active bytes start → end": `${r.activeBytesStart} → ${r.activeBytesEnd}`,
    "live arrays start → after each quarter": `${r.liveArraysStart} → ${r.liveArraysPhases.join(" → ")}`,
    "live streams start → end": `${r.liveStreamsStart} → ${r.liveStreamsEnd}`,
  });
  if (r.errors.length) console.log(r.errors);
  process.exit(r.mismatches || r.errors.length ? 1 : 0);
}
