/**
 * Runs llama.cpp's gguf-py (test/support/gguf_reference.py, in the venv scripts/setup.sh makes)
 * on a GGUF file: its view of the metadata and its numpy dequantization of the tensors.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

/** One tensor as gguf-py reads and dequantizes it. */
export interface ReferenceTensor {
  name: string;
  type: string;
  shape: number[];
  offset: number;
  values: Float32Array;
}

/** gguf-py's reading of a file. */
export interface ReferenceReading {
  metadata: Record<string, { types: string[]; value: unknown }>;
  tensors: ReferenceTensor[];
}

/** The Python of the gguf-py venv. */
export function referencePython(): string {
  const python = join(process.env.LANES_CACHE_DIR || join(homedir(), ".cache", "lanes"), "gguf-py", "bin", "python");
  if (!existsSync(python)) throw new Error(`${python} not found: run scripts/setup.sh (it installs test/support/requirements-gguf.txt)`);
  return python;
}

/** Reads `path` with gguf-py; `names` limits the tensors dequantized (default: all). */
export function readWithGgufPy(path: string, names: readonly string[] = []): ReferenceReading {
  const out = mkdtempSync(join(tmpdir(), "lanes-gguf-ref-"));
  try {
    const run = spawnSync(referencePython(), [join(import.meta.dir, "gguf_reference.py"), path, out, ...names], { encoding: "utf8", maxBuffer: 256 << 20 });
    if (run.status !== 0) throw new Error(`gguf_reference.py failed (${run.status}): ${run.stderr}`);
    const parsed = JSON.parse(run.stdout) as { metadata: ReferenceReading["metadata"]; tensors: Omit<ReferenceTensor, "values">[] };
    return {
      metadata: parsed.metadata,
      tensors: parsed.tensors.map((t, i) => {
        const bytes = readFileSync(join(out, `${i}.f32`));
        return { ...t, values: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) };
      }),
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
