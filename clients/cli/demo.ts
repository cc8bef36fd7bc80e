import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { AgentProfileSchema, EscrowPreference, NegotiationStyle, PartyRole, RateUnit } from "../../gen/handshake/v1/profile_pb.js";
import type { PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { loadDialogue, type DialogueLine } from "./dialogue.js";
import { describeEvent } from "../shared/format.js";
import { createParticipant, type DealOutcome, type Participant } from "./participant.js";
import { balanceLines, dealSummary } from "./summary.js";

/*
 * `npm run demo`: starts a Handshake server on the embedded defaults in a child process, lets a
 * plumber and a homeowner talk through a scripted dialogue until they say "handshake", and shows
 * the negotiation, the contract, both signatures, the payments and the ledger balances.
 * Exits 0 only when the deal completed; the server is stopped on every exit.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const DIALOGUE = path.join(ROOT, "test/fixtures/dialogues/boiler-repair.json");
/** The spoken version: each line names a synthesized WAV under test/fixtures/audio/. */
const AUDIO_DIALOGUE = path.join(ROOT, "test/fixtures/dialogues/boiler-repair-audio.json");
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

const tty = process.stdout.isTTY === true;
const paint = (code: string) => (text: string) => (tty ? `\u001b[${code}m${text}\u001b[0m` : text);
const bold = paint("1");
const dim = paint("2");
const green = paint("32");
const red = paint("31");
const cyan = paint("36");
const yellow = paint("33");

/** Starts `src/main.ts` and resolves with its port once it logs "listening". */
async function startServer(env: Record<string, string>, logFile: string, verbose: boolean): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = createWriteStream(logFile);
  child.stderr?.pipe(log, { end: false });
  if (verbose) child.stderr?.pipe(process.stderr, { end: false });
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the server exited before listening (${signal ?? `code ${code}`}); see ${logFile}`));
    });
    lines.on("line", (line) => {
      log.write(line + "\n");
      if (verbose) process.stderr.write(dim(line) + "\n");
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === "listening" && typeof entry.port === "number") {
          clearTimeout(timer);
          resolve(entry.port);
        }
      } catch {
        // not a JSON log line
      }
    });
  });
  return { child, port };
}

/** Stops the server: SIGTERM, then SIGKILL if it does not exit in time. */
async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** Loads each line's WAV for --audio, or explains which fixture is missing. */
async function loadAudio(lines: DialogueLine[], dialogueFile: string): Promise<Map<DialogueLine, Uint8Array>> {
  const audio = new Map<DialogueLine, Uint8Array>();
  const missing: string[] = [];
  for (const line of lines) {
    const file = line.audio ? path.resolve(path.dirname(dialogueFile), line.audio) : undefined;
    if (!file) {
      missing.push(`(no audio named for "${line.text.slice(0, 40)}…")`);
      continue;
    }
    try {
      audio.set(line, await readFile(file));
    } catch {
      missing.push(path.relative(ROOT, file));
    }
  }
  if (missing.length > 0) {
    throw new Error(
      `--audio needs the synthesized speech fixtures, and these are missing:\n  ${missing.join("\n  ")}\n` +
        "Run the demo without --audio to send the dialogue as on-device transcripts.",
    );
  }
  return audio;
}

/** Set once the deal is summarised: later events (people leaving) are not shown. */
let quiet = false;

function show(event: PanelEvent, viewer: Participant, label: string): void {
  if (quiet) return;
  const line = describeEvent(event, (id) => viewer.nameOf(id));
  const e = event.event;
  const colour =
    e.case === "transcript" ? (x: string) => x
    : e.case === "trigger" || e.case === "negotiation" ? yellow
    : e.case === "contract" || e.case === "executionStep" ? cyan
    : e.case === "payment" || e.case === "escrowHold" || e.case === "milestone" ? green
    : e.case === "error" ? red
    : dim;
  process.stdout.write(`${dim(label)} ${colour(line)}\n`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      audio: { type: "boolean" },
      verbose: { type: "boolean" },
      timeout: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write("usage: npm run demo [-- --audio] [--verbose] [--timeout SECONDS]\n");
    return 0;
  }
  const timeoutMs = Number(values.timeout ?? "180") * 1000;
  const dialogueFile = values.audio ? AUDIO_DIALOGUE : DIALOGUE;
  const dialogue = await loadDialogue(dialogueFile);
  const audio = values.audio ? await loadAudio(dialogue, dialogueFile) : undefined;

  const dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-demo-"));
  const logFile = path.join(dataDir, "server.log");
  let server: ChildProcess | undefined;
  let code = 1;
  const participants: Participant[] = [];
  try {
    process.stdout.write(bold("Starting a Handshake server on the embedded defaults…\n"));
    const started = await startServer(
      {
        HOST: "127.0.0.1",
        PORT: "0",
        DATA_DIR: dataDir,
        LOG_LEVEL: "info",
        SPEECH_ENGINE: audio ? "pocketsphinx" : "device",
        AGENT_ENGINE: "offline",
        PAYMENT_RAIL: "ledger",
        TRIGGER_KEYWORD: "handshake",
      },
      logFile,
      values.verbose === true,
    );
    server = started.child;
    const child = server;
    // Ctrl-C or a kill must not leave the server running: stop it, then exit.
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.once(signal, () => {
        process.stdout.write(dim(`\n${signal}: stopping the server\n`));
        void stopServer(child).finally(() => process.exit(130));
      });
    }
    const serverUrl = `http://127.0.0.1:${started.port}`;
    process.stdout.write(dim(`server on ${serverUrl}, data in ${dataDir}\n\n`));

    const roomId = `demo-${Date.now().toString(36)}`;
    const plumber = createParticipant({
      serverUrl,
      roomId,
      autoSign: true,
      profile: create(AgentProfileSchema, {
        displayName: "Sam Price (plumber)",
        role: PartyRole.PROVIDER,
        trade: "plumber",
        experienceYears: 12,
        currency: "GBP",
        style: NegotiationStyle.BALANCED,
        rates: [
          { description: "boiler repair", amountMinor: 12_000n, unit: RateUnit.JOB },
          { description: "radiator flush", amountMinor: 2_000n, unit: RateUnit.ITEM },
        ],
        escrowPreference: EscrowPreference.ABOVE_THRESHOLD,
        escrowThresholdMinor: 50_000n,
      }),
      onEvent: (event, p) => show(event, p, "plumber  │"),
      onNotice: (message) => quiet || process.stdout.write(dim(`plumber  │ ${message}\n`)),
    });
    const homeowner = createParticipant({
      serverUrl,
      roomId,
      autoSign: true,
      profile: create(AgentProfileSchema, {
        displayName: "Alex Morgan (homeowner)",
        role: PartyRole.CLIENT,
        currency: "GBP",
        style: NegotiationStyle.BALANCED,
        maxAutoApproveMinor: 25_000n,
        escrowPreference: EscrowPreference.ABOVE_THRESHOLD,
        escrowThresholdMinor: 50_000n,
      }),
      // The plumber's panel shows the room; from the homeowner's only what only they see.
      onEvent: (event, p) => {
        if (event.event.case === "agentMessage") show(event, p, "homeowner│");
      },
      onNotice: (message) => quiet || process.stdout.write(dim(`homeowner│ ${message}\n`)),
    });
    participants.push(plumber, homeowner);
    await plumber.join();
    await homeowner.join();

    const serverGone = new AbortController();
    server.once("exit", (exitCode, signal) => serverGone.abort(new Error(`the server exited (${signal ?? `code ${exitCode}`})`)));
    const deadline = AbortSignal.any([AbortSignal.timeout(timeoutMs), serverGone.signal]);
    const audioFor = audio ? (line: DialogueLine) => Promise.resolve(audio.get(line)) : undefined;
    const talks = [plumber, homeowner].map((p) => p.runDialogue(dialogue, { signal: deadline, ...(audioFor && { audioFor }) }));
    let outcomes: DealOutcome[];
    try {
      [outcomes] = await Promise.all([Promise.all([plumber.waitForDeal({ signal: deadline }), homeowner.waitForDeal({ signal: deadline })]), Promise.all(talks)]);
    } catch (err) {
      const why = serverGone.signal.aborted
        ? (serverGone.signal.reason as Error).message
        : deadline.aborted
          ? `no completed deal within ${timeoutMs / 1000} s`
          : (err as Error).message;
      process.stdout.write("\n" + red(bold(`The deal did not complete: ${why}\n`)) + dim(`server log kept in ${logFile}\n`));
      return code;
    }

    // What happens while leaving is not part of the story.
    quiet = true;
    // The contract as stored now, with every payment and hold the rail recorded.
    const contractId = outcomes[0]!.contract.id;
    const { contract } = await plumber.contracts.getContract({ contractId });
    const final = contract ? { contract, payments: contract.payments, holds: contract.holds, milestones: contract.milestones } : outcomes[0]!;
    process.stdout.write("\n" + bold(green("Deal complete.\n")));
    for (const line of dealSummary(final, (id) => plumber.nameOf(id))) process.stdout.write(line + "\n");
    process.stdout.write("  ledger balances:\n");
    for (const p of [plumber, homeowner]) {
      const { balances } = await p.contracts.getBalances({});
      for (const line of balanceLines(p.profile.displayName, balances)) process.stdout.write(`  ${line}\n`);
    }
    code = 0;
    return code;
  } catch (err) {
    process.stderr.write(red(`demo failed: ${(err as Error).message}\n`));
    if (server) process.stderr.write(dim(`server log kept in ${logFile}\n`));
    return code;
  } finally {
    await Promise.allSettled(participants.map((p) => p.leave()));
    if (server) await stopServer(server);
    // On failure the data folder (database and server log) is kept for a look.
    if (code === 0) await rm(dataDir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
// Open HTTP/2 sessions to the stopped server must not keep the process alive.
process.exit();
