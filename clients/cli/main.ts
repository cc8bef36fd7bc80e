import { runCli } from "./cli.js";

/*
 * The native command-line participant: `node --import tsx clients/cli/main.ts --help`.
 * Ctrl-C leaves the room cleanly; a second Ctrl-C exits at once.
 */

const stop = new AbortController();
process.on("SIGINT", () => {
  if (stop.signal.aborted) process.exit(130);
  stop.abort(new Error("interrupted"));
});
process.on("SIGTERM", () => stop.abort(new Error("terminated")));

const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  signal: stop.signal,
});
process.exit(code);
