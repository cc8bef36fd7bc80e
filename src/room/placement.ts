import type { Redis } from "ioredis";
import type { Logger } from "pino";

/**
 * Placement of rooms on nodes: a room lives on exactly one node at a time, the node that holds
 * its lease in the directory. A lease lapses unless renewed, so a node that dies gives its rooms
 * up within one lease; the next room call on another node claims the room there.
 */

/** Lease length when ROOM_LEASE_MS is unset. */
export const DEFAULT_ROOM_LEASE_MS = 3_000;

/** The room → node directory. Every answer is about this node (`nodeId`) unless it says otherwise. */
export interface RoomDirectory {
  readonly nodeId: string;
  /** How long a claim or renewal holds the room without another renewal, milliseconds. */
  readonly leaseMs: number;
  /** Takes the room's lease unless another node holds it; true when this node holds it now (a held one is renewed). */
  claim(roomId: string): Promise<boolean>;
  /** Extends this node's lease; false when the room's lease is not this node's (lapsed, or another's). */
  renew(roomId: string): Promise<boolean>;
  /** Gives the lease up if it is this node's; another node's is left alone. */
  release(roomId: string): Promise<void>;
  /** The node holding the room's lease, undefined when none does. */
  owner(roomId: string): Promise<string | undefined>;
  /** Throws RoomDirectoryUnavailableError unless the directory answers within `timeoutMs` (readiness). */
  checkReachable(timeoutMs: number): Promise<void>;
  /** Closes the directory's connection (not its leases: they lapse); safe twice. */
  close(): Promise<void>;
}

/** A room call reached a node that does not host its room: the owner does, and the client should retry (the router takes it there). */
export class RoomOnOtherNodeError extends Error {
  override readonly name = "RoomOnOtherNodeError";
  constructor(
    readonly roomId: string,
    readonly ownerNodeId: string,
  ) {
    super(`room ${roomId} is served by node ${ownerNodeId}; retry`);
  }
}

/** The directory could not be asked (Redis down or unreachable): the call may succeed later. */
export class RoomDirectoryUnavailableError extends Error {
  override readonly name = "RoomDirectoryUnavailableError";
}

/** `work`, its failure turned into RoomDirectoryUnavailableError (the cause goes with it, for the log). */
async function asked<T>(what: string, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (cause) {
    throw new RoomDirectoryUnavailableError(`the room directory could not be reached (${what}); retry`, { cause });
  }
}

const keyOf = (roomId: string) => `handshake:room:${roomId}:owner`;

/** Extends the lease only while it is ours: compare, then pexpire, in one step. */
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
/** Deletes the lease only while it is ours. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** The directory in Redis: one key per room holding its owner's node id, with the lease as its expiry. */
export function createRedisDirectory(options: { redis: Redis; nodeId: string; leaseMs?: number }): RoomDirectory {
  const { redis, nodeId } = options;
  const leaseMs = options.leaseMs ?? DEFAULT_ROOM_LEASE_MS;
  const directory: RoomDirectory = {
    nodeId,
    leaseMs,
    async claim(roomId) {
      const set = await asked("claim", redis.set(keyOf(roomId), nodeId, "PX", leaseMs, "NX"));
      return set === "OK" || (await directory.renew(roomId));
    },
    async renew(roomId) {
      return (await asked("renew", redis.eval(RENEW, 1, keyOf(roomId), nodeId, String(leaseMs)))) === 1;
    },
    async release(roomId) {
      await asked("release", redis.eval(RELEASE, 1, keyOf(roomId), nodeId));
    },
    async owner(roomId) {
      return (await asked("owner", redis.get(keyOf(roomId)))) ?? undefined;
    },
    async checkReachable(timeoutMs) {
      // ioredis queues commands while it reconnects: a readiness probe must not wait that long.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await asked("ping", Promise.race([redis.ping(), late]));
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      if (redis.status !== "end") redis.disconnect();
    },
  };
  return directory;
}

/** The directory of a single node: every room it serves is its own; no lease can lapse. */
export function createLocalDirectory(nodeId: string): RoomDirectory {
  const held = new Set<string>();
  return {
    nodeId,
    leaseMs: DEFAULT_ROOM_LEASE_MS,
    async claim(roomId) {
      held.add(roomId);
      return true;
    },
    async renew(roomId) {
      return held.has(roomId);
    },
    async release(roomId) {
      held.delete(roomId);
    },
    async owner(roomId) {
      return held.has(roomId) ? nodeId : undefined;
    },
    async checkReachable() {},
    async close() {},
  };
}

/** Renews the leases of the rooms this node hosts. */
export interface LeaseKeeper {
  /** Starts renewing `roomId`'s lease (just claimed). */
  hold(roomId: string): void;
  /** Stops renewing it (the room was dropped and its lease released). */
  drop(roomId: string): void;
  /** Stops every renewal; safe twice. */
  close(): void;
}

/**
 * Renews every held lease each lease/3. A renewal that finds the lease lapsed takes it back when
 * nobody else did; one that finds another owner, or a directory unreachable for a whole lease
 * (another node may have taken the room meanwhile), reports the room lost: its node must stop
 * serving it at once.
 */
export function keepLeases(directory: RoomDirectory, onLost: (roomId: string, ownerNodeId: string | undefined) => void, log: Logger, now: () => number = Date.now): LeaseKeeper {
  /** Each held room and when its last successful renewal was sent (the lease runs from then at the latest). */
  const held = new Map<string, number>();
  let renewing = false;
  const lose = (roomId: string, owner: string | undefined) => {
    if (!held.delete(roomId)) return;
    log.warn({ roomId, ownerNodeId: owner, nodeId: directory.nodeId }, "room lease lost");
    onLost(roomId, owner);
  };
  const renewOne = async (roomId: string) => {
    const sentAt = now();
    try {
      if ((await directory.renew(roomId)) || (await directory.claim(roomId))) {
        if (held.has(roomId)) held.set(roomId, sentAt);
        return;
      }
      lose(roomId, await directory.owner(roomId).catch(() => undefined));
    } catch (err) {
      log.warn({ err, roomId }, "room lease not renewed; retrying");
    }
  };
  const timer = setInterval(() => {
    // Checked whether or not the last renewals answered: a directory that hangs must not keep a room here.
    for (const [roomId, since] of [...held]) if (now() - since >= directory.leaseMs) lose(roomId, undefined);
    if (renewing) return;
    renewing = true;
    void Promise.all([...held.keys()].map(renewOne)).finally(() => (renewing = false));
  }, Math.max(1, Math.floor(directory.leaseMs / 3)));
  timer.unref();
  return {
    hold(roomId) {
      held.set(roomId, now());
    },
    drop(roomId) {
      held.delete(roomId);
    },
    close() {
      clearInterval(timer);
      held.clear();
    },
  };
}
