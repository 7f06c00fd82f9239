/**
 * Arrays: immutable, lazily computed nodes of a graph, held by handle.
 * @module
 */
import { dtypes, type DType } from "./abi.ts";
import { DisposedError, ShapeError, DTypeError } from "./errors.ts";
import { callForHandle, check, native, outPtr } from "./native.ts";

export type { DType, ElementDType } from "./abi.ts";

const dtypeNames = Object.keys(dtypes) as DType[];

/** The typed array {@link LanesArray.toTypedArray} returns for each dtype. */
export type TypedArrayOf = Float32Array | Int32Array | Uint8Array | Uint16Array;

function typedArrayFor(dtype: DType, n: number): TypedArrayOf {
  switch (dtype) {
    case "float32":
      return new Float32Array(n);
    case "int32":
      return new Int32Array(n);
    case "bool":
      return new Uint8Array(n);
    case "float16":
    case "bfloat16":
      return new Uint16Array(n); // bit patterns
    default:
      throw new DTypeError(`${dtype} arrays are read as float32: use toFloat32Array()`);
  }
}

/** @internal */
export function dtypeCode(dtype: DType): number {
  const info = dtypes[dtype];
  if (info === undefined) throw new DTypeError(`unsupported dtype '${String(dtype)}' (have: ${dtypeNames.join(", ")})`);
  return info.code;
}

// What the GC backstop releases. Registering with an unregister token costs about 25× more
// than without one, so dispose() marks the cell instead of unregistering.
interface Held {
  readonly id: number;
  live: boolean;
}

const arrayRegistry = new FinalizationRegistry<Held>((held) => {
  if (held.live) native.lanes_array_release(held.id);
});

// The innermost tidy() scope: arrays made inside are disposed when it ends unless returned.
let scope: LanesArray[] | undefined;

const infoDtype = new Int32Array(1);
const infoNdim = new Int32Array(1);
const infoShape = new BigInt64Array(32);

/** A lazily evaluated n-dimensional array. Dispose it when done (or rely on GC as a backstop). */
export class LanesArray implements Disposable {
  /** The native handle; pass it to another Worker and call {@link arrayFromId} there. */
  readonly id: number;
  #shape: number[] | undefined;
  #dtype: DType | undefined;
  readonly #held: Held;

