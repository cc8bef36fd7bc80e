import pg from "pg";

/**
 * The store cannot take writes for a reason outside the request (a full disk, an I/O error, a
 * lock held too long). Nothing of the failed call was written; the same call may succeed later.
 */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
  constructor(
    /** What the store reported, for the client: "storage is full", "storage I/O error", "storage is busy". */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`the server cannot save right now (${reason}); nothing was changed, try again later`, options);
  }
}

/** SQLite result codes (better-sqlite3's `SqliteError.code`, extended codes included) that mean the store is down, not the request bad. */
const UNAVAILABLE_CODES: readonly [RegExp, string][] = [
  [/^SQLITE_FULL$/, "storage is full"],
  [/^SQLITE_IOERR/, "storage I/O error"],
  [/^SQLITE_(BUSY|LOCKED)/, "storage is busy"],
  [/^SQLITE_READONLY/, "storage is read-only"],
  [/^SQLITE_CANTOPEN$/, "storage cannot be opened"],
];

/**
 * PostgreSQL SQLSTATEs (pg's `DatabaseError.code`) that mean the database is down or refusing, not
 * the request bad: connection exceptions (08), insufficient resources (53: disk full, too many
 * connections), operator intervention (57P: shutdown, crash recovery), a read-only transaction.
 */
const PG_UNAVAILABLE_CODES: readonly [RegExp, string][] = [
  [/^53100$/, "storage is full"],
  [/^53/, "storage is busy"],
  [/^08/, "storage cannot be reached"],
  [/^57P0[1-4]$/, "storage cannot be reached"],
  [/^25006$/, "storage is read-only"],
  [/^55P03$/, "storage is busy"],
];

/** Socket errors of a database connection: the server is not there (yet, or any more). */
const CONNECTION_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENOTFOUND"]);

/**
 * The store error `err` stands for, or undefined: a StoreUnavailableError as is, a driver error
 * with one of the codes above as a new one (its cause kept for the log).
 */
export function asStoreUnavailable(err: unknown): StoreUnavailableError | undefined {
  if (err instanceof StoreUnavailableError) return err;
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  const table = err.name === "SqliteError" ? UNAVAILABLE_CODES : err instanceof pg.DatabaseError ? PG_UNAVAILABLE_CODES : undefined;
  if (table && typeof code === "string") {
    const match = table.find(([pattern]) => pattern.test(code));
    return match ? new StoreUnavailableError(match[1], { cause: err }) : undefined;
  }
  if (typeof code === "string" && CONNECTION_ERRNOS.has(code)) return new StoreUnavailableError("storage cannot be reached", { cause: err });
  // pg's own words when a pooled connection is gone or none comes in time.
  if (/^(Connection terminated|timeout exceeded when trying to connect)/.test(err.message)) {
    return new StoreUnavailableError("storage cannot be reached", { cause: err });
  }
  return undefined;
}
