import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildServer } from "../../scripts/build-server.js";
import { acquireFileLock, DataDirLockedError } from "../../src/store/file-lock.js";
import { createSqliteStore } from "../../src/store/sqlite-store.js";

/*
 * One SQLite DATA_DIR, one process: a second server on the same folder stops at start and says
 * which folder and which pid has it; a lock left by a killed server does not keep the next out.
 */

let dataDir: string;
/** Our own bundle of the server (as `npm start` runs it): starting it costs less than tsx. */
let bundle: string;
const started: ChildProcess[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-lock-"));
  // Packages stay external to the bundle: they are found through a link to node_modules.
  const pkg = path.join(dataDir, "pkg");
  await mkdir(pkg);
  await symlink(path.resolve("node_modules"), path.join(pkg, "node_modules"), "dir");
  bundle = await buildServer(path.join(pkg, "dist", "main.mjs"));
});
afterEach(() => {
  for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

interface Run {
  child: ChildProcess;
  /** Resolves with the "listening" line, or rejects with what the process printed when it exits first. */
  listening: Promise<{ port: number }>;
  exit: Promise<[number | null, NodeJS.Signals | null]>;
  output: () => string;
}

/** The real server process on DATA_DIR `dataDir`, port 0, 127.0.0.1. */
function startServer(): Run {
  const child = spawn(process.execPath, [bundle], {
    env: { ...process.env, HOST: "127.0.0.1", PORT: "0", DATA_DIR: dataDir, DATABASE_URL: "", LOG_LEVEL: "info", SPEECH_ENGINE: "device", WEB_ROOT: dataDir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child);
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const exit = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const listening = new Promise<{ port: number }>((resolve, reject) => {
    child.stdout!.on("data", () => {
      const line = out.split("\n").find((l) => l.includes('"msg":"listening"'));
      if (line) resolve(JSON.parse(line) as { port: number });
    });
    void exit.then(([code]) => reject(new Error(`server exited ${code} before listening:\n${out}`)));
  });
  listening.catch(() => undefined);
  return { child, listening, exit, output: () => out };
}

describe("the SQLite data folder lock", () => {
  it("stops a second server on the same DATA_DIR with the folder and the first one's pid, and lets a server in after one was killed", { timeout: 60_000 }, async () => {
    const first = startServer();
    await first.listening;
    expect(existsSync(path.join(dataDir, "handshake.db.lock"))).toBe(true);

    const second = startServer();
    const [code] = await second.exit;
    expect(code).not.toBe(0);
    expect(second.output()).toContain(`the data folder ${dataDir} is in use by process ${first.child.pid}`);
    // The first one is untouched and still serving.
    expect(first.child.exitCode).toBeNull();

    // SIGKILL leaves the lock file behind; its pid is gone, so the next server takes it over.
    first.child.kill("SIGKILL");
    await first.exit;
    expect(existsSync(path.join(dataDir, "handshake.db.lock"))).toBe(true);
    const third = startServer();
    await third.listening;

    // A clean shutdown removes the lock.
    third.child.kill("SIGTERM");
    expect((await third.exit)[0]).toBe(0);
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
