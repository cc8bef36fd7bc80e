/**
 * The processes of a bench run: our server (bundled, as `npm start` runs it), the floor relay,
 * and the load generator, each its own process so /proc tells their CPU apart.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { GeneratorConfig, GeneratorResult } from "./generator.js";

/** The repository root (bench/..). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Builds the server bundle as `npm run build:server` does, in its own process; resolves with its path. */
async function buildServerBundle(): Promise<string> {
  await promisify(execFile)(process.execPath, ["--import", "tsx", path.join(ROOT, "scripts", "build-server.ts")], { cwd: ROOT });
  return path.join(ROOT, "dist", "server", "main.mjs");
}
/** The bench's preload in both services: garbage collection on demand and the CPU profile window. */
const PROBE = "./bench/probe.mjs";
/** Time given to a requested garbage collection before memory is read. */
const GC_SETTLE_MS = 500;
/** Longest a service may take to start listening. */
const START_TIMEOUT_MS = 60_000;

/** A service under test, running in its own process. */
export interface Service {
  name: string;
  pid: number;
  port: number;
  /** SIGTERM, then SIGKILL after 10 s; resolves once the process is gone. */
  stop(): Promise<void>;
  /** The last lines it wrote to stderr (for error reports). */
  stderrTail(): string;
  /** Asks it for a full garbage collection (bench/probe.mjs); resolves once it had time to run. */
  collectGarbage(): Promise<void>;
}

/** Options of our server's process. */
export interface ServerOptions {
  /** SPEECH_ENGINE; undefined = "device" (no server-side speech: the relay is measured alone). */
  speech: string | undefined;
  /** Folder for a V8 CPU profile of the measurement window (SIGUSR2 starts and stops it). */
  cpuProfDir: string | undefined;
  /** Folder for V8 heap snapshots, written on SIGTTIN (bench/probe.mjs). */
  heapSnapshotDir?: string | undefined;
  /** Settings added to the server's environment (--observability: METRICS, OTEL_EXPORTER_OTLP_ENDPOINT). */
  env?: NodeJS.ProcessEnv;
}

let serverBundle: Promise<string> | undefined;

/**
 * Starts the server as `npm start` runs it (the bundle from scripts/build-server.ts, built once
 * per bench run) with a temporary data folder and limits high enough for the bench.
 */
export async function startServer(options: ServerOptions): Promise<Service> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-bench-"));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: String(port),
    DATA_DIR: dataDir,
    LOG_LEVEL: "warn",
    SPEECH_ENGINE: options.speech ?? "device",
    MAX_ROOMS: "100000",
    MAX_STREAMS_PER_USER: "1000",
    SEND_AUDIO_PER_SECOND: "10000",
    // Every simulated participant comes from 127.0.0.1: per-address limits would count them as one client.
    MAX_CONNECTIONS_PER_ADDRESS: "100000",
    MAX_STREAMS_PER_ADDRESS: "1000000",
    ROOM_CREATES_PER_ADDRESS_PER_MINUTE: "1000000",
    // The offline engines: no key of a remote service may switch one on.
    AGENT_ENGINE: "offline",
    PAYMENT_RAIL: "ledger",
    ANTHROPIC_API_KEY: "",
    STRIPE_SECRET_KEY: "",
    ELEVENLABS_API_KEY: "",
    ...options.env,
  };
  serverBundle ??= buildServerBundle();
  const args = ["--enable-source-maps", "--import", PROBE];
  if (options.cpuProfDir) {
    // A profile of the measurement window only: see bench/probe.mjs.
    env.BENCH_CPU_PROF_DIR = options.cpuProfDir;
    env.BENCH_CPU_PROF_NAME = "server";
  }
  if (options.heapSnapshotDir) {
    env.BENCH_HEAP_SNAPSHOT_DIR = options.heapSnapshotDir;
    env.BENCH_CPU_PROF_NAME = "server";
  }
  args.push(await serverBundle);
  const service = await launch("server", args, env, port);
  return {
    ...service,
    async stop() {
      await service.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The two floors: the node:http2 byte relay and the WebSocket relay. */
export type FloorKind = "floor" | "ws-floor";
const FLOOR_SCRIPTS: Record<FloorKind, string> = { floor: "bench/floor-relay.ts", "ws-floor": "bench/ws-floor-relay.ts" };

/** Starts a floor relay (bench/floor-relay.ts or bench/ws-floor-relay.ts) in its own process, optionally profiled like the server. */
export async function startFloor(cpuProfDir?: string, kind: FloorKind = "floor"): Promise<Service> {
  const port = await freePort();
  const args = ["--import", "tsx", "--import", PROBE, FLOOR_SCRIPTS[kind]];
  return launch(kind, args, { ...process.env, PORT: String(port), ...(cpuProfDir ? { BENCH_CPU_PROF_DIR: cpuProfDir, BENCH_CPU_PROF_NAME: kind } : {}) }, port);
}

async function launch(name: string, args: string[], env: NodeJS.ProcessEnv, port: number): Promise<Service> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "ignore", "pipe"] });
  const tail: string[] = [];
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => {
    tail.push(text);
    if (tail.length > 50) tail.shift();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    await waitForPort(port, child);
  } catch (err) {
    child.kill("SIGKILL");
    throw new Error(`${name} did not start: ${(err as Error).message}\n${tail.join("")}`);
  }
  let stopping: Promise<void> | undefined;
  return {
    name,
    pid: child.pid!,
    port,
    stderrTail: () => tail.join(""),
    async collectGarbage() {
      process.kill(child.pid!, "SIGWINCH");
      await new Promise((resolve) => setTimeout(resolve, GC_SETTLE_MS));
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(killer);
      })();
      return stopping;
    },
  };
}

/** A port nobody listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once the port accepts connections; rejects if the process exits or time runs out. */
async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited with ${child.exitCode ?? child.signalCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not open after ${START_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Moments of a generator run, for sampling the service under test in the same window. */
export interface GeneratorHooks {
  /** Every room is connected and idle (no audio yet). */
  onReady?(): void;
  onMeasureStart?(): void;
  onMeasureEnd?(): void;
}

/**
 * Runs bench/generator.ts in its own process and resolves with its result. It is killed if it
 * runs far past its time (setup, streaming and draining included).
 */
export function runGenerator(config: GeneratorConfig, hooks: GeneratorHooks = {}): Promise<GeneratorResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/generator.ts", JSON.stringify(config)], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const limitMs = 60_000 + config.seconds * 1000 + config.rooms * 100;
    const killer = setTimeout(() => child.kill("SIGKILL"), limitMs);
    let result: GeneratorResult | undefined;
    let stderr = "";
    let buffered = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (text: string) => {
      buffered += text;
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        let parsed: { type?: string } & Partial<GeneratorResult>;
        try {
          parsed = JSON.parse(line) as typeof parsed;
        } catch {
          continue;
        }
        if (parsed.type === "ready") hooks.onReady?.();
        else if (parsed.type === "measure-start") hooks.onMeasureStart?.();
        else if (parsed.type === "measure-end") hooks.onMeasureEnd?.();
        else if (parsed.type === "result") result = parsed as GeneratorResult;
      }
    });
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (text: string) => {
      stderr = (stderr + text).slice(-4000);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(killer);
      if (result) resolve(result);
      else reject(new Error(`generator ended without a result (${signal ?? `exit ${code}`}): ${stderr}`));
    });
  });
}
