import { spawn, type ChildProcess } from "node:child_process";
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AgentProfileSchema } from "../../gen/handshake/v1/profile_pb.js";
import { ContractStatus, EscrowHoldStatus, LineItemKind, MilestoneStatus, PaymentStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { EscrowPreference, NegotiationStyle, PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import Database from "better-sqlite3";
import path from "node:path";
import { sha256Hex } from "./hash.js";
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
      // The start-up key check is no payment: it passes, so a paused gate cannot hold start-up.
      if (paused && !(req.method === "GET" && req.url === "/v1/balance")) queued.push(go);
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
  /** Resolves when the process has exited, however it ended (e.g. a kill point fired). */
  exited: Promise<void>;
  /** The last 8 000 characters it wrote to stderr (a fired kill point prints `kill-point <n> <method>` there). */
  stderr(): string;
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
    exited,
    stderr: () => stderr,
    async stop(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

// --- A whole deal, killed at a write and finished after a restart (test/restart/crash-*.test.ts) ---

/** A spoken deal two people make: their profiles and what they say. */
export interface SpokenDeal {
  provider: MessageInitShape<typeof AgentProfileSchema>;
  client: MessageInitShape<typeof AgentProfileSchema>;
  talk(provider: Person, client: Person): Promise<void>;
}

/** test/fixtures/conversations/escrow-range-roofer-gbp.json: £60 call-out now, a £150–£250 repair in escrow. */
export const roofDeal: SpokenDeal = {
  provider: { displayName: "Rita", role: PartyRole.PROVIDER, trade: "roofer", currency: "GBP", style: NegotiationStyle.BALANCED },
  client: {
    displayName: "Omar",
    role: PartyRole.CLIENT,
    currency: "GBP",
    maxAutoApproveMinor: 40_000n,
    escrowPreference: EscrowPreference.ABOVE_THRESHOLD,
    escrowThresholdMinor: 10_000n,
  },
  async talk(provider, client) {
    await client.say("Water is coming through the ceiling when it rains. Can you repair the roof?");
    await provider.say("The call-out is sixty pounds.");
    await provider.say("The repair itself could be anything from 150 to 250 pounds, depending on what I find up there.");
    await client.say("OK, that sounds good to me. Handshake.");
  },
};

/** test/fixtures/conversations/web-design-eur.json: one fixed price, all of it in escrow. */
export const webDesignDeal: SpokenDeal = {
  provider: { displayName: "Lena", role: PartyRole.PROVIDER, trade: "web designer", currency: "EUR", style: NegotiationStyle.CONSERVATIVE },
  client: {
    displayName: "Marc",
    role: PartyRole.CLIENT,
    currency: "EUR",
    style: NegotiationStyle.BALANCED,
    maxAutoApproveMinor: 150_000n,
    escrowPreference: EscrowPreference.ALWAYS,
  },
  async talk(provider, client) {
    await client.say("I'd like a new website for my bakery, five pages and a contact form.");
    await provider.say("I can design and build it for €1,250.50.");
    await client.say("Could you do it for a thousand euros?");
    await provider.say("I could do eleven hundred euros.");
    await client.say("Let's handshake on that and let the agents settle it.");
  },
};

/**
 * How the escrow milestone ends: `approve` (ranged: the provider proposes the middle of the range,
 * the client approves it), `confirm` (fixed: both confirm, captured in full), `release` (the
 * provider gives the hold back).
 */
export type EscrowEnding = "approve" | "confirm" | "release";

/** What a deal run learnt before its server died: the people (their tokens) and the contract. */
export interface DealRun {
  roomId: string;
  deal: SpokenDeal;
  provider?: Person;
  client?: Person;
  contract?: Contract;
}

const settled = [ContractStatus.ACTIVE, ContractStatus.COMPLETED, ContractStatus.PAYMENT_FAILED];

/**
 * Plays the deal on `server` from the first word to the settled milestone, recording what it
 * learns in `run`. Resolves true when the deal finished, false when the server died on the way
 * (each call then fails, and the run stops at the first failure).
 */
export async function playDeal(server: ChildServer, run: DealRun, ending: EscrowEnding): Promise<boolean> {
  let dead = false;
  void server.exited.then(() => (dead = true));
  try {
    const provider = (run.provider = await joinRoom(server.baseUrl, run.roomId, run.deal.provider));
    const client = (run.client = await joinRoom(server.baseUrl, run.roomId, run.deal.client));
    await run.deal.talk(provider, client);
    const drafted = await Promise.race([draftedContract(provider), server.exited.then(() => undefined)]);
    if (!drafted) return false;
    run.contract = drafted;
    await provider.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
    await client.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
    await finishEscrow(run, ending, () => dead);
    return true;
  } catch (err) {
    // A failed call is the kill point firing, or a real fault: the process says which by exiting.
    const exited = await Promise.race([server.exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5_000))]);
    if (!exited) throw err;
    return false;
  } finally {
    await run.provider?.panel.stop();
    await run.client?.panel.stop();
  }
}

/**
 * On a restarted server: the same two users join again (by their user tokens), sign what is left
 * to sign, wait for the payments, and settle the escrow milestone the way `ending` says.
 */
export async function resumeDeal(server: ChildServer, run: DealRun, ending: EscrowEnding): Promise<void> {
  if (!run.provider || !run.client || !run.contract) throw new Error("the deal never reached a contract");
  const provider = (run.provider = await joinRoom(server.baseUrl, run.roomId, run.deal.provider, run.provider.userToken));
  const client = (run.client = await joinRoom(server.baseUrl, run.roomId, run.deal.client, run.client.userToken));
  try {
    const contract = (await provider.contracts.getContract({ contractId: run.contract.id })).contract!;
    if (contract.status === ContractStatus.AWAITING_SIGNATURES) {
      for (const person of [provider, client]) {
        if (!contract.signatures.some((s) => s.userId === person.userId)) {
          await person.room.signContract({ contractId: contract.id, textSha256: sha256Hex(contract.text) });
        }
      }
    }
    await finishEscrow(run, ending, () => false);
  } finally {
    await provider.panel.stop();
    await client.panel.stop();
  }
}

/** The amount an `approve` ending proposes and approves: the middle of the milestone's range. */
export function approvedAmount(milestone: { minMinor: bigint; maxMinor: bigint }): bigint {
  return (milestone.minMinor + milestone.maxMinor) / 2n;
}

async function finishEscrow(run: DealRun, ending: EscrowEnding, dead: () => boolean): Promise<void> {
  const provider = run.provider!;
  const client = run.client!;
  const read = async () => (await provider.contracts.getContract({ contractId: run.contract!.id })).contract!;
  let contract = await read();
  for (let i = 0; !settled.includes(contract.status); i++) {
    if (dead() || i > 150) throw new Error(`contract ${contract.id} stuck in status ${ContractStatus[contract.status]}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    contract = await read();
  }
  const milestone = contract.milestones[0]!;
  const at = { contractId: contract.id, milestoneId: milestone.id };
  if (milestone.status === MilestoneStatus.COMPLETED || milestone.status === MilestoneStatus.RELEASED) return;
  switch (ending) {
    case "release":
      await provider.contracts.releaseEscrow(at);
      return;
    case "confirm":
      // Repeated confirmations are no-ops, so a resumed run simply confirms again.
      await provider.contracts.confirmMilestone(at);
      await client.contracts.confirmMilestone(at);
      return;
    case "approve": {
      const amountMinor = approvedAmount(milestone);
      if (milestone.status !== MilestoneStatus.AMOUNT_PROPOSED || milestone.proposedAmountMinor !== amountMinor) {
        await provider.contracts.proposeMilestoneAmount({ ...at, amountMinor });
      }
      await client.contracts.approveMilestoneAmount({ ...at, amountMinor });
    }
  }
}

/** What the store of a stopped server says about one contract's money, read straight from the file. */
export interface MoneyRecords {
  contractStatus: ContractStatus;
  payments: { status: PaymentStatus; amountMinor: bigint; lineItemId: string }[];
  holds: { status: EscrowHoldStatus; amountMinor: bigint; capturedMinor: bigint; lineItemId: string }[];
  milestones: { status: MilestoneStatus; capturedMinor: bigint; lineItemId: string }[];
  /** Ledger transactions by what they did (the memo's first word: pay, hold, capture, release). */
  ledger: Record<string, number>;
  /** Balance of every ledger account per currency ("account currency" → minor units). */
  balances: Record<string, bigint>;
  /** The sum of every leg (0 when the ledger balances). */
  ledgerTotal: bigint;
  openIntents: number;
}

/** Reads `contractId`'s records and the whole ledger from the database in `dataDir` (server stopped). */
export function readMoneyRecords(dataDir: string, contractId: string): MoneyRecords {
  const db = new Database(path.join(dataDir, "handshake.db"), { readonly: true });
  db.defaultSafeIntegers(true);
  try {
    const contract = db.prepare("SELECT status FROM contracts WHERE id = ?").get(contractId) as { status: bigint };
    const payments = (db.prepare("SELECT status, amount_minor, line_item_id FROM payments WHERE contract_id = ?").all(contractId) as {
      status: bigint; amount_minor: bigint; line_item_id: string;
    }[]).map((r) => ({ status: Number(r.status), amountMinor: r.amount_minor, lineItemId: r.line_item_id }));
    const holds = (db.prepare("SELECT status, amount_minor, captured_minor, line_item_id FROM escrow_holds WHERE contract_id = ?").all(contractId) as {
      status: bigint; amount_minor: bigint; captured_minor: bigint; line_item_id: string;
    }[]).map((r) => ({ status: Number(r.status), amountMinor: r.amount_minor, capturedMinor: r.captured_minor, lineItemId: r.line_item_id }));
    const milestones = (db.prepare("SELECT status, captured_minor, line_item_id FROM milestones WHERE contract_id = ?").all(contractId) as {
      status: bigint; captured_minor: bigint; line_item_id: string;
    }[]).map((r) => ({ status: Number(r.status), capturedMinor: r.captured_minor, lineItemId: r.line_item_id }));
    const ledger: Record<string, number> = {};
    for (const { memo } of db.prepare("SELECT memo FROM ledger_transactions").all() as { memo: string }[]) {
      const action = memo.split(" ")[0] ?? "";
      ledger[action] = (ledger[action] ?? 0) + 1;
    }
    const balances: Record<string, bigint> = {};
    const rows = db.prepare("SELECT account, currency, SUM(amount_minor) AS balance FROM ledger_entries GROUP BY account, currency").all() as {
      account: string; currency: string; balance: bigint;
    }[];
    for (const r of rows) balances[`${r.account} ${r.currency}`] = r.balance;
    const total = (db.prepare("SELECT COALESCE(SUM(amount_minor), 0) AS s FROM ledger_entries").get() as { s: bigint }).s;
    const openIntents = (db.prepare("SELECT COUNT(*) AS n FROM settlement_intents").get() as { n: bigint }).n;
    return { contractStatus: Number(contract.status), payments, holds, milestones, ledger, balances, ledgerTotal: total, openIntents: Number(openIntents) };
  } finally {
    db.close();
  }
}

/**
 * The invariants of a finished deal after any crash, as a list of what is wrong (empty when all
 * hold): the contract COMPLETED (not stuck); each immediate item paid once; each hold captured
 * (in full, or the approved amount) or released once, and its milestone agreeing; no intent left
 * open; the ledger balanced, with exactly one movement per record and balances that match them.
 */
export function moneyProblems(records: MoneyRecords, run: DealRun, ending: EscrowEnding): string[] {
  const contract = run.contract!;
  const currency = contract.terms!.currency;
  const items = contract.terms!.lineItems;
  const problems: string[] = [];
  const want = (ok: boolean, what: string) => void (ok || problems.push(what));
  const show = (x: unknown) => JSON.stringify(x, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
  want(records.contractStatus === ContractStatus.COMPLETED, `contract is ${ContractStatus[records.contractStatus]}, not COMPLETED`);
  let paid = 0n;
  const movements: Record<string, number> = {};
  const count = (action: string) => void (movements[action] = (movements[action] ?? 0) + 1);
  for (const item of items) {
    if (item.kind === LineItemKind.IMMEDIATE) {
      const payments = records.payments.filter((p) => p.lineItemId === item.id);
      want(payments.length === 1 && payments[0]!.status === PaymentStatus.SUCCEEDED && payments[0]!.amountMinor === item.amountMinor, `payments of ${item.id}: ${show(payments)}`);
      paid += item.amountMinor;
      count("pay");
      continue;
    }
    const milestone = contract.milestones.find((m) => m.lineItemId === item.id)!;
    const captured = ending === "release" ? 0n : ending === "approve" ? approvedAmount(milestone) : milestone.maxMinor;
    const holds = records.holds.filter((h) => h.lineItemId === item.id);
    const holdStatus = ending === "release" ? EscrowHoldStatus.RELEASED : EscrowHoldStatus.CAPTURED;
    want(holds.length === 1 && holds[0]!.status === holdStatus && holds[0]!.capturedMinor === captured, `holds of ${item.id}: ${show(holds)}`);
    const milestones = records.milestones.filter((m) => m.lineItemId === item.id);
    const milestoneStatus = ending === "release" ? MilestoneStatus.RELEASED : MilestoneStatus.COMPLETED;
    want(milestones.length === 1 && milestones[0]!.status === milestoneStatus && milestones[0]!.capturedMinor === captured, `milestones of ${item.id}: ${show(milestones)}`);
    paid += captured;
    count("hold");
    count(ending === "release" ? "release" : "capture");
  }
  want(records.openIntents === 0, `${records.openIntents} settlement intents left open`);
  const sorted = (r: Record<string, number>) => show(Object.entries(r).sort());
  want(sorted(records.ledger) === sorted(movements), `ledger movements ${sorted(records.ledger)}, want ${sorted(movements)}`);
  want(records.ledgerTotal === 0n, `ledger legs sum to ${records.ledgerTotal}`);
  const balance = (account: string) => records.balances[`${account} ${currency}`] ?? 0n;
  const provider = `user:${run.provider!.userId}`;
  const client = `user:${run.client!.userId}`;
  want(balance(`${provider}:received`) === paid, `provider received ${balance(`${provider}:received`)}, want ${paid}`);
  want(balance(`${client}:available`) === -paid, `client available ${balance(`${client}:available`)}, want ${-paid}`);
  want(balance(`${client}:held`) === 0n, `client still has ${balance(`${client}:held`)} held`);
  return problems;
}
