// Bad input gets a typed error naming the op and the values; the process and the stream stay
// usable for the next valid call.
import { afterAll, describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";

function expectError(fn: () => unknown, type: new (...args: never[]) => lx.LanesError, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(type);
  expect(caught).toBeInstanceOf(lx.LanesError);
  expect((caught as Error).message).toMatch(message);
}

describe("typed errors", () => {
  // Not `using`: the describe body returns before its tests run.
  const s = lx.newStream();
  afterAll(() => s.dispose());
  const a = lx.ones([2, 3]);

  test("shapes that don't broadcast", () => {
    expectError(() => lx.add(a, lx.ones([4]), { stream: s }), lx.ShapeError, /add: shapes \[2, 3\] and \[4\] cannot be broadcast/);
  });

  test("axis out of range", () => {
    expectError(() => lx.sum(a, 2, { stream: s }), lx.ShapeError, /sum: axis 2 is out of range for 2-d array/);
    expectError(() => lx.softmax(a, -3, { stream: s }), lx.ShapeError, /softmax: axis -3/);
    expectError(() => lx.max(a, [0, -2]), lx.ShapeError, /max: duplicate axis/);
  });

  test("matmul with mismatched inner dimensions, or 1-D operands", () => {
    expectError(() => lx.matmul(a, lx.ones([2, 3])), lx.ShapeError, /matmul: inner dimensions differ: \[2, 3\] @ \[2, 3\]/);
    expectError(() => lx.matmul(lx.ones([3]), a), lx.ShapeError, /matmul: operands must have at least 2 dimensions/);
  });

  test("negative, fractional and overflowing dimensions", () => {
    expectError(() => lx.zeros([2, -1]), lx.ShapeError, /full: dimensions must be non-negative integers/);
    expectError(() => lx.ones([1.5]), lx.ShapeError, /non-negative integers/);
    expectError(() => lx.zeros([2 ** 30, 2 ** 30, 2 ** 30]), lx.ShapeError, /too many elements/);
    expectError(() => lx.random.normal([-3]), lx.ShapeError, /random.normal/);
  });

  test("data shorter or longer than the shape; ragged nested data", () => {
    expectError(() => lx.array(new Float32Array(5), [2, 3]), lx.LanesError, /array: data has 20 bytes but shape \[2, 3\] of float32 needs 24/);
    expectError(() => lx.array(new Float32Array(7), [2, 3]), lx.LanesError, /needs 24/);
    expectError(() => lx.array([[1, 2], [3]]), lx.ShapeError, /ragged/);
  });

  test("unsupported dtype", () => {
    expectError(() => lx.zeros([2], { dtype: "float64" as lx.DType }), lx.DTypeError, /unsupported dtype 'float64'/);
  });

  test("arange with a zero step", () => {
    expectError(() => lx.arange(0, 10, 0), lx.LanesError, /arange: .*step non-zero/);
  });

  test("disposed arrays and double dispose", () => {
    const x = lx.ones([3]);
    x.dispose();
    x.dispose(); // idempotent
    expectError(() => lx.exp(x), lx.DisposedError, /array \d+ was disposed/);
    expectError(() => x.toFloat32Array(), lx.DisposedError, /was disposed/);
  });

  test("stale, garbage and foreign ids", () => {
    const x = lx.ones([3]);
    const id = x.id;
    x.dispose();
    expectError(() => lx.arrayFromId(id), lx.InvalidHandleError, /invalid array handle/);
    expectError(() => lx.arrayFromId(123456789), lx.InvalidHandleError, /invalid array handle 123456789/);
    expectError(() => lx.arrayFromId(s.id), lx.InvalidHandleError, /invalid array handle/); // a stream id
    expectError(() => lx.streamFromId(a.id), lx.InvalidHandleError, /invalid stream handle/); // an array id
    expectError(() => lx.streamFromId(2 ** 52 - 1), lx.InvalidHandleError, /invalid stream handle/);
  });

  test("disposed streams: ops, withStream and pending work", () => {
    const t = lx.newStream();
    const pending = lx.exp(lx.ones([4]), { stream: t });
    const stranded = lx.exp(lx.ones([4]), { stream: t });
    t.dispose();
    expectError(() => lx.exp(a, { stream: t }), lx.DisposedError, /stream \d+ was disposed/);
    expectError(() => lx.withStream(t, () => 1), lx.DisposedError, /was disposed/);
    expectError(() => lx.eval(pending), lx.DisposedError, /exp \[4\]: stream \d+ was disposed/);
    // A consumer on a live stream of work stranded on the disposed one fails the same way
    // (found by the fuzzer: it once read the failed input's buffer).
    expectError(() => lx.eval(lx.transpose(lx.add(stranded, 1, { stream: s }))), lx.DisposedError, /stream \d+ was disposed/);
    const other = lx.streamFromId(s.id); // a stream with two references survives one dispose
    other.dispose();
    expect(Array.from(lx.add(a, 1, { stream: s }).toFloat32Array())).toEqual([2, 2, 2, 2, 2, 2]);
  });

  test("the stream stays usable after every error above", () => {
    const y = lx.softmax(lx.matmul(a, lx.ones([3, 2]), { stream: s }), -1, { stream: s });
    expect(Array.from(y.toFloat32Array())).toEqual([0.5, 0.5, 0.5, 0.5]);
  });

  test("NaN and Inf data propagate without errors", () => {
    const x = lx.array([NaN, Infinity, -Infinity, 1]);
    const y = lx.sum(lx.multiply(x, 2, { stream: s }));
    expect(y.item()).toBeNaN();
  });

  test("evalAsync rejects with the typed error", async () => {
    const t = lx.newStream();
    const pending = lx.exp(lx.ones([4]), { stream: t });
    t.dispose();
    await expect(lx.evalAsync(pending)).rejects.toBeInstanceOf(lx.DisposedError);
  });
});

describe("evaluation", () => {
  test("evalAsync keeps the event loop free and resolves with correct values", async () => {
    const x = lx.random.normal([256, 256], { seed: 5 });
    const y = lx.softmax(lx.matmul(x, x), -1);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    await lx.evalAsync(y);
    clearInterval(timer);
    const rows = lx.sum(y, -1).toFloat32Array();
    for (const r of rows) expect(Math.abs(r - 1)).toBeLessThan(1e-5);
  });

  test("withStream sets the stream for ops in its scope", () => {
    using s = lx.newStream();
    const before = lx.currentStream();
    const inside = lx.withStream(s, () => lx.currentStream());
    expect(inside.id).toBe(s.id);
    expect(lx.currentStream().id).toBe(before.id);
    lx.synchronize(s);
  });

  test("stats count kernels, epochs and memory", () => {
    const before = lx.stats();
    const x = lx.add(lx.ones([1000]), lx.ones([1000]));
    lx.eval(x);
    const after = lx.stats();
    expect(after.kernelsExecuted - before.kernelsExecuted).toBe(3); // two fills and the add
    expect(after.epochsCommitted).toBeGreaterThan(before.epochsCommitted);
    expect(after.activeBytes).toBeGreaterThanOrEqual(4000 * 3);
    expect(after.peakBytes).toBeGreaterThanOrEqual(after.activeBytes);
  });

  test("the memory limit raises OutOfMemoryError, and work succeeds again after it is lifted", () => {
    lx.setMemoryLimit(lx.stats().activeBytes + (1 << 20));
    try {
      expectError(() => lx.eval(lx.zeros([1 << 20])), lx.OutOfMemoryError, /exceeds the memory limit/);
    } finally {
      lx.setMemoryLimit(0);
    }
    expect(lx.sum(lx.ones([1 << 20])).item()).toBe(1 << 20);
  });
});

describe("loading", () => {
  test("a missing native library lists every place tried, the platform package and the build command", async () => {
    const { mkdtempSync, cpSync } = await import("node:fs");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(require("node:os").tmpdir(), "lanes-noload-"));
    cpSync(join(import.meta.dir, "..", "src"), join(dir, "src"), { recursive: true });
    const proc = Bun.spawnSync([process.execPath, "-e", `await import(${JSON.stringify(join(dir, "src", "index.ts"))})`], {
      env: { ...process.env, LANES_LIBRARY_PATH: "" },
    });
    const stderr = proc.stderr.toString();
    expect(proc.exitCode).not.toBe(0);
    expect(stderr).toContain("native library not found");
    expect(stderr).toContain("bun run build");
    expect(stderr).toContain(process.platform === "linux" ? `@lanes/linux-${process.arch}-gnu (not installed)` : "@lanes/");
  });
});
