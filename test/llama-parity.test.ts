// SmolLM2-135M-Instruct's forward pass, op by op, against llama.cpp's own intermediate tensors.
//
// test/support/llama-dump.c runs llama.cpp (node-llama-cpp's prebuilt libraries, the reference of
// test/llm.test.ts, same GGUF file and settings) on the first greedy chat prompt of
// test/support/llama-cpp.ts as one batch, then 2 greedy decode steps, and writes every tensor its
// graph computes. For each of those 3 calls and each of the 30 layers, every op of lanes' forward
// pass is given llama.cpp's inputs to that op and its output is compared with llama.cpp's: the
// token embedding (take of the Q8_0 table), rmsNorm with its weight (attention, FFN and output
// norms), quantizedMatmul for q, k, v, o, gate, up, down and the tied Q8_0 head, rope (GGUF base,
// traditional pairs, offset = position: as a number and as the per-row int32 array that compiled
// decode passes), scaledDotProductAttention (float32 q over the float16 KV cache rows llama.cpp's
// flash attention read), silu(gate) * up (eager, and compiled, where it fuses), and the two
// residual adds. In the last layer of the prompt call llama.cpp keeps only the last row after
// the attention projection; each comparison uses the rows llama.cpp's tensors have. A second run
// of 80 arbitrary tokens checks attention alone on every layer: from 64 query rows llama.cpp
// takes its tiled flash attention (q kept float32, keys in tiles of 64, the value sum in float32).
//
// What equality is required depends on the kernels llama.cpp ran, which llama-dump reports (the
// CPU backend library llama.cpp picked for this CPU, its features, the weights it repacked):
// - its AMX kernels (AMX_INT8, and every compared weight repacked for AMX): lanes' CPU kernels
//   are written to round as this configuration does (top comments of cpu/quant.cpp and
//   cpu/attention.hpp), so every op must be bitwise equal.
// - another AVX-512 build (e.g. libggml-cpu-zen4.so on an AMD EPYC): attention, silu and rope
//   are the same code as in the AMX build (lanes' attention follows ggml's flash attention as
//   its AVX-512 builds compile it, silu their vector expf, rope their fma-contracted rotation;
//   bitwise on all six AVX-512 builds here), so every op but the matmuls must be bitwise equal. Its quantized dot products sum the blocks in another order,
//   so each matmul element must be within 1e-5 of the largest |value| of its output row
//   (llama.cpp's tensor, one token's row): summation order, never a quantization step.
// - its AVX2 build (libggml-cpu-haswell.so, on a CPU without AVX-512): lanes follows it there
//   (cpu/cpu_features.hpp, llama_build: SiLU's vector exp in its AVX2 form, the float16 dot of
//   the one-row attention in 32 lanes, the tiled attention's weights summed in 8 lanes with that
//   exp), and its matmuls sum in lane order as lanes does without
//   AMX, so every op must be bitwise equal; on a CPU with AVX-512 a child process checks this
//   build against lanes told to follow it (LANES_CPU_LLAMA_BUILD=avx2).
// - older builds: the embedding (dequantize_row_q8_0 in ggml-base: one float multiply per
//   element), the residual adds (one float add) and rmsNorm (a scalar loop summing x * x in double
//   in order, 1 / sqrtf, float multiplies by the scale and the weight) do not depend on the SIMD
//   variant and must be bitwise equal. Matmuls, rope and silu must be within 1e-5 of the row's
//   largest |value|; attention within 2^-9 of it (two float16 ulps: llama.cpp accumulates V in
//   float16, so another score rounding can move an output by an ulp). Builds without AVX (x64,
//   sse42) quantize activations with ggml's scalar code, which multiplies by 1 / d instead of
//   127 / max and rounds halves away from zero, so an activation can land one quantization step
//   away: there matmuls get 1e-2 of the row's largest |value|.
// The margins were measured by forcing each of node-llama-cpp's CPU builds on an AMX machine
// (LANES_LLAMA_CPU_VARIANT=haswell etc. makes llama-dump load that one): largest matmul difference
// 1.6e-6 with AVX, 4.1e-3 without; attention 6.0e-4 on non-AVX-512 builds; rope and silu 2.1e-7.
// The tiled attention of builds lanes does not follow sums a tile's weights in 8 or 4 lanes and
// without FMA rounds its products: there it gets 1e-5 of the row's largest |value| (measured:
// 3.8e-7 on the haswell build before lanes followed it, 1.8e-6 on sse42; bitwise on skylakex,
// zen4 and, followed, haswell).
// Not covered: decode over 512 cached keys or more (llama.cpp's split-KV flash attention);
// prefill/decode at other positions than these. Runs only on the CPU backend, on Linux (node-llama-cpp's Linux
// binaries; llama-dump uses dl_iterate_phdr).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as lx from "../src/index.ts";
import { type GgufFile, readGguf, tensorBytes, tensorFloat32 } from "../src/models/gguf.ts";
import { type LlamaConfig, llamaConfig } from "../src/models/llama.ts";
import { defaultModelPath, loadTextModel } from "../src/models/text-model.ts";
import { lanesLlamaBuild } from "./support/llama-builds.ts";
import { greedyPrompts } from "./support/llama-cpp.ts";
import { DumpCall, type DumpedTensor, type LlamaDump, runLlamaDump } from "./support/llama-dump.ts";

