/**
 * Continuous batching of decode steps: many sequences, each at its own position, decoded one
 * token each by a single step of the model (one compiled plan, batched kernels).
 *
 * A {@link DecodeBatch} owns one KV cache per layer and kind, `[slots, kvHeads, capacity,
 * headDim]`. A sequence prefilled on its own ({@link Model.step} over its prompt) joins by having
 * its caches copied into a free slot; it leaves by freeing the slot. Each step writes every
 * slot's new key and value at that slot's position and attends over that slot's own keys (the
 * per-row forms of `sliceUpdate`, `rope` and `scaledDotProductAttention`), so sequences join and
 * leave at any step without disturbing the others. Free slots ride along (their rows compute
 * garbage that no one reads).
 *
 * Slot counts come in buckets (exact up to 8, then steps of about 1.5×) and capacities in
 * powers of two, so the model compiles few plans; the caches are copied only when the bucket or
 * the capacity changes.
 * @module
 */
import type { LanesArray } from "../array.ts";
import { evalAsync } from "../eval.ts";
import * as lx from "../index.ts";
import type { Stream } from "../stream.ts";
import { cacheCapacity } from "./kv-cache.ts";
import type { Scope } from "./layers.ts";
import type { DecoderState, Model } from "./models.ts";

/** The KV caches of a batched step: `caches` arrays `[slots, kvHeads, capacity, headDim]` of `dtype`. */
export interface KVLayout {
  caches: number;
  kvHeads: number;
  headDim: number;
  dtype: "float16" | "float32";
}

/** One batched decode step's lazy outputs. */
export interface BatchStep {
  /** `[slots, vocab]` float32. */
  logits: LanesArray;
  /** `[slots]` int32: each row's most likely token (the first on ties), for greedy decoding. */
  greedy: LanesArray;
  /** The caches after the step (the step consumed the ones it was given). */
  caches: LanesArray[];
  scope: Scope;
}

/** Prompts prefilled together: lazy outputs. */
export interface BatchPrefill {
  /** `[k, vocab]` float32: each prompt's logits at its last token. */
  logits: LanesArray;
  /** `[k, kvHeads, capacity, headDim]` each: row j is prompt j's cache (what {@link DecodeBatch.joinRows} takes). */
  caches: LanesArray[];
  scope: Scope;
}

/** A decoder that can also prefill several prompts and decode many sequences in one step each. */
export interface BatchDecoder extends Model {
  /** Prompts prefilled together (right-padded to the longest), each row as if prefilled alone. */
  prefillBatch(prompts: readonly (readonly number[])[], stream: Stream): BatchPrefill;
  /** Shape and dtype of the batch caches; their order is the order of {@link DecoderState.caches}. */
  readonly kvLayout: KVLayout;
  /**
   * One token for each of `tokens.length` slots, slot i at position `positions[i]` (int32
   * both; the tokens may be an int32 `[slots]` array on the device, such as a step's `greedy`);
   * `caches` as {@link kvLayout} says, consumed.
   */
  decodeBatch(tokens: Int32Array | LanesArray, positions: Int32Array, caches: readonly LanesArray[], stream: Stream): BatchStep;
}

/** True when `model` can run batched decode steps. */
export function isBatchDecoder(model: Model): model is BatchDecoder {
  return typeof (model as Partial<BatchDecoder>).decodeBatch === "function" && (model as Partial<BatchDecoder>).kvLayout !== undefined;
}

/** A sequence in a {@link DecodeBatch}. */
export interface BatchRow {
  /** Tokens in its cache: where its next token goes. */
  readonly pos: number;
}

/** What one step gave a row. */
export interface RowOutput {
  /** The row's most likely next token (first on ties). */
  greedy: number;
  /** The row's logits, when the step was asked for them. */
  logits?: Float32Array;
}

// Slot counts a batch takes: exact up to 8 (on the CPU a padding row costs as much as a real
// one), then steps of about 1.5× (on a GPU padding rows are nearly free; fewer plans).
const buckets = [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256];

/** The smallest slot bucket that holds `rows` rows. */
export function slotBucket(rows: number): number {
  for (const b of buckets) if (b >= rows) return b;
  return Math.ceil(rows / 64) * 64;
}

class Row implements BatchRow {
  constructor(
    public slot: number,
    public pos: number,
  ) {}
}

