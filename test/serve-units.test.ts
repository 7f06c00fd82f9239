// The service's small pieces against independent references: the stop-string filter against
// indexOf on the whole text, nucleus sizes against a float64 sort, the toy tokenizer's
// streaming decoder against TextDecoder, the API-key check, the slot pool's admission and the
// lifecycle's drain.
import { describe, expect, test } from "bun:test";
import { byteTokenizer, byteTextModel, chatMlPrompt } from "../src/models/toy-text.ts";
import { seededRandom } from "../src/models/sampling.ts";
import { bearerCheck } from "../src/serve/auth.ts";
import { QueueFullError, SlotPool } from "../src/serve/engine.ts";
import { nucleusSize } from "../src/serve/generation.ts";
import { Lifecycle } from "../src/serve/lifecycle.ts";
import { StopStringFilter } from "../src/serve/stop-strings.ts";
import { loadModel } from "../src/models/weights.ts";

describe("stop strings", () => {
  // Random texts over a small alphabet (so stop strings occur and nearly occur), cut into random
  // pieces: what the filter releases must be the text up to the first stop string, whole.
  test("the released text is the text before the first stop string, however the text is cut", () => {
    const random = seededRandom(7);
    const letter = () => "abcé🙂"[Math.floor(random() * 5)]!;
    const word = (n: number) => Array.from({ length: n }, letter).join("");
    for (let trial = 0; trial < 500; trial++) {
      const text = word(1 + Math.floor(random() * 40));
      const stops = Array.from({ length: 1 + Math.floor(random() * 3) }, () => word(1 + Math.floor(random() * 4)));
      const hits = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
      const expected = hits.length ? text.slice(0, Math.min(...hits)) : text;
      const filter = new StopStringFilter(stops);
      let released = "";
      for (let at = 0; at < text.length && !filter.stopped; ) {
        const cut = Math.min(text.length, at + 1 + Math.floor(random() * 4));
        released += filter.push(text.slice(at, cut));
        // Never ahead of the answer, never holding a stop string's text.
        expect(expected.startsWith(released)).toBe(true);
        at = cut;
      }
      released += filter.flush();
      expect(released).toBe(expected);
      expect(filter.stopped).toBe(hits.length > 0);
    }
  });

  test("a possible stop prefix is held back until it can no longer become a stop string", () => {
    const filter = new StopStringFilter(["END", "</s>"]);
    expect(filter.push("hello E")).toBe("hello ");
    expect(filter.push("N")).toBe("");
    expect(filter.push("x <")).toBe("ENx ");
    expect(filter.push("/s")).toBe("");
    expect(filter.push(">tail")).toBe("");
    expect(filter.stopped).toBe(true);
    expect(filter.flush()).toBe("");
    const open = new StopStringFilter(["END"]);
    expect(open.push("the E")).toBe("the ");
    expect(open.flush()).toBe("E");
  });
});

describe("nucleus (top-p)", () => {
  // The reference: probabilities in float64, sorted descending (ties by index), the fewest whose
  // sum reaches p.
  function referenceSize(logits: Float32Array, temperature: number, p: number, k: number): number {
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b).slice(0, k);
    const w = order.map((i) => Math.exp((logits[i]! - logits[order[0]!]!) / temperature));
    if (p >= 1) return w.length; // top_p 1 is off
    const total = w.reduce((s, x) => s + x, 0);
    let c = 0;
    for (let j = 0; j < w.length; j++) if ((c += w[j]!) >= p * total) return j + 1;
    return w.length;
  }

  test("keeps the fewest most likely tokens whose probabilities reach top_p", () => {
    const random = seededRandom(3);
    for (let trial = 0; trial < 200; trial++) {
      const n = 2 + Math.floor(random() * 300);
      const logits = Float32Array.from({ length: n }, () => (random() - 0.5) * 12);
      const temperature = 0.2 + random() * 1.5;
      const p = trial % 10 === 0 ? 1 : random();
      const k = trial % 3 === 0 ? 1 + Math.floor(random() * n) : n;
      expect(nucleusSize(logits, temperature, p, k)).toBe(referenceSize(logits, temperature, p, k));
    }
    // One dominant token: any p below its probability keeps it alone.
    expect(nucleusSize(Float32Array.of(0, 10, 0, 0), 1, 0.9)).toBe(1);
    // Equal logits: p = 0.5 of 4 tokens keeps 2.
    expect(nucleusSize(Float32Array.of(1, 1, 1, 1), 1, 0.5)).toBe(2);
  });
});

