import http from "node:http";
import type { Database } from "better-sqlite3";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AudioEncoding } from "../../gen/handshake/v1/audio_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService, type AudioStreamRequest } from "../../gen/handshake/v1/room_service_pb.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { TEST_JWT_SECRET, expectCode, joinAs, type Person } from "../support/security.js";
import { settledStoreDigest } from "../support/store-rows.js";

/**
 * Values at the edges of their types and of the machine: each gets INVALID_ARGUMENT (or 400),
 * never INTERNAL, and leaves the store, the room and its panel as they were. A full disk is
 * UNAVAILABLE with its reason; a short JWT_SECRET stops the server before it starts.
 */

const ROOM = "edge-room";
const UINT64_MAX = 2n ** 64n - 1n;

let t: TestApp;
let ann: Person;
let ben: Person;

const json = (value: unknown) => JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));

/** The store, both members' view of the room and their panels' last sequence numbers. */
async function snapshot(): Promise<string> {
  const [store, room, contracts] = await Promise.all([settledStoreDigest(t.dataDir), ann.room.getRoom({}), ann.contracts.listContracts({})]);
  return json({ store, room, contracts, seqs: [ann, ben].map((p) => p.panel.events.at(-1)?.seq ?? 0n) });
}

/** A plain HTTP/1.1 request; the body as text. */
function httpRequest(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: t.port, method, path, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const format = { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 };
const frame = (seq: bigint) => ({ seq, pcm: new Uint8Array(640) });

beforeAll(async () => {
  t = await startTestApp({ JWT_SECRET: TEST_JWT_SECRET, LEAVE_GRACE_MS: "3600000", SEND_AUDIO_PER_SECOND: "1000" });
  ann = await joinAs(t, ROOM, { displayName: "Ann", role: PartyRole.PROVIDER });
  ben = await joinAs(t, ROOM, { displayName: "Ben", role: PartyRole.CLIENT });
  await ben.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.paired, "the pair");
}, 30_000);

afterAll(async () => {
  await ann?.panel.stop();
  await ben?.panel.stop();
  await t?.close();
});

describe("values at the edge of their type", () => {
  const cursor = (c: string) => Buffer.from(JSON.stringify({ c, i: "ctr_x" })).toString("base64url");
  const cases: [string, () => Promise<unknown>][] = [
    ["SendAudio a frame numbered 2^64−1", () => ann.room.sendAudio({ format, frames: [frame(UINT64_MAX)] })],
    ["SendAudio a frame numbered 2^63 after a good one", () => ann.room.sendAudio({ format, frames: [frame(0n), frame(2n ** 63n)] })],
    [
      "AudioStream (native gRPC) a frame numbered 2^64−1",
      async () => {
        async function* input(): AsyncGenerator<AudioStreamRequest> {
          yield { message: { case: "format", value: format } } as AudioStreamRequest;
          yield { message: { case: "frame", value: frame(UINT64_MAX) } } as AudioStreamRequest;
        }
        for await (const _ of ann.room.audioStream(input(), { timeoutMs: 5000 }));
      },
    ],
    ["ListContracts with a page token 1 above int64", () => ann.contracts.listContracts({ pageToken: cursor("9223372036854775808") })],
    ["ListContracts with a page token of 19 nines", () => ann.contracts.listContracts({ pageToken: cursor("9999999999999999999") })],
    ["ListContracts with a page token below zero", () => ann.contracts.listContracts({ pageToken: cursor("-1") })],
    ["SetTriggerKeyword with a NUL", () => ann.room.setTriggerKeyword({ keyword: "deal\u0000" })],
    ["SetTriggerKeyword with a newline", () => ann.room.setTriggerKeyword({ keyword: "deal\nnow" })],
    ["SetTriggerKeyword with a bidi override", () => ann.room.setTriggerKeyword({ keyword: "\u202edeal" })],
  ];

  it.each(cases)("%s is INVALID_ARGUMENT and changes nothing", async (_name, call) => {
    const before = await snapshot();
    await expectCode(call, Code.InvalidArgument);
    expect(await snapshot()).toBe(before);
  });

  it("the largest frame number a client may send (int64's maximum) is taken, and numbering goes on from it", async () => {
    // Runs after the refusals above: had any of them been taken, frame 5 would be dropped as old.
    const first = await ben.room.sendAudio({ format, frames: [frame(5n)] });
    expect({ nextSeq: first.nextSeq, framesAccepted: first.framesAccepted }).toEqual({ nextSeq: 6n, framesAccepted: 1 });
    const last = await ben.room.sendAudio({ frames: [frame(2n ** 63n - 1n)] });
    expect({ nextSeq: last.nextSeq, framesAccepted: last.framesAccepted }).toEqual({ nextSeq: 2n ** 63n, framesAccepted: 1 });
  });
});

