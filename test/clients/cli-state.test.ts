import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliState } from "../../clients/cli/cli.js";
import { encodeWav } from "../../clients/shared/wav.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";

/*
 * The CLI keeps who you are in its --state file and explains what stops a newcomer: no server,
 * a recording it cannot send, a full room. Every case runs the real CLI entry point as a child.
 */

const DIALOGUE = path.resolve("test/fixtures/dialogues/boiler-repair.json");

let t: TestApp;
let dir: string;
beforeAll(async () => {
  t = await startTestApp();
  dir = await mkdtemp(path.join(os.tmpdir(), "handshake-cli-state-"));
});
afterAll(async () => {
  await t?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A running CLI child: its output so far, a wait for a line, Ctrl-C, and its exit. */
function startCli(args: string[], env: Record<string, string> = {}) {
  // HOME in the temporary folder: the default state file never lands in the real home.
  const base: NodeJS.ProcessEnv = { ...process.env, HOME: dir, HANDSHAKE_SERVER: "", HANDSHAKE_STATE: "", HANDSHAKE_TOKEN: "" };
  for (const key of ["HANDSHAKE_SERVER", "HANDSHAKE_STATE", "HANDSHAKE_TOKEN"]) delete base[key];
  const child = spawn(process.execPath, ["--import", "tsx", "clients/cli/main.ts", ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...base, ...env } });
  let stdout = "";
  let stderr = "";
  const waiters: { needle: string; resolve: () => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      if (stderr.includes(w.needle) || stdout.includes(w.needle)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout.on("data", (chunk: Buffer) => ((stdout += chunk.toString()), check()));
  child.stderr.on("data", (chunk: Buffer) => ((stderr += chunk.toString()), check()));
  const exit = once(child, "exit").then(([code]) => code as number | null);
  return {
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    /** Resolves once `needle` is in stdout or stderr; rejects if the CLI exits first. */
    waitFor(needle: string): Promise<void> {
      if (stdout.includes(needle) || stderr.includes(needle)) return Promise.resolve();
      return Promise.race([
        new Promise<void>((resolve) => waiters.push({ needle, resolve })),
        exit.then((code) => Promise.reject(new Error(`CLI exited ${code} before "${needle}":\n${stderr}`))),
      ]);
    },
    /** Ctrl-C, as a person leaving the room; resolves with the exit code. */
    interrupt(): Promise<number | null> {
      child.kill("SIGINT");
      return exit;
    },
    exit,
  };
}

/** Runs the CLI to its end. */
async function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = startCli(args, env);
  const code = await cli.exit;
  return { code, stdout: cli.stdout, stderr: cli.stderr };
}

/** A URL where nothing listens: a port the OS just handed out and took back. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, "close");
  return `http://127.0.0.1:${port}`;
}

async function readState(file: string): Promise<CliState> {
  return JSON.parse(await readFile(file, "utf8")) as CliState;
}

describe("the CLI's --state file", () => {
  it("keeps the user: a later join with only --room and --state comes back as the same person, and their contracts stay reachable", async () => {
    const samState = path.join(dir, "sam.json");
    const alexState = path.join(dir, "alex.json");
    const common = ["join", "--server", t.baseUrl, "--room", "state-first-deal", "--dialogue", DIALOGUE, "--auto-sign", "--until-complete", "--timeout", "50"];
    const [sam, alex] = await Promise.all([
      runCli([...common, "--name", "Sam", "--role", "provider", "--trade", "plumber", "--rate", "boiler repair:120:job", "--state", samState]),
      runCli([...common, "--name", "Alex", "--role", "client", "--max-auto-approve", "250", "--state", alexState]),
    ]);
    expect({ code: sam.code, err: sam.code === 0 ? "" : sam.stderr }).toEqual({ code: 0, err: "" });
    expect({ code: alex.code, err: alex.code === 0 ? "" : alex.stderr }).toEqual({ code: 0, err: "" });

    const first = await readState(samState);
    expect(first).toMatchObject({ server: t.baseUrl, roomId: "state-first-deal", displayName: "Sam" });
    expect(first.userId).toMatch(/^usr_/);
    expect(first.userToken.length).toBeGreaterThan(20);
    // It holds a bearer token: the owner alone may read it.
    expect((await stat(samState)).mode & 0o777).toBe(0o600);

    const listed = await runCli(["contracts", "--state", samState]);
    expect(listed.code).toBe(0);
    const [contractId] = listed.stdout.trim().split(/\s+/);
    expect(contractId).toBeTruthy();

    // Again, in another room, naming nobody: the state file says who this is.
    const again = startCli(["join", "--server", t.baseUrl, "--room", "state-second-visit", "--state", samState]);
    await again.waitFor("user token saved");
    expect(again.stderr).toContain(`joined room state-second-visit as Sam (${first.userId}, the same user as before, from ${samState})`);
    expect(await again.interrupt()).toBe(0);
    const second = await readState(samState);
    expect({ userId: second.userId, displayName: second.displayName, roomId: second.roomId }).toEqual({
      userId: first.userId,
      displayName: "Sam",
      roomId: "state-second-visit",
    });

    // The contract from the first visit is still Sam's, through the state file alone.
    const later = await runCli(["contracts", "--state", samState]);
    expect(later.code).toBe(0);
    expect(later.stdout).toContain(contractId!);
    const shown = await runCli(["contract", contractId!, "--state", samState]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain("text hash verified");
  });

  it("refuses to join someone else under the identity a state file holds", async () => {
    const file = path.join(dir, "shared.json");
    const sam = startCli(["join", "--server", t.baseUrl, "--room", "state-shared-a", "--name", "Sam", "--state", file]);
    await sam.waitFor("user token saved");
    expect(await sam.interrupt()).toBe(0);
    const before = await readState(file);
    const alex = await runCli(["join", "--server", t.baseUrl, "--room", "state-shared-b", "--name", "Alex", "--state", file]);
    expect(alex.code).toBe(2);
    expect(alex.stderr).toContain(`${file} is Sam's (${before.userId}); joining as Alex with it would be joining as them. Give Alex their own --state FILE, or join as Sam.`);
    expect(alex.stderr).not.toContain("--help");
    // Sam's identity is still there to come back to.
    expect(await readState(file)).toEqual(before);
  });

  it("says when the state file's token is refused, and how to start afresh", async () => {
    const file = path.join(dir, "forged.json");
    await writeFile(file, JSON.stringify({ server: t.baseUrl, roomId: "x", userId: "usr_x", userToken: "not.a.token", displayName: "Mallory", savedAtMs: 0 }));
    const run = await runCli(["join", "--server", t.baseUrl, "--room", "state-forged", "--state", file]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`the user token from ${file} was refused`);
    expect(run.stderr).toContain("join with another --state file to start as a new user");
  });
});

describe("the CLI's scripted dialogue", () => {
  it("completes whichever side starts first: the first speaker waits for the other person to be in the room", async () => {
    const common = ["join", "--server", t.baseUrl, "--room", "state-late-joiner", "--dialogue", DIALOGUE, "--auto-sign", "--until-complete", "--timeout", "40"];
    // Alex speaks first in the dialogue and starts first; Sam's process only starts once Alex is in,
    // and Sam's --keyword call gives his panel time to bring in what was said before his dialogue starts.
    const alex = startCli([...common, "--name", "Alex", "--role", "client", "--max-auto-approve", "250", "--state", path.join(dir, "late-alex.json")]);
    await alex.waitFor("user token saved");
    const sam = await runCli([...common, "--name", "Sam", "--role", "provider", "--rate", "boiler repair:120:job", "--keyword", "handshake", "--state", path.join(dir, "late-sam.json")]);
    const alexCode = await alex.exit;
    expect({ sam: sam.code, alex: alexCode, err: sam.code === 0 && alexCode === 0 ? "" : sam.stderr + alex.stderr }).toEqual({ sam: 0, alex: 0, err: "" });
    // Alex's first line was said to Sam, after he arrived.
    expect(sam.stdout).toContain('Alex: "Hi, thanks for coming round.');
  });
});

describe("the CLI's error messages", () => {
  it("names the missing server and how to start one, for --server and for HANDSHAKE_SERVER", async () => {
    const url = await deadUrl();
    const expected = `no server at ${url} — start it with \`npm start\` or set HANDSHAKE_SERVER`;
    const joining = await runCli(["join", "--server", url, "--room", "nobody-home", "--name", "Sam", "--state", path.join(dir, "dead.json")]);
    expect({ code: joining.code, stderr: joining.stderr.trim() }).toEqual({ code: 1, stderr: expected });
    const fromEnv = await runCli(["contracts", "--token", "whatever"], { HANDSHAKE_SERVER: url });
    expect({ code: fromEnv.code, stderr: fromEnv.stderr.trim() }).toEqual({ code: 1, stderr: expected });
  });

  it("honours HANDSHAKE_SERVER when joining", async () => {
    const file = path.join(dir, "env-server.json");
    const cli = startCli(["join", "--room", "state-env-server", "--name", "Env", "--state", file], { HANDSHAKE_SERVER: t.baseUrl });
    await cli.waitFor("user token saved");
    expect(await cli.interrupt()).toBe(0);
    expect((await readState(file)).server).toBe(t.baseUrl);
  });

  it("checks the --wav file before joining: missing, not a WAV, not 16-bit PCM, empty", async () => {
    // A dead server: a message about the file proves it was checked before any call.
    const url = await deadUrl();
    const wavRun = (file: string) => runCli(["join", "--server", url, "--room", "wav-check", "--name", "Sam", "--wav", file, "--state", path.join(dir, "wav.json")]);

    const missing = path.join(dir, "missing.wav");
    const a = await wavRun(missing);
    expect({ code: a.code, stderr: a.stderr.trim() }).toEqual({ code: 2, stderr: `--wav ${missing}: no such file` });

    const text = path.join(dir, "notes.wav");
    await writeFile(text, "these are not samples\n");
    const b = await wavRun(text);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain(`--wav ${text} is not a WAV the CLI can send (not a RIFF/WAVE file)`);

    const eightBit = path.join(dir, "eight-bit.wav");
    const wav8 = encodeWav(new Int16Array(1600), 16_000);
    new DataView(wav8.buffer).setUint16(34, 8, true); // bits per sample
    await writeFile(eightBit, wav8);
    const c = await wavRun(eightBit);
    expect(c.code).toBe(2);
    expect(c.stderr).toContain("only 16-bit samples are supported (got 8-bit)");
    expect(c.stderr).toContain("it needs 16-bit PCM");

    const empty = path.join(dir, "empty.wav");
    await writeFile(empty, encodeWav(new Int16Array(0), 16_000));
    const d = await wavRun(empty);
    expect({ code: d.code, stderr: d.stderr.trim() }).toEqual({ code: 2, stderr: `--wav ${empty} holds no audio (its data chunk is empty)` });
    for (const run of [a, b, c, d]) expect(run.stderr).not.toContain("no server");
  });

  it("says a full room seats two and when a seat frees", async () => {
    const rooms = createClient(RoomService, grpcTransport(t.baseUrl));
    await rooms.joinRoom({ roomId: "state-full-room", profile: testProfile({ displayName: "One" }) });
    await rooms.joinRoom({ roomId: "state-full-room", profile: testProfile({ displayName: "Two" }) });
    const run = await runCli(["join", "--server", t.baseUrl, "--room", "state-full-room", "--name", "Three", "--state", path.join(dir, "three.json")]);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      "room state-full-room is full (server said: room is full). A room seats two people; a seat frees when one of them leaves, " +
        "or when their connection has been gone for the server's LEAVE_GRACE_MS (30 s by default). Try again then, or pick another --room.",
    );
  });
});
