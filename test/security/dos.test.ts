import { spawn } from "node:child_process";
import http2 from "node:http2";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { startTestApp, testProfile, type TestApp } from "../support/app.js";
import { gc } from "../support/memory.js";
import { connectRaw, rawAudioCall, rawGrpcCall } from "../support/raw-grpc.js";
import { TEST_JWT_SECRET } from "../support/security.js";
import { joinMember } from "../support/people.js";

/**
 * Denial of service from one anonymous client, each attack from its own process and source
 * address (127.0.0.x, so the per-address limits and bans hit the attacker and not the innocent
 * client on 127.0.0.1). During each, an innocent client's Health/Check p99 stays under 50 ms, and
 * the server's RSS (this process: the server runs in it, the attackers do not) comes back within
 * 20 % of where it was. The figures are printed.
 */

const ATTACKER = fileURLToPath(new URL("../support/dos-attacker.mjs", import.meta.url));
const P99_BOUND_MS = 50;
const RSS_BOUND = 0.2;
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({
    JWT_SECRET: TEST_JWT_SECRET,
    LEAVE_GRACE_MS: "3600000",
    HANDSHAKE_TIMEOUT_MS: "500",
    HTTP_HEADERS_TIMEOUT_MS: "500",
    HTTP_REQUEST_TIMEOUT_MS: "1000",
    IDLE_CONNECTION_MS: "1000",
    MAX_CONNECTIONS: "3000",
    MAX_CONNECTIONS_PER_ADDRESS: "2500",
    H2_MAX_CONCURRENT_STREAMS: "100",
    H2_MAX_RESETS_PER_SECOND: "100",
    H2_MAX_RESETS_PER_ADDRESS_PER_SECOND: "400",
    ABUSE_BAN_MS: "5000",
    HEALTH_WATCH_PER_ADDRESS: "4",
    MAX_STREAMS_PER_ADDRESS: "150",
    ROOM_CREATES_PER_ADDRESS_PER_MINUTE: "20",
    ROOM_CREATES_PER_USER_PER_MINUTE: "5",
    MAX_STREAMS_PER_USER: "3",
  });
  // Warm up, unmeasured: the innocent client's connection and a short attack from an address of
  // its own, so first-use costs (JIT, lazily loaded code, V8 growing its young generation) are not
  // taken for memory an attack kept.
  await innocentChecks(200);
  await attack("streams", "127.0.0.20", { streams: 300, maxConnections: 1, durationMs: 500 }).done;
  await attack("idle", "127.0.0.21", { sockets: 500, durationMs: 3_000 }).done;
  await innocentChecks(200);
}, 30_000);

afterAll(async () => {
  await t?.close();
});

/** A gRPC transport whose connections come from `localAddress` (another client on loopback). */
const fromAddress = (localAddress: string) =>
  createGrpcTransport({ baseUrl: t.baseUrl, nodeOptions: { createConnection: () => net.connect({ host: "127.0.0.1", port: t.port, localAddress }) } });

const innocent = () => createClient(Health, createGrpcTransport({ baseUrl: t.baseUrl }));
let health: ReturnType<typeof innocent> | undefined;

/** `n` sequential Health/Check calls; their latencies in ms. */
async function innocentChecks(n: number): Promise<number[]> {
  health ??= innocent();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    out.push(performance.now() - started);
  }
  return out;
}

/** Health/Check calls every 2 ms until `done` settles (at most 5,000 of them). */
async function innocentDuring(done: Promise<unknown>): Promise<number[]> {
  let over = false;
  const end = () => (over = true);
  done.then(end, end);
  const out: number[] = [];
  while (!over && out.length < 5_000) {
    out.push(...(await innocentChecks(1)));
    await new Promise((r) => setTimeout(r, 2));
  }
  return out;
}

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
};
const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);

/** RSS after a collection (or a short settle when V8 refuses one). */
async function settledRss(): Promise<number> {
  gc?.();
  await new Promise((r) => setTimeout(r, gc ? 50 : 500));
  return process.memoryUsage().rss;
}

