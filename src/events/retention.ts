import type { Logger } from "pino";
import type { Store } from "../store/store.js";

/** Options of `startLogRetention`. */
export interface LogRetentionOptions {
  store: Store;
  /** A room's stored log is deleted this long after its last event, unless the room is live. */
  retentionMs: number;
  /** How often to sweep; default the retention period, at most an hour. */
  intervalMs?: number;
  /** Rooms live on this node: never swept, however quiet. */
  isLive(roomId: string): boolean;
  log: Logger;
  now?: () => number;
}

/** The periodic sweep of ended rooms' logs. */
export interface LogRetention {
  /** Sweeps now; resolves with the rooms whose logs were deleted. A sweep already running is joined. */
  sweep(): Promise<string[]>;
  /** Stops the timer; safe to call twice. */
  stop(): void;
}

/**
 * Deletes the stored event logs, transcripts included, of rooms that ended (not live, no event
 * for `retentionMs`): once at start, then every `intervalMs`. The timer never keeps the process
 * alive; the rooms' seq marks stay, so a code used again numbers on and no seq is reused.
 */
export function startLogRetention(options: LogRetentionOptions): LogRetention {
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? Math.min(options.retentionMs, 3_600_000);
  let running: Promise<string[]> | undefined;
  let stopped = false;

  function sweep(): Promise<string[]> {
    running ??= (async () => {
      try {
        const swept = await options.store.deleteRoomLogsBefore(now() - options.retentionMs, options.isLive);
        if (swept.length > 0) options.log.info({ rooms: swept.length, retentionMs: options.retentionMs }, "ended rooms' logs deleted");
        return swept;
      } finally {
        running = undefined;
      }
    })();
    return running;
  }

  const run = () => {
    if (stopped) return;
    sweep().catch((err: unknown) => options.log.error({ err }, "room log retention sweep failed"));
  };
  const first = setTimeout(run, 0).unref();
  const timer = setInterval(run, intervalMs).unref();
  return {
    sweep,
    stop() {
      stopped = true;
      clearTimeout(first);
      clearInterval(timer);
    },
  };
}
