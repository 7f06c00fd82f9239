// The Llama forward pass on a tiny GGUF model written by the test (tensors of all six types),
// against a float64 forward pass written here from the architecture's definition: RMSNorm,
// adjacent-pair RoPE, grouped-query causal attention, SwiGLU, tied head. Also decoding through
// the KV cache, and GgufErrors for files that don't fit the architecture.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { GgufError, parseGguf, tensorBytes, tensorFloat32 } from "../src/models/gguf.ts";
import { checkLlamaTensors, llamaConfig, LlamaModel, loadLlamaWeights } from "../src/models/llama.ts";
import { generate } from "../src/models/generate.ts";
import { runGeneration } from "../src/serve/generation.ts";
import type { DecoderState } from "../src/models/models.ts";
import { loadTextModel } from "../src/models/text-model.ts";
import { type EntryToWrite, randomTensorData, rng, type TensorToWrite, writeGguf } from "./support/gguf-writer.ts";
import { cfg, metadata, tensors } from "./support/tiny-llama.ts";

/** The float64 forward pass: logits at every position of `ids`. */
function reference(weights: (name: string) => Float32Array, ids: number[]): Float64Array[] {
  const { dim, heads, kvHeads, headDim, hidden, layers, ropeBase, eps, vocab } = cfg;
  const matvec = (w: Float32Array, x: Float64Array, rows: number) => {
    const cols = x.length;
    return Float64Array.from({ length: rows }, (_, r) => {
      let s = 0;
      for (let c = 0; c < cols; c++) s += w[r * cols + c]! * x[c]!;
      return s;
    });
  };
  const rmsNorm = (x: Float64Array, w: Float32Array) => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const scale = 1 / Math.sqrt(ss / x.length + eps);
    return x.map((v, i) => v * scale * w[i]!);
  };
  const rope = (v: Float64Array, pos: number, n: number) => {
    const out = v.slice();
    for (let h = 0; h < n; h++)
      for (let i = 0; i < headDim / 2; i++) {
        const theta = pos * Math.pow(ropeBase, (-2 * i) / headDim);
        const a = v[h * headDim + 2 * i]!, b = v[h * headDim + 2 * i + 1]!;
        out[h * headDim + 2 * i] = a * Math.cos(theta) - b * Math.sin(theta);
        out[h * headDim + 2 * i + 1] = a * Math.sin(theta) + b * Math.cos(theta);
      }
    return out;
  };
  const embd = weights("token_embd.weight");
  let xs = ids.map((t) => Float64Array.from(embd.subarray(t * dim, (t + 1) * dim)));
  for (let l = 0; l < layers; l++) {
    const w = (n: string) => weights(`blk.${l}.${n}.weight`);
    const hs = xs.map((x) => rmsNorm(x, w("attn_norm")));
    const qs = hs.map((h, p) => rope(matvec(w("attn_q"), h, heads * headDim), p, heads));
    const ks = hs.map((h, p) => rope(matvec(w("attn_k"), h, kvHeads * headDim), p, kvHeads));
    const vs = hs.map((h) => matvec(w("attn_v"), h, kvHeads * headDim));
    xs = xs.map((x, p) => {
      const merged = new Float64Array(heads * headDim);
      for (let h = 0; h < heads; h++) {
        const g = Math.floor(h / (heads / kvHeads));
        const scores = ks.slice(0, p + 1).map((k) => {
          let s = 0;
          for (let d = 0; d < headDim; d++) s += qs[p]![h * headDim + d]! * k[g * headDim + d]!;
          return s / Math.sqrt(headDim);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= p; j++) for (let d = 0; d < headDim; d++) merged[h * headDim + d]! += (e[j]! / z) * vs[j]![g * headDim + d]!;
      }
      const attn = matvec(w("attn_output"), merged, dim);
      const y = x.map((v, i) => v + attn[i]!);
      const h2 = rmsNorm(y, w("ffn_norm"));
      const gate = matvec(w("ffn_gate"), h2, hidden);
      const up = matvec(w("ffn_up"), h2, hidden);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      const down = matvec(w("ffn_down"), act, dim);
      return y.map((v, i) => v + down[i]!);
    });
  }
  return xs.map((x) => matvec(embd, rmsNorm(x, weights("output_norm.weight")), vocab));
}

