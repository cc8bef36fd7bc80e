import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContractStatus, EscrowHoldStatus, LineItemKind, MilestoneStatus } from "../../gen/handshake/v1/deal_pb.js";
import { createContractExecutor } from "../../src/settlement/execution.js";
import { idempotencyKey } from "../../src/settlement/idempotency.js";
import { createMilestoneService } from "../../src/settlement/milestones.js";
import { createStripeRail } from "../../src/payments/stripe-rail.js";
import type { Store } from "../../src/store/store.js";
import { startFakeStripe, type FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { CLIENT, PROVIDER, item, openStore, signedContract } from "../support/payment-fixtures.js";

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
    expect(boilerCaptures[0]).toMatchObject({ params: { amount_to_capture: "90000" }, idempotencyKey: idempotencyKey(contract.id, "boiler", "capture") });
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
});
