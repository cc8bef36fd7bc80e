import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContractStatus, EscrowHoldStatus, LineItemKind, MilestoneStatus } from "../../gen/handshake/v1/deal_pb.js";
import { createContractExecutor } from "../../src/settlement/execution.js";
import { createMilestoneService } from "../../src/settlement/milestones.js";
import { createStripeRail } from "../../src/payments/stripe-rail.js";
import type { Store } from "../../src/store/store.js";
import { startFakeStripe, type FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { CLIENT, PROVIDER, attemptKeyPattern, item, openStore, signedContract } from "../support/payment-fixtures.js";

let fake: FakeStripe;
let store: Store;

beforeEach(async () => {
  fake = await startFakeStripe();
  store = await openStore();
});

afterEach(async () => {
  await store.close();
  await fake.close();
});

describe("milestones on Stripe (local fake)", () => {
  it("captures in full, captures part of a ranged hold, and cancels a released one", async () => {
    const rail = createStripeRail({ secretKey: "sk_test_handshake", apiBase: fake.url, maxNetworkRetries: 0 });
    const executor = createContractExecutor({ store, rail, onEvent: () => {} });
    const contract = await executor.execute(
      await signedContract(store, [
        item({ id: "boiler", description: "New boiler", kind: LineItemKind.ESCROW, amountMinor: 90_000n }),
        item({ id: "parts", description: "Parts", kind: LineItemKind.CONDITIONAL, amountMinor: 5_000n, range: { minMinor: 2_000n, maxMinor: 5_000n } }),
        item({ id: "extra", description: "Extra radiator", kind: LineItemKind.ESCROW, amountMinor: 20_000n }),
      ]),
    );
    executor.close();
    expect(contract.status).toBe(ContractStatus.ACTIVE);
    const idOf = (lineItemId: string) => contract.milestones.find((m) => m.lineItemId === lineItemId)!.id;
    const refOf = (lineItemId: string) => contract.holds.find((h) => h.lineItemId === lineItemId)!.railReference;
    const service = createMilestoneService({ store, rail, onEvent: () => {} });

    await service.confirm(PROVIDER, contract.id, idOf("boiler"));
    await service.confirm(CLIENT, contract.id, idOf("boiler"));
    await service.confirm(CLIENT, contract.id, idOf("boiler"));
    const boilerCaptures = fake.requests.filter((r) => r.path === `/v1/payment_intents/${refOf("boiler")}/capture`);
    expect(boilerCaptures).toHaveLength(1);
    expect(boilerCaptures[0]).toMatchObject({ params: { amount_to_capture: "90000" }, idempotencyKey: expect.stringMatching(attemptKeyPattern(contract.id, "boiler", "capture", 90_000n)) });
    expect(fake.intents.get(refOf("boiler"))).toMatchObject({ status: "succeeded", amount_received: 90_000 });

    await service.proposeAmount(PROVIDER, contract.id, idOf("parts"), 3_200n);
    const parts = await service.approveAmount(CLIENT, contract.id, idOf("parts"), 3_200n);
    expect(parts).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 3_200n });
    expect(fake.intents.get(refOf("parts"))).toMatchObject({ status: "succeeded", amount_received: 3_200, amount_capturable: 0 });

    const extra = await service.release(PROVIDER, contract.id, idOf("extra"));
    expect(extra.status).toBe(MilestoneStatus.RELEASED);
    expect(fake.intents.get(refOf("extra"))).toMatchObject({ status: "canceled", cancellation_reason: "requested_by_customer" });

    const final = (await store.getContract(contract.id))!;
    expect(final.status).toBe(ContractStatus.COMPLETED);
    expect(final.holds.map((h) => [h.lineItemId, h.status, h.capturedMinor])).toEqual([
      ["boiler", EscrowHoldStatus.CAPTURED, 90_000n],
      ["parts", EscrowHoldStatus.CAPTURED, 3_200n],
      ["extra", EscrowHoldStatus.RELEASED, 0n],
    ]);
  });

  it("a capture Stripe answered with a stored 500 is tried again under a new key, and a re-proposed amount never reuses a key", async () => {
    const rail = createStripeRail({ secretKey: "sk_test_handshake", apiBase: fake.url, maxNetworkRetries: 2 });
    const executor = createContractExecutor({ store, rail, onEvent: () => {} });
    const contract = await executor.execute(
      await signedContract(store, [item({ id: "parts", description: "Parts", kind: LineItemKind.CONDITIONAL, amountMinor: 5_000n, range: { minMinor: 2_000n, maxMinor: 5_000n } })]),
    );
    executor.close();
    const milestoneId = contract.milestones[0]!.id;
    const reference = contract.holds[0]!.railReference;
    const isCapture = (r: { method: string; path: string }) => r.method === "POST" && r.path === `/v1/payment_intents/${reference}/capture`;
    const service = createMilestoneService({ store, rail, onEvent: () => {} });

    // Stripe began the capture and failed inside: the 500 is saved under the key, so the SDK's
    // two retries with that key get it again and the attempt fails.
    fake.failNext({ status: 500, match: isCapture, stored: true });
    await service.proposeAmount(PROVIDER, contract.id, milestoneId, 4_000n);
    const refused = await service.approveAmount(CLIENT, contract.id, milestoneId, 4_000n);
    expect(refused).toMatchObject({ status: MilestoneStatus.FAILED });
    const first = fake.requests.filter(isCapture);
    expect(first.map((r) => r.replayed)).toEqual([false, true, true]);
    expect(new Set(first.map((r) => r.idempotencyKey)).size).toBe(1);
    expect(first[0]!.idempotencyKey).toMatch(attemptKeyPattern(contract.id, "parts", "capture", 4_000n));

    // The provider re-proposes a lower amount; the client approves: a key of its own, captured once.
    await service.proposeAmount(PROVIDER, contract.id, milestoneId, 3_500n);
    const done = await service.approveAmount(CLIENT, contract.id, milestoneId, 3_500n);
    expect(done).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 3_500n });
    const second = fake.requests.filter(isCapture).slice(first.length);
    expect(second).toHaveLength(1);
    expect(second[0]).toMatchObject({ replayed: false, params: { amount_to_capture: "3500" } });
    expect(second[0]!.idempotencyKey).toMatch(attemptKeyPattern(contract.id, "parts", "capture", 3_500n));
    expect(fake.intents.get(reference)).toMatchObject({ status: "succeeded", amount_received: 3_500 });
    expect(await store.listSettlementIntents()).toEqual([]);

    // What the old key scheme did: the same key with another amount is refused by Stripe.
    const reused = await rail
      .capture(reference, { ...(await railRequestOf(contract.id)), idempotencyKey: first[0]!.idempotencyKey ?? "", amountMinor: 3_500n })
      .then(() => undefined, (e: unknown) => e);
    expect(reused).toMatchObject({ code: "idempotency_error", retryable: false });
  });
});

/** A rail request for the contract's only item (parties as the store has them). */
async function railRequestOf(contractId: string) {
  const contract = (await store.getContract(contractId))!;
  return {
    idempotencyKey: "",
    amountMinor: 0n,
    currency: "GBP",
    description: "Parts",
    contractId,
    lineItemId: contract.terms!.lineItems[0]!.id,
    payerUserId: CLIENT,
    payeeUserId: PROVIDER,
  };
}