/**
 * The caches and slots of sequences decoded together; see the module's description. One call at
 * a time: a step is awaited before the next join, leave or step. Disposable.
 */
export class DecodeBatch implements Disposable {
  #caches: LanesArray[] = [];
  #slots: (Row | undefined)[] = [];
  #capacity = 0;
  // The caches were rebuilt by eager ops (a join, a new bucket or capacity) since the last step.
  #rebuilt = false;
  // The step after the last one, recorded from its greedy tokens before they were read (see
  // step()'s `ahead`), with the token and position it gave each row. Its caches are #caches.
  #queued: { step: BatchStep; rows: Map<Row, { token: number; pos: number; slot: number }> } | undefined;

  /** Steps recorded ahead (see {@link DecodeBatch.step}): `used` as asked for, `dropped` not. */
  readonly ahead = { used: 0, dropped: 0 };

  /**
   * @param model - the decoder.
   * @param stream - where every step and cache copy runs.
   */
  constructor(
    readonly model: BatchDecoder,
    readonly stream: Stream,
  ) {}

  /** Sequences in the batch. */
  get size(): number {
    return this.#slots.reduce((n, r) => n + (r ? 1 : 0), 0);
  }

  /** Slots the caches hold now (the step's batch size, free slots included). */
  get slots(): number {
    return this.#slots.length;
  }

  /** Positions each slot's cache holds now. */
  get capacity(): number {
    return this.#capacity;
  }

  /**
   * Adds a sequence prefilled on its own: `state` is what {@link Model.step} gave for its prompt
   * (caches `[1, kvHeads, c, headDim]` in the batch's layout), consumed. Its next token goes at
   * `state.pos`.
   */
  join(state: DecoderState): BatchRow {
    return this.joinRows(state.caches, [{ row: 0, pos: state.pos }])[0]!;
  }

  /**
   * Adds sequences prefilled together ({@link BatchDecoder.prefillBatch}): `caches` are
   * `[k, kvHeads, c, headDim]` (consumed), and each pick names a row of them and the position its
   * next token goes at. Rows not picked are dropped. Returns the new rows, in the picks' order.
   */
  joinRows(caches: readonly LanesArray[], picks: readonly { row: number; pos: number }[]): BatchRow[] {
    const layout = this.model.kvLayout;
    if (caches.length !== layout.caches) throw new RangeError(`DecodeBatch: a sequence needs ${layout.caches} caches, got ${caches.length}`);
    const [k, , held] = caches[0]!.shape as [number, number, number, number];
    for (const { row, pos } of picks) {
      if (!Number.isInteger(row) || row < 0 || row >= k) throw new RangeError(`DecodeBatch: row ${row} is outside the ${k} prefilled`);
      if (!Number.isInteger(pos) || pos < 0 || pos + 1 > this.model.maxSeq) throw new RangeError(`DecodeBatch: position ${pos} leaves no room in the context of ${this.model.maxSeq}`);
    }
    if (picks.length === 0) {
      for (const c of caches) c.dispose();
      return [];
    }
    const free = this.#slots.filter((r) => r === undefined).length;
    const furthest = Math.max(...picks.map((p) => p.pos));
    this.#resize(free >= picks.length ? this.#slots.length : slotBucket(this.size + picks.length), Math.max(held, this.#needed(furthest)));
    const slots = this.#slots.flatMap((r, i) => (r === undefined ? [i] : [])).slice(0, picks.length);
    lx.withStream(this.stream, () => {
      this.#caches = this.#caches.map((cache, i) => {
        let seq = caches[i]!;
        if (held < this.#capacity) {
          const pad = lx.zeros([k, layout.kvHeads, this.#capacity - held, layout.headDim], { dtype: seq.dtype });
          seq = lx.concatenate([seq, pad], 2);
          pad.dispose();
        }
        const out = this.#place(cache, seq, picks, slots);
        if (seq !== caches[i]) seq.dispose();
        return out;
      });
    });
    for (const c of caches) c.dispose();
    this.#rebuilt = true;
    return picks.map(({ pos }, j) => {
      const row = new Row(slots[j]!, pos);
      this.#slots[row.slot] = row;
      return row;
    });
  }