/** Waits (at most ~5 s) for RSS to come back within half the bound of `before`; returns the last reading. */
async function rssBackTo(before: number): Promise<number> {
  let rss = await settledRss();
  // Freed memory goes back to the system a little later than the collection (allocator trimming).
  for (let i = 0; i < 20 && rss > before * (1 + RSS_BOUND / 2); i++) {
    await new Promise((r) => setTimeout(r, 200));
    rss = await settledRss();
  }
  return rss;
}

interface Attack {
  ready: Promise<Record<string, unknown>>;
  done: Promise<Record<string, unknown>>;
}

/** Runs the attacker process in `mode` against the server from `localAddress`. */
function attack(mode: string, localAddress: string, options: Record<string, unknown>): Attack {
  const child = spawn(process.execPath, [ATTACKER, JSON.stringify({ mode, port: t.port, localAddress, ...options })], { stdio: ["ignore", "pipe", "inherit"] });
  let readyResolve!: (v: Record<string, unknown>) => void;
  let readyReject!: (err: Error) => void;
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => ((readyResolve = resolve), (readyReject = reject)));
  const done = new Promise<Record<string, unknown>>((resolve, reject) => {
    let buffered = "";
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        if (line.ready) readyResolve(line);
        if (line.done) resolve(line);
      }
    });
    child.once("exit", (code) => {
      const err = new Error(`attacker exited with ${code} before reporting`);
      readyReject(err);
      reject(err);
    });
  });
  return { ready, done };
}

/** Runs one attack with the innocent client measuring; prints and checks p99 and RSS. */
async function measured(name: string, run: () => Attack): Promise<Record<string, unknown>> {
  const before = await settledRss();
  const baseline = await innocentChecks(50);
  const a = run();
  await a.ready;
  const during = await innocentDuring(a.done);
  const result = await a.done;
  const peakRss = process.memoryUsage().rss;
  const after = await rssBackTo(before);
  const figures = {
    attack: name,
    baselineP99Ms: +percentile(baseline, 99).toFixed(1),
    duringP50Ms: +percentile(during, 50).toFixed(1),
    duringP99Ms: +percentile(during, 99).toFixed(1),
    checks: during.length,
    rssBeforeMb: mb(before),
    rssDuringMb: mb(peakRss),
    rssAfterMb: mb(after),
    guard: t.app.server.guardStats(),
    attacker: result,
  };
  console.log(JSON.stringify(figures));
  expect(result.error).toBeUndefined();
  expect(during.length).toBeGreaterThan(10);
  expect(figures.duringP99Ms).toBeLessThan(P99_BOUND_MS);
  expect(after).toBeLessThan(before * (1 + RSS_BOUND));
  return result;
}

