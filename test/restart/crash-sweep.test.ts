import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  moneyProblems,
  playDeal,
  readMoneyRecords,
  resumeDeal,
  startChildServer,
  type ChildServer,
  type DealRun,
  roofDeal,
  webDesignDeal,
  type EscrowEnding,
  type SpokenDeal,
} from "../support/restart.js";

// The SIGKILL sweep over every money-path write of a deal (src/store/kill-point.ts): a deal is
// played on a server that kills itself right after its Nth write, then finished on a restarted
// server; every run must end with each item paid once, each hold captured or released once,
// records agreeing with the ledger, and the contract COMPLETED (see `moneyProblems`).
//   approve, release: the roof deal (a £60 call-out paid now, a £150–£250 repair in escrow):
//     1–2 the two signatures (the second with EXECUTING), 3–5 the call-out's intent, ledger posting
//     and result, 6–8 the hold's, 9 ACTIVE; then approve: 10 the proposal, 11 the approval with
//     the capture intent, 12 the capture posting, 13 the outcome; or release: 10 the release
//     intent, 11 the release posting, 12 the outcome.
//   confirm: the web-design deal (one fixed price, all in escrow): 1–2 signatures, 3–5 the hold,
//     6 ACTIVE, 7 the provider's confirmation, 8 the client's with the capture intent, 9 the
//     capture posting, 10 the outcome.
// `npm test` runs a sample; `npm run test:crash` (HANDSHAKE_CRASH_SWEEP=all) runs every point, and
// checks that one write past the last, the deal finishes untouched (so no write was missed).

const SIGNED = ["addSignature", "addSignature"];
const HELD = ["recordHoldIntent", "postLedgerTransaction", "recordHoldResult"];
const PAID = ["recordPaymentIntent", "postLedgerTransaction", "recordPaymentResult"];
const SETTLED = ["recordSettlementIntent", "postLedgerTransaction", "recordSettlementOutcome"];

/** Each ending's deal and the store method of each of its writes, as the kill point names them. */
const SWEEPS: Record<EscrowEnding, { deal: SpokenDeal; writes: string[]; from: number }> = {
  approve: { deal: roofDeal, writes: [...SIGNED, ...PAID, ...HELD, "setContractStatus", "saveMilestone", ...SETTLED], from: 1 },
  // The first nine writes are the approve sweep's; only what differs is swept again.
  release: { deal: roofDeal, writes: [...SIGNED, ...PAID, ...HELD, "setContractStatus", ...SETTLED], from: 10 },
  // Signatures, hold and ACTIVE are swept above; the confirmations are new.
  confirm: { deal: webDesignDeal, writes: [...SIGNED, ...HELD, "setContractStatus", "saveMilestone", ...SETTLED], from: 7 },
};

const ALL = process.env.HANDSHAKE_CRASH_SWEEP === "all";
const endings: EscrowEnding[] = ["approve", "release", "confirm"];
const points: { n: number; ending: EscrowEnding }[] = ALL
  ? endings.flatMap((ending) => SWEEPS[ending].writes.map((_, i) => ({ n: i + 1, ending })).filter(({ n }) => n >= SWEEPS[ending].from))
  : [
      { n: 4, ending: "approve" },
      { n: 8, ending: "approve" },
      { n: 12, ending: "approve" },
      { n: 11, ending: "release" },
      { n: 8, ending: "confirm" },
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
    const run: DealRun = { roomId: `sweep-${ending}-${n}`, deal: SWEEPS[ending].deal };
    const first = await server(dir, { HANDSHAKE_KILL_AT_WRITE: String(n) });
    expect(await playDeal(first, run, ending)).toBe(false);
    await first.exited;
    expect(first.process.signalCode).toBe("SIGKILL");
    expect(first.stderr()).toContain(`kill-point ${n} ${SWEEPS[ending].writes[n - 1]}\n`);

    const second = await server(dir);
    await resumeDeal(second, run, ending);
    await second.stop("SIGTERM");
    expect(moneyProblems(readMoneyRecords(dir, run.contract!.id), run, ending)).toEqual([]);
  }, 90_000);

  it.runIf(ALL).each(endings)("covers every write: with the kill one write past the last (%s), the deal finishes untouched", async (ending) => {
    const dir = await freshDir();
    const run: DealRun = { roomId: `sweep-end-${ending}`, deal: SWEEPS[ending].deal };
    const only = await server(dir, { HANDSHAKE_KILL_AT_WRITE: String(SWEEPS[ending].writes.length + 1) });
    expect(await playDeal(only, run, ending)).toBe(true);
    await only.stop("SIGTERM");
    expect(only.process.exitCode).toBe(0);
    expect(moneyProblems(readMoneyRecords(dir, run.contract!.id), run, ending)).toEqual([]);
  }, 90_000);
});
