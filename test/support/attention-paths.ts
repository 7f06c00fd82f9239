// Run with LANES_CPU_SIMD=scalar|avx2|avx512 (or unset): prints one JSON object mapping each
// attention case of attention-cases.ts to the hex of its float32 result bytes, so the parent can
// compare the kernel paths bit for bit.
import { attentionCases, runAttention } from "./attention-cases.ts";

const out: Record<string, string> = {};
for (const c of attentionCases()) out[c.name] = Buffer.from(runAttention(c).buffer).toString("hex");
console.log(JSON.stringify(out));
