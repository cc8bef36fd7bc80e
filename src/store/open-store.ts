import type { Logger } from "pino";
import { createPostgresStore } from "./postgres-store.js";
import { createSqliteStore } from "./sqlite-store.js";
import type { Store } from "./store.js";

/** Where the store lives: the fields of Config it reads. */
export interface StoreLocation {
  /** postgres://… (DATABASE_URL); empty for SQLite. */
  databaseUrl: string;
  /** The SQLite file, used when `databaseUrl` is empty. */
  databasePath: string;
}

/**
 * Opens the store the configuration names, the one place that chooses: PostgreSQL when a
 * DATABASE_URL is set (several nodes share it), else SQLite in DATA_DIR (one node owns it).
 */
export function openStore(location: StoreLocation, log?: Logger): Promise<Store> {
  const withLog = log ? { log } : {};
  return location.databaseUrl !== ""
    ? createPostgresStore({ url: location.databaseUrl, ...withLog })
    : createSqliteStore({ path: location.databasePath, ...withLog });
}
