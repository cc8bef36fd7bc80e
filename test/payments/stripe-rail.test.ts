import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PaymentRail as PaymentRailKind } from "../../gen/handshake/v1/deal_pb.js";
import { idempotencyKey } from "../../src/settlement/idempotency.js";
import { PaymentRailError, type PaymentRail, type RailRequest } from "../../src/payments/rail.js";
import { MERCHANT_INITIATED_AUTH_MS, createStripeRail, type StripeRailOptions } from "../../src/payments/stripe-rail.js";
import { startFakeStripe, type FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";

let fake: FakeStripe;

beforeEach(async () => {
  fake = await startFakeStripe({ clockMs: () => 1_700_000_000_000 });
});

afterEach(async () => {
  await fake.close();
});

function rail(options: Partial<StripeRailOptions> = {}): PaymentRail {
  return createStripeRail({ secretKey: "sk_test_handshake", apiBase: fake.url, maxNetworkRetries: 0, ...options });
}

function request(action: "pay" | "hold" | "capture" | "release", init: Partial<RailRequest> = {}): RailRequest {
  return {
    idempotencyKey: idempotencyKey("ctr_1", "item-1", action),
    amountMinor: 12_000n,
    currency: "GBP",
    description: "Boiler repair: new boiler",
    contractId: "ctr_1",
    lineItemId: "item-1",
    payerUserId: "u_client",
    payeeUserId: "u_provider",
    payerCustomerId: "cus_alex",
    payerPaymentMethodId: "pm_card_visa",
    payeeAccountId: "acct_sam",
    ...init,
  };
}

async function failure(p: Promise<unknown>): Promise<PaymentRailError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PaymentRailError);
  return err as PaymentRailError;
}

