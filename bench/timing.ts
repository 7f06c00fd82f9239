// Timing helpers shared by the benchmarks: best-of wall time, and a benchmark re-run in a child
// process with its own environment.
import { spawnSync } from "node:child_process";

/** The smallest wall time of `fn` in milliseconds over `repeat` runs, after one warm-up run. */
export function bestMs(fn: () => void, repeat = 5): number {
  fn();
  let best = Infinity;
  for (let i = 0; i < repeat; i++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

/**
 * Runs `command` with the current environment plus `env` (an undefined value removes the
 * variable) and returns its last line of output parsed as JSON. Throws with its stderr when it
 * fails.
 */
export function runJsonChild<T>(command: string[], env: Record<string, string | undefined> = {}): T {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) childEnv[k] = v;
  const r = spawnSync(command[0]!, command.slice(1), { env: childEnv, encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${command.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as T;
}
