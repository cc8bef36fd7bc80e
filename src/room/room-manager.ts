import type { Logger } from "pino";
import type { AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { PermissionDeniedError, ResourceExhaustedError } from "../core/errors.js";
import type { PanelEventInit } from "../events/event-log.js";
import type { Store } from "../store/store.js";
import { Room, type RoomSettings, type RoomStages } from "./room.js";

/** Settings of the registry. */
export interface RoomManagerSettings extends RoomSettings {
  maxRooms: number;
  leaveGraceMs: number;
  idleRoomMs: number;
}

/**
 * The registry of live rooms: creates a room on first join, enforces the limits, removes members
 * who left or whose streams are gone for the grace period, frees empty and idle rooms.
 */
export class RoomManager {
  private readonly rooms = new Map<string, Room>();
  /** Rooms being created (restoring their event log from the store). */
  private readonly creating = new Map<string, Promise<Room>>();
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  private readonly idleTimer: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly stages: RoomStages,
    private readonly store: Store,
    private readonly settings: RoomManagerSettings,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.idleTimer = setInterval(() => void this.evictIdle(), Math.min(60_000, settings.idleRoomMs)).unref();
  }

  /** Number of live rooms. */
  get size(): number {
    return this.rooms.size;
  }

  get(roomId: string): Room | undefined {
    return this.rooms.get(roomId);
  }

  /**
   * Joins `userId` to `roomId`, creating the room if needed. A repeated join is a no-op (the
   * profile is refreshed). Throws ResourceExhaustedError when full or at the room limit.
   */
  async join(roomId: string, userId: string, profile: AgentProfile, inviteCode: string): Promise<Room> {
    if (this.closed) throw new ResourceExhaustedError("server is shutting down");
    const room = this.rooms.get(roomId) ?? (await this.create(roomId, inviteCode));
    if (room.inviteCode !== undefined && room.inviteCode !== inviteCode && !room.has(userId)) {
      throw new PermissionDeniedError("this room needs a valid invite code");
    }
    try {
      room.join(userId, profile);
    } catch (err) {
      if (room.size === 0) await this.drop(room);
      throw err;
    }
    this.cancelGrace(roomId, userId);
    // A member who joins but never opens a stream is removed like one whose streams closed.
    if (room.openStreams(userId) === 0) this.scheduleGraceIfIdle(room, userId);
    return room;
  }

  /** Removes a member; the last one out destroys the room. */
  async leave(roomId: string, userId: string): Promise<void> {
    this.cancelGrace(roomId, userId);
    const room = this.rooms.get(roomId);
    if (!room) return;
    await room.leave(userId);
    if (room.size === 0) await this.drop(room);
  }

  /** A member's stream opened; cancels a pending grace removal. */
  streamOpened(room: Room, userId: string): void {
    this.cancelGrace(room.id, userId);
    room.streamOpened(userId, 1);
  }

  /** A member's stream closed; when none is left, they are removed after the grace period. */
  streamClosed(room: Room, userId: string): void {
    if (room.streamOpened(userId, -1) === 0) this.scheduleGraceIfIdle(room, userId);
  }

  /** Publishes an event to a room if it is live (payments and milestones outside a room call). */
  publish(roomId: string, init: PanelEventInit): void {
    this.rooms.get(roomId)?.publish(init);
  }

  /** Destroys every room; safe to call twice. */
  async shutdown(reason: Error): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.idleTimer);
    for (const timer of this.graceTimers.values()) clearTimeout(timer);
    this.graceTimers.clear();
    const rooms = [...this.rooms.values()];
    this.rooms.clear();
    await Promise.allSettled(rooms.map((room) => room.destroy(reason)));
  }

  private async create(roomId: string, inviteCode: string): Promise<Room> {
    const pending = this.creating.get(roomId);
    if (pending) return pending;
    if (this.rooms.size + this.creating.size >= this.settings.maxRooms) {
      throw new ResourceExhaustedError(`the server is at its limit of ${this.settings.maxRooms} rooms`);
    }
    const creation = (async () => {
      const lastSeq = await this.store.lastRoomSeq(roomId);
      const restored = lastSeq > 0n ? { lastSeq, events: await this.store.loadRoomEvents(roomId, 0n) } : undefined;
      const log = this.log.child({ roomId });
      const room = new Room(
        roomId,
        inviteCode === "" ? undefined : inviteCode,
        this.stages,
        this.settings,
        log,
        restored,
        (events) =>
          void this.store
            .appendRoomEvents(roomId, events, this.settings.eventLogSize)
            .catch((err: unknown) => log.error({ err }, "room events not persisted")),
        this.now,
      );
      this.rooms.set(roomId, room);
      log.info({ rooms: this.rooms.size }, "room created");
      return room;
    })();
    this.creating.set(roomId, creation);
    try {
      return await creation;
    } finally {
      this.creating.delete(roomId);
    }
  }

  private async drop(room: Room): Promise<void> {
    if (this.rooms.get(room.id) !== room) return;
    this.rooms.delete(room.id);
    await room.destroy();
    this.log.info({ roomId: room.id, rooms: this.rooms.size }, "room destroyed");
  }

  private scheduleGraceIfIdle(room: Room, userId: string): void {
    const key = `${room.id}\u0000${userId}`;
    if (this.graceTimers.has(key) || this.closed) return;
    const timer = setTimeout(() => {
      this.graceTimers.delete(key);
      this.log.info({ roomId: room.id, userId }, "member removed after their streams closed");
      void this.leave(room.id, userId);
    }, this.settings.leaveGraceMs);
    timer.unref();
    this.graceTimers.set(key, timer);
  }

  private cancelGrace(roomId: string, userId: string): void {
    const key = `${roomId}\u0000${userId}`;
    const timer = this.graceTimers.get(key);
    if (timer) {
      clearTimeout(timer);
      this.graceTimers.delete(key);
    }
  }

  private async evictIdle(): Promise<void> {
    const cutoff = this.now() - this.settings.idleRoomMs;
    for (const room of [...this.rooms.values()]) {
      if (room.lastActivityMs < cutoff && room.events.subscriberCount === 0) {
        this.log.info({ roomId: room.id }, "idle room evicted");
        await this.drop(room);
      }
    }
  }
}
