import { Code, ConnectError, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AudioControl, AudioEncoding, type AudioFrameSchema } from "../../gen/handshake/v1/audio_pb.js";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import { RoomService, type AudioStreamRequestSchema } from "../../gen/handshake/v1/room_service_pb.js";
import { createAsyncQueue } from "../../src/core/async-queue.js";
import { createInterceptors, createRoutes, createServerScopes } from "../../src/server/server.js";
import { bearer, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { driveDeal, expectCode } from "../support/security.js";

/**
 * The connect-node handlers in memory: `createRouterTransport` over the server's own routes and
 * interceptors, no socket in between. The app supplies real domain objects (rooms, store, desk).
 */

let t: TestApp;
const shutdown = new AbortController();
let inMemory: (token?: string) => { room: Client<typeof RoomService>; contracts: Client<typeof ContractService> };
beforeAll(async () => {
  t = await startTestApp();
  const deps = t.app.deps;
  const scopes = createServerScopes(deps);
  inMemory = (token) => {
    const transport = createRouterTransport(createRoutes(deps, scopes, shutdown.signal), {
      router: { interceptors: createInterceptors(deps, scopes) },
      transport: { interceptors: token ? [bearer(token)] : [] },
    });
    return { room: createClient(RoomService, transport), contracts: createClient(ContractService, transport) };
  };
});
afterAll(async () => {
  shutdown.abort();
  await t.close();
  // The in-memory calls open none; the app's own clients went with the server.
  expect(process.getActiveResourcesInfo().filter((r) => r.startsWith("TCP"))).toEqual([]);
});

const FORMAT = { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 };
/** Frames numbered [from, to), 20 ms of 16 kHz PCM16 each. */
const frames = (from: number, to: number): MessageInitShape<typeof AudioFrameSchema>[] =>
  Array.from({ length: to - from }, (_, i) => ({ seq: BigInt(from + i), pcm: new Uint8Array(640) }));

let rooms = 0;
async function joinOne(roomId = `mem-${rooms++}`, name = "Ada", userToken = "") {
  const joined = await inMemory().room.joinRoom({ roomId, profile: testProfile({ displayName: name }), userToken });
  return { roomId, userId: joined.userId, userToken: joined.userToken, status: joined.room, ...inMemory(joined.sessionToken) };
}

describe("RoomService in memory", () => {
  it("joins, reads the room, sets the trigger keyword and leaves", async () => {
    const a = await joinOne();
    const b = await joinOne(a.roomId, "Bo");
    expect(b.status?.participants.map((p) => p.displayName)).toEqual(["Ada", "Bo"]);
    const got = await a.room.getRoom({ roomId: a.roomId });
    expect([got.room?.paired, got.room?.participants.length]).toEqual([true, 2]);
    const keyword = await a.room.setTriggerKeyword({ roomId: a.roomId, keyword: "shake on it", requireBoth: false });
    expect(keyword.room?.triggerKeyword).toBe("shake on it");
    await b.room.leaveRoom({ roomId: a.roomId });
    expect((await a.room.getRoom({})).room?.participants.map((p) => p.displayName)).toEqual(["Ada"]);
    await a.room.leaveRoom({});
    expect(t.app.deps.rooms.get(a.roomId)).toBeUndefined();
  });

  it("maps domain errors to codes: no token, another room, a bad room id, a room that is gone", async () => {
    const a = await joinOne();
    await expectCode(() => inMemory().room.getRoom({ roomId: a.roomId }), Code.Unauthenticated);
    await expectCode(() => a.room.getRoom({ roomId: "another-room" }), Code.PermissionDenied);
    await expectCode(() => inMemory().room.joinRoom({ roomId: "no spaces", profile: testProfile() }), Code.InvalidArgument);
    await a.room.leaveRoom({});
    await expectCode(() => a.room.getRoom({}), Code.NotFound);
  });
});

describe("ContractService in memory", () => {
  it("lists and reads the caller's contracts, and the balances", async () => {
    const { provider, contract } = await driveDeal(t, `mem-deal-${rooms++}`);
    try {
      const mine = inMemory(provider.userToken).contracts;
      const got = await mine.getContract({ contractId: contract.id });
      expect([got.contract?.id, got.contract?.textSha256]).toEqual([contract.id, contract.textSha256]);
      const listed = await mine.listContracts({});
      expect(listed.contracts.map((c) => c.id)).toContain(contract.id);
      expect((await mine.getBalances({})).balances).toBeDefined();
    } finally {
      await provider.panel.stop();
    }
  });

  it("refuses a malformed contract id, an unknown one and a caller without a token", async () => {
    const a = await joinOne();
    await expectCode(() => a.contracts.getContract({ contractId: "ctr_x" }), Code.InvalidArgument);
    await expectCode(() => a.contracts.getContract({ contractId: "ctr_00000000-0000-4000-8000-000000000000" }), Code.NotFound);
    await expectCode(() => inMemory().contracts.listContracts({}), Code.Unauthenticated);
  });
});

describe("the connect-node AudioStream handler", () => {
  it("refuses a first message that is not the format header", async () => {
    const a = await joinOne();
    const out = createAsyncQueue<MessageInitShape<typeof AudioStreamRequestSchema>>();
    out.push({ message: { case: "frame", value: { seq: 0n, pcm: new Uint8Array(640) } } });
    const err = await a.room.audioStream(out.drain())[Symbol.asyncIterator]().next().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    out.end();
    expect([err?.code, err?.rawMessage]).toEqual([Code.InvalidArgument, "the first AudioStream message must be the format header"]);
  });

  it("relays a member's frames to the peer after the format, and takes a mute", async () => {
    const a = await joinOne();
    const b = await joinOne(a.roomId, "Bo");
    const outA = createAsyncQueue<MessageInitShape<typeof AudioStreamRequestSchema>>();
    const outB = createAsyncQueue<MessageInitShape<typeof AudioStreamRequestSchema>>();
    outB.push({ message: { case: "format", value: FORMAT } });
    const inB = b.room.audioStream(outB.drain())[Symbol.asyncIterator]();
    const inA = a.room.audioStream(outA.drain())[Symbol.asyncIterator]();
    outA.push({ message: { case: "format", value: { ...FORMAT, sampleRateHz: 48000 } } });
    // B's sink registers once its format is handled; A sends until B hears.
    let seq = 0n;
    const sender = setInterval(() => outA.push({ message: { case: "frame", value: { seq: seq++, pcm: new Uint8Array(960), capturedAtUs: 3n } } }), 10);
    const first = await inB.next().finally(() => clearInterval(sender));
    expect(first.value?.message).toMatchObject({ case: "peerFormat", value: { sampleRateHz: 48000 } });
    const frame = (await inB.next()).value?.message;
    expect(frame?.case === "peerFrame" && frame.value.capturedAtUs).toBe(3n);

    outA.push({ message: { case: "control", value: AudioControl.MUTE } });
    await expect.poll(() => t.app.deps.rooms.get(a.roomId)?.status().participants.find((p) => p.userId === a.userId)?.muted).toBe(true);
    outA.end();
    outB.end();
    while (!(await inA.next()).done);
    while (!(await inB.next()).done);
  });
});

describe("SendAudio state", () => {
  it("accepts a reloaded page's frames numbered from 0 again when it sends a new format; repeats without one stay dropped", async () => {
    const a = await joinOne();
    expect(await a.room.sendAudio({ format: FORMAT, frames: frames(0, 5) })).toMatchObject({ framesAccepted: 5, nextSeq: 5n });
    expect(await a.room.sendAudio({ frames: frames(3, 6) })).toMatchObject({ framesAccepted: 1, nextSeq: 6n });
    // The page reloads: the same member, a new format header, frames from 0.
    expect(await a.room.sendAudio({ format: FORMAT, frames: frames(0, 3) })).toMatchObject({ framesAccepted: 3, nextSeq: 3n });
  });

  it("starts afresh for a member who joins again, and for a new room of the same name", async () => {
    const a = await joinOne();
    await a.room.sendAudio({ format: FORMAT, frames: frames(0, 5) });
    const again = await joinOne(a.roomId, "Ada", a.userToken);
    expect(again.userId).toBe(a.userId);
    // Nothing of the old state is left: no format, numbering from 0.
    await expectCode(() => again.room.sendAudio({ frames: frames(0, 1) }), Code.InvalidArgument);
    expect(await again.room.sendAudio({ format: FORMAT, frames: frames(0, 1) })).toMatchObject({ framesAccepted: 1 });

    await again.room.leaveRoom({});
    const reborn = await joinOne(a.roomId, "Ada", a.userToken);
    await expectCode(() => reborn.room.sendAudio({ frames: frames(0, 1) }), Code.InvalidArgument);
    await reborn.room.leaveRoom({});
  });
});
