import { existsSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { acquireFileLock, DataDirLockedError } from "../../src/store/file-lock.js";
import { createSqliteStore } from "../../src/store/sqlite-store.js";
import { startChildServer, type ChildServer } from "../support/restart.js";

/*
 * One SQLite DATA_DIR, one process: a second server on the same folder stops at start and says
 * which folder and which pid has it; a lock left by a killed server does not keep the next out.
 */

let dataDir: string;
const started: ChildServer[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-lock-"));
});
afterEach(async () => {
  for (const server of started.splice(0)) await server.stop("SIGKILL");
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

/** The real server process on DATA_DIR `dataDir` (SQLite: DATABASE_URL empty). */
async function startServer(): Promise<ChildServer> {
  const server = await startChildServer({ DATA_DIR: dataDir, DATABASE_URL: "", WEB_ROOT: dataDir });
  started.push(server);
  return server;
}

describe("the SQLite data folder lock", () => {
  it("stops a second server on the same DATA_DIR with the folder and the first one's pid, and lets a server in after one was killed", { timeout: 60_000 }, async () => {
    const first = await startServer();
    expect(existsSync(path.join(dataDir, "handshake.db.lock"))).toBe(true);

    // It exits before listening, saying why on stderr.
    await expect(startServer()).rejects.toThrow(`the data folder ${dataDir} is in use by process ${first.process.pid}`);
    // The first one is untouched and still serving.
    expect(first.process.exitCode).toBeNull();

    // SIGKILL leaves the lock file behind; its pid is gone, so the next server takes it over.
    await first.stop("SIGKILL");
    expect(existsSync(path.join(dataDir, "handshake.db.lock"))).toBe(true);
    const third = await startServer();

    // A clean shutdown removes the lock.
    await third.stop("SIGTERM");
    expect(third.process.exitCode).toBe(0);
    expect(existsSync(path.join(dataDir, "handshake.db.lock"))).toBe(false);
  });

  it("refuses a second store on the same file in one process too, and frees the file on close", async () => {
    const file = path.join(dataDir, "in-process", "handshake.db");
    const store = await createSqliteStore({ path: file });
    const refused = await createSqliteStore({ path: file }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(DataDirLockedError);
    expect((refused as DataDirLockedError).ownerPid).toBe(process.pid);
    await store.close();
    await (await createSqliteStore({ path: file })).close();
  });

  it("takes over a lock file whose pid now belongs to another process (a reused pid)", () => {
    const lockPath = path.join(dataDir, "reused.lock");
    // Pid 1 runs, but not since the start time recorded here: the writer is gone.
    writeFileSync(lockPath, "1 123456789012345\n");
    const lock = acquireFileLock(lockPath);
    lock.release();
    expect(existsSync(lockPath)).toBe(false);
  });
});
