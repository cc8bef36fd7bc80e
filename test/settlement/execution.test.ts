import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  ContractStatus,
  EscrowHoldStatus,
  LineItemKind,
  MilestoneStatus,
  PaymentRail as PaymentRailKind,
  PaymentStatus,
  type Contract,
} from "../../gen/handshake/v1/deal_pb.js";
import { ExecutionStepStatus } from "../../gen/handshake/v1/events_pb.js";
import { FailedPreconditionError } from "../../src/core/errors.js";
import { createContractExecutor, deriveContractStatus, undoPlan, type ContractExecutor, type ExecutionEvent } from "../../src/settlement/execution.js";
import { idempotencyKey } from "../../src/settlement/idempotency.js";
import { createLedgerRail } from "../../src/payments/ledger-rail.js";
import { PaymentRailError } from "../../src/payments/rail.js";
import type { Store } from "../../src/store/store.js";
import { CLIENT, PROVIDER, eventLog, item, ledgerTotal, openStore, signedContract } from "../support/payment-fixtures.js";
import { createScriptedRail, type ScriptedRail } from "../../src/payments/testing/scripted-rail.js";

let store: Store;
let rail: ScriptedRail;
let log: ReturnType<typeof eventLog>;
let executor: ContractExecutor;

beforeEach(async () => {
  store = await openStore();
  rail = createScriptedRail(createLedgerRail(store));
  log = eventLog();
  executor = createContractExecutor({ store, rail, onEvent: log.listener });
});

afterEach(async () => {
  executor.close();
  vi.useRealTimers();
  await store.close();
});

const mixedItems = () => [
  item({ id: "callout", description: "Call-out", kind: LineItemKind.IMMEDIATE, amountMinor: 1_000n }),
  item({ id: "boiler", description: "New boiler", kind: LineItemKind.ESCROW, amountMinor: 10_000n, milestone: { title: "Boiler fitted" } }),
  item({
    id: "parts",
    description: "Parts as needed",
    kind: LineItemKind.CONDITIONAL,
    amountMinor: 5_000n,
    range: { minMinor: 2_000n, maxMinor: 5_000n },
    condition: "if the old valve is broken",
  }),
];

async function balance(account: string): Promise<bigint> {
  return store.getLedgerBalance(account, "GBP");
}

function ofKind<K extends ExecutionEvent["kind"]>(kind: K): Extract<ExecutionEvent, { kind: K }>[] {
  return log.events.filter((e): e is Extract<ExecutionEvent, { kind: K }> => e.kind === kind);
}

