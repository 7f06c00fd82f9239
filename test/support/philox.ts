// Philox4x32-10 in BigInt arithmetic: an independent reference for lanes' random generator.
const M0 = 0xd2511f53n, M1 = 0xcd9e8d57n, W0 = 0x9e3779b9n, W1 = 0xbb67ae85n, MASK = 0xffffffffn;

export function philox4x32(counter: [number, number, number, number], key: [number, number]): number[] {
  let c = counter.map(BigInt);
  let k = key.map(BigInt);
  for (let r = 0; r < 10; r++) {
    const p0 = M0 * c[0]!, p1 = M1 * c[2]!;
    c = [((p1 >> 32n) ^ c[1]! ^ k[0]!) & MASK, p1 & MASK, ((p0 >> 32n) ^ c[3]! ^ k[1]!) & MASK, p0 & MASK];
    k = [(k[0]! + W0) & MASK, (k[1]! + W1) & MASK];
  }
  return c.map(Number);
}

// Element values lanes documents: counter j gives elements 2j and 2j+1.
export function referenceRandom(kind: "uniform" | "normal", seed: number, n: number, a: number, b: number): Float64Array {
  const out = new Float64Array(n);
  const key: [number, number] = [seed >>> 0, Math.floor(seed / 4294967296) >>> 0];
  for (let j = 0; 2 * j < n; j++) {
    const r = philox4x32([j >>> 0, Math.floor(j / 4294967296), 0, 0], key);
    let v0: number, v1: number;
    if (kind === "normal") {
      const u1 = (r[0]! + 0.5) / 4294967296, u2 = (r[1]! + 0.5) / 4294967296;
      const radius = Math.sqrt(-2 * Math.log(u1));
      v0 = a + b * radius * Math.cos(2 * Math.PI * u2);
      v1 = a + b * radius * Math.sin(2 * Math.PI * u2);
    } else {
      v0 = a + (b - a) * (r[0]! / 4294967296);
      v1 = a + (b - a) * (r[1]! / 4294967296);
    }
    out[2 * j] = v0;
    if (2 * j + 1 < n) out[2 * j + 1] = v1;
  }
  return out;
}