describe("the toy text model", () => {
  test("the streaming decoder gives TextDecoder's text for any byte sequence, BOS shown or skipped", () => {
    const tokenizer = byteTokenizer();
    const random = seededRandom(11);
    for (let trial = 0; trial < 200; trial++) {
      const ids = Array.from({ length: Math.floor(random() * 30) }, () => (random() < 0.7 ? Math.floor(random() * 128) : Math.floor(random() * 256)));
      const decoder = tokenizer.streamDecoder({ skipSpecial: true });
      const streamed = ids.map((id) => decoder.push(id)).join("") + decoder.flush();
      expect(streamed).toBe(new TextDecoder().decode(Uint8Array.from(ids)));
    }
    expect(tokenizer.decode([104, 256, 105])).toBe("h<s>i");
    expect(tokenizer.decode([104, 256, 105], { skipSpecial: true })).toBe("hi");
    expect(tokenizer.encode("<s>hi", { special: true })).toEqual([256, 104, 105]);
    expect(tokenizer.encode("<s>hi")).toEqual([60, 115, 62, 104, 105]);
    expect(tokenizer.stopIds).toEqual([256]);
  });

  test("the chat template is BOS then ChatML turns, and the model's context is the decoder's", () => {
    const prompt = chatMlPrompt([{ role: "system", content: "be brief" }, { role: "user", content: "hi" }], { addGenerationPrompt: true });
    expect(prompt).toBe("<s><|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    const model = loadModel("transformer");
    try {
      expect(byteTextModel(model).contextLength).toBe(512);
    } finally {
      model.dispose();
    }
    const mlp = loadModel("mlp");
    try {
      expect(() => byteTextModel(mlp)).toThrow(/not a decoder/);
    } finally {
      mlp.dispose();
    }
  });
});

describe("service pieces", () => {
  const withAuth = (header?: string) => new Request("http://x/", header === undefined ? {} : { headers: { authorization: header } });

  test("the API key check accepts exactly 'Bearer <key>'", () => {
    const check = bearerCheck("sk-abc123");
    expect(check(withAuth("Bearer sk-abc123"))).toBe(true);
    expect(check(withAuth("bearer sk-abc123"))).toBe(true);
    for (const bad of [undefined, "", "Bearer", "Bearer ", "Bearer sk-abc12", "Bearer sk-abc1234", "Basic sk-abc123", "sk-abc123", "Bearer sk-abc123 x"])
      expect(check(withAuth(bad))).toBe(false);
    expect(() => bearerCheck("")).toThrow(/empty/);
  });

  test("the slot pool admits a request's jobs together or not at all, and says when it is idle", async () => {
    const pool = new SlotPool(["a", "b"], 1);
    expect(() => pool.admit(3)).not.toThrow();
    expect(() => pool.admit(4)).toThrow(QueueFullError);
    const never = new AbortController().signal;
    const a = await pool.acquire(never);
    const b = await pool.acquire(never);
    expect(() => pool.admit(1)).not.toThrow();
    expect(() => pool.admit(2)).toThrow(QueueFullError);
    const queued = pool.acquire(never);
    expect(() => pool.admit(1)).toThrow(QueueFullError);
    let idle = false;
    const whenIdle = pool.whenIdle().then(() => (idle = true));
    pool.release(a);
    pool.release(await queued);
    await Bun.sleep(0);
    expect(idle).toBe(false);
    pool.release(b);
    await whenIdle;
    expect(pool.load()).toEqual({ size: 2, busy: 0, queued: 0 });
  });

  test("a drain resolves when the last request in flight ends, and refuses new ones from its start", async () => {
    const counts: number[] = [];
    const life = new Lifecycle((n) => counts.push(n));
    const end1 = life.enter();
    const end2 = life.enter();
    let drained = false;
    const drain = life.drain().then(() => (drained = true));
    expect(life.draining).toBe(true);
    end1();
    end1();
    await Bun.sleep(0);
    expect(drained).toBe(false);
    end2();
    await drain;
    expect(counts).toEqual([1, 2, 1, 0]);
  });
});
