import type { Client } from "@connectrpc/connect";
import type { PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import type { RoomService } from "../../gen/handshake/v1/room_service_pb.js";

/** A live PanelStream reader that records every event and lets a test await one. */
export interface PanelRecorder {
  events: PanelEvent[];
  /** Resolves with the first recorded event (past or future) that matches. */
  waitFor(match: (event: PanelEvent) => boolean, what?: string): Promise<PanelEvent>;
  stop(): Promise<void>;
}

/** Opens PanelStream for the client's room from `afterSeq` and records what arrives. */
export function recordPanel(room: Client<typeof RoomService>, roomId: string, afterSeq = 0n): PanelRecorder {
  const events: PanelEvent[] = [];
  const waiters: { match: (e: PanelEvent) => boolean; resolve: (e: PanelEvent) => void }[] = [];
  const controller = new AbortController();
  let failure: unknown;
  const failWaiters: ((err: unknown) => void)[] = [];
  const reading = (async () => {
    try {
      for await (const res of room.panelStream({ roomId, afterSeq }, { signal: controller.signal })) {
        if (!res.event) continue;
        events.push(res.event);
        for (const w of [...waiters]) {
          if (w.match(res.event)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(res.event);
          }
        }
      }
    } catch (err) {
      if (!controller.signal.aborted) {
        failure = err;
        for (const fail of failWaiters) fail(err);
      }
    }
  })();
  return {
    events,
    waitFor(match, what = "event") {
      const seen = events.find(match);
      if (seen) return Promise.resolve(seen);
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        waiters.push({ match, resolve });
        failWaiters.push((err) => reject(new Error(`panel stream failed while waiting for ${what}: ${String(err)}`)));
      });
    },
    async stop() {
      controller.abort();
      await reading;
    },
  };
}
