/**
 * Compiled functions, named after MLX's `mx.compile`: trace a function of arrays once into an
 * immutable plan, then replay it with one native call, from any Worker, on any stream, as many
 * times at once as there are streams.
 *
 * ```ts
 * const step = lx.compile((x: lx.LanesArray, pos: number) => lx.rope(lx.matmul(x, w), 64, { offset: pos }), { scalars: [1] });
 * const y = step(x, 7);           // traced on the first call for x's shape and dtype
 * using plan = step.plan(x, 0);   // the plan itself: plan.id crosses Workers (planFromId)
 * ```
 * @module
 */
import { dtypeCode, LanesArray, shapeBuffer, tidy, type DType } from "./array.ts";
import { DisposedError, ShapeError } from "./errors.ts";
import { callForHandle, check, native, outPtr } from "./native.ts";
import { Scalar } from "./scalar.ts";
import { currentStream, type Stream } from "./stream.ts";

/** What a compiled function may return: one array, or arrays in arrays and plain objects. */
export type CompiledResult = LanesArray | readonly CompiledResult[] | { readonly [key: string]: CompiledResult };

/** Options of {@link compile}. */
export interface CompileOptions {
  /** Indices of the arguments that are numbers passed by value at each call (a decode position, say). */
  scalars?: readonly number[];
  /**
   * Indices of array arguments the caller gives up at each call: the compiled function may write
   * them in place (a KV cache updated with `sliceUpdate`) and disposes them.
   */
  donate?: readonly number[];
  /** Plans kept, one per distinct set of argument shapes and dtypes (default 16); the least recently used goes. */
  maxPlans?: number;
}

// The result's structure, with each array replaced by its index among the plan's outputs.
type Skeleton = number | Skeleton[] | { [key: string]: Skeleton };

function flatten(result: CompiledResult, out: LanesArray[]): Skeleton {
  if (result instanceof LanesArray) {
    out.push(result);
    return out.length - 1;
  }
  if (Array.isArray(result)) return result.map((r) => flatten(r, out));
  if (result && typeof result === "object")
    return Object.fromEntries(Object.entries(result).map(([k, v]) => [k, flatten(v as CompiledResult, out)]));
  throw new ShapeError(`compile: the function must return arrays (in arrays or objects), got ${typeof result}`);
}

function rebuild(skeleton: Skeleton, arrays: readonly LanesArray[]): CompiledResult {
  if (typeof skeleton === "number") return arrays[skeleton]!;
  if (Array.isArray(skeleton)) return skeleton.map((s) => rebuild(s, arrays));
  return Object.fromEntries(Object.entries(skeleton).map(([k, v]) => [k, rebuild(v, arrays)]));
}

// An array's dtype and shape.
type Signature = [DType, number[]];

