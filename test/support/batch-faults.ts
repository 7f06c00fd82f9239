// A batched decode step that fails on the device, run in a child process started with
// LANES_FAULT_INJECTION=1: the step rejects, the batch drops every row, and sequences that join
// afterwards decode as serial runs do. Prints one JSON object with what it observed.
import * as lx from "../../src/index.ts";
import { type BatchRow, DecodeBatch } from "../../src/models/batch.ts";
import { parseGguf } from "../../src/models/gguf.ts";
import { llamaConfig, LlamaModel, loadLlamaWeights } from "../../src/models/llama.ts";
import type { DecoderState } from "../../src/models/models.ts";
import { topIndices } from "../../src/models/sampling.ts";
import { tinyLlamaGguf } from "./tiny-llama.ts";

const file = parseGguf(tinyLlamaGguf(5, {}, { outputHead: true }));
const config = llamaConfig(file);
const model = new LlamaModel("tiny", config, loadLlamaWeights(file, config));
const stream = lx.newStream();

/** Greedy tokens of one sequence alone. */
function serial(tokens: number[], count: number): number[] {
  const out: number[] = [];
  let state: DecoderState | undefined;
  let input = tokens;
  for (let i = 0; i < count; i++) {
    const s = model.step(input, state, stream);
    lx.eval(s.logits, ...s.state.caches);
    const t = topIndices(s.logits.toFloat32Array(), 1)[0]!;
    s.scope.disposeExcept(s.state.caches);
    for (const c of state?.caches ?? []) c.dispose();
    state = s.state;
    out.push(t);
    input = [t];
  }
  for (const c of state?.caches ?? []) c.dispose();
  return out;
}

/** Prompts prefilled alone and joined to `batch`: their rows, each with its tokens so far. */
function join(batch: DecodeBatch, prompts: number[][]): Map<BatchRow, number[]> {
  const rows = new Map<BatchRow, number[]>();
  for (const p of prompts) {
    const s = model.step(p, undefined, stream);
    lx.eval(s.logits, ...s.state.caches);
    const first = topIndices(s.logits.toFloat32Array(), 1)[0]!;
    s.scope.disposeExcept(s.state.caches);
    rows.set(batch.join(s.state), [first]);
  }
  return rows;
}

/** The scenario, with every step recording the next ahead or none. */
async function scenario(ahead: boolean): Promise<Record<string, unknown>> {
  const step = (batch: DecodeBatch, rows: Map<BatchRow, number[]>) => batch.step(new Map([...rows].map(([r, t]) => [r, t.at(-1)!])), { ahead });

  const result: Record<string, unknown> = {};
  const prompts = [[3, 4, 5], [9, 9, 30, 12, 7]];
  const batch = new DecodeBatch(model, stream);
  const doomed = join(batch, prompts);
  for (const [row, out] of await step(batch, doomed)) doomed.get(row)!.push(out.greedy);
  // The next epoch committed fails: the next step's own, or with `ahead` the one recorded by
  // the next call, which the call after it reads.
  lx.debug.failNextEpochs(stream, 1);
  result.failed = { ok: true };
  for (result.calls = 1; (result.calls as number) <= 3; result.calls = (result.calls as number) + 1) {
    try {
      for (const [row, out] of await step(batch, doomed)) doomed.get(row)!.push(out.greedy);
    } catch (e) {
      result.failed = { ok: false, name: (e as Error).name, message: (e as Error).message };
      break;
    }
  }
  result.sizeAfterFailure = batch.size;
  result.leaveAfterFailure = (() => {
    try {
      batch.leave(doomed.keys().next().value!);
      return "left";
    } catch (e) {
      return (e as Error).message;
    }
  })();

  // The same batch starts again: new sequences decode as serial runs do.
  const fresh = join(batch, prompts);
  for (let i = 1; i < 6; i++) for (const [row, out] of await step(batch, fresh)) fresh.get(row)!.push(out.greedy);
  result.afterEqualsSerial = [...fresh.values()].every((tokens, i) => JSON.stringify(tokens) === JSON.stringify(serial(prompts[i]!, 6)));
  result.sizeAfter = batch.size;
  result.ahead = { ...batch.ahead };
  batch.dispose();
  return result;
}

console.log(JSON.stringify({ plain: await scenario(false), ahead: await scenario(true) }));
