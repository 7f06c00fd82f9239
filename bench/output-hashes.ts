// Hashes of kernel outputs, to compare two libraries bit for bit (run once with each as
// LANES_LIBRARY_PATH and diff the output): argmax, argmin, max, min, sum, logsumexp, variance,
// softmax, rmsNorm and layerNorm at six shapes, then the tokens and per-step logits of a compiled
// decode of a tokenizer-less GGUF (bench/llm-synthetic.ts makes one).
//   bun bench/output-hashes.ts MODEL.gguf
import * as lx from "../src/index.ts";
import { generate } from "../src/models/generate.ts";
import { idPrompt, loadSyntheticModel } from "./llm-synthetic.ts";

const hash = (a: lx.LanesArray) => {
  lx.eval(a);
  const b = a.dtype === "int32" ? a.toInt32Array() : a.toFloat32Array();
  return Bun.hash(new Uint8Array(b.buffer, b.byteOffset, b.byteLength)).toString(16);
};
let seed = 1;
for (const shape of [[1, 49152], [3, 49152], [64, 1000], [8, 576], [7, 33], [2, 5000]]) {
  const x = lx.random.normal(shape, { seed: seed++ });
  const w = lx.random.normal([shape[1]!], { seed: seed++ });
  const outputs = [lx.argmax(x, -1), lx.argmin(x, -1), lx.max(x, -1), lx.min(x, -1), lx.sum(x, -1), lx.logsumexp(x, -1), lx.variance(x, -1),
    lx.softmax(x, -1), lx.rmsNorm(x, w), lx.layerNorm(x, w, null), lx.argmax(x, 0), lx.sum(x, 0)];
  console.log(shape.join("x"), outputs.map(hash).join(" "));
}
const model = loadSyntheticModel(process.argv[2]!, { compiled: true });
using stream = lx.newStream();
const tokens: number[] = [];
await generate(model, { tokens: idPrompt(200), maxTokens: 48, checksums: false }, stream, { onToken: (t: number) => { tokens.push(t); } });
console.log("tokens", Bun.hash(tokens.join(",")).toString(16), tokens.slice(0, 12).join(","));
let step = model.step(idPrompt(200), undefined, stream);
const logits: string[] = [hash(step.logits)];
for (let i = 0; i < 16; ++i) {
  const next = model.step([tokens[i]!], step.state, stream);
  step.scope.disposeExcept([]);
  step = next;
  logits.push(hash(step.logits));
}
console.log("logits", Bun.hash(logits.join(",")).toString(16));
