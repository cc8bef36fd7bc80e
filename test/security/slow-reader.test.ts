import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { PanelStreamRequestSchema, PanelStreamResponseSchema } from "../../gen/handshake/v1/room_service_pb.js";
import { bearerHeaders, startTestApp, type TestApp } from "../support/app.js";
import { gc } from "../support/memory.js";
import { recordPanel } from "../support/panel.js";
import { grpcEnvelope, joinAs, type Person } from "../support/security.js";

/**
 * A PanelStream reader that stops reading while its room keeps producing events. HTTP/2 flow
 * control pushes back to the server, the server queues at most PANEL_QUEUE_SIZE events for it,
 * then ends it with RESOURCE_EXHAUSTED; server memory stays bounded, the other readers are not
 * affected, and the slow reader resumes from the last seq it saw without a gap.
 */

const ROOM = "slow-reader-room";
const QUEUE = 16;
/** Transcript lines spoken while the reader is stalled (~450 bytes each: ~10× what the pipe holds). */
const EVENTS = 1000;
const BATCH = 25;

let t: TestApp;
let speaker: Person;
let listener: Person;


function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

beforeAll(async () => {
  t = await startTestApp({
    PANEL_QUEUE_SIZE: String(QUEUE),
    // Long enough for the stalled reader below to drain and read its status itself.
    PANEL_SLOW_READER_GRACE_MS: "120000",
    ROOM_EVENT_LOG_SIZE: "10000",
    SEND_AUDIO_PER_SECOND: "10000",
    LEAVE_GRACE_MS: "3600000",
  });
  speaker = await joinAs(t, ROOM, { displayName: "Talker", role: PartyRole.PROVIDER });
  listener = await joinAs(t, ROOM, { displayName: "Listener", role: PartyRole.CLIENT });
}, 30_000);

afterAll(async () => {
  await speaker?.panel.stop();
  await listener?.panel.stop();
  await t?.close();
});

/** A raw HTTP/2 PanelStream call whose response body is not read until `resume()`. */
function openStalledPanel(token: string, baseUrl = t.baseUrl) {
  const session = http2.connect(baseUrl);
  session.on("error", () => {});
  const req = session.request({
    ":method": "POST",
    ":path": "/handshake.v1.RoomService/PanelStream",
    "content-type": "application/grpc",
    te: "trailers",
    ...bearerHeaders(token),
  });
  req.end(Buffer.from(grpcEnvelope(toBinary(PanelStreamRequestSchema, create(PanelStreamRequestSchema, { roomId: ROOM, afterSeq: 0n })))));
  // No 'data' listener and paused: the client stops granting HTTP/2 window, as a stuck reader does.
  req.pause();
  let grpcStatus: number | undefined;
  // A reset reaches a paused stream as an error; its RST_STREAM code says why.
  const closed = new Promise<number>((resolve) => {
    req.on("error", () => resolve(req.rstCode ?? -1));
    req.on("close", () => resolve(req.rstCode ?? 0));
  });
  req.on("response", (headers) => {
    if (headers["grpc-status"] !== undefined) grpcStatus = Number(headers["grpc-status"]);
  });
  req.on("trailers", (trailers) => {
    if (trailers["grpc-status"] !== undefined) grpcStatus = Number(trailers["grpc-status"]);
  });
  return {
    /** Resolves with the HTTP/2 RST_STREAM code when the stream closes. */
    closed,
    close: () => session.destroy(),
    /** Reads everything that was held back and the final status. */
    async resume(): Promise<{ seqs: bigint[]; grpcStatus: number | undefined }> {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      await new Promise<void>((resolve, reject) => {
        req.on("end", resolve);
        req.on("error", reject);
        req.resume();
      });
      session.close();
      const body = Buffer.concat(chunks);
      const seqs: bigint[] = [];
      for (let at = 0; at + 5 <= body.length; ) {
        const length = body.readUInt32BE(at + 1);
        const message = fromBinary(PanelStreamResponseSchema, body.subarray(at + 5, at + 5 + length));
        if (message.event) seqs.push(message.event.seq);
        at += 5 + length;
      }
      return { seqs, grpcStatus };
    },
  };
}

/** Stalled-subscriber count right after the overflow, checked by the known-bug test below. */
let subscribersAfterOverflow: number | undefined;

