/**
 * API-key access control, as llama-server and vLLM offer it: `Authorization: Bearer <key>`,
 * compared in constant time over equal-length digests, so neither the key's length nor its
 * content shows in the response time.
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";

const digest = (text: string) => createHash("sha256").update(text).digest();

/** A check of a request's bearer token against `apiKey` (a non-empty string). */
export function bearerCheck(apiKey: string): (req: Request) => boolean {
  if (apiKey.length === 0) throw new TypeError("the API key must not be empty");
  const expected = digest(apiKey);
  return (req) => {
    const match = /^Bearer +(\S+) *$/i.exec(req.headers.get("authorization") ?? "");
    const given = digest(match?.[1] ?? "");
    return timingSafeEqual(given, expected) && match !== null;
  };
}
