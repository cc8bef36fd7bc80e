import { create } from "@bufbuild/protobuf";
import Stripe from "stripe";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  EscrowHoldSchema,
  EscrowHoldStatus,
  LineItemKind,
  PaymentRail as PaymentRailKind,
  PaymentSchema,
  PaymentStatus,
  type Contract,
  type EscrowHold,
  type Payment,
} from "../../gen/handshake/v1/deal_pb.js";
import { createStripeWebhookHandler, verifyStripeSignature, type StripeWebhookHandler, type StripeWebhookUpdate } from "../../src/payments/stripe-webhook.js";
import type { Store } from "../../src/store/store.js";
import { CLIENT, PROVIDER, item, openStore, signedContract } from "../support/payment-fixtures.js";

const SECRET = "whsec_test_secret";
const NOW_MS = 1_700_000_000_000;
const NOW_SEC = NOW_MS / 1000;

let store: Store;
let contract: Contract;
let handler: StripeWebhookHandler;
let updates: StripeWebhookUpdate[];

beforeEach(async () => {
  store = await openStore();
  contract = await signedContract(store, [
    item({ id: "now", description: "Call-out", kind: LineItemKind.IMMEDIATE, amountMinor: 1_000n }),
    item({ id: "esc", description: "Boiler", kind: LineItemKind.ESCROW, amountMinor: 10_000n }),
  ]);
  updates = [];
  handler = createStripeWebhookHandler({ store, secret: SECRET, now: () => NOW_MS, onUpdate: (u) => updates.push(u) });
});

afterEach(async () => {
  await store.close();
});

async function storedHold(init: Partial<EscrowHold>): Promise<EscrowHold> {
  const hold = create(EscrowHoldSchema, {
    id: "hold_1",
    contractId: contract.id,
    lineItemId: "esc",
    payerUserId: CLIENT,
    payeeUserId: PROVIDER,
    amountMinor: 10_000n,
    currency: "GBP",
    status: EscrowHoldStatus.PENDING,
    idempotencyKey: "k-hold",
    rail: PaymentRailKind.STRIPE,
    updatedAtMs: 1n,
  });
  await store.recordHoldIntent(hold);
  const updated = { ...hold, ...init };
  await store.recordHoldResult(updated);
  return updated;
}

async function storedPayment(init: Partial<Payment>): Promise<Payment> {
  const payment = create(PaymentSchema, {
    id: "pay_1",
    contractId: contract.id,
    lineItemId: "now",
    payerUserId: CLIENT,
    payeeUserId: PROVIDER,
    amountMinor: 1_000n,
    currency: "GBP",
    status: PaymentStatus.PENDING,
    idempotencyKey: "k-pay",
    rail: PaymentRailKind.STRIPE,
    updatedAtMs: 1n,
  });
  await store.recordPaymentIntent(payment);
  const updated = { ...payment, ...init };
  await store.recordPaymentResult(updated);
  return updated;
}

function event(id: string, type: string, intent: Record<string, unknown>): Buffer {
  return Buffer.from(
    JSON.stringify({
      id,
      object: "event",
      type,
      created: NOW_SEC,
      data: {
        object: {
          object: "payment_intent",
          amount: 10_000,
          amount_received: 0,
          created: NOW_SEC - 60,
          capture_method: "manual",
          metadata: { contract_id: contract.id, line_item_id: "esc" },
          ...intent,
        },
      },
    }),
  );
}

/** A header made by stripe-node's own signer, so our verifier is checked against Stripe's format. */
function sign(body: Buffer, init: { secret?: string; timestamp?: number } = {}): string {
  return Stripe.webhooks.generateTestHeaderString({
    payload: body.toString("utf8"),
    secret: init.secret ?? SECRET,
    timestamp: init.timestamp ?? NOW_SEC,
  });
}

const holdNow = async () => (await store.getContract(contract.id))!.holds[0]!;
const paymentNow = async () => (await store.getContract(contract.id))!.payments[0]!;

