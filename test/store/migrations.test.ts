import { copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { PanelEventSchema } from "../../gen/handshake/v1/events_pb.js";
import { migrate, SchemaMismatchError, SchemaTooNewError } from "../../src/store/migrate.js";
import { LATEST_SCHEMA_VERSION, migrations } from "../../src/store/migrations.js";
import { createSqliteStore } from "../../src/store/sqlite-store.js";
import { sampleContract } from "../support/store.js";
import { tempDirPerTest } from "../support/temp-dir.js";
import {
  v1ActiveContract,
  v1AliceProfile,
  v1ExecutingContract,
  v1LedgerTransactions,
  v1Negotiation,
  v1Secret,
  v1Users,
} from "./fixtures/v1-data.js";

const fixture = fileURLToPath(new URL("./fixtures/v1.sqlite", import.meta.url));

const dir = tempDirPerTest();

function appliedVersions(path: string): { version: number; name: string }[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare("SELECT version, name FROM schema_migrations ORDER BY version").all() as { version: number; name: string }[];
  } finally {
    db.close();
  }
}

function tableNames(db: Database.Database): string[] {
  return (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
}

const allVersions = migrations.map((m) => ({ version: m.version, name: m.name }));

describe("migrations", () => {
  it("are numbered 1..n with unique names, and there are at least two", () => {
    expect(migrations.length).toBeGreaterThanOrEqual(2);
    expect(migrations.map((m) => m.version)).toEqual(migrations.map((_, i) => i + 1));
    expect(new Set(migrations.map((m) => m.name)).size).toBe(migrations.length);
    expect(LATEST_SCHEMA_VERSION).toBe(migrations.length);
  });

  it("build the latest schema from an empty file", async () => {
    const path = join(dir(), "fresh.db");
    const store = await createSqliteStore({ path });
    await store.close();
    expect(appliedVersions(path)).toEqual(allVersions);
  });

  it("are not applied twice when the store is reopened", async () => {
    const path = join(dir(), "again.db");
    await (await createSqliteStore({ path })).close();
    const db = new Database(path);
    try {
      expect(migrate(db)).toEqual({ fromVersion: LATEST_SCHEMA_VERSION, toVersion: LATEST_SCHEMA_VERSION, applied: [] });
    } finally {
      db.close();
    }
  });

  it.each(migrations.map((m) => m.version - 1))("bring a database at version %i to the latest, keeping its rows", async (from) => {
    const path = join(dir(), `v${from}.db`);
    const db = new Database(path);
    expect(migrate(db, { targetVersion: from }).toVersion).toBe(from);
    if (from >= 1) {
      db.prepare("INSERT INTO users (id, created_at_ms) VALUES (?, ?)").run("old-user", 42);
    }
    db.close();

    const store = await createSqliteStore({ path });
    try {
      if (from >= 1) expect(await store.getUser("old-user")).toEqual({ id: "old-user", createdAtMs: 42 });
      // Everything the latest schema has works: a contract and a room event.
      const contract = sampleContract({ id: "c", providerId: "p", clientId: "q", createdAtMs: 5n });
      await store.insertContract(contract);
      expect(await store.getContract("c")).toEqual(contract);
      await store.appendRoomEvents("r", [create(PanelEventSchema, { seq: 1n, roomId: "r" })], 5);
      expect(await store.lastRoomSeq("r")).toBe(1n);
    } finally {
      await store.close();
    }
    expect(appliedVersions(path)).toEqual(allVersions);
  });

  it("bring the shipped v1 fixture to the latest with all its data", async () => {
    // The fixture really is version 1: no room event log yet.
    const raw = new Database(fixture, { readonly: true });
    try {
      expect(tableNames(raw)).not.toContain("room_events");
    } finally {
      raw.close();
    }
    expect(appliedVersions(fixture)).toEqual([{ version: 1, name: "core_tables" }]);

    const path = join(dir(), "from-v1.db");
    await copyFile(fixture, path);
    const store = await createSqliteStore({ path });
    try {
      expect(appliedVersions(path)).toEqual(allVersions);
      for (const u of v1Users) expect(await store.getUser(u.id)).toEqual(u);
      expect(await store.getProfile("alice")).toEqual(v1AliceProfile);
      expect(await store.getOrCreateSecret(v1Secret.name, "new")).toBe(v1Secret.value);
      expect(await store.getNegotiation(v1Negotiation.id)).toEqual(v1Negotiation);
      expect(await store.getContract(v1ActiveContract.id)).toEqual(v1ActiveContract);
      expect((await store.listContractsForUser("bob", { limit: 10 })).contracts).toEqual([v1ExecutingContract, v1ActiveContract]);
      expect(await store.listExecutingContracts()).toEqual([v1ExecutingContract]);
      expect(await store.listPendingIntents()).toEqual({ payments: v1ExecutingContract.payments, holds: [] });
      expect(await store.getHoldByRailReference("ltx-hold")).toEqual(v1ActiveContract.holds[0]);

      const bob = await store.getBalances("bob");
      expect(bob.map((b) => [b.currency, b.availableMinor, b.heldMinor, b.receivedMinor])).toEqual([["GBP", 75_000n, 20_000n, 0n]]);
      const replay = await store.postLedgerTransaction({ ...v1LedgerTransactions[0]!, id: "other" });
      expect(replay).toEqual({ transaction: v1LedgerTransactions[0], replayed: true });

      // The table v2 added works on the migrated file.
      await store.appendRoomEvents("room-1", [create(PanelEventSchema, { seq: 1n, roomId: "room-1" })], 10);
      expect(await store.lastRoomSeq("room-1")).toBe(1n);
    } finally {
      await store.close();
    }
  });

  it("refuse a database written by newer code, and leave it untouched", async () => {
    const path = join(dir(), "future.db");
    await (await createSqliteStore({ path })).close();
    const db = new Database(path);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)").run(LATEST_SCHEMA_VERSION + 1, "from_the_future", 0);
    db.close();
    const before = await readFile(path);
    await expect(createSqliteStore({ path })).rejects.toBeInstanceOf(SchemaTooNewError);
    expect(appliedVersions(path).at(-1)).toEqual({ version: LATEST_SCHEMA_VERSION + 1, name: "from_the_future" });
    expect((await readFile(path)).equals(before)).toBe(true);
  });

  it("refuse a database whose recorded migrations differ from the code's", async () => {
    const path = join(dir(), "diverged.db");
    const db = new Database(path);
    migrate(db, { targetVersion: 1 });
    db.prepare("UPDATE schema_migrations SET name = 'something_else' WHERE version = 1").run();
    db.close();
    await expect(createSqliteStore({ path })).rejects.toBeInstanceOf(SchemaMismatchError);
  });

  it("roll back a migration that fails part-way, keeping the version before it", () => {
    const db = new Database(join(dir(), "broken.db"));
    try {
      const list = [
        { version: 1, name: "one", sql: "CREATE TABLE a (x INTEGER);" },
        { version: 2, name: "two", sql: "CREATE TABLE b (x INTEGER); INSERT INTO no_such_table VALUES (1);" },
      ];
      expect(() => migrate(db, { list })).toThrow(/no_such_table/);
      expect(tableNames(db)).toEqual(["a", "schema_migrations"]);
      expect(db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get()).toEqual({ v: 1 });
    } finally {
      db.close();
    }
  });

  it("refuse a list whose versions are not 1..n", () => {
    const db = new Database(":memory:");
    try {
      expect(() => migrate(db, { list: [{ version: 2, name: "gap", sql: "" }] })).toThrow(/expected 1/);
    } finally {
      db.close();
    }
  });
});
