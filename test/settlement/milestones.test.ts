import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContractStatus, EscrowHoldStatus, LineItemKind, MilestoneStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { ExecutionStepStatus } from "../../gen/handshake/v1/events_pb.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../../src/core/errors.js";
import { createContractExecutor, type ExecutionEvent } from "../../src/settlement/execution.js";
import { createMilestoneService, type MilestoneService } from "../../src/settlement/milestones.js";
import { createLedgerRail } from "../../src/payments/ledger-rail.js";
import { PaymentRailError } from "../../src/payments/rail.js";
import type { Store } from "../../src/store/store.js";
import { CLIENT, PROVIDER, attemptKeyPattern, eventLog, item, ledgerTotal, openStore, signedContract } from "../support/payment-fixtures.js";
import { createScriptedRail, type ScriptedRail } from "../../src/payments/testing/scripted-rail.js";

let store: Store;
let rail: ScriptedRail;
let log: ReturnType<typeof eventLog>;
let milestones: MilestoneService;
let contract: Contract;
/** Milestone ids: the fixed escrow item and the ranged conditional item. */
let fixedId: string;
let rangedId: string;

beforeEach(async () => {
  store = await openStore();
  rail = createScriptedRail(createLedgerRail(store));
  log = eventLog();
  const executor = createContractExecutor({ store, rail, onEvent: () => {} });
  const signed = await signedContract(store, [
    item({ id: "callout", description: "Call-out", kind: LineItemKind.IMMEDIATE, amountMinor: 1_000n }),
    item({ id: "boiler", description: "New boiler", kind: LineItemKind.ESCROW, amountMinor: 10_000n }),
    item({ id: "parts", description: "Parts", kind: LineItemKind.CONDITIONAL, amountMinor: 5_000n, range: { minMinor: 2_000n, maxMinor: 5_000n } }),
  ]);
  contract = await executor.execute(signed);
  executor.close();
  expect(contract.status).toBe(ContractStatus.ACTIVE);
  fixedId = contract.milestones.find((m) => m.lineItemId === "boiler")!.id;
  rangedId = contract.milestones.find((m) => m.lineItemId === "parts")!.id;
  milestones = createMilestoneService({ store, rail, onEvent: log.listener });
});

afterEach(async () => {
  await store.close();
});

const balance = (account: string) => store.getLedgerBalance(account, "GBP");
const captures = () => rail.calls.filter((c) => c.method === "capture");
const stored = async () => (await store.getContract(contract.id))!;
const ofKind = <K extends ExecutionEvent["kind"]>(kind: K) =>
  log.events.filter((e): e is Extract<ExecutionEvent, { kind: K }> => e.kind === kind);

