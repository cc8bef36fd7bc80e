import { Writable } from "node:stream";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AudioEncoding } from "../../gen/handshake/v1/audio_pb.js";
import { RoomService, type AudioStreamRequestSchema, type AudioStreamResponse } from "../../gen/handshake/v1/room_service_pb.js";
import { createAsyncQueue, type AsyncQueue } from "../../src/core/async-queue.js";
import { bearer, clients, startTestApp, testProfile, type TestApp } from "../support/app.js";

/**
 * Each cross-cutting rule (authentication, the session's room and membership, the per-user
 * stream limit, the log line) run through both ways in: connect-node (the Connect protocol over
 * HTTP/2, which the fast path never takes) and the node:http2 fast path (native gRPC), with one
 * test body per rule.
 */

type LogLine = Record<string, unknown> & { msg?: string; path?: string; method?: string; code?: string };

const lines: LogLine[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString().split("\n")) if (line.trim() !== "") lines.push(JSON.parse(line) as LogLine);
    done();
  },
});

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ MAX_STREAMS_PER_USER: "2" }, undefined, pino({ level: "info" }, sink));
});
afterAll(async () => {
  await t.close();
  // Every client connection went with the server: none is left open.
  expect(process.getActiveResourcesInfo().filter((r) => r.startsWith("TCP"))).toEqual([]);
});

const AUDIO = "handshake.v1.RoomService/AudioStream";
const PANEL = "handshake.v1.RoomService/PanelStream";
const FORMAT = { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 };

/** The two ways in, as typed-client transports. */
const PATHS = [
  {
    path: "connect",
    transport: (token?: string): Transport =>
      createConnectTransport({ baseUrl: t.baseUrl, httpVersion: "2", interceptors: token ? [bearer(token)] : [] }),
  },
  {
    path: "grpc-h2",
    transport: (token?: string): Transport => createGrpcTransport({ baseUrl: t.baseUrl, interceptors: token ? [bearer(token)] : [] }),
  },
] as const;

type AudioOut = AsyncQueue<MessageInitShape<typeof AudioStreamRequestSchema>>;

/** Opens an AudioStream whose requests the test pushes; its responses are read with `next`. */
function openAudio(room: Client<typeof RoomService>, signal?: AbortSignal): { out: AudioOut; next: () => Promise<IteratorResult<AudioStreamResponse>> } {
  const out: AudioOut = createAsyncQueue();
  const responses = room.audioStream(out.drain(), signal ? { signal } : {})[Symbol.asyncIterator]();
  return { out, next: () => responses.next() };
}

