import type { PanelEvent } from "../../gen/handshake/v1/events_pb.js";

/** Reads the variable once per process: rooms are made often, the setting never changes. */
let cached: { env: NodeJS.ProcessEnv; hook: ((event: PanelEvent, readers: number) => void) | undefined } | undefined;

/**
 * Crash-test hook. With `HANDSHAKE_KILL_AFTER_EVENT=<case>` (a PanelEvent case, e.g. `transcript`)
 * set, the process SIGKILLs itself right after the first such event was handed to a reader,
 * first printing `kill-point event <seq> <case>` on stderr. Unset, it is undefined: inert in production.
 */
export function deliveryKillPoint(env: NodeJS.ProcessEnv = process.env): ((event: PanelEvent, readers: number) => void) | undefined {
  if (cached?.env === env) return cached.hook;
  const wanted = env.HANDSHAKE_KILL_AFTER_EVENT;
  const hook =
    wanted === undefined || wanted === ""
      ? undefined
      : (event: PanelEvent, readers: number) => {
          if (readers === 0 || event.event.case !== wanted) return;
          // Synchronous on a pipe or file, so the line is out before the signal lands.
          process.stderr.write(`kill-point event ${event.seq} ${wanted}\n`);
          process.kill(process.pid, "SIGKILL");
        };
  cached = { env, hook };
  return hook;
}
