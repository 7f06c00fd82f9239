// Two streams whose work in flight needs more than the memory limit at once: the second
// stream's allocations must wait for the first stream's completions to return memory, never
// fail as out of memory. Under LANES_LOCKING=global the wait happens inside the process-wide
// lock, so completions must return memory without taking it. Prints one JSON line: the sums
// under pressure and the same sums computed afterwards without a limit.
import * as lx from "../../src/index.ts";

const n = 1 << 20; // 4 MB per float32 array
const rounds = 12;
const streams = [lx.newStream(), lx.newStream()];
const run = async (limit: boolean): Promise<number[]> => {
  const sums: number[] = [];
  lx.setMemoryLimit(limit ? lx.stats().activeBytes + 3 * 4 * n : 0);
  try {
    for (let r = 0; r < rounds; r++) {
      const pending = streams.map((stream, i) => {
        const x = lx.random.uniform([n], { seed: 10 * r + i, stream });
        const y = lx.exp(x, { stream });
        const z = lx.sum(y, undefined, { stream });
        x.dispose();
        y.dispose(); // freed when the stream completes them
        return lx.evalAsync(z).then(() => {
          sums.push(z.item());
          z.dispose();
        });
      });
      await Promise.all(pending);
    }
  } finally {
    lx.setMemoryLimit(0);
  }
  return sums;
};
const pressured = await run(true);
const free = await run(false);
for (const s of streams) s.dispose();
console.log(JSON.stringify({ pressured, free }));
