/**
 * `npm run cluster`: Handshake as it runs on many machines, on this one. PostgreSQL (its data kept
 * in .cluster/pg, made by initdb on the first run), Redis, N nodes (`src/main.ts`, each with its own
 * port, DATA_DIR and NODE_ID) and the HAProxy router in front, from the project's own scripts (no
 * container engine). Prints the URLs; Ctrl-C or SIGTERM stops everything.
 *
 *   npm run cluster -- [--nodes 3] [--port 8080] [--dir .cluster] [--tls-cert pem --tls-key pem]
 *                      [--env NAME=value ...] [--json]
 *
 * With --json (used by `npm run bench -- --nodes N`) it prints one line {"type":"ready", …} with
 * every port and pid instead of the banner, and node logs stay quiet unless they are warnings.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { chown, mkdir } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { freePort, waitForPort } from "../test/support/ports.js";
import { startRedis, type TestRedis } from "../test/support/redis.js";
import { NODE_BEHIND_ROUTER_ENV } from "./cluster-router.js";
import { startRouter, type Router } from "../test/support/router.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** Debian's PostgreSQL 15 binaries; PG_BIN overrides (as in test/support/postgres.ts). */
const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";
const DATABASE = "handshake";
/** Longest a node may take from spawn to its "listening" line. */
const NODE_START_MS = 60_000;

interface Options {
  nodes: number;
  port: number;
  dir: string;
  tls: { certFile: string; keyFile: string } | undefined;
  env: Record<string, string>;
  json: boolean;
  maxConnectionsPerAddress: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      nodes: { type: "string", default: "3" },
      port: { type: "string", default: "8080" },
      dir: { type: "string", default: ".cluster" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      env: { type: "string", multiple: true, default: [] },
      "max-connections-per-address": { type: "string", default: "256" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      [
        "npm run cluster -- [options]",
        "  --nodes N            Handshake nodes behind the router (default 3)",
        "  --port P             the router's port on 127.0.0.1 (default 8080; 0 a free one); nodes take free ports",
        "  --dir D              where PostgreSQL's data and each node's DATA_DIR live (default .cluster)",
        "  --tls-cert, --tls-key  PEM files: the router terminates TLS (https, ALPN h2 + http/1.1)",
        "  --env NAME=value     a setting for every node (repeatable), e.g. --env LOG_LEVEL=debug",
        "  --max-connections-per-address N  what one client address may hold open at the router (default 256)",
        "  --json               print one ready line as JSON (for scripts), no banner",
        "",
      ].join("\n"),
    );
    process.exit(0);
  }
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 64) throw new Error(`--nodes must be 1 to 64, got ${values.nodes}`);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be a port number, got ${values.port}`);
  if (Boolean(values["tls-cert"]) !== Boolean(values["tls-key"])) throw new Error("--tls-cert and --tls-key go together");
  const env: Record<string, string> = {};
  for (const pair of values.env) {
    const eq = pair.indexOf("=");
    if (eq < 1) throw new Error(`--env must be NAME=value, got "${pair}"`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return {
    nodes,
    port,
    dir: path.resolve(ROOT, values.dir),
    tls: values["tls-cert"] ? { certFile: path.resolve(values["tls-cert"]), keyFile: path.resolve(values["tls-key"]!) } : undefined,
    env,
    json: values.json,
    maxConnectionsPerAddress: Number(values["max-connections-per-address"]),
  };
}

/** initdb and postgres refuse to run as root: as root they run as the postgres user, on folders it owns. */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (uid.status !== 0 || gid.status !== 0) throw new Error("running as root, but there is no postgres user to run PostgreSQL as");
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** A child process this script started and stops. */
interface Running {
  name: string;
  child: ChildProcess;
  /** The signal that stops it cleanly. */
  stopSignal: NodeJS.Signals;
}

/** Stops `running` with its signal, then SIGKILL after 10 s; resolves once it exited. */
async function stopProcess(running: Running): Promise<void> {
  const { child } = running;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill(running.stopSignal);
  const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(killer);
}

/**
 * PostgreSQL on a free port of 127.0.0.1 with its data in `<dir>/pg` (initdb on the first run,
 * trust auth for local TCP: this is a machine's own cluster, not a deployment) and the `handshake`
 * database; resolves with the process and DATABASE_URL.
 */
async function startPostgres(dir: string, started: Running[]): Promise<{ running: Running; url: string }> {
  const dataDir = path.join(dir, "pg");
  const socketDir = path.join(dir, "pg-socket");
  const user = postgresUser();
  await mkdir(socketDir, { recursive: true });
  if (user) await chown(socketDir, user.uid, user.gid);
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    if (user) await chown(dataDir, user.uid, user.gid);
    const init = spawnSync(path.join(PG_BIN, "initdb"), ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"], {
      encoding: "utf8",
      cwd: dir,
      ...user,
    });
    if (init.status !== 0) throw new Error(`initdb failed (${init.status}): ${init.stderr}`);
  }
  const port = await freePort();
  const child = spawn(path.join(PG_BIN, "postgres"), ["-D", dataDir, "-k", socketDir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"], {
    stdio: ["ignore", "ignore", "pipe"],
    cwd: dir,
    ...user,
  });
  // SIGINT is PostgreSQL's fast shutdown: sessions are ended, the data is kept.
  const running: Running = { name: "postgres", child, stopSignal: "SIGINT" };
  started.push(running);
  let log = "";
  await new Promise<void>((resolve, reject) => {
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (text: string) => {
      log = (log + text).slice(-8_000);
      if (log.includes("database system is ready to accept connections")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`postgres exited (${code}) before it was ready:\n${log}`)));
  });
  const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
  await admin.connect();
  try {
    const found = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [DATABASE]);
    if (found.rowCount === 0) await admin.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }
  return { running, url: `postgres://postgres@127.0.0.1:${port}/${DATABASE}` };
}

