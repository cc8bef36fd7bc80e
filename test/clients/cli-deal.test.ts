import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { fromJsonString } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BalanceSchema } from "../../gen/handshake/v1/money_pb.js";
import { PanelEventSchema, type PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import {
  ContractSchema,
  ContractStatus,
  EscrowHoldStatus,
  MilestoneSchema,
  MilestoneStatus,
  NegotiationStatus,
  PaymentStatus,
} from "../../gen/handshake/v1/deal_pb.js";
import { runCli } from "../../clients/cli/cli.js";
import { loadDialogue } from "../../clients/cli/dialogue.js";
import { startTestApp, type TestApp } from "../support/app.js";

const DIALOGUE = path.resolve("test/fixtures/dialogues/boiler-repair.json");

let t: TestApp;
let dir: string;
beforeAll(async () => {
  t = await startTestApp();
  dir = await mkdtemp(path.join(os.tmpdir(), "handshake-cli-test-"));
});
afterAll(async () => {
  await t?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs the real CLI entry point as a child process; resolves when it exits. */
async function runMain(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "clients/cli/main.ts", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}

/** Runs a CLI command in-process (faster than a child) and captures its output. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (c: Buffer) => (out += c.toString()));
  stderr.on("data", (c: Buffer) => (err += c.toString()));
  const code = await runCli(args, { stdout, stderr, env: {} });
  return { code, stdout: out, stderr: err };
}

/** The stable shape of an event, for comparing the order of what happened. */
function keyOf(event: PanelEvent): string | undefined {
  const e = event.event;
  switch (e.case) {
    case "transcript":
      return e.value.isFinal ? `transcript:${e.value.text}` : undefined;
    case "trigger":
      return `trigger:${e.value.keyword}`;
    case "negotiation":
      return `negotiation:${NegotiationStatus[e.value.status]}`;
    case "contract":
      return `contract:${ContractStatus[e.value.status]}:${e.value.signatures.length}`;
    case "payment":
      return `payment:${PaymentStatus[e.value.status]}:${e.value.amountMinor}`;
    case "escrowHold":
      return `hold:${EscrowHoldStatus[e.value.status]}:${e.value.amountMinor}`;
    case "executionStep":
      return e.value.step === "signature" ? "signature" : undefined;
    default:
      return undefined;
  }
}

/** Removes repeats next to each other (a negotiation is reported once per round while open). */
function collapse(keys: string[]): string[] {
  return keys.filter((k, i) => k !== keys[i - 1]);
}

describe("the CLI participant", () => {
  it("drives a whole deal with two processes: dialogue, trigger, negotiation, contract, signatures, payments, balances", async () => {
    const dialogue = await loadDialogue(DIALOGUE);
    const common = ["join", "--server", t.baseUrl, "--room", "cli-boiler", "--dialogue", DIALOGUE, "--auto-sign", "--until-complete", "--json", "--timeout", "50"];
    const providerState = path.join(dir, "provider.json");
    const clientState = path.join(dir, "client.json");
    const [provider, client] = await Promise.all([
      runMain([...common, "--name", "Sam the plumber", "--role", "provider", "--trade", "plumber", "--rate", "boiler repair:120:job", "--state", providerState]),
      runMain([...common, "--name", "Alex", "--role", "client", "--max-auto-approve", "250", "--state", clientState]),
    ]);
    expect(provider.stderr).toContain("dialogue finished");
    expect({ code: provider.code, err: provider.code === 0 ? "" : provider.stderr }).toEqual({ code: 0, err: "" });
    expect({ code: client.code, err: client.code === 0 ? "" : client.stderr }).toEqual({ code: 0, err: "" });

    for (const run of [provider, client]) {
      const lines = run.stdout.trim().split("\n");
      const last = JSON.parse(lines.at(-1)!) as { deal: { contract: unknown; complete: boolean } };
      expect(last.deal.complete).toBe(true);
      const events = lines.slice(0, -1).map((line) => fromJsonString(PanelEventSchema, line));
      // Each event once, in seq order.
      const seqs = events.map((e) => e.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : 1)));
      expect(new Set(seqs).size).toBe(seqs.length);

      const keys = collapse(events.map(keyOf).filter((k): k is string => k !== undefined));
      expect(keys).toEqual([
        ...dialogue.map((line) => `transcript:${line.text}`),
        "trigger:handshake",
        "negotiation:OPEN",
        "negotiation:AGREED",
        "contract:AWAITING_SIGNATURES:0",
        "signature",
        "contract:AWAITING_SIGNATURES:1",
        "signature",
        "contract:EXECUTING:2",
        "payment:PENDING:12000",
        "payment:SUCCEEDED:12000",
        "hold:PENDING:8000",
        "hold:HELD:8000",
        "contract:ACTIVE:2",
      ]);
      const contract = fromJsonString(ContractSchema, JSON.stringify(last.deal.contract));
      expect(contract.status).toBe(ContractStatus.ACTIVE);
      expect(contract.terms?.totalMinor).toBe(20_000n);
      expect(contract.signatures).toHaveLength(2);
    }

    // The state files let later commands act as each user.
    const providerBalances = await cli(["balances", "--json", "--state", providerState]);
    expect(providerBalances.code).toBe(0);
    const [pb] = providerBalances.stdout.trim().split("\n").map((l) => fromJsonString(BalanceSchema, l));
    expect({ currency: pb?.currency, received: pb?.receivedMinor, held: pb?.heldMinor }).toEqual({ currency: "GBP", received: 12_000n, held: 0n });
    const clientBalances = await cli(["balances", "--json", "--state", clientState]);
    const [cb] = clientBalances.stdout.trim().split("\n").map((l) => fromJsonString(BalanceSchema, l));
    expect({ currency: cb?.currency, held: cb?.heldMinor, received: cb?.receivedMinor }).toEqual({ currency: "GBP", held: 8_000n, received: 0n });

    // Saved contracts and the milestone flow: the plumber proposes £65 for the flush, the client approves.
    const listed = await cli(["contracts", "--json", "--state", providerState]);
    const [saved] = listed.stdout.trim().split("\n").map((l) => fromJsonString(ContractSchema, l));
    expect(saved?.status).toBe(ContractStatus.ACTIVE);
    const shown = await cli(["contract", saved!.id, "--state", clientState]);
    expect(shown.stdout).toContain("text hash verified");
    expect(shown.stdout).toContain(saved!.textSha256);
    const milestone = saved!.milestones[0]!;
    const proposed = await cli(["milestone", "propose", saved!.id, milestone.id, "65", "--json", "--state", providerState]);
    expect(proposed.stderr).toBe("");
    expect(fromJsonString(MilestoneSchema, proposed.stdout.trim()).status).toBe(MilestoneStatus.AMOUNT_PROPOSED);
    const refused = await cli(["milestone", "approve", saved!.id, milestone.id, "70", "--state", clientState]);
    expect(refused.code).toBe(1);
    const approved = await cli(["milestone", "approve", saved!.id, milestone.id, "65.00", "--json", "--state", clientState]);
    const done = fromJsonString(MilestoneSchema, approved.stdout.trim());
    expect({ status: done.status, captured: done.capturedMinor }).toEqual({ status: MilestoneStatus.COMPLETED, captured: 6_500n });
    const after = await cli(["balances", "--json", "--state", providerState]);
    expect(fromJsonString(BalanceSchema, after.stdout.trim()).receivedMinor).toBe(18_500n);
    const final = await cli(["contract", saved!.id, "--json", "--state", clientState]);
    expect(fromJsonString(ContractSchema, final.stdout.trim()).status).toBe(ContractStatus.COMPLETED);
  });

  it("explains bad usage with exit code 2", async () => {
    const noRoom = await cli(["join", "--name", "X"]);
    expect(noRoom.code).toBe(2);
    expect(noRoom.stderr).toContain("--room is required");
    const badRole = await cli(["join", "--room", "r1", "--name", "X", "--role", "boss"]);
    expect(badRole.code).toBe(2);
    expect(badRole.stderr).toContain("--role must be one of provider, client");
    const noToken = await cli(["balances", "--state", path.join(dir, "nobody.json")]);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain("no user token");
    const state = JSON.parse(await readFile(path.join(dir, "provider.json"), "utf8").catch(() => "{}")) as { userToken?: string };
    const unknown = await cli(["milestone", "explode", "c", "m", "--token", state.userToken ?? "x", "--server", t.baseUrl]);
    expect(unknown.code).toBe(2);
  });
});
