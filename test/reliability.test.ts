// Faults and lifecycles: injected device failures, the watchdog, shutdown, Workers terminated
// mid-eval, streams disposed with work in flight, exit with work in flight, ids from another
// process, memory-limit failures. Nothing may crash, hang or leak.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as lx from "../src/index.ts";

const here = import.meta.dir;

function runChild(script: string, args: string[] = [], env: Record<string, string> = {}) {
  const proc = Bun.spawnSync([process.execPath, join(here, "support", script), ...args], {
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return { code: proc.exitCode, signal: proc.signalCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    Bun.gc(true);
    await Bun.sleep(20);
  }
  return cond();
}

describe("injected faults (child process with LANES_FAULT_INJECTION=1)", () => {
  const run = runChild("faults.ts", [], { LANES_FAULT_INJECTION: "1", LANES_WATCHDOG_MS: "300" });
  const r = JSON.parse(run.stdout.trim().split("\n").pop() ?? "{}") as Record<string, { ok: boolean; name?: string; message?: string } & unknown>;

  test("the child ran to the end and exited cleanly", () => {
    expect(run.stderr).not.toContain("panic");
    expect(run.code).toBe(0);
  });

  test("the eval waiting on a failed command buffer rejects with DeviceError", () => {
    expect(r.failedEval).toMatchObject({ ok: false, name: "DeviceError" });
    expect(r.failedEval!.message).toMatch(/matmul \[64, 64\]: injected fault on stream \d+/);
    expect(r.asyncFailure).toMatchObject({ ok: false, name: "DeviceError" });
  });

  test("evals on other streams that depend on the failed output reject too", () => {
    expect(r.dependentEval).toMatchObject({ ok: false, name: "DeviceError" });
    expect(r.dependentEval!.message).toMatch(/add \[64, 64\]: waited on stream \d+, which failed: injected fault/);
  });

  test("unrelated streams complete normally; the failed stream accepts new work", () => {
    expect(r.unrelated).toEqual({ ok: true });
    expect(r.unrelatedValue as unknown).toBe(1000);
    expect(r.afterFailure).toEqual({ ok: true });
    expect(r.afterFailureCorrect as unknown).toBe(true);
  });

  test("the watchdog turns a wait that never ends into a DeviceError naming stream, value and waiting threads", () => {
    expect(r.watchdog).toMatchObject({ ok: false, name: "DeviceError" });
    expect(r.watchdog!.message).toMatch(/watchdog: waited 300 ms for stream \d+ to reach timeline value 1 \(completed 0\); threads waiting on this stream: \[this thread \d+ for 1\]/);
    expect(r.afterResume).toEqual({ ok: true });
    expect(r.afterResumeValue as unknown).toBe(Math.fround(Math.E));
  });

  test("calls after shutdown throw DisposedError", () => {
    expect(r.afterShutdown).toMatchObject({ ok: false, name: "DisposedError" });
    expect(r.afterShutdown!.message).toMatch(/lanes was shut down/);
  });

  test("without the switch the hooks refuse", () => {
    using s = lx.newStream();
    expect(() => lx.debug.failNextEpochs(s)).toThrow(/fault injection is disabled/);
  });
});

describe("backend selection", () => {
  test("LANES_BACKEND=cuda either runs on the GPU or fails with a DeviceError naming what is missing", () => {
    const r = runChild("backend-probe.ts", [], { LANES_BACKEND: "cuda" });
    expect(r.code).toBe(0);
    const [first, last] = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(last).toEqual({ alive: true });
    if (first.backend === "cuda") {
      expect(first.sum).toBe(45);
    } else {
      expect(first.error).toBe("DeviceError");
      // No NVIDIA software on this machine, or (macOS) no CUDA in this build.
      expect(first.message).toMatch(/LANES_BACKEND=cuda(: (no NVIDIA driver library|NVRTC|the driver reports no CUDA device|cuInit failed)| is not available in this build)/);
    }
  }, 60_000);

  test("an unknown LANES_BACKEND is a DeviceError listing the backends this build has", () => {
    const r = runChild("backend-probe.ts", [], { LANES_BACKEND: "tpu" });
    expect(r.code).toBe(0);
    const first = JSON.parse(r.stdout.trim().split("\n")[0]!);
    expect(first.error).toBe("DeviceError");
    expect(first.message).toContain(`LANES_BACKEND=tpu is not available in this build (have: ${process.platform === "darwin" ? "metal, cpu" : "cpu, cuda"})`);
  }, 60_000);
});

describe("lifecycles", () => {
  test("a Worker terminated mid-eval crashes nothing and its handles are reclaimed", async () => {
    Bun.gc(true);
    await Bun.sleep(50);
    const before = lx.stats();
    const worker = new Worker(join(here, "support", "terminated-worker.ts"));
    // The Worker reports the ids it holds; after termination each must be rejected as stale.
    const ids = await new Promise<number[]>((resolve) => (worker.onmessage = (e) => resolve(e.data as number[])));
    expect(ids.length).toBe(60);
    worker.terminate();
    // Other work continues meanwhile.
    using s = lx.newStream();
    expect(lx.sum(lx.ones([100], { stream: s })).item()).toBe(100);
    const isReclaimed = (id: number): boolean => {
      try {
        lx.arrayFromId(id).dispose(); // still alive: drop the reference we just took
        return false;
      } catch (e) {
        return e instanceof lx.InvalidHandleError;
      }
    };
    const reclaimed = await until(() => {
      const now = lx.stats();
      return ids.every(isReclaimed) && now.liveArrays <= before.liveArrays + 2 && now.liveStreams <= before.liveStreams + 1;
    }, 20_000);
    expect(reclaimed).toBe(true);
  }, 30_000);

  test("disposing a stream with work in flight waits for it, then rejects new work", async () => {
    const s = lx.newStream();
    const a = lx.random.normal([256, 256], { seed: 4, stream: s });
    let h = a;
    for (let k = 0; k < 4; k++) h = lx.matmul(h, a, { stream: s });
    const done = lx.evalAsync(h);
    s.dispose();
    await done;
    expect(h.toFloat32Array().every(Number.isFinite)).toBe(true);
    expect(() => lx.exp(a, { stream: s })).toThrow(lx.DisposedError);
  });

  test("work on another stream that reads the output of a stream disposed before (in flight or done) waits for it and is right", async () => {
    using consumer = lx.newStream();
    for (let round = 0; round < 24; round++) {
      const s = lx.newStream();
      const a = lx.random.normal([128, 128], { seed: 40 + round, stream: s });
      const h = lx.matmul(a, a, { stream: s });
      const done = lx.evalAsync(h);
      if (round % 3 === 1) await done; // the producer finished before its stream goes
      s.dispose(); // in flight otherwise: the wait below races the producer's completion
      if (round % 3 === 2) await Bun.sleep(0);
      const y = lx.multiply(h, 2, { stream: consumer });
      lx.eval(y);
      await done;
      const hv = h.toFloat32Array(), yv = y.toFloat32Array();
      expect(yv.every((v, i) => v === 2 * hv[i]!)).toBe(true);
      for (const t of [a, h, y]) t.dispose();
    }
  });

  test("the process exits with work in flight: clean exit, no hang, no abort", () => {
    for (const mode of ["exit", "end"]) {
      const r = runChild("exit-in-flight.ts", [mode]);
      expect(r.signal ?? null).toBeNull();
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^id \d+/);
    }
  }, 120_000);

  test("ids from another process run are rejected", () => {
    const r = runChild("exit-in-flight.ts", ["exit"]);
    const id = Number(/id (\d+)/.exec(r.stdout)![1]);
    expect(() => lx.arrayFromId(id)).toThrow(lx.InvalidHandleError);
  }, 60_000);

  test("an allocation over the memory limit fails after trimming the cache, and nothing leaks", () => {
    const before = lx.stats();
    lx.setMemoryLimit(before.activeBytes + (4 << 20));
    try {
      using small = lx.ones([1 << 18]); // 1 MiB: fits
      using total = lx.sum(small);
      expect(total.item()).toBe(1 << 18);
      using big = lx.zeros([1 << 21]); // 8 MiB: does not fit
      expect(() => lx.eval(big)).toThrow(lx.OutOfMemoryError);
      expect(lx.stats().cachedBytes).toBe(0); // the cache was trimmed first
    } finally {
      lx.setMemoryLimit(0);
    }
    expect(lx.stats().activeBytes).toBe(before.activeBytes);
  });
});