/**
 * A node as its own process on a free port, its log lines prefixed with its id (only warnings and
 * worse when `quiet`); `started` holds it from the spawn on, so a failed start still stops it.
 */
async function startNode(id: string, env: NodeJS.ProcessEnv, quiet: boolean, started: Running[]): Promise<number> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--enable-source-maps", "--import", "tsx", "src/main.ts"], {
    cwd: ROOT,
    env: { ...env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push({ name: id, child, stopSignal: "SIGTERM" });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => {
    stderr = (stderr + text).slice(-4_000);
    if (!quiet) process.stderr.write(text.replace(/^(?=.)/gm, `[${id}] `));
  });
  createInterface({ input: child.stdout! }).on("line", (line) => {
    let level = 40;
    try {
      level = (JSON.parse(line) as { level?: number }).level ?? 40;
    } catch {
      // Not a pino line: shown like a warning.
    }
    // pino level 40 is warn: quiet mode still shows what went wrong.
    if (!quiet || level >= 40) process.stderr.write(`[${id}] ${line}\n`);
  });
  try {
    await waitForPort(port, () => child.exitCode === null && child.signalCode === null, NODE_START_MS);
  } catch (err) {
    throw new Error(`${id}: ${(err as Error).message}\n${stderr}`);
  }
  return port;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  await mkdir(options.dir, { recursive: true });
  const started: Running[] = [];
  let redis: TestRedis | undefined;
  let router: Router | undefined;
  let stopping: Promise<void> | undefined;
  const stopAll = () =>
    (stopping ??= (async () => {
      await router?.stop();
      // Nodes first (they finish calls and write to the store), then what they depend on.
      await Promise.all(started.filter((r) => r.name !== "postgres").map(stopProcess));
      await redis?.stop();
      await Promise.all(started.filter((r) => r.name === "postgres").map(stopProcess));
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    if (!options.json) process.stderr.write(`\n${signal}: stopping the cluster…\n`);
    void stopAll().then(() => process.exit(0));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  if (options.json) {
    // Started by a program (the bench, a test): when it is gone, however it went, so is the cluster.
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) onSignal("SIGHUP");
    }, 500).unref();
  }

  try {
    const postgres = await startPostgres(options.dir, started);
    redis = await startRedis();
    const nodes: { id: string; port: number; pid: number; dataDir: string }[] = [];
    // One at a time: each runs the store's migrations under PostgreSQL's lock, and 2 cores start faster in turn.
    for (let i = 1; i <= options.nodes; i++) {
      const id = `node-${i}`;
      const dataDir = path.join(options.dir, id);
      await mkdir(dataDir, { recursive: true });
      const port = await startNode(
        id,
        {
          ...process.env,
          HOST: "127.0.0.1",
          DATA_DIR: dataDir,
          NODE_ID: id,
          DATABASE_URL: postgres.url,
          REDIS_URL: redis.url,
          ...NODE_BEHIND_ROUTER_ENV,
          LOG_LEVEL: options.json ? "warn" : "info",
          ...options.env,
        },
        options.json,
        started,
      );
      nodes.push({ id, port, pid: started.at(-1)!.child.pid!, dataDir });
    }
    router = await startRouter({ nodes: nodes.map((n) => ({ id: n.id, port: n.port })), port: options.port === 0 ? undefined : options.port,
      maxConnectionsPerAddress: options.maxConnectionsPerAddress,
      ...(options.tls ? { tls: options.tls } : {}) });
    // A node that dies is the router's and the directory's business (failover); say so and carry on.
    for (const r of started) {
      r.child.once("exit", (code, signal) => {
        if (!stopping) process.stderr.write(`${r.name} exited (code ${code}, signal ${signal}); the others carry on\n`);
      });
    }
    const ready = {
      type: "ready",
      router: { url: router.url, port: router.port, pid: router.pid },
      nodes,
      postgres: { url: postgres.url, pid: postgres.running.child.pid },
      redis: { url: redis.url },
    };
    if (options.json) {
      process.stdout.write(`${JSON.stringify(ready)}\n`);
      return;
    }
    const shown = (file: string) => (path.relative(ROOT, file).startsWith("..") ? file : path.relative(ROOT, file));
    const webBuilt = existsSync(path.join(ROOT, "clients", "web", "dist", "index.html"));
    process.stdout.write(
      [
        "",
        `Handshake cluster: ${nodes.length} node${nodes.length === 1 ? "" : "s"} behind the router`,
        `  open        ${router.url}/${webBuilt ? "" : "   (build the browser app first: npm run build:web)"}`,
        `  gRPC        ${router.url.replace(/^https?:\/\//, "")}   (clients send the room code in the handshake-room header)`,
        ...nodes.map((n) => `  ${n.id.padEnd(10)}  http://127.0.0.1:${n.port}  pid ${n.pid}  data ${shown(n.dataDir)}`),
        `  postgres    ${postgres.url}   (data ${shown(path.join(options.dir, "pg"))})`,
        `  redis       ${redis.url}`,
        "",
        "Ctrl-C stops everything. Kill a node (kill -9 <pid>) to watch its rooms move.",
        "",
      ].join("\n"),
    );
  } catch (err) {
    process.stderr.write(`cluster failed to start: ${(err as Error).message}\n`);
    await stopAll();
    process.exit(1);
  }
}

void main();