  // `cache` (consumed) with row picks[j].row of `seq` written into slot slots[j]. One or two rows
  // are written in place; more are gathered with the rest in one pass (fewer, larger copies).
  #place(cache: LanesArray, seq: LanesArray, picks: readonly { row: number }[], slots: readonly number[]): LanesArray {
    if (picks.length <= 2) {
      let out = cache;
      picks.forEach(({ row }, j) => {
        const one = seq.shape[0] === 1 ? seq : lx.slice(seq, [row], [row + 1]);
        const next = lx.sliceUpdate(out, one, slots[j]!, { axis: 0 });
        out.dispose(); // consumed: with no other holder the slot is written in place
        if (one !== seq) one.dispose();
        out = next;
      });
      return out;
    }
    const S = cache.shape[0]!;
    const source = Int32Array.from({ length: S }, (_, t) => t);
    picks.forEach(({ row }, j) => (source[slots[j]!] = S + row));
    const both = lx.concatenate([cache, seq], 0);
    const index = lx.array(source);
    const out = lx.take(both, index, 0);
    for (const a of [both, index, cache]) a.dispose();
    return out;
  }

  /** Frees `row`'s slot (its cache is dropped at the next bucket change or reused by the next join). */
  leave(row: BatchRow): void {
    const r = row as Row;
    if (this.#slots[r.slot] !== r) throw new RangeError("DecodeBatch: that row is not in this batch");
    this.#slots[r.slot] = undefined;
  }

  /**
   * One decode step of every sequence in the batch: `tokens` gives each row's next token (every
   * row, and only rows, of this batch). Resolves, once computed, with each row's output; a row's
   * position has then moved on by one. With `logits`, each row's logits are read too (else only
   * its greedy token).
   *
   * With `ahead`, the step after this one is recorded from this step's greedy tokens, on the
   * device, before this one is read: the device has it queued while the caller reads, decides and
   * calls again. The next call uses it when it asks for exactly that (the same rows, or fewer,
   * each with its greedy token); otherwise it is dropped (its cache writes are at positions the
   * real step writes again) and the step is recorded anew.
   */
  async step(tokens: ReadonlyMap<BatchRow, number>, opts: { logits?: boolean; ahead?: boolean } = {}): Promise<Map<BatchRow, RowOutput>> {
    const rows = this.#slots.filter((r): r is Row => r !== undefined);
    if (tokens.size !== rows.length || rows.some((r) => !tokens.has(r)))
      throw new RangeError(`DecodeBatch: a step takes one token for each of the batch's ${rows.length} rows, got ${tokens.size}`);
    const queued = this.#takeQueued(rows, tokens);
    if (rows.length === 0) return new Map();
    const step = queued ?? (await this.#record(rows, tokens));
    try {
      if (opts.ahead) this.#recordAhead(rows, step);
      await evalAsync(step.greedy, step.logits);
      const greedy = step.greedy.toInt32Array();
      const logits = opts.logits ? step.logits.toFloat32Array() : undefined;
      const vocab = step.logits.shape[1]!;
      const out = new Map<BatchRow, RowOutput>();
      for (const r of rows) {
        out.set(r, { greedy: greedy[r.slot]!, logits: logits?.subarray(r.slot * vocab, (r.slot + 1) * vocab) });
        r.pos += 1;
        this.#queued?.rows.set(r, { token: greedy[r.slot]!, pos: r.pos, slot: r.slot });
      }
      return out;
    } catch (e) {
      // A failed step leaves the caches unusable: every row must start again.
      this.#drop();
      throw e;
    } finally {
      step.scope.disposeExcept(this.#caches);
    }
  }

  // The queued step when it is exactly the one asked for; else it is dropped (its caches stay).
  #takeQueued(rows: readonly Row[], tokens: ReadonlyMap<BatchRow, number>): BatchStep | undefined {
    const queued = this.#queued;
    if (!queued) return undefined;
    this.#queued = undefined;
    const same = rows.every((r) => {
      const q = queued.rows.get(r);
      return q !== undefined && q.token === tokens.get(r) && q.pos === r.pos && q.slot === r.slot;
    });
    if (same && rows.length > 0) {
      this.ahead.used += 1;
      return queued.step;
    }
    this.ahead.dropped += 1;
    queued.step.scope.disposeExcept(this.#caches);
    return undefined;
  }

  // Records the step `tokens` ask for, after bringing the caches to its bucket and capacity.
  async #record(rows: readonly Row[], tokens: ReadonlyMap<BatchRow, number>): Promise<BatchStep> {
    const furthest = Math.max(...rows.map((r) => r.pos));
    if (furthest + 1 > this.model.maxSeq) throw new RangeError(`DecodeBatch: position ${furthest} is past the context of ${this.model.maxSeq}`);
    this.#resize(slotBucket(rows.length), this.#needed(furthest));
    // Caches a step donates are written in place only when nothing else holds their memory:
    // finish the eager ops that rebuilt them first, or the step would copy every cache.
    if (this.#rebuilt) {
      try {
        await evalAsync(...this.#caches);
      } catch (e) {
        this.#drop();
        throw e;
      }
      this.#rebuilt = false;
    }
    const ids = new Int32Array(this.#slots.length);
    const positions = new Int32Array(this.#slots.length);
    for (const r of rows) {
      ids[r.slot] = tokens.get(r)!;
      positions[r.slot] = r.pos;
    }
    const step = this.model.decodeBatch(ids, positions, this.#caches, this.stream);
    this.#caches = step.caches;
    return step;
  }

  // Records the step after `step` from its greedy tokens, each row one position on, when that
  // needs no new bucket or capacity.
  #recordAhead(rows: readonly Row[], step: BatchStep): void {
    const furthest = Math.max(...rows.map((r) => r.pos)) + 1;
    if (furthest + 1 > this.model.maxSeq || this.#needed(furthest) > this.#capacity || slotBucket(rows.length) !== this.#slots.length) return;
    const positions = new Int32Array(this.#slots.length);
    for (const r of rows) positions[r.slot] = r.pos + 1;
    const next = this.model.decodeBatch(step.greedy, positions, this.#caches, this.stream);
    this.#caches = next.caches;
    this.#queued = { step: next, rows: new Map() };
  }

  /** Frees the caches; every row is gone. */
  dispose(): void {
    this.#drop();
  }

  /** Frees the caches (`using`). */
  [Symbol.dispose](): void {
    this.dispose();
  }

  #drop(): void {
    this.#queued?.step.scope.disposeExcept([]);
    this.#queued = undefined;
    for (const c of this.#caches) c.dispose();
    this.#caches = [];
    this.#slots = [];
    this.#capacity = 0;
    this.#rebuilt = false;
  }

  // The capacity a cache needs to take one more token at `pos`.
  #needed(pos: number): number {
    return cacheCapacity(pos + 1, this.model.maxSeq);
  }

  // Brings the caches to `slots` slots (at least the rows held) of at least `capacity` positions.
  // Fewer slots pack the rows into the lowest ones. The content of free slots, and of positions
  // past a row's own, is never read: new room is left as it comes.
  #resize(slots: number, capacity: number): void {
    const from = this.#slots.length;
    capacity = Math.max(capacity, this.#capacity);
    if (slots === from && capacity === this.#capacity) return;
    const layout = this.model.kvLayout;
    const rows = this.#slots.filter((r): r is Row => r !== undefined);
    // Where each new slot's cache comes from: packed rows when shrinking, else the same slot.
    const source = slots < from ? [...rows.map((r) => r.slot), ...Array<number>(slots - rows.length).fill(0)] : Array.from({ length: slots }, (_, i) => (i < from ? i : 0));
    lx.withStream(this.stream, () => {
      if (this.#caches.length === 0) {
        this.#caches = Array.from({ length: layout.caches }, () => lx.zeros([slots, layout.kvHeads, capacity, layout.headDim], { dtype: layout.dtype }));
        return;
      }
      const index = slots === from ? undefined : lx.array(Int32Array.from(source));
      this.#caches = this.#caches.map((cache) => {
        let out = index ? lx.take(cache, index, 0) : cache;
        if (capacity > this.#capacity) {
          const pad = lx.zeros([slots, layout.kvHeads, capacity - this.#capacity, layout.headDim], { dtype: layout.dtype });
          const grown = lx.concatenate([out, pad], 2);
          pad.dispose();
          if (out !== cache) out.dispose();
          out = grown;
        }
        if (out !== cache) cache.dispose();
        return out;
      });
      index?.dispose();
    });
    this.#rebuilt = true;
    if (slots < from) {
      rows.forEach((r, i) => (r.slot = i));
      this.#slots = [...rows, ...Array<undefined>(slots - rows.length).fill(undefined)];
    } else {
      while (this.#slots.length < slots) this.#slots.push(undefined);
    }
    this.#capacity = capacity;
  }
}
