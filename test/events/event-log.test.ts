import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { PanelEventSchema, RoomStatusSchema, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { TranscriptEntrySchema } from "../../gen/handshake/v1/transcript_pb.js";
import { AgentMessageSchema } from "../../gen/handshake/v1/events_pb.js";
import { EventLogClosedError, RoomEventLog, SubscriberOverflowError, type PanelEventInit } from "../../src/events/event-log.js";

const status = (n: number): PanelEventInit => ({ event: { case: "roomStatus", value: create(RoomStatusSchema, { roomId: `r${n}` }) } });
const transcript = (text: string, isFinal: boolean): PanelEventInit => ({
  event: { case: "transcript", value: create(TranscriptEntrySchema, { id: "tr_1", speakerUserId: "u1", text, isFinal }) },
});
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

  it("continues numbering from a restored log and stores each event before any reader sees it", () => {
    const stored: bigint[] = [];
    const seenWhenStored: number[] = [];
    const got: bigint[] = [];
    const log = new RoomEventLog({
      roomId: "r",
      capacity: 10,
      subscriberQueueSize: 10,
      restored: { lastSeq: 7n, events: [] },
      persist: (event) => {
        stored.push(event.seq);
        seenWhenStored.push(got.length);
      },
    });
    log.listen(0n, "u1", { queued: () => 0, event: (e) => got.push(e.seq), ended: () => {} });
    log.append(status(1));
    log.append(status(2));
    // Stored synchronously, each before it was delivered: a crash after a delivery loses nothing.
    expect(stored).toEqual([8n, 9n]);
    expect(seenWhenStored).toEqual([0, 1]);
    expect(got).toEqual([8n, 9n]);
  });

  it("refuses an event it could not store: nobody sees it and its seq is not used", () => {
    let failing = true;
    const log = new RoomEventLog({
      roomId: "r",
      capacity: 10,
      subscriberQueueSize: 10,
      persist: () => {
        if (failing) throw new Error("disk full");
      },
    });
    const got: bigint[] = [];
    log.listen(0n, "u1", { queued: () => 0, event: (e) => got.push(e.seq), ended: () => {} });
    expect(() => log.append(status(1))).toThrow("disk full");
    expect(got).toEqual([]);
    expect(log.latestSeq).toBe(0n);
    failing = false;
    expect(log.append(status(2)).seq).toBe(1n);
    expect(got).toEqual([1n]);
  });

  it("delivers partial transcripts live but keeps only finals, and only records a partial's seq", () => {
    const writes: [bigint, boolean][] = [];
    const log = new RoomEventLog({ roomId: "r", capacity: 3, subscriberQueueSize: 100, persist: (event, kept) => writes.push([event.seq, kept]) });
    const live: bigint[] = [];
    log.listen(0n, "u1", { queued: () => 0, event: (e) => live.push(e.seq), ended: () => {} });
    log.append(status(1));
    for (let i = 0; i < 20; i++) log.append(transcript(`partial ${i}`, false));
    log.append(transcript("final words", true));
    expect(live).toHaveLength(22);
    expect(writes.filter(([, kept]) => !kept)).toHaveLength(20);
    // Twenty partials did not push the room's status out of a window of three.
    expect(log.since(0n, "u1").map((e) => e.seq)).toEqual([1n, 22n]);
    expect(log.trimmedThroughSeq).toBe(0n);
    // Resuming from inside the partials is no gap: they are never kept.
    expect(log.since(5n, "u1").map((e) => e.seq)).toEqual([22n]);
    const resumed: PanelEvent[] = [];
    log.listen(5n, "u1", { queued: () => 0, event: (e) => resumed.push(e), ended: () => {} });
    expect(resumed.map((e) => e.event.case)).toEqual(["transcript"]);
  });

  it("tells a reader resuming from before the kept window about the gap, first, then goes on", async () => {
    const log = new RoomEventLog({ roomId: "r", capacity: 10, subscriberQueueSize: 10, now: () => 5 });
    for (let i = 1; i <= 35; i++) log.append(status(i));
    expect(log.trimmedThroughSeq).toBe(25n);
    const controller = new AbortController();
    const resumed = await take(log.subscribe(3n, "u1", controller.signal), 11);
    expect(resumed[0]?.event).toEqual({ case: "gap", value: expect.objectContaining({ afterSeq: 3n, lastMissingSeq: 25n }) });
    expect(resumed[0]?.seq).toBe(25n);
    expect(resumed.slice(1).map((e) => e.seq)).toEqual([26n, 27n, 28n, 29n, 30n, 31n, 32n, 33n, 34n, 35n]);
    controller.abort();
    // At the window's edge, from 0 (whatever is held) or from inside it: no gap.
    for (const after of [25n, 0n, 30n]) {
      const got: PanelEvent[] = [];
      const stop = log.listen(after, "u1", { queued: () => 0, event: (e) => got.push(e), ended: () => {} });
      expect(got.some((e) => e.event.case === "gap")).toBe(false);
      stop();
    }
  });

  it("reports what a restarted room no longer has as a gap", () => {
    const kept = [27n, 28n].map((seq) => create(PanelEventSchema, { seq, roomId: "r", event: status(Number(seq)).event }));
    const log = new RoomEventLog({ roomId: "r", capacity: 10, subscriberQueueSize: 10, restored: { lastSeq: 30n, events: kept, trimmedThroughSeq: 26n } });
    const got: PanelEvent[] = [];
    log.listen(12n, "u1", { queued: () => 0, event: (e) => got.push(e), ended: () => {} });
    expect(got.map((e) => [e.event.case, e.seq])).toEqual([
      ["gap", 26n],
      ["roomStatus", 27n],
      ["roomStatus", 28n],
    ]);
    expect(log.append(status(31)).seq).toBe(31n);
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
