// One scaling Worker: on its own stream, runs graphs of the given kind from the moment the
// window opens until it closes, and reports how many it finished (see bench/scaling.ts).
import * as lx from "../src/index.ts";
import { smallGraph } from "./small-graph.ts";

declare const self: Worker;

export type ScalingTask = {
  kind: "small" | "large" | "js";
  mode: "eager" | "compiled";
  control: Int32Array;
  device: number;
};

// The plain-JS graph of kind "js": a 64×64 float64 product and a row softmax, no lanes.
function jsGraph(x: Float64Array, w: Float64Array, out: Float64Array): void {
  const n = 64;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) out[i * n + j] = 0;
    for (let k = 0; k < n; k++) {
      const a = x[i * n + k]!;
      for (let j = 0; j < n; j++) out[i * n + j]! += a * w[k * n + j]!;
    }
    let sum = 0;
    for (let j = 0; j < n; j++) sum += out[i * n + j] = Math.exp(out[i * n + j]! * 0.01);
    for (let j = 0; j < n; j++) out[i * n + j]! /= sum;
  }
}

self.onmessage = (event: MessageEvent<ScalingTask>) => {
  const { kind, mode, control, device } = event.data;
  using s = lx.newStream({ device });
  const n = kind === "large" ? 512 : 64;
  const x = lx.random.normal([n, n], { seed: 1, stream: s });
  const w = lx.random.normal([n, n], { seed: 2, scale: 0.1, stream: s });
  const b = lx.random.normal([1, n], { seed: 3, stream: s });
  lx.eval(x, w, b);
  const build = kind === "large" ? (v: lx.LanesArray) => lx.matmul(lx.matmul(v, w), w) : (v: lx.LanesArray) => smallGraph(v, w, b);
  const compiled = lx.compile(build);
  const jx = Float64Array.from(x.toFloat32Array()), jw = Float64Array.from(w.toFloat32Array()), jout = new Float64Array(64 * 64);
  const once =
    kind === "js"
      ? () => jsGraph(jx, jw, jout)
      : () =>
          lx.withStream(s, () => {
            const y = mode === "compiled" ? (compiled(x) as lx.LanesArray) : lx.tidy(() => build(x));
            lx.eval(y);
            y.dispose();
          });
  for (let i = 0; i < 3; i++) once(); // traces (compiled) and warms every kernel and the JIT
  Atomics.add(control, 0, 1);
  Atomics.wait(control, 1, 0);
  const t0 = performance.now();
  let graphs = 0;
  while (Atomics.load(control, 1) === 1) {
    once();
    graphs++;
  }
  self.postMessage({ graphs, ms: performance.now() - t0 });
  compiled.dispose();
};
