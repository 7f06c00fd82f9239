// The short soak (the long one is `bun bench/soak.ts`, numbers in docs/RELIABILITY.md).
import { expect, test } from "bun:test";
import { runSoak } from "../bench/soak.ts";

test("soak: 1,600 evals, 8 Workers, 16 shared streams, cross-stream graphs: no error, all equal serial, nothing retained", async () => {
  const r = await runSoak(1600, 8, 16);
  expect(r.errors).toEqual([]);
  expect(r.mismatches).toBe(0);
  expect(r.evals).toBe(1600);
  // No growth with the number of evals: at most one graph per Worker awaiting GC (its
  // intermediates are released by the FinalizationRegistry backstop), and never more later.
  for (const live of r.liveArraysPhases) expect(live).toBeLessThanOrEqual(r.liveArraysStart + 8 * 2);
  expect(r.liveStreamsEnd).toBe(r.liveStreamsStart);
  expect(r.activeBytesEnd).toBeLessThanOrEqual(r.activeBytesStart + 8 * 2 * 32768);
  expect(r.rssEndMB).toBeLessThan(r.rssStartMB * 1.5 + 64); // Worker heaps come and go; no runaway growth
}, 120_000);
