// `lanes serve` as a process: the API key (from the environment or the flag) guards every
// endpoint but /healthz and never shows in output, errors or metrics; a broken `--model FILE.gguf`
// is refused with what is wrong; SIGTERM drains a streamed chat.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import * as lx from "../src/index.ts";
import { generate } from "../src/models/generate.ts";
import { bos } from "../src/models/tokenizer.ts";
import { loadModel } from "../src/models/weights.ts";

const cli = join(import.meta.dir, "..", "src", "cli.ts");
const scratch = mkdtempSync(join(tmpdir(), "lanes-openai-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** `lanes serve` with `args`; all it prints is collected in `output.text`. */
function start(args: string[], env: Record<string, string> = {}) {
  const proc = Bun.spawn([process.execPath, cli, "serve", "--port", "0", "--workers", "1", ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const output = { text: "" };
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output.text += decoder.decode(chunk, { stream: true });
  };
  const pumped = Promise.all([pump(proc.stdout), pump(proc.stderr)]);
  const url = async () => {
    const pattern = /http:\/\/[\w.]+:\d+/;
    while (!pattern.test(output.text)) {
      if (proc.exitCode !== null) throw new Error(`lanes serve exited ${proc.exitCode}: ${output.text}`);
      await Bun.sleep(10);
    }
    return pattern.exec(output.text)![0];
  };
  /** Sends SIGTERM; resolves with the exit code once all output is in. */
  const stop = async () => {
    proc.kill("SIGTERM");
    const code = await proc.exited;
    await pumped;
    return code;
  };
  return { proc, output, pumped, url, stop };
}

describe("API key", () => {
  const key = "sk-lanes-9f8e7d6c5b4a3210";
  const wrong = [`${key}x`, key.slice(0, -1), "sk-other-0000000000000000", key.toUpperCase()];

  test("every endpoint but /healthz needs the key from LANES_API_KEY; the key shows nowhere", async () => {
    const server = start([], { LANES_API_KEY: key });
    const seen: string[] = [];
    const record = async (res: Response) => {
      seen.push(JSON.stringify([...res.headers]), await res.text());
      return res;
    };
    try {
      const url = await server.url();
      expect((await record(await fetch(`${url}/healthz`))).status).toBe(200);
      const guarded: [string, RequestInit][] = [
        ["/v1/models", {}],
        ["/metrics", {}],
        ["/v1/chat/completions", { method: "POST", body: JSON.stringify({ model: "transformer", messages: [{ role: "user", content: "hi" }] }) }],
        ["/v1/completions", { method: "POST", body: "{" }],
        ["/v1/generate", { method: "POST", body: JSON.stringify({ model: "transformer", prompt: "hi" }) }],
        ["/v1/forward", { method: "POST", body: "{}" }],
        ["/no/such/route", {}],
      ];
      for (const [path, init] of guarded)
        for (const auth of [undefined, ...wrong.map((w) => `Bearer ${w}`), key, `Basic ${key}`]) {
          const res = await record(await fetch(url + path, { ...init, headers: auth === undefined ? {} : { authorization: auth } }));
          expect(res.status).toBe(401);
          expect(res.headers.get("www-authenticate")).toBe("Bearer");
          expect((JSON.parse(seen.at(-1)!) as { error: { type: string; code: string } }).error).toMatchObject({ type: "authentication_error", code: "invalid_api_key" });
        }

      const good = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
      const answer = await good.chat.completions.create({ model: "transformer", messages: [{ role: "user", content: "hi" }], max_tokens: 4, temperature: 0 });
      expect(answer.choices.length).toBe(1);
      for (const w of wrong) {
        const bad = new OpenAI({ baseURL: `${url}/v1`, apiKey: w, maxRetries: 0 });
        const e = await bad.models.list().catch((err: unknown) => err);
        expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
        seen.push((e as Error).message);
      }
      const authorized = { authorization: `Bearer ${key}` };
      await record(await fetch(`${url}/v1/completions`, { method: "POST", headers: authorized, body: JSON.stringify({ model: "transformer", prompt: "x", max_tokens: 99999 }) }));
      const metrics = await record(await fetch(`${url}/metrics`, { headers: authorized }));
      expect(metrics.status).toBe(200);
      expect(seen.at(-1)).toContain('endpoint="unmatched",status="401"');
      const models = await record(await fetch(`${url}/v1/models`, { headers: authorized }));
      expect(models.status).toBe(200);

      expect(await server.stop()).toBe(0);
      const output = server.output.text;
      expect(output).toContain("API key required");
      expect(output).toContain("draining");
      for (const text of [...seen, output]) for (const secret of [key, ...wrong]) expect(text).not.toContain(secret);
    } finally {
      server.proc.kill();
    }
  }, 60_000);

  test("--api-key works the same, and an empty key is refused at start", async () => {
    const server = start(["--api-key", key]);
    try {
      const url = await server.url();
      expect((await fetch(`${url}/v1/models`)).status).toBe(401);
      expect((await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
      expect(await server.stop()).toBe(0);
      expect(server.output.text).toContain("API key required");
      expect(server.output.text).not.toContain(key);
    } finally {
      server.proc.kill();
    }
    const empty = start(["--api-key", ""]);
    expect(await empty.proc.exited).toBe(2);
    await empty.pumped;
    expect(empty.output.text).toContain("the API key must not be empty");
  }, 60_000);
});

describe("--model", () => {
  test("a .gguf file is accepted by the command line; a broken or missing one is refused with what is wrong", async () => {
    const file = join(scratch, "model.gguf");
    writeFileSync(file, "GGUF");
    for (const [path, message] of [
      [file, `${file}: truncated: version at byte 4 needs 4 bytes, past the end of the file (4 bytes)`],
      [join(scratch, "missing.gguf"), `no such model file: ${join(scratch, "missing.gguf")}`],
    ]) {
      const server = start(["--model", path!]);
      expect(await server.proc.exited).toBe(2);
      await server.pumped;
      expect(server.output.text).toStartWith(`lanes serve: ${message}`);
    }
    const bad = start(["--model", "what"]);
    expect(await bad.proc.exited).toBe(2);
    await bad.pumped;
    expect(bad.output.text).toContain(`--model takes NAME=ARCH[:weights.safetensors] or a .gguf file, got "what"`);
    expect(bad.output.text).toContain("usage: lanes serve");
  }, 60_000);
});

describe("lifecycle", () => {
  test("SIGTERM lets a streamed chat finish, then the process exits 0", async () => {
    const server = start([]);
    try {
      const url = await server.url();
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
      const stream = await client.chat.completions.create({ model: "transformer", messages: [{ role: "user", content: "drain" }], max_tokens: 150, temperature: 1, seed: 6, stream: true, stream_options: { include_usage: true } });
      let text = "";
      let chunks = 0;
      let usage: OpenAI.Completions.CompletionUsage | null | undefined;
      for await (const c of stream) {
        if (++chunks === 3) server.proc.kill("SIGTERM");
        text += c.choices[0]?.delta.content ?? "";
        usage = c.usage ?? usage;
      }
      const model = loadModel("transformer");
      const prompt = [bos, ...new TextEncoder().encode("<|im_start|>user\ndrain<|im_end|>\n<|im_start|>assistant\n")];
      const serial = await generate(model, { tokens: prompt, maxTokens: 150, temperature: 1, seed: 6 }, lx.defaultStream());
      model.dispose();
      const end = serial.tokens.indexOf(bos);
      const kept = end < 0 ? serial.tokens : serial.tokens.slice(0, end);
      expect(text).toBe(new TextDecoder().decode(Uint8Array.from(kept)));
      expect(usage!.completion_tokens).toBe(kept.length + (end < 0 ? 0 : 1));
      expect(await server.proc.exited).toBe(0);
    } finally {
      server.proc.kill();
    }
  }, 60_000);
});