describe("Stripe rail against a local fake Stripe", () => {
  it("pays with a confirmed off-session destination charge, sending exactly our parameters and key", async () => {
    const stripe = rail();
    expect(stripe.kind).toBe(PaymentRailKind.STRIPE);
    const result = await stripe.pay(request("pay"));
    expect(result).toEqual({ reference: "pi_fake_1", status: "succeeded" });
    expect(fake.requests).toHaveLength(1);
    const sent = fake.requests[0]!;
    expect(sent.method).toBe("POST");
    expect(sent.path).toBe("/v1/payment_intents");
    expect(sent.idempotencyKey).toBe("hs1:pay:ctr_1:item-1");
    expect(sent.authorization).toBe("Bearer sk_test_handshake");
    expect(sent.params).toEqual({
      amount: "12000",
      currency: "gbp",
      customer: "cus_alex",
      payment_method: "pm_card_visa",
      allowed_payment_method_types: ["card"],
      confirm: "true",
      off_session: "true",
      capture_method: "automatic",
      transfer_data: { destination: "acct_sam" },
      description: "Boiler repair: new boiler",
      metadata: { contract_id: "ctr_1", line_item_id: "item-1" },
    });
    expect(fake.intents.get("pi_fake_1")).toMatchObject({ status: "succeeded", amount_received: 12_000 });
  });

  it("holds with manual capture, records the authorisation deadline, captures part and releases the rest", async () => {
    const stripe = rail();
    const held = await stripe.hold(request("hold"));
    const intent = fake.intents.get(held.reference)!;
    expect(held).toEqual({
      reference: "pi_fake_1",
      status: "held",
      capturedMinor: 0n,
      expiresAtMs: intent.created * 1000 + MERCHANT_INITIATED_AUTH_MS,
    });
    expect(fake.requests[0]!.params).toMatchObject({ capture_method: "manual", expand: ["latest_charge"], confirm: "true" });
    expect(intent).toMatchObject({ status: "requires_capture", amount_capturable: 12_000 });

    const captured = await stripe.capture(held.reference, request("capture", { amountMinor: 7_500n }));
    expect(captured).toEqual({ reference: "pi_fake_1", status: "captured", capturedMinor: 7_500n });
    const captureCall = fake.requests[1]!;
    expect(captureCall.path).toBe("/v1/payment_intents/pi_fake_1/capture");
    expect(captureCall.params).toEqual({ amount_to_capture: "7500" });
    expect(captureCall.idempotencyKey).toBe("hs1:capture:ctr_1:item-1");
    expect(intent).toMatchObject({ status: "succeeded", amount_received: 7_500, amount_capturable: 0 });

    expect(await stripe.status(held.reference)).toEqual({ reference: "pi_fake_1", status: "captured", capturedMinor: 7_500n });
    expect(fake.requests[2]).toMatchObject({ method: "GET", path: "/v1/payment_intents/pi_fake_1", params: { expand: ["latest_charge"] } });
  });

  it("releases a hold by cancelling the PaymentIntent", async () => {
    const stripe = rail();
    const held = await stripe.hold(request("hold"));
    const released = await stripe.release(held.reference, request("release"));
    expect(released).toEqual({ reference: held.reference, status: "released", capturedMinor: 0n });
    expect(fake.requests[1]).toMatchObject({
      path: `/v1/payment_intents/${held.reference}/cancel`,
      idempotencyKey: "hs1:release:ctr_1:item-1",
      params: { cancellation_reason: "requested_by_customer" },
    });
    expect(fake.intents.get(held.reference)!.status).toBe("canceled");
    // Releasing again under a fresh key (as after Stripe pruned ours) still says released.
    const again = await stripe.release(held.reference, request("release", { idempotencyKey: "other-key" }));
    expect(again.status).toBe("released");
  });

  it("replays the first answer for a repeated key and charges once", async () => {
    const stripe = rail();
    const first = await stripe.pay(request("pay"));
    const second = await stripe.pay(request("pay"));
    expect(second).toEqual(first);
    expect(fake.created()).toBe(1);
    expect(fake.requests.map((r) => r.replayed)).toEqual([false, true]);
    expect(new Set(fake.requests.map((r) => r.idempotencyKey))).toEqual(new Set(["hs1:pay:ctr_1:item-1"]));
  });

  it("maps Stripe's idempotency_error when a key is reused with other parameters", async () => {
    const stripe = rail();
    await stripe.pay(request("pay"));
    const err = await failure(stripe.pay(request("pay", { amountMinor: 99n })));
    expect(err).toMatchObject({ code: "idempotency_error", retryable: false });
    expect(fake.created()).toBe(1);
  });

  it("maps a 402 card decline and insufficient funds, not retryable", async () => {
    const stripe = rail();
    const declined = await failure(stripe.pay(request("pay", { payerPaymentMethodId: "pm_card_chargeDeclined" })));
    expect(declined).toMatchObject({ code: "card_declined", retryable: false });
    expect(declined.message).toBe("The card was declined: Your card was declined.");
    const poor = await failure(
      stripe.hold(request("hold", { idempotencyKey: "k2", payerPaymentMethodId: "pm_card_chargeDeclinedInsufficientFunds" })),
    );
    expect(poor).toMatchObject({ code: "insufficient_funds", retryable: false, message: "The card was declined: insufficient funds" });
  });

  it("explains a payee account that cannot receive transfers", async () => {
    const stripe = rail();
    const notReady = await failure(stripe.pay(request("pay", { payeeAccountId: "acct_unready" })));
    expect(notReady.code).toBe("payee_account_not_ready");
    expect(notReady.message).toContain("payee's Stripe account cannot receive this payment");
    const unknown = await failure(stripe.pay(request("pay", { idempotencyKey: "k3", payeeAccountId: "sam" })));
    expect(unknown).toMatchObject({ code: "payee_account_not_ready", retryable: false });
    const missing = await failure(stripe.pay(request("pay", { payeeAccountId: undefined })));
    expect(missing.code).toBe("payee_account_missing");
    expect(fake.created()).toBe(0);
  });

  it("reports 429 as retryable without retrying it (stripe-node does not retry 429)", async () => {
    fake.failNext({ status: 429 });
    const err = await failure(rail({ maxNetworkRetries: 2 }).pay(request("pay")));
    expect(err).toMatchObject({ code: "rate_limited", retryable: true });
    expect(fake.requests).toHaveLength(1);
    expect(fake.created()).toBe(0);
  });

  it("retries a 500 with the same key and succeeds", async () => {
    fake.failNext({ status: 500 });
    const result = await rail({ maxNetworkRetries: 2 }).pay(request("pay"));
    expect(result.status).toBe("succeeded");
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests.map((r) => r.idempotencyKey)).toEqual(["hs1:pay:ctr_1:item-1", "hs1:pay:ctr_1:item-1"]);
    expect(fake.created()).toBe(1);
  });

  it("reports a 500 that persists as retryable", async () => {
    fake.failNext({ status: 500 });
    const err = await failure(rail({ maxNetworkRetries: 0 }).pay(request("pay")));
    expect(err).toMatchObject({ code: "stripe_unavailable", retryable: true });
  });

  it("times out a request Stripe never answers", async () => {
    fake.hangNext();
    const err = await failure(rail({ timeoutMs: 200, maxNetworkRetries: 0 }).pay(request("pay")));
    expect(err).toMatchObject({ code: "timeout", retryable: true });
  });

  it("uses the test card only in test mode when the payer has no saved payment method", async () => {
    await rail().pay(request("pay", { payerPaymentMethodId: undefined }));
    expect(fake.requests[0]!.params.payment_method).toBe("pm_card_visa");
    const live = createStripeRail({ secretKey: "sk_live_handshake", apiBase: fake.url, maxNetworkRetries: 0 });
    const err = await failure(live.pay(request("pay", { idempotencyKey: "k4", payerPaymentMethodId: undefined })));
    expect(err.code).toBe("payer_payment_method_missing");
    expect(fake.requests).toHaveLength(1);
  });

  it("refuses a capture of a released hold with a clear error", async () => {
    const stripe = rail();
    const held = await stripe.hold(request("hold"));
    await stripe.release(held.reference, request("release"));
    const err = await failure(stripe.capture(held.reference, request("capture")));
    expect(err).toMatchObject({ code: "unexpected_state", retryable: false });
  });

  it("reports an unknown PaymentIntent", async () => {
    const err = await failure(rail().status("pi_missing"));
    expect(err.code).toBe("unknown_reference");
  });
});
