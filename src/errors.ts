import { Status } from "./abi.ts";

export { Status };

/** A status code name, as carried by {@link LanesError.code}. */
export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "SHAPE"
  | "DTYPE"
  | "INVALID_HANDLE"
  | "DISPOSED"
  | "DEVICE"
  | "OUT_OF_MEMORY"
  | "INTERNAL";

/** Base class of every error lanes throws. `code` names the failure kind. */
export class LanesError extends Error {
  /** The failure kind. */
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Shapes that don't broadcast, axes out of range, bad dimensions. */
export class ShapeError extends LanesError {
  constructor(message: string) {
    super("SHAPE", message);
  }
}

/** An unsupported dtype or dtype combination. */
export class DTypeError extends LanesError {
  constructor(message: string) {
    super("DTYPE", message);
  }
}

/** A handle that is freed, stale, garbage or from another process. */
export class InvalidHandleError extends LanesError {
  constructor(message: string) {
    super("INVALID_HANDLE", message);
  }
}

/** Use of an array or stream after `dispose()`. */
export class DisposedError extends LanesError {
  constructor(message: string) {
    super("DISPOSED", message);
  }
}

/** Work failed on the device (or on the CPU backend's executor). */
export class DeviceError extends LanesError {
  constructor(message: string) {
    super("DEVICE", message);
  }
}

/** The memory limit or the device's memory was exceeded. */
export class OutOfMemoryError extends LanesError {
  constructor(message: string) {
    super("OUT_OF_MEMORY", message);
  }
}

/** Builds the typed error for a non-zero status code. */
export function errorFor(status: number, message: string): LanesError {
  switch (status) {
    case Status.shape:
      return new ShapeError(message);
    case Status.dtype:
      return new DTypeError(message);
    case Status.invalidHandle:
      return new InvalidHandleError(message);
    case Status.disposed:
      return new DisposedError(message);
    case Status.device:
      return new DeviceError(message);
    case Status.outOfMemory:
      return new OutOfMemoryError(message);
    case Status.invalidArgument:
      return new LanesError("INVALID_ARGUMENT", message);
    default:
      return new LanesError("INTERNAL", message);
  }
}