const steps = 2;
const runs = process.platform === "linux" && lx.backendName() === "cpu";

type LA = lx.LanesArray;
let dump: LlamaDump;
// 80 arbitrary tokens in one batch: llama.cpp's tiled flash attention (64 query rows or more),
// over a whole key tile and part of a second.
const longPrompt = Array.from({ length: 80 }, (_, i) => 100 + ((i * 37) % 5000));
let longDump: LlamaDump;
let file: GgufFile;
let cfg: LlamaConfig;
let prompt: number[];
const weights = new Map<string, LA>();

function weight(name: string): LA {
  let w = weights.get(name);
  if (!w) {
    const t = file.tensors.get(name);
    if (!t) throw new Error(`no tensor ${name}`);
    const quant: Record<string, lx.DType> = { Q4_0: "q4_0", Q4_1: "q4_1", Q8_0: "q8_0" };
    const dtype = quant[t.type];
    w = dtype ? lx.arrayFromBytes(tensorBytes(file, name), [...t.shape], dtype) : lx.array(tensorFloat32(file, name), [...t.shape]);
    weights.set(name, w);
  }
  return w;
}

beforeAll(() => {
  if (!runs) return;
  const path = defaultModelPath();
  const model = loadTextModel(path);
  try {
    prompt = model.tokenizer.encode(model.applyChatTemplate([{ role: "user", content: greedyPrompts[0]! }], { addGenerationPrompt: true }), { special: true });
  } finally {
    model.dispose();
  }
  file = readGguf(path);
  cfg = llamaConfig(file);
  for (const name of file.tensors.keys()) weight(name);
  const opts = { cpuVariant: process.env.LANES_LLAMA_CPU_VARIANT || undefined, noRepack: process.env.LANES_LLAMA_NO_REPACK === "1" };
  dump = runLlamaDump(path, prompt, steps, opts);
  longDump = runLlamaDump(path, longPrompt, 0, opts);
}, 120_000);

afterAll(() => {
  dump?.dispose();
  longDump?.dispose();
  for (const w of weights.values()) w.dispose();
});

interface Outcome {
  op: string;
  where: string;
  differ: number;
  total: number;
  /** max |got - want| / (largest |want| of the row). */
  maxRowError: number;
  /** The largest maxRowError allowed (0: bitwise equality required). */
  allowed: number;
}

/** Compares `got` with llama.cpp's `want` (rows of `want.ne[0]`). */
function compare(op: string, where: string, got: LA, want: DumpedTensor, allowed: number): Outcome {
  const g = got.toFloat32Array();
  const w = want.data;
  if (g.length !== w.length) throw new Error(`${where} ${op}: lanes gave ${g.length} elements, llama.cpp ${w.length}`);
  const row = want.ne[0];
  let differ = 0;
  let maxRowError = 0;
  for (let r = 0; r < w.length; r += row) {
    let scale = 0;
    for (let i = r; i < r + row; i++) scale = Math.max(scale, Math.abs(w[i]!));
    for (let i = r; i < r + row; i++) {
      if (Object.is(g[i], w[i])) continue;
      differ++;
      const e = Math.abs(g[i]! - w[i]!) / (scale || 1);
      maxRowError = Math.max(maxRowError, Number.isNaN(e) ? Infinity : e);
    }
  }
  return { op, where, differ, total: w.length, maxRowError, allowed };
}

