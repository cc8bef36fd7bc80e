import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MilestoneSchema, MilestoneStatus } from "../../gen/handshake/v1/deal_pb.js";
import { silentLogger } from "../../src/core/log.js";
import { createRedisBus, type RoomBusMessage } from "../../src/events/bus.js";
import { createRedisDirectory, keepLeases, type RoomDirectory } from "../../src/room/placement.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { joinPerson } from "../support/people.js";
import { startRedis, type TestRedis } from "../support/redis.js";

/** The room directory, the lease keeper and the bus against a real redis-server; then two in-process nodes on it. */

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function connection(url = redis.url): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  cleanups.push(() => client.disconnect());
  return client;
}

function directory(nodeId: string, leaseMs = 3_000): RoomDirectory {
  return createRedisDirectory({ redis: connection(), nodeId, leaseMs });
}

let rooms = 0;
const newRoomId = () => `placement-${process.pid}-${++rooms}`;

/** Resolves once `check` holds, asking every 20 ms; fails after `limitMs` (a safety net, not a timing claim). */
async function until(check: () => Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("the Redis room directory", () => {
  it("gives a room to one node at a time: a claim, a refused claim and renewal by another, a release, then the other's claim", async () => {
    const a = directory("node-a");
    const b = directory("node-b");
    const roomId = newRoomId();
    expect(await a.owner(roomId)).toBeUndefined();
    expect(await a.claim(roomId)).toBe(true);
    expect(await a.claim(roomId)).toBe(true);
    expect(await b.claim(roomId)).toBe(false);
    expect(await b.renew(roomId)).toBe(false);
    expect(await b.owner(roomId)).toBe("node-a");
    await b.release(roomId);
    expect(await a.owner(roomId)).toBe("node-a");
    expect(await a.renew(roomId)).toBe(true);
    await a.release(roomId);
    expect(await a.owner(roomId)).toBeUndefined();
    expect(await b.claim(roomId)).toBe(true);
    expect(await a.owner(roomId)).toBe("node-b");
  });

  it("lets a dead node's lease lapse, so another node can claim the room", async () => {
    const dying = directory("node-dying", 300);
    const heir = directory("node-heir", 300);
    const roomId = newRoomId();
    expect(await dying.claim(roomId)).toBe(true);
    // Dead: nothing renews its lease any more.
    await dying.close();
    expect(await heir.claim(roomId)).toBe(false);
    await until(async () => (await heir.owner(roomId)) === undefined, "the lease lapsed");
    expect(await heir.claim(roomId)).toBe(true);
  });

  it("keeps a live node's lease past many lease lengths, and reports it lost when another node took it", async () => {
    const holder = directory("node-holder", 500);
    const other = directory("node-other", 500);
    const roomId = newRoomId();
    const lost: { roomId: string; owner: string | undefined }[] = [];
    const keeper = keepLeases(holder, (id, owner) => lost.push({ roomId: id, owner }), silentLogger);
    cleanups.push(() => keeper.close());
    expect(await holder.claim(roomId)).toBe(true);
    keeper.hold(roomId);
    // Some four leases' worth of asking (every 20 ms); the other node is refused every time.
    let refusals = 0;
    await until(async () => {
      expect(await other.claim(roomId)).toBe(false);
      return ++refusals >= 100;
    }, "a hundred refused claims");
    expect(lost).toEqual([]);
    // Taken by force (an operator, a split): the holder must give the room up at its next renewal.
    await connection().set(`handshake:room:${roomId}:owner`, "node-other", "PX", 5_000);
    await until(async () => lost.length > 0, "the holder noticed");
    expect(lost).toEqual([{ roomId, owner: "node-other" }]);
  });
});

describe("the Redis room bus", () => {
  it("carries a room event to the node listening on the room, and nothing once it stops", async () => {
    const sender = createRedisBus({ publisher: connection(), subscriber: connection(), log: silentLogger });
    const owner = createRedisBus({ publisher: connection(), subscriber: connection(), log: silentLogger });
    const roomId = newRoomId();
    const heard: RoomBusMessage[] = [];
    let arrived: () => void = () => {};
    await owner.listen(roomId, (message) => {
      heard.push(message);
      arrived();
    });
    const milestone = create(MilestoneSchema, { id: "m1", contractId: "ctr_1", status: MilestoneStatus.COMPLETED, capturedMinor: 12_345n });
    await new Promise<void>((resolve) => {
      arrived = resolve;
      void sender.publish(roomId, { kind: "event", init: { visibleToUserId: "usr_1", event: { case: "milestone", value: milestone } } });
    });
    await new Promise<void>((resolve) => {
      arrived = resolve;
      void sender.publish(roomId, { kind: "contractExecuted", contractId: "ctr_1" });
    });
    expect(heard).toHaveLength(2);
    const [event, executed] = heard;
    expect(event?.kind).toBe("event");
    if (event?.kind !== "event" || event.init.event.case !== "milestone") throw new Error("not a milestone event");
    expect(event.init.visibleToUserId).toBe("usr_1");
    expect(event.init.event.value).toEqual(milestone);
    expect(executed).toEqual({ kind: "contractExecuted", contractId: "ctr_1" });
    await owner.unlisten(roomId);
    // Another room's listener proves delivery still works; the unlistened room hears nothing.
    const otherRoom = newRoomId();
    await new Promise<void>((resolve) => {
      void owner.listen(otherRoom, () => resolve()).then(async () => {
        await sender.publish(roomId, { kind: "contractExecuted", contractId: "ctr_2" });
        await sender.publish(otherRoom, { kind: "contractExecuted", contractId: "ctr_3" });
      });
    });
    expect(heard).toHaveLength(2);
    await sender.close();
    await owner.close();
  });
});

describe("two nodes on one Redis", () => {
  async function node(nodeId: string): Promise<TestApp> {
    const app = await startTestApp({ REDIS_URL: redis.url, NODE_ID: nodeId, ROOM_LEASE_MS: "1500" });
    cleanups.push(() => app.close());
    return app;
  }

  it("refuses a room another node hosts with UNAVAILABLE naming the owner, and closes a room at once when its lease is taken", async () => {
    const [first, second] = [await node("node-first"), await node("node-second")];
    const roomId = newRoomId();
    const ada = await joinPerson(first.baseUrl, roomId, { displayName: "Ada" });
    cleanups.push(() => ada.panel.stop());
    await ada.panel.waitFor((e) => e.event.case === "roomStatus", "the room's status");
    const refused = await second.app.deps.rooms.checkJoin(roomId, "usr_someone", "").then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toMatchObject({ name: "RoomOnOtherNodeError", ownerNodeId: "node-first" });
    await expect(joinPerson(second.baseUrl, roomId, { displayName: "Bo" })).rejects.toSatisfy(
      (err) => err instanceof ConnectError && err.code === Code.Unavailable && err.rawMessage.includes("node-first"),
    );
    // Someone else holds the lease now: the first node must stop serving the room.
    await connection().set(`handshake:room:${roomId}:owner`, "node-elsewhere", "PX", 10_000);
    await until(async () => first.app.deps.rooms.get(roomId) === undefined, "the room closed on the first node");
    const again = await ada.room.getRoom({}).catch((err: unknown) => err);
    expect(again).toBeInstanceOf(ConnectError);
    expect((again as ConnectError).code).toBe(Code.Unavailable);
    expect((again as ConnectError).rawMessage).toContain("node-elsewhere");
    expect(first.app.deps.rooms.get(roomId)).toBeUndefined();
    await expect(ada.panel.waitFor(() => false, "nothing")).rejects.toThrow(/UNAVAILABLE|unavailable|moved/i);
  });

  it("gives its rooms up at shutdown, so another node can take them without waiting for the leases to lapse", async () => {
    const leaving = await startTestApp({ REDIS_URL: redis.url, NODE_ID: "node-leaving", ROOM_LEASE_MS: "60000" });
    cleanups.push(() => leaving.close());
    const roomId = newRoomId();
    const ada = await joinPerson(leaving.baseUrl, roomId, { displayName: "Ada" });
    await ada.panel.waitFor((e) => e.event.case === "roomStatus", "the room's status");
    const key = `handshake:room:${roomId}:owner`;
    expect(await connection().get(key)).toBe("node-leaving");
    await leaving.close();
    await expect(ada.panel.waitFor(() => false, "nothing")).rejects.toThrow(/shutting down/);
    await ada.panel.stop();
    expect(await connection().get(key)).toBeNull();
  });

  it("answers UNAVAILABLE while the directory cannot be reached, and serves again once it can", async () => {
    const own = await startRedis();
    cleanups.push(() => own.stop());
    const app = await startTestApp({ REDIS_URL: own.url, NODE_ID: "node-alone", ROOM_LEASE_MS: "1500" });
    cleanups.push(() => app.close());
    const readyz = async () => {
      const answer = await fetch(`${app.baseUrl}/readyz`);
      return { status: answer.status, body: (await answer.json()) as { reasons: string[] } };
    };
    expect((await readyz()).status).toBe(200);
    await own.stop();
    // The router stops sending calls here: /readyz names Redis.
    const down = await readyz();
    expect(down.status).toBe(503);
    expect(down.body.reasons.join("; ")).toMatch(/^redis not reachable: the room directory could not be reached/);
    const refused = await joinPerson(app.baseUrl, newRoomId(), { displayName: "Ada" }).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(refused?.code).toBe(Code.Unavailable);
    expect(refused?.rawMessage).toMatch(/room directory could not be reached/);
    // Back where the node looks for it: the node reconnects by itself.
    const back = await startRedis({ port: own.port });
    cleanups.push(() => back.stop());
    let joined: Awaited<ReturnType<typeof joinPerson>> | undefined;
    await until(async () => {
      joined = await joinPerson(app.baseUrl, newRoomId(), { displayName: "Ada" }).catch(() => undefined);
      return joined !== undefined;
    }, "a join once the directory is back");
    cleanups.push(() => joined!.panel.stop());
    expect(await connection(back.url).get(`handshake:room:${joined!.roomId}:owner`)).toBe("node-alone");
    expect((await readyz()).status).toBe(200);
  });

  it("hands what another node raises about a room to the node that hosts it, which writes it into the room's log", async () => {
    const [host, other] = [await node("node-host"), await node("node-other")];
    const roomId = newRoomId();
    const ada = await joinPerson(host.baseUrl, roomId, { displayName: "Ada" });
    cleanups.push(() => ada.panel.stop());
    await ada.panel.waitFor((e) => e.event.case === "roomStatus", "the room's status");
    // What the settlement does on a node without the room (a milestone settled through ContractService there).
    const milestone = create(MilestoneSchema, { id: "m1", contractId: "ctr_elsewhere", status: MilestoneStatus.COMPLETED, capturedMinor: 500n });
    other.app.deps.rooms.publish(roomId, { visibleToUserId: ada.userId, event: { case: "milestone", value: milestone } });
    const heard = await ada.panel.waitFor((e) => e.event.case === "milestone", "the milestone from the other node");
    expect(heard.event.value).toEqual(milestone);
    expect(heard).toMatchObject({ roomId, visibleToUserId: ada.userId });
    expect(heard.seq).toBe(ada.panel.events.at(-2)!.seq + 1n);
    expect(other.app.deps.rooms.get(roomId)).toBeUndefined();
  });
});