  /**
   * @internal Arrays come from ops, {@link array} or {@link arrayFromId}. A caller that knows the
   * shape and dtype (a compiled plan's outputs) passes them, so reading them asks nothing of the
   * native side.
   */
  constructor(id: number, shape?: number[], dtype?: DType) {
    this.id = id;
    this.#shape = shape;
    this.#dtype = dtype;
    this.#held = { id, live: true };
    if (scope) scope.push(this);
    else arrayRegistry.register(this, this.#held);
  }

  /** @internal The native side released this handle (a compiled function took it over). */
  forget(): void {
    this.#held.live = false;
  }

  /** @internal Hands a tidy() survivor to the enclosing scope, or to the GC backstop. */
  adopt(): void {
    if (!this.#held.live) return;
    if (scope) scope.push(this);
    else arrayRegistry.register(this, this.#held);
  }

  #loadInfo(): void {
    check(native.lanes_array_info(this.handle(), infoDtype, infoNdim, infoShape, 32));
    const ndim = infoNdim[0]!;
    const shape: number[] = [];
    for (let i = 0; i < ndim; i++) shape.push(Number(infoShape[i]!));
    this.#shape = shape;
    this.#dtype = dtypeNames[infoDtype[0]!]!;
  }

  /** Dimensions. */
  get shape(): readonly number[] {
    if (!this.#shape) this.#loadInfo();
    return this.#shape!;
  }

  /** Element type. */
  get dtype(): DType {
    if (!this.#dtype) this.#loadInfo();
    return this.#dtype!;
  }

  /** Number of dimensions. */
  get ndim(): number {
    return this.shape.length;
  }

  /** Number of elements. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** True once {@link LanesArray.dispose} ran. */
  get disposed(): boolean {
    return !this.#held.live;
  }

  /** @internal The handle, checked for use after dispose. */
  handle(): number {
    if (!this.#held.live) throw new DisposedError(`array ${this.id} was disposed`);
    return this.id;
  }

  /** Evaluates if needed (blocking) and copies the values out as float32 (converting natively). */
  toFloat32Array(): Float32Array {
    return this.#readAs("float32") as Float32Array;
  }

  /** Evaluates if needed (blocking) and copies the values out as int32 (floats truncate and saturate). */
  toInt32Array(): Int32Array {
    return this.#readAs("int32") as Int32Array;
  }

  /**
   * Evaluates if needed (blocking) and returns the natural view for the dtype: Float32Array,
   * Int32Array, Uint8Array for bool, Uint16Array bit patterns for float16 and bfloat16.
   */
  toTypedArray(): TypedArrayOf {
    return this.#read(typedArrayFor(this.dtype, this.size));
  }

  #readAs(dtype: DType): TypedArrayOf {
    if (this.dtype === dtype) return this.toTypedArray();
    const converted = new LanesArray(callForHandle(native.lanes_array_astype(this.handle(), dtypeCode(dtype), 0, outPtr)));
    try {
      return converted.toTypedArray();
    } finally {
      converted.dispose();
    }
  }

  /** The single value of a one-element array. */
  item(): number {
    if (this.size !== 1) throw new ShapeError(`item: array of shape [${this.shape.join(", ")}] has ${this.size} elements`);
    return this.toTypedArray()[0]!;
  }

  #read<T extends TypedArrayOf>(out: T): T {
    check(native.lanes_array_read(this.handle(), out, out.byteLength));
    return out;
  }

  /** Releases this reference; the node lives on while other arrays or Workers use it. Idempotent. */
  dispose(): void {
    if (!this.#held.live) return;
    this.#held.live = false;
    check(native.lanes_array_release(this.id));
  }

  /** Same as {@link LanesArray.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Nested number arrays, as accepted by {@link array}. */
export type NestedNumbers = number | readonly NestedNumbers[];

function inferShape(data: NestedNumbers): number[] {
  const shape: number[] = [];
  let level: NestedNumbers = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    if (level.length === 0) break;
    level = level[0] as NestedNumbers;
  }
  return shape;
}

function flatten(data: NestedNumbers, shape: number[], depth: number, out: number[]): void {
  if (depth === shape.length) {
    if (typeof data !== "number") throw new ShapeError("array: nested data is ragged (inconsistent lengths)");
    out.push(data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth])
    throw new ShapeError("array: nested data is ragged (inconsistent lengths)");
  for (const item of data) flatten(item as NestedNumbers, shape, depth + 1, out);
}

/** @internal Shape as a BigInt64Array for the C ABI, validated. */
export function shapeBuffer(shape: readonly number[], op: string): BigInt64Array {
  const out = new BigInt64Array(shape.length);
  shape.forEach((d, i) => {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new ShapeError(`${op}: dimensions must be non-negative integers, got [${shape.join(", ")}]`);
    out[i] = BigInt(d);
  });
  return out;
}

/**
 * Creates an array from data (copied now). `data` may be a Float32Array, an Int32Array, a
 * Uint8Array (bool), a number, or nested number arrays; `shape` defaults to the data's own
 * shape. A `dtype` other than the data's converts natively (float16/bfloat16 round to nearest
 * even).
 */
export function array(
  data: Float32Array | Int32Array | Uint8Array | NestedNumbers,
  shape?: readonly number[],
  dtype?: DType,
): LanesArray {
  let typed: Float32Array | Int32Array | Uint8Array;
  let inferred: number[];
  if (data instanceof Float32Array || data instanceof Int32Array || data instanceof Uint8Array) {
    typed = data;
    inferred = [data.length];
  } else {
    inferred = inferShape(data);
    const flat: number[] = [];
    flatten(data, inferred, 0, flat);
    typed = dtype === "int32" ? Int32Array.from(flat) : Float32Array.from(flat);
  }
  const own: DType = typed instanceof Int32Array ? "int32" : typed instanceof Uint8Array ? "bool" : "float32";
  const dims = shapeBuffer(shape ?? inferred, "array");
  const id = callForHandle(
    native.lanes_array_from_data(typed.byteLength ? typed : null, typed.byteLength, dtypeCode(own), dims.length ? dims : null, dims.length, outPtr),
  );
  const made = new LanesArray(id);
  if (!dtype || dtype === own) return made;
  // Other dtypes (float16, bfloat16, ...) are converted natively, with its rounding rules.
  const converted = new LanesArray(callForHandle(native.lanes_array_astype(made.id, dtypeCode(dtype), 0, outPtr)));
  made.dispose();
  return converted;
}

/**
 * Creates an array of `dtype` from its raw little-endian storage bytes (copied now): 4 bytes
 * per float32/int32 element, 2 per float16/bfloat16 (bit patterns), 1 per bool (0 or 1).
 * This is how weights stored in half precision load without a float32 detour.
 */
export function arrayFromBytes(bytes: Uint8Array, shape: readonly number[], dtype: DType): LanesArray {
  const dims = shapeBuffer(shape, "array");
  return new LanesArray(
    callForHandle(
      native.lanes_array_from_data(bytes.byteLength ? bytes : null, bytes.byteLength, dtypeCode(dtype), dims.length ? dims : null, dims.length, outPtr),
    ),
  );
}

/** Anything {@link tidy} may return: arrays, possibly inside arrays and plain objects. */
export type Tidied = LanesArray | void | undefined | null | number | string | boolean | readonly Tidied[] | { readonly [key: string]: Tidied };

function collect(value: Tidied, out: Set<LanesArray>): void {
  if (value instanceof LanesArray) out.add(value);
  else if (Array.isArray(value)) for (const v of value) collect(v, out);
  else if (value && typeof value === "object") for (const v of Object.values(value)) collect(v as Tidied, out);
}

/**
 * Runs `fn` and disposes every array it created that it does not return (in an array or a
 * plain object too), so intermediates free their memory when the scope ends rather than when
 * the garbage collector gets to them. Arrays made inside also skip the GC registration. Scopes
 * nest; `fn` must be synchronous.
 */
export function tidy<T extends Tidied>(fn: () => T): T {
  const outer = scope;
  const made: LanesArray[] = [];
  scope = made;
  let result: T;
  try {
    result = fn();
  } catch (error) {
    scope = outer;
    for (const a of made) a.dispose();
    throw error;
  }
  scope = outer;
  const keep = new Set<LanesArray>();
  collect(result, keep);
  for (const a of made) {
    if (keep.has(a)) a.adopt();
    else a.dispose();
  }
  return result;
}

/**
 * Adopts an array made elsewhere (another Worker) by its id. Takes a reference of its own, so
 * neither side frees it under the other.
 */
export function arrayFromId(id: number): LanesArray {
  check(native.lanes_array_retain(id));
  return new LanesArray(id);
}