describe("denial of service", () => {
  it("many streams on one connection: SETTINGS_MAX_CONCURRENT_STREAMS holds, the excess is refused", async () => {
    const result = await measured("many streams", () => attack("streams", "127.0.0.2", { streams: 1_000, maxConnections: 40, durationMs: 3_000 }));
    // Beyond 100 open streams the server refuses them (RST_STREAM REFUSED_STREAM), and Node ends
    // a connection that keeps at it (maxSessionRejectedStreams) with GOAWAY.
    expect(Number(result.serverResets)).toBeGreaterThan(0);
    // The first connection is ended (GOAWAY); its address is then refused for ABUSE_BAN_MS.
    expect((result.goawayCodes as number[]).length).toBeGreaterThanOrEqual(1);
    expect(Number(result.refusedConnections)).toBeGreaterThan(0);
  }, 20_000);

  it("rapid reset over 20 connections, each under its own budget: every one cut off with GOAWAY ENHANCE_YOUR_CALM", async () => {
    // ~40 resets a second per connection (under the 100 per connection), ~800 a second from the address (over its 400).
    const result = await measured("rapid reset x20", () => attack("reset", "127.0.0.3", { connections: 20, batch: 1, pauseMs: 20, maxResets: 100_000, durationMs: 3_000 }));
    expect(result.cutOff).toBe(20);
    expect(result.reconnectRefused).toBe(true);
  }, 20_000);

  it("rapid reset on one connection beyond its budget is cut off on its own", async () => {
    const result = await measured("rapid reset x1", () => attack("reset", "127.0.0.4", { connections: 1, batch: 50, pauseMs: 10, maxResets: 20_000, durationMs: 3_000 }));
    expect(result.cutOff).toBe(1);
    expect(result.reconnectRefused).toBe(true);
  }, 20_000);

  it("2,000 idle sockets (no preface, or a preface and no stream) are closed after their timeouts", async () => {
    const result = await measured("2000 idle sockets", () => attack("idle", "127.0.0.5", { sockets: 2_000, durationMs: 6_000 }));
    expect(result.closedByServer).toBe(2_000);
    // HANDSHAKE_TIMEOUT_MS 500 and IDLE_CONNECTION_MS 1000, with room for a loaded machine.
    expect(Number(result.maxLifetimeMs)).toBeLessThan(5_000);
  }, 30_000);

  it("slowloris: HTTP/1.1 headers that never end get 408 after HTTP_HEADERS_TIMEOUT_MS and lose their socket", async () => {
    // 200 at a time, each replaced when the server closes it, for 2.5 s.
    const result = await measured("slowloris x200", () => attack("slowloris", "127.0.0.6", { sockets: 200, intervalMs: 100, durationMs: 2_500 }));
    expect(Number(result.sockets)).toBeGreaterThan(200);
    expect(result.closedByServer).toBe(result.sockets);
    expect(result.got408).toBe(result.sockets);
    // HTTP_HEADERS_TIMEOUT_MS is 500, checked every 125 ms; room for a loaded machine.
    expect(Number(result.maxLifetimeMs)).toBeLessThan(3_000);
  }, 30_000);

  it("room-creation flood from one address: RESOURCE_EXHAUSTED with retry-after once its budget is spent, the other slots stay free", async () => {
    const roomsBefore = t.app.deps.rooms.size;
    const result = await measured("room flood x200", () => attack("rooms", "127.0.0.7", { joins: 200, durationMs: 10_000 }));
    expect(result.created).toBe(20);
    expect(t.app.deps.rooms.size - roomsBefore).toBe(20);
    const refusal = result.firstRefusal as { status: number; retryAfter: string; code: string; message: string };
    expect(refusal.status).toBe(429);
    expect(refusal.code).toBe("resource_exhausted");
    expect(refusal.message).toMatch(/too many new rooms from your address: try again in \d+ s/);
    expect(Number(refusal.retryAfter)).toBeGreaterThan(0);
    // Another address still creates rooms.
    const other = createClient(RoomService, fromAddress("127.0.0.8"));
    expect((await other.joinRoom({ roomId: "", profile: testProfile() })).room?.roomId).not.toBe("");
  }, 30_000);

  it("one user creating rooms from many addresses is limited per user", async () => {
    const first = createClient(RoomService, fromAddress("127.0.1.1"));
    const { userToken } = await first.joinRoom({ roomId: "", profile: testProfile() });
    let created = 1;
    let refused: ConnectError | undefined;
    for (let i = 2; i <= 10 && !refused; i++) {
      const from = createClient(RoomService, fromAddress(`127.0.1.${i}`));
      try {
        await from.joinRoom({ roomId: "", profile: testProfile(), userToken });
        created++;
      } catch (err) {
        refused = ConnectError.from(err);
      }
    }
    expect(created).toBe(5);
    expect(refused?.code).toBe(Code.ResourceExhausted);
  });

  it("calls open at once per address are capped over all of its connections", async () => {
    // Two connections of 100 held calls each (the per-connection cap) from one address: 150 pass.
    const sessions = [0, 1].map(() => {
      const session = http2.connect(t.baseUrl, { createConnection: () => net.connect({ host: "127.0.0.1", port: t.port, localAddress: "127.0.0.9" }) });
      session.on("error", () => {});
      return session;
    });
    try {
      const calls = sessions.flatMap((session) => Array.from({ length: 100 }, () => rawGrpcCall(session, "/grpc.health.v1.Health/Check")));
      // Held calls never end by themselves; the refused ones end at once with their status.
      const ended: number[] = [];
      for (const c of calls) void c.status.then((s) => ended.push(s.code));
      await expect.poll(() => ended.length, { timeout: 5_000 }).toBe(50);
      expect(ended.every((code) => code === Code.ResourceExhausted)).toBe(true);
      console.log(JSON.stringify({ limit: "calls per address", open: calls.length - ended.length, exhausted: ended.length }));
      // Meanwhile the innocent client on another address is served.
      expect(Math.max(...(await innocentChecks(20)))).toBeLessThan(1_000);
    } finally {
      for (const s of sessions) s.destroy();
    }
  });

  it("public Health/Watch is limited per address", async () => {
    const session = connectRaw(t.port);
    try {
      const watches = Array.from({ length: 5 }, () => rawGrpcCall(session, "/grpc.health.v1.Health/Watch"));
      for (const w of watches) w.stream.end(Buffer.from([0, 0, 0, 0, 0]));
      // Four get their first status; the fifth is refused at once.
      await Promise.all(watches.slice(0, 4).map((w) => w.message(1)));
      expect((await watches[4]!.status).code).toBe(Code.ResourceExhausted);
      for (const w of watches.slice(0, 4)) w.stream.close();
      // Closed watches free their slots.
      await Promise.all(watches.slice(0, 4).map((w) => w.status));
      const again = rawGrpcCall(session, "/grpc.health.v1.Health/Watch");
      again.stream.end(Buffer.from([0, 0, 0, 0, 0]));
      await again.message(1);
      again.stream.close();
    } finally {
      session.close();
    }
  });

  it("AudioStream calls that never send their format header count toward the per-user stream limit", async () => {
    const member = await joinMember(t.baseUrl, "dos-audio-room", { displayName: "Ann" });
    const session = connectRaw(t.port);
    try {
      const auth = { authorization: `Bearer ${member.sessionToken}` };
      // MAX_STREAMS_PER_USER is 3: three headerless calls hold every slot.
      const silent = [rawAudioCall(session, auth), rawAudioCall(session, auth), rawAudioCall(session, auth)];
      await expect.poll(() => t.app.deps.rooms.get(member.roomId)?.openStreams(member.userId), { timeout: 3000 }).toBe(3);
      const fourth = rawAudioCall(session, auth);
      expect((await fourth.status).code).toBe(Code.ResourceExhausted);
      for (const s of silent) s.stream.close();
      await Promise.all(silent.map((s) => s.status));
      await expect.poll(() => t.app.deps.rooms.get(member.roomId)?.openStreams(member.userId), { timeout: 3000 }).toBe(0);
    } finally {
      session.close();
    }
  });

  it("the same on the connect-node path (Connect protocol over HTTP/2): a headerless AudioStream holds its slot from the open", async () => {
    const member = await joinMember(t.baseUrl, "dos-audio-room-connect", { displayName: "Ben" });
    const room = createClient(
      RoomService,
      createConnectTransport({ baseUrl: t.baseUrl, httpVersion: "2", interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${member.sessionToken}`), next(req))] }),
    );
    const abort = new AbortController();
    // Requests that never come: the format header is never sent.
    const never = (async function* () {
      await new Promise((resolve) => abort.signal.addEventListener("abort", resolve));
    })() as AsyncIterable<never>;
    const calls = [0, 1, 2].map(() => {
      const responses = room.audioStream(never, { signal: abort.signal });
      return (async () => {
        try {
          for await (const _ of responses) void _;
        } catch (err) {
          return ConnectError.from(err).code;
        }
        return undefined;
      })();
    });
    try {
      await expect.poll(() => t.app.deps.rooms.get(member.roomId)?.openStreams(member.userId), { timeout: 3000 }).toBe(3);
      const session = connectRaw(t.port);
      const fourth = rawAudioCall(session, { authorization: `Bearer ${member.sessionToken}` });
      expect((await fourth.status).code).toBe(Code.ResourceExhausted);
      session.close();
    } finally {
      abort.abort();
      await Promise.all(calls);
    }
    await expect.poll(() => t.app.deps.rooms.get(member.roomId)?.openStreams(member.userId), { timeout: 3000 }).toBe(0);
  });
});
