import type { Logger } from "pino";
import type { AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { ContractStatus } from "../../gen/handshake/v1/deal_pb.js";
import { PermissionDeniedError, ResourceExhaustedError } from "../core/errors.js";
import { createLocalBus, type RoomBus, type RoomBusMessage } from "../events/bus.js";
import { EventLogClosedError, type PanelEventInit } from "../events/event-log.js";
import type { RoomRecord, Store } from "../store/store.js";
import { CreationLimit } from "./creation-limit.js";
import { createLocalDirectory, keepLeases, RoomOnOtherNodeError, type LeaseKeeper, type RoomDirectory } from "./placement.js";
import { MAX_PARTICIPANTS, Room, type RoomSettings, type RoomStages } from "./room.js";

/** Settings of the registry. */
export interface RoomManagerSettings extends RoomSettings {
  maxRooms: number;
  leaveGraceMs: number;
  idleRoomMs: number;
  /** New rooms one client address may create per minute; unlimited when absent. */
  roomCreatesPerAddressPerMinute?: number;
  /** New rooms one user may create per minute; unlimited when absent. */
  roomCreatesPerUserPerMinute?: number;
}

/**
 * Where this node's rooms are placed and how other nodes reach them: Redis in a cluster
 * (REDIS_URL), this process alone otherwise.
 */
export interface RoomPlacement {
  directory: RoomDirectory;
  bus: RoomBus;
  /**
   * A room call for a room no node hosts rebuilds it here (another node died: its members never
   * joined this one). One node on its own answers NotFound instead, and its clients join again.
   */
  rebuildsOnCall: boolean;
}

/** Placement for one node on its own: every room is its own, messages stay in the process. */
export function singleNodePlacement(nodeId = "local"): RoomPlacement {
  return { directory: createLocalDirectory(nodeId), bus: createLocalBus(), rebuildsOnCall: false };
}

/** Where a join comes from, for the creation rate limit. */
export interface JoinOrigin {
  /** The client's network address; empty when unknown (in-memory transports). */
  address?: string;
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
  /** Each live room's pair as kept in the store (members who may be away, e.g. after a restart), who need no invite code. */
  private readonly pairs = new Map<string, Set<string>>();
  private readonly idleTimer: NodeJS.Timeout;
  private readonly creations: CreationLimit;
  /** Renews the leases of the rooms live here; a lost one closes its room at once. */
  private readonly leases: LeaseKeeper;
  private closed = false;

  constructor(
    private readonly stages: RoomStages,
    private readonly store: Store,
    private readonly settings: RoomManagerSettings,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    private readonly placement: RoomPlacement = singleNodePlacement(),
  ) {
    this.creations = new CreationLimit(now);
    this.leases = keepLeases(placement.directory, (roomId, owner) => void this.lost(roomId, owner), log, now);
    this.idleTimer = setInterval(() => void this.evictIdle(), Math.min(60_000, settings.idleRoomMs)).unref();
  }

  /** Number of live rooms. */
  get size(): number {
    return this.rooms.size;
  }

  /** Events queued for the PanelStream reader furthest behind on this node, for the metrics. */
  panelQueueDepth(): number {
    let deepest = 0;
    for (const room of this.rooms.values()) deepest = Math.max(deepest, room.events.deepestQueue);
    return deepest;
  }

  get(roomId: string): Room | undefined {
    return this.rooms.get(roomId);
  }

  /**
   * Throws what `join` would refuse this caller for (shutting down, the room limit, the invite
   * code, a full room, live or kept in the store) and changes nothing: JoinRoom asks before it
   * stores anything, so a refused join writes nothing. A join that would create a room takes
   * one from its address's and its user's creation budgets (RESOURCE_EXHAUSTED with a retry hint).
   */
  async checkJoin(roomId: string, userId: string, inviteCode: string, origin: JoinOrigin = {}): Promise<void> {
    if (this.closed) throw new ResourceExhaustedError("server is shutting down");
    const room = this.rooms.get(roomId);
    if (room) return checkLiveRoom(room, userId, inviteCode, this.isPairMember(roomId, userId));
    if (!this.creating.has(roomId) && this.rooms.size + this.creating.size >= this.settings.maxRooms) {
      throw new ResourceExhaustedError(`the server is at its limit of ${this.settings.maxRooms} rooms`);
    }
    await this.refuseIfElsewhere(roomId);
    checkKeptRoom(await this.store.getRoomRecord(roomId), userId, inviteCode);
    // Last, so a join refused for another reason costs no budget (two racing joins of one new
    // room may both pay: it is a rate, not a count).
    if (!this.creating.has(roomId) && !this.rooms.has(roomId)) this.takeCreation(userId, origin);
  }

  /**
   * Joins `userId` to `roomId`, creating the room if needed. A repeated join is a no-op (the
   * profile is refreshed). Throws ResourceExhaustedError when full or at the room limit.
   */
  async join(roomId: string, userId: string, profile: AgentProfile, inviteCode: string): Promise<Room> {
    if (this.closed) throw new ResourceExhaustedError("server is shutting down");
    const room = this.rooms.get(roomId) ?? (await this.create(roomId, inviteCode, userId));
    if (room.inviteCode !== undefined && room.inviteCode !== inviteCode && !room.has(userId) && !this.isPairMember(roomId, userId)) {
      throw new PermissionDeniedError("this room needs a valid invite code");
    }
    // A stranger joining a live room whose earlier pair has one member left starts a new pair:
    // the earlier pair's history stays theirs (and after a restart, the new pair's log starts here).
    const pair = this.pairs.get(roomId);
    const newPair = !room.has(userId) && room.size === 1 && !this.isPairMember(roomId, userId) && [...(pair ?? [])].some((id) => !room.has(id));
    const historyAfterSeq = room.events.latestSeq;
    if (newPair) room.startNewPair(userId);
    try {
      room.join(userId, profile);
    } catch (err) {
      if (room.size === 0) await this.drop(room);
      throw err;
    }
    if (newPair) await this.recordNewPair(room, userId, historyAfterSeq);
    this.pairs.get(roomId)?.add(userId);
    // Membership decides who gets this history back after a restart; a lost write errs towards
    // privacy (the member would start an empty room), so it does not fail the join.
    await this.store.addRoomMember(roomId, userId, this.now()).catch((err: unknown) => this.log.error({ err, roomId, userId }, "room member not recorded"));
    this.cancelGrace(roomId, userId);
    // A member who joins but never opens a stream is removed like one whose streams closed.
    if (room.openStreams(userId) === 0) this.scheduleGraceIfIdle(room, userId);
    return room;
  }

  /** Removes a member; the last one out destroys the room. */
  async leave(roomId: string, userId: string): Promise<void> {
    this.cancelGrace(roomId, userId);
    const room = this.rooms.get(roomId);
    if (!room) {
      // Not live here: the owner node takes the leave; with none, the store records it.
      await this.refuseIfElsewhere(roomId);
      await this.recordLeft(roomId, [userId]);
      return;
    }
    await room.leave(userId);
    await this.recordLeft(roomId, [userId]);
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

  /**
   * Makes sure a room call of `userId` is served here. A room live here passes; in a cluster, a
   * room no node hosts, whose pair `userId` is still in, is claimed and rebuilt here from the
   * store (its node died), and one another node holds throws RoomOnOtherNodeError. Anything else
   * is left to the member check (NotFound, PermissionDenied).
   */
  async host(roomId: string, userId: string): Promise<void> {
    const pending = this.creating.get(roomId);
    if (pending) {
      await pending.catch(() => undefined);
      return;
    }
    if (this.rooms.has(roomId) || this.closed || !this.placement.rebuildsOnCall) return;
    const record = await this.store.getRoomRecord(roomId);
    if (!record || !currentMembers(record).some((m) => m.userId === userId)) return;
    await this.create(roomId, record.inviteCode, userId);
  }

  /**
   * Publishes an event to a room (payments and milestones outside a room call): to the live room
   * here, else over the bus to the node that hosts it.
   */
  publish(roomId: string, init: PanelEventInit): void {
    const room = this.rooms.get(roomId);
    if (room) room.publish(init);
    else this.sendToOwner(roomId, { kind: "event", init });
  }

  /** A contract of the room ran its immediate payments and holds: the room's sessions are completed, wherever it lives. */
  contractExecuted(roomId: string, contractId: string): void {
    const room = this.rooms.get(roomId);
    if (room) room.contractExecuted(contractId);
    else this.sendToOwner(roomId, { kind: "contractExecuted", contractId });
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
    this.leases.close();
    await Promise.allSettled(rooms.map((room) => room.destroy(reason)));
    // Given up at once, so another node can take the rooms without waiting for the leases to lapse.
    await Promise.allSettled(rooms.flatMap((room) => [this.placement.directory.release(room.id), this.placement.bus.unlisten(room.id)]));
  }

  /**
   * Creates the live room for `roomId`, first joined by `userId`. A room code whose pair is still
   * in it (after a restart) or that `userId` was in comes back with its invite code and history;
   * anyone else on the code starts a new pair: an empty room, numbered on from the old events.
   */
  private async create(roomId: string, inviteCode: string, userId: string): Promise<Room> {
    const pending = this.creating.get(roomId);
    if (pending) return pending;
    if (this.rooms.size + this.creating.size >= this.settings.maxRooms) {
      throw new ResourceExhaustedError(`the server is at its limit of ${this.settings.maxRooms} rooms`);
    }
    const creation = (async () => {
      // Held before anything is read: no two nodes ever rebuild one room.
      if (!(await this.placement.directory.claim(roomId))) {
        throw new RoomOnOtherNodeError(roomId, (await this.placement.directory.owner(roomId)) ?? "another node");
      }
      try {
        return await this.build(roomId, inviteCode, userId);
      } catch (err) {
        await this.placement.directory.release(roomId).catch(() => undefined);
        throw err;
      }
    })();
    this.creating.set(roomId, creation);
    try {
      return await creation;
    } finally {
      this.creating.delete(roomId);
    }
  }

  /** Builds the live room `create` claimed: its log, its pair (members back with their stored profiles), its bus. */
  private async build(roomId: string, inviteCode: string, userId: string): Promise<Room> {
    const record = await this.store.getRoomRecord(roomId);
    checkKeptRoom(record, userId, inviteCode);
    const { lastSeq, trimmedThroughSeq } = await this.store.getRoomLogState(roomId);
    const continues = record !== undefined && (record.members.some((m) => m.userId === userId) || currentMembers(record).length > 0);
    const invite = continues ? record.inviteCode : inviteCode;
    const historyAfterSeq = continues ? record.historyAfterSeq : lastSeq;
    if (!continues) await this.store.startRoom({ roomId, inviteCode, historyAfterSeq, atMs: this.now() });
    this.pairs.set(roomId, new Set(continues ? record.members.map((m) => m.userId) : []));
    // Sequence numbers go on from the last stored event either way; only this pair's events come back.
    const events = lastSeq > historyAfterSeq ? await this.store.loadRoomEvents(roomId, historyAfterSeq) : [];
    // What this pair can no longer get back (trimmed, or deleted after the retention period) is
    // reported to a resuming reader as a gap; an earlier pair's events are none of its business.
    const restored = lastSeq > 0n ? { lastSeq, events, trimmedThroughSeq: trimmedThroughSeq > historyAfterSeq ? trimmedThroughSeq : 0n } : undefined;
    const log = this.log.child({ roomId });
    const room = new Room(
      roomId,
      invite === "" ? undefined : invite,
      this.stages,
      this.settings,
      log,
      restored,
      // The event is committed before the log hands it to any reader: on return (SQLite), or once
      // the returned promise resolves (PostgreSQL), which the log waits for.
      (event, kept) => {
        const started = performance.now();
        const observe = () => this.stages.metrics?.eventLogWrite((performance.now() - started) / 1000);
        let written: void | Promise<void>;
        try {
          written = this.store.recordRoomEvent(roomId, event, { keep: this.settings.eventLogSize, markOnly: !kept });
        } catch (err) {
          observe();
          throw err;
        }
        if (written instanceof Promise) return written.finally(observe);
        observe();
        return undefined;
      },
      this.now,
    );
    try {
      await this.placement.bus.listen(roomId, (message) => this.fromBus(roomId, message));
      if (continues) {
        await this.rejoinPair(room, record);
        await this.resumeNegotiation(room);
        // One node on its own finishes them at start (recoverSettlement); a cluster's nodes live on.
        if (this.placement.rebuildsOnCall) await this.resumeExecution(room);
      }
    } catch (err) {
      this.pairs.delete(roomId);
      await room.destroy();
      await this.placement.bus.unlisten(roomId).catch(() => undefined);
      throw err;
    }
    this.rooms.set(roomId, room);
    this.leases.hold(roomId);
    log.info({ rooms: this.rooms.size, nodeId: this.placement.directory.nodeId }, "room created");
    return room;
  }

  /**
   * A room that comes back from the store gets its whole current pair back at once, each with
   * their stored profile, so a member whose call lands here after a failover finds the room as
   * they left it; one who never reconnects is removed after the grace period, as usual.
   */
  private async rejoinPair(room: Room, record: RoomRecord): Promise<void> {
    for (const member of currentMembers(record)) {
      const profile = await this.store.getProfile(member.userId);
      if (!profile || room.has(member.userId)) continue;
      room.join(member.userId, profile);
      this.scheduleGraceIfIdle(room, member.userId);
    }
  }

  /**
   * Goes on with the negotiation the room's earlier life left open: as stored after its last
   * round, or as its log has it when the log is further on (a save lost with its node).
   */
  private async resumeNegotiation(room: Room): Promise<void> {
    const openId = room.openRestoredNegotiationId();
    if (!openId) return;
    const last = room.deal().negotiation;
    const logged = last?.id === openId ? last : undefined;
    const stored = await this.store.getNegotiation(openId);
    const latest = stored && (!logged || stored.rounds.length >= logged.rounds.length) ? stored : logged;
    if (latest) room.resumeNegotiation(latest);
  }

  /** A contract the room's dead node was paying, as the store has it, is paid on here. */
  private async resumeExecution(room: Room): Promise<void> {
    const contractId = room.deal().contract?.id;
    if (!contractId) return;
    const stored = await this.store.getContract(contractId);
    if (stored?.status === ContractStatus.EXECUTING) room.resumeExecution(stored);
  }

  /** A message another node sent to a room live here. */
  private fromBus(roomId: string, message: RoomBusMessage): void {
    const room = this.rooms.get(roomId);
    if (!room) return;
    if (message.kind === "event") room.publish(message.init);
    else room.contractExecuted(message.contractId);
  }

  private sendToOwner(roomId: string, message: RoomBusMessage): void {
    this.placement.bus.publish(roomId, message).catch((err: unknown) => this.log.error({ err, roomId, kind: message.kind }, "bus message not sent"));
  }

  /** JoinRoom of a room another node holds is refused before anything is stored (the client retries; the router takes it there). */
  private async refuseIfElsewhere(roomId: string): Promise<void> {
    if (this.creating.has(roomId)) return;
    const owner = await this.placement.directory.owner(roomId);
    if (owner !== undefined && owner !== this.placement.directory.nodeId) throw new RoomOnOtherNodeError(roomId, owner);
  }

  /**
   * This node lost the room's lease (another node holds it now, or the directory was out of reach
   * for a whole lease): the room stops here at once, its streams ended with UNAVAILABLE so their
   * clients reconnect, and reach the owner.
   */
  private async lost(roomId: string, owner: string | undefined): Promise<void> {
    const room = this.rooms.get(roomId);
    if (!room) return;
    this.rooms.delete(roomId);
    this.pairs.delete(roomId);
    for (const key of [...this.graceTimers.keys()]) if (key.startsWith(`${roomId}\u0000`)) this.cancelGrace(roomId, key.slice(roomId.length + 1));
    await this.placement.bus.unlisten(roomId).catch(() => undefined);
    await room.destroy(new EventLogClosedError(`room ${roomId} moved to ${owner ? `node ${owner}` : "another node"}; reconnect`));
    this.log.warn({ roomId, ownerNodeId: owner, rooms: this.rooms.size }, "room closed here: its lease is another node's");
  }

  /** Records a new pair on a live room: its history starts after `historyAfterSeq`, after a restart too. */
  private async recordNewPair(room: Room, newcomerUserId: string, historyAfterSeq: bigint): Promise<void> {
    const stayers = room.status().participants.map((p) => p.userId).filter((id) => id !== newcomerUserId);
    this.pairs.set(room.id, new Set(stayers));
    const atMs = this.now();
    await this.store
      .startRoom({ roomId: room.id, inviteCode: room.inviteCode ?? "", historyAfterSeq, atMs })
      .then(async () => {
        for (const userId of stayers) await this.store.addRoomMember(room.id, userId, atMs);
      })
      .catch((err: unknown) => this.log.error({ err, roomId: room.id }, "new pair not recorded"));
  }

  /** Marks members as gone from the room's pair in the store; a failed write is logged. */
  private async recordLeft(roomId: string, userIds: string[]): Promise<void> {
    for (const userId of userIds) {
      await this.store
        .markRoomMemberLeft(roomId, userId, this.now())
        .catch((err: unknown) => this.log.error({ err, roomId, userId }, "room member's leaving not recorded"));
    }
  }

  /** One room creation from the address's and the user's budgets, or ResourceExhaustedError. */
  private takeCreation(userId: string, origin: JoinOrigin): void {
    const { roomCreatesPerAddressPerMinute: perAddress, roomCreatesPerUserPerMinute: perUser } = this.settings;
    const keys = [];
    if (perAddress !== undefined && origin.address) keys.push({ key: `a:${origin.address}`, perMinute: perAddress, what: "your address" });
    if (perUser !== undefined) keys.push({ key: `u:${userId}`, perMinute: perUser, what: "your user" });
    if (keys.length > 0) this.creations.take(keys);
  }

  private isPairMember(roomId: string, userId: string): boolean {
    return this.pairs.get(roomId)?.has(userId) ?? false;
  }

  private async drop(room: Room): Promise<void> {
    if (this.rooms.get(room.id) !== room) return;
    this.rooms.delete(room.id);
    this.pairs.delete(room.id);
    this.leases.drop(room.id);
    await room.destroy();
    await Promise.allSettled([this.placement.directory.release(room.id), this.placement.bus.unlisten(room.id)]);
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
        // An evicted room has ended: its code is free for a new pair, its history for its members only.
        await this.recordLeft(room.id, room.status().participants.map((p) => p.userId));
        await this.drop(room);
      }
    }
  }
}

