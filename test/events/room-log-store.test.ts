import { create } from "@bufbuild/protobuf";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { PanelEventSchema, RoomStatusSchema, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { TranscriptEntrySchema } from "../../gen/handshake/v1/transcript_pb.js";
import { silentLogger } from "../../src/core/log.js";
import { startLogRetention } from "../../src/events/retention.js";
import type { Store } from "../../src/store/store.js";
import { describeEachStore } from "../support/store-backends.js";

const status = (roomId: string, seq: bigint, atMs = 1_000n): PanelEvent =>
  create(PanelEventSchema, { seq, atMs, roomId, event: { case: "roomStatus", value: create(RoomStatusSchema, { roomId }) } });
const words = (roomId: string, seq: bigint, text: string, isFinal: boolean, atMs = 1_000n): PanelEvent =>
  create(PanelEventSchema, { seq, atMs, roomId, event: { case: "transcript", value: create(TranscriptEntrySchema, { id: "tr_1", text, isFinal }) } });

// On SQLite recordRoomEvent commits before it returns; on PostgreSQL its promise settles once committed.
describeEachStore((target) => {
  const stores: Store[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });

  async function open(): Promise<Store> {
    const store = await target.open();
    stores.push(store);
    return store;
  }

  /** recordRoomEvent's failure, thrown (SQLite) or rejected (PostgreSQL), as a rejection. */
  const recorded = (write: () => void | Promise<void>) => Promise.resolve().then(write);

  describe("a room's stored event log", () => {
    it("is committed when recordRoomEvent returns, and a partial transcript only raises the seq mark", async () => {
      const store = await open();
      const first = store.recordRoomEvent("r1", status("r1", 1n), { keep: 100 });
      if (target.kind === "sqlite") {
        // Another connection sees the row at once: nothing waits for a later tick.
        const db = new Database(target.location().databasePath, { readonly: true });
        try {
          expect(first).toBeUndefined();
          expect((db.prepare("SELECT seq FROM room_events WHERE room_id = 'r1' ORDER BY seq").all() as { seq: number }[]).map((r) => r.seq)).toEqual([1]);
        } finally {
          db.close();
        }
      }
      await first;
      await store.recordRoomEvent("r1", words("r1", 2n, "sixty", false), { keep: 100, markOnly: true });
      await store.recordRoomEvent("r1", words("r1", 3n, "sixty pounds", true), { keep: 100 });
      await store.recordRoomEvent("r1", words("r1", 4n, "and", false), { keep: 100, markOnly: true });
      expect((await store.loadRoomEvents("r1", 0n)).map((e) => e.seq)).toEqual([1n, 3n]);
      // The partial's seq was given out to readers: numbering goes on after it.
      expect(await store.lastRoomSeq("r1")).toBe(4n);
      expect(await store.getRoomLogState("r1")).toEqual({ lastSeq: 4n, trimmedThroughSeq: 0n });
      expect(await store.getRoomLogState("never")).toEqual({ lastSeq: 0n, trimmedThroughSeq: 0n });
    });

    it("trims to the newest `keep` in batches and records where the trimmed events ended", async () => {
      const store = await open();
      for (let seq = 1n; seq <= 40n; seq++) await store.recordRoomEvent("r1", status("r1", seq), { keep: 10 });
      // keep 10 plus a batch of 16 before a trim runs: 26 at most, then back to 10.
      const held = await store.loadRoomEvents("r1", 0n);
      expect(held.length).toBeGreaterThanOrEqual(10);
      expect(held.length).toBeLessThanOrEqual(26);
      expect(held.at(-1)?.seq).toBe(40n);
      const { trimmedThroughSeq, lastSeq } = await store.getRoomLogState("r1");
      expect(lastSeq).toBe(40n);
      expect(trimmedThroughSeq).toBe(held[0]!.seq - 1n);
    });

    it("refuses a seq it already has: the room's numbering is never reused", async () => {
      const store = await open();
      await store.recordRoomEvent("r1", status("r1", 1n), { keep: 10 });
      await expect(recorded(() => store.recordRoomEvent("r1", status("r1", 1n), { keep: 10 }))).rejects.toThrow(/already has event 1/);
      await expect(recorded(() => store.recordRoomEvent("r1", status("r1", 0n), { keep: 10 }))).rejects.toThrow(RangeError);
    });

    it("deletes the logs of rooms that are not live after the retention period, keeping their seq marks", async () => {
      const store = await open();
      const day = 86_400_000;
      await store.recordRoomEvent("ended", status("ended", 1n, 1_000n), { keep: 10 });
      await store.recordRoomEvent("ended", words("ended", 2n, "my card number is private", true, 2_000n), { keep: 10 });
      await store.recordRoomEvent("live", status("live", 1n, 1_000n), { keep: 10 });
      await store.recordRoomEvent("recent", status("recent", 1n, BigInt(7 * day)), { keep: 10 });
      let now = 7 * day + 3_000;
      const retention = startLogRetention({ store, retentionMs: 7 * day, intervalMs: 60_000, isLive: (roomId) => roomId === "live", log: silentLogger, now: () => now });
      try {
        expect(await retention.sweep()).toEqual(["ended"]);
        expect(await store.loadRoomEvents("ended", 0n)).toEqual([]);
        expect(await store.loadRoomEvents("live", 0n)).toHaveLength(1);
        expect(await store.loadRoomEvents("recent", 0n)).toHaveLength(1);
        // The seq mark stays: a code used again numbers on, and a resume from before is a gap.
        expect(await store.getRoomLogState("ended")).toEqual({ lastSeq: 2n, trimmedThroughSeq: 2n });
        expect(await retention.sweep()).toEqual([]);
        now += 7 * day;
        expect(await retention.sweep()).toEqual(["recent"]);
        // A room used again stores events again, numbered on from its mark.
        await store.recordRoomEvent("ended", status("ended", 3n, BigInt(now)), { keep: 10 });
        expect((await store.loadRoomEvents("ended", 0n)).map((e) => e.seq)).toEqual([3n]);
      } finally {
        retention.stop();
        retention.stop();
      }
    });

    it("deletes an earlier pair's events on a reused code once the new pair has been there the retention period", async () => {
      const store = await open();
      const day = 86_400_000;
      await store.recordRoomEvent("code", words("code", 1n, "the first pair's words", true, 1_000n), { keep: 10 });
      await store.recordRoomEvent("code", status("code", 2n, 1_000n), { keep: 10 });
      // A new pair on the code: its history starts after seq 2.
      await store.startRoom({ roomId: "code", inviteCode: "", historyAfterSeq: 2n, atMs: 2_000 });
      await store.recordRoomEvent("code", status("code", 3n, BigInt(9 * day)), { keep: 10 });
      const live = () => true;
      expect(await store.deleteRoomLogsBefore(2_000, live)).toEqual([]);
      expect(await store.deleteRoomLogsBefore(2_000 + 7 * day, live)).toEqual(["code"]);
      // The live pair keeps its own events; the earlier pair's are gone, and numbering goes on.
      expect((await store.loadRoomEvents("code", 0n)).map((e) => e.seq)).toEqual([3n]);
      expect(await store.getRoomLogState("code")).toEqual({ lastSeq: 3n, trimmedThroughSeq: 2n });
      expect(await store.deleteRoomLogsBefore(2_000 + 7 * day, live)).toEqual([]);
    });
  });
});
