/**
 * Scalar parameters of compiled functions.
 * @module
 */

/**
 * A number that changes from call to call of a compiled function (a decode position, a cache
 * length): while the function is traced it stands in for the number, and each call passes the
 * value itself. Ops that take a scalar accept it: arithmetic with arrays, `rope`'s offset,
 * `scaledDotProductAttention`'s key length, `sliceUpdate`'s offset.
 */
export class Scalar {
  /** @internal Made by `compile` while tracing. */
  constructor(
    /** Which scalar argument of the compiled function this is (0-based, among the scalars). */
    readonly index: number,
    /**
     * The value of the call being traced. It decides what only a value can (a scalar's type
     * with an int32 array: integral values keep int32); replays must keep that kind.
     */
    readonly traced: number,
  ) {}
}
