/**
 * A byte-level tokenizer: token i < 256 is the byte i of the UTF-8 text; 256 is BOS. Any text
 * round-trips, so text prompts work with every model without a vocabulary file.
 * @module
 */

/** Vocabulary size: 256 bytes and BOS. */
export const byteVocab = 257;
/** The beginning-of-sequence token. */
export const bos = 256;

/** Text to tokens, BOS first. */
export function encode(text: string): number[] {
  return [bos, ...new TextEncoder().encode(text)];
}

/** Tokens to text (BOS and anything past a byte are skipped; invalid UTF-8 becomes U+FFFD). */
export function decode(tokens: readonly number[]): string {
  return new TextDecoder().decode(Uint8Array.from(tokens.filter((t) => t >= 0 && t < 256)));
}
