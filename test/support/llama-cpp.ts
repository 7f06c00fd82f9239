/**
 * The reference engine: llama.cpp through node-llama-cpp (pinned in package.json), on the CPU
 * with 2 threads (its default oversubscribes a 2-core machine), greedy where it samples.
 */
import { type ControlledEvaluateInputItem, getLlama, type LlamaContext, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp";

/** The 16 chat prompts whose greedy answers lanes and llama.cpp are compared on (test/llm.test.ts, bench/greedy-noise.ts). */
export const greedyPrompts = [
  "What is the capital of France?",
  "Write a haiku about the sea.",
  "Explain photosynthesis in one sentence.",
  "What is 12 times 12?",
  "Name three primary colors.",
  "Translate 'good morning' into Spanish.",
  "Write a Python function that reverses a string.",
  "Who wrote Romeo and Juliet?",
  "Give me a tip for sleeping better.",
  "What is the boiling point of water in Celsius?",
  "Summarize the plot of Cinderella in two sentences.",
  "List the planets of the solar system.",
  "What does CPU stand for?",
  "Suggest a name for a pet goldfish.",
  "Why is the sky blue?",
  "How many legs does a spider have?",
];

// node-llama-cpp brands token ids; ours are plain numbers.
const asTokens = (ids: readonly number[]): Token[] => ids.map((id) => id as Token);

/** A loaded reference model and one context for it. */
export interface Reference {
  model: LlamaModel;
  context: LlamaContext;
  /** llama.cpp's token ids of `text` (`special`: parse special-token text). */
  tokenize(text: string, special: boolean): number[];
  /** llama.cpp's text of `ids` (`special`: render special tokens). */
  detokenize(ids: readonly number[], special: boolean): string;
  /** llama.cpp's greedy continuation of `prompt`: up to `n` tokens, ending before an end-of-generation token. */
  greedy(prompt: readonly number[], n: number): Promise<number[]>;
  /** ln P(tokens[i + 1] | tokens[0..i]) for every i, as llama.cpp computes it. */
  logProbs(tokens: readonly number[]): Promise<Float64Array>;
  /** llama.cpp's next-token probabilities after each `tokens[0..i]`, for each i of `at`. */
  nextProbabilities(tokens: readonly number[], at: readonly number[]): Promise<Map<number, number>[]>;
  dispose(): Promise<void>;
}

/** Loads `path` into llama.cpp (prebuilt CPU binaries only: never compiles). */
export async function loadReference(path: string, threads = 2): Promise<Reference> {
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: path });
  const context = await model.createContext({ threads, contextSize: 2048, sequences: 1 });
  const sequence = context.getSequence();
  const reference: Reference = {
    model,
    context,
    tokenize: (text, special) => [...model.tokenize(text, special)],
    detokenize: (ids, special) => model.detokenize(asTokens(ids), special),
    async greedy(prompt, n) {
      await sequence.clearHistory();
      const out: number[] = [];
      for await (const token of sequence.evaluate(asTokens(prompt), { temperature: 0 })) {
        out.push(token);
        if (out.length >= n) break;
      }
      return out;
    },
    async logProbs(tokens) {
      const at = tokens.slice(1).map((_, i) => i);
      const probabilities = await reference.nextProbabilities(tokens, at);
      return Float64Array.from(at, (i) => Math.log(probabilities[i]!.get(tokens[i + 1]!) ?? 0));
    },
    async nextProbabilities(tokens, at) {
      await sequence.clearHistory();
      const wanted = new Set(at);
      const last = Math.max(...at);
      const input = asTokens(tokens.slice(0, last + 1)).map((t, i): ControlledEvaluateInputItem => (wanted.has(i) ? [t, { generateNext: { probabilities: true } }] : t));
      const results = await sequence.controlledEvaluate(input);
      return at.map((i) => results[i]!.next.probabilities!);
    },
    async dispose() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
  return reference;
}
