import http2 from "node:http2";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { create, fromBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AudioControl, AudioEncoding, AudioFormatSchema } from "../../../gen/handshake/v1/audio_pb.js";
import type { PanelEvent } from "../../../gen/handshake/v1/events_pb.js";
import { AudioStreamResponseSchema, RoomService, type AudioStreamRequestSchema } from "../../../gen/handshake/v1/room_service_pb.js";
import { TranscriptSource } from "../../../gen/handshake/v1/transcript_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createAsyncQueue } from "../../../src/core/async-queue.js";
import { encodeFrameMessage } from "../../../src/server/grpc-h2/wire.js";
import { bearer as bearerInterceptor, bearerHeaders, clients, startTestApp, testProfile, type TestApp } from "../../support/app.js";
import { recordPanel, type PanelRecorder } from "../../support/panel.js";
import { audioRequest, connectRaw, rawAudioCall, type RawAudioCall } from "../../support/raw-grpc.js";

/** gRPC status codes, as numbers on the wire. */
const S = { OK: 0, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16 };
const FORMAT = create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 });
const PCM = Buffer.from(Array.from({ length: 640 }, (_, i) => i % 251));

let t: TestApp;
const sessions: http2.ClientHttp2Session[] = [];
beforeAll(async () => {
  t = await startTestApp({ MAX_STREAMS_PER_USER: "3" });
});
afterAll(async () => {
  for (const s of sessions) s.destroy();
  await t.close();
});

/** A fresh HTTP/2 connection, closed after the suite. */
function session(port = t.port): http2.ClientHttp2Session {
  const s = connectRaw(port);
  sessions.push(s);
  return s;
}

interface Member {
  userId: string;
  token: string;
  userToken: string;
  room: Client<typeof RoomService>;
}

let roomCounter = 0;
/** Joins two people to a new room; returns them and a panel recorder of the first. */
async function pair(base = t.baseUrl): Promise<{ roomId: string; a: Member; b: Member; panel: PanelRecorder }> {
  const roomId = `fast-${roomCounter++}`;
  const joinOne = async (name: string): Promise<Member> => {
    const joined = await clients(base).room.joinRoom({ roomId, profile: testProfile({ displayName: name }) });
    return { userId: joined.userId, token: joined.sessionToken, userToken: joined.userToken, room: clients(base, joined.sessionToken).room };
  };
  const a = await joinOne("Ada");
  const b = await joinOne("Bo");
  return { roomId, a, b, panel: recordPanel(a.room, roomId) };
}

/** The room status event showing `userId` connected (or not), awaited on `panel`. */
function connected(panel: PanelRecorder, userId: string, yes = true, after = 0): Promise<PanelEvent> {
  return panel.waitFor(
    (e) => e.seq > BigInt(after) && e.event.case === "roomStatus" && e.event.value.participants.some((p) => p.userId === userId && p.connected === yes),
    `${userId} connected=${yes}`,
  );
}

const lastSeq = (panel: PanelRecorder) => Number(panel.events.at(-1)?.seq ?? 0n);
const bearer = bearerHeaders;

let markers = 0;
/** Waits until a new transcript is in the panel: every message sent before it on that stream was handled. */
async function marker(call: RawAudioCall, panel: PanelRecorder, label = "marker"): Promise<void> {
  const text = `${label} ${markers++}`;
  call.send({ message: { case: "transcript", value: { text, isFinal: true, confidence: 0.9 } } });
  await panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text === text, text);
}

/** Opens a raw AudioStream for `member` and sends the format; resolves once the server has handled it. */
async function openAudio(member: Member, panel: PanelRecorder, headers: Record<string, string> = {}): Promise<RawAudioCall> {
  const call = rawAudioCall(session(), { ...bearer(member.token), ...headers });
  call.send({ message: { case: "format", value: FORMAT } });
  await marker(call, panel, "stream open");
  return call;
}

function decodeResponse(message: Buffer) {
  return fromBinary(AudioStreamResponseSchema, message.subarray(5));
}

