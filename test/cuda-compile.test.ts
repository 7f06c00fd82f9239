/**
 * No GPU here: the CUDA kernels the backend compiles at run time (the op table's codes, then
 * cuda/kernels.cu and cuda/quant_kernels.cu) are compiled with NVRTC for sm_90, once per kernel
 * family, as the backend does on the device. Any NVRTC error or warning, or a missing entry
 * point, fails. The kernels themselves run in the CUDA suite on an H200 (docs/CUDA.md).
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { referencePython } from "./support/gguf-reference.ts";

test("the CUDA kernels compile with NVRTC for sm_90 in every kernel family, without warnings", () => {
  const run = spawnSync(referencePython(), [join(import.meta.dir, "..", "scripts", "check_cuda_kernels.py")], { encoding: "utf8" });
  const summary = run.stdout.trim().split("\n").at(-1) ?? "";
  if (run.status !== 0) console.log(run.stdout, run.stderr);
  expect(run.status).toBe(0);
  expect(summary).toMatch(/^[1-9]\d* passed, 0 failed$/);
}, 300_000);
