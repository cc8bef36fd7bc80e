import type { Database } from "better-sqlite3";
import type pg from "pg";
import { MIGRATIONS_TABLE_SQL, migrations, type Migration } from "./migrations.js";
import { holdConnection } from "./pg-connection.js";

/** The database was written by a newer version of this code; opening it could corrupt it. */
export class SchemaTooNewError extends Error {
  override readonly name = "SchemaTooNewError";
}

/** The database's recorded migrations disagree with this code's (a diverged or foreign schema). */
export class SchemaMismatchError extends Error {
  override readonly name = "SchemaMismatchError";
}

/** What `migrate` did: the version found and the version left. */
export interface MigrateResult {
  fromVersion: number;
  toVersion: number;
  applied: string[];
}

/**
 * Brings the database to `targetVersion` (default: the latest of `list`, by default `migrations`), one transaction per migration.
 * Safe against a second process opening the same file: each step takes the write lock first and
 * re-reads the version under it, so a migration never runs twice.
 */
export function migrate(
  db: Database,
  options: { targetVersion?: number; list?: readonly Migration[]; nowMs?: () => number } = {},
): MigrateResult {
  const list = options.list ?? migrations;
  checkOrder(list);
  const latestKnown = list[list.length - 1]?.version ?? 0;
  const target = options.targetVersion ?? latestKnown;
  const nowMs = options.nowMs ?? Date.now;
  db.exec(MIGRATIONS_TABLE_SQL);

  const readApplied = (): { version: number; name: string }[] =>
    (db.prepare("SELECT version, name FROM schema_migrations ORDER BY version").all() as { version: number | bigint; name: string }[]).map(
      (r) => ({ version: Number(r.version), name: r.name }),
    );

  const applied = readApplied();
  checkApplied(applied, list);
  const fromVersion = applied[applied.length - 1]?.version ?? 0;
  const done: string[] = [];
  const insert = db.prepare("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)");
  const currentVersion = db.prepare("SELECT MAX(version) AS v FROM schema_migrations");

  for (const m of list) {
    if (m.version <= fromVersion || m.version > target) continue;
    const step = db.transaction(() => {
      // Another process may have migrated between our read and this lock.
      const row = currentVersion.get() as { v: number | bigint | null };
      if (row.v !== null && Number(row.v) >= m.version) return false;
      db.exec(m.sql);
      insert.run(m.version, m.name, nowMs());
      return true;
    });
    if (step.immediate()) done.push(`${m.version}_${m.name}`);
  }
  const last = currentVersion.get() as { v: number | bigint | null };
  return { fromVersion, toVersion: last.v === null ? 0 : Number(last.v), applied: done };
}

/** Advisory lock key (pg_advisory_lock's one-key form) held while a PostgreSQL database migrates. */
const PG_MIGRATION_LOCK = 0x4853_0001;

/**
 * The same migrations on PostgreSQL (the SQL of migrations.ts is written for both dialects). Nodes
 * starting together take turns: a session advisory lock is held for the whole run, and each step
 * re-reads the version under it, so a migration never runs twice.
 */
export async function migratePostgres(
  pool: pg.Pool,
  options: { targetVersion?: number; list?: readonly Migration[]; nowMs?: () => number } = {},
): Promise<MigrateResult> {
  const list = options.list ?? migrations;
  checkOrder(list);
  const target = options.targetVersion ?? list[list.length - 1]?.version ?? 0;
  const nowMs = options.nowMs ?? Date.now;
  const held = await holdConnection(pool);
  const client = held.client;
  let broken: Error | undefined;
  try {
    await client.query("SELECT pg_advisory_lock($1)", [PG_MIGRATION_LOCK]);
    try {
      await client.query(MIGRATIONS_TABLE_SQL);
      const readApplied = async () =>
        (await client.query<{ version: number | bigint; name: string }>("SELECT version, name FROM schema_migrations ORDER BY version")).rows.map((r) => ({
          version: Number(r.version),
          name: r.name,
        }));
      const applied = await readApplied();
      checkApplied(applied, list);
      const fromVersion = applied[applied.length - 1]?.version ?? 0;
      const done: string[] = [];
      for (const m of list) {
        if (m.version <= fromVersion || m.version > target) continue;
        await client.query("BEGIN");
        try {
          await client.query(m.sql);
          await client.query("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)", [m.version, m.name, nowMs()]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK");
          throw err;
        }
        done.push(`${m.version}_${m.name}`);
      }
      const last = (await readApplied()).at(-1)?.version ?? 0;
      return { fromVersion, toVersion: last, applied: done };
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [PG_MIGRATION_LOCK]);
    }
  } catch (err) {
    broken = err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    // A session that failed part-way is dropped rather than reused: it may still hold the lock.
    held.release(broken);
  }
}

/** Refuses a database whose recorded migrations this code does not know, or knows by another name. */
function checkApplied(applied: readonly { version: number; name: string }[], list: readonly Migration[]): void {
  const latestKnown = list[list.length - 1]?.version ?? 0;
  for (const row of applied) {
    if (row.version > latestKnown) {
      throw new SchemaTooNewError(`database schema version ${row.version} is newer than this code's ${latestKnown}`);
    }
    const known = list.find((m) => m.version === row.version);
    if (!known || known.name !== row.name) {
      throw new SchemaMismatchError(`database has migration ${row.version} "${row.name}", this code has "${known?.name ?? "none"}"`);
    }
  }
}

/** Versions must be 1, 2, 3, … so that "every version below N" is well defined. */
function checkOrder(list: readonly Migration[]): void {
  list.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration at index ${i} has version ${m.version}, expected ${i + 1}`);
  });
}
