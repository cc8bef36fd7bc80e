import { create } from "@bufbuild/protobuf";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PanelEventSchema, RoomStatusSchema, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { EventLogClosedError, MAX_UNCOMMITTED_EVENTS, RoomEventLog } from "../../src/events/event-log.js";
import { migratePostgres, SchemaMismatchError, SchemaTooNewError } from "../../src/store/migrate.js";
import { LATEST_SCHEMA_VERSION, migrations } from "../../src/store/migrations.js";
import { createPostgresStore } from "../../src/store/postgres-store.js";
import { asStoreUnavailable, StoreUnavailableError } from "../../src/store/store-errors.js";
import { StoreConflictError, type Store } from "../../src/store/store.js";
import { postgresUnavailable, usePostgresDatabase } from "../support/postgres.js";
import { sampleContract } from "../support/store.js";

/*
 * What only the PostgreSQL store has to show: the one migration list applied once by nodes that
 * start together, readiness on a database that refuses writes or is gone, the room event log
 * waiting for each asynchronous commit, and a contract lock that holds across nodes and is freed
 * when the node holding it loses its connection. (Everything both stores share is store.test.ts.)
 */

const skipReason = postgresUnavailable();
if (skipReason) console.warn(`skipping PostgreSQL store cases: ${skipReason}`);

