import { createHmac } from "node:crypto";

/**
 * The fake Stripe's Connect and saved-card side: connected accounts and Account Links (with a
 * hosted onboarding page that finishes onboarding), customers, payment methods made from test
 * tokens, SetupIntents (+ confirm) and setup-mode Checkout sessions (with a hosted page), the
 * test cards' behaviours, and signed webhook delivery. State only; fake-stripe-server.ts routes to it.
 */

/** What a test card does when charged, as in Stripe's test mode. */
export type CardBehaviour = "succeeds" | "authentication_required" | "declined" | "insufficient_funds";

/** A test card: what charging it does; `attaches` when saving it succeeds though charges are declined. */
export interface TestCard {
  behaviour: CardBehaviour;
  last4: string;
  brand: string;
  attaches?: boolean;
}

/** Test tokens and card numbers → what they do (https://docs.stripe.com/testing). */
const TEST_CARDS: Record<string, TestCard> = {
  pm_card_visa: { behaviour: "succeeds", last4: "4242", brand: "visa" },
  pm_card_mastercard: { behaviour: "succeeds", last4: "4444", brand: "mastercard" },
  pm_card_authenticationRequired: { behaviour: "authentication_required", last4: "3184", brand: "visa" },
  pm_card_chargeDeclined: { behaviour: "declined", last4: "0002", brand: "visa" },
  pm_card_chargeDeclinedInsufficientFunds: { behaviour: "insufficient_funds", last4: "9995", brand: "visa" },
  // Attaches (saves) fine, then every charge is declined: a card that worked at setup and fails later.
  pm_card_chargeCustomerFail: { behaviour: "declined", last4: "0341", brand: "visa", attaches: true },
  "4242424242424242": { behaviour: "succeeds", last4: "4242", brand: "visa" },
  "4000000000000341": { behaviour: "declined", last4: "0341", brand: "visa", attaches: true },
  "4000002760003184": { behaviour: "authentication_required", last4: "3184", brand: "visa" },
  "4000000000000002": { behaviour: "declined", last4: "0002", brand: "visa" },
  "4000000000009995": { behaviour: "insufficient_funds", last4: "9995", brand: "visa" },
};

/** A payment method in the fake's memory. */
export interface FakePaymentMethod {
  id: string;
  object: "payment_method";
  type: "card";
  customer: string | null;
  card: { brand: string; last4: string };
  created: number;
  livemode: false;
  /** Not a Stripe field: what charging it does. Removed from answers. */
  behaviour: CardBehaviour;
}

export interface FakeAccount {
  id: string;
  object: "account";
  country: string;
  charges_enabled: boolean;
  payouts_enabled: boolean;
  details_submitted: boolean;
  controller: unknown;
  capabilities: Record<string, string>;
  metadata: Record<string, string>;
  created: number;
  livemode: false;
}

export interface FakeSetupIntent {
  id: string;
  object: "setup_intent";
  client_secret: string;
  customer: string | null;
  payment_method: string | null;
  status: string;
  usage: string;
  metadata: Record<string, string>;
  created: number;
  livemode: false;
}

export interface FakeCheckoutSession {
  id: string;
  object: "checkout.session";
  mode: string;
  customer: string;
  setup_intent: string;
  status: "open" | "complete";
  success_url: string;
  cancel_url: string;
  url: string;
  livemode: false;
}

/** Where the fake POSTs its events, signed like Stripe with the endpoint's `whsec_…` secret. */
export interface WebhookTarget {
  url: string;
  secret: string;
}

/** The `Stripe-Signature` header Stripe sends for `payload` at `timestampSec`. */
export function stripeSignatureHeader(payload: string, secret: string, timestampSec: number): string {
  const v1 = createHmac("sha256", secret).update(`${timestampSec}.${payload}`, "utf8").digest("hex");
  return `t=${timestampSec},v1=${v1}`;
}

/** What the fake knows of a test card token or of a payment method it made, or undefined. */
export function testCard(id: string): TestCard | undefined {
  return TEST_CARDS[id];
}

/** Signed delivery of events, one POST each; `settled()` waits until every delivery so far answered. */
export function createWebhookSender(clockMs: () => number) {
  let target: WebhookTarget | undefined;
  const inFlight = new Set<Promise<void>>();
  const delivered: { type: string; status: number }[] = [];
  let eventSeq = 0;
  return {
    delivered,
    setTarget(next: WebhookTarget | undefined) {
      target = next;
    },
    /** The event's JSON, as Stripe would POST it. */
    eventJson(type: string, object: unknown): string {
      return JSON.stringify({
        id: `evt_fake_c${++eventSeq}`,
        object: "event",
        api_version: "2026-10-28.endive",
        created: Math.floor(clockMs() / 1000),
        type,
        livemode: false,
        pending_webhooks: 1,
        data: { object },
      });
    },
    send(type: string, object: unknown): void {
      if (!target) return;
      const { url, secret } = target;
      const payload = this.eventJson(type, object);
      const delivery = fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json; charset=utf-8", "stripe-signature": stripeSignatureHeader(payload, secret, Math.floor(clockMs() / 1000)) },
        body: payload,
      })
        .then(async (res) => {
          await res.text();
          delivered.push({ type, status: res.status });
        })
        .catch(() => {
          delivered.push({ type, status: 0 });
        })
        .finally(() => inFlight.delete(delivery));
      inFlight.add(delivery);
    },
    async settled(): Promise<void> {
      while (inFlight.size > 0) await Promise.all([...inFlight]);
    },
  };
}

/** A payment method object as Stripe answers it (without the fake's own fields). */
export function paymentMethodView(pm: FakePaymentMethod): unknown {
  const { behaviour: _behaviour, ...view } = pm;
  return view;
}
