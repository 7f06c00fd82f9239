/**
 * A route of the service: method, path, how its errors look, and its handler.
 * @module
 */
import type { Call } from "../call.ts";
import type { ErrorStyle } from "../http.ts";

/** One endpoint. */
export interface Route {
  method: "GET" | "POST";
  path: string;
  /** The JSON shape of its errors. */
  style: ErrorStyle;
  /** Served without the API key (only `/healthz`). */
  public?: boolean;
  handle(call: Call): Response | Promise<Response>;
}
