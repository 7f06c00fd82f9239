/**
 * Stop strings on streamed text: text is released only once it can no longer be the start of a
 * stop string, and a stop string itself is never released.
 * @module
 */

/** Filters streamed text against a set of stop strings. */
export class StopStringFilter {
  #held = "";
  #stopped = false;

  constructor(readonly stops: readonly string[]) {}

  /** True once a stop string was seen; everything after it is dropped. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Adds `text`; returns the text that is safe to release now. */
  push(text: string): string {
    if (this.#stopped) return "";
    const pending = this.#held + text;
    let end = -1;
    for (const s of this.stops) {
      const at = pending.indexOf(s);
      if (at >= 0 && (end < 0 || at < end)) end = at;
    }
    if (end >= 0) {
      this.#stopped = true;
      this.#held = "";
      return pending.slice(0, end);
    }
    const hold = this.#longestStopPrefixSuffix(pending);
    this.#held = pending.slice(pending.length - hold);
    return pending.slice(0, pending.length - hold);
  }

  /** The end of the text: releases what was held back (it did not become a stop string). */
  flush(): string {
    const rest = this.#stopped ? "" : this.#held;
    this.#held = "";
    return rest;
  }

  // The longest suffix of `text` that some stop string starts with (a stop string could still complete).
  #longestStopPrefixSuffix(text: string): number {
    const longest = Math.min(text.length, Math.max(0, ...this.stops.map((s) => s.length - 1)));
    for (let k = longest; k > 0; k--) {
      const suffix = text.slice(text.length - k);
      if (this.stops.some((s) => s.startsWith(suffix))) return k;
    }
    return 0;
  }
}
