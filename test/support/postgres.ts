import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, rmSync } from "node:fs";
import { chown, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, beforeEach } from "vitest";
import { freePort } from "./ports.js";

/** Where Debian's postgresql package puts initdb and postgres; PG_BIN overrides it. */
const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";

/** A throwaway PostgreSQL cluster on 127.0.0.1: one per test file, one database per test. */
export interface PostgresServer {
  /** The cluster's `postgres` database, as the superuser. */
  url: string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (fast shutdown) and removes its data folder; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Why PostgreSQL tests cannot run here, or undefined when they can: the binaries are missing. Under
 * CI=true a missing binary is a failure, not a skip (`.ci/run` installs postgresql).
 */
export function postgresUnavailable(): string | undefined {
  const missing = ["initdb", "postgres"].filter((bin) => !existsSync(path.join(PG_BIN, bin)));
  if (missing.length === 0) return undefined;
  const reason = `PostgreSQL binaries missing in ${PG_BIN} (${missing.join(", ")}); install Debian's postgresql or set PG_BIN`;
  if (process.env.CI === "true") throw new Error(reason);
  return reason;
}


/**
 * initdb and postgres refuse to run as root: as root they run as the postgres user (spawned with
 * its uid directly, so signals reach postgres itself), on a folder it owns.
 */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (uid.status !== 0 || gid.status !== 0) throw new Error("running as root, but there is no postgres user to run PostgreSQL as");
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Starts a fresh cluster: initdb into a temporary folder (trust auth, superuser `postgres`), then
 * `postgres` on a free port of 127.0.0.1 with its socket in that folder and fsync off (the data is
 * thrown away). Resolves once it accepts connections.
 */
export async function startPostgres(): Promise<PostgresServer> {
  const root = await mkdtemp(path.join(tmpdir(), "handshake-pg-"));
  const dataDir = path.join(root, "data");
  const user = serverUser();
  if (user) await chown(root, user.uid, user.gid);
  const init = spawnSync(
    path.join(PG_BIN, "initdb"),
    ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"],
    { encoding: "utf8", cwd: root, ...user },
  );
  if (init.status !== 0) {
    await rm(root, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}): ${init.stderr}`);
  }

  let started: { child: ChildProcess; port: number } | undefined;
  // The free port can be taken between our probe and postgres's bind (other tests start servers
  // too): a bind failure is tried again on another port.
  for (let attempt = 1; !started; attempt++) {
    const port = await freePort();
    try {
      started = { child: await launch(dataDir, root, port, user), port };
    } catch (err) {
      if (attempt >= 3 || !/could not bind|Address already in use/.test(String(err))) {
        await rm(root, { recursive: true, force: true });
        throw err;
      }
    }
  }
  const { child, port } = started;
  // A test process that ends without stop() (a crash, process.exit) takes its cluster with it.
  const killOnExit = () => {
    child.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  };
  process.once("exit", killOnExit);

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let stopping: Promise<void> | undefined;
  return {
    url,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`database name "${name}" must be lower-case letters, digits and _`);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    stop() {
      stopping ??= (async () => {
        process.removeListener("exit", killOnExit);
        if (child.exitCode === null && child.signalCode === null) {
          const exited = once(child, "exit");
          // SIGINT is PostgreSQL's fast shutdown: open sessions are ended, nothing is waited for.
          child.kill("SIGINT");
          const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
          await exited;
          clearTimeout(timer);
        }
        await rm(root, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

/** Runs postgres on `port` and resolves once it accepts connections; rejects with its log if it exits first. */
async function launch(dataDir: string, socketDir: string, port: number, user: { uid: number; gid: number } | undefined): Promise<ChildProcess> {
  const args = [
    "-D", dataDir, "-k", socketDir, "-p", String(port),
    "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
    "-c", "max_connections=200",
  ];
  const child = spawn(path.join(PG_BIN, "postgres"), args, { stdio: ["ignore", "ignore", "pipe"], cwd: socketDir, ...user });
  let log = "";
  let ready = false;
  const readiness = new Promise<void>((resolve, reject) => {
    child.stderr!.on("data", (chunk: Buffer) => {
      // Read to the end (a full pipe would stall the server), kept only until it is ready.
      if (ready) return;
      log += chunk.toString();
      if (log.includes("database system is ready to accept connections")) {
        ready = true;
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`postgres exited (${code}) before it was ready:\n${log}`)));
  });
  const timeout = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    await readiness;
  } finally {
    clearTimeout(timeout);
  }
  return child;
}

let databases = 0;

/** A database name unique within this process, for one test. */
export function uniqueDatabaseName(prefix = "t"): string {
  databases += 1;
  return `${prefix}_${process.pid}_${databases}`;
}

/**
 * One throwaway PostgreSQL server for the describe block this is called in, and a database of its
 * own for each test; returns the running test's database URL.
 */
export function usePostgresDatabase(prefix: string): () => string {
  let server: PostgresServer | undefined;
  let url: string | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    url = await server!.createDatabase(uniqueDatabaseName(prefix));
  });
  return () => {
    if (url === undefined) throw new Error("usePostgresDatabase: a database exists only while a test runs");
    return url;
  };
}
