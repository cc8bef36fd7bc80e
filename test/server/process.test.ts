import { spawn } from "node:child_process";
import { once } from "node:events";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildServer } from "../../scripts/build-server.js";

/*
 * The server as a process: `.env` read at start, where to open the app, and shutdown.
 * `npm start | sed '/open/q'`, or a log collector that dies: the server's stdout reader is gone,
 * its next log line meets EPIPE, and SIGTERM must still shut it down cleanly with exit code 0 and
 * leave nothing listening (npm runs the script through `sh -c`; without `exec` the shell took the
 * signal and died, and the server went on as an orphan).
 */

let dataDir: string;
/** A copy of the package as `npm start` sees it (package.json, the bundle, node_modules linked), in a temporary folder. */
let pkg: string;
let bundle: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-process-"));
  // Our own bundle: rebuilding dist/server/main.mjs in place would race other tests that run it.
  pkg = path.join(dataDir, "pkg");
  await mkdir(pkg);
  await copyFile("package.json", path.join(pkg, "package.json"));
  await symlink(path.resolve("node_modules"), path.join(pkg, "node_modules"), "dir");
  bundle = await buildServer(path.join(pkg, "dist", "server", "main.mjs"));
});
afterAll(async () => {
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
async function listening(port: number): Promise<boolean> {
  const socket = connect(port, "127.0.0.1");
  try {
    await once(socket, "connect");
    return true;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

/**
 * Starts `command` with its stdout piped into `sed`, which passes lines up to the server's "open …"
 * line and exits; then sends SIGTERM to `command`. Resolves with what was seen and how it ended.
 */
async function startThenTerminate(command: string, args: string[], cwd = process.cwd()) {
  const reader = spawn("sed", ['/"msg":"open /q'], { stdio: ["pipe", "pipe", "inherit"] });
  const server = spawn(command, args, {
    cwd,
    env: { ...process.env, HOST: "127.0.0.1", PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "info", SPEECH_ENGINE: "device", WEB_ROOT: dataDir },
    stdio: ["ignore", reader.stdin, "pipe"],
    // Its own process group, so cleanup reaches whatever it started, orphans included.
    detached: true,
  });
  // Only the server and sed hold the pipe: once sed exits, nobody reads the server's stdout.
  reader.stdin.destroy();
  let stderr = "";
  server.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const serverExit = once(server, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    let seen = "";
    reader.stdout.on("data", (chunk: Buffer) => (seen += chunk.toString()));
    const readerDone = await Promise.race([once(reader, "exit"), new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 20_000))]);
    expect(readerDone, `no "open" line in:\n${seen}\n${stderr}`).not.toBe("timeout");
    const lines = seen
      .trim()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { msg: string; port?: number; url?: string });
    const port = lines.find((l) => l.msg === "listening")?.port ?? 0;
    server.kill("SIGTERM");
    // The server gives itself 9 s to shut down; the rest is slack for a loaded machine.
    const outcome = await Promise.race([serverExit, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 20_000))]);
    return { port, open: lines.at(-1), outcome, stderr, stillListening: await listening(port) };
  } finally {
    try {
      process.kill(-server.pid!, "SIGKILL");
    } catch {
      // The group is gone already: nothing was left behind.
    }
    if (reader.exitCode === null) reader.kill("SIGKILL");
  }
}

describe("the server process", () => {
  it("prints where to open the app, and exits 0 on SIGTERM after its stdout's reader has gone", { timeout: 40_000 }, async () => {
    const run = await startThenTerminate(process.execPath, ["--import", "tsx", "src/main.ts"]);
    const url = `http://127.0.0.1:${run.port}/`;
    expect(run.open).toMatchObject({ msg: `open ${url}`, url });
    expect({ outcome: run.outcome, stderr: run.stderr, stillListening: run.stillListening }).toEqual({ outcome: [0, null], stderr: "", stillListening: false });
  });

  it("under `npm start`, SIGTERM to npm reaches the server: npm exits 0 and nothing is left listening", { timeout: 60_000 }, async () => {
    // --ignore-scripts skips prestart's rebuilds; the copy's bundle was built before the tests.
    const run = await startThenTerminate("npm", ["start", "--ignore-scripts", "--silent"], pkg);
    expect(run.open?.msg).toBe(`open http://127.0.0.1:${run.port}/`);
    expect({ outcome: run.outcome, stillListening: run.stillListening }).toEqual({ outcome: [0, null], stillListening: false });
  });

  it("reads .env from its working folder at start (.env.example copied as is parses), and the environment wins", { timeout: 60_000 }, async () => {
    const cwd = await mkdtemp(path.join(os.tmpdir(), "handshake-dotenv-"));
    try {
      // The whole example, as a newcomer copies it, then two overrides: .env's PORT would stop the
      // server if it beat the environment's; its DATA_DIR must be the one used.
      await copyFile(".env.example", path.join(cwd, ".env"));
      await writeFile(path.join(cwd, ".env"), (await readFile(path.join(cwd, ".env"), "utf8")) + "PORT=not-a-port\nDATA_DIR=./from-dotenv\nSPEECH_ENGINE=device\n");
      const env: NodeJS.ProcessEnv = { ...process.env, PORT: "0" };
      for (const key of ["DATA_DIR", "SPEECH_ENGINE", "HOST", "LOG_LEVEL", "WEB_ROOT", "ANTHROPIC_API_KEY", "STRIPE_SECRET_KEY", "ELEVENLABS_API_KEY"]) delete env[key];
      const server = spawn(process.execPath, [bundle], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      server.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
      const started = new Promise<{ dataDir?: string; port?: number }>((resolve, reject) => {
        server.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          const line = out.split("\n").find((l) => l.includes('"msg":"listening"'));
          if (line) resolve(JSON.parse(line) as { dataDir?: string; port?: number });
        });
        server.once("exit", (code) => reject(new Error(`server exited ${code}: ${err}`)));
      });
      try {
        const listening = await started;
        expect(listening.dataDir).toBe(path.join(cwd, "from-dotenv"));
        expect(listening.port).toBeGreaterThan(0);
      } finally {
        server.kill("SIGTERM");
        await once(server, "exit");
      }
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });
});
