// The URL a service child process prints on start-up, read from its stdout.
import type { Subprocess } from "bun";

/** Reads `proc`'s stdout until it prints an http:// URL; throws with its stderr if it exits first. */
export async function serviceUrl(proc: Subprocess<"ignore" | "pipe" | "inherit", "pipe", "pipe">, what: string): Promise<string> {
  const reader = proc.stdout.getReader();
  const pattern = /http:\/\/[\w.]+:\d+/;
  let text = "";
  while (!pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${what} exited early: ${await new Response(proc.stderr).text()}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return pattern.exec(text)![0];
}
