import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RoomStatusSchema } from "../../gen/handshake/v1/events_pb.js";
import { RoomEventLog, type PanelEventInit } from "../../src/events/event-log.js";

const status = (n: number): PanelEventInit => ({ event: { case: "roomStatus", value: create(RoomStatusSchema, { roomId: `r${n}` }) } });

describe("PanelStream queue depth (handshake_panel_stream_queue_depth_max reads it at scrape)", () => {
  it("is what the reader furthest behind has queued, and drops back when that reader catches up or is reset", async () => {
    const log = new RoomEventLog({ roomId: "r", capacity: 1000, subscriberQueueSize: 8 });
    const controller = new AbortController();
    expect(log.deepestQueue).toBe(0);
    const slow = log.subscribe(0n, "u1", controller.signal);
    const fast = log.subscribe(0n, "u2", controller.signal);
    const [firstSlow, firstFast] = [slow.next(), fast.next()];
    log.append(status(1));
    await Promise.all([firstSlow, firstFast]);
    for (let i = 2; i <= 6; i++) log.append(status(i));
    expect(log.deepestQueue).toBe(5);
    for (let i = 0; i < 5; i++) await fast.next();
    expect(log.deepestQueue).toBe(5);
    for (let i = 0; i < 5; i++) await slow.next();
    expect(log.deepestQueue).toBe(0);
    // Both fall 8 behind: each is ended (a reset) with its queue dropped, so nothing counts.
    for (let i = 7; i <= 20; i++) log.append(status(i));
    await expect(slow.next()).rejects.toThrow(/fell more than 8 events behind/);
    expect(log.deepestQueue).toBe(0);
    controller.abort();
  });
});
