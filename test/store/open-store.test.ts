import { existsSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { openStore } from "../../src/store/open-store.js";
import { postgresUnavailable, startPostgres, uniqueDatabaseName, type PostgresServer } from "../support/postgres.js";
import { tempDirPerTest } from "../support/temp-dir.js";

/* DATABASE_URL picks PostgreSQL, else the store is SQLite in DATA_DIR: one place chooses. */

const dir = tempDirPerTest();
const skipReason = postgresUnavailable();
if (skipReason) console.warn(`skipping the PostgreSQL choice: ${skipReason}`);

describe("choosing the store", () => {
  it("takes DATABASE_URL only as a postgres:// URL, and leaves it empty by default", () => {
    expect(loadConfig({ DATA_DIR: "/tmp/x" }).databaseUrl).toBe("");
    expect(loadConfig({ DATABASE_URL: "postgresql://u@db:5432/h" }).databaseUrl).toBe("postgresql://u@db:5432/h");
    expect(() => loadConfig({ DATABASE_URL: "mysql://u:secret@db/h" })).toThrow(ConfigError);
    expect(() => loadConfig({ DATABASE_URL: "mysql://u:secret@db/h" })).toThrow(/DATABASE_URL must be a postgres:\/\/ URL/);
    // A refusal does not echo the URL, which may hold a password.
    expect(() => loadConfig({ DATABASE_URL: "mysql://u:secret@db/h" })).not.toThrow(/secret/);
    expect(() => loadConfig({ DATABASE_URL: "u:secret@db h" })).toThrow(/DATABASE_URL must be a postgres:\/\/ URL/);
    expect(() => loadConfig({ DATABASE_URL: "u:secret@db h" })).not.toThrow(/secret/);
  });

  it("opens SQLite in DATA_DIR when DATABASE_URL is empty", async () => {
    const config = loadConfig({ DATA_DIR: dir() });
    const store = await openStore(config);
    try {
      await store.createUser({ id: "u", createdAtMs: 1 });
      expect(existsSync(join(dir(), "handshake.db"))).toBe(true);
    } finally {
      await store.close();
    }
  });

  describe.skipIf(skipReason !== undefined)("with PostgreSQL", () => {
    let server: PostgresServer;
    beforeAll(async () => {
      server = await startPostgres();
    }, 60_000);
    afterAll(async () => {
      await server?.stop();
    });

    it("opens PostgreSQL when DATABASE_URL is set, and writes nothing to DATA_DIR's database", async () => {
      const url = await server.createDatabase(uniqueDatabaseName("open"));
      const store = await openStore(loadConfig({ DATA_DIR: dir(), DATABASE_URL: url }));
      try {
        await store.createUser({ id: "in-postgres", createdAtMs: 1 });
      } finally {
        await store.close();
      }
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        expect((await client.query("SELECT id FROM users")).rows).toEqual([{ id: "in-postgres" }]);
      } finally {
        await client.end();
      }
      expect(existsSync(join(dir(), "handshake.db"))).toBe(false);
    });
  });
});