describe("Stripe webhook", () => {
  it("applies a validly signed capture to the hold found by rail reference", async () => {
    await storedHold({ status: EscrowHoldStatus.HELD, railReference: "pi_1" });
    const body = event("evt_1", "payment_intent.succeeded", { id: "pi_1", status: "succeeded", amount_received: 6_000 });
    const res = await handler(body, sign(body));
    expect(res).toEqual({ status: 200, body: "hold updated" });
    expect(await holdNow()).toMatchObject({ status: EscrowHoldStatus.CAPTURED, capturedMinor: 6_000n, updatedAtMs: BigInt(NOW_MS) });
    expect(updates).toHaveLength(1);
    expect(updates[0]).toMatchObject({ kind: "hold", contractId: contract.id });
  });

  it("finds a payment by its metadata when the create call never returned a reference", async () => {
    await storedPayment({ status: PaymentStatus.FAILED, failureReason: "Stripe did not answer in time" });
    const body = event("evt_2", "payment_intent.succeeded", {
      id: "pi_9",
      status: "succeeded",
      capture_method: "automatic",
      amount: 1_000,
      amount_received: 1_000,
      metadata: { contract_id: contract.id, line_item_id: "now" },
    });
    expect((await handler(body, sign(body))).status).toBe(200);
    expect(await paymentNow()).toMatchObject({ status: PaymentStatus.SUCCEEDED, railReference: "pi_9", failureReason: "" });
  });

  it("marks a hold held, then expired when Stripe cancels a lapsed authorisation", async () => {
    await storedHold({});
    const capturable = event("evt_3", "payment_intent.amount_capturable_updated", { id: "pi_2", status: "requires_capture", amount_capturable: 10_000 });
    expect((await handler(capturable, sign(capturable))).status).toBe(200);
    expect(await holdNow()).toMatchObject({ status: EscrowHoldStatus.HELD, railReference: "pi_2" });
    const lapsed = event("evt_4", "payment_intent.canceled", { id: "pi_2", status: "canceled", cancellation_reason: "automatic" });
    expect((await handler(lapsed, sign(lapsed))).status).toBe(200);
    expect(await holdNow()).toMatchObject({ status: EscrowHoldStatus.EXPIRED });
  });

  it("records a failed payment with Stripe's reason, and never moves a succeeded one back", async () => {
    await storedPayment({ railReference: "pi_3" });
    const failed = event("evt_5", "payment_intent.payment_failed", {
      id: "pi_3",
      status: "requires_payment_method",
      capture_method: "automatic",
      last_payment_error: { message: "Your card was declined." },
    });
    expect((await handler(failed, sign(failed))).status).toBe(200);
    expect(await paymentNow()).toMatchObject({ status: PaymentStatus.FAILED, failureReason: "Your card was declined." });
    await store.recordPaymentResult({ ...(await paymentNow()), status: PaymentStatus.SUCCEEDED, failureReason: "" });
    const late = event("evt_6", "payment_intent.canceled", { id: "pi_3", status: "canceled", capture_method: "automatic" });
    expect(await handler(late, sign(late))).toEqual({ status: 200, body: "no change" });
    expect((await paymentNow()).status).toBe(PaymentStatus.SUCCEEDED);
  });

  it("refuses a wrong signature with 400 and changes nothing", async () => {
    await storedHold({ status: EscrowHoldStatus.HELD, railReference: "pi_1" });
    const body = event("evt_7", "payment_intent.succeeded", { id: "pi_1", status: "succeeded", amount_received: 10_000 });
    const res = await handler(body, sign(body, { secret: "whsec_someone_else" }));
    expect(res.status).toBe(400);
    expect(res.body).toBe("signature does not match the payload");
    // A body altered after signing fails too.
    const tampered = Buffer.from(body.toString("utf8").replace("10000", "99999"));
    expect((await handler(tampered, sign(body))).status).toBe(400);
    expect((await handler(body, undefined)).status).toBe(400);
    expect((await handler(body, "t=abc,v1=zz")).status).toBe(400);
    expect(await holdNow()).toMatchObject({ status: EscrowHoldStatus.HELD, capturedMinor: 0n });
    expect(updates).toEqual([]);
  });

  it("refuses a stale timestamp with 400 and changes nothing", async () => {
    await storedHold({ status: EscrowHoldStatus.HELD, railReference: "pi_1" });
    const body = event("evt_8", "payment_intent.succeeded", { id: "pi_1", status: "succeeded", amount_received: 10_000 });
    const res = await handler(body, sign(body, { timestamp: NOW_SEC - 301 }));
    expect(res).toEqual({ status: 400, body: "signature timestamp is outside the tolerance" });
    expect((await holdNow()).status).toBe(EscrowHoldStatus.HELD);
    expect(updates).toEqual([]);
  });

  it("acknowledges a repeated event id with 200 (Stripe redelivers until it gets a 2xx) and does not apply it again", async () => {
    await storedHold({ status: EscrowHoldStatus.HELD, railReference: "pi_1" });
    const body = event("evt_9", "payment_intent.canceled", { id: "pi_1", status: "canceled", cancellation_reason: "requested_by_customer" });
    expect((await handler(body, sign(body))).status).toBe(200);
    const afterFirst = await holdNow();
    expect(afterFirst.status).toBe(EscrowHoldStatus.RELEASED);
    // Put the hold back so that applying the event again would show.
    await store.recordHoldResult({ ...afterFirst, status: EscrowHoldStatus.HELD });
    const res = await handler(body, sign(body, { timestamp: NOW_SEC - 10 }));
    expect(res).toEqual({ status: 200, body: "already received: not applied again" });
    expect((await holdNow()).status).toBe(EscrowHoldStatus.HELD);
    expect(updates).toHaveLength(1);
  });

  it("acknowledges events it does not handle and intents it does not know", async () => {
    const other = Buffer.from(JSON.stringify({ id: "evt_10", type: "charge.refunded", data: { object: { object: "charge", id: "ch_1" } } }));
    expect(await handler(other, sign(other))).toEqual({ status: 200, body: "ignored: event type not handled" });
    const unknown = event("evt_11", "payment_intent.succeeded", { id: "pi_x", status: "succeeded", metadata: {} });
    expect(await handler(unknown, sign(unknown))).toEqual({ status: 200, body: "ignored: unknown payment intent" });
  });

  it("verifies signatures in constant-time form and checks the tolerance both ways", () => {
    const body = Buffer.from("{}");
    expect(verifyStripeSignature(body, sign(body), SECRET, NOW_SEC)).toEqual({ ok: true, timestampSec: NOW_SEC });
    expect(verifyStripeSignature(body, sign(body, { timestamp: NOW_SEC + 400 }), SECRET, NOW_SEC).ok).toBe(false);
    // Several v1 signatures (during secret rotation): one matching is enough.
    const header = `${sign(body, { secret: "whsec_old" })},v1=${sign(body).split("v1=")[1]!.split(",")[0]}`;
    expect(verifyStripeSignature(body, header, SECRET, NOW_SEC).ok).toBe(true);
  });
});
