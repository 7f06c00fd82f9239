// The CPU compute pool against another build of lanes (a baseline library), alternating in
// child processes so a busy machine slows both alike:
//   - op latency: one op per eval, for ops that split over the pool and ops that do not;
//   - throughput of Workers on their own streams, every op splitting over the one pool;
//   - the CPU the process burns while idle after work (the pool must sleep, not spin).
//   bun bench/pool.ts <baseline liblanes.so> [rounds]
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { bestMs, runJsonChild } from "./timing.ts";

type Figures = Record<string, number>;

// One child's measurements, with whichever library LANES_LIBRARY_PATH names.
async function measure(): Promise<Figures> {
  const out: Figures = {};
  const perOpUs = (name: string, build: () => lx.LanesArray, count: number) => {
    const ms = bestMs(() => {
      for (let i = 0; i < count; i++) {
        using y = build();
        lx.eval(y);
      }
    }, 5);
    out[name] = (ms / count) * 1000;
  };
  using small = lx.random.normal([64, 64], { seed: 1 });
  using wide = lx.random.normal([256, 1024], { seed: 2 });
  using m128 = lx.random.normal([128, 128], { seed: 3 });
  using m256 = lx.random.normal([256, 256], { seed: 4 });
  lx.eval(small, wide, m128, m256);
  perOpUs("add 64x64 (inline) us/op", () => lx.add(small, small), 2000);
  perOpUs("add 256x1024 (split) us/op", () => lx.add(wide, wide), 500);
  perOpUs("softmax 256x1024 (split) us/op", () => lx.softmax(wide, -1), 300);
  perOpUs("matmul 64 us/op", () => lx.matmul(small, small), 2000);
  perOpUs("matmul 128 us/op", () => lx.matmul(m128, m128), 500);
  perOpUs("matmul 256 us/op", () => lx.matmul(m256, m256), 100);
  // Workers: 8 streams, each evaluating 256x1024 adds and 128x128 matmuls one at a time.
  for (const workers of [2, 8]) {
    const code = `
      import * as lx from ${JSON.stringify(join(import.meta.dir, "..", "src", "index.ts"))};
      self.onmessage = (e) => {
        const { barrier, parties } = e.data;
        using s = lx.newStream();
        const x = lx.random.normal([256, 1024], { seed: 5, stream: s });
        const w = lx.random.normal([128, 128], { seed: 6, stream: s });
        lx.eval(x, w);
        Atomics.add(barrier, 0, 1);
        while (Atomics.load(barrier, 0) < parties) Atomics.wait(barrier, 0, Atomics.load(barrier, 0), 5);
        const t0 = performance.now();
        for (let i = 0; i < 150; i++) {
          const y = lx.add(x, x, { stream: s });
          const z = lx.matmul(w, w, { stream: s });
          lx.eval(y, z);
          y.dispose();
          z.dispose();
        }
        self.postMessage(performance.now() - t0);
      };`;
    const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    const barrier = new Int32Array(new SharedArrayBuffer(4));
    const pool = Array.from({ length: workers }, () => new Worker(url));
    const times = await Promise.all(
      pool.map((w) => new Promise<number>((resolve) => ((w.onmessage = (e) => resolve(e.data as number)), w.postMessage({ barrier, parties: workers })))),
    );
    for (const w of pool) w.terminate();
    out[`${workers} Workers, add + matmul pairs/s`] = (workers * 150 * 1000) / Math.max(...times);
  }
  // Idle: CPU time the process uses in the second after its work stops.
  const before = process.cpuUsage();
  await Bun.sleep(1000);
  const idle = process.cpuUsage(before);
  out["idle CPU ms per s after work"] = (idle.user + idle.system) / 1000;
  return out;
}

if (process.env.LANES_POOL_BENCH_CHILD) {
  console.log(JSON.stringify(await measure()));
} else {
  const baseline = process.argv[2];
  if (!baseline) throw new Error("usage: bun bench/pool.ts <baseline liblanes.so> [rounds]");
  const rounds = Number(process.argv[3] ?? 3);
  const best: { ours: Figures; base: Figures } = { ours: {}, base: {} };
  const keep = (into: Figures, got: Figures) => {
    for (const [k, v] of Object.entries(got)) {
      const higherIsBetter = k.includes("/s") && !k.includes("CPU");
      into[k] = into[k] === undefined ? v : higherIsBetter ? Math.max(into[k]!, v) : Math.min(into[k]!, v);
    }
  };
  for (let r = 0; r < rounds; r++) {
    keep(best.ours, runJsonChild<Figures>([process.execPath, import.meta.path], { LANES_POOL_BENCH_CHILD: "1", LANES_LIBRARY_PATH: undefined }));
    keep(best.base, runJsonChild<Figures>([process.execPath, import.meta.path], { LANES_POOL_BENCH_CHILD: "1", LANES_LIBRARY_PATH: baseline }));
  }
  console.log(`compute pool: this build vs ${baseline}, best of ${rounds} alternating rounds`);
  for (const k of Object.keys(best.ours)) {
    const o = best.ours[k]!, b = best.base[k]!;
    const better = k.includes("/s") && !k.includes("CPU") ? o / b : b / o;
    console.log(`  ${k.padEnd(40)} ${o.toFixed(1).padStart(9)}   baseline ${b.toFixed(1).padStart(9)}   ${k.includes("CPU") ? "" : `x${better.toFixed(2)} (higher is better)`}`);
  }
}
