// Streams on several devices. With one device (the CPU here) a stream on device 1 is refused
// with a clear error; with several GPUs, graphs that cross devices equal the same graphs on
// one device, bit for bit.
import { describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { buildGraph, sameBits } from "../examples/workloads.ts";

describe("devices", () => {
  test("deviceCount is at least 1; a device past it is an InvalidArgument naming the count", () => {
    const n = lx.deviceCount();
    expect(n).toBeGreaterThanOrEqual(1);
    expect(() => lx.newStream({ device: n })).toThrow(new RegExp(`device ${n} does not exist .*has ${n}\\)`));
    expect(() => lx.newStream({ device: -1 })).toThrow(RangeError);
    using s = lx.newStream({ device: n - 1 });
    expect(lx.sum(lx.ones([10], { stream: s })).item()).toBe(10);
  });

  test("graphs across devices equal the same graphs on device 0", () => {
    const n = lx.deviceCount();
    const streams = Array.from({ length: 4 }, (_, i) => lx.newStream({ device: i % n }));
    try {
      for (const [i, kind] of (["matmul", "mixed", "softmax"] as const).entries()) {
        const want = buildGraph(kind, 40 + i).toFloat32Array();
        // Produced on one device, consumed on every other.
        const x = buildGraph(kind, 40 + i, streams[i % 4]);
        const outs = streams.map((s) => lx.add(x, 0, { stream: s }));
        lx.eval(...outs);
        for (const y of outs) expect(sameBits(y.toFloat32Array(), want)).toBe(true);
      }
    } finally {
      for (const s of streams) s.dispose();
    }
  });
});