describe("contract executor (ledger rail)", () => {
  it("pays immediate items, holds escrow and conditional items at their maximum, and leaves the contract ACTIVE", async () => {
    const contract = await signedContract(store, mixedItems());
    const done = await executor.execute(contract);

    expect(done.status).toBe(ContractStatus.ACTIVE);
    expect(done.payments).toHaveLength(1);
    expect(done.payments[0]).toMatchObject({
      lineItemId: "callout",
      status: PaymentStatus.SUCCEEDED,
      payerUserId: CLIENT,
      payeeUserId: PROVIDER,
      amountMinor: 1_000n,
      idempotencyKey: idempotencyKey(contract.id, "callout", "pay"),
      rail: PaymentRailKind.LEDGER,
    });
    expect(done.holds.map((h) => [h.lineItemId, h.amountMinor, h.status])).toEqual([
      ["boiler", 10_000n, EscrowHoldStatus.HELD],
      ["parts", 5_000n, EscrowHoldStatus.HELD],
    ]);
    expect(done.holds[1]!.idempotencyKey).toBe(idempotencyKey(contract.id, "parts", "hold"));
    expect(await balance(`user:${CLIENT}:available`)).toBe(-16_000n);
    expect(await balance(`user:${CLIENT}:held`)).toBe(15_000n);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(1_000n);
    expect(await ledgerTotal(store, "GBP")).toBe(0n);
    expect((await store.getContract(contract.id))!.status).toBe(ContractStatus.ACTIVE);

    // What the room saw, in order, for the first item and at the end.
    const steps = ofKind("step").map((e) => [e.step.step, e.step.lineItemId, e.step.status]);
    expect(steps).toEqual([
      ["payment", "callout", ExecutionStepStatus.STARTED],
      ["payment", "callout", ExecutionStepStatus.SUCCEEDED],
      ["escrow_hold", "boiler", ExecutionStepStatus.STARTED],
      ["escrow_hold", "boiler", ExecutionStepStatus.SUCCEEDED],
      ["escrow_hold", "parts", ExecutionStepStatus.STARTED],
      ["escrow_hold", "parts", ExecutionStepStatus.SUCCEEDED],
      ["completed", "", ExecutionStepStatus.SUCCEEDED],
    ]);
    expect(ofKind("step")[1]!.step.detail).toBe("£10.00 paid to Sam");
    expect(ofKind("payment").map((e) => e.payment.status)).toEqual([PaymentStatus.PENDING, PaymentStatus.SUCCEEDED]);
    expect(ofKind("contract").at(-1)!.contract.status).toBe(ContractStatus.ACTIVE);
    // A paid immediate item's undo would be a refund, which no rail offers: listed, never run.
    expect(undoPlan(done).find((u) => u.lineItemId === "callout")).toMatchObject({ action: "refund", supported: false });
    expect(log.events.every((e) => e.roomId === "room_1" && e.contractId === contract.id)).toBe(true);
  });

  it("records every intent as PENDING before the rail is called", async () => {
    const contract = await signedContract(store, mixedItems());
    const seen: string[] = [];
    rail.beforeCall = async (call) => {
      const stored = await store.getContract(contract.id);
      const lineItemId = call.request!.lineItemId;
      const record = call.method === "pay" ? stored!.payments.find((p) => p.lineItemId === lineItemId) : stored!.holds.find((h) => h.lineItemId === lineItemId);
      seen.push(`${call.method}:${lineItemId}:${record?.status}:${record?.idempotencyKey === call.request!.idempotencyKey}`);
    };
    await executor.execute(contract);
    expect(seen).toEqual([
      `pay:callout:${PaymentStatus.PENDING}:true`,
      `hold:boiler:${EscrowHoldStatus.PENDING}:true`,
      `hold:parts:${EscrowHoldStatus.PENDING}:true`,
    ]);
  });

  it("completes a contract with only immediate items", async () => {
    const contract = await signedContract(store, [item({ id: "a", description: "Lesson", kind: LineItemKind.IMMEDIATE, amountMinor: 3_000n })]);
    expect((await executor.execute(contract)).status).toBe(ContractStatus.COMPLETED);
  });

  it("records and broadcasts a failed payment, runs the other items, and ends PAYMENT_FAILED with holds kept", async () => {
    const contract = await signedContract(store, mixedItems());
    rail.failNext("pay", new PaymentRailError("The card was declined: Your card was declined.", "card_declined", false));
    const done = await executor.execute(contract);

    expect(done.status).toBe(ContractStatus.PAYMENT_FAILED);
    expect(done.payments[0]).toMatchObject({ status: PaymentStatus.FAILED, failureReason: "The card was declined: Your card was declined." });
    expect(done.holds.every((h) => h.status === EscrowHoldStatus.HELD)).toBe(true);
    const errors = ofKind("error").map((e) => e.error);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ stage: "payment", code: "payment_failed", retryable: false });
    expect(errors[0]!.message).toContain("Call-out");
    expect(ofKind("step").find((e) => e.step.status === ExecutionStepStatus.FAILED)!.step.detail).toContain("declined");
    expect(await balance(`user:${PROVIDER}:received`)).toBe(0n);

    // Each completed step knows its undo, newest first; the failed payment has none.
    expect(undoPlan(done).map((u) => [u.action, u.lineItemId, u.amountMinor, u.supported])).toEqual([
      ["release", "parts", 5_000n, true],
      ["release", "boiler", 10_000n, true],
    ]);
    // The undo of the holds, on request.
    const compensated = await executor.releaseOutstandingHolds(contract.id);
    expect(compensated.holds.every((h) => h.status === EscrowHoldStatus.RELEASED)).toBe(true);
    expect(compensated.milestones.every((m) => m.status === MilestoneStatus.RELEASED)).toBe(true);
    expect(await balance(`user:${CLIENT}:available`)).toBe(0n);
    expect(await balance(`user:${CLIENT}:held`)).toBe(0n);
    expect(rail.calls.filter((c) => c.method === "release").map((c) => c.request!.idempotencyKey)).toEqual([
      idempotencyKey(contract.id, "parts", "release"),
      idempotencyKey(contract.id, "boiler", "release"),
    ]);
  });

  it("records a failed hold with its reason", async () => {
    const contract = await signedContract(store, mixedItems());
    rail.failNext("hold", new PaymentRailError("Stripe did not answer in time", "timeout", true));
    const done = await executor.execute(contract);
    expect(done.holds[0]).toMatchObject({ lineItemId: "boiler", status: EscrowHoldStatus.FAILED, failureReason: "Stripe did not answer in time" });
    expect(done.holds[1]!.status).toBe(EscrowHoldStatus.HELD);
    expect(done.status).toBe(ContractStatus.PAYMENT_FAILED);
    expect(ofKind("error")[0]!.error.retryable).toBe(true);
  });

  it("does nothing the second time a contract is executed", async () => {
    const contract = await signedContract(store, mixedItems());
    await executor.execute(contract);
    const callsAfterFirst = rail.calls.length;
    const again = await executor.execute(contract);
    expect(again.status).toBe(ContractStatus.ACTIVE);
    expect(rail.calls).toHaveLength(callsAfterFirst);
    expect(await balance(`user:${CLIENT}:available`)).toBe(-16_000n);
  });

  it("refuses a contract not signed by both parties, before any money moves", async () => {
    const partly = await signedContract(store, mixedItems(), { signers: [PROVIDER] });
    await expect(executor.execute(partly)).rejects.toBeInstanceOf(FailedPreconditionError);
    expect(rail.calls).toHaveLength(0);
    expect((await store.getContract(partly.id))!.payments).toEqual([]);
  });

  it("resumes after a crash between the rail call and recording its result, moving the money once", async () => {
    const contract = await signedContract(store, mixedItems());
    let crashes = 1;
    const dyingStore: Store = new Proxy(store, {
      get(target, prop) {
        if (prop === "recordPaymentResult" && crashes > 0) {
          return async () => {
            crashes--;
            throw new Error("process died");
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const doomed = createContractExecutor({ store: dyingStore, rail, onEvent: () => {} });
    await expect(doomed.execute(contract)).rejects.toThrow("process died");
    doomed.close();
    expect((await store.getContract(contract.id))!.payments[0]!.status).toBe(PaymentStatus.PENDING);
    expect((await store.getContract(contract.id))!.status).toBe(ContractStatus.EXECUTING);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(1_000n);

    // A fresh process: new executor, same store.
    const restarted = createContractExecutor({ store, rail: createScriptedRail(createLedgerRail(store)), onEvent: log.listener });
    const [resumed] = await restarted.resumePending();
    restarted.close();
    expect(resumed!.status).toBe(ContractStatus.ACTIVE);
    expect(resumed!.payments[0]!.status).toBe(PaymentStatus.SUCCEEDED);
    expect(await balance(`user:${PROVIDER}:received`)).toBe(1_000n);
    expect(await balance(`user:${CLIENT}:available`)).toBe(-16_000n);
    expect(await ledgerTotal(store, "GBP")).toBe(0n);
    const payCalls = rail.calls.filter((c) => c.method === "pay");
    expect(payCalls).toHaveLength(1);
  });

  it("warns before a hold lapses and marks it EXPIRED after", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    vi.setSystemTime(Date.parse("2026-06-01T12:00:00Z"));
    const hour = 60 * 60 * 1000;
    rail.holdsExpireAfter(48 * hour);
    const watched = createContractExecutor({ store, rail, onEvent: log.listener, holdExpiryWarningMs: 12 * hour });
    const contract = await signedContract(store, [item({ id: "boiler", description: "New boiler", kind: LineItemKind.ESCROW, amountMinor: 10_000n })]);
    const done = await watched.execute(contract);
    expect(Number(done.holds[0]!.expiresAtMs)).toBe(Date.now() + 48 * hour);

    await vi.advanceTimersByTimeAsync(36 * hour - 1);
    expect(ofKind("error")).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    const warning = ofKind("error");
    expect(warning).toHaveLength(1);
    expect(warning[0]!.error).toMatchObject({ stage: "payment", code: "hold_expiring" });
    expect(warning[0]!.error.message).toContain("2026-06-03T12:00:00.000Z");

    const settled = log.next((e) => e.kind === "contract" && e.contract.status === ContractStatus.PAYMENT_FAILED);
    await vi.advanceTimersByTimeAsync(12 * hour);
    await settled;
    const after = (await store.getContract(contract.id))!;
    expect(after.holds[0]).toMatchObject({ status: EscrowHoldStatus.EXPIRED });
    expect(after.milestones[0]).toMatchObject({ status: MilestoneStatus.FAILED });
    expect(ofKind("error").map((e) => e.error.code)).toEqual(["hold_expiring", "hold_expired"]);
    watched.close();
  });
});

describe("deriveContractStatus", () => {
  it("prefers EXECUTING while anything is unanswered, then PAYMENT_FAILED, ACTIVE, COMPLETED", async () => {
    const contract: Contract = await signedContract(store, mixedItems());
    expect(deriveContractStatus(contract)).toBe(ContractStatus.EXECUTING);
    const done = await executor.execute(contract);
    expect(deriveContractStatus(done)).toBe(ContractStatus.ACTIVE);
    const settled = {
      ...done,
      holds: done.holds.map((h) => ({ ...h, status: EscrowHoldStatus.CAPTURED })),
    };
    expect(deriveContractStatus(settled)).toBe(ContractStatus.COMPLETED);
    const lapsed = { ...done, holds: done.holds.map((h, i) => ({ ...h, status: i === 0 ? EscrowHoldStatus.EXPIRED : h.status })) };
    expect(deriveContractStatus(lapsed)).toBe(ContractStatus.PAYMENT_FAILED);
    expect(deriveContractStatus({ ...done, status: ContractStatus.AWAITING_SIGNATURES })).toBe(ContractStatus.AWAITING_SIGNATURES);
  });
});
