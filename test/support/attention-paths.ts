// Run with LANES_CPU_SIMD=scalar|avx2|avx512 (or unset) and LANES_CPU_LLAMA_BUILD: prints one JSON
// object mapping each attention case of attention-cases.ts to the hex of its float32 result bytes,
// and "silu" to that of SiLU over llama-builds.ts's inputs (contiguous: the vector kernel), so the
// parent can compare the kernel paths bit for bit.
import * as lx from "../../src/index.ts";
import { attentionCases, runAttention } from "./attention-cases.ts";
import { siluInputs } from "./llama-builds.ts";

const attention: Record<string, string> = {};
for (const c of attentionCases()) attention[c.name] = Buffer.from(runAttention(c).buffer).toString("hex");
const silu = Buffer.from(lx.silu(lx.array(siluInputs())).toFloat32Array().buffer).toString("hex");
console.log(JSON.stringify({ attention, silu }));
