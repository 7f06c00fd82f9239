// One scaling Worker: on its own stream, runs graphs of the given kind until told to stop.
import * as lx from "../src/index.ts";
import { smallGraph } from "./small-graph.ts";

declare const self: Worker;

export type ScalingTask = {
  kind: "small" | "large";
  mode: "eager" | "compiled";
  graphs: number;
  barrier: Int32Array;
  parties: number;
  device: number;
};

self.onmessage = (event: MessageEvent<ScalingTask>) => {
  const { kind, mode, graphs, barrier, parties, device } = event.data;
  using s = lx.newStream({ device });
  const n = kind === "small" ? 64 : 512;
  const x = lx.random.normal([n, n], { seed: 1, stream: s });
  const w = lx.random.normal([n, n], { seed: 2, scale: 0.1, stream: s });
  const b = lx.random.normal([1, n], { seed: 3, stream: s });
  lx.eval(x, w, b);
  const build = kind === "small" ? (v: lx.LanesArray) => smallGraph(v, w, b) : (v: lx.LanesArray) => lx.matmul(lx.matmul(v, w), w);
  const compiled = lx.compile(build);
  const once = () =>
    lx.withStream(s, () => {
      const y = mode === "compiled" ? (compiled(x) as lx.LanesArray) : lx.tidy(() => build(x));
      lx.eval(y);
      y.dispose();
    });
  once(); // traces (compiled) and warms every kernel
  Atomics.add(barrier, 0, 1);
  while (Atomics.load(barrier, 0) < parties) Atomics.wait(barrier, 0, Atomics.load(barrier, 0), 5);
  const t0 = performance.now();
  for (let g = 0; g < graphs; g++) once();
  self.postMessage({ graphs, ms: performance.now() - t0 });
  compiled.dispose();
};
