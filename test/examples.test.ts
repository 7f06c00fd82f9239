// Every example in examples/ runs here as a user would run it (a child `bun` process from the
// repository root), and its printed results are checked against references computed in this
// process: float64 math in JS, or a serial in-process run of the same model.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { generate } from "../src/models/generate.ts";
import { saveSafetensors } from "../src/models/safetensors.ts";
import { encode } from "../src/models/tokenizer.ts";
import { loadModel } from "../src/models/weights.ts";
import { expectQuickstartOutput } from "./support/quickstart.ts";
import { serviceUrl } from "./support/service-url.ts";

const root = join(import.meta.dir, "..");
const scratch = mkdtempSync(join(tmpdir(), "lanes-examples-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function runExample(file: string, args: string[] = [], env: Record<string, string> = {}): Promise<string> {
  const proc = Bun.spawn([process.execPath, join(root, "examples", file), ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${file} exited ${code}:\n${stderr}\n${stdout}`);
  return stdout;
}

describe("examples", () => {
  test("quickstart.ts (the README's ten lines): softmax rows sum to 1 and |x[0]|² matches float64", async () => {
    expectQuickstartOutput(await runExample("quickstart.ts"));
  });

  test("workers.ts: a Worker pool on shared streams; every result equals the serial run", async () => {
    const out = await runExample("workers.ts", [], { LANES_DEMO_WORKERS: "6", LANES_DEMO_STREAMS: "3", LANES_DEMO_GRAPHS: "4" });
    expect(out).toContain("6 Workers x 4 graphs on 3 shared streams");
    expect(out).toContain("all 24 results equal the serial run bitwise");
    // Two Workers per stream: each of the 3 stream ids appears in exactly two rows.
    const ids = [...out.matchAll(/│ \d+\s+│ \d+\s+│ (\d+)\s+│/g)].map((r) => r[1]);
    expect(ids.length).toBe(6);
    expect(new Set(ids).size).toBe(3);
  }, 60_000);

  test("safetensors.ts: x @ W + b from a bf16/f32 checkpoint, and from an f16 one given as argument, match float64", async () => {
    const reference = (w: number[], b: number[], inputs: number, outputs: number) =>
      Array.from({ length: outputs }, (_, j) => b[j]! + Array.from({ length: inputs }, (_, i) => i * w[i * outputs + j]!).reduce((s, v) => s + v, 0));
    const written = JSON.parse((await runExample("safetensors.ts")).trim().split("\n").at(-1)!) as { y: number[] };
    const w = Array.from({ length: 24 }, (_, i) => ((i * 7) % 13) / 8 - 0.75);
    const b = [0, 0.25, 0.5, 0.75];
    expect(written.y).toEqual(reference(w, b, 6, 4)); // every value is exact in bf16 and f32

    // An f16 checkpoint of another shape, written here.
    const inputs = 5, outputs = 3;
    const w16 = Array.from({ length: inputs * outputs }, (_, i) => (i % 7) * 0.5 - 1.5);
    const b16 = [1, -2, 0.5];
    const file = join(scratch, "f16.safetensors");
    const half = new Uint16Array(w16.map((v) => { const f = new Float16Array([v]); return new Uint16Array(f.buffer)[0]!; }));
    saveSafetensors(file, {
      "proj.weight": { dtype: "float16", shape: [inputs, outputs], data: new Uint8Array(half.buffer) },
      "proj.bias": { dtype: "float32", shape: [outputs], data: new Uint8Array(new Float32Array(b16).buffer) },
    });
    const out = await runExample("safetensors.ts", [file]);
    expect(out).toContain("proj.weight: float16 [5, 3]");
    expect((JSON.parse(out.trim().split("\n").at(-1)!) as { y: number[] }).y).toEqual(reference(w16, b16, inputs, outputs));
  });

  test("service.ts: answers over HTTP with the tokens of a serial in-process run, and drains on SIGTERM", async () => {
    const proc = Bun.spawn([process.execPath, join(root, "examples", "service.ts")], {
      cwd: root,
      env: { ...process.env, PORT: "0", LANES_SERVE_WORKERS: "1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      const url = await serviceUrl(proc, "service.ts");
      const res = await fetch(`${url}/v1/generate`, { method: "POST", body: JSON.stringify({ model: "transformer", prompt: "lanes", max_tokens: 12 }) });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { tokens: number[]; checksums: string[] };

      const model = loadModel("transformer");
      using stream = lx.newStream();
      const serial = await generate(model, { tokens: encode("lanes"), maxTokens: 12 }, stream);
      model.dispose();
      expect(body.tokens).toEqual(serial.tokens);
      expect(body.checksums).toEqual(serial.checksums);

      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    } finally {
      proc.kill();
    }
  }, 60_000);
});