describe("Connect JSON and plain HTTP", () => {
  it.each([
    ["JoinRoom", { roomId: "edge-json", profile: { displayName: "Eve", role: "PARTY_ROLE_WIZARD", currency: "GBP" } }, false],
    ["SetProfile", { profile: { displayName: "Ann", role: "PARTY_ROLE_PROVIDER", style: "NEGOTIATION_STYLE_RUTHLESS", currency: "GBP" } }, true],
  ] as const)("%s with an unknown enum name is 400 invalid_argument and changes nothing", async (method, body, authed) => {
    const before = await snapshot();
    const res = await httpRequest(
      "POST",
      `/handshake.v1.RoomService/${method}`,
      { "content-type": "application/json", ...(authed ? { authorization: `Bearer ${ann.sessionToken}` } : {}) },
      JSON.stringify(body),
    );
    expect({ status: res.status, code: (JSON.parse(res.body) as { code: string }).code }).toEqual({ status: 400, code: "invalid_argument" });
    expect(await snapshot()).toBe(before);
    expect(t.app.deps.rooms.get("edge-json")).toBeUndefined();
  });

  it.each(["/%", "/%E0%A4%A", "/index.html%", "/handshake.v1.RoomService/%zz"])("GET %s is 400", async (path) => {
    const before = await snapshot();
    const res = await httpRequest("GET", path);
    expect(res.status).toBe(400);
    expect(await snapshot()).toBe(before);
  });
});

describe("a full disk", () => {
  /** The store's SQLite connection: capping its page count is a full disk as SQLite sees one (SQLITE_FULL). */
  const database = () => (t.app.deps.store as unknown as { db: Database }).db;

  it("JoinRoom is UNAVAILABLE with the reason, stores nothing, and works again once there is room", async () => {
    const before = await snapshot();
    const db = database();
    db.pragma(`max_page_count = ${db.pragma("page_count", { simple: true }) as number}`);
    const anonymous = createClient(RoomService, grpcTransport(t.baseUrl));
    // A profile far larger than the free space in the database's last pages.
    const profile = testProfile({ displayName: "Full", contextDocuments: Array.from({ length: 10 }, (_, i) => ({ title: `doc ${i}`, text: "x".repeat(20_000) })) });
    try {
      const err = await expectCode(() => anonymous.joinRoom({ roomId: "edge-full", profile }), Code.Unavailable);
      expect(err.rawMessage).toMatch(/storage is full/);
      const setProfile = await expectCode(() => ann.room.setProfile({ profile: testProfile({ ...profile, displayName: "Ann", role: PartyRole.PROVIDER }) }), Code.Unavailable);
      expect(setProfile.rawMessage).toMatch(/storage is full/);
      expect(await snapshot()).toBe(before);
      expect(t.app.deps.rooms.get("edge-full")).toBeUndefined();
    } finally {
      db.pragma("max_page_count = 4294967294");
    }
    const joined = await anonymous.joinRoom({ roomId: "edge-full", profile });
    expect(joined.room?.participants).toHaveLength(1);
    await createClient(RoomService, grpcTransport(t.baseUrl, joined.sessionToken)).leaveRoom({});
  });
});

describe("JWT_SECRET", () => {
  it.each([
    ["31 ASCII bytes", "s".repeat(31)],
    ["one byte", "x"],
    ["a dictionary word", "secret"],
  ])("of %s is a ConfigError naming the variable, and the server does not start", async (_name, secret) => {
    expect(() => loadConfig({ JWT_SECRET: secret })).toThrow(ConfigError);
    expect(() => loadConfig({ JWT_SECRET: secret })).toThrow(/JWT_SECRET must be at least 32 bytes/);
    await expect(startTestApp({ JWT_SECRET: secret })).rejects.toThrow(ConfigError);
  });

  it("is counted in bytes: 32 ASCII bytes, or 11 three-byte characters, are enough; empty means generated", () => {
    expect(loadConfig({ JWT_SECRET: "s".repeat(32) }).auth.jwtSecret).toBe("s".repeat(32));
    expect(loadConfig({ JWT_SECRET: "€".repeat(11) }).auth.jwtSecret).toBe("€".repeat(11));
    expect(loadConfig({ JWT_SECRET: "" }).auth.jwtSecret).toBe("");
  });
});
