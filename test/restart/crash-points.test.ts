import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { ContractStatus, EscrowHoldStatus, MilestoneStatus } from "../../gen/handshake/v1/deal_pb.js";
import {
  joinRoom,
  moneyProblems,
  playDeal,
  readMoneyRecords,
  resumeDeal,
  startChildServer,
  type ChildServer,
  type DealRun,
  roofDeal,
  type EscrowEnding,
} from "../support/restart.js";
import { sha256Hex } from "../support/hash.js";
import { startFakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { draftedContract } from "../support/restart.js";
import { bindStripeIds } from "../support/stripe-ids.js";
import { attemptKeyPattern } from "../support/payment-fixtures.js";

// Each test kills the server at one exact write of a deal (HANDSHAKE_KILL_WRITES names the store
// method, HANDSHAKE_KILL_AT_WRITE its count; see src/store/kill-point.ts), restarts it on the same
// database, and checks that nothing is left half-done.

const BASE_ENV = { NEGOTIATION_ROUND_TIMEOUT_MS: "20000", NEGOTIATION_TOTAL_TIMEOUT_MS: "60000" };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "handshake-crash-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function server(dir: string, env: Record<string, string> = {}): Promise<ChildServer> {
  const child = await startChildServer({ ...BASE_ENV, DATA_DIR: dir, ...env });
  cleanups.push(() => child.stop("SIGKILL"));
  return child;
}

/** Plays the deal on a server that kills itself at `method`'s `n`th write; checks that it did. */
async function killedAt(dir: string, run: DealRun, ending: EscrowEnding, method: string, n: number): Promise<void> {
  const first = await server(dir, { HANDSHAKE_KILL_WRITES: method, HANDSHAKE_KILL_AT_WRITE: String(n) });
  expect(await playDeal(first, run, ending)).toBe(false);
  await first.exited;
  expect(first.process.signalCode).toBe("SIGKILL");
  expect(first.stderr()).toContain(`kill-point ${n} ${method}`);
}

/** Restarts, finishes the deal as the people would, stops cleanly and checks every invariant. */
async function finishAndCheck(dir: string, run: DealRun, ending: EscrowEnding): Promise<void> {
  const second = await server(dir);
  await resumeDeal(second, run, ending);
  await second.stop("SIGTERM");
  const problems = moneyProblems(readMoneyRecords(dir, run.contract!.id), run, ending);
  expect(problems).toEqual([]);
}