/** The code a stream call ends with, reading it to its end. */
async function codeOf(call: () => Promise<unknown>): Promise<Code | "OK"> {
  try {
    await call();
    return "OK";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

/** The log line of the call of `method` that ended with `code`, by the user when given. */
function logLine(method: string, code: string, userId?: string): LogLine | undefined {
  return lines.findLast((l) => l.msg === "rpc" && l.method === method && l.code === code && (userId === undefined || l.userId === userId));
}

let rooms = 0;
/** Joins one or two people to a new room over gRPC; their clients go through `transport`. */
async function join(transport: (token?: string) => Transport, names = ["Ada"]) {
  const roomId = `rules-${rooms++}`;
  const members = [];
  for (const name of names) {
    const joined = await clients(t.baseUrl).room.joinRoom({ roomId, profile: testProfile({ displayName: name }) });
    members.push({ ...joined, room: createClient(RoomService, transport(joined.sessionToken)), user: createClient(RoomService, transport(joined.userToken)) });
  }
  return { roomId, members };
}

describe.each(PATHS)("on the $path path", ({ path, transport }) => {
  it("refuses a missing or bad bearer token with Unauthenticated and logs the call with its path", async () => {
    const { roomId } = await join(transport);
    for (const room of [createClient(RoomService, transport()), createClient(RoomService, transport("not.a.token"))]) {
      expect(await codeOf(async () => {
        for await (const _ of room.panelStream({ roomId, afterSeq: 0n }));
      })).toBe(Code.Unauthenticated);
      const audio = openAudio(room);
      audio.out.push({ message: { case: "format", value: FORMAT } });
      expect(await codeOf(() => audio.next())).toBe(Code.Unauthenticated);
      audio.out.end();
    }
    for (const method of [PANEL, AUDIO]) expect(logLine(method, "Unauthenticated")).toMatchObject({ path, method, code: "Unauthenticated" });
  });

  it("refuses another room and a user token with PermissionDenied, a member who left likewise, a room that is gone with NotFound", async () => {
    const { roomId, members } = await join(transport, ["Ada", "Bo"]);
    const [a, b] = members as [(typeof members)[0], (typeof members)[0]];
    const panel = (room: Client<typeof RoomService>, id = roomId) =>
      codeOf(async () => {
        for await (const _ of room.panelStream({ roomId: id, afterSeq: 0n }, { timeoutMs: 5000 })) break;
      });
    const audio = async (room: Client<typeof RoomService>) => {
      const call = openAudio(room);
      call.out.push({ message: { case: "format", value: FORMAT } });
      call.out.end();
      return codeOf(async () => {
        while (!(await call.next()).done);
      });
    };
    expect(await panel(a.room, "some-other-room")).toBe(Code.PermissionDenied);
    expect(logLine(PANEL, "PermissionDenied", a.userId)).toMatchObject({ path, roomId });
    expect(await panel(a.user)).toBe(Code.PermissionDenied);
    expect(await audio(a.user)).toBe(Code.PermissionDenied);
    await clients(t.baseUrl, b.sessionToken).room.leaveRoom({ roomId });
    expect(await panel(b.room)).toBe(Code.PermissionDenied);
    expect(await audio(b.room)).toBe(Code.PermissionDenied);
    await clients(t.baseUrl, a.sessionToken).room.leaveRoom({ roomId });
    expect(await panel(a.room)).toBe(Code.NotFound);
    expect(await audio(a.room)).toBe(Code.NotFound);
    expect(logLine(AUDIO, "NotFound", a.userId)).toMatchObject({ path, roomId });
  });

  it("counts PanelStream and AudioStream against one per-user limit and frees the slot when a stream ends", async () => {
    const { roomId, members } = await join(transport);
    const a = members[0]!;
    const controller = new AbortController();
    const panel = a.room.panelStream({ roomId, afterSeq: 0n }, { signal: controller.signal })[Symbol.asyncIterator]();
    expect((await panel.next()).value?.event?.seq).toBe(1n);
    const audio = openAudio(a.room, controller.signal);
    audio.out.push({ message: { case: "format", value: FORMAT } });
    audio.out.push({ message: { case: "transcript", value: { text: "second stream open", isFinal: true } } });
    while ((await panel.next()).value?.event?.event.case !== "transcript");

    const third = a.room.panelStream({ roomId, afterSeq: 0n })[Symbol.asyncIterator]();
    const refused = await third.next().then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect([refused?.code, refused?.rawMessage]).toEqual([Code.ResourceExhausted, "at most 2 open streams per user"]);
    expect(logLine(PANEL, "ResourceExhausted", a.userId)).toMatchObject({ path });

    // The audio stream ends: its slot is free for another stream.
    audio.out.end();
    while (!(await audio.next()).done);
    const again = a.room.panelStream({ roomId, afterSeq: 0n }, { signal: controller.signal })[Symbol.asyncIterator]();
    expect((await again.next()).value?.event?.seq).toBe(1n);
    expect(logLine(AUDIO, "OK", a.userId)).toMatchObject({ path, roomId });
    controller.abort();
    await Promise.allSettled([panel.next(), again.next()]);
  });

  it("relays audio both ways through AudioStream, the peer's format first, and logs each call with its path", async () => {
    const { members } = await join(transport, ["Ada", "Bo"]);
    const [a, b] = members as [(typeof members)[0], (typeof members)[0]];
    const callB = openAudio(b.room);
    callB.out.push({ message: { case: "format", value: { ...FORMAT, sampleRateHz: 48000 } } });
    const callA = openAudio(a.room);
    callA.out.push({ message: { case: "format", value: FORMAT } });
    const pcm = new Uint8Array(640).fill(7);
    // B's sink registers once B's format is handled; A sends until B hears a frame.
    let seq = 0n;
    const sender = setInterval(() => callA.out.push({ message: { case: "frame", value: { seq: seq++, pcm, capturedAtUs: 5n } } }), 20);
    let first: AudioStreamResponse | undefined;
    let second: AudioStreamResponse | undefined;
    try {
      first = (await callB.next()).value;
      second = (await callB.next()).value;
    } finally {
      clearInterval(sender);
    }
    expect(first?.message).toMatchObject({ case: "peerFormat", value: { sampleRateHz: 16000 } });
    expect(second?.message.case === "peerFrame" && [second.message.value.capturedAtUs, Buffer.from(second.message.value.pcm).equals(pcm)]).toEqual([5n, true]);

    callB.out.push({ message: { case: "frame", value: { seq: 0n, pcm: pcm.subarray(0, 320), capturedAtUs: 9n } } });
    let fromB = await callA.next();
    expect(fromB.value?.message).toMatchObject({ case: "peerFormat", value: { sampleRateHz: 48000 } });
    fromB = await callA.next();
    expect(fromB.value?.message.case === "peerFrame" && fromB.value.message.value.capturedAtUs).toBe(9n);

    callA.out.end();
    callB.out.end();
    expect(await codeOf(async () => {
      while (!(await callA.next()).done);
    })).toBe("OK");
    expect(await codeOf(async () => {
      while (!(await callB.next()).done);
    })).toBe("OK");
    for (const member of [a, b]) expect(logLine(AUDIO, "OK", member.userId)).toMatchObject({ path, method: AUDIO, code: "OK" });
  });
});

describe("both paths together", () => {
  it("share one per-user stream limit", async () => {
    const [connect, grpc] = PATHS;
    const { roomId, members } = await join(connect.transport);
    const a = members[0]!;
    const viaGrpc = createClient(RoomService, grpc.transport(a.sessionToken));
    const controller = new AbortController();
    const open = [a.room, viaGrpc].map((room) => room.panelStream({ roomId, afterSeq: 0n }, { signal: controller.signal })[Symbol.asyncIterator]());
    for (const stream of open) expect((await stream.next()).value?.event?.seq).toBe(1n);
    for (const room of [a.room, viaGrpc]) {
      expect(await codeOf(async () => {
        for await (const _ of room.panelStream({ roomId, afterSeq: 0n })) break;
      })).toBe(Code.ResourceExhausted);
    }
    controller.abort();
    await Promise.allSettled(open.map((s) => s.next()));
  });
});
