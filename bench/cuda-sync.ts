// How the CUDA backend should submit and synchronize, by measurement: device-side 64-bit
// counters (the default) against CUDA events for cross-stream waits, and plain launches (the
// default) against capturing each epoch as a CUDA graph. Each variant runs in its own process.
//   LANES_BACKEND=cuda bun bench/cuda-sync.ts
import { spawnSync } from "node:child_process";
import * as lx from "../src/index.ts";

function measure() {
  // Cross-stream ping-pong: every op depends on the previous one, which ran on the other stream.
  using a = lx.newStream();
  using b = lx.newStream();
  using x0 = lx.ones([256], { stream: a });
  lx.eval(x0);
  const hops = 400;
  let pingPong = Infinity;
  for (let r = 0; r < 4; r++) {
    const made: lx.LanesArray[] = [];
    const t = performance.now();
    let x = x0;
    for (let i = 0; i < hops; i++) made.push((x = lx.add(x, 1, { stream: i % 2 ? a : b })));
    lx.eval(x);
    pingPong = Math.min(pingPong, ((performance.now() - t) / hops) * 1000);
    for (const m of made) m.dispose();
  }
  // The 29-kernel small graph of bench/scaling.ts, evaluated one at a time on one stream.
  using s = lx.newStream();
  using w = lx.random.normal([64, 64], { seed: 2, scale: 0.1, stream: s });
  using bias = lx.random.normal([1, 64], { seed: 3, stream: s });
  using x1 = lx.random.normal([64, 64], { seed: 1, stream: s });
  lx.eval(w, bias, x1);
  const graph = () => {
    let h = x1;
    for (let i = 0; i < 7; i++) h = lx.multiply(lx.maximum(lx.add(lx.matmul(h, w, { stream: s }), bias, { stream: s }), 0, { stream: s }), 0.125, { stream: s });
    return lx.softmax(h, -1, { stream: s });
  };
  for (let i = 0; i < 20; i++) lx.eval(graph());
  let graphsPerS = 0;
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    for (let i = 0; i < 200; i++) lx.eval(graph());
    graphsPerS = Math.max(graphsPerS, 200 / ((performance.now() - t) / 1000));
  }
  return { pingPongUs: pingPong, graphsPerS };
}

if (process.argv.includes("--child")) {
  console.log(JSON.stringify(measure()));
} else {
  const variants: [string, Record<string, string>][] = [
    ["counters + plain launches (default)", {}],
    ["events for cross-stream waits", { LANES_CUDA_SYNC: "events" }],
    ["each epoch as a CUDA graph", { LANES_CUDA_GRAPHS: "1" }],
  ];
  const results = variants.map(([name, env]) => {
    const r = spawnSync(process.execPath, [import.meta.path, "--child"], { encoding: "utf8", env: { ...process.env, ...env } });
    if (r.status !== 0) return { name, error: r.stderr.trim().split("\n").filter((l) => /error|Error/.test(l)).slice(0, 3).join(" | ") };
    return { name, ...JSON.parse(r.stdout.trim().split("\n").pop()!) };
  });
  console.log(`backend ${lx.backendName()}`);
  for (const r of results)
    console.log("error" in r ? `${r.name}: failed: ${r.error}` : `${r.name.padEnd(38)} cross-stream hop ${r.pingPongUs.toFixed(1).padStart(7)} us   small graph ${r.graphsPerS.toFixed(0).padStart(6)} graphs/s`);
}
