import { readdirSync } from "node:fs";
import http2 from "node:http2";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { grpcTransport, startTestApp, type TestApp } from "../support/app.js";
import { TEST_JWT_SECRET, grpcEnvelope, joinAs } from "../support/security.js";

/**
 * A client that opens a connection per call and never closes it (the fuzz test's clients once
 * held ~2,000 that way) must not keep them on the server: an HTTP/2 connection with no call open
 * for IDLE_CONNECTION_MS gets GOAWAY and is closed. A quiet but open stream is not idle.
 */

const IDLE_MS = 300;
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ JWT_SECRET: TEST_JWT_SECRET, LEAVE_GRACE_MS: "3600000", IDLE_CONNECTION_MS: String(IDLE_MS) });
}, 30_000);

afterAll(async () => {
  await t?.close();
});

/** Open file descriptors of this process (both ends of every test connection live here). */
const descriptors = () => readdirSync("/proc/self/fd").length;
const onLinux = process.platform === "linux";

/** A raw HTTP/2 connection that makes one Health/Check call and is then left open by the client. */
async function abandonedConnection(): Promise<{ closed: Promise<void> }> {
  const session = http2.connect(t.baseUrl);
  session.on("error", () => {});
  const closed = new Promise<void>((resolve) => session.once("close", () => resolve()));
  // The server's GOAWAY: the client side closes once nothing is left on the connection.
  session.once("goaway", () => session.close());
  await new Promise<void>((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" });
    req.on("error", reject);
    req.on("trailers", () => {});
    req.resume();
    req.on("end", () => resolve());
    req.end(Buffer.from(grpcEnvelope(new Uint8Array(0))));
  });
  return { closed };
}

describe("idle HTTP/2 connections", () => {
  it("are closed by the server after IDLE_CONNECTION_MS, and their sockets freed", async () => {
    const before = onLinux ? descriptors() : 0;
    const connections = await Promise.all(Array.from({ length: 100 }, () => abandonedConnection()));
    if (onLinux) expect(descriptors()).toBeGreaterThanOrEqual(before + 100);
    // Every one of them ends without the client closing it first.
    await Promise.all(connections.map((c) => c.closed));
    if (onLinux) await expect.poll(descriptors, { timeout: 5000 }).toBeLessThan(before + 10);
  });

  it("leave an open but quiet stream alone, and a client's next call opens a new connection", async () => {
    const ann = await joinAs(t, "idle-room", { displayName: "Ann", role: PartyRole.PROVIDER });
    const ben = await joinAs(t, "idle-room", { displayName: "Ben", role: PartyRole.CLIENT });
    const health = createClient(Health, grpcTransport(t.baseUrl));
    try {
      await ann.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.paired, "the pair");
      expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      // Several idle periods pass (a connection opened now is closed for idleness by then)...
      const { closed } = await abandonedConnection();
      await closed;
      const second = await abandonedConnection();
      await second.closed;
      // ...while the panels, quiet all along, still deliver.
      await ben.say("still here after a quiet spell");
      await ann.panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text === "still here after a quiet spell", "the transcript");
      // The health client's connection was closed while idle; its next call just works.
      expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      await ann.panel.stop();
      await ben.panel.stop();
    }
  });
});
