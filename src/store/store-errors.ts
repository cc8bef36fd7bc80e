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
 * The store error `err` stands for, or undefined: a StoreUnavailableError as is, a driver error
 * with one of the codes above as a new one (its cause kept for the log).
 */
export function asStoreUnavailable(err: unknown): StoreUnavailableError | undefined {
  if (err instanceof StoreUnavailableError) return err;
  if (!(err instanceof Error) || err.name !== "SqliteError") return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string") return undefined;
  const match = UNAVAILABLE_CODES.find(([pattern]) => pattern.test(code));
  return match ? new StoreUnavailableError(match[1], { cause: err }) : undefined;
}
