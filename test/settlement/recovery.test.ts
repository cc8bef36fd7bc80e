import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContractStatus, EscrowHoldStatus, LineItemKind, MilestoneStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { FailedPreconditionError } from "../../src/core/errors.js";
import { silentLogger } from "../../src/core/log.js";
import { createLedgerRail } from "../../src/payments/ledger-rail.js";
import type { PaymentRail } from "../../src/payments/rail.js";
import { createContractExecutor } from "../../src/settlement/execution.js";
import { idempotencyKey } from "../../src/settlement/idempotency.js";
import { createMilestoneService } from "../../src/settlement/milestones.js";
import { recoverSettlement } from "../../src/settlement/recovery.js";
import type { Store } from "../../src/store/store.js";
import { CLIENT, PROVIDER, attemptKeyPattern, item, ledgerTotal, openStore, signedContract } from "../support/payment-fixtures.js";

// Start-up recovery through its public surface: each test leaves the records the way a crash at
// one point would, then runs `recoverSettlement` as a fresh process does at start.

let store: Store;
let ledger: PaymentRail;

beforeEach(async () => {
  store = await openStore();
  ledger = createLedgerRail(store);
});

afterEach(async () => {
  await store.close();
});

/** A fresh process's executor and milestone service over `rail`, and its recovery. */
function restart(rail: PaymentRail = ledger) {
  const executor = createContractExecutor({ store, rail, onEvent: () => {} });
  const milestones = createMilestoneService({ store, rail, onEvent: () => {} });
  return { executor, milestones, recover: () => recoverSettlement({ store, executor, milestones, log: silentLogger }) };
}

/** A contract with a £10 call-out paid and a £20–£50 ranged repair held: ACTIVE. */
async function activeContract(): Promise<Contract> {
  const signed = await signedContract(store, [
    item({ id: "callout", description: "Call-out", kind: LineItemKind.IMMEDIATE, amountMinor: 1_000n }),
    item({ id: "parts", description: "Parts", kind: LineItemKind.CONDITIONAL, amountMinor: 5_000n, range: { minMinor: 2_000n, maxMinor: 5_000n } }),
  ]);
  const { executor } = restart();
  const contract = await executor.execute(signed);
  executor.close();
  expect(contract.status).toBe(ContractStatus.ACTIVE);
  return contract;
}

const stored = async (id: string) => (await store.getContract(id))!;
const balance = (account: string) => store.getLedgerBalance(account, "GBP");

describe("start-up recovery of the money path", () => {
  it("sends an approved capture again when the process died during the call, and records hold, milestone and status together", async () => {
    const contract = await activeContract();
    const milestoneId = contract.milestones[0]!.id;
    const dying = restart({ ...ledger, capture: () => Promise.reject(new Error("socket hang up")) });
    await dying.milestones.proposeAmount(PROVIDER, contract.id, milestoneId, 3_000n);
    await expect(dying.milestones.approveAmount(CLIENT, contract.id, milestoneId, 3_000n)).rejects.toThrow("socket hang up");
    // The decision and its intent were recorded before the call; nothing else.
    expect(await store.listSettlementIntents()).toEqual([
      expect.objectContaining({ action: "capture", amountMinor: 3_000n, idempotencyKey: expect.stringMatching(attemptKeyPattern(contract.id, "parts", "capture", 3_000n)) }),
    ]);
    expect((await stored(contract.id)).milestones[0]).toMatchObject({ status: MilestoneStatus.AMOUNT_PROPOSED, clientConfirmed: true });

    const { executor, recover } = restart();
    await recover();
    executor.close();
    const after = await stored(contract.id);
    expect(after.holds[0]).toMatchObject({ status: EscrowHoldStatus.CAPTURED, capturedMinor: 3_000n });
    expect(after.milestones[0]).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 3_000n });
    expect(after.status).toBe(ContractStatus.COMPLETED);
    expect(await store.listSettlementIntents()).toEqual([]);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(4_000n);
    expect(await ledgerTotal(store, "GBP")).toBe(0n);
  });

  it("records a release the ledger carried out whose record was lost, after which the hold cannot be captured", async () => {
    const contract = await activeContract();
    const hold = contract.holds[0]!;
    // The ledger released the hold; the process died before the records said so (no intent: an older database).
    await ledger.release(hold.railReference, {
      idempotencyKey: idempotencyKey(contract.id, "parts", "release"),
      amountMinor: hold.amountMinor,
      currency: "GBP",
      description: "",
      contractId: contract.id,
      lineItemId: "parts",
      payerUserId: CLIENT,
      payeeUserId: PROVIDER,
    });
    expect((await stored(contract.id)).holds[0]!.status).toBe(EscrowHoldStatus.HELD);

    const { executor, milestones, recover } = restart();
    await recover();
    const after = await stored(contract.id);
    expect(after.holds[0]!.status).toBe(EscrowHoldStatus.RELEASED);
    expect(after.milestones[0]!.status).toBe(MilestoneStatus.RELEASED);
    expect(after.status).toBe(ContractStatus.COMPLETED);
    const milestoneId = contract.milestones[0]!.id;
    await expect(milestones.proposeAmount(PROVIDER, contract.id, milestoneId, 3_000n)).rejects.toBeInstanceOf(FailedPreconditionError);
    executor.close();
    expect(await balance(`user:${CLIENT}:held`)).toBe(0n);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(1_000n);
    expect(await ledgerTotal(store, "GBP")).toBe(0n);
  });

  it("brings a contract's status in line with its items and a milestone in line with its hold", async () => {
    const contract = await activeContract();
    const hold = contract.holds[0]!;
    // Split records: the hold captured, its milestone still pending, the contract still ACTIVE.
    await store.recordHoldResult({ ...hold, status: EscrowHoldStatus.CAPTURED, capturedMinor: 5_000n });
    const { executor, recover } = restart();
    await recover();
    executor.close();
    const after = await stored(contract.id);
    expect(after.milestones[0]).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 5_000n });
    expect(after.status).toBe(ContractStatus.COMPLETED);
  });

  it("carries out a contract every party signed that was left AWAITING_SIGNATURES", async () => {
    const signed = await signedContract(store, [item({ id: "job", description: "Job", kind: LineItemKind.IMMEDIATE, amountMinor: 2_500n })]);
    await store.setContractStatus(signed.id, ContractStatus.AWAITING_SIGNATURES);
    const { executor, recover } = restart();
    await recover();
    executor.close();
    const after = await stored(signed.id);
    expect(after.status).toBe(ContractStatus.COMPLETED);
    expect(after.payments).toHaveLength(1);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(2_500n);
  });

  it("leaves alone a contract that is only partly signed", async () => {
    const partly = await signedContract(store, [item({ id: "job", description: "Job", kind: LineItemKind.IMMEDIATE, amountMinor: 2_500n })], { signers: [PROVIDER] });
    await store.setContractStatus(partly.id, ContractStatus.AWAITING_SIGNATURES);
    const { executor, recover } = restart();
    await recover();
    executor.close();
    expect((await stored(partly.id)).status).toBe(ContractStatus.AWAITING_SIGNATURES);
    expect((await stored(partly.id)).payments).toEqual([]);
  });
});