describe("a SIGKILL at one exact write of a deal, then a restart", () => {
  it("right after the last signature: the contract is already EXECUTING and is carried out at start by itself", async () => {
    const dir = await dataDir();
    const run: DealRun = { roomId: "crash-sign", deal: roofDeal };
    await killedAt(dir, run, "approve", "addSignature", 2);

    const second = await server(dir);
    const { provider } = run;
    // Nobody acts: start-up recovery executes the signed contract.
    const back = await joinRoom(second.baseUrl, run.roomId, run.deal.provider, provider!.userToken);
    cleanups.push(() => back.panel.stop());
    await expect.poll(async () => (await back.contracts.getContract({ contractId: run.contract!.id })).contract!.status, { timeout: 15_000 }).toBe(ContractStatus.ACTIVE);
    const contract = (await back.contracts.getContract({ contractId: run.contract!.id })).contract!;
    expect(contract.signatures).toHaveLength(2);
    await expect(back.room.signContract({ contractId: contract.id, textSha256: sha256Hex(contract.text) })).rejects.toThrow(/no longer awaiting signatures/);
    expect(second.logs.some((l) => l.msg === "resuming contract execution" && l.contractId === contract.id)).toBe(true);
    await back.panel.stop();
    await second.stop("SIGTERM");
    await finishAndCheck(dir, run, "approve");
  }, 90_000);

  it("a fully signed contract left AWAITING_SIGNATURES (written by the old two-step signing) is executed at start", async () => {
    const dir = await dataDir();
    const run: DealRun = { roomId: "crash-sign-legacy", deal: roofDeal };
    await killedAt(dir, run, "approve", "addSignature", 2);
    // What the old code left behind when it died between the signature and the status change.
    const db = new Database(path.join(dir, "handshake.db"));
    db.prepare("UPDATE contracts SET status = ? WHERE id = ?").run(ContractStatus.AWAITING_SIGNATURES, run.contract!.id);
    db.close();
    await finishAndCheck(dir, run, "approve");
  }, 90_000);

  it("during ReleaseEscrow, after the ledger released the hold: recovery records it, and no capture can follow", async () => {
    const dir = await dataDir();
    const run: DealRun = { roomId: "crash-release", deal: roofDeal };
    // Ledger postings: the call-out, the hold, then the release.
    await killedAt(dir, run, "release", "postLedgerTransaction", 3);
    const second = await server(dir);
    const client = await joinRoom(second.baseUrl, run.roomId, run.deal.client, run.client!.userToken);
    cleanups.push(() => client.panel.stop());
    await expect
      .poll(async () => (await client.contracts.getContract({ contractId: run.contract!.id })).contract!.holds[0]!.status, { timeout: 15_000 })
      .toBe(EscrowHoldStatus.RELEASED);
    const contract = (await client.contracts.getContract({ contractId: run.contract!.id })).contract!;
    expect(contract.milestones[0]!.status).toBe(MilestoneStatus.RELEASED);
    expect(contract.status).toBe(ContractStatus.COMPLETED);
    // The approval that used to capture the released hold a second time is refused.
    await expect(
      client.contracts.approveMilestoneAmount({ contractId: contract.id, milestoneId: contract.milestones[0]!.id, amountMinor: 20_000n }),
    ).rejects.toThrow();
    await client.panel.stop();
    await second.stop("SIGTERM");
    await finishAndCheck(dir, run, "release");
  }, 90_000);

  it("during ReleaseEscrow, after its intent was recorded and before the rail call: recovery releases", async () => {
    const dir = await dataDir();
    const run: DealRun = { roomId: "crash-release-intent", deal: roofDeal };
    await killedAt(dir, run, "release", "recordSettlementIntent", 1);
    await finishAndCheck(dir, run, "release");
  }, 90_000);

  it("after the capture of an approved amount, before its records: hold and milestone come back settled together", async () => {
    const dir = await dataDir();
    const run: DealRun = { roomId: "crash-capture", deal: roofDeal };
    await killedAt(dir, run, "approve", "postLedgerTransaction", 3);
    await finishAndCheck(dir, run, "approve");
  }, 90_000);

  it("on Stripe, during ReleaseEscrow after Stripe cancelled but before its answer: the cancel is sent again at start, once more, and the hold is released", async () => {
    const isCancel = (r: { method: string; path: string }) => r.method === "POST" && r.path.endsWith("/cancel");
    const fake = await startFakeStripe();
    cleanups.push(() => fake.close());
    const dir = await dataDir();
    const env = { PAYMENT_RAIL: "stripe", STRIPE_SECRET_KEY: "sk_test_x", STRIPE_API_BASE: fake.url };
    const deal = roofDeal;
    const first = await server(dir, env);
    const provider = await joinRoom(first.baseUrl, "crash-stripe-release", deal.provider);
    const client = await joinRoom(first.baseUrl, "crash-stripe-release", deal.client);
    // Bound by the server (requests may not name Stripe ids), before the contract is carried out.
    bindStripeIds(dir, provider.userId, { stripeAccountId: "acct_test1" });
    bindStripeIds(dir, client.userId, { stripeCustomerId: "cus_test1", stripePaymentMethodId: "pm_card_visa" });
    await deal.talk(provider, client);
    const drafted = await draftedContract(provider);
    await provider.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
    await client.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
    await expect.poll(async () => (await provider.contracts.getContract({ contractId: drafted.id })).contract!.status, { timeout: 15_000 }).toBe(ContractStatus.ACTIVE);
    const milestone = drafted.milestones[0]!;

    // Stripe cancels the authorisation, but its answer never comes back: the process dies mid-call.
    fake.hangNext(isCancel, { afterExecuting: true });
    const releasing = provider.contracts.releaseEscrow({ contractId: drafted.id, milestoneId: milestone.id }).catch((err: unknown) => err);
    await expect.poll(() => fake.requests.some(isCancel), { timeout: 10_000 }).toBe(true);
    await first.stop("SIGKILL");
    expect(await releasing).toBeInstanceOf(Error);
    await provider.panel.stop();
    await client.panel.stop();

    // Nobody acts again: the new process finishes the release from its recorded intent.
    const second = await server(dir, env);
    const clientBack = await joinRoom(second.baseUrl, "crash-stripe-release", deal.client, client.userToken);
    cleanups.push(() => clientBack.panel.stop());
    await expect
      .poll(async () => (await clientBack.contracts.getContract({ contractId: drafted.id })).contract!.status, { timeout: 15_000 })
      .toBe(ContractStatus.COMPLETED);
    const final = (await clientBack.contracts.getContract({ contractId: drafted.id })).contract!;
    expect(final.holds).toEqual([expect.objectContaining({ status: EscrowHoldStatus.RELEASED, capturedMinor: 0n })]);
    expect(final.milestones).toEqual([expect.objectContaining({ status: MilestoneStatus.RELEASED })]);
    expect(second.logs.some((l) => l.msg === "resuming an interrupted milestone release" && l.contractId === drafted.id)).toBe(true);
    // Two cancels under one key, the second answered from Stripe's idempotency cache; nothing captured.
    const cancels = fake.requests.filter(isCancel);
    const releaseKey = cancels[0]!.idempotencyKey;
    expect(releaseKey).toMatch(attemptKeyPattern(drafted.id, milestone.lineItemId, "release", 25_000n)); // the whole hold: the top of the £150–£250 range
    expect(cancels.map((r) => [r.idempotencyKey, r.replayed])).toEqual([[releaseKey, false], [releaseKey, true]]);
    expect(fake.requests.some((r) => r.path.endsWith("/capture"))).toBe(false);
    await expect(
      clientBack.contracts.approveMilestoneAmount({ contractId: drafted.id, milestoneId: milestone.id, amountMinor: 20_000n }),
    ).rejects.toThrow();
    await clientBack.panel.stop();
    await second.stop("SIGTERM");
    expect(second.process.exitCode).toBe(0);
  }, 90_000);
});
