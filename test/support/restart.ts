import { spawn, type ChildProcess } from "node:child_process";
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AgentProfileSchema } from "../../gen/handshake/v1/profile_pb.js";
import type { Contract } from "../../gen/handshake/v1/deal_pb.js";
import { joinPerson, type Person } from "./people.js";

/** One participant of a room on a running server: clients, their panel and their tokens. */
export type { Person } from "./people.js";

/**
 * Joins `roomId` on the server at `baseUrl`; with `userToken`, as the same user as before (e.g.
 * after a restart), otherwise as a new user. Opens the person's PanelStream from the start;
 * ContractService calls carry the long-lived user token, so they work across restarts.
 */
export function joinRoom(baseUrl: string, roomId: string, profile: MessageInitShape<typeof AgentProfileSchema>, userToken = ""): Promise<Person> {
  return joinPerson(baseUrl, roomId, profile, { userToken, contractsWith: "user" });
}

/** Waits for the person's panel to show the drafted contract and returns it. */
export async function draftedContract(person: Person): Promise<Contract> {
  const event = await person.panel.waitFor((e) => e.event.case === "contract", "drafted contract");
  if (event.event.case !== "contract") throw new Error("unreachable");
  return event.event.value;
}

/**
 * An HTTP forwarder on 127.0.0.1:0 in front of a (fake) Stripe: while paused it queues requests
 * and lets them through on `open()`. It lets a test subscribe to a restarted server's room before
 * the payments that server resumes at start-up are answered.
 */
export interface Gate {
  url: string;
  pause(): void;
  open(): void;
  close(): Promise<void>;
}

/** Starts a gate forwarding to `target` (e.g. the fake Stripe's url), open. */
export async function startGate(target: string): Promise<Gate> {
  const upstream = new URL(target);
  let paused = false;
  let queued: (() => void)[] = [];
  const sockets = new Set<Socket>();

  function forward(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const headers = { ...req.headers, host: upstream.host };
    const out = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    // The upstream hanging up (a scripted hang torn down at close) ends this exchange too.
    out.on("error", () => res.destroy());
    out.end(body);
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const go = () => forward(req, res, Buffer.concat(chunks));
      if (paused) queued.push(go);
      else go();
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    pause() {
      paused = true;
    },
    open() {
      paused = false;
      const waiting = queued;
      queued = [];
      for (const go of waiting) go();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

/** The repository root, where `src/main.ts` lives. */
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A Handshake server running as a separate process (`node --import tsx src/main.ts`). */
export interface ChildServer {
  process: ChildProcess;
  port: number;
  baseUrl: string;
  /** Every pino JSON line it printed so far. */
  logs: Record<string, unknown>[];
  /** Sends `signal` and resolves once the process has exited. */
  stop(signal: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `src/main.ts` in a child process on port 0 with `env` on top of the embedded defaults and
 * resolves with its port once it logs "listening" (rejects if it exits first).
 */
export async function startChildServer(env: Record<string, string>): Promise<ChildServer> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      SPEECH_ENGINE: "device",
      AGENT_ENGINE: "offline",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-8000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === "listening" && typeof entry.port === "number") resolve(entry.port);
    });
    child.once("exit", (code, signal) => reject(new Error(`server exited before listening (code ${code}, signal ${signal}): ${stderr}`)));
  });
  return {
    process: child,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    logs,
    async stop(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
