import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { readFile, rm, writeFile, mkdtemp } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { renderRouterConfig, routerPem, type RouterNode } from "../../scripts/cluster-router.js";
import { freePort, waitForPort } from "./ports.js";

/** A node the router sends calls to: its NODE_ID and its port (on 127.0.0.1 unless `host`). */
export interface RouterTarget {
  id: string;
  port: number;
  host?: string;
}

/** How to start the router. */
export interface RouterOptions {
  nodes: RouterTarget[];
  /** Terminate TLS with this certificate and key (PEM files); clear text when unset. */
  tls?: { certFile: string; keyFile: string };
  /** Listen on this port instead of a free one (scripts/cluster.ts keeps a fixed port). */
  port?: number;
  /** Log every call to the router's stdout (scripts/cluster.ts); off in tests. */
  log?: boolean;
  /** Connections one address may hold at the router; default 100 000, since every test client comes from 127.0.0.1. */
  maxConnectionsPerAddress?: number;
}

/** A running HAProxy router (Debian's `haproxy`, deploy/haproxy/haproxy.cfg filled in). */
export interface Router {
  port: number;
  /** `http://127.0.0.1:<port>`, or `https://localhost:<port>` with TLS (the certificate's name). */
  url: string;
  pid: number;
  /**
   * Gives the router a new node list without dropping open calls (the old worker finishes them);
   * the room → node table starts again from the hash.
   */
  reload(nodes: RouterTarget[]): Promise<void>;
  /** One command of HAProxy's runtime API (`show table nodes`, `show servers state nodes`). */
  runtime(command: string): Promise<string>;
  /** Which nodes the router counts as up, by id. */
  upNodes(): Promise<string[]>;
  /** Resolves once the health checks count every one of `ids` as up (rejects after 15 s). */
  waitForNodes(ids: string[]): Promise<void>;
  /** The router's recent stderr (warnings, alerts), for failure messages. */
  stderrTail(): string;
  /** Stops the router and removes its files; safe to call twice. */
  stop(): Promise<void>;
}

const SETPRIV = "/usr/bin/setpriv";
/** Longest HAProxy may take to start or to apply a reload. */
const START_TIMEOUT_MS = 15_000;

/**
 * Starts `haproxy -W -db` on 127.0.0.1 with the one generated configuration
 * (scripts/cluster-router.ts) and resolves once it listens and has health-checked every node.
 */
export async function startRouter(options: RouterOptions): Promise<Router> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "handshake-router-"));
  const port = options.port ?? (await freePort());
  const cfgFile = path.join(dir, "haproxy.cfg");
  const statsSocket = path.join(dir, "admin.sock");
  let tlsPemFile: string | undefined;
  if (options.tls) {
    // HAProxy's `crt` takes the certificate and its key in one file.
    tlsPemFile = path.join(dir, "router.pem");
    const [cert, key] = await Promise.all([readFile(options.tls.certFile, "utf8"), readFile(options.tls.keyFile, "utf8")]);
    await writeFile(tlsPemFile, routerPem(cert, key), { mode: 0o600 });
  }
  const write = (nodes: RouterTarget[]) =>
    writeFile(
      cfgFile,
      renderRouterConfig({
        bindHost: "127.0.0.1",
        bindPort: port,
        nodes: nodes.map((n): RouterNode => ({ id: n.id, host: n.host ?? "127.0.0.1", port: n.port })),
        statsSocket,
        logToStdout: options.log ?? false,
        maxConnectionsPerAddress: options.maxConnectionsPerAddress ?? 100_000,
        ...(tlsPemFile ? { tlsPemFile } : {}),
      }),
    );
  await write(options.nodes);

  // setpriv (util-linux) asks the kernel to kill the router when this process dies, however it
  // dies (a test runner's SIGKILL skips every exit handler); the worker follows its master.
  const command = existsSync(SETPRIV) ? [SETPRIV, "--pdeathsig", "KILL", "--", "haproxy"] : ["haproxy"];
  const child: ChildProcess = spawn(command[0]!, [...command.slice(1), "-W", "-db", "-f", cfgFile], {
    stdio: ["ignore", options.log ? "inherit" : "ignore", "pipe"],
  });
  // A test runner that dies without stop() must not leave a router behind.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => {
    stderr = (stderr + text).slice(-8_000);
  });
  const alive = () => child.exitCode === null && child.signalCode === null;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      process.off("exit", killOnExit);
      if (alive()) {
        const exited = once(child, "exit");
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true });
    })());

  const runtime = (command: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = net.connect(statsSocket);
      let answer = "";
      socket.setEncoding("utf8");
      socket.on("data", (text: string) => (answer += text));
      socket.once("error", reject);
      socket.once("end", () => resolve(answer));
      socket.end(`${command}\n`);
    });

  const upNodes = async () => {
    // "show servers state": one line per server; field 4 is its name, field 6 its operational state (2 = up).
    const lines = (await runtime("show servers state nodes")).split("\n").filter((l) => /^\d+ /.test(l));
    return lines.map((l) => l.split(" ")).filter((f) => f[5] === "2").map((f) => f[3]!);
  };

  /** Until every listed node is up, as the health checks see it. */
  const waitForNodes = async (ids: string[]) => {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (!alive()) throw new Error(`haproxy exited:\n${stderr}`);
      const up = await upNodes().catch(() => [] as string[]);
      if (ids.every((id) => up.includes(id))) return;
      if (Date.now() > deadline) throw new Error(`router: nodes ${ids.filter((id) => !up.includes(id)).join(", ")} not up after ${START_TIMEOUT_MS} ms\n${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  try {
    await waitForPort(port, alive, START_TIMEOUT_MS);
    await waitForNodes(options.nodes.map((n) => n.id));
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${stderr}`);
  }

  return {
    port,
    url: options.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`,
    pid: child.pid!,
    async reload(nodes) {
      await write(nodes);
      // The master re-reads the file and starts a new worker; the old one finishes its calls.
      const before = stderr.length;
      child.kill("SIGUSR2");
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (!/Loading success/.test(stderr.slice(before))) {
        if (!alive()) throw new Error(`haproxy exited on reload:\n${stderr}`);
        if (/Loading failure|ALERT/.test(stderr.slice(before))) throw new Error(`haproxy refused the new configuration:\n${stderr.slice(before)}`);
        if (Date.now() > deadline) throw new Error(`haproxy reload not done after ${START_TIMEOUT_MS} ms\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await waitForNodes(nodes.map((n) => n.id));
    },
    runtime,
    upNodes,
    waitForNodes,
    stderrTail: () => stderr,
    stop,
  };
}
