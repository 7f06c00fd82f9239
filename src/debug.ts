/**
 * Test-only hooks. They work only when the process started with LANES_FAULT_INJECTION=1 in its
 * environment, and throw otherwise.
 * @module
 */
import { check, native } from "./native.ts";
import type { Stream } from "./stream.ts";

/** The next `count` submission epochs committed on `stream` fail as a device would fail them. */
export function failNextEpochs(stream: Stream, count = 1): void {
  check(native.lanes_debug_fail_next_epochs(stream.handle(), count));
}

/** Holds back (paused) or releases a stream's committed work, to exercise waits and the watchdog. */
export function pauseStream(stream: Stream, paused: boolean): void {
  check(native.lanes_debug_pause_stream(stream.handle(), paused ? 1 : 0));
}
