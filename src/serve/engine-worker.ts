// A service engine Worker: adopts the models' weights by handle (no copy, no reload), owns its
// share of the streams, and runs jobs on them: graph building and submission happen on this
// thread, concurrently with the other Workers.
import type { LanesArray } from "../array.ts";
import * as lx from "../index.ts";
import { CancelledError } from "../models/generate.ts";
import { LlamaModel } from "../models/llama.ts";
import { architectures, buildModel, type Model } from "../models/models.ts";
import { type FromWorker, runJob, type ToWorker } from "./engine.ts";

declare const self: Worker;

const models = new Map<string, Model>();
const adopted: LanesArray[] = [];
let streams: lx.Stream[] = [];
const running = new Map<number, AbortController>();
const post = (m: FromWorker) => self.postMessage(m);

self.onmessage = async (event: MessageEvent<ToWorker>) => {
  const m = event.data;
  if (m.type === "init") {
    try {
      for (const shared of m.models) {
        const weights = new Map<string, LanesArray>();
        for (const [name, id] of Object.entries(shared.weights)) {
          const a = lx.arrayFromId(id);
          adopted.push(a);
          weights.set(name, a);
        }
        models.set(
          shared.name,
          shared.architecture === "llama" ? new LlamaModel(shared.name, shared.llama!, weights) : buildModel(shared.name, architectures[shared.architecture], weights),
        );
      }
      streams = Array.from({ length: m.streams }, () => lx.newStream());
      post({ type: "ready" });
    } catch (e) {
      post({ type: "error", id: 0, name: (e as Error).name, message: (e as Error).message });
    }
  } else if (m.type === "cancel") {
    running.get(m.id)?.abort();
  } else if (m.type === "run") {
    const controller = new AbortController();
    running.set(m.id, controller);
    try {
      const result = await runJob(models.get(m.job.model)!, m.job, streams[m.stream]!, controller.signal, (token, index) =>
        post({ type: "token", id: m.id, token, index }),
      );
      post({ type: "done", id: m.id, result });
    } catch (e) {
      const error = e as Error;
      post({ type: "error", id: m.id, name: error instanceof CancelledError ? "CancelledError" : error.name, message: error.message });
    } finally {
      running.delete(m.id);
    }
  } else if (m.type === "stop") {
    for (const s of streams) s.dispose();
    for (const a of adopted) a.dispose();
    post({ type: "stopped" });
  }
};
