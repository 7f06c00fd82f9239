// A prefill of `--prompt` token ids and `--steps` compiled decode steps of a tokenizer-less GGUF,
// each evaluated before the next: the run bench/ncu-decode.sh profiles kernel by kernel (the
// kernels of the last step are the last ones launched).
//   bun bench/decode-steps.ts --model PATH [--prompt 200] [--steps 2]
import { parseArgs } from "node:util";
import * as lx from "../src/index.ts";
import { idPrompt, loadSyntheticModel } from "./llm-synthetic.ts";

const { values: args } = parseArgs({
  options: { model: { type: "string" }, prompt: { type: "string", default: "200" }, steps: { type: "string", default: "2" } },
});
if (!args.model) throw new Error("usage: bun bench/decode-steps.ts --model PATH [--prompt 200] [--steps 2]");
const model = loadSyntheticModel(args.model);
using stream = lx.newStream();
let step = model.step(idPrompt(Number(args.prompt)), undefined, stream);
lx.eval(step.logits);
for (let i = 0; i < Number(args.steps); ++i) {
  const token = lx.argmax(step.logits, -1).toInt32Array()[0]!;
  step = model.step([token], step.state, stream);
  lx.eval(step.logits);
}
console.log(`prefill ${args.prompt}, ${args.steps} decode steps`);
