// Continuous batching of decode steps (src/models/batch.ts) on a tiny GGUF Llama written by the
// test: sequences of different prompt lengths, prefilled together when they arrive together,
// join a batch and leave it at different steps, the slot count and the cache capacity change
// under them, and every sequence gets exactly the tokens and logits (the first one's from the
// joint prefill included) a serial single-sequence run gives it.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as lx from "../src/index.ts";
import { type BatchRow, DecodeBatch, isBatchDecoder, slotBucket } from "../src/models/batch.ts";
import { parseGguf } from "../src/models/gguf.ts";
import { llamaConfig, LlamaModel, type LlamaOptions, loadLlamaWeights } from "../src/models/llama.ts";
import type { DecoderState } from "../src/models/models.ts";
import { topIndices } from "../src/models/sampling.ts";
import { loadModel } from "../src/models/weights.ts";
import { rng } from "./support/reference.ts";
import { cfg, tinyLlamaGguf } from "./support/tiny-llama.ts";

const context = 256;
const file = parseGguf(tinyLlamaGguf(11, { "llama.context_length": { type: "uint32", value: context } }, { outputHead: true }));
const config = llamaConfig(file);

function model(opts: LlamaOptions & { dequantize?: boolean } = {}): LlamaModel {
  return new LlamaModel("tiny", config, loadLlamaWeights(file, config, opts), opts);
}

const random = rng(99);
const prompt = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(random() * (cfg.vocab - 3)));

// Who joins when (the step index of the batch), with how long a prompt, and how many tokens it
// generates: the slot count goes 1 → 3 → 5 → 2 ..., and prompts of 70 and 40 + 30 tokens make
// the capacity grow from 64 to 128.
// Prompts joining at the same step are prefilled together (right-padded) and join together:
// two at step 0 (each written into its slot), three at step 9 (gathered in one pass).
const schedule = [
  { prompt: prompt(3), join: 0, tokens: 20 },
  { prompt: prompt(11), join: 0, tokens: 8 },
  { prompt: prompt(40), join: 2, tokens: 30 },
  { prompt: prompt(70), join: 5, tokens: 12 },
  { prompt: prompt(5), join: 9, tokens: 25 },
  { prompt: prompt(1), join: 9, tokens: 3 },
  { prompt: prompt(8), join: 9, tokens: 14 },
  { prompt: prompt(17), join: 31, tokens: 6 },
];

/** Greedy decoding of one sequence alone: its tokens and the logits that chose each. */
function serial(m: LlamaModel, tokens: number[], count: number, stream: lx.Stream): { tokens: number[]; logits: Float32Array[] } {
  const out = { tokens: [] as number[], logits: [] as Float32Array[] };
  let state: DecoderState | undefined;
  let input = tokens;
  for (let i = 0; i < count; i++) {
    const s = m.step(input, state, stream);
    lx.eval(s.logits, ...s.state.caches);
    const logits = s.logits.toFloat32Array();
    s.scope.disposeExcept(s.state.caches);
    for (const c of state?.caches ?? []) c.dispose();
    state = s.state;
    const t = topIndices(logits, 1)[0]!;
    out.tokens.push(t);
    out.logits.push(logits);
    input = [t];
  }
  for (const c of state?.caches ?? []) c.dispose();
  return out;
}

