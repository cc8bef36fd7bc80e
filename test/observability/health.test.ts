import path from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";

/**
 * Liveness and readiness of a real server. The store is made unwritable the way it happens in
 * production: another connection (a backup, a `sqlite3` shell, a stuck second server on the same
 * file) holds the database's write lock. (A read-only chmod would not do: tests run as root, who
 * writes anyway, and an open connection keeps its descriptor.)
 */

let t: TestApp;
beforeAll(async () => {
  // Watch asks readiness again this often: short, so a change reaches the test at once.
  t = await startTestApp({ HEALTH_WATCH_INTERVAL_MS: "20" });
});
afterAll(async () => {
  await t.close();
});

/** GETs `pathname` and returns its status and JSON body. */
async function probe(pathname: string): Promise<{ status: number; body: { status: string; reasons?: string[] } }> {
  const res = await fetch(`${t.baseUrl}${pathname}`);
  return { status: res.status, body: (await res.json()) as { status: string; reasons?: string[] } };
}

const check = async (service = "") => (await createClient(Health, grpcTransport(t.baseUrl)).check({ service })).status;

describe("/healthz, /readyz and grpc.health.v1", () => {
  it("are 200, ready and SERVING while the store takes writes", async () => {
    expect(await probe("/healthz")).toEqual({ status: 200, body: { status: "ok" } });
    expect(await probe("/readyz")).toEqual({ status: 200, body: { status: "ready", reasons: [] } });
    expect(await check()).toBe(ServingStatus.SERVING);
    expect(await check("handshake.v1.RoomService")).toBe(ServingStatus.SERVING);
  });

  it("turn /readyz 503 with the reason and Check NOT_SERVING while the store cannot be written, and back after; /healthz stays 200", async () => {
    const other = new BetterSqlite3(path.join(t.dataDir, "handshake.db"), { timeout: 0 });
    try {
      other.exec("BEGIN IMMEDIATE");
      const down = await probe("/readyz");
      expect(down.status).toBe(503);
      expect(down.body.status).toBe("not ready");
      expect(down.body.reasons).toEqual([expect.stringMatching(/^store not writable: database is locked/)]);
      expect(await check()).toBe(ServingStatus.NOT_SERVING);
      expect(await check("handshake.v1.ContractService")).toBe(ServingStatus.NOT_SERVING);
      expect((await probe("/healthz")).status).toBe(200);
      other.exec("ROLLBACK");
    } finally {
      other.close();
    }
    expect(await probe("/readyz")).toEqual({ status: 200, body: { status: "ready", reasons: [] } });
    expect(await check()).toBe(ServingStatus.SERVING);
  });

  it("Watch sends NOT_SERVING when the store stops taking writes and SERVING when it takes them again", async () => {
    const controller = new AbortController();
    const statuses = createClient(Health, grpcTransport(t.baseUrl)).watch({ service: "" }, { signal: controller.signal })[Symbol.asyncIterator]();
    const next = async () => (await statuses.next()).value?.status;
    const other = new BetterSqlite3(path.join(t.dataDir, "handshake.db"), { timeout: 0 });
    try {
      expect(await next()).toBe(ServingStatus.SERVING);
      other.exec("BEGIN IMMEDIATE");
      expect(await next()).toBe(ServingStatus.NOT_SERVING);
      other.exec("ROLLBACK");
      expect(await next()).toBe(ServingStatus.SERVING);
    } finally {
      other.close();
      controller.abort();
      await statuses.return?.();
    }
  });

  it("leave the store as it was: a check writes nothing and the server's own writes go on", async () => {
    const db = new BetterSqlite3(path.join(t.dataDir, "handshake.db"), { readonly: true });
    const count = () => (db.prepare("SELECT count(*) AS n FROM users").get() as { n: number }).n;
    try {
      const before = count();
      await probe("/readyz");
      expect(count()).toBe(before);
      // JoinRoom writes a user: the server's connection is back on its normal busy timeout and writes.
      await createClient(RoomService, grpcTransport(t.baseUrl)).joinRoom({ roomId: "after-probe", profile: testProfile() });
      expect(count()).toBe(before + 1);
    } finally {
      db.close();
    }
  });
});