const asRows = (t: DumpedTensor, cols: number): LA => lx.array(t.data, [t.data.length / cols, cols]);
/** The last `rows` rows of a [n, cols] tensor (llama.cpp's get_rows of the output rows). */
const lastRows = (t: DumpedTensor, cols: number, rows: number): LA => lx.array(t.data.subarray(t.data.length - rows * cols), [rows, cols]);
const rowsOf = (t: DumpedTensor) => t.ne[1] * t.ne[2] * t.ne[3];

/**
 * lanes' attention of layer `l` for a call of T tokens at position `pos`: llama.cpp's roped q
 * (float32) over the float16 cache rows its flash attention read (the view is padded past the
 * keys; the first pos + T rows are the keys), as llama.cpp's [T, heads * headDim].
 */
function attention(call: DumpCall, l: number, T: number, pos: number): LA {
  const hd = cfg.headDim;
  const q = call.get(`_ROPE_Qcur-${l}.bin`);
  const keys = pos + T;
  const cache = (kind: "k" | "v") => {
    const view = call.read(call.named(`_VIEW_cache_${kind}_l${l}__view_.bin`).at(-1)!);
    return lx.transpose(lx.reshape(lx.array(view.data.subarray(0, keys * cfg.kvHeads * hd), [keys, cfg.kvHeads, hd], "float16"), [1, keys, cfg.kvHeads, hd]), [0, 2, 1, 3]);
  };
  const qa = lx.transpose(lx.reshape(lx.array(q.data, [T, cfg.heads, hd]), [1, T, cfg.heads, hd]), [0, 2, 1, 3]);
  const a = lx.scaledDotProductAttention(qa, cache("k"), cache("v"), { causal: true, scale: cfg.attentionScale, keyLength: keys });
  return lx.reshape(lx.transpose(a, [0, 2, 1, 3]), [T, cfg.heads * hd]);
}

