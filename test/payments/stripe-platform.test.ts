import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { createPaymentSetupService } from "../../src/payments/payment-setup.js";
import { createStripeConnect } from "../../src/payments/stripe-connect.js";
import { createStripeRail } from "../../src/payments/stripe-rail.js";
import { createStripeWebhookHandler } from "../../src/payments/stripe-webhook.js";
import { stripeSignatureHeader } from "../../src/payments/testing/fake-stripe-connect.js";
import { startFakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import type { RailRequest } from "../../src/payments/rail.js";
import { startTestApp, testProfile } from "../support/app.js";
import { CLIENT, PROVIDER, openStore } from "../support/payment-fixtures.js";
import { joinRoom, roofDeal } from "../support/restart.js";
import { paymentsClient } from "../support/stripe-device.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

const request = (payeeAccountId: string, idempotencyKey: string): RailRequest => ({
  payerUserId: CLIENT,
  payeeUserId: PROVIDER,
  payerCustomerId: "cus_alex",
  payerPaymentMethodId: "pm_card_visa",
  payeeAccountId,
  idempotencyKey,
  amountMinor: 20_000n,
  currency: "GBP",
  description: "Roof",
  contractId: "ctr_1",
  lineItemId: "roof",
});

describe("the platform's side of a Stripe charge", () => {
  it("takes PLATFORM_FEE_BPS as application_fee_amount (on capture for holds) and charges on_behalf_of a payee abroad only", async () => {
    const fake = await startFakeStripe();
    cleanups.push(() => fake.close());
    const options = { secretKey: "sk_test_fee", apiBase: fake.url, maxNetworkRetries: 0 };
    const connect = createStripeConnect(options);
    const abroad = await connect.createAccount("u_abroad", "US");
    const home = await connect.createAccount("u_home", "GB");
    const rail = createStripeRail({ ...options, platformFeeBps: 250, platformCountry: "GB" });

    const paidAbroad = await rail.pay(request(abroad.accountId, "k1"));
    expect(fake.intents.get(paidAbroad.reference)).toMatchObject({ application_fee_amount: 500, on_behalf_of: abroad.accountId, transfer_data: { destination: abroad.accountId } });
    const paidHome = await rail.pay(request(home.accountId, "k2"));
    expect(fake.intents.get(paidHome.reference)).toMatchObject({ application_fee_amount: 500, on_behalf_of: null });
    // The payee's country is read once.
    expect(fake.requests.filter((r) => r.method === "GET" && r.path === `/v1/accounts/${abroad.accountId}`)).toHaveLength(1);

    const held = await rail.hold(request(home.accountId, "k3"));
    expect(fake.intents.get(held.reference)?.application_fee_amount).toBeNull();
    await rail.capture(held.reference, { ...request(home.accountId, "k4"), amountMinor: 16_000n });
    const capture = fake.requests.find((r) => r.path === `/v1/payment_intents/${held.reference}/capture`)!;
    expect(capture.params).toMatchObject({ amount_to_capture: "16000", application_fee_amount: "400" });
  });
});

describe("Stripe setup events are applied only to the user the server bound the object to", () => {
  it("records a saved card and an onboarded account; a forged user_id in metadata changes nothing", async () => {
    const store = await openStore({ client: { stripeCustomerId: "cus_alex", stripePaymentMethodId: "" }, provider: { stripeAccountId: "acct_sam" } });
    cleanups.push(() => store.close());
    const setup = createPaymentSetupService({ store, stripe: undefined, urls: { returnUrl: "https://a/", refreshUrl: "https://a/" }, publishableKey: "", stripeJsUrl: "" });
    const secret = "whsec_events";
    const nowMs = 1_780_000_000_000;
    const webhook = createStripeWebhookHandler({ store, secret, setup, now: () => nowMs });
    let n = 0;
    const deliver = (type: string, object: Record<string, unknown>) => {
      const body = JSON.stringify({ id: `evt_${++n}`, object: "event", type, data: { object } });
      return webhook(Buffer.from(body), stripeSignatureHeader(body, secret, Math.floor(nowMs / 1000)));
    };

    // Someone else's customer claiming to be the client: ignored.
    const forged = await deliver("setup_intent.succeeded", { id: "seti_1", object: "setup_intent", status: "succeeded", customer: "cus_mallory", payment_method: "pm_mallory", metadata: { user_id: CLIENT } });
    expect(forged).toEqual({ status: 200, body: "ignored: customer not bound to a user" });
    expect((await store.getProfile(CLIENT))?.stripePaymentMethodId).toBe("");
    const saved = await deliver("setup_intent.succeeded", { id: "seti_2", object: "setup_intent", status: "succeeded", customer: "cus_alex", payment_method: "pm_alex", metadata: { user_id: CLIENT } });
    expect(saved).toEqual({ status: 200, body: "card saved" });
    expect((await store.getProfile(CLIENT))?.stripePaymentMethodId).toBe("pm_alex");

    const stranger = await deliver("account.updated", { id: "acct_other", object: "account", charges_enabled: true, payouts_enabled: true, metadata: { user_id: PROVIDER } });
    expect(stranger.body).toBe("ignored: account not bound to a user");
    expect((await store.getProfile(PROVIDER))?.stripeChargesEnabled).toBe(false);
    const onboarded = await deliver("account.updated", { id: "acct_sam", object: "account", charges_enabled: true, payouts_enabled: false, metadata: { user_id: PROVIDER } });
    expect(onboarded.body).toBe("account updated");
    expect(await store.getProfile(PROVIDER)).toMatchObject({ stripeChargesEnabled: true, stripePayoutsEnabled: false });
    expect(await setup.payeeReadiness(PROVIDER)).toEqual({ ready: true });

    // A wrong signature changes nothing.
    const body = JSON.stringify({ id: "evt_x", type: "account.updated", data: { object: { id: "acct_sam", object: "account", charges_enabled: false, metadata: { user_id: PROVIDER } } } });
    expect((await webhook(Buffer.from(body), stripeSignatureHeader(body, "whsec_wrong", Math.floor(nowMs / 1000)))).status).toBe(400);
    expect((await store.getProfile(PROVIDER))?.stripeChargesEnabled).toBe(true);
  });
});

describe("PaymentsService on the embedded ledger, and what a profile may not claim", () => {
  it("answers FAILED_PRECONDITION for Stripe setup on the ledger and refuses a profile claiming Stripe enabled it", async () => {
    const app = await startTestApp();
    cleanups.push(() => app.close());
    const person = await joinRoom(app.baseUrl, "ledger-payments", roofDeal.provider);
    cleanups.push(() => person.panel.stop());
    const payments = paymentsClient(app.baseUrl, person.userToken);
    // Each call made when it is awaited: a refusal nobody awaits yet is an unhandled rejection.
    for (const call of [() => payments.startPayeeOnboarding({}), () => payments.startCardSetup({}), () => payments.getPaymentSetup({ refresh: true })]) {
      const err = await refusal(call());
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(err.rawMessage).toContain("embedded ledger");
    }
    const claim = await refusal(person.room.setProfile({ profile: testProfile({ ...roofDeal.provider, stripeChargesEnabled: true }) }));
    expect(claim.code).toBe(Code.InvalidArgument);
    expect(claim.rawMessage).toContain("profile.stripe_charges_enabled");
  });
});
