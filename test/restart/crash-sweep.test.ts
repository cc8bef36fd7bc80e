import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  moneyProblems,
  playRoofDeal,
  readMoneyRecords,
  resumeRoofDeal,
  startChildServer,
  type ChildServer,
  type DealRun,
  type EscrowEnding,
} from "../support/restart.js";

// The SIGKILL sweep over every money-path write of a deal (src/store/kill-point.ts): the roof deal
// (a £60 call-out paid now, a £150–£250 repair held in escrow) is played on a server that kills
// itself right after its Nth write, then finished on a restarted server; every run must end with
// each item paid once, the hold captured or released once, records agreeing with the ledger, and
// the contract COMPLETED. Writes of the deal, in order (ledger rail):
//   1–2 the two signatures (the second with EXECUTING), 3–5 the call-out's intent, ledger posting
//   and result, 6–8 the hold's, 9 ACTIVE; approve: 10 the proposal, 11 the approval with the
//   capture intent, 12 the capture posting, 13 the outcome; release: 10 the release intent,
//   11 the release posting, 12 the outcome.
// `npm test` runs a sample; `npm run test:crash` (HANDSHAKE_CRASH_SWEEP=all) runs every point.

const APPROVE_WRITES = 13;
const RELEASE_WRITES = 12;
/** Writes 1–9 are the same whichever way the escrow ends; the release sweep covers the rest. */
const SHARED_WRITES = 9;

/** The store method of each write, as the kill point names it. */
const SHARED_METHODS = [
  "addSignature", "addSignature",
  "recordPaymentIntent", "postLedgerTransaction", "recordPaymentResult",
  "recordHoldIntent", "postLedgerTransaction", "recordHoldResult",
  "setContractStatus",
];
const METHODS: Record<EscrowEnding, string[]> = {
  approve: [...SHARED_METHODS, "saveMilestone", "recordSettlementIntent", "postLedgerTransaction", "recordSettlementOutcome"],
  release: [...SHARED_METHODS, "recordSettlementIntent", "postLedgerTransaction", "recordSettlementOutcome"],
};

const ALL = process.env.HANDSHAKE_CRASH_SWEEP === "all";
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const points: { n: number; ending: EscrowEnding }[] = ALL
  ? [...range(1, APPROVE_WRITES).map((n) => ({ n, ending: "approve" as const })), ...range(SHARED_WRITES + 1, RELEASE_WRITES).map((n) => ({ n, ending: "release" as const }))]
  : [
      { n: 4, ending: "approve" },
      { n: 8, ending: "approve" },
      { n: 12, ending: "approve" },
      { n: 11, ending: "release" },
    ];

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(dir: string, env: Record<string, string> = {}): Promise<ChildServer> {
  const child = await startChildServer({ NEGOTIATION_ROUND_TIMEOUT_MS: "20000", NEGOTIATION_TOTAL_TIMEOUT_MS: "60000", DATA_DIR: dir, ...env });
  cleanups.push(() => child.stop("SIGKILL"));
  return child;
}

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "handshake-sweep-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe(`SIGKILL sweep over a deal's writes (${ALL ? "every point" : "a sample"})`, () => {
  it.each(points)("killed after write $n ($ending): finished after a restart with nothing half-done", async ({ n, ending }) => {
    const dir = await freshDir();
    const run: DealRun = { roomId: `sweep-${ending}-${n}` };
    const first = await server(dir, { HANDSHAKE_KILL_AT_WRITE: String(n) });
    expect(await playRoofDeal(first, run, ending)).toBe(false);
    await first.exited;
    expect(first.process.signalCode).toBe("SIGKILL");
    expect(first.stderr()).toContain(`kill-point ${n} ${METHODS[ending][n - 1]}\n`);

    const second = await server(dir);
    await resumeRoofDeal(second, run, ending);
    await second.stop("SIGTERM");
    expect(moneyProblems(readMoneyRecords(dir, run.contractId!), ending, { provider: run.provider!.userId, client: run.client!.userId })).toEqual([]);
  }, 90_000);

  it.runIf(ALL).each([
    { n: APPROVE_WRITES + 1, ending: "approve" as const },
    { n: RELEASE_WRITES + 1, ending: "release" as const },
  ])("covers every write: with the kill at $n ($ending) the deal finishes untouched", async ({ n, ending }) => {
    const dir = await freshDir();
    const run: DealRun = { roomId: `sweep-end-${ending}` };
    const only = await server(dir, { HANDSHAKE_KILL_AT_WRITE: String(n) });
    expect(await playRoofDeal(only, run, ending)).toBe(true);
    await only.stop("SIGTERM");
    expect(only.process.exitCode).toBe(0);
    expect(moneyProblems(readMoneyRecords(dir, run.contractId!), ending, { provider: run.provider!.userId, client: run.client!.userId })).toEqual([]);
  }, 90_000);
});
