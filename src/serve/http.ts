/**
 * HTTP pieces the routes share: typed errors and their two JSON shapes (lanes' own
 * `{"error": "..."}` and OpenAI's `{"error": {message, type, param, code}}`), JSON bodies read
 * under a size cap, and Server-Sent Events.
 * @module
 */

/** How a route renders its errors. */
export type ErrorStyle = "lanes" | "openai";

/** An error with its HTTP status; `param` and `code` go into OpenAI's error JSON. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: number,
    message: string,
    readonly details: { param?: string; code?: string; headers?: Record<string, string> } = {},
  ) {
    super(message);
  }
}

/** A JSON response. */
export function json(value: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json", ...headers } });
}

const openAiTypes: Record<number, string> = {
  401: "authentication_error",
  404: "invalid_request_error",
  405: "invalid_request_error",
  413: "invalid_request_error",
  429: "rate_limit_error",
  499: "cancelled",
  503: "server_error",
  504: "timeout_error",
};

/** The body of an error in `style`. */
export function errorBody(style: ErrorStyle, status: number, message: string, details: HttpError["details"] = {}): unknown {
  if (style === "lanes") return { error: message };
  const type = openAiTypes[status] ?? (status < 500 ? "invalid_request_error" : "server_error");
  return { error: { message, type, param: details.param ?? null, code: details.code ?? null } };
}

/** An error response in `style`. */
export function errorResponse(style: ErrorStyle, status: number, message: string, details: HttpError["details"] = {}): Response {
  return json(errorBody(style, status, message, details), status, details.headers);
}

/**
 * The request's body parsed as JSON, refused with 413 past `maxBytes` (by its declared length,
 * or while it arrives) and with 400 when it is not JSON.
 */
export async function readJsonBody(req: Request, maxBytes: number): Promise<unknown> {
  const tooLarge = () => new HttpError(413, `request body larger than ${maxBytes} bytes (--max-body-bytes)`, { code: "request_too_large" });
  if (Number(req.headers.get("content-length") ?? 0) > maxBytes) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      size += r.value.byteLength;
      if (size > maxBytes) {
        await reader.cancel();
        throw tooLarge();
      }
      chunks.push(r.value);
    }
  }
  const text = new TextDecoder().decode(Buffer.concat(chunks));
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "body is not valid JSON", { code: "invalid_json" });
  }
}

/** Sends events to an SSE response; a send after the client left is dropped. */
export interface EventSink {
  /** Sends `data: <value as JSON>`. */
  send(value: unknown): void;
  /** Sends `data: [DONE]`. */
  done(): void;
  /** Ends the response. */
  close(): void;
}

/**
 * A Server-Sent Events response and the sink that feeds it, usable at once (what is sent
 * before the response's stream starts is kept for it). `onCancel` runs if the client goes away.
 */
export function sseStream(onCancel: () => void): { response: Response; sink: EventSink } {
  const encoder = new TextEncoder();
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  let pending: Uint8Array[] = [];
  let open = true;
  let closing = false;
  const finish = () => {
    try {
      controller!.close();
    } catch {
      // The client is gone.
    }
  };
  const write = (text: string) => {
    if (!open || closing) return;
    const bytes = encoder.encode(text);
    if (!controller) return void pending.push(bytes);
    try {
      controller.enqueue(bytes);
    } catch {
      open = false;
    }
  };
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      for (const bytes of pending) c.enqueue(bytes);
      pending = [];
      if (closing) finish();
    },
    cancel() {
      open = false;
      onCancel();
    },
  });
  const sink: EventSink = {
    send: (value) => write(`data: ${JSON.stringify(value)}\n\n`),
    done: () => write("data: [DONE]\n\n"),
    close() {
      closing = true;
      if (controller) finish();
    },
  };
  return { response: new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } }), sink };
}