describe.skipIf(skipReason !== undefined)("PostgreSQL store", () => {
  const database = usePostgresDatabase("pgs");
  let url: string;
  beforeEach(() => {
    url = database();
  });
  const opened: Store[] = [];
  const clients: pg.Client[] = [];

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    for (const client of clients.splice(0)) await client.end();
  });

  async function open(): Promise<Store> {
    const store = await createPostgresStore({ url });
    opened.push(store);
    return store;
  }

  /** A plain connection to the test's database, as an operator's psql would be. */
  async function sql(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    clients.push(client);
    return client;
  }

  const applied = async () => (await (await sql()).query<{ version: number; name: string }>("SELECT version, name FROM schema_migrations ORDER BY version")).rows;

  describe("migrations", () => {
    it("build the latest schema once when several nodes open an empty database together", async () => {
      await Promise.all([open(), open(), open()]);
      expect(await applied()).toEqual(migrations.map((m) => ({ version: m.version, name: m.name })));
      await open();
      expect(await applied()).toHaveLength(LATEST_SCHEMA_VERSION);
    });

    it.each(migrations.map((m) => m.version - 1))("bring a database at version %i to the latest, keeping its rows", async (from) => {
      const pool = new pg.Pool({ connectionString: url });
      try {
        expect((await migratePostgres(pool, { targetVersion: from })).toVersion).toBe(from);
        if (from >= 1) await pool.query("INSERT INTO users (id, created_at_ms) VALUES ('old-user', 42)");
      } finally {
        await pool.end();
      }
      const store = await open();
      if (from >= 1) expect(await store.getUser("old-user")).toEqual({ id: "old-user", createdAtMs: 42 });
      const contract = sampleContract({ id: "c", providerId: "p", clientId: "q", createdAtMs: 5n });
      await store.insertContract(contract);
      expect(await store.getContract("c")).toEqual(contract);
      expect(await applied()).toHaveLength(LATEST_SCHEMA_VERSION);
    });

    it("refuse a database written by newer code, or one whose recorded migrations differ", async () => {
      await (await open()).close();
      const client = await sql();
      await client.query("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, 'from_the_future', 0)", [LATEST_SCHEMA_VERSION + 1]);
      await expect(createPostgresStore({ url })).rejects.toBeInstanceOf(SchemaTooNewError);
      await client.query("DELETE FROM schema_migrations WHERE version = $1", [LATEST_SCHEMA_VERSION + 1]);
      await client.query("UPDATE schema_migrations SET name = 'something_else' WHERE version = 1");
      await expect(createPostgresStore({ url })).rejects.toBeInstanceOf(SchemaMismatchError);
    });

    it("roll back a migration that fails part-way, keeping the version before it", async () => {
      const pool = new pg.Pool({ connectionString: url });
      try {
        const list = [
          { version: 1, name: "one", sql: "CREATE TABLE a (x INTEGER);" },
          { version: 2, name: "two", sql: "CREATE TABLE b (x INTEGER); INSERT INTO no_such_table VALUES (1);" },
        ];
        await expect(migratePostgres(pool, { list })).rejects.toThrow(/no_such_table/);
        const tables = (await pool.query<{ name: string }>("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).rows;
        expect(tables.map((t) => t.name)).toEqual(["a", "schema_migrations"]);
        expect((await migratePostgres(pool, { list: list.slice(0, 1) })).toVersion).toBe(1);
      } finally {
        await pool.end();
      }
    });
  });

  describe("readiness", () => {
    it("is writable, then refuses while the database is read-only, with a reason the health check can give", async () => {
      const store = await open();
      await store.checkWritable();
      const admin = await sql();
      await admin.query(`ALTER DATABASE ${new URL(url).pathname.slice(1)} SET default_transaction_read_only = on`);
      // Sessions read the setting when they start: the pool's are ended so the next check opens one.
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
      const refused = await store.checkWritable().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).toBeInstanceOf(StoreUnavailableError);
      expect((refused as Error).message).toMatch(/read-only/);
      await admin.query(`ALTER DATABASE ${new URL(url).pathname.slice(1)} SET default_transaction_read_only = off`);
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
      await store.checkWritable();
    });

    it("calls a database nobody listens on unavailable, not a bad request", async () => {
      const store = await open();
      const gone = new URL(url);
      gone.port = String(Number(gone.port) + 1);
      const err = await createPostgresStore({ url: gone.toString() }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(asStoreUnavailable(err)?.reason).toBe("storage cannot be reached");
      // A refused write of a real one stays what it was: a conflict.
      await store.createUser({ id: "u", createdAtMs: 1 });
      const conflict = await store.createUser({ id: "u", createdAtMs: 1 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(conflict).toBeInstanceOf(StoreConflictError);
      expect(asStoreUnavailable(conflict)).toBeUndefined();
    });
  });

  describe("the room event log on an asynchronous store", () => {
    const status = (n: number) => ({ event: { case: "roomStatus" as const, value: create(RoomStatusSchema, { roomId: `status-${n}` }) } });

    it("hands each event to readers only after its commit, in seq order, and resumes from the store after a restart", async () => {
      const store = await open();
      const committed = new Set<bigint>();
      const log = new RoomEventLog({
        roomId: "r1",
        capacity: 500,
        subscriberQueueSize: 1000,
        persist: (event, kept) => store.recordRoomEvent("r1", event, { keep: 500, markOnly: !kept })!.then(() => void committed.add(event.seq)),
      });
      const seen: bigint[] = [];
      const seenUncommitted: bigint[] = [];
      const allSeen = new Promise<void>((resolve) =>
        log.listen(0n, "u1", {
          queued: () => 0,
          event: (e) => {
            seen.push(e.seq);
            if (!committed.has(e.seq)) seenUncommitted.push(e.seq);
            if (seen.length === 200) resolve();
          },
          ended: () => {},
        }),
      );
      const numbered = Array.from({ length: 200 }, (_, i) => log.append(status(i)).seq);
      // Numbered at once, in order, before any commit.
      expect(numbered).toEqual(Array.from({ length: 200 }, (_, i) => BigInt(i + 1)));
      expect(log.latestSeq).toBe(200n);
      await allSeen;
      expect(seen).toEqual(numbered);
      expect(seenUncommitted).toEqual([]);
      expect(log.since(198n, "u1").map((e) => e.seq)).toEqual([199n, 200n]);
      expect((await store.loadRoomEvents("r1", 0n)).map((e) => e.seq)).toEqual(numbered);
      expect(await store.lastRoomSeq("r1")).toBe(200n);
    });

    it("holds events back while the database stalls, refuses more past its bound, and delivers the held ones in order once it goes on", async () => {
      const store = await open();
      await store.appendRoomEvents("r3", [create(PanelEventSchema, { seq: 1n, roomId: "r3", atMs: 1n })], 100);
      // An operator's transaction locks the room's log row: the store's next write waits behind it.
      const admin = await sql();
      await admin.query("BEGIN");
      await admin.query("SELECT last_seq FROM room_logs WHERE room_id = 'r3' FOR UPDATE");
      const log = new RoomEventLog({
        roomId: "r3",
        capacity: 100,
        subscriberQueueSize: 10_000,
        restored: { lastSeq: 1n, events: [] },
        persist: (event, kept) => store.recordRoomEvent("r3", event, { keep: 100, markOnly: !kept }) as Promise<void>,
      });
      const seen: bigint[] = [];
      log.listen(1n, "u1", { queued: () => 0, event: (e) => seen.push(e.seq), ended: () => {} });
      // One write in flight, MAX_UNCOMMITTED_EVENTS waiting behind it, then no more.
      for (let i = 0; i <= MAX_UNCOMMITTED_EVENTS; i++) log.append(status(i));
      expect(() => log.append(status(-1))).toThrow(/waiting for the store/);
      expect(log.latestSeq).toBe(BigInt(MAX_UNCOMMITTED_EVENTS + 2));
      expect(seen).toEqual([]);
      const last = new Promise<void>((resolve) =>
        log.listen(1n, "u2", { queued: () => 0, event: (e) => e.seq === log.latestSeq && resolve(), ended: () => {} }),
      );
      await admin.query("COMMIT");
      await last;
      expect(seen).toEqual(Array.from({ length: MAX_UNCOMMITTED_EVENTS + 1 }, (_, i) => BigInt(i + 2)));
      log.close(new EventLogClosedError("done"));
    });

    it("closes the log with the error of a failed write and shows nobody that event or any after it", async () => {
      const store = await open();
      // Seq 3 is taken already (as by an earlier life of the room): the log's third write is refused.
      const taken: PanelEvent = create(PanelEventSchema, { seq: 3n, roomId: "r2", atMs: 1n });
      await store.appendRoomEvents("r2", [taken], 100);
      const log = new RoomEventLog({
        roomId: "r2",
        capacity: 100,
        subscriberQueueSize: 100,
        persist: (event, kept) => store.recordRoomEvent("r2", event, { keep: 100, markOnly: !kept }) as Promise<void>,
      });
      const seen: bigint[] = [];
      const ended = new Promise<Error>((resolve) => log.listen(0n, "u1", { queued: () => 0, event: (e) => seen.push(e.seq), ended: resolve }));
      for (let i = 0; i < 5; i++) log.append(status(i));
      const reason = await ended;
      expect(reason).toBeInstanceOf(StoreConflictError);
      expect(seen).toEqual([1n, 2n]);
      expect(() => log.append(status(9))).toThrow(StoreConflictError);
      expect((await store.loadRoomEvents("r2", 0n)).map((e) => e.seq)).toEqual([1n, 2n, 3n]);
      log.close(new EventLogClosedError("done"));
    });
  });

  describe("the contract lock", () => {
    it("runs one node's work on a contract at a time, across stores, and other contracts meanwhile", async () => {
      const nodeA = await open();
      const nodeB = await open();
      const order: string[] = [];
      let releaseA!: () => void;
      const aHolds = new Promise<void>((resolve) => (releaseA = resolve));
      let aStarted!: () => void;
      const aIn = new Promise<void>((resolve) => (aStarted = resolve));
      const a = nodeA.contractLock.run("ctr_1", async () => {
        order.push("A in");
        aStarted();
        await aHolds;
        order.push("A out");
      });
      await aIn;
      const b = nodeB.contractLock.run("ctr_1", async () => void order.push("B in"));
      // Another contract is not held up by ctr_1.
      await nodeB.contractLock.run("ctr_2", async () => void order.push("other contract"));
      const admin = await sql();
      const waiting = async () =>
        (await admin.query<{ n: string }>("SELECT count(*)::text AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).rows[0]?.n;
      while ((await waiting()) !== "1") await new Promise((resolve) => setTimeout(resolve, 10));
      releaseA();
      await Promise.all([a, b]);
      expect(order).toEqual(["A in", "other contract", "A out", "B in"]);
    });

    it("is freed when the node holding it loses its database session (a node that died)", async () => {
      const nodeA = await open();
      const nodeB = await open();
      let aIn!: () => void;
      const held = new Promise<void>((resolve) => (aIn = resolve));
      let finishA!: () => void;
      const a = nodeA.contractLock.run("ctr_9", async () => {
        aIn();
        // Node A's work does not end until B has run: its session is killed meanwhile, as a dead node's would be.
        await new Promise<void>((resolve) => (finishA = resolve));
        return "A ran";
      });
      await held;
      const admin = await sql();
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'handshake-lock' AND datname = current_database()");
      await expect(nodeB.contractLock.run("ctr_9", async () => "B ran")).resolves.toBe("B ran");
      finishA();
      // A's work ends normally; its lost session is closed, not given back to the pool.
      await expect(a).resolves.toBe("A ran");
      await expect(nodeA.contractLock.run("ctr_9", async () => "A again")).resolves.toBe("A again");
    });
  });
});
