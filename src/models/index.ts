/**
 * Models built from lanes ops, and the pieces to run them: `.safetensors` weights, a
 * byte-level tokenizer, greedy, top-k and top-p sampling, and a generation loop on a stream;
 * and real chat models from GGUF files (Llama architecture, e.g. SmolLM2-135M-Instruct) with
 * their BPE tokenizer and chat template, decoded one sequence per stream or many together
 * ({@link DecodeBatch}: continuous batching).
 *
 * ```ts
 * import * as lx from "lanes";
 * import { loadModel, generate, encode, decode } from "lanes/models";
 * const model = loadModel("transformer", "weights.safetensors");
 * using stream = lx.newStream();
 * const out = await generate(model, { tokens: encode("hello"), maxTokens: 16 }, stream);
 * console.log(decode(out.tokens));
 * ```
 * @module
 */
export { forward, generate, CancelledError, type ForwardSummary, type GenerateParams, type GenerateResult } from "./generate.ts";
export { attentionBlock, mlpBlock, recurrenceBlock, Scope, weight, type DecoderConfig, type Weights } from "./layers.ts";
export { architectures, buildModel, type Architecture, type DecoderState, type Model, type Step, type StepTokens } from "./models.ts";
export { loadSafetensors, parseHeader, saveSafetensors, SafetensorsError, type TensorBytes, type TensorInfo } from "./safetensors.ts";
export { checksum, sample, seededRandom, topIndices, type SampleOptions } from "./sampling.ts";
export {
  dequantize,
  GgmlType,
  ggmlTypeLayout,
  GgufError,
  GgufValueType,
  metadataValue,
  parseGguf,
  readGguf,
  tensorBytes,
  tensorFloat32,
  type GgmlTypeName,
  type GgufEntry,
  type GgufFile,
  type GgufNumericArray,
  type GgufTensorInfo,
  type GgufValue,
  type GgufValueTypeName,
} from "./gguf.ts";
export { GgufTokenizer, type StreamDecoder } from "./gguf-tokenizer.ts";
export { checkLlamaTensors, linear, llamaConfig, LlamaModel, llamaShapes, loadLlamaWeights, type LlamaConfig, type LlamaOptions } from "./llama.ts";
export { appendKV, cacheCapacity } from "./kv-cache.ts";
export { DecodeBatch, isBatchDecoder, slotBucket, type BatchDecoder, type BatchPrefill, type BatchRow, type BatchStep, type KVLayout, type RowOutput } from "./batch.ts";
export type { ChatMessage, TextModel, Tokenizer } from "./text.ts";
export { ChatTemplate, defaultModelFile, defaultModelPath, GgufTextModel, loadTextModel, loadTokenizer } from "./text-model.ts";
export { bos, byteVocab, decode, encode } from "./tokenizer.ts";
export { defaultWeightsPath, loadModel, modelCacheDir, writeDefaultWeights } from "./weights.ts";
