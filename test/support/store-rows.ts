import { createHash } from "node:crypto";
import path from "node:path";
import Database from "better-sqlite3";

/**
 * Every table of a running server's SQLite store (read through a second, read-only connection):
 * its row count and a hash of its rows. Two equal digests mean nothing was written in between.
 */
export function storeDigest(dataDir: string): Record<string, string> {
  const db = new Database(path.join(dataDir, "handshake.db"), { readonly: true, fileMustExist: true });
  db.defaultSafeIntegers(true);
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    const digest: Record<string, string> = {};
    for (const table of tables) {
      const rows = db.prepare(`SELECT * FROM "${table}" ORDER BY rowid`).raw().all() as unknown[][];
      const hash = createHash("sha256");
      for (const row of rows) hash.update(JSON.stringify(row, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString("hex") : typeof v === "bigint" ? v.toString() : v)));
      digest[table] = `${rows.length} rows ${hash.digest("hex").slice(0, 16)}`;
    }
    return digest;
  } finally {
    db.close();
  }
}

/**
 * The store's digest once it stops changing: room events are written a moment after readers see
 * them, so a baseline taken right after a join could still move. Two equal reads 50 ms apart.
 */
export async function settledStoreDigest(dataDir: string, timeoutMs = 5000): Promise<Record<string, string>> {
  const deadline = Date.now() + timeoutMs;
  let last = storeDigest(dataDir);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const next = storeDigest(dataDir);
    if (JSON.stringify(next) === JSON.stringify(last)) return next;
    if (Date.now() > deadline) throw new Error("the store kept changing");
    last = next;
  }
}
