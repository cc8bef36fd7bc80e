import { spawn, type ChildProcess } from "node:child_process";
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AgentProfileSchema } from "../../gen/handshake/v1/profile_pb.js";
import { ContractStatus, EscrowHoldStatus, MilestoneStatus, PaymentStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
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

/** The roofer of test/fixtures/conversations/escrow-range-roofer-gbp.json. */
export const roofer: MessageInitShape<typeof AgentProfileSchema> = {
  displayName: "Rita",
  role: PartyRole.PROVIDER,
  trade: "roofer",
  currency: "GBP",
  style: NegotiationStyle.BALANCED,
};

/** The client of that conversation, who wants the repair in escrow. */
export const omar: MessageInitShape<typeof AgentProfileSchema> = {
  displayName: "Omar",
  role: PartyRole.CLIENT,
  currency: "GBP",
  maxAutoApproveMinor: 40_000n,
  escrowPreference: EscrowPreference.ABOVE_THRESHOLD,
  escrowThresholdMinor: 10_000n,
};

/** £60 call-out now, a £150–£250 repair in escrow. */
export async function talkRoofDeal(provider: Person, client: Person): Promise<void> {
  await client.say("Water is coming through the ceiling when it rains. Can you repair the roof?");
  await provider.say("The call-out is sixty pounds.");
  await provider.say("The repair itself could be anything from 150 to 250 pounds, depending on what I find up there.");
  await client.say("OK, that sounds good to me. Handshake.");
}

/** How the escrow milestone of the roof deal ends: £200 proposed and approved, or released to the client. */
export type EscrowEnding = "approve" | "release";

/** The roof deal's amounts: what the provider proposes and the client approves. */
export const ROOF_APPROVED_MINOR = 20_000n;

/** What a deal run learnt before its server died: the people (their tokens) and the contract id. */
export interface DealRun {
  roomId: string;
  provider?: Person;
  client?: Person;
  contractId?: string;
}

const settled = [ContractStatus.ACTIVE, ContractStatus.COMPLETED, ContractStatus.PAYMENT_FAILED];

/**
 * Plays the roof deal on `server` from the first word to the settled milestone, recording what it
 * learns in `run`. Resolves true when the deal finished, false when the server died on the way
 * (each call then fails, and the run stops at the first failure).
 */
export async function playRoofDeal(server: ChildServer, run: DealRun, ending: EscrowEnding): Promise<boolean> {
  let dead = false;
  void server.exited.then(() => (dead = true));
  try {
    const provider = (run.provider = await joinRoom(server.baseUrl, run.roomId, roofer));
    const client = (run.client = await joinRoom(server.baseUrl, run.roomId, omar));
    await talkRoofDeal(provider, client);
    const drafted = await Promise.race([draftedContract(provider), server.exited.then(() => undefined)]);
    if (!drafted) return false;
    run.contractId = drafted.id;
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
export async function resumeRoofDeal(server: ChildServer, run: DealRun, ending: EscrowEnding): Promise<void> {
  if (!run.provider || !run.client || !run.contractId) throw new Error("the deal never reached a contract");
  const provider = (run.provider = await joinRoom(server.baseUrl, run.roomId, roofer, run.provider.userToken));
  const client = (run.client = await joinRoom(server.baseUrl, run.roomId, omar, run.client.userToken));
  try {
    const contract = (await provider.contracts.getContract({ contractId: run.contractId })).contract!;
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

async function finishEscrow(run: DealRun, ending: EscrowEnding, dead: () => boolean): Promise<void> {
  const provider = run.provider!;
  const client = run.client!;
  const read = async () => (await provider.contracts.getContract({ contractId: run.contractId! })).contract!;
  let contract = await read();
  for (let i = 0; !settled.includes(contract.status); i++) {
    if (dead() || i > 150) throw new Error(`contract ${contract.id} stuck in status ${ContractStatus[contract.status]}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    contract = await read();
  }
  const milestone = contract.milestones[0]!;
  const at = { contractId: contract.id, milestoneId: milestone.id };
  if (milestone.status === MilestoneStatus.COMPLETED || milestone.status === MilestoneStatus.RELEASED) return;
  if (ending === "release") {
    await provider.contracts.releaseEscrow(at);
    return;
  }
  if (milestone.status !== MilestoneStatus.AMOUNT_PROPOSED || milestone.proposedAmountMinor !== ROOF_APPROVED_MINOR) {
    await provider.contracts.proposeMilestoneAmount({ ...at, amountMinor: ROOF_APPROVED_MINOR });
  }
  await client.contracts.approveMilestoneAmount({ ...at, amountMinor: ROOF_APPROVED_MINOR });
}

/** What the store of a stopped server says about one contract's money, read straight from the file. */
export interface MoneyRecords {
  contractStatus: ContractStatus;
  payments: { status: PaymentStatus; amountMinor: bigint; lineItemId: string }[];
  holds: { status: EscrowHoldStatus; amountMinor: bigint; capturedMinor: bigint; railReference: string }[];
  milestones: { status: MilestoneStatus; capturedMinor: bigint }[];
  /** Ledger transactions by what they did (the memo's first word: pay, hold, capture, release). */
  ledger: Record<string, number>;
  /** Balance of every ledger account, and the sum of every leg (0 when the ledger balances). */
  balances: Record<string, bigint>;
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
    const holds = (db.prepare("SELECT status, amount_minor, captured_minor, rail_reference FROM escrow_holds WHERE contract_id = ?").all(contractId) as {
      status: bigint; amount_minor: bigint; captured_minor: bigint; rail_reference: string;
    }[]).map((r) => ({ status: Number(r.status), amountMinor: r.amount_minor, capturedMinor: r.captured_minor, railReference: r.rail_reference }));
    const milestones = (db.prepare("SELECT status, captured_minor FROM milestones WHERE contract_id = ?").all(contractId) as {
      status: bigint; captured_minor: bigint;
    }[]).map((r) => ({ status: Number(r.status), capturedMinor: r.captured_minor }));
    const ledger: Record<string, number> = {};
    for (const { memo } of db.prepare("SELECT memo FROM ledger_transactions").all() as { memo: string }[]) {
      const action = memo.split(" ")[0] ?? "";
      ledger[action] = (ledger[action] ?? 0) + 1;
    }
    const balances: Record<string, bigint> = {};
    for (const r of db.prepare("SELECT account, SUM(amount_minor) AS balance FROM ledger_entries GROUP BY account").all() as { account: string; balance: bigint }[]) {
      balances[r.account] = r.balance;
    }
    const total = (db.prepare("SELECT COALESCE(SUM(amount_minor), 0) AS s FROM ledger_entries").get() as { s: bigint }).s;
    const openIntents = (db.prepare("SELECT COUNT(*) AS n FROM settlement_intents").get() as { n: bigint }).n;
    return {
      contractStatus: Number(contract.status),
      payments,
      holds,
      milestones,
      ledger,
      balances,
      ledgerTotal: total,
      openIntents: Number(openIntents),
    };
  } finally {
    db.close();
  }
}

/**
 * The invariants of a finished roof deal after any crash: the contract COMPLETED (not stuck), the
 * call-out paid once, the hold captured (£200) or released once and its milestone agreeing, no
 * intent left open, and the ledger balanced with exactly the movements the records say.
 */
export function moneyProblems(records: MoneyRecords, ending: EscrowEnding, users: { provider: string; client: string }): string[] {
  const problems: string[] = [];
  const want = (ok: boolean, what: string) => void (ok || problems.push(what));
  want(records.contractStatus === ContractStatus.COMPLETED, `contract is ${ContractStatus[records.contractStatus]}, not COMPLETED`);
  want(records.payments.length === 1 && records.payments[0]?.status === PaymentStatus.SUCCEEDED && records.payments[0].amountMinor === 6_000n, `payments: ${JSON.stringify(records.payments, big)}`);
  const hold = records.holds[0];
  const captured = ending === "approve" ? ROOF_APPROVED_MINOR : 0n;
  want(
    records.holds.length === 1 && hold?.status === (ending === "approve" ? EscrowHoldStatus.CAPTURED : EscrowHoldStatus.RELEASED) && hold.capturedMinor === captured,
    `holds: ${JSON.stringify(records.holds, big)}`,
  );
  const milestone = records.milestones[0];
  want(
    records.milestones.length === 1 && milestone?.status === (ending === "approve" ? MilestoneStatus.COMPLETED : MilestoneStatus.RELEASED) && milestone.capturedMinor === captured,
    `milestones: ${JSON.stringify(records.milestones, big)}`,
  );
  want(records.openIntents === 0, `${records.openIntents} settlement intents left open`);
  const expectedLedger = ending === "approve" ? { pay: 1, hold: 1, capture: 1 } : { pay: 1, hold: 1, release: 1 };
  want(JSON.stringify(records.ledger) === JSON.stringify(expectedLedger), `ledger movements ${JSON.stringify(records.ledger)}, want ${JSON.stringify(expectedLedger)}`);
  want(records.ledgerTotal === 0n, `ledger legs sum to ${records.ledgerTotal}`);
  const paid = 6_000n + captured;
  const balance = (account: string) => records.balances[account] ?? 0n;
  want(balance(`user:${users.provider}:received`) === paid, `provider received ${balance(`user:${users.provider}:received`)}, want ${paid}`);
  want(balance(`user:${users.client}:available`) === -paid, `client available ${balance(`user:${users.client}:available`)}, want ${-paid}`);
  want(balance(`user:${users.client}:held`) === 0n, `client still has ${balance(`user:${users.client}:held`)} held`);
  return problems;
}

function big(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}
