import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Level } from "pino";
import { describe, expect, it } from "vitest";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { grpcTransport, startTestApp } from "../support/app.js";
import { sampleValue, scrape } from "../support/metrics-text.js";
import { recordingLogger } from "../support/log-lines.js";
import { joinMember } from "../support/people.js";

const SEND_AUDIO = "handshake.v1.RoomService/SendAudio";

/** Three SendAudio calls that succeed and one refused for want of a token, on a server logging at `level`. */
async function sendAudioCalls(level: Level) {
  const { log, lines } = recordingLogger(level);
  const t = await startTestApp({}, undefined, log);
  try {
    const ada = await joinMember(t.baseUrl, "log-room", { displayName: "Ada" });
    for (const text of ["one", "two", "three"]) await ada.say(text);
    const refused = await createClient(RoomService, grpcTransport(t.baseUrl))
      .sendAudio({ transcript: { text: "four", isFinal: true } })
      .then(() => "OK", (err: unknown) => ConnectError.from(err).code);
    expect(refused).toBe(Code.Unauthenticated);
    const metrics = await scrape(t.baseUrl);
    const rpcLines = (code: string) => lines.map((l) => l.fields).filter((l) => l.msg === "rpc" && l.method === SEND_AUDIO && l.code === code);
    return { ok: rpcLines("OK"), refused: rpcLines("Unauthenticated"), counted: sampleValue(metrics, "handshake_rpc_duration_seconds_count", { method: SEND_AUDIO, path: "connect", code: "OK" }) };
  } finally {
    await t.close();
  }
}

describe("SendAudio's log line", () => {
  it("is at debug when the call succeeds (16 a second per talking browser), at info when it fails; the metrics count every call", async () => {
    const atInfo = await sendAudioCalls("info");
    expect(atInfo.ok).toEqual([]);
    expect(atInfo.refused).toHaveLength(1);
    expect(atInfo.counted).toBe(3);

    const atDebug = await sendAudioCalls("debug");
    expect(atDebug.ok).toHaveLength(3);
    expect(atDebug.ok.every((l) => l.level === 20)).toBe(true);
  });
});
