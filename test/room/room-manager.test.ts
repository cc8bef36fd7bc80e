import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { PermissionDeniedError, ResourceExhaustedError } from "../../src/core/errors.js";
import { silentLogger } from "../../src/core/log.js";
import { RoomManager, type RoomManagerSettings } from "../../src/room/room-manager.js";
import type { Room } from "../../src/room/room.js";
import { createSqliteStore } from "../../src/store/sqlite-store.js";
import type { Store } from "../../src/store/store.js";
import { clientProfile, createFakeRoomStages, providerProfile, testRoomSettings, type FakeRoomStages } from "../support/room-stages.js";

const SAM = "u_sam";
const ALEX = "u_alex";
const LEAVE_GRACE_MS = 30_000;
const IDLE_ROOM_MS = 10 * 60_000;
/** How often the manager looks for idle rooms: a minute, or the idle time when shorter. */
const IDLE_CHECK_MS = 60_000;

let fakes: FakeRoomStages;
let store: Store;
let manager: RoomManager;

function makeManager(settings: Partial<RoomManagerSettings> = {}): RoomManager {
  return new RoomManager(fakes.stages, store, { ...testRoomSettings(), maxRooms: 3, leaveGraceMs: LEAVE_GRACE_MS, idleRoomMs: IDLE_ROOM_MS, ...settings }, silentLogger);
}

/** Joins both people to `roomId`, each with one stream open (as a connected PanelStream keeps them). */
async function connectedPair(roomId: string): Promise<Room> {
  const room = await manager.join(roomId, SAM, providerProfile(), "");
  manager.streamOpened(room, SAM);
  await manager.join(roomId, ALEX, clientProfile(), "");
  manager.streamOpened(room, ALEX);
  return room;
}

/** Reads a room's panel until it ends; resolves with the error that ended it, if any. */
function readPanel(room: Room, userId: string, signal = new AbortController().signal): Promise<unknown> {
  return (async () => {
    try {
      for await (const _ of room.events.subscribe(0n, userId, signal));
      return undefined;
    } catch (err) {
      return err;
    }
  })();
}

beforeEach(async () => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  fakes = createFakeRoomStages();
  store = await createSqliteStore({ path: ":memory:" });
  manager = makeManager();
});

afterEach(async () => {
  await manager.shutdown(new Error("test over"));
  await store.close();
  vi.useRealTimers();
});

describe("RoomManager: leave grace", () => {
  it("removes a member who joined but never opened a stream once the grace period is over, and frees the empty room", async () => {
    const room = await manager.join("grace-1", SAM, providerProfile(), "");
    await vi.advanceTimersByTimeAsync(LEAVE_GRACE_MS - 1);
    expect(room.has(SAM)).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    expect(room.has(SAM)).toBe(false);
    expect(manager.get("grace-1")).toBeUndefined();
    expect(manager.size).toBe(0);
  });

  it("keeps a member whose last stream closed if one opens again within the grace period", async () => {
    const room = await connectedPair("grace-2");
    manager.streamClosed(room, ALEX);
    expect(room.status().participants.find((p) => p.userId === ALEX)?.connected).toBe(false);
    await vi.advanceTimersByTimeAsync(LEAVE_GRACE_MS - 1);
    manager.streamOpened(room, ALEX);
    await vi.advanceTimersByTimeAsync(LEAVE_GRACE_MS * 2);
    expect(room.size).toBe(2);
    expect(room.status()).toMatchObject({ paired: true });
  });

  it("removes only the member whose streams stayed closed; the room stays for the other, unpaired", async () => {
    const room = await connectedPair("grace-3");
    manager.streamOpened(room, ALEX);
    manager.streamClosed(room, ALEX);
    // One of two streams is still open: no grace timer yet.
    await vi.advanceTimersByTimeAsync(LEAVE_GRACE_MS * 2);
    expect(room.has(ALEX)).toBe(true);
    manager.streamClosed(room, ALEX);
    await vi.advanceTimersByTimeAsync(LEAVE_GRACE_MS);
    expect(room.has(ALEX)).toBe(false);
    expect(manager.get("grace-3")).toBe(room);
    expect(room.status()).toMatchObject({ paired: false, triggerArmed: false });
    expect(fakes.agentOf(ALEX).stopped).toBe(true);
  });

  it("a join again within the grace period cancels the pending removal", async () => {
    const room = await connectedPair("grace-4");
    manager.streamClosed(room, SAM);
    await vi.advanceTimersByTimeAsync(LEAVE_GRACE_MS - 1);
    await manager.join("grace-4", SAM, providerProfile(), "");
    manager.streamOpened(room, SAM);
    await vi.advanceTimersByTimeAsync(LEAVE_GRACE_MS * 2);
    expect(room.has(SAM)).toBe(true);
  });

  it("the last member to leave destroys the room and ends its panel readers", async () => {
    const room = await connectedPair("leave-1");
    const ended = readPanel(room, SAM);
    await manager.leave("leave-1", SAM);
    expect(manager.get("leave-1")).toBe(room);
    await manager.leave("leave-1", ALEX);
    expect(manager.get("leave-1")).toBeUndefined();
    expect(await ended).toMatchObject({ message: "room closed" });
  });
});

