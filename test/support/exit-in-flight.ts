// Submits heavy work on several streams and exits (or ends) without waiting for it.
import * as lx from "../../src/index.ts";

for (let i = 0; i < 4; i++) {
  const s = lx.newStream();
  const a = lx.random.normal([384, 384], { seed: i, stream: s });
  let h = a;
  for (let k = 0; k < 6; k++) h = lx.matmul(h, a, { stream: s });
  void lx.evalAsync(h);
}
const x = lx.array([1, 2, 3]);
console.log(`id ${x.id}`);
if (process.argv[2] === "exit") process.exit(0);