describe("milestones", () => {
  it("captures a fixed milestone in full once provider and client have both confirmed", async () => {
    const afterProvider = await milestones.confirm(PROVIDER, contract.id, fixedId);
    expect(afterProvider).toMatchObject({ providerConfirmed: true, clientConfirmed: false, status: MilestoneStatus.PENDING });
    expect(captures()).toHaveLength(0);

    const done = await milestones.confirm(CLIENT, contract.id, fixedId);
    expect(done).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 10_000n, providerConfirmed: true, clientConfirmed: true });
    expect(captures()).toHaveLength(1);
    expect(captures()[0]!.request).toMatchObject({ amountMinor: 10_000n, idempotencyKey: expect.stringMatching(attemptKeyPattern(contract.id, "boiler", "capture", 10_000n)) });
    const after = await stored();
    expect(after.holds.find((h) => h.lineItemId === "boiler")).toMatchObject({ status: EscrowHoldStatus.CAPTURED, capturedMinor: 10_000n });
    expect(after.milestones.find((m) => m.id === fixedId)!.status).toBe(MilestoneStatus.COMPLETED);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(11_000n);
    expect(await balance(`user:${CLIENT}:held`)).toBe(5_000n);
    expect(await ledgerTotal(store, "GBP")).toBe(0n);
    // The ranged milestone is still open: the contract stays ACTIVE.
    expect(after.status).toBe(ContractStatus.ACTIVE);
    expect(ofKind("step").map((e) => [e.step.step, e.step.status])).toEqual([
      ["capture", ExecutionStepStatus.STARTED],
      ["capture", ExecutionStepStatus.SUCCEEDED],
    ]);
    expect(ofKind("milestone").map((e) => e.milestone.status)).toEqual([MilestoneStatus.PENDING, MilestoneStatus.PENDING, MilestoneStatus.COMPLETED]);
  });

  it("never captures twice: repeated and simultaneous confirmations are no-ops", async () => {
    await Promise.all([milestones.confirm(PROVIDER, contract.id, fixedId), milestones.confirm(CLIENT, contract.id, fixedId)]);
    expect(captures()).toHaveLength(1);
    const again = await milestones.confirm(CLIENT, contract.id, fixedId);
    const andAgain = await milestones.confirm(PROVIDER, contract.id, fixedId);
    expect(again.status).toBe(MilestoneStatus.COMPLETED);
    expect(andAgain.status).toBe(MilestoneStatus.COMPLETED);
    expect(captures()).toHaveLength(1);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(11_000n);

    // A repeated confirm before the other party's is a no-op too.
    const eventsBefore = log.events.length;
    await milestones.confirm(PROVIDER, contract.id, rangedId);
    await milestones.confirm(PROVIDER, contract.id, rangedId);
    expect(log.events.length).toBe(eventsBefore + 1);
  });

  it("settles a ranged milestone by proposal and approval: partial capture, rest released, contract COMPLETED", async () => {
    await expect(milestones.confirm(CLIENT, contract.id, rangedId)).rejects.toBeInstanceOf(FailedPreconditionError);
    await expect(milestones.approveAmount(CLIENT, contract.id, rangedId, 3_500n)).rejects.toBeInstanceOf(FailedPreconditionError);

    const proposed = await milestones.proposeAmount(PROVIDER, contract.id, rangedId, 3_500n);
    expect(proposed).toMatchObject({ status: MilestoneStatus.AMOUNT_PROPOSED, proposedAmountMinor: 3_500n, providerConfirmed: true });
    await expect(milestones.approveAmount(CLIENT, contract.id, rangedId, 3_000n)).rejects.toBeInstanceOf(FailedPreconditionError);
    expect(captures()).toHaveLength(0);

    const approved = await milestones.approveAmount(CLIENT, contract.id, rangedId, 3_500n);
    expect(approved).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 3_500n, clientConfirmed: true });
    expect(captures()[0]!.request!.amountMinor).toBe(3_500n);
    expect((await stored()).holds.find((h) => h.lineItemId === "parts")).toMatchObject({ status: EscrowHoldStatus.CAPTURED, capturedMinor: 3_500n });
    // 5 000 held, 3 500 paid, 1 500 back to the client.
    expect(await balance(`user:${CLIENT}:available`)).toBe(-(1_000n + 10_000n + 3_500n));
    expect(await balance(`user:${CLIENT}:held`)).toBe(10_000n);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(4_500n);
    expect(ofKind("step").at(-1)!.step.detail).toBe("£35.00 paid to Sam; £15.00 returned to Alex");
    // Approving again is a no-op.
    await milestones.approveAmount(CLIENT, contract.id, rangedId, 3_500n);
    expect(captures()).toHaveLength(1);

    await milestones.confirm(PROVIDER, contract.id, fixedId);
    await milestones.confirm(CLIENT, contract.id, fixedId);
    const final = await stored();
    expect(final.status).toBe(ContractStatus.COMPLETED);
    expect(ofKind("contract").at(-1)!.contract.status).toBe(ContractStatus.COMPLETED);
    expect(ofKind("step").at(-1)!.step).toMatchObject({ step: "completed", status: ExecutionStepStatus.SUCCEEDED });
    expect(await ledgerTotal(store, "GBP")).toBe(0n);
  });

  it("refuses out-of-range proposals and proposals by the client", async () => {
    await expect(milestones.proposeAmount(PROVIDER, contract.id, rangedId, 1_999n)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(milestones.proposeAmount(PROVIDER, contract.id, rangedId, 5_001n)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(milestones.proposeAmount(CLIENT, contract.id, rangedId, 3_000n)).rejects.toBeInstanceOf(PermissionDeniedError);
    await expect(milestones.proposeAmount(PROVIDER, contract.id, fixedId, 10_000n)).rejects.toBeInstanceOf(FailedPreconditionError);
    await milestones.proposeAmount(PROVIDER, contract.id, rangedId, 2_000n);
    await expect(milestones.approveAmount(PROVIDER, contract.id, rangedId, 2_000n)).rejects.toBeInstanceOf(PermissionDeniedError);
    expect((await stored()).milestones.find((m) => m.id === rangedId)!.proposedAmountMinor).toBe(2_000n);
  });

  it("lets the provider release the hold back to the client, and only the provider", async () => {
    await expect(milestones.release(CLIENT, contract.id, fixedId)).rejects.toBeInstanceOf(PermissionDeniedError);
    const released = await milestones.release(PROVIDER, contract.id, fixedId);
    expect(released).toMatchObject({ status: MilestoneStatus.RELEASED, capturedMinor: 0n });
    expect((await stored()).holds.find((h) => h.lineItemId === "boiler")!.status).toBe(EscrowHoldStatus.RELEASED);
    expect(await balance(`user:${CLIENT}:available`)).toBe(-6_000n);
    expect(await balance(`user:${CLIENT}:held`)).toBe(5_000n);
    // Releasing again is a no-op; confirming a released milestone too.
    await milestones.release(PROVIDER, contract.id, fixedId);
    expect((await milestones.confirm(CLIENT, contract.id, fixedId)).status).toBe(MilestoneStatus.RELEASED);
    expect(rail.calls.filter((c) => c.method === "release")).toHaveLength(1);
    expect(captures()).toHaveLength(0);

    await milestones.release(PROVIDER, contract.id, rangedId);
    expect((await stored()).status).toBe(ContractStatus.COMPLETED);
    expect(await balance(`user:${CLIENT}:available`)).toBe(-1_000n);
    expect(await balance(`user:${CLIENT}:held`)).toBe(0n);
  });

  it("refuses to release a milestone already paid out", async () => {
    await milestones.confirm(PROVIDER, contract.id, fixedId);
    await milestones.confirm(CLIENT, contract.id, fixedId);
    await expect(milestones.release(PROVIDER, contract.id, fixedId)).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it("keeps strangers out and reports unknown contracts and milestones", async () => {
    await expect(milestones.confirm("u_stranger", contract.id, fixedId)).rejects.toBeInstanceOf(PermissionDeniedError);
    await expect(milestones.release("u_stranger", contract.id, fixedId)).rejects.toBeInstanceOf(PermissionDeniedError);
    await expect(milestones.confirm(CLIENT, "ctr_missing", fixedId)).rejects.toBeInstanceOf(NotFoundError);
    await expect(milestones.confirm(CLIENT, contract.id, "m_missing")).rejects.toBeInstanceOf(NotFoundError);
    expect(log.events).toEqual([]);
  });

  it("records a capture the rail refuses, and captures on the next confirmation", async () => {
    rail.failNext("capture", new PaymentRailError("Stripe had an internal error; try again", "stripe_unavailable", true));
    await milestones.confirm(PROVIDER, contract.id, fixedId);
    const refused = await milestones.confirm(CLIENT, contract.id, fixedId);
    expect(refused).toMatchObject({ status: MilestoneStatus.FAILED, failureReason: "Stripe had an internal error; try again" });
    expect((await stored()).status).toBe(ContractStatus.PAYMENT_FAILED);
    expect(ofKind("error")[0]!.error).toMatchObject({ code: "capture_failed", retryable: true });
    expect((await stored()).holds.find((h) => h.lineItemId === "boiler")!.status).toBe(EscrowHoldStatus.HELD);

    const retried = await milestones.confirm(CLIENT, contract.id, fixedId);
    expect(retried).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 10_000n, failureReason: "" });
    // A refused attempt's key is spent (Stripe keeps the refusal under it): the retry has its own.
    const keys = captures().map((c) => c.request!.idempotencyKey);
    expect(keys).toEqual([expect.stringMatching(attemptKeyPattern(contract.id, "boiler", "capture", 10_000n)), expect.stringMatching(attemptKeyPattern(contract.id, "boiler", "capture", 10_000n))]);
    expect(keys[0]).not.toBe(keys[1]);
    expect((await stored()).status).toBe(ContractStatus.ACTIVE);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(11_000n);
  });
});
