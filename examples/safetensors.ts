// Loading weights from a .safetensors file and running a layer with them.
//
//   bun examples/safetensors.ts [checkpoint.safetensors]
//
// The checkpoint needs a `proj.weight` [in, out] and a `proj.bias` [out], in any of F32, F16 and
// BF16. With no argument the example first writes one (a bfloat16 weight and a float32 bias), as
// a training script would have saved it. Prints the tensors, then `x @ proj.weight + proj.bias`
// for x = [0, 1, …, in-1] as a JSON line.
import * as lx from "lanes";
import { loadSafetensors, saveSafetensors } from "lanes/models";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function writeCheckpoint(path: string, inputs = 6, outputs = 4): string {
  const weight = new Float32Array(inputs * outputs).map((_, i) => ((i * 7) % 13) / 8 - 0.75);
  const bias = new Float32Array(outputs).map((_, i) => i / 4);
  // bfloat16 keeps the top 16 bits of a float32 (these values are exact in it).
  const weightBf16 = new Uint16Array(new Uint32Array(weight.buffer).map((bits) => bits >>> 16));
  saveSafetensors(path, {
    "proj.weight": { dtype: "bfloat16", shape: [inputs, outputs], data: new Uint8Array(weightBf16.buffer) },
    "proj.bias": { dtype: "float32", shape: [outputs], data: new Uint8Array(bias.buffer) },
  });
  return path;
}

const file = process.argv[2] ?? writeCheckpoint(join(tmpdir(), `lanes-example-${process.pid}.safetensors`));
const tensors = loadSafetensors(file); // name → array, in the stored dtype
for (const [name, t] of tensors) console.log(`${name}: ${t.dtype} [${t.shape.join(", ")}]`);

const weight = tensors.get("proj.weight"), bias = tensors.get("proj.bias");
if (!weight || !bias) throw new Error(`${file} needs proj.weight and proj.bias`);
const x = lx.reshape(lx.arange(0, weight.shape[0]!), [1, weight.shape[0]!]);
const y = lx.add(lx.matmul(x, lx.astype(weight, "float32")), bias); // bf16 is widened to f32
console.log(JSON.stringify({ file, y: Array.from(y.toFloat32Array()) }));
for (const t of tensors.values()) t.dispose();
if (!process.argv[2]) rmSync(file);
