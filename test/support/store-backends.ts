import { join } from "node:path";
import { afterEach, beforeEach, describe } from "vitest";
import { openStore, type StoreLocation } from "../../src/store/open-store.js";
import type { Store } from "../../src/store/store.js";
import { postgresUnavailable, usePostgresDatabase } from "./postgres.js";
import { tempDir } from "./store.js";

/** Which implementation of Store a test runs against. */
export type StoreKind = "sqlite" | "postgres";

/** The current test's store location, and a way to open it (again, as a restart would). */
export interface StoreTarget {
  kind: StoreKind;
  /** Where the current test's data lives: a fresh SQLite file or a fresh PostgreSQL database per test. */
  location(): StoreLocation;
  /** Opens the store at `location()`; the same data each time within one test. */
  open(): Promise<Store>;
}

/**
 * Runs `body` once per store implementation, each inside its own describe: SQLite in a temporary
 * folder, and PostgreSQL on one throwaway cluster per file with a new database per test. Without
 * the PostgreSQL binaries (and CI unset) its cases are skipped, with the reason printed.
 */
export function describeEachStore(body: (target: StoreTarget) => void): void {
  const skipReason = postgresUnavailable();
  if (skipReason) console.warn(`skipping PostgreSQL store cases: ${skipReason}`);
  describe("sqlite", () => {
    let current: { location: StoreLocation; cleanup: () => Promise<void> } | undefined;
    beforeEach(async () => {
      const { dir, cleanup } = await tempDir();
      current = { location: { databaseUrl: "", databasePath: join(dir, "nested", "handshake.db") }, cleanup };
    });
    afterEach(async () => {
      await current?.cleanup();
      current = undefined;
    });
    body(target("sqlite", () => current?.location));
  });
  describe.skipIf(skipReason !== undefined)("postgres", () => {
    const database = usePostgresDatabase("t");
    let location: StoreLocation | undefined;
    beforeEach(() => {
      location = { databaseUrl: database(), databasePath: "" };
    });
    body(target("postgres", () => location));
  });
}

function target(kind: StoreKind, current: () => StoreLocation | undefined): StoreTarget {
  const location = () => {
    const where = current();
    if (!where) throw new Error("describeEachStore: a store location exists only while a test runs");
    return where;
  };
  return { kind, location, open: () => openStore(location()) };
}
