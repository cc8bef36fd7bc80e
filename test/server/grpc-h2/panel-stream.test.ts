import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PanelStreamRequestSchema, PanelStreamResponseSchema, RoomService } from "../../../gen/handshake/v1/room_service_pb.js";
import { grpcMessage, PANEL_STREAM_PATH } from "../../../src/server/grpc-h2/wire.js";
import { bearerHeaders, clients, startTestApp, testProfile, type TestApp } from "../../support/app.js";
import { connectRaw, rawGrpcCall, type RawAudioCall } from "../../support/raw-grpc.js";

/** gRPC status codes, as numbers on the wire. */
const S = { OK: 0, DEADLINE_EXCEEDED: 4, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, UNAUTHENTICATED: 16 };

let t: TestApp;
const sessions: http2.ClientHttp2Session[] = [];
beforeAll(async () => {
  t = await startTestApp({ MAX_STREAMS_PER_USER: "3" });
});
afterAll(async () => {
  for (const s of sessions) s.destroy();
  await t.close();
});

function session(): http2.ClientHttp2Session {
  const s = connectRaw(t.port);
  sessions.push(s);
  return s;
}

interface Member {
  userId: string;
  token: string;
  room: Client<typeof RoomService>;
}

let roomCounter = 0;
async function pair(): Promise<{ roomId: string; a: Member; b: Member }> {
  const roomId = `panel-fast-${roomCounter++}`;
  const joinOne = async (name: string): Promise<Member> => {
    const joined = await clients(t.baseUrl).room.joinRoom({ roomId, profile: testProfile({ displayName: name }) });
    return { userId: joined.userId, token: joined.sessionToken, room: clients(t.baseUrl, joined.sessionToken).room };
  };
  return { roomId, a: await joinOne("Ada"), b: await joinOne("Bo") };
}

const bearer = bearerHeaders;
const panelRequest = (roomId: string, afterSeq = 0n) => grpcMessage(toBinary(PanelStreamRequestSchema, create(PanelStreamRequestSchema, { roomId, afterSeq })));

/** A raw PanelStream call with its request sent and ended. */
function openPanel(token: string, roomId: string, afterSeq = 0n, headers: Record<string, string> = {}): RawAudioCall {
  const call = rawGrpcCall(session(), PANEL_STREAM_PATH, { ...bearer(token), ...headers });
  call.stream.end(panelRequest(roomId, afterSeq));
  return call;
}

const events = (call: RawAudioCall) => call.messages.map((m) => fromBinary(PanelStreamResponseSchema, m.subarray(5)).event!);

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("PanelStream on the native gRPC fast path", () => {
  it("sends the backlog after after_seq, then live events, the same bytes to both members", async () => {
    const { roomId, a, b } = await pair();
    await a.room.sendAudio({ transcript: { text: "before the panels opened", isFinal: true } });
    const room = t.app.deps.rooms.get(roomId)!;
    const backlogSeq = room.events.latestSeq;
    const panelA = openPanel(a.token, roomId);
    const panelB = openPanel(b.token, roomId, backlogSeq);
    await until(() => room.events.subscriberCount >= 2, "two subscribers");
    expect(events(panelA).some((e) => e.event.case === "transcript" && e.event.value.text === "before the panels opened")).toBe(true);

    await b.room.sendAudio({ transcript: { text: "after they opened", isFinal: true } });
    const isLive = (call: RawAudioCall) => call.messages.findIndex((m) => {
      const e = fromBinary(PanelStreamResponseSchema, m.subarray(5)).event!;
      return e.event.case === "transcript" && e.event.value.text === "after they opened";
    });
    await until(() => isLive(panelA) >= 0 && isLive(panelB) >= 0, "the live transcript on both panels");
    expect(panelA.messages[isLive(panelA)]!.equals(panelB.messages[isLive(panelB)]!)).toBe(true);
    // b asked for what came after backlogSeq only.
    expect(events(panelB).every((e) => e.seq > backlogSeq)).toBe(true);
    const seqs = events(panelA).map((e) => e.seq);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + BigInt(i)));

    panelA.stream.close(http2.constants.NGHTTP2_CANCEL);
    panelB.stream.close(http2.constants.NGHTTP2_CANCEL);
    await until(() => room.events.subscriberCount === 0, "subscribers released");
  });

  it("answers as connect-node does: missing or extra request, another room, no token, a deadline", async () => {
    const { roomId, a } = await pair();
    const missing = rawGrpcCall(session(), PANEL_STREAM_PATH, bearer(a.token));
    missing.stream.end();
    expect(await missing.status).toEqual({ code: S.UNIMPLEMENTED, message: "protocol error: missing input message for server-streaming method" });

    const extra = rawGrpcCall(session(), PANEL_STREAM_PATH, bearer(a.token));
    extra.stream.end(Buffer.concat([panelRequest(roomId), panelRequest(roomId)]));
    expect(await extra.status).toEqual({ code: S.UNIMPLEMENTED, message: "protocol error: received extra input message for server-streaming method" });

    expect(await openPanel(a.token, "some-other-room").status).toEqual({ code: S.PERMISSION_DENIED, message: "your session token does not cover this room" });
    const anonymous = rawGrpcCall(session(), PANEL_STREAM_PATH);
    anonymous.stream.end(panelRequest(roomId));
    expect((await anonymous.status).code).toBe(S.UNAUTHENTICATED);

    const timed = openPanel(a.token, roomId, 0n, { "grpc-timeout": "100m" });
    expect(await timed.status).toEqual({ code: S.DEADLINE_EXCEEDED, message: "the operation timed out" });
  });

  it("counts against the per-user stream limit and gives the slot back when cancelled", async () => {
    const { roomId, a } = await pair();
    const room = t.app.deps.rooms.get(roomId)!;
    const open = [openPanel(a.token, roomId), openPanel(a.token, roomId), openPanel(a.token, roomId)];
    await until(() => room.events.subscriberCount === 3, "three subscribers");
    const fourth = openPanel(a.token, roomId);
    expect((await fourth.status).code).toBe(S.RESOURCE_EXHAUSTED);
    open[0]!.stream.close(http2.constants.NGHTTP2_CANCEL);
    await until(() => room.events.subscriberCount === 2, "a subscriber released");
    const again = openPanel(a.token, roomId);
    await until(() => room.events.subscriberCount === 3, "a subscriber again");
    for (const call of [...open.slice(1), again]) call.stream.close(http2.constants.NGHTTP2_CANCEL);
    await until(() => room.events.subscriberCount === 0, "every subscriber released");
  });
});
