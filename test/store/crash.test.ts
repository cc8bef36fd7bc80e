import { spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { expect, it } from "vitest";
import { createSqliteStore } from "../../src/store/sqlite-store.js";
import { sampleContract } from "../support/store.js";
import { tempDirPerTest } from "../support/temp-dir.js";

const writeLoop = fileURLToPath(new URL("./fixtures/write-loop.ts", import.meta.url));
const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/** How many commits the child must report before it is killed. */
const COMMITS_BEFORE_KILL = 300;

const dir = tempDirPerTest();

/** Runs the write loop, SIGKILLs it once it has reported enough commits, and returns the last reported index. */
function runAndKill(dbPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", writeLoop, dbPath, "20000"], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let lastCommitted = -1;
    let killed = false;
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    createInterface({ input: child.stdout }).on("line", (line) => {
      lastCommitted = Number(line);
      if (!killed && lastCommitted + 1 >= COMMITS_BEFORE_KILL) {
        killed = true;
        child.kill("SIGKILL");
      }
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (signal === "SIGKILL" && killed) resolve(lastCommitted);
      else reject(new Error(`write loop ended before it was killed (code ${code}, signal ${signal}): ${stderr}`));
    });
  });
}

it("keeps every committed transaction whole after a SIGKILL mid-write, and none half-written", async () => {
  const dbPath = join(dir(), "crash.db");
  const lastReported = await runAndKill(dbPath);
  expect(lastReported).toBeGreaterThanOrEqual(COMMITS_BEFORE_KILL - 1);
  // The dead process left its write-ahead log behind: reopening has to recover from it.
  expect((await stat(`${dbPath}-wal`)).size).toBeGreaterThan(0);

  // Reopening recovers the WAL; then look at the raw rows.
  const store = await createSqliteStore({ path: dbPath });
  try {
    const db = new Database(dbPath, { readonly: true });
    db.defaultSafeIntegers(true);
    try {
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
      const txs = db
        .prepare(`SELECT t.id, COUNT(e.leg_index) AS legs, COALESCE(SUM(e.amount_minor), 0) AS total
          FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id GROUP BY t.id`)
        .all() as { id: string; legs: bigint; total: bigint }[];
      // The loop is sequential, so what survived is exactly the prefix 0..n-1, n ≥ everything reported.
      const indexes = txs.map((t) => Number(t.id.slice(3))).sort((x, y) => x - y);
      expect(indexes.length).toBeGreaterThan(lastReported);
      expect(indexes).toEqual(indexes.map((_, i) => i));
      for (const t of txs) expect([t.id, t.legs, t.total]).toEqual([t.id, 4n, 0n]);
      const orphans = db.prepare("SELECT COUNT(*) AS n FROM ledger_entries WHERE transaction_id NOT IN (SELECT id FROM ledger_transactions)").get();
      expect(orphans).toEqual({ n: 0n });
      expect(db.prepare("SELECT SUM(amount_minor) AS s FROM ledger_entries").get()).toEqual({ s: 0n });

      // Every contract written is whole: its parties and milestone came with it.
      const contractIds = (db.prepare("SELECT id FROM contracts").all() as { id: string }[]).map((r) => r.id);
      expect(contractIds.length).toBeGreaterThanOrEqual(Math.floor(lastReported / 10) + 1);
      for (const id of contractIds) {
        const i = BigInt(id.slice(2));
        expect(await store.getContract(id)).toEqual(sampleContract({ id, providerId: "p", clientId: "q", createdAtMs: i }));
      }
    } finally {
      db.close();
    }
    // The store is usable after the crash: the next transaction posts, the replayed key is recognised.
    expect((await store.postLedgerTransaction({
      id: "after-crash",
      idempotencyKey: "loop:0",
      memo: "",
      atMs: 0,
      legs: [{ account: "x", currency: "GBP", amountMinor: 0n }],
    })).replayed).toBe(true);
  } finally {
    await store.close();
  }
});
