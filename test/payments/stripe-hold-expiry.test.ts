import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EscrowHoldStatus, LineItemKind } from "../../gen/handshake/v1/deal_pb.js";
import { createStripeRail } from "../../src/payments/stripe-rail.js";
import { startFakeStripe, type FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { createContractExecutor, type ExecutionEvent } from "../../src/settlement/execution.js";
import type { Store } from "../../src/store/store.js";
import { item, openStore, signedContract } from "../support/payment-fixtures.js";

const START_MS = 1_780_000_000_000;
let nowMs = START_MS;
let fake: FakeStripe;
let store: Store;

beforeEach(async () => {
  nowMs = START_MS;
  fake = await startFakeStripe({ clockMs: () => nowMs });
  store = await openStore();
});

afterEach(async () => {
  await store.close();
  await fake.close();
});

/** A contract whose one item is held in escrow on the fake Stripe; returns it held, with the executor. */
async function held() {
  const events: ExecutionEvent[] = [];
  const rail = createStripeRail({ secretKey: "sk_test_expiry", apiBase: fake.url, maxNetworkRetries: 0 });
  const executor = createContractExecutor({ store, rail, onEvent: (e) => events.push(e), now: () => nowMs, holdExpiryWarningMs: 60_000 });
  const contract = await signedContract(store, [item({ id: "roof", description: "Roof", kind: LineItemKind.ESCROW, amountMinor: 25_000n })]);
  const done = await executor.execute(contract);
  const hold = done.holds[0]!;
  expect(hold.status).toBe(EscrowHoldStatus.HELD);
  return { executor, events, contract: done, hold };
}

async function holdNow(contractId: string) {
  return (await store.getContract(contractId))!.holds[0]!;
}

describe("an authorisation past capture_before is checked with Stripe before it is called expired", () => {
  it("Stripe still holds it with a later capture_before: it stays held, with the new deadline", async () => {
    const { executor, contract, hold } = await held();
    const intent = fake.intents.get(hold.railReference)!;
    // Stripe re-authorised it (its charge's capture_before moved on a day).
    intent.created += 86_400;
    nowMs = Number(hold.expiresAtMs) + 1_000;
    const asked = fake.requests.length;
    executor.watchHolds((await store.getContract(contract.id))!);
    await expect.poll(async () => (await holdNow(contract.id)).expiresAtMs, { timeout: 5_000 }).toBe(hold.expiresAtMs + 86_400_000n);
    expect((await holdNow(contract.id)).status).toBe(EscrowHoldStatus.HELD);
    expect(fake.requests.slice(asked).some((r) => r.method === "GET" && r.path === `/v1/payment_intents/${hold.railReference}`)).toBe(true);
    executor.close();
  });

  it("Stripe cancelled the lapsed authorisation: the hold is expired and the room told", async () => {
    const { executor, events, contract, hold } = await held();
    const intent = fake.intents.get(hold.railReference)!;
    intent.status = "canceled";
    intent.cancellation_reason = "automatic";
    nowMs = Number(hold.expiresAtMs) + 1_000;
    executor.watchHolds((await store.getContract(contract.id))!);
    await expect.poll(async () => (await holdNow(contract.id)).status, { timeout: 5_000 }).toBe(EscrowHoldStatus.EXPIRED);
    expect(events.some((e) => e.kind === "error" && e.error.code === "hold_expired")).toBe(true);
    executor.close();
  });
});