/** The same sequences decoded together by one DecodeBatch, following `schedule`. */
async function batched(m: LlamaModel, stream: lx.Stream, ahead = false) {
  using batch = new DecodeBatch(m, stream);
  const out = schedule.map(() => ({ tokens: [] as number[], logits: [] as Float32Array[] }));
  const rows = new Map<BatchRow, number>(); // row -> schedule index
  const next = new Map<BatchRow, number>();
  const seen = { slots: new Set<number>(), capacities: new Set<number>() };
  for (let step = 0; rows.size > 0 || schedule.some((s) => s.join >= step); step++) {
    const joining = [...schedule.entries()].filter(([, s]) => s.join === step);
    if (joining.length > 0) {
      // A prompt that is prefilled with the others but not picked is dropped by joinRows.
      const prompts = [...joining.map(([, s]) => s.prompt), prompt(6)];
      const p = m.prefillBatch(prompts, stream);
      lx.eval(p.logits, ...p.caches);
      const all = p.logits.toFloat32Array();
      p.scope.disposeExcept(p.caches);
      const picks = joining.map(([, s], j) => ({ row: j, pos: s.prompt.length }));
      const joined = batch.joinRows(p.caches, picks);
      joining.forEach(([i], j) => {
        const logits = all.slice(j * cfg.vocab, (j + 1) * cfg.vocab);
        const t = topIndices(logits, 1)[0]!;
        out[i]!.tokens.push(t);
        out[i]!.logits.push(logits);
        expect(joined[j]!.pos).toBe(schedule[i]!.prompt.length);
        rows.set(joined[j]!, i);
        next.set(joined[j]!, t);
      });
    }
    if (rows.size === 0) continue;
    const outputs = await batch.step(next, { logits: true, ahead });
    seen.slots.add(batch.slots);
    seen.capacities.add(batch.capacity);
    for (const [row, i] of [...rows]) {
      const o = outputs.get(row)!;
      // The greedy token computed with the step is the first largest logit, as the serial run picks it.
      expect(o.greedy).toBe(topIndices(o.logits!, 1)[0]!);
      out[i]!.tokens.push(o.greedy);
      out[i]!.logits.push(o.logits!.slice());
      next.set(row, o.greedy);
      if (out[i]!.tokens.length === schedule[i]!.tokens) {
        batch.leave(row);
        rows.delete(row);
        next.delete(row);
      }
    }
  }
  return { out, seen, ahead: { ...batch.ahead } };
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

// On the CPU every row of every kernel is computed alone, so a batched step gives the serial
// run's logits bit for bit. A GPU backend picks its kernels by the number of rows: cuBLAS may
// choose another algorithm for a prefill of more rows, and a quantized matmul of up to 16 rows
// runs the dp4a matvec while more rows take cuBLAS on dequantized weights (activations rounded
// to 8 bits the same way, but summed in another order, and Q4_1's scaled sums not kept at
// float16). There the logits must agree to float32 rounding with float weights, and to 2% of
// their largest magnitude with quantized ones (an H200 gave 0.5%), where a near-tie may then
// pick the other token (the tiny random model has many).
const bitwise = () => lx.backendName() === "cpu";
const bound = (want: Float32Array, quantized: boolean) => (quantized ? 2e-2 : 1e-4) * want.reduce((m, w) => Math.max(m, Math.abs(w)), 0);

function sameLogits(got: Float32Array, want: Float32Array, quantized: boolean): true | string {
  if (bitwise()) return bits(got).equals(bits(want)) || "not bit for bit";
  let worst = 0;
  want.forEach((w, i) => {
    worst = Math.max(worst, Math.abs(got[i]! - w));
  });
  const b = bound(want, quantized);
  return worst <= b || `worst |difference| ${worst} over the bound ${b}`;
}

// Whether `a` and `b` are equally good picks from `logits` within the quantized bound.
function nearTie(logits: Float32Array, a: number, b: number): boolean {
  return Math.abs(logits[a]! - logits[b]!) <= bound(logits, true);
}

describe("DecodeBatch on a tiny Llama", () => {
  test("the Llama decodes in batches, the toy decoders do not; slot buckets are exact to 8, then about 1.5× apart", () => {
    const m = model();
    const toy = loadModel("transformer");
    expect(isBatchDecoder(m)).toBe(true);
    expect(isBatchDecoder(toy)).toBe(false);
    expect([1, 2, 5, 8, 9, 13, 17, 33, 64, 65].map(slotBucket)).toEqual([1, 2, 5, 8, 12, 16, 24, 48, 64, 96]);
    m.dispose();
    toy.dispose();
  });

  for (const [name, opts] of [
    ["float32 weights and cache", { dequantize: true, kvCache: "float32" }],
    ["quantized weights, float16 cache (the default)", {}],
  ] as const) {
    test(`sequences joining and leaving at different steps get the serial run's tokens and logits (bit for bit on the CPU) (${name})`, async () => {
      using stream = lx.newStream();
      const m = model(opts);
      try {
        const want = schedule.map((s) => serial(m, s.prompt, s.tokens, stream));
        const plain = await batched(m, stream);
        // Each step's next recorded ahead from its greedy tokens: used wherever no row joined. A
        // step taken ahead keeps the slot count a leaving row would have shrunk, so on a GPU it
        // may run other kernels than the plain run: both are held to the serial run alike.
        const ahead = await batched(m, stream, true);
        expect(plain.ahead).toEqual({ used: 0, dropped: 0 });
        expect(ahead.ahead.used).toBeGreaterThan(20);
        expect(ahead.ahead.dropped).toBeGreaterThan(0);
        if (bitwise()) expect(ahead.out).toEqual(plain.out);
        const { seen } = plain;
        // The batch really changed shape under the sequences.
        expect(Math.max(...seen.slots)).toBeGreaterThanOrEqual(4);
        expect(Math.min(...seen.slots)).toBe(1);
        expect([...seen.capacities].sort((a, b) => a - b)).toEqual([64, 128]);
        const quantized = !("dequantize" in opts);
        for (const { out } of [plain, ahead]) out.forEach((got, i) => {
          const w = want[i]!;
          expect({ i, length: got.tokens.length }).toEqual({ i, length: w.tokens.length });
          for (let j = 0; j < w.tokens.length; j++) {
            expect({ i, j, same: sameLogits(got.logits[j]!, w.logits[j]!, quantized) }).toEqual({ i, j, same: true });
            if (got.tokens[j] === w.tokens[j]) continue;
            // Another token only where those logits allow it: on a GPU with quantized weights, at
            // a near-tie of the serial run (its two candidates within the bound). From there the
            // sequences differ, so the rest is not compared.
            expect({ i, j, nearTie: !bitwise() && quantized && nearTie(w.logits[j]!, w.tokens[j]!, got.tokens[j]!) }).toEqual({ i, j, nearTie: true });
            break;
          }
        });
      } finally {
        m.dispose();
      }
    });
  }

  test("a step asked for other tokens than the greedy ones drops the step recorded ahead, and equals a batch that never records ahead", async () => {
    using stream = lx.newStream();
    const m = model();
    try {
      const prompts = [prompt(5), prompt(9)];
      const run = async (ahead: boolean) => {
        using batch = new DecodeBatch(m, stream);
        const rows = prompts.map((p) => {
          const s = m.step(p, undefined, stream);
          s.scope.disposeExcept(s.state.caches);
          return batch.join(s.state);
        });
        const next = new Map(rows.map((r, i): [BatchRow, number] => [r, 3 + i]));
        const seen: number[][] = [];
        for (let step = 0; step < 12; step++) {
          const outputs = await batch.step(next, { logits: true, ahead });
          seen.push([...outputs.values()].flatMap((o) => [o.greedy, ...o.logits!]));
          // Every third step row 0 is given a token of the caller's choosing instead of its greedy one.
          rows.forEach((r) => next.set(r, outputs.get(r)!.greedy));
          if (step % 3 === 1) next.set(rows[0]!, (outputs.get(rows[0]!)!.greedy + 7) % cfg.vocab);
        }
        return { seen, counts: { ...batch.ahead } };
      };
      const plain = await run(false), ahead = await run(true);
      expect(ahead.seen).toEqual(plain.seen);
      expect(ahead.counts).toEqual({ used: 7, dropped: 4 });
    } finally {
      m.dispose();
    }
  });

  test("bad use is refused with a clear error and leaves the batch usable", async () => {
    using stream = lx.newStream();
    const m = model();
    try {
      using batch = new DecodeBatch(m, stream);
      const p = m.step(prompt(4), undefined, stream);
      p.scope.disposeExcept(p.state.caches);
      const row = batch.join(p.state);
      await expect(batch.step(new Map())).rejects.toThrow(/one token for each of the batch's 1 rows/);
      await expect(batch.step(new Map([[row, cfg.vocab]]))).rejects.toThrow(/token id 40 is outside/);
      const ok = await batch.step(new Map([[row, 5]]));
      expect(ok.get(row)!.logits).toBeUndefined();
      expect(row.pos).toBe(5);
      batch.leave(row);
      expect(() => batch.leave(row)).toThrow(/not in this batch/);
      expect(batch.size).toBe(0);
      expect(() => batch.join({ pos: 3, caches: [] })).toThrow(/needs 4 caches/);
    } finally {
      m.dispose();
    }
  });
});

describe("a batched step that fails on the device (child process with LANES_FAULT_INJECTION=1)", () => {
  const proc = Bun.spawnSync([process.execPath, join(import.meta.dir, "support", "batch-faults.ts")], {
    env: { ...process.env, LANES_FAULT_INJECTION: "1" },
    timeout: 60_000,
  });
  const out = proc.stdout.toString().trim().split("\n").pop() ?? "{}";
  const r = JSON.parse(out.startsWith("{") ? out : "{}") as Record<string, unknown>;

  for (const mode of ["plain", "ahead"] as const)
    test(`the step rejects with the DeviceError and the batch drops every row; new sequences then decode as serial runs do (${mode})`, () => {
      expect(proc.exitCode).toBe(0);
      const m = r[mode] as Record<string, unknown>;
      expect(m.failed).toMatchObject({ ok: false, name: "DeviceError" });
      expect((m.failed as { message: string }).message).toMatch(/injected fault/);
      expect(m.sizeAfterFailure).toBe(0);
      expect(m.leaveAfterFailure).toMatch(/not in this batch/);
      expect(m.afterEqualsSerial).toBe(true);
      expect(m.sizeAfter).toBe(2);
      // Ahead: the failing epoch is the step the next call records ahead, so the call after it
      // fails; two steps taken ahead before the failure, four of the five after it.
      expect(m.calls).toBe(mode === "ahead" ? 2 : 1);
      expect(m.ahead).toEqual(mode === "ahead" ? { used: 6, dropped: 0 } : { used: 0, dropped: 0 });
    });
});
