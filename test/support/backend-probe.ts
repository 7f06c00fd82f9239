// Run with LANES_BACKEND set: reports the backend in use, or the error selecting it gave, and
// shows the process keeps running either way.
import * as lx from "../../src/index.ts";

try {
  const y = lx.sum(lx.arange(10));
  console.log(JSON.stringify({ backend: lx.backendName(), sum: y.item() }));
} catch (e) {
  console.log(JSON.stringify({ backend: lx.backendName(), error: (e as Error).name, message: (e as Error).message }));
}
console.log(JSON.stringify({ alive: true }));
