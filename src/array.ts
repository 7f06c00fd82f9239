/**
 * Arrays: immutable, lazily computed nodes of a graph, held by handle.
 * @module
 */
import { DisposedError, ShapeError, DTypeError } from "./errors.ts";
import { callForHandle, check, native, outPtr } from "./native.ts";

/** Element types. */
export type DType = "float32" | "int32";

const dtypeCodes: Record<DType, number> = { float32: 0, int32: 1 };
const dtypeNames: DType[] = ["float32", "int32"];

/** @internal */
export function dtypeCode(dtype: DType): number {
  const code = dtypeCodes[dtype];
  if (code === undefined) throw new DTypeError(`unsupported dtype '${String(dtype)}' (have: float32, int32)`);
  return code;
}

const arrayRegistry = new FinalizationRegistry<number>((id) => {
  native.lanes_array_release(id);
});

const infoDtype = new Int32Array(1);
const infoNdim = new Int32Array(1);
const infoShape = new BigInt64Array(32);

/** A lazily evaluated n-dimensional array. Dispose it when done (or rely on GC as a backstop). */
export class LanesArray implements Disposable {
  /** The native handle; pass it to another Worker and call {@link arrayFromId} there. */
  readonly id: number;
  #shape: number[] | undefined;
  #dtype: DType | undefined;
  #disposed = false;

  /** @internal Arrays come from ops, {@link array} or {@link arrayFromId}. */
  constructor(id: number) {
    this.id = id;
    arrayRegistry.register(this, id, this);
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
    return this.#disposed;
  }

  /** @internal The handle, checked for use after dispose. */
  handle(): number {
    if (this.#disposed) throw new DisposedError(`array ${this.id} was disposed`);
    return this.id;
  }

  /** Evaluates if needed (blocking) and copies the values out as float32. */
  toFloat32Array(): Float32Array {
    if (this.dtype === "float32") return this.#read(new Float32Array(this.size));
    const ints = this.#read(new Int32Array(this.size));
    return Float32Array.from(ints);
  }

  /** Evaluates if needed (blocking) and copies the values out as int32 (truncating floats). */
  toInt32Array(): Int32Array {
    if (this.dtype === "int32") return this.#read(new Int32Array(this.size));
    return Int32Array.from(this.#read(new Float32Array(this.size)), (v) => Math.trunc(v));
  }

  /** Evaluates if needed (blocking) and returns the natural typed array for the dtype. */
  toTypedArray(): Float32Array | Int32Array {
    return this.dtype === "float32" ? this.#read(new Float32Array(this.size)) : this.#read(new Int32Array(this.size));
  }

  /** The single value of a one-element array. */
  item(): number {
    if (this.size !== 1) throw new ShapeError(`item: array of shape [${this.shape.join(", ")}] has ${this.size} elements`);
    return this.toTypedArray()[0]!;
  }

  #read<T extends Float32Array | Int32Array>(out: T): T {
    check(native.lanes_array_read(this.handle(), out, out.byteLength));
    return out;
  }

  /** Releases this reference; the node lives on while other arrays or Workers use it. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    arrayRegistry.unregister(this);
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
 * number, or nested number arrays; `shape` defaults to the data's own shape.
 */
export function array(
  data: Float32Array | Int32Array | NestedNumbers,
  shape?: readonly number[],
  dtype?: DType,
): LanesArray {
  let typed: Float32Array | Int32Array;
  let inferred: number[];
  if (data instanceof Float32Array || data instanceof Int32Array) {
    typed = data;
    inferred = [data.length];
  } else {
    inferred = inferShape(data);
    const flat: number[] = [];
    flatten(data, inferred, 0, flat);
    typed = dtype === "int32" ? Int32Array.from(flat) : Float32Array.from(flat);
  }
  const finalDtype: DType = typed instanceof Int32Array ? "int32" : "float32";
  if (dtype && dtype !== finalDtype) {
    typed = dtype === "int32" ? Int32Array.from(typed, (v) => Math.trunc(v)) : Float32Array.from(typed);
  }
  const dims = shapeBuffer(shape ?? inferred, "array");
  const id = callForHandle(
    native.lanes_array_from_data(
      typed.byteLength ? typed : null,
      typed.byteLength,
      dtypeCode(dtype ?? finalDtype),
      dims.length ? dims : null,
      dims.length,
      outPtr,
    ),
  );
  return new LanesArray(id);
}

/**
 * Adopts an array made elsewhere (another Worker) by its id. Takes a reference of its own, so
 * neither side frees it under the other.
 */
export function arrayFromId(id: number): LanesArray {
  check(native.lanes_array_retain(id));
  return new LanesArray(id);
}
