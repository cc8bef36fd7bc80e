import { mkdtemp, rm } from "node:fs/promises";
import { scriptedGutterClaude } from "../support/scripted-claude.js";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../clients/cli/cli.js";
import { ContractStatus, NegotiationStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { startFakeAnthropic, type FakeAnthropic } from "../../src/agents/claude/testing/fake-anthropic.js";
import { grpcTransport, startTestApp, testProfile, type TestApp } from "../support/app.js";
import { recordPanel, type PanelRecorder } from "../support/panel.js";

/** A captured stream whose text can be awaited. */
function capture(): { stream: PassThrough; text: () => string; waitFor: (needle: string) => Promise<void> } {
  const stream = new PassThrough();
  let text = "";
  const waiters: { needle: string; resolve: () => void }[] = [];
  stream.on("data", (chunk: Buffer) => {
    text += chunk.toString();
    for (const w of [...waiters]) {
      if (text.includes(w.needle)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  return {
    stream,
    text: () => text,
    waitFor: (needle) => (text.includes(needle) ? Promise.resolve() : new Promise((resolve) => waiters.push({ needle, resolve }))),
  };
}

/** The CLI's `join` in-process, typed into through stdin, stopped with Ctrl-C (the abort signal). */
function startCliJoin(app: TestApp, dir: string, args: string[]) {
  const stdin = new PassThrough();
  const stdout = capture();
  const stderr = capture();
  const stop = new AbortController();
  const statePath = path.join(dir, `state-${Math.random()}.json`);
  const exit = runCli(["join", "--server", app.baseUrl, "--state", statePath, ...args], {
    stdout: stdout.stream,
    stderr: stderr.stream,
    stdin,
    env: {},
    signal: stop.signal,
  });
  return {
    statePath,
    type: (line: string) => stdin.write(line + "\n"),
    stdout,
    stderr,
    async stop(): Promise<number> {
      stop.abort(new Error("ctrl-c"));
      stdin.end();
      return exit;
    },
  };
}

async function joinDirect(app: TestApp, roomId: string, profile: Parameters<typeof testProfile>[0]) {
  const joined = await createClient(RoomService, grpcTransport(app.baseUrl)).joinRoom({ roomId, profile: testProfile(profile) });
  const room = createClient(RoomService, grpcTransport(app.baseUrl, joined.sessionToken));
  const panel: PanelRecorder = recordPanel(room, roomId);
  return {
    userId: joined.userId,
    panel,
    say: (text: string) => room.sendAudio({ transcript: { text, isFinal: true, startMs: 0, endMs: 1_000, confidence: 0.9 } }),
  };
}

async function contractOn(panel: PanelRecorder, status: ContractStatus): Promise<Contract> {
  const event = await panel.waitFor((e) => e.event.case === "contract" && e.event.value.status === status, ContractStatus[status]);
  if (event.event.case !== "contract") throw new Error("unreachable");
  return event.event.value;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "handshake-cli-approvals-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("CLI: declining a contract", () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it("/decline REASON declines the room's contract and the other person sees why", async () => {
    const sam = await joinDirect(app, "cli-decline", { displayName: "Sam", role: PartyRole.PROVIDER, trade: "painter" });
    const alex = startCliJoin(app, dir, ["--room", "cli-decline", "--name", "Alex", "--role", "client", "--max-auto-approve", "400"]);
    await alex.stderr.waitFor("joined room cli-decline");
    await sam.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.paired, "paired");
    await sam.say("Painting the kitchen is two hundred and fifty pounds.");
    await sam.panel.waitFor((e) => e.event.case === "transcript" && e.event.value.text.startsWith("Painting"), "transcript");
    alex.type("/decline");
    await alex.stderr.waitFor("no contract is waiting");
    alex.type("Handshake.");
    await contractOn(sam.panel, ContractStatus.AWAITING_SIGNATURES);
    alex.type("/decline");
    await alex.stderr.waitFor("usage: /decline REASON");
    alex.type("/decline The hallway is missing.");
    const declined = await contractOn(sam.panel, ContractStatus.DECLINED);
    expect(declined.declinedReason).toBe("The hallway is missing.");
    await alex.stderr.waitFor(`declined contract ${declined.id}`);
    expect(await alex.stop()).toBe(0);
    // Later, as the same user: the saved contract says who declined it and why.
    const detail = capture();
    const state = alex.statePath;
    const code = await runCli(["contract", declined.id, "--server", app.baseUrl, "--state", state], { stdout: detail.stream, stderr: new PassThrough(), env: {} });
    expect(code).toBe(0);
    expect(detail.text()).toContain('declined by Alex: "The hallway is missing." (nothing was paid)');
    await sam.panel.stop();
  });
});

describe("CLI: approval requests", () => {
  let fake: FakeAnthropic;
  let app: TestApp;
  beforeAll(async () => {
    fake = await startFakeAnthropic({ validKey: "sk-ant-test" });
    fake.reply(...Array.from({ length: 200 }, () => scriptedGutterClaude));
    app = await startTestApp({ AGENT_ENGINE: "claude", ANTHROPIC_API_KEY: "sk-ant-test", ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_MODEL: "claude-test" });
  });
  afterAll(async () => {
    await app.close();
    await fake.close();
  });

  it("asks on the terminal; /approve lets the agent accept and the contract is drafted", async () => {
    const sam = await joinDirect(app, "cli-approve", { displayName: "Sam", role: PartyRole.PROVIDER, trade: "roofer" });
    const alex = startCliJoin(app, dir, ["--room", "cli-approve", "--name", "Alex", "--role", "client", "--max-auto-approve", "100"]);
    await alex.stderr.waitFor("joined room cli-approve");
    await sam.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.paired, "paired");
    await sam.say("Four hundred and fifty pounds for the gutter repair.");
    await sam.say("Handshake.");
    await alex.stderr.waitFor("? your agent asks: Pay £450.00 to Sam for Gutter repair, above your auto-approve limit of £100.00");
    alex.type("/approve");
    await alex.stderr.waitFor("approved: Pay £450.00 to Sam for Gutter repair");
    const contract = await contractOn(sam.panel, ContractStatus.AWAITING_SIGNATURES);
    expect(contract.terms?.totalMinor).toBe(45_000n);
    alex.type("/approve");
    await alex.stderr.waitFor("no approval request is waiting for you");
    expect(await alex.stop()).toBe(0);
    await sam.panel.stop();
  });

  it("--approvals decline answers at once: the agent walks away", async () => {
    const sam = await joinDirect(app, "cli-refuse", { displayName: "Sam", role: PartyRole.PROVIDER, trade: "roofer" });
    const alex = startCliJoin(app, dir, ["--room", "cli-refuse", "--name", "Alex", "--role", "client", "--max-auto-approve", "100", "--approvals", "decline"]);
    await alex.stderr.waitFor("joined room cli-refuse");
    await sam.panel.waitFor((e) => e.event.case === "roomStatus" && e.event.value.paired, "paired");
    await sam.say("Four hundred and fifty pounds for the gutter repair.");
    await sam.say("Handshake.");
    await sam.panel.waitFor((e) => e.event.case === "negotiation" && e.event.value.status === NegotiationStatus.REJECTED, "rejected");
    await alex.stderr.waitFor("declined: Pay £450.00 to Sam for Gutter repair");
    expect(alex.stderr.text()).not.toContain("? your agent asks");
    expect(await alex.stop()).toBe(0);
    await sam.panel.stop();
  });
});