type Duplex = grpc.ClientDuplexStream<object, { message: string; peer_format?: { sample_rate_hz: number }; peer_frame?: { seq: string; pcm: Buffer; captured_at_us: string } }>;

function grpcJsClient(): grpc.Client & { AudioStream(md: grpc.Metadata): Duplex } {
  const definition = protoLoader.loadSync("handshake/v1/room_service.proto", {
    includeDirs: [path.resolve("proto")],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { handshake: { v1: { RoomService: grpc.ServiceClientConstructor } } };
  return new pkg.handshake.v1.RoomService(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure()) as never;
}

describe("AudioStream on the fast path keeps its contract", () => {
  it("relays frames unchanged between a grpc-js and a connect-node client, both ways, the peer's format first", async () => {
    const { a, b, panel } = await pair();
    // B on connect-node.
    const bOut = createAsyncQueue<MessageInitShape<typeof AudioStreamRequestSchema>>();
    bOut.push({ message: { case: "format", value: { encoding: AudioEncoding.PCM16LE, sampleRateHz: 48000, channels: 1 } } });
    const bIn = b.room.audioStream(bOut.drain())[Symbol.asyncIterator]();
    await connected(panel, b.userId);
    // A on grpc-js.
    const js = grpcJsClient();
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${a.token}`);
    const streamA = js.AudioStream(md);
    const fromB: { message: string; peer_format?: { sample_rate_hz: number }; peer_frame?: { seq: string; pcm: Buffer; captured_at_us: string } }[] = [];
    const twoFromB = new Promise<void>((resolve) => streamA.on("data", (m) => fromB.push(m) === 2 && resolve()));
    const aStatus = new Promise<grpc.StatusObject>((resolve) => streamA.on("status", resolve));
    streamA.on("error", () => {});
    streamA.write({ format: { encoding: "AUDIO_ENCODING_PCM16LE", sample_rate_hz: 16000, channels: 1 } });
    streamA.write({ transcript: { text: "grpc-js stream of A is open", is_final: true } });
    await panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text === "grpc-js stream of A is open", "A's transcript");

    streamA.write({ frame: { seq: 7, pcm: PCM, captured_at_us: "1700000000123456" } });
    const first = (await bIn.next()).value;
    const second = (await bIn.next()).value;
    expect(first?.message).toEqual({ case: "peerFormat", value: expect.objectContaining({ sampleRateHz: 16000, channels: 1 }) });
    expect(second?.message.case).toBe("peerFrame");
    if (second?.message.case !== "peerFrame") throw new Error("unreachable");
    expect(second.message.value.seq).toBe(7n);
    expect(second.message.value.capturedAtUs).toBe(1700000000123456n);
    expect(Buffer.from(second.message.value.pcm).equals(PCM)).toBe(true);

    bOut.push({ message: { case: "frame", value: { seq: 3n, pcm: PCM.subarray(0, 320), capturedAtUs: 42n } } });
    await twoFromB;
    expect(fromB[0]).toMatchObject({ message: "peer_format", peer_format: { sample_rate_hz: 48000 } });
    expect(fromB[1]).toMatchObject({ message: "peer_frame", peer_frame: { seq: "3", captured_at_us: "42" } });
    expect(Buffer.from(fromB[1]!.peer_frame!.pcm).equals(PCM.subarray(0, 320))).toBe(true);

    streamA.end();
    expect((await aStatus).code).toBe(grpc.status.OK);
    bOut.end();
    expect((await bIn.next()).done).toBe(true);
    js.close();
    await panel.stop();
  });

  it("forwards a frame's exact bytes, and frames it cannot parse in place arrive decoded the same", async () => {
    const { a, b, panel } = await pair();
    const callB = await openAudio(b, panel);
    const callA = await openAudio(a, panel);
    const wire = encodeFrameMessage(12, PCM, 1_700_000_000_654_321);
    callA.sendRaw(wire);
    expect(decodeResponse(await callB.message(1)).message.case).toBe("peerFormat");
    expect((await callB.message(2)).equals(wire)).toBe(true);

    // A seq beyond 2^53 and a negative capture time take the full decoder; the peer sees the same values.
    callA.send({ message: { case: "frame", value: { seq: 2n ** 60n, pcm: PCM, capturedAtUs: -5n } } });
    const big = decodeResponse(await callB.message(3)).message;
    expect(big.case === "peerFrame" && [big.value.seq, big.value.capturedAtUs]).toEqual([2n ** 60n, -5n]);

    callA.stream.end();
    callB.stream.end();
    expect((await callA.status).code).toBe(S.OK);
    expect((await callB.status).code).toBe(S.OK);
    await panel.stop();
  });

  it("relays each frame of a chunk holding several, with its own PCM, to a connect-node peer and a native one", async () => {
    const { a, b, panel } = await pair();
    const callNative = await openAudio(b, panel);
    const bOut = createAsyncQueue<MessageInitShape<typeof AudioStreamRequestSchema>>();
    bOut.push({ message: { case: "format", value: FORMAT } });
    // The Connect protocol is served by connect-node, whose sink reads the frame's fields.
    const connectB = createClient(RoomService, createConnectTransport({ baseUrl: t.baseUrl, httpVersion: "2", interceptors: [bearerInterceptor(b.token)] }));
    bOut.push({ message: { case: "transcript", value: { text: "B on the Connect protocol", isFinal: true, confidence: 0.9 } } });
    const bIn = connectB.audioStream(bOut.drain())[Symbol.asyncIterator]();
    const peerFormat = bIn.next();
    await panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text === "B on the Connect protocol", "B's Connect stream");
    const callA = await openAudio(a, panel);
    const pcms = [0x11, 0x22, 0x33].map((fill, i) => Buffer.alloc(320 + 2 * i, fill));
    const wires = pcms.map((pcm, i) => encodeFrameMessage(100 + i, pcm, 1_000 + i));
    // One write holding all three messages, then one split across two writes.
    callA.sendRaw(Buffer.concat(wires));
    const split = encodeFrameMessage(103, Buffer.alloc(640, 0x44), 1_003);
    callA.sendRaw(split.subarray(0, 200));
    callA.sendRaw(split.subarray(200));

    expect((await peerFormat).value?.message.case).toBe("peerFormat");
    for (const [i, pcm] of [...pcms, Buffer.alloc(640, 0x44)].entries()) {
      const got = (await bIn.next()).value?.message;
      expect(got?.case).toBe("peerFrame");
      if (got?.case !== "peerFrame") throw new Error("unreachable");
      expect([got.value.seq, got.value.capturedAtUs]).toEqual([BigInt(100 + i), BigInt(1_000 + i)]);
      expect(Buffer.from(got.value.pcm).equals(pcm)).toBe(true);
    }
    for (const [i, wire] of [...wires, split].entries()) expect((await callNative.message(i + 2)).equals(wire)).toBe(true);

    bOut.end();
    callA.stream.end();
    callNative.stream.end();
    expect((await callA.status).code).toBe(S.OK);
    await panel.stop();
  });

  it("puts device transcripts on both panels and obeys mute, unmute and flush", async () => {
    const { roomId, a, b, panel } = await pair();
    const panelB = recordPanel(b.room, roomId);
    const callB = await openAudio(b, panel);
    const callA = await openAudio(a, panel);
    callA.send({ message: { case: "transcript", value: { text: "the fence needs painting", isFinal: true, startMs: 0, endMs: 900, confidence: 0.9 } } });
    const isIt = (e: PanelEvent) => e.event.case === "transcript" && e.event.value.text === "the fence needs painting";
    for (const p of [panel, panelB]) {
      const e = await p.waitFor(isIt, "transcript");
      expect(e.event.case === "transcript" && [e.event.value.source, e.event.value.speakerUserId]).toEqual([TranscriptSource.DEVICE, a.userId]);
    }

    const mutedA = (yes: boolean) => (e: PanelEvent) =>
      e.event.case === "roomStatus" && e.event.value.participants.some((p) => p.userId === a.userId && p.muted === yes);
    callA.send({ message: { case: "control", value: AudioControl.MUTE } });
    await panel.waitFor(mutedA(true), "muted");
    callA.sendRaw(encodeFrameMessage(1, PCM, 1));
    const afterMute = lastSeq(panel);
    callA.send({ message: { case: "control", value: AudioControl.UNMUTE } });
    await panel.waitFor((e) => e.seq > BigInt(afterMute) && mutedA(false)(e), "unmuted");
    callA.send({ message: { case: "control", value: AudioControl.FLUSH } });
    callA.sendRaw(encodeFrameMessage(2, PCM, 2));
    // The frame sent while muted never arrives: after the format comes frame 2.
    const next = decodeResponse(await callB.message(2)).message;
    expect(next.case === "peerFrame" && next.value.seq).toBe(2n);

    callA.stream.end();
    callB.stream.end();
    expect((await callA.status).code).toBe(S.OK);
    await panel.stop();
    await panelB.stop();
  });

  describe("ends calls with the same status codes as the connect path", () => {
    it("UNAUTHENTICATED without a valid bearer token", async () => {
      for (const headers of [{}, { authorization: "Basic abc" }, { authorization: "Bearer not.a.token" }] as Record<string, string>[]) {
        const call = rawAudioCall(session(), headers);
        call.send({ message: { case: "format", value: FORMAT } });
        expect((await call.status).code).toBe(S.UNAUTHENTICATED);
      }
    });

    it("PERMISSION_DENIED for a user token or a member who left, NOT_FOUND for a room that is gone", async () => {
      const { roomId, a, b, panel } = await pair();
      await panel.stop();
      let call = rawAudioCall(session(), bearer(a.userToken));
      expect((await call.status)).toEqual({ code: S.PERMISSION_DENIED, message: "room methods need the session token from JoinRoom" });
      await b.room.leaveRoom({ roomId });
      call = rawAudioCall(session(), bearer(b.token));
      expect((await call.status).code).toBe(S.PERMISSION_DENIED);
      await a.room.leaveRoom({ roomId });
      call = rawAudioCall(session(), bearer(a.token));
      expect((await call.status).code).toBe(S.NOT_FOUND);
    });

    it("INVALID_ARGUMENT for a first message that is not the format, bad formats, frames, controls and messages", async () => {
      const { a, panel } = await pair();
      const cases: { name: string; first?: Buffer; then?: Buffer; message: RegExp }[] = [
        { name: "frame first", first: encodeFrameMessage(0, PCM, 1), message: /first AudioStream message must be the format header/ },
        { name: "empty first", first: audioRequest({}), message: /first AudioStream message must be the format header/ },
        { name: "bad rate", first: audioRequest({ message: { case: "format", value: { ...FORMAT, sampleRateHz: 12345 } } }), message: /12345/ },
        { name: "odd pcm", then: encodeFrameMessage(1, Buffer.alloc(641), 1), message: /odd byte count/ },
        { name: "huge pcm", then: encodeFrameMessage(1, Buffer.alloc(32_002), 1), message: /at most 32000/ },
        { name: "empty pcm", then: audioRequest({ message: { case: "frame", value: { seq: 1n } } }), message: /empty/ },
        { name: "empty message", then: audioRequest({}), message: /AudioStream message is empty/ },
        { name: "bad control", then: audioRequest({ message: { case: "control", value: AudioControl.UNSPECIFIED } }), message: /control must be/ },
        { name: "empty transcript", then: audioRequest({ message: { case: "transcript", value: { text: " " } } }), message: /empty/ },
      ];
      for (const c of cases) {
        const call = rawAudioCall(session(), bearer(a.token));
        call.sendRaw(c.first ?? audioRequest({ message: { case: "format", value: FORMAT } }));
        if (c.then) call.sendRaw(c.then);
        const status = await call.status;
        expect({ name: c.name, code: status.code }).toEqual({ name: c.name, code: S.INVALID_ARGUMENT });
        expect(status.message).toMatch(c.message);
      }
      const cut = rawAudioCall(session(), bearer(a.token));
      cut.sendRaw(audioRequest({ message: { case: "format", value: FORMAT } }));
      cut.sendRaw(encodeFrameMessage(1, PCM, 1).subarray(0, 100));
      cut.stream.end();
      expect(await cut.status).toEqual({ code: S.INVALID_ARGUMENT, message: "protocol error: incomplete envelope" });
      const badTimeout = rawAudioCall(session(), { ...bearer(a.token), "grpc-timeout": "soon" });
      expect((await badTimeout.status).code).toBe(S.INVALID_ARGUMENT);
      await panel.stop();
    });

    it("INTERNAL for bytes that are not protobuf or compressed without grpc-encoding, UNIMPLEMENTED for an unknown encoding; gzip works", async () => {
      const { a, panel } = await pair();
      const garbage = rawAudioCall(session(), bearer(a.token));
      garbage.sendRaw(audioRequest({ message: { case: "format", value: FORMAT } }));
      garbage.sendRaw(Buffer.from([0, 0, 0, 0, 3, 0xff, 0xff, 0xff]));
      const garbageStatus = await garbage.status;
      expect(garbageStatus.code).toBe(S.INTERNAL);
      expect(garbageStatus.message).toMatch(/^parse binary: /);

      const deflate = rawAudioCall(session(), { ...bearer(a.token), "grpc-encoding": "deflate" });
      expect(await deflate.status).toEqual({ code: S.UNIMPLEMENTED, message: 'unknown compression "deflate": supported encodings are gzip,br' });

      const unflagged = rawAudioCall(session(), bearer(a.token));
      const compressed = audioRequest({ message: { case: "format", value: FORMAT } });
      compressed[0] = 1;
      unflagged.sendRaw(compressed);
      expect((await unflagged.status).code).toBe(S.INTERNAL);

      // A gzip client: compressed format and transcript are understood.
      const gzip = rawAudioCall(session(), { ...bearer(a.token), "grpc-encoding": "gzip" });
      const zipped = (init: Parameters<typeof audioRequest>[0]) => {
        const body = gzipSync(audioRequest(init).subarray(5));
        const out = Buffer.alloc(5 + body.length);
        out[0] = 1;
        out.writeUInt32BE(body.length, 1);
        body.copy(out, 5);
        return out;
      };
      gzip.sendRaw(zipped({ message: { case: "format", value: FORMAT } }));
      gzip.sendRaw(zipped({ message: { case: "transcript", value: { text: "compressed hello", isFinal: true } } }));
      await panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text === "compressed hello", "gzip transcript");
      gzip.stream.end();
      expect((await gzip.status).code).toBe(S.OK);
      await panel.stop();
    });

    it("RESOURCE_EXHAUSTED for a message over the size limit and for streams beyond the per-user limit", async () => {
      const { a, panel } = await pair();
      const tooBig = rawAudioCall(session(), bearer(a.token));
      const header = Buffer.alloc(5);
      header.writeUInt32BE(t.app.deps.config.limits.maxMessageBytes + 1, 1);
      tooBig.sendRaw(header);
      expect((await tooBig.status).code).toBe(S.RESOURCE_EXHAUSTED);

      const one = await openAudio(a, panel);
      const two = rawAudioCall(session(), bearer(a.token));
      two.send({ message: { case: "format", value: FORMAT } });
      await marker(two, panel, "second stream is open");
      const three = rawAudioCall(session(), bearer(a.token));
      three.send({ message: { case: "format", value: FORMAT } });
      // One limit across every kind of stream: the panel and two AudioStreams fill the 3 slots.
      expect((await three.status)).toEqual({ code: S.RESOURCE_EXHAUSTED, message: "at most 3 open streams per user" });
      one.stream.end();
      two.stream.end();
      await Promise.all([one.status, two.status]);
      await panel.stop();
    });

    it("RESOURCE_EXHAUSTED for a reader that falls 250 frames behind, without hurting the sender", async () => {
      const { a, b, panel } = await pair();
      const callB = await openAudio(b, panel);
      callB.stream.pause();
      const callA = await openAudio(a, panel);
      for (let i = 0; i < 400; i++) callA.sendRaw(encodeFrameMessage(i, PCM, i + 1));
      await marker(callA, panel, "sent 400 frames");
      callB.stream.resume();
      expect(await callB.status).toEqual({ code: S.RESOURCE_EXHAUSTED, message: "audio stream fell more than 250 frames behind" });
      // The sender's stream is unaffected.
      await marker(callA, panel, "still talking");
      callA.stream.end();
      expect((await callA.status).code).toBe(S.OK);
      await panel.stop();
    });
  });

  it("DEADLINE_EXCEEDED when grpc-timeout runs out", async () => {
    const { a, panel } = await pair();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const call = rawAudioCall(session(), { ...bearer(a.token), "grpc-timeout": "30S" });
      call.send({ message: { case: "format", value: FORMAT } });
      await marker(call, panel, "before the deadline");
      vi.advanceTimersByTime(30_000);
      vi.useRealTimers();
      expect(await call.status).toEqual({ code: S.DEADLINE_EXCEEDED, message: "the operation timed out" });
    } finally {
      vi.useRealTimers();
      await panel.stop();
    }
  });

  it("lets go of a cancelled stream: no sink left behind, the member shows disconnected, the stream slots are free again", async () => {
    const { roomId, a, b, panel } = await pair();
    const room = t.app.deps.rooms.get(roomId)!;
    // Room keeps its members private; peeking is the only way to see a leaked sink.
    const sinksOf = (userId: string) => (room as unknown as { members: Map<string, { sinks: Set<unknown> }> }).members.get(userId)?.sinks.size;
    const callA = await openAudio(a, panel);
    const first = await openAudio(b, panel);
    const second = await openAudio(b, panel);
    expect([room.openStreams(b.userId), sinksOf(b.userId)]).toEqual([2, 2]);
    let mark = lastSeq(panel);
    first.stream.close(http2.constants.NGHTTP2_CANCEL);
    second.stream.close(http2.constants.NGHTTP2_CANCEL);
    await connected(panel, b.userId, false, mark);
    expect([room.openStreams(b.userId), sinksOf(b.userId)]).toEqual([0, 0]);

    // Both slots are free again, and each new stream gets A's frames once.
    const again = [await openAudio(b, panel), await openAudio(b, panel)];
    callA.sendRaw(encodeFrameMessage(99, PCM, 1));
    for (const call of again) {
      const frame = decodeResponse(await call.message(2)).message;
      expect(frame.case === "peerFrame" && frame.value.seq).toBe(99n);
    }
    mark = lastSeq(panel);
    for (const call of again) call.stream.end();
    expect((await Promise.all(again.map((c) => c.status))).map((st) => st.code)).toEqual([S.OK, S.OK]);
    await connected(panel, b.userId, false, mark);

    // A grpc-js client's cancel cleans up the same way.
    const js = grpcJsClient();
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${b.token}`);
    const stream = js.AudioStream(md);
    stream.on("error", () => {});
    const status = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
    stream.write({ format: { encoding: "AUDIO_ENCODING_PCM16LE", sample_rate_hz: 16000, channels: 1 } });
    stream.write({ transcript: { text: "grpc-js stream of B is open", is_final: true } });
    await panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text === "grpc-js stream of B is open", "B's transcript");
    expect([room.openStreams(b.userId), sinksOf(b.userId)]).toEqual([1, 1]);
    mark = lastSeq(panel);
    stream.cancel();
    expect((await status).code).toBe(grpc.status.CANCELLED);
    await connected(panel, b.userId, false, mark);
    expect([room.openStreams(b.userId), sinksOf(b.userId)]).toEqual([0, 0]);
    js.close();
    callA.stream.end();
    await callA.status;
    await panel.stop();
  });

  it("ends open calls with UNAVAILABLE when the server shuts down", async () => {
    const own = await startTestApp();
    const s = connectRaw(own.port);
    try {
      const { a, panel } = await pair(own.baseUrl);
      const call = rawAudioCall(s, bearer(a.token));
      call.send({ message: { case: "format", value: FORMAT } });
      await marker(call, panel);
      const closing = own.close();
      expect((await call.status).code).toBe(S.UNAVAILABLE);
      s.close();
      await closing;
      await panel.stop();
    } finally {
      s.destroy();
    }
  });
});