describe("RoomManager: idle eviction", () => {
  it("frees a room nobody has used for the idle time and nobody is reading, at the next check", async () => {
    const room = await connectedPair("idle-1");
    await vi.advanceTimersByTimeAsync(IDLE_ROOM_MS);
    expect(manager.get("idle-1")).toBe(room);
    await vi.advanceTimersByTimeAsync(IDLE_CHECK_MS);
    expect(manager.get("idle-1")).toBeUndefined();
    expect(fakes.agents.every((a) => a.stopped)).toBe(true);
  });

  it("activity in the room postpones eviction", async () => {
    const room = await connectedPair("idle-2");
    await vi.advanceTimersByTimeAsync(IDLE_ROOM_MS - IDLE_CHECK_MS);
    room.setTriggerKeyword("deal", false);
    await vi.advanceTimersByTimeAsync(IDLE_ROOM_MS - IDLE_CHECK_MS);
    expect(manager.get("idle-2")).toBe(room);
    await vi.advanceTimersByTimeAsync(2 * IDLE_CHECK_MS);
    expect(manager.get("idle-2")).toBeUndefined();
  });

  it("never evicts a room someone is reading the panel of, however quiet", async () => {
    const room = await connectedPair("idle-3");
    const reading = new AbortController();
    const ended = readPanel(room, SAM, reading.signal);
    await vi.advanceTimersByTimeAsync(IDLE_ROOM_MS * 3);
    expect(manager.get("idle-3")).toBe(room);
    reading.abort();
    expect(await ended).toBeUndefined();
    await vi.advanceTimersByTimeAsync(IDLE_CHECK_MS);
    expect(manager.get("idle-3")).toBeUndefined();
  });

  it("checks as often as the idle time when it is under a minute", async () => {
    await manager.shutdown(new Error("replaced"));
    manager = makeManager({ idleRoomMs: 5_000 });
    await connectedPair("idle-4");
    await vi.advanceTimersByTimeAsync(10_000);
    expect(manager.get("idle-4")).toBeUndefined();
  });
});

describe("RoomManager: limits and shutdown", () => {
  it("refuses a room past maxRooms, a wrong invite code, and a third member", async () => {
    for (const id of ["a", "b", "c"]) await manager.join(id, SAM, providerProfile(), "");
    await expect(manager.join("d", SAM, providerProfile(), "")).rejects.toBeInstanceOf(ResourceExhaustedError);
    await manager.leave("c", SAM);
    await manager.join("invite", SAM, providerProfile(), "secret");
    await expect(manager.join("invite", ALEX, clientProfile(), "guess")).rejects.toBeInstanceOf(PermissionDeniedError);
    await manager.join("invite", ALEX, clientProfile(), "secret");
    await expect(manager.join("invite", "u_third", clientProfile(), "secret")).rejects.toThrow(/room is full/);
  });

  it("a new pair on a reused room code gets a new room whose sequence numbers continue from the store, never reused", async () => {
    const first = await connectedPair("reuse");
    const lastSeq = first.events.latestSeq;
    await vi.advanceTimersByTimeAsync(0); // the log persists once per tick
    await manager.leave("reuse", SAM);
    await manager.leave("reuse", ALEX);
    const second = await manager.join("reuse", SAM, providerProfile(), "");
    expect(second).not.toBe(first);
    expect(second.events.latestSeq).toBeGreaterThan(lastSeq);
  });

  it("shutdown destroys every room, refuses joins after it and is safe twice; no timer fires later", async () => {
    const room = await connectedPair("down-1");
    const ended = readPanel(room, ALEX);
    manager.streamClosed(room, SAM);
    const reason = new Error("server shutting down");
    await manager.shutdown(reason);
    await manager.shutdown(reason);
    expect(await ended).toBe(reason);
    expect(manager.size).toBe(0);
    await expect(manager.join("down-2", SAM, providerProfile(), "")).rejects.toBeInstanceOf(ResourceExhaustedError);
    // What is left (a persist tick) runs once; no grace timer or idle check is still scheduled.
    await vi.runOnlyPendingTimersAsync();
    expect(vi.getTimerCount()).toBe(0);
  });
});