describe("a PanelStream reader that stops reading", () => {
  it("is ended with RESOURCE_EXHAUSTED, costs bounded memory, and resumes from its last seq", async () => {
    const room = t.app.deps.rooms.get(ROOM);
    if (!room) throw new Error("room missing");
    // The two recorders from joinAs are subscribed; wait for the stalled reader to be the third.
    const stalled = openStalledPanel(listener.sessionToken);
    while (room.events.subscriberCount < 3) await new Promise((resolve) => setImmediate(resolve));
    const heapBefore = heapUsed();

    // Far more than fits: the client's 64 KiB HTTP/2 window, the server's 16 KiB write buffer and
    // PANEL_QUEUE_SIZE events. Lines are sent a batch at a time; their order does not matter here.
    const padding = "boilers and radiators ".repeat(18);
    for (let said = 0; said < EVENTS; said += BATCH) {
      await Promise.all(Array.from({ length: BATCH }, (_, i) => speaker.say(`line ${said + i} ${padding}`)));
    }
    subscribersAfterOverflow = room.events.subscriberCount;
    const heapAfter = heapUsed();
    // Bounded: the stalled stream costs at most its queue and HTTP/2 buffers, not one copy per event.
    expect(heapAfter - heapBefore).toBeLessThan(32 * 1024 * 1024);

    // The readers that keep up got every line.
    const count = (p: Person) => p.panel.events.filter((e) => e.event.case === "transcript").length;
    await listener.panel.waitFor(() => count(listener) >= EVENTS, `${EVENTS} transcripts`);
    await speaker.panel.waitFor(() => count(speaker) >= EVENTS, `${EVENTS} transcripts`);

    // The stalled reader gets what was already on its way, then RESOURCE_EXHAUSTED.
    const { seqs, grpcStatus } = await stalled.resume();
    expect(grpcStatus).toBe(Code.ResourceExhausted);
    expect(seqs.length).toBeGreaterThan(0);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + BigInt(i)));
    const lastSeen = seqs.at(-1)!;
    const latest = listener.panel.events.at(-1)!.seq;
    expect(lastSeen).toBeLessThan(latest);

    // Resuming after the last seq it saw continues without a gap, up to the latest event.
    const resumed = recordPanel(listener.room, ROOM, lastSeen);
    await resumed.waitFor((e) => e.seq >= latest, `seq ${latest}`);
    const resumedSeqs = resumed.events.map((e) => e.seq);
    expect(resumedSeqs[0]).toBe(lastSeen + 1n);
    expect(resumedSeqs).toEqual(resumedSeqs.map((_, i) => lastSeen + 1n + BigInt(i)));
    await resumed.stop();
  }, 120_000);

  it("resets a reader that never drains after the grace, freeing its subscriber (RESOURCE_EXHAUSTED)", async () => {
    expect(subscribersAfterOverflow).toBeGreaterThanOrEqual(2);
    const local = await startTestApp({ PANEL_QUEUE_SIZE: String(QUEUE), PANEL_SLOW_READER_GRACE_MS: "50", SEND_AUDIO_PER_SECOND: "10000" });
    try {
      const talker = await joinAs(local, ROOM, { displayName: "Talker", role: PartyRole.PROVIDER });
      const stuck = await joinAs(local, ROOM, { displayName: "Stuck", role: PartyRole.CLIENT });
      const room = local.app.deps.rooms.get(ROOM)!;
      const stalled = openStalledPanel(stuck.sessionToken, local.baseUrl);
      while (room.events.subscriberCount < 3) await new Promise((resolve) => setImmediate(resolve));
      const padding = "boilers and radiators ".repeat(18);
      for (let said = 0; said < 400; said += BATCH) {
        await Promise.all(Array.from({ length: BATCH }, (_, i) => talker.say(`line ${said + i} ${padding}`)));
      }
      while (room.events.subscriberCount > 2) await new Promise((resolve) => setImmediate(resolve));
      expect(room.events.subscriberCount).toBe(2);
      // ENHANCE_YOUR_CALM: grpc-js and connect-node both report it as RESOURCE_EXHAUSTED.
      stalled.resume().catch(() => {});
      expect(await stalled.closed).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      stalled.close();
      await talker.panel.stop();
      await stuck.panel.stop();
    } finally {
      await local.close();
    }
  }, 120_000);
});