function expectClose(lanes: Float32Array, ref: Float64Array[], rows: number[]): void {
  let worst = 0, scale = 0;
  rows.forEach((r, i) => {
    for (let v = 0; v < cfg.vocab; v++) {
      worst = Math.max(worst, Math.abs(lanes[i * cfg.vocab + v]! - ref[r]![v]!));
      scale = Math.max(scale, Math.abs(ref[r]![v]!));
    }
  });
  expect(scale).toBeGreaterThan(0.5);
  expect(worst / scale).toBeLessThan(2e-5);
}

describe("Llama forward pass on a tiny GGUF model", () => {
  const bytes = writeGguf({ metadata: metadata(), tensors: tensors(7) });
  const file = parseGguf(bytes);
  const config = llamaConfig(file);
  const ids = [5, 17, 3, 30, 8, 8, 21, 39, 0, 12, 26];
  const ref = reference((n) => tensorFloat32(file, n), ids);

  test("the config comes from the metadata", () => {
    expect(config).toEqual({
      vocab: 40, dim: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, ropeDims: 16, ropeBase: 10000, hidden: 96,
      normEps: Math.fround(1e-5), attentionScale: 0.25, contextLength: 64, tiedHead: true,
    });
  });

  // Exact precision (float32 weights and KV cache) to check the architecture itself; the
  // default precision (quantized weights, 8-bit activations, a float16 KV cache) is checked
  // against llama.cpp in test/llm.test.ts.
  const exact = { dequantize: true, kvCache: "float32" } as const;

  test("logits at every position equal the float64 forward pass; decoding through the KV cache too", () => {
    using model = { m: new LlamaModel("tiny", config, loadLlamaWeights(file, config, exact), exact), [Symbol.dispose]() { this.m.dispose(); } };
    using stream = lx.newStream();
    const all = model.m.stepLogits(ids, undefined, stream);
    lx.eval(all.logits);
    expectClose(all.logits.toFloat32Array(), ref, ids.map((_, i) => i));
    all.scope.disposeExcept([]);
    for (const c of all.state.caches) c.dispose();

    // 6 tokens in one step, then one at a time: each step's logits are the last position's.
    let state: DecoderState | undefined;
    const steps: [number[], number][] = [[ids.slice(0, 6), 5], ...ids.slice(6).map((t, i): [number[], number] => [[t], 6 + i])];
    for (const [input, row] of steps) {
      const s = model.m.step(input, state, stream);
      lx.eval(s.logits, ...s.state.caches);
      expect(s.logits.shape).toEqual([cfg.vocab]);
      expectClose(s.logits.toFloat32Array(), ref, [row]);
      s.scope.disposeExcept(s.state.caches);
      for (const c of state?.caches ?? []) c.dispose();
      state = s.state;
    }
    for (const c of state?.caches ?? []) c.dispose();
  });

  test("compiled decode steps give the eager steps' logits bit for bit, at both precisions", () => {
    for (const opts of [exact, {}] as const) {
      const run = (compiled: boolean) => {
        const m = new LlamaModel("tiny", config, loadLlamaWeights(file, config, opts), { ...opts, compiled });
        using stream = lx.newStream();
        const out: Uint32Array[] = [];
        let state: DecoderState | undefined;
        for (const input of [ids.slice(0, 4), ...ids.slice(4).map((t) => [t])]) {
          const s = m.step(input, state, stream);
          lx.eval(s.logits, ...s.state.caches);
          out.push(new Uint32Array(s.logits.toFloat32Array().buffer));
          s.scope.disposeExcept(s.state.caches);
          state = s.state;
        }
        for (const c of state?.caches ?? []) c.dispose();
        m.dispose();
        return out;
      };
      const eager = run(false), compiled = run(true);
      expect(compiled.length).toBe(eager.length);
      compiled.forEach((bits, i) => expect(Buffer.from(bits.buffer).equals(Buffer.from(eager[i]!.buffer))).toBe(true));
    }
  });

  test("a compiled decode step's own greedy token drives generation one step ahead: the tokens of eager steps read one by one", async () => {
    const run = async (compiled: boolean) => {
      const m = new LlamaModel("tiny", config, loadLlamaWeights(file, config, {}), { compiled });
      using stream = lx.newStream();
      if (compiled) {
        // The step's greedy token is its logits' first maximum.
        const first = m.step(ids.slice(0, 4), undefined, stream);
        const next = m.step([ids[4]!], first.state, stream);
        const logits = next.logits.toFloat32Array();
        expect(next.greedy!.toInt32Array()[0]).toBe(logits.indexOf(Math.max(...logits)));
        first.scope.disposeExcept([]);
        next.scope.disposeExcept([]);
        for (const c of next.state.caches) c.dispose();
      }
      const out = await generate(m, { tokens: ids.slice(0, 4), maxTokens: 12 }, stream, { ahead: compiled });
      m.dispose();
      return out;
    };
    const eager = await run(false), compiled = await run(true);
    expect(compiled.tokens).toEqual(eager.tokens);
    expect(compiled.checksums).toEqual(eager.checksums);
  });

  test("an end token stops a generation run one step ahead (the service's runGeneration): the tokens before it, as reading each step first, and nothing left behind", async () => {
    const m = new LlamaModel("tiny", config, loadLlamaWeights(file, config, {}), { compiled: true });
    using stream = lx.newStream();
    const params = { tokens: ids.slice(0, 4), maxTokens: 12 };
    const serial = await generate(m, params, stream, { ahead: false });
    // The last token that first appears where it stands: stopping there leaves the earlier ones.
    let at = 0;
    serial.tokens.forEach((t, i) => { if (serial.tokens.indexOf(t) === i) at = i; });
    const end = serial.tokens[at]!;
    const before = lx.stats().liveArrays;
    const kernels = () => (stream.synchronize(), lx.stats().kernelsExecuted);
    const k0 = kernels();
    await generate(m, { ...params, maxTokens: at + 1 }, stream, { ahead: false });
    const k1 = kernels();
    const stopped = await runGeneration(m, { ...params, maxTokens: 16, stopIds: [end] }, stream);
    const k2 = kernels();
    expect(stopped).toEqual({ tokens: serial.tokens.slice(0, at), checksums: serial.checksums.slice(0, at), endToken: end, finishReason: "stop" });
    // The same steps, and one more recorded ahead from the end token and dropped unread.
    expect(k2 - k1).toBeGreaterThan(k1 - k0);
    const unused = Array.from({ length: cfg.vocab }, (_, t) => t).find((t) => !serial.tokens.includes(t))!;
    const full = await runGeneration(m, { ...params, stopIds: [unused], checksums: false }, stream);
    expect(full).toEqual({ tokens: serial.tokens, checksums: [], finishReason: "length" });
    stream.synchronize();
    expect(lx.stats().liveArrays).toBe(before);
    m.dispose();
  });

  test("q, k, v and gate, up stacked into one matmul each give the separate matmuls' logits bit for bit", () => {
    // One storage type per group, so loadLlamaWeights stacks them.
    const storage = { attn_q: "Q4_1", attn_k: "Q4_1", attn_v: "Q4_1", ffn_gate: "Q8_0", ffn_up: "Q8_0" } as const;
    const same = parseGguf(writeGguf({ metadata: metadata(), tensors: tensors(11, { storage }) }));
    const stacked = loadLlamaWeights(same, config);
    expect(stacked.has("blk.0.attn_qkv.weight") && stacked.has("blk.1.ffn_gate_up.weight")).toBe(true);
    expect(stacked.has("blk.0.attn_q.weight") || stacked.has("blk.0.ffn_up.weight")).toBe(false);
    expect(stacked.get("blk.0.attn_qkv.weight")!.shape).toEqual([(cfg.heads + 2 * cfg.kvHeads) * cfg.headDim, cfg.dim]);
    // The same tensors, one array each.
    const types: Record<string, lx.DType> = { Q4_0: "q4_0", Q4_1: "q4_1", Q8_0: "q8_0" };
    const separate = new Map<string, lx.LanesArray>();
    for (const [name, shape] of checkLlamaTensors(same, config)) {
      const t = same.tensors.get(name)!;
      separate.set(name, types[t.type] ? lx.arrayFromBytes(tensorBytes(same, name), shape, types[t.type]!) : lx.array(tensorFloat32(same, name), shape));
    }
    const logits = (weights: Map<string, lx.LanesArray>) => {
      const m = new LlamaModel("tiny", config, weights, { compiled: false });
      using stream = lx.newStream();
      const first = m.stepLogits(ids.slice(0, 7), undefined, stream);
      lx.eval(first.logits, ...first.state.caches);
      const out = [new Uint32Array(first.logits.toFloat32Array().buffer)];
      first.scope.disposeExcept(first.state.caches);
      const next = m.step([ids[7]!], first.state, stream);
      lx.eval(next.logits);
      out.push(new Uint32Array(next.logits.toFloat32Array().buffer));
      next.scope.disposeExcept([]);
      for (const c of [...first.state.caches, ...next.state.caches]) c.dispose();
      m.dispose();
      return out;
    };
    const [a, b] = [logits(stacked), logits(separate)];
    expect(a[0]!.length).toBe(7 * cfg.vocab);
    expect(a).toEqual(b);
  });

  test("loadTextModel reads the whole file: model, tokenizer and chat template", () => {
    const dir = mkdtempSync(join(tmpdir(), "lanes-llama-"));
    try {
      const path = join(dir, "tiny.gguf");
      writeFileSync(path, bytes);
      using tm = loadTextModel(path, "tiny", exact);
      expect(tm.contextLength).toBe(64);
      expect(tm.tokenizer.stopIds).toEqual([0, 2]);
      expect(tm.tokenizer.encode("<|im_start|>ab ba", { special: true })).toEqual([1, 39, 4, 3]);
      expect(tm.applyChatTemplate([{ role: "user", content: "hi" }])).toBe("<|im_start|>user\nhi<|im_end|>\n");
      using stream = lx.newStream();
      const s = tm.model.step(ids, undefined, stream);
      lx.eval(s.logits);
      expectClose(s.logits.toFloat32Array(), ref, [ids.length - 1]);
      s.scope.disposeExcept([]);
      for (const c of s.state.caches) c.dispose();
      expect(() => tm.model.step([cfg.vocab], undefined, stream)).toThrow(RangeError);
      expect(() => tm.model.step(new Array(65).fill(1), undefined, stream)).toThrow(/exceed the context length 64/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("files that don't fit the architecture get a GgufError naming the tensor", () => {
  function expectError(t: TensorToWrite[], meta: [string, EntryToWrite][], message: RegExp, tensor?: string): void {
    let caught: unknown;
    try {
      const f = parseGguf(writeGguf({ metadata: meta, tensors: t }));
      checkLlamaTensors(f, llamaConfig(f));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(GgufError);
    expect((caught as GgufError).message).toMatch(message);
    expect((caught as GgufError).tensor).toBe(tensor);
  }
  const good = tensors(8);
  const replace = (name: string, t: Partial<TensorToWrite>) => good.map((x) => (x.name === name ? { ...x, ...t } : x));

  test("a wrong shape, a missing tensor, an extra tensor", () => {
    expectError(replace("blk.1.attn_k.weight", { shape: [64, 64], data: randomTensorData("Q4_0", 64 * 64, rng(1)) }), metadata(), /"blk\.1\.attn_k\.weight" has shape \[64, 64\].*needs \[32, 64\]/, "blk.1.attn_k.weight");
    expectError(good.filter((t) => t.name !== "blk.0.ffn_up.weight"), metadata(), /"blk\.0\.ffn_up\.weight" is missing/, "blk.0.ffn_up.weight");
    expectError([...good, { name: "blk.0.attn_q.bias", type: "F32", shape: [64], data: new Uint8Array(256) }], metadata(), /"blk\.0\.attn_q\.bias" is not part of a plain llama/, "blk.0.attn_q.bias");
  });

  test("metadata that is not a plain llama", () => {
    expectError(good, metadata({ "general.architecture": { type: "string", value: "qwen2" } }), /only "llama" is supported/);
    expectError(good, metadata({ "llama.attention.head_count_kv": { type: "uint32", value: 3 } }), /4 query heads is not a multiple of 3 KV heads/);
    expectError(good, metadata({ "llama.expert_count": { type: "uint32", value: 8 } }), /mixture-of-experts/);
    expectError(good, metadata({ "llama.block_count": { type: "string", value: "2" } }), /llama\.block_count" is string, expected a number/);
    expectError(good, metadata().filter(([k]) => k !== "llama.feed_forward_length"), /llama\.feed_forward_length" is missing/);
  });
});
