import type pg from "pg";
import { asStoreUnavailable } from "./store-errors.js";

/**
 * A connection with `begin` run on it. An idle pooled session the server ended (a restart, a
 * failover, pg_terminate_backend) fails at its first statement; nothing has run yet then, so one
 * fresh connection is tried before the caller is told.
 */
export async function beginTransaction(pool: pg.Pool, begin: string): Promise<Held> {
  for (let attempt = 0; ; attempt++) {
    const held = await holdConnection(pool);
    try {
      await held.client.query(begin);
      return held;
    } catch (err) {
      const failure = err instanceof Error ? err : new Error(String(err));
      held.release(failure);
      if (attempt > 0 || asStoreUnavailable(failure)?.reason !== "storage cannot be reached") throw failure;
    }
  }
}

/** A pooled connection checked out for a while (a transaction, a held lock). */
export interface Held {
  client: pg.PoolClient;
  /** The connection error that arrived between queries, if one did. */
  lost(): Error | undefined;
  /** Gives the connection back; one that failed (`err`, or lost) is closed instead of reused. */
  release(err?: Error): void;
}

/**
 * Checks a connection out. pg stops listening for a checked-out connection's errors, so a session
 * ended between two queries (a database restart, an operator's pg_terminate_backend) would be an
 * unhandled 'error' event: it is noted here instead, and the next query fails with it.
 */
export async function holdConnection(pool: pg.Pool): Promise<Held> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onError = (err: Error) => {
    lost = err;
  };
  client.on("error", onError);
  let released = false;
  return {
    client,
    lost: () => lost,
    release(err) {
      if (released) return;
      released = true;
      client.removeListener("error", onError);
      client.release(err ?? lost);
    },
  };
}

/**
 * Runs `fn` in one transaction opened with `begin`: committed when it returns, rolled back when it
 * throws. A connection that cannot even roll back is closed, not given to the next caller.
 */
export async function inTransaction<T>(pool: pg.Pool, begin: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const held = await beginTransaction(pool, begin);
  let broken: Error | undefined;
  try {
    const result = await fn(held.client);
    await held.client.query("COMMIT");
    return result;
  } catch (err) {
    await held.client.query("ROLLBACK").catch((rollbackErr: unknown) => {
      broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
    });
    throw err;
  } finally {
    held.release(broken);
  }
}
