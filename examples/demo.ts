// The main job: the inference service (three models, each request on its own stream) started
// in-process on the default backend, driven by the load ramp (1 → 20 concurrent clients, 357
// requests), every response checked against a serial run of the same request. Prints the
// ramp table; exits 0 only when every request succeeded and matched.
//
//   bun run demo
import { backendName } from "lanes";
import { benchServe } from "lanes/serve";

const t0 = performance.now();
const ok = await benchServe({ compareGlobal: false, torture: false });
console.log(`\n${ok ? "all requests succeeded and equal the serial run" : "FAILED: errors or mismatches above"} (backend ${backendName()}, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(ok ? 0 : 1);
