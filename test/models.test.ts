// The model layer: the safetensors loader (against bit patterns computed in JS), the tokenizer,
// sampling, and the three models against independent references (a float64 JS classifier;
// incremental decoding with caches against full recomputation).
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { CancelledError, forward, generate } from "../src/models/generate.ts";
import { architectures, buildModel, type DecoderState } from "../src/models/models.ts";
import { loadSafetensors, parseHeader, saveSafetensors, SafetensorsError } from "../src/models/safetensors.ts";
import { checksum, sample, seededRandom, topIndices } from "../src/models/sampling.ts";
import { decode, encode } from "../src/models/tokenizer.ts";
import { loadModel, writeDefaultWeights } from "../src/models/weights.ts";

const dir = mkdtempSync(join(tmpdir(), "lanes-models-"));

// float32 -> bfloat16 bits, round to nearest even (independent of lanes' C++).
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
// float16 bits via Math.f16round's value: exact for values already representable.
function f16Bits(x: number): number {
  const v = Math.f16round(x);
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  if (e < -14) return sign | Math.round(a / 2 ** -24);
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}
const bytesOf = (a: Float32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe("safetensors", () => {
  test("float32, float16 and bfloat16 tensors load with their values", () => {
    const values = [0, 1, -2.5, 0.1, 65504, 1e-5, -3.75, 1234.5];
    const path = join(dir, "mixed.safetensors");
    saveSafetensors(path, {
      f32: { dtype: "float32", shape: [2, 4], data: bytesOf(new Float32Array(values)) },
      f16: { dtype: "float16", shape: [8], data: bytesOf(Uint16Array.from(values, f16Bits)) },
      bf16: { dtype: "bfloat16", shape: [4, 2], data: bytesOf(Uint16Array.from(values, bf16Bits)) },
    });
    const t = loadSafetensors(path);
    expect([...t.keys()].sort()).toEqual(["bf16", "f16", "f32"]);
    expect(t.get("f32")!.shape).toEqual([2, 4]);
    expect([...t.get("f32")!.toFloat32Array()]).toEqual([...new Float32Array(values)]);
    expect([...t.get("f16")!.toFloat32Array()]).toEqual(values.map((v) => Math.f16round(v)));
    const bf = t.get("bf16")!;
    expect(bf.dtype).toBe("bfloat16");
    expect([...(bf.toTypedArray() as Uint16Array)]).toEqual(values.map(bf16Bits));
    for (const a of t.values()) a.dispose();
  });

  test("malformed files are rejected with a SafetensorsError naming the problem", () => {
    const good = join(dir, "good.safetensors");
    saveSafetensors(good, { w: { dtype: "float32", shape: [4], data: bytesOf(new Float32Array([1, 2, 3, 4])) } });
    const bytes = new Uint8Array(require("node:fs").readFileSync(good));
    const header = (obj: unknown) => {
      const json = new TextEncoder().encode(JSON.stringify(obj));
      const out = new Uint8Array(8 + json.length + 16);
      new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
      out.set(json, 8);
      return out;
    };
    const cases: [Uint8Array, RegExp][] = [
      [bytes.subarray(0, 4), /too short/],
      [bytes.subarray(0, bytes.length - 4), /truncated/],
      [(() => { const b = bytes.slice(); new DataView(b.buffer).setBigUint64(0, 1n << 40n, true); return b; })(), /exceeds the file/],
      [header({ w: { dtype: "F64", shape: [2], data_offsets: [0, 16] } }), /unsupported dtype/],
      [header({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }), /needs 12 bytes/],
      [header({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }), /overlap/],
      [header({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }), /invalid shape/],
      [header([1, 2]), /JSON object/],
      [(() => { const b = header({}); b.set([0x7b, 0xff], 8); return b; })(), /not valid UTF-8 JSON/],
    ];
    for (const [b, message] of cases) {
      expect(() => loadSafetensors(b)).toThrow(SafetensorsError);
      expect(() => loadSafetensors(b)).toThrow(message);
    }
    expect(() => loadSafetensors(join(dir, "missing.safetensors"))).toThrow(/cannot read/);
    // Nothing leaked into lanes, and it keeps working.
    expect(lx.sum(lx.ones([3])).item()).toBe(3);
  });

  test("a model file missing a tensor, or with a wrong shape, is refused by name", () => {
    const arch = architectures.mlp;
    const path = join(dir, "mlp.safetensors");
    writeDefaultWeights(arch, path, 7);
    const { tensors } = parseHeader(new Uint8Array(require("node:fs").readFileSync(path)));
    expect([...tensors.keys()].sort()).toEqual(Object.keys(arch.shapes()).sort());
    const partial = loadSafetensors(path);
    partial.get("w2")!.dispose();
    partial.delete("w2");
    expect(() => buildModel("m", arch, partial)).toThrow(/missing tensor "w2"/);
    for (const a of partial.values()) a.dispose();
    const wrong = join(dir, "wrong.safetensors");
    saveSafetensors(wrong, { embed: { dtype: "float32", shape: [2, 2], data: bytesOf(new Float32Array(4)) } });
    expect(() => loadModel("mlp", wrong)).toThrow(/"embed" has shape \[2, 2\]/);
  });
});

describe("tokenizer and sampling", () => {
  test("byte-level tokens round-trip any text", () => {
    for (const text of ["hello", "ça va ? 你好 🙂", ""]) {
      const t = encode(text);
      expect(t[0]).toBe(256);
      expect(t.slice(1)).toEqual([...new TextEncoder().encode(text)]);
      expect(decode(t)).toBe(text);
    }
  });

  test("greedy picks the argmax; seeded sampling is reproducible and stays in the top k", () => {
    const logits = new Float32Array([0.1, 2.5, -1, 2.4, 0.3]);
    expect(sample(logits, Math.random)).toBe(1);
    expect(topIndices(logits, 3)).toEqual([1, 3, 4]);
    const draw = (seed: number) => {
      const r = seededRandom(seed);
      return Array.from({ length: 50 }, () => sample(logits, r, { temperature: 1, topK: 2 }));
    };
    expect(draw(9)).toEqual(draw(9));
    expect(new Set(draw(9))).toEqual(new Set([1, 3]));
    expect(checksum(logits)).toBe(checksum(new Float32Array(logits)));
    expect(checksum(logits)).not.toBe(checksum(new Float32Array([0.1, 2.5, -1, 2.4, 0.31])));
  });
});

describe("models against references", () => {
  test("the MLP classifier equals a float64 JS forward pass", async () => {
    const path = join(dir, "mlp-ref.safetensors");
    writeDefaultWeights(architectures.mlp, path, 11);
    const model = loadModel("mlp", path);
    const w = loadSafetensors(path);
    const f = (name: string) => w.get(name)!.toFloat32Array();
    const [embed, w1, b1, w2, b2] = ["embed", "w1", "b1", "w2", "b2"].map(f) as Float32Array[];
    const { dim, hidden, classes } = { dim: 128, hidden: 128, classes: 8 };
    const tokens = encode("reference check");
    const x = new Float64Array(dim);
    for (const t of tokens) for (let d = 0; d < dim; d++) x[d]! += embed![t * dim + d]! / tokens.length;
    const erf = (z: number) => {
      // Abramowitz-Stegun 7.1.26 is too coarse; integrate the series instead.
      let sum = 0, term = z;
      for (let n = 0; n < 60; n++) {
        sum += term / (2 * n + 1);
        term *= (-z * z) / (n + 1);
      }
      return (2 / Math.sqrt(Math.PI)) * sum;
    };
    const h = Array.from({ length: hidden }, (_, j) => {
      let v = b1![j]!;
      for (let d = 0; d < dim; d++) v += x[d]! * w1![d * hidden + j]!;
      return 0.5 * v * (1 + erf(v / Math.SQRT2));
    });
    const want = Array.from({ length: classes }, (_, c) => {
      let v = b2![c]!;
      for (let j = 0; j < hidden; j++) v += h[j]! * w2![j * classes + c]!;
      return v;
    });
    const got = await forward(model, tokens, lx.defaultStream(), classes);
    for (const { index, logit } of got.top) expect(Math.abs(logit - want[index]!)).toBeLessThan(1e-4);
    expect(got.top.map((t) => t.index)).toEqual(topIndices(Float32Array.from(want), classes));
    for (const a of w.values()) a.dispose();
    model.dispose();
  });

  for (const name of ["transformer", "hybrid"] as const) {
    test(`${name}: decoding with caches equals recomputing the whole sequence`, async () => {
      const model = loadModel(name);
      const s = lx.defaultStream();
      const prompt = encode("abc");
      const g = await generate(model, { tokens: prompt, maxTokens: 5 }, s);
      expect(g.tokens.length).toBe(5);
      // Step k's logits from the cache must equal a fresh pass over prompt + tokens[0..k).
      for (let k = 0; k < 5; k++) {
        const step = model.step([...prompt, ...g.tokens.slice(0, k)], undefined, s);
        const full = step.logits.toFloat32Array();
        step.scope.disposeExcept([]);
        const greedy = topIndices(full, 1)[0]!;
        expect(greedy).toBe(g.tokens[k]!);
      }
      // Same request, same seed: the same tokens and bit-identical logits.
      const a = await generate(model, { tokens: prompt, maxTokens: 6, temperature: 0.9, topK: 10, seed: 5 }, s);
      const b = await generate(model, { tokens: prompt, maxTokens: 6, temperature: 0.9, topK: 10, seed: 5 }, lx.newStream());
      expect(b).toEqual(a);
      model.dispose();
    });

    test(`${name}: compiled decode steps give the eager steps' tokens and logits bit for bit`, async () => {
      const weights = loadModel(name).weights;
      const eager = buildModel(`${name}-eager`, architectures[name], new Map(weights), { compiled: false });
      const compiled = buildModel(`${name}-compiled`, architectures[name], new Map(weights));
      const p = { tokens: encode("compile me"), maxTokens: 40, temperature: 0.8, topK: 20, seed: 11 };
      const e = await generate(eager, p, lx.newStream());
      const c = await generate(compiled, p, lx.newStream());
      expect(c.tokens).toEqual(e.tokens);
      expect(c.checksums).toEqual(e.checksums); // bit-exact logits at every step
      compiled.dispose();
    });
  }

  test("greedy generation, one step ahead on the device, equals a loop that reads every step before the next (eager and compiled)", async () => {
    const weights = loadModel("hybrid").weights;
    for (const compiled of [false, true]) {
      const model = buildModel(`hybrid-${compiled}`, architectures.hybrid, new Map(weights), { compiled });
      const s = lx.newStream();
      const prompt = encode("one step ahead");
      const got = await generate(model, { tokens: prompt, maxTokens: 24 }, s);
      // The reference: each step evaluated and read, its argmax taken on the host, then the next recorded.
      const want: number[] = [], sums: string[] = [];
      let state: DecoderState | undefined, input = prompt;
      for (let i = 0; i < 24; i++) {
        const step = model.step(input, state, s);
        const logits = step.logits.toFloat32Array();
        step.scope.disposeExcept(step.state.caches);
        for (const a of state?.caches ?? []) a.dispose();
        state = step.state;
        want.push(topIndices(logits, 1)[0]!);
        sums.push(checksum(logits));
        input = [want.at(-1)!];
      }
      for (const a of state!.caches) a.dispose();
      expect(got.tokens, `compiled ${compiled}`).toEqual(want);
      expect(got.checksums, `compiled ${compiled}`).toEqual(sums);
      const unread = await generate(model, { tokens: prompt, maxTokens: 24, checksums: false }, s);
      expect(unread).toEqual({ tokens: want, checksums: [] });
      const serial = await generate(model, { tokens: prompt, maxTokens: 24 }, s, { ahead: false });
      expect(serial).toEqual({ tokens: want, checksums: sums });
      // Aborted mid-way: a typed error, and once the stream has run what was queued (a compiled
      // step is submitted when recorded), nothing of the generation holds memory.
      const before = lx.stats().activeBytes;
      const abort = new AbortController();
      const run = generate(model, { tokens: prompt, maxTokens: 24 }, s, { signal: abort.signal, onToken: (_, i) => i === 5 && abort.abort() });
      await expect(run).rejects.toBeInstanceOf(CancelledError);
      s.synchronize();
      expect(lx.stats().activeBytes).toBe(before);
      if (compiled) model.dispose();
    }
  });

  test("incremental logits match full recomputation to float32 accuracy", async () => {
    const model = loadModel("transformer");
    const s = lx.defaultStream();
    const tokens = encode("hello world");
    const first = model.step(tokens.slice(0, 6), undefined, s);
    await lx.evalAsync(first.logits, ...first.state.caches);
    first.scope.disposeExcept(first.state.caches);
    const next = model.step(tokens.slice(6), first.state, s);
    const inc = next.logits.toFloat32Array();
    next.scope.disposeExcept([]);
    for (const c of first.state.caches) c.dispose();
    const whole = model.step(tokens, undefined, s);
    const full = whole.logits.toFloat32Array();
    whole.scope.disposeExcept([]);
    let worst = 0;
    for (let i = 0; i < full.length; i++) worst = Math.max(worst, Math.abs(full[i]! - inc[i]!));
    expect(worst).toBeLessThan(1e-4);
    model.dispose();
  });
});
