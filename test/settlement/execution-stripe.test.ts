import Stripe from "stripe";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContractStatus, EscrowHoldStatus, LineItemKind, PaymentRail as PaymentRailKind, PaymentStatus } from "../../gen/handshake/v1/deal_pb.js";
import { ExecutionStepStatus } from "../../gen/handshake/v1/events_pb.js";
import { createContractExecutor } from "../../src/settlement/execution.js";
import { KEY_RESEND_LIMIT_MS } from "../../src/settlement/money-step.js";
import { idempotencyKey } from "../../src/settlement/idempotency.js";
import { MERCHANT_INITIATED_AUTH_MS, createStripeRail } from "../../src/payments/stripe-rail.js";
import { createStripeWebhookHandler } from "../../src/payments/stripe-webhook.js";
import type { Store } from "../../src/store/store.js";
import { startFakeStripe, type FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { eventLog, item, openStore, signedContract } from "../support/payment-fixtures.js";

const NOW_MS = 1_780_000_000_000;
let fake: FakeStripe;
let store: Store;

beforeEach(async () => {
  fake = await startFakeStripe({ clockMs: () => NOW_MS });
  store = await openStore();
});

afterEach(async () => {
  await store.close();
  await fake.close();
});

function stripeRail(timeoutMs = 10_000) {
  return createStripeRail({ secretKey: "sk_test_handshake", apiBase: fake.url, maxNetworkRetries: 0, timeoutMs });
}

const items = () => [
  item({ id: "callout", description: "Call-out", kind: LineItemKind.IMMEDIATE, amountMinor: 4_000n }),
  item({ id: "boiler", description: "New boiler", kind: LineItemKind.ESCROW, amountMinor: 90_000n }),
];

/** The store as a process that dies right after the first payment's rail call returns. */
function dyingAfterFirstCharge(target: Store): Store {
  let alive = true;
  return new Proxy(target, {
    get(t, prop) {
      if (prop === "recordPaymentResult" && alive) {
        return async () => {
          alive = false;
          throw new Error("process died");
        };
      }
      const value = Reflect.get(t, prop, t) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(t) : value;
    },
  });
}

describe("contract executor on Stripe (local fake)", () => {
  it("runs a contract: destination charge for the immediate item, manual-capture hold for escrow", async () => {
    const contract = await signedContract(store, items());
    const executor = createContractExecutor({ store, rail: stripeRail(), onEvent: () => {}, now: () => NOW_MS });
    const done = await executor.execute(contract);
    executor.close();
    expect(done.status).toBe(ContractStatus.ACTIVE);
    expect(done.payments[0]).toMatchObject({ status: PaymentStatus.SUCCEEDED, railReference: "pi_fake_1", rail: PaymentRailKind.STRIPE });
    expect(done.holds[0]).toMatchObject({
      status: EscrowHoldStatus.HELD,
      railReference: "pi_fake_2",
      expiresAtMs: BigInt(Math.floor(NOW_MS / 1000) * 1000 + MERCHANT_INITIATED_AUTH_MS),
    });
    expect(fake.requests.map((r) => [r.idempotencyKey, r.params.capture_method, r.params.amount])).toEqual([
      [idempotencyKey(contract.id, "callout", "pay"), "automatic", "4000"],
      [idempotencyKey(contract.id, "boiler", "hold"), "manual", "90000"],
    ]);
    expect(fake.requests[1]!.params.metadata).toEqual({ contract_id: contract.id, line_item_id: "boiler" });
  });

  it("after a crash between the Stripe call and recording its result, a restart finds the charge at Stripe and Stripe charges once", async () => {
    const contract = await signedContract(store, items());
    const doomed = createContractExecutor({ store: dyingAfterFirstCharge(store), rail: stripeRail(), onEvent: () => {} });
    await expect(doomed.execute(contract)).rejects.toThrow("process died");
    doomed.close();
    expect(fake.created()).toBe(1);
    const before = (await store.getContract(contract.id))!;
    expect(before.payments[0]).toMatchObject({ status: PaymentStatus.PENDING, railReference: "" });

    // A new process: fresh executor and Stripe client, same database.
    const log = eventLog();
    const restarted = createContractExecutor({ store, rail: stripeRail(), onEvent: log.listener });
    const [resumed] = await restarted.resumePending();
    restarted.close();

    const payKey = idempotencyKey(contract.id, "callout", "pay");
    const payCalls = fake.requests.filter((r) => r.idempotencyKey === payKey);
    // The charge is found at Stripe by its metadata before anything is sent again: not re-sent.
    expect(payCalls).toHaveLength(1);
    expect(fake.requests.some((r) => r.method === "GET" && r.path === "/v1/payment_intents/search")).toBe(true);
    // One charge for the payment, one authorisation for the hold: nothing twice.
    expect(fake.created()).toBe(2);
    expect(resumed!.payments[0]).toMatchObject({ status: PaymentStatus.SUCCEEDED, railReference: "pi_fake_1" });
    expect(resumed!.holds[0]!.status).toBe(EscrowHoldStatus.HELD);
    expect(resumed!.status).toBe(ContractStatus.ACTIVE);
    expect(log.events.some((e) => e.kind === "contract" && e.contract.status === ContractStatus.ACTIVE)).toBe(true);
  });

  it("records a declined card as a failed payment and the contract as PAYMENT_FAILED", async () => {
    const declining = await openStore({ client: { stripePaymentMethodId: "pm_card_chargeDeclined" } });
    try {
      const contract = await signedContract(declining, [items()[0]!]);
      const log = eventLog();
      const executor = createContractExecutor({ store: declining, rail: stripeRail(), onEvent: log.listener });
      const done = await executor.execute(contract);
      executor.close();
      expect(done.status).toBe(ContractStatus.PAYMENT_FAILED);
      expect(done.payments[0]).toMatchObject({ status: PaymentStatus.FAILED, failureReason: "The card was declined: Your card was declined." });
      expect(log.events.find((e) => e.kind === "error")).toMatchObject({ error: { code: "payment_failed", retryable: false } });
    } finally {
      await declining.close();
    }
  });

  it("heals a payment whose answer was lost (timeout) when Stripe's webhook says it succeeded", async () => {
    const contract = await signedContract(store, [items()[0]!]);
    fake.hangNext(undefined, { afterExecuting: true });
    const log = eventLog();
    const executor = createContractExecutor({ store, rail: stripeRail(300), onEvent: log.listener });
    // No answer is no outcome: the payment stays PENDING, never "failed".
    const pending = await executor.execute(contract);
    expect(pending.status).toBe(ContractStatus.EXECUTING);
    expect(pending.payments[0]).toMatchObject({ status: PaymentStatus.PENDING, failureReason: "" });
    expect(fake.intents.get("pi_fake_1")!.status).toBe("succeeded");

    const secret = "whsec_test";
    const handler = createStripeWebhookHandler({
      store,
      secret,
      now: () => NOW_MS,
      onUpdate: (u) => void executor.reconcile(u.contractId),
    });
    const body = fake.eventFor("payment_intent.succeeded", "pi_fake_1");
    const completed = log.next((e) => e.kind === "contract" && e.contract.status === ContractStatus.COMPLETED);
    const res = await handler(Buffer.from(body), Stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp: NOW_MS / 1000 }));
    expect(res.status).toBe(200);
    await completed;
    executor.close();
    const healed = (await store.getContract(contract.id))!;
    expect(healed.payments[0]).toMatchObject({ status: PaymentStatus.SUCCEEDED, railReference: "pi_fake_1" });
    expect(healed.status).toBe(ContractStatus.COMPLETED);
  });

  it("a charge Stripe made whose answer timed out after the SDK's retries stays PENDING, and the reconciler finds it: succeeded, charged once", async () => {
    const contract = await signedContract(store, [items()[0]!]);
    const isCreate = (r: { method: string; path: string }) => r.method === "POST" && r.path === "/v1/payment_intents";
    // Stripe makes the charge, but neither its answer nor the answers to the SDK's two retries arrive.
    fake.hangNext(isCreate, { afterExecuting: true });
    fake.hangNext(isCreate);
    fake.hangNext(isCreate);
    const log = eventLog();
    const rail = createStripeRail({ secretKey: "sk_test_handshake", apiBase: fake.url, maxNetworkRetries: 2, timeoutMs: 300 });
    const executor = createContractExecutor({ store, rail, onEvent: log.listener, pendingRecheckMs: 50 });
    const completed = log.next((e) => e.kind === "contract" && e.contract.status === ContractStatus.COMPLETED);
    const pending = await executor.execute(contract);
    expect(pending.status).toBe(ContractStatus.EXECUTING);
    expect(pending.payments[0]).toMatchObject({ status: PaymentStatus.PENDING });
    expect(log.events.find((e) => e.kind === "error")).toMatchObject({ error: { code: "payment_pending", retryable: true } });
    expect(log.events.some((e) => e.kind === "step" && e.step.status === ExecutionStepStatus.FAILED)).toBe(false);

    // The reconciler looks the charge up by the metadata it was created with, and records it.
    await completed;
    executor.close();
    const healed = (await store.getContract(contract.id))!;
    expect(healed.payments[0]).toMatchObject({ status: PaymentStatus.SUCCEEDED, railReference: "pi_fake_1" });
    expect(healed.status).toBe(ContractStatus.COMPLETED);
    expect(fake.created()).toBe(1);
    const creates = fake.requests.filter(isCreate);
    expect(creates).toHaveLength(3);
    expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(new Set([idempotencyKey(contract.id, "callout", "pay")]));
    expect(fake.requests.some((r) => r.method === "GET" && r.path === "/v1/payment_intents/search")).toBe(true);
  }, 20_000);

  it("a pending charge that Stripe has no trace of is resent by key within a day, and never after (its key may be pruned)", async () => {
    const isCreate = (r: { method: string; path: string }) => r.method === "POST" && r.path === "/v1/payment_intents";
    const pendingContract = async () => {
      const contract = await signedContract(store, [items()[0]!]);
      fake.hangNext(isCreate); // never reaches Stripe's API
      const first = createContractExecutor({ store, rail: stripeRail(300), onEvent: () => {}, now: () => NOW_MS, pendingRecheckMs: 3_600_000 });
      expect((await first.execute(contract)).payments[0]!.status).toBe(PaymentStatus.PENDING);
      first.close();
      return contract;
    };
    const contract = await pendingContract();
    expect(fake.created()).toBe(0);

    // A day later: nothing found at Stripe, and it is not sent again.
    const log = eventLog();
    const late = createContractExecutor({ store, rail: stripeRail(), onEvent: log.listener, now: () => NOW_MS + KEY_RESEND_LIMIT_MS + 1, pendingRecheckMs: 3_600_000 });
    const [stillPending] = await late.resumePending();
    late.close();
    expect(stillPending!.payments[0]!.status).toBe(PaymentStatus.PENDING);
    expect(fake.created()).toBe(0);
    expect(fake.requests.filter(isCreate)).toHaveLength(1);
    expect(log.events.find((e) => e.kind === "error")).toMatchObject({ error: { code: "payment_needs_attention", retryable: false } });

    // Within the day: resent under the same key, charged once.
    const soon = createContractExecutor({ store, rail: stripeRail(), onEvent: () => {}, now: () => NOW_MS + 60_000, pendingRecheckMs: 3_600_000 });
    const [paid] = await soon.resumePending();
    soon.close();
    expect(paid!.payments[0]).toMatchObject({ status: PaymentStatus.SUCCEEDED });
    expect(fake.created()).toBe(1);
    expect(new Set(fake.requests.filter(isCreate).map((r) => r.idempotencyKey))).toEqual(new Set([idempotencyKey(contract.id, "callout", "pay")]));
  });
});