/** Members of a kept room's pair who have not left. */
function currentMembers(record: RoomRecord): RoomRecord["members"] {
  return record.members.filter((m) => m.leftAtMs === undefined);
}

/** What a live room refuses: a wrong invite code (unless one of its pair), or a third person. */
function checkLiveRoom(room: Room, userId: string, inviteCode: string, pairMember: boolean): void {
  if (room.has(userId)) return;
  if (room.inviteCode !== undefined && room.inviteCode !== inviteCode && !pairMember) throw new PermissionDeniedError("this room needs a valid invite code");
  if (room.size >= MAX_PARTICIPANTS) throw new ResourceExhaustedError("room is full");
}

/**
 * What a room kept in the store refuses (its pair still in it, e.g. across a restart): a stranger
 * without its invite code, or a third person. Its members, and anyone once the pair has left, pass.
 */
function checkKeptRoom(record: RoomRecord | undefined, userId: string, inviteCode: string): void {
  if (!record || record.members.some((m) => m.userId === userId)) return;
  const current = currentMembers(record);
  if (current.length === 0) return;
  if (record.inviteCode !== "" && record.inviteCode !== inviteCode) throw new PermissionDeniedError("this room needs a valid invite code");
  if (current.length >= MAX_PARTICIPANTS) throw new ResourceExhaustedError("room is full");
}
