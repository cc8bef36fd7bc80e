import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RoomStatusSchema, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { AgentMessageSchema } from "../../gen/handshake/v1/events_pb.js";
import { EventLogClosedError, RoomEventLog, SubscriberOverflowError, type PanelEventInit } from "../../src/events/event-log.js";

const status = (n: number): PanelEventInit => ({ event: { case: "roomStatus", value: create(RoomStatusSchema, { roomId: `r${n}` }) } });
const privateTo = (userId: string): PanelEventInit => ({
  visibleToUserId: userId,
  event: { case: "agentMessage", value: create(AgentMessageSchema, { userId, text: "hi" }) },
});

async function take(iterator: AsyncGenerator<PanelEvent>, n: number): Promise<PanelEvent[]> {
  const out: PanelEvent[] = [];
  while (out.length < n) {
    const next = await iterator.next();
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

describe("RoomEventLog", () => {
  it("numbers events from 1 in order and resumes after a sequence number", async () => {
    const log = new RoomEventLog({ roomId: "r", capacity: 100, subscriberQueueSize: 10, now: () => 1000 });
    for (let i = 1; i <= 5; i++) log.append(status(i));
    expect(log.latestSeq).toBe(5n);
    const controller = new AbortController();
    const resumed = await take(log.subscribe(3n, "u1", controller.signal), 2);
    expect(resumed.map((e) => e.seq)).toEqual([4n, 5n]);
    expect(resumed[0]?.atMs).toBe(1000n);
    expect(resumed[0]?.roomId).toBe("r");
  });

  it("delivers live events after the backlog, then ends quietly on abort", async () => {
    const log = new RoomEventLog({ roomId: "r", capacity: 100, subscriberQueueSize: 10 });
    log.append(status(1));
    const controller = new AbortController();
    const iterator = log.subscribe(0n, "u1", controller.signal);
    const first = await iterator.next();
    expect(first.value?.seq).toBe(1n);
    const pending = iterator.next();
    log.append(status(2));
    expect((await pending).value?.seq).toBe(2n);
    const ended = iterator.next();
    controller.abort();
    expect((await ended).done).toBe(true);
    expect(log.subscriberCount).toBe(0);
  });

  it("keeps only the newest `capacity` events", () => {
    const log = new RoomEventLog({ roomId: "r", capacity: 10, subscriberQueueSize: 10 });
    for (let i = 1; i <= 35; i++) log.append(status(i));
    const held = log.since(0n, "u1");
    expect(held).toHaveLength(10);
    expect(held[0]?.seq).toBe(26n);
    expect(held.at(-1)?.seq).toBe(35n);
  });

  it("shows a user's private events only to that user", () => {
    const log = new RoomEventLog({ roomId: "r", capacity: 10, subscriberQueueSize: 10 });
    log.append(status(1));
    log.append(privateTo("u1"));
    log.append(status(3));
    expect(log.since(0n, "u1").map((e) => e.seq)).toEqual([1n, 2n, 3n]);
    expect(log.since(0n, "u2").map((e) => e.seq)).toEqual([1n, 3n]);
  });

  it("ends a reader that falls behind with SubscriberOverflowError, without growing its queue", async () => {
    const log = new RoomEventLog({ roomId: "r", capacity: 1000, subscriberQueueSize: 4 });
    const controller = new AbortController();
    const slow = log.subscribe(0n, "u1", controller.signal);
    const fast = log.subscribe(0n, "u2", controller.signal);
    const firstFast = fast.next();
    const firstSlow = slow.next();
    log.append(status(1));
    await firstFast;
    await firstSlow;
    for (let i = 2; i <= 20; i++) log.append(status(i));
    await expect(take(slow, 10)).rejects.toBeInstanceOf(SubscriberOverflowError);
    controller.abort();
  });

  it("continues numbering from a restored log and persists new events in batches", async () => {
    const batches: bigint[][] = [];
    const log = new RoomEventLog({
      roomId: "r",
      capacity: 10,
      subscriberQueueSize: 10,
      restored: { lastSeq: 7n, events: [] },
      persist: (events) => batches.push(events.map((e) => e.seq)),
    });
    log.append(status(1));
    log.append(status(2));
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toEqual([[8n, 9n]]);
  });

  it("ends every reader with the close reason and refuses appends after close", async () => {
    const log = new RoomEventLog({ roomId: "r", capacity: 10, subscriberQueueSize: 10 });
    const iterator = log.subscribe(0n, "u1", new AbortController().signal);
    const pending = iterator.next();
    log.close(new EventLogClosedError("server is shutting down"));
    await expect(pending).rejects.toThrow("server is shutting down");
    expect(() => log.append(status(1))).toThrow(EventLogClosedError);
    log.close();
  });

  it("pushes to a listener: the backlog after a seq, then live events it may see, bounded by what it has not handed on", () => {
    const log = new RoomEventLog({ roomId: "r", capacity: 100, subscriberQueueSize: 3 });
    log.append(status(1));
    log.append(status(2));
    const got: bigint[] = [];
    let held = 0;
    let ended: Error | undefined;
    const stop = log.listen(1n, "u1", {
      queued: () => held,
      event: (e) => got.push(e.seq),
      ended: (reason) => (ended = reason),
    });
    expect(got).toEqual([2n]);
    log.append(privateTo("u2"));
    log.append(privateTo("u1"));
    expect(got).toEqual([2n, 4n]);
    // The transport stops taking events: past the backlog it had plus the queue size, it is ended.
    held = 1 + 3;
    log.append(status(5));
    expect(ended).toBeInstanceOf(SubscriberOverflowError);
    expect(ended?.message).toBe("panel stream fell more than 3 events behind; resume from seq 4");
    expect(log.subscriberCount).toBe(0);
    stop();

    const other: bigint[] = [];
    let closedWith: Error | undefined;
    log.listen(log.latestSeq, "u1", { queued: () => 0, event: (e) => other.push(e.seq), ended: (reason) => (closedWith = reason) });
    log.append(status(6));
    log.close(new EventLogClosedError("room closed"));
    expect(other).toEqual([6n]);
    expect(closedWith).toBeInstanceOf(EventLogClosedError);
    expect(log.subscriberCount).toBe(0);
  });
});