describe.skipIf(!runs)("SmolLM2-135M-Instruct op by op against llama.cpp's tensors", () => {
  test("every op of every layer, for the prompt and 2 decode steps, gives llama.cpp's output from llama.cpp's inputs", () => {
    // Which kernels llama.cpp ran (see the top of this file), and what each op must meet:
    // 0 for bitwise, else the largest difference allowed relative to the row's largest |value|.
    const amxWeights = new Set(dump.amxRepacked);
    const matmulWeights = [...Array(cfg.layers).keys()].flatMap((l) => ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"].map((n) => `blk.${l}.${n}.weight`));
    matmulWeights.push(cfg.tiedHead ? "token_embd.weight" : "output.weight");
    const has = (feature: string) => dump.features[feature] === "1";
    const kernels = has("AMX_INT8") && matmulWeights.every((n) => amxWeights.has(n)) ? "amx" : has("AVX512") ? "avx512" : has("AVX2") && has("FMA") && has("F16C") ? "avx2" : "other";
    // lanes' SiLU and one-row float16 attention follow one build's rounding (LANES_CPU_LLAMA_BUILD,
    // else the build llama.cpp loads on this CPU); where it is the one llama.cpp ran, they must be bitwise equal.
    const followed = kernels === "other" ? false : (kernels === "avx2" ? "avx2" : "avx512") === lanesLlamaBuild();
    // llama.cpp's quantized matmul sums in block order with its AMX kernels and in lane order with
    // ggml_vec_dot (any build with AVX2 and FMA); lanes takes block order on CPUs with AMX unless
    // LANES_CPU_QUANT_SUM says otherwise (cpu/quant.cpp). Where the two orders agree, the
    // matmuls must be bitwise equal too.
    const llamaOrder = kernels === "amx" ? "block" : has("AVX2") && has("FMA") ? "lane" : "other";
    const lanesOrder = process.env.LANES_CPU_QUANT_SUM || (has("AMX_INT8") ? "block" : "lane");
    const sameOrder = llamaOrder === lanesOrder;
    const allowed = (op: string): number => {
      if ((kernels === "amx" && followed) || /^(embedding|rmsNorm|add )/.test(op)) return 0;
      if (op.startsWith("matmul")) return sameOrder ? 0 : has("AVX") ? 1e-5 : 1e-2;
      if (followed) return 0;
      return op === "attention" ? 2 ** -9 : 1e-5;
    };
    const kernelsText = {
      amx: "its AMX kernels: every op bitwise",
      avx512: `an AVX-512 build without its AMX kernels: every op bitwise${sameOrder ? "" : " but the matmuls"}`,
      avx2: `its AVX2 build${followed ? "" : ", lanes following the AVX-512 builds"}: ${followed ? "every op" : `embedding, rmsNorm and adds${sameOrder ? " and matmuls" : ""}`} bitwise${followed && !sameOrder ? " but the matmuls" : ""}`,
      other: `a pre-AVX2 build: embedding, rmsNorm and adds${sameOrder ? " and matmuls" : ""} bitwise`,
    }[kernels];

    const outcomes: Outcome[] = [];
    const fusedSwiglu = lx.compile((g: LA, u: LA) => lx.multiply(lx.silu(g), u));
    const D = cfg.dim;
    const hd = cfg.headDim;
    for (let c = 0; c <= steps; c++) {
      const call = new DumpCall(`${dump.dir}/${c}`);
      const ids = c === 0 ? prompt : [dump.tokens[c - 1]!];
      const pos = c === 0 ? 0 : prompt.length + c - 1;
      const check = (op: string, where: string, got: LA, want: DumpedTensor) => outcomes.push(compare(op, where, got, want, allowed(op)));
      const at = `call ${c}`;

      const embd = call.get("_GET_ROWS_embd.bin");
      lx.tidy(() => {
        check("embedding", at, lx.take(weight("token_embd.weight"), ids), embd);
      });

      // Each layer in a tidy scope: its arrays are freed when it ends (the weights were made before).
      for (let l = 0; l < cfg.layers; l++) lx.tidy(() => {
        const where = `${at} layer ${l}`;
        const p = `blk.${l}.`;
        const input = l === 0 ? embd : call.get(`_ADD_l_out-${l - 1}.bin`);
        const T = rowsOf(input);
        const attnNorm = call.get(`_MUL_attn_norm-${l}.bin`);
        check("rmsNorm attn", where, lx.rmsNorm(asRows(input, D), weight(`${p}attn_norm.weight`), cfg.normEps), attnNorm);

        const h = asRows(attnNorm, D);
        for (const [op, w, out] of [["matmul q", "attn_q", "Qcur"], ["matmul k", "attn_k", "Kcur"], ["matmul v", "attn_v", "Vcur"]] as const)
          check(op, where, lx.quantizedMatmul(h, weight(`${p}${w}.weight`)), call.get(`_MUL_MAT_${out}-${l}.bin`));

        // rope on [1, heads, T, headDim]; llama.cpp's layout is [T, heads, headDim].
        for (const [name, H] of [["Qcur", cfg.heads], ["Kcur", cfg.kvHeads]] as const) {
          const before = call.get(`_MUL_MAT_${name}-${l}.bin`);
          const after = call.get(`_ROPE_${name}-${l}.bin`);
          const x = lx.transpose(lx.reshape(lx.array(before.data, [T, H * hd]), [1, T, H, hd]), [0, 2, 1, 3]);
          const perRow = lx.array(Int32Array.of(pos));
          for (const [form, offset] of [["", pos], [" (int32 offset)", perRow]] as const) {
            const r = lx.rope(x, cfg.ropeDims, { base: cfg.ropeBase, offset, traditional: true });
            check(`rope ${name === "Qcur" ? "q" : "k"}${form}`, where, lx.reshape(lx.transpose(r, [0, 2, 1, 3]), [T, H * hd]), after);
          }
        }

        check("attention", where, attention(call, l, T, pos), call.get(`_RESHAPE_kqv_out-${l}.bin`));

        const kqv = call.get(`_RESHAPE_kqv_out-${l}.bin`);
        const attnOut = call.get(`_MUL_MAT_attn_out-${l}.bin`);
        check("matmul o", where, lx.quantizedMatmul(asRows(kqv, cfg.heads * hd), weight(`${p}attn_output.weight`)), attnOut);

        const ffnInp = call.get(`_ADD_ffn_inp-${l}.bin`);
        const R = rowsOf(ffnInp); // T, or 1 in the prompt call's last layer
        check("add attention residual", where, lx.add(lastRows(input, D, R), lastRows(attnOut, D, R)), ffnInp);

        const ffnNorm = call.get(`_MUL_ffn_norm-${l}.bin`);
        check("rmsNorm ffn", where, lx.rmsNorm(asRows(ffnInp, D), weight(`${p}ffn_norm.weight`), cfg.normEps), ffnNorm);

        const fn = asRows(ffnNorm, D);
        const gate = call.get(`_MUL_MAT_ffn_gate-${l}.bin`);
        const up = call.get(`_MUL_MAT_ffn_up-${l}.bin`);
        check("matmul gate", where, lx.quantizedMatmul(fn, weight(`${p}ffn_gate.weight`)), gate);
        check("matmul up", where, lx.quantizedMatmul(fn, weight(`${p}ffn_up.weight`)), up);

        const swiglu = call.get(`_SWIGLU_ffn_swiglu-${l}.bin`);
        const G = asRows(gate, cfg.hidden);
        const U = asRows(up, cfg.hidden);
        check("silu(gate) * up", where, lx.multiply(lx.silu(G), U), swiglu);
        check("silu(gate) * up, compiled", where, fusedSwiglu(G, U) as LA, swiglu);

        const ffnOut = call.get(`_MUL_MAT_ffn_out-${l}.bin`);
        check("matmul down", where, lx.quantizedMatmul(asRows(swiglu, cfg.hidden), weight(`${p}ffn_down.weight`)), ffnOut);
        check("add ffn residual", where, lx.add(asRows(ffnInp, D), asRows(ffnOut, D)), call.get(`_ADD_l_out-${l}.bin`));
      });

      lx.tidy(() => {
        const last = call.get(`_ADD_l_out-${cfg.layers - 1}.bin`);
        const resultNorm = call.get("_MUL_result_norm.bin");
        check("rmsNorm output", at, lx.rmsNorm(asRows(last, D), weight("output_norm.weight"), cfg.normEps), resultNorm);
        check("matmul head", at, lx.quantizedMatmul(asRows(resultNorm, D), weight(cfg.tiedHead ? "token_embd.weight" : "output.weight")), call.get("_MUL_MAT_result_output.bin"));
      });
    }

    // One line per op: how many comparisons, how many bitwise equal, the largest error.
    const ops = new Map<string, Outcome[]>();
    for (const o of outcomes) ops.set(o.op, [...(ops.get(o.op) ?? []), o]);
    const requirement = (allowed: number) => (allowed === 0 ? "bitwise required" : `allowed ${allowed.toExponential(1)}`);
    const summary = [...ops].map(([op, list]) => {
      const equal = list.filter((o) => o.differ === 0).length;
      const worst = Math.max(...list.map((o) => o.maxRowError));
      return `  ${op.padEnd(28)} ${String(equal).padStart(3)}/${list.length} bitwise equal${worst > 0 ? `, largest difference ${worst.toExponential(2)} of the row's max` : ""} (${requirement(list[0]!.allowed)})`;
    });
    console.log(`llama.cpp ran ${dump.cpuBackend.split("/").at(-1)}, ${kernelsText} (AMX_INT8 ${dump.features.AMX_INT8 ?? "absent"}, ${dump.amxRepacked.length} weights repacked for AMX)\n${summary.join("\n")}`);

    const failures = outcomes
      .filter((o) => (o.allowed === 0 ? o.differ > 0 : !(o.maxRowError <= o.allowed)))
      .map((o) => `${o.where}, ${o.op}: ${o.differ}/${o.total} elements differ, largest difference ${o.maxRowError.toExponential(2)} of the row's max (${requirement(o.allowed)})`);
    expect(outcomes.length).toBe((steps + 1) * (cfg.layers * 18 + 3));
    // The first 40 failures name the call, layer and op; the count says how many there were.
    expect({ failures: failures.length, first: failures.slice(0, 40) }).toEqual({ failures: 0, first: [] });
  }, 120_000);
});

describe.skipIf(!runs)("SmolLM2-135M-Instruct's attention on an 80-token prompt (llama.cpp's tiled flash attention)", () => {
  test("attention of every layer gives llama.cpp's output from llama.cpp's inputs", () => {
    // Its tiled path is the same code on every AVX-512 build; its AVX2 build sums each tile's
    // weights in 8 lanes with its own exp, which lanes follows where it follows that build
    // (llama_build); builds without AVX2 sum in 4 lanes and (without FMA) round the products.
    const has = (feature: string) => longDump.features[feature] === "1";
    const build = has("AVX512") ? "avx512" : has("AVX2") && has("FMA") && has("F16C") ? "avx2" : "other";
    const allowed = build === lanesLlamaBuild() ? 0 : 1e-5;
    const call = new DumpCall(`${longDump.dir}/0`);
    const outcomes: Outcome[] = [];
    for (let l = 0; l < cfg.layers; l++)
      lx.tidy(() => outcomes.push(compare("attention", `layer ${l}`, attention(call, l, longPrompt.length, 0), call.get(`_RESHAPE_kqv_out-${l}.bin`), allowed)));
    const equal = outcomes.filter((o) => o.differ === 0).length;
    const worst = Math.max(...outcomes.map((o) => o.maxRowError));
    console.log(`80-token prompt, llama.cpp ran ${longDump.cpuBackend.split("/").at(-1)}: attention ${equal}/${cfg.layers} layers bitwise equal${worst > 0 ? `, largest difference ${worst.toExponential(2)} of the row's max` : ""}`);
    const failures = outcomes
      .filter((o) => (allowed === 0 ? o.differ > 0 : !(o.maxRowError <= allowed)))
      .map((o) => `${o.where}: ${o.differ}/${o.total} elements differ, largest difference ${o.maxRowError.toExponential(2)} of the row's max`);
    expect(failures).toEqual([]);
  });
});

// On a CPU with AVX-512, lanes' rounding for llama.cpp's AVX2 build is checked too: llama.cpp's
// haswell build against lanes told to follow it, in a child process (lanes reads
// LANES_CPU_LLAMA_BUILD once per process), lane order for the matmuls as ggml_vec_dot sums.
describe.skipIf(!runs || lanesLlamaBuild() !== "avx512" || !!process.env.LANES_LLAMA_CPU_VARIANT)("the same with llama.cpp's AVX2 build (haswell) and lanes following it", () => {
  test("every op bitwise equal", () => {
    const child = Bun.spawnSync([process.execPath, "test", import.meta.path, "-t", "every op of every layer"], {
      env: { ...process.env, LANES_LLAMA_CPU_VARIANT: "haswell", LANES_CPU_LLAMA_BUILD: "avx2", LANES_CPU_QUANT_SUM: "lane", LANES_LLAMA_NO_REPACK: "1" },
      stdout: "pipe",
      stderr: "pipe",
      timeout: 120_000,
    });
    const output = child.stdout.toString() + child.stderr.toString();
    expect(output).toContain("libggml-cpu-haswell");
    expect(output).toContain("its AVX2 build: every op bitwise");
    expect(child.exitCode, output).toBe(0);
  }, 120_000);
});

// On a CPU with AMX, the other summation order is checked too: llama.cpp without weight repacking
// (ggml_vec_dot, as on CPUs without AMX) against lanes forced to lane order, in a child process
// (lanes reads LANES_CPU_QUANT_SUM once per process).
describe.skipIf(!runs || process.env.LANES_LLAMA_NO_REPACK === "1")("the same with llama.cpp's ggml_vec_dot matmuls (no AMX repacking) and lanes' lane order", () => {
  test("every op bitwise equal, matmuls included", () => {
    const child = Bun.spawnSync([process.execPath, "test", import.meta.path], {
      env: { ...process.env, LANES_CPU_QUANT_SUM: "lane", LANES_LLAMA_NO_REPACK: "1", LANES_LLAMA_CPU_VARIANT: "" },
      stdout: "pipe",
      stderr: "pipe",
      timeout: 120_000,
    });
    const output = child.stdout.toString() + child.stderr.toString();
    expect(output).toContain("every op of every layer");
    expect(child.exitCode, output).toBe(0);
    // The child compared every matmul bitwise (llama.cpp ran no AMX kernels, lanes lane order).
    expect(output).toMatch(/matmul q\s+\d+\/\d+ bitwise equal \(bitwise required\)/);
  }, 120_000);
});