interface Meta {
  // Per argument: "a" (array) or "s" (scalar), in call order.
  args: string;
  donate: number[];
  result: Skeleton;
  // The array arguments' and the outputs' dtypes and shapes, in order: a replay checks its
  // arguments against the first without asking the native side, and gives its results the second.
  inputs: Signature[];
  outputs: Signature[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const counts = new Int32Array(5);
const arenaBytes = new BigUint64Array(1);

/**
 * A compiled plan: one trace of a function for fixed argument shapes and dtypes. Its `id`
 * crosses Workers ({@link planFromId}); replays of one plan may run at once on any number of
 * streams. Disposable.
 */
export class Plan implements Disposable {
  /** The native handle; pass it to another Worker and call {@link planFromId} there. */
  readonly id: number;
  readonly #meta: Meta;
  // A replay's native arguments, filled in place on each call (the native call copies them).
  readonly #handles: BigUint64Array;
  readonly #scalars: Float64Array;
  readonly #outs: BigUint64Array;
  #disposed = false;

  /** @internal Plans come from {@link compile} or {@link planFromId}. */
  constructor(id: number) {
    this.id = id;
    check(native.lanes_plan_info(id, counts.subarray(0, 1), counts.subarray(1, 2), counts.subarray(2, 3), counts.subarray(3, 4), arenaBytes));
    this.#handles = new BigUint64Array(counts[0]!);
    this.#outs = new BigUint64Array(counts[1]!);
    this.#scalars = new Float64Array(counts[2]!);
    const length = new Int32Array(1);
    check(native.lanes_plan_meta(id, null, 0, length));
    const bytes = new Uint8Array(length[0]!);
    check(native.lanes_plan_meta(id, bytes.length ? bytes : null, bytes.length, length));
    this.#meta = JSON.parse(new TextDecoder().decode(bytes)) as Meta;
  }

  /** Array arguments, outputs, scalar arguments and kernel steps of the plan, and its arena's bytes per stream. */
  info(): { inputs: number; outputs: number; scalars: number; steps: number; arenaBytes: number } {
    check(native.lanes_plan_info(this.#handle(), counts.subarray(0, 1), counts.subarray(1, 2), counts.subarray(2, 3), counts.subarray(3, 4), arenaBytes));
    return { inputs: counts[0]!, outputs: counts[1]!, scalars: counts[2]!, steps: counts[3]!, arenaBytes: Number(arenaBytes[0]!) };
  }

  /**
   * Replays the plan on `stream` (default: the current stream) with the function's arguments,
   * in the function's order. Returns lazily computed results, structured as the function's.
   */
  run(args: readonly (LanesArray | number)[], stream?: Stream): CompiledResult {
    const handle = this.#handle();
    const kinds = this.#meta.args;
    if (args.length !== kinds.length)
      throw new ShapeError(`compiled function: ${args.length} arguments, it takes ${kinds.length}`);
    const handles = this.#handles, scalars = this.#scalars, outs = this.#outs;
    let arrayCount = 0, scalarCount = 0;
    for (let i = 0; i < kinds.length; i++) {
      const a = args[i];
      if (kinds[i] === "s") {
        if (typeof a !== "number") throw new ShapeError(`compiled function: argument ${i} must be a number (a scalar parameter)`);
        scalars[scalarCount++] = a;
      } else {
        if (!(a instanceof LanesArray)) throw new ShapeError(`compiled function: argument ${i} must be an array`);
        handles[arrayCount++] = BigInt(a.handle());
      }
    }
    const status = native.lanes_plan_run(
      handle,
      (stream ?? currentStream()).handle(),
      arrayCount ? handles : null,
      arrayCount,
      scalarCount ? scalars : null,
      scalarCount,
      outs,
      outs.length,
    );
    // The native call released the donated arrays' handles: their objects are spent.
    for (const i of this.#meta.donate) (args[i] as LanesArray).forget();
    check(status);
    const results: LanesArray[] = new Array(outs.length);
    const outputs = this.#meta.outputs;
    for (let i = 0; i < outs.length; i++) results[i] = new LanesArray(Number(outs[i]!), outputs[i]![1].slice(), outputs[i]![0]);
    return rebuild(this.#meta.result, results);
  }

  /** @internal True when `args` have the kinds, dtypes and shapes this plan was traced for. */
  accepts(args: readonly unknown[]): boolean {
    const kinds = this.#meta.args, inputs = this.#meta.inputs;
    if (args.length !== kinds.length) return false;
    let array = 0;
    for (let i = 0; i < kinds.length; i++) {
      const a = args[i];
      if (kinds[i] === "s") {
        if (typeof a !== "number") return false;
        continue;
      }
      const want = inputs[array++]!;
      if (!(a instanceof LanesArray) || a.dtype !== want[0] || !sameShape(a.shape, want[1])) return false;
    }
    return true;
  }

  /** True once {@link Plan.dispose} ran. */
  get disposed(): boolean {
    return this.#disposed;
  }

  #handle(): number {
    if (this.#disposed) throw new DisposedError(`plan ${this.id} was disposed`);
    return this.id;
  }

  /** Releases this reference; replays in flight finish first. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    check(native.lanes_plan_release(this.id));
  }

  /** Same as {@link Plan.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Adopts a plan made elsewhere (another Worker) by its id. Takes a reference of its own, so
 * neither side frees it under the other.
 */
export function planFromId(id: number): Plan {
  check(native.lanes_plan_retain(id));
  return new Plan(id);
}

/**
 * A compiled function: call it like the function it was made from. Also a Disposable that
 * frees its plans.
 */
export interface CompiledFunction<A extends unknown[], R extends CompiledResult> extends Disposable {
  (...args: A): R;
  /** The plan for these arguments' shapes and dtypes (traced now if it was not yet). */
  plan(...args: A): Plan;
  /** Plans currently kept (one per distinct argument shapes and dtypes). */
  readonly planCount: number;
  /** Frees every plan; a later call traces again. */
  dispose(): void;
}

/**
 * Compiles `fn`, a function of arrays (and of numbers at the indices `opts.scalars` names).
 * On the first call for a given set of argument shapes and dtypes, `fn` is traced with stand-ins
 * into an immutable plan: the ops in order with their kernels resolved, and an arena for
 * intermediates laid out by their lifetimes. A chain of float32 elementwise ops whose
 * intermediates nothing else reads runs as one kernel computing each op as it would alone
 * (`LANES_FUSE=0` keeps every op its own kernel). Arrays `fn` closes over (weights) are captured by
 * reference as constants. Every later call with those shapes replays the plan with one native
 * call on the current stream, building no per-op objects; calls from several Workers (each
 * with a plan of its own, or one adopted by id) run at once on their own streams. Results are
 * bitwise equal to running `fn` eagerly. A plan takes its arguments as row-major values: for an
 * argument that is a view (transposed, sliced, broadcast) it equals `fn` on a row-major copy of
 * it, which on a GPU may round differently from `fn` on the view itself (cuBLAS reads a
 * transposed operand in place).
 */
export function compile<A extends unknown[], R extends CompiledResult>(
  fn: (...args: A) => R,
  opts?: CompileOptions,
): CompiledFunction<A, R> {
  const scalarArgs = new Set(opts?.scalars ?? []);
  const donate = new Set(opts?.donate ?? []);
  const maxPlans = Math.max(1, opts?.maxPlans ?? 16);
  const plans = new Map<string, Plan>();
  let mostRecent: Plan | undefined; // the last entry of `plans`: a call for it reorders nothing
  let disposed = false;

  const keyOf = (args: readonly unknown[]): string => {
    let key = "";
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (scalarArgs.has(i)) {
        if (typeof a !== "number") throw new ShapeError(`compiled function: argument ${i} must be a number (opts.scalars lists it)`);
        key += "s;";
        continue;
      }
      if (!(a instanceof LanesArray)) throw new ShapeError(`compiled function: argument ${i} must be an array (or list it in opts.scalars)`);
      key += `${a.dtype}[${a.shape.join(",")}];`;
    }
    return key;
  };

  const trace = (args: readonly unknown[]): Plan => {
    const placeholders: LanesArray[] = [];
    let scalarIndex = 0;
    const stand = args.map((a, i) => {
      if (scalarArgs.has(i)) return new Scalar(scalarIndex++, a as number);
      const x = a as LanesArray;
      const dims = shapeBuffer(x.shape, "compile");
      const p = new LanesArray(
        callForHandle(native.lanes_array_placeholder(dtypeCode(x.dtype as DType), dims.length ? dims : null, dims.length, outPtr)),
      );
      // A reference of the trace's own: `fn` may dispose its argument (a consumed cache).
      check(native.lanes_array_retain(p.id));
      placeholders.push(p);
      return p;
    });
    const meta: Meta = {
      args: args.map((_, i) => (scalarArgs.has(i) ? "s" : "a")).join(""),
      donate: [...donate],
      result: 0,
      inputs: placeholders.map((p) => [p.dtype, [...p.shape]]),
      outputs: [],
    };
    let id = 0;
    try {
      // Everything the trace makes is disposed when it ends: the plan holds what it needs.
      tidy(() => {
        const outputs: LanesArray[] = [];
        meta.result = flatten(fn(...(stand as A)), outputs);
        meta.outputs = outputs.map((o) => [o.dtype, [...o.shape]]);
        const arrayArgs = args.map((_, i) => i).filter((i) => !scalarArgs.has(i));
        const donateMask = Uint8Array.from(arrayArgs, (i) => (donate.has(i) ? 1 : 0));
        const ins = BigUint64Array.from(placeholders, (p) => BigInt(p.id));
        const outs = BigUint64Array.from(outputs, (o) => BigInt(o.handle()));
        const text = new TextEncoder().encode(`${JSON.stringify(meta)}\0`);
        id = callForHandle(
          native.lanes_plan_new(ins.length ? ins : null, ins.length, outs, outs.length, scalarIndex, donateMask.length ? donateMask : null, text, outPtr),
        );
      });
    } finally {
      for (const p of placeholders) {
        p.dispose();
        native.lanes_array_release(p.id);
      }
    }
    return new Plan(id);
  };

  const planFor = (args: readonly unknown[]): Plan => {
    if (disposed) throw new DisposedError("compiled function was disposed");
    if (args.length < fn.length) throw new ShapeError(`compiled function: ${args.length} arguments, it takes ${fn.length}`);
    if (mostRecent?.accepts(args)) return mostRecent;
    const key = keyOf(args);
    let plan = plans.get(key);
    if (plan) {
      if (plan === mostRecent) return plan;
      plans.delete(key); // most recently used goes last
    } else {
      plan = trace(args);
      while (plans.size >= maxPlans) {
        const [oldest, evicted] = plans.entries().next().value as [string, Plan];
        plans.delete(oldest);
        evicted.dispose();
      }
    }
    plans.set(key, plan);
    mostRecent = plan;
    return plan;
  };

  const compiled = ((...args: A): R => planFor(args).run(args as unknown as (LanesArray | number)[]) as R) as CompiledFunction<A, R>;
  Object.defineProperty(compiled, "planCount", { get: () => plans.size });
  compiled.plan = (...args: A) => planFor(args);
  compiled.dispose = () => {
    disposed = true;
    for (const p of plans.values()) p.dispose();
    plans.clear();
    mostRecent = undefined;
  };
  compiled[Symbol.dispose] = () => compiled.dispose();
  return compiled;
}

