/**
 * The service's lifecycle: requests in flight (a streamed response counts until its stream
 * ends), and a drain that stops new requests and resolves when the last one is done.
 * @module
 */

/** Counts requests in flight; {@link Lifecycle.drain} waits for them. */
export class Lifecycle {
  #inFlight = 0;
  #draining = false;
  #idle: (() => void)[] = [];

  /** `onChange` sees the count after each change (for the in-flight gauge). */
  constructor(private readonly onChange: (inFlight: number) => void = () => {}) {}

  /** True once a drain began: new requests are refused. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Requests being served. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Counts a request in; the returned function counts it out (once, however often called). */
  enter(): () => void {
    this.#inFlight++;
    this.onChange(this.#inFlight);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#inFlight--;
      this.onChange(this.#inFlight);
      if (this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
    };
  }

  /** Refuses new requests from now on and resolves when none is in flight. */
  drain(): Promise<void> {
    this.#draining = true;
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }
}
