// Runs tasks in Bun Workers, one Worker per task, with a watchdog so a hang fails with a
// diagnostic instead of stalling CI.
import type { WorkerResult, WorkerTask } from "./worker.ts";

export async function runWorkers(tasks: WorkerTask[], timeoutMs = 60_000): Promise<Float32Array[][]> {
  const workers = tasks.map(() => new Worker(new URL("./worker.ts", import.meta.url).href));
  const done = new Array<boolean>(tasks.length).fill(false);
  try {
    const results = tasks.map(
      (task, i) =>
        new Promise<Float32Array[]>((resolve, reject) => {
          workers[i]!.onmessage = (e: MessageEvent<WorkerResult>) => {
            done[i] = true;
            if (e.data.error) reject(new Error(`worker ${i}: ${e.data.error}`));
            else resolve(e.data.results);
          };
          workers[i]!.onerror = (e) => reject(new Error(`worker ${i} crashed: ${e.message}`));
          workers[i]!.postMessage(task);
        }),
    );
    let timer: Timer | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const stuck = done.flatMap((d, i) => (d ? [] : [`worker ${i} (stream ${String(tasks[i]!.stream)}, ${tasks[i]!.jobs.length} jobs)`]));
        reject(new Error(`watchdog: no result after ${timeoutMs} ms from ${stuck.join(", ")}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([Promise.all(results), watchdog]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    for (const w of workers) w.terminate();
  }
}
