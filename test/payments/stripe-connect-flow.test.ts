import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { ContractStatus, EscrowHoldStatus, PaymentStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import type { PaymentAction } from "../../gen/handshake/v1/payments_service_pb.js";
import type { PanelEvent } from "../../gen/handshake/v1/events_pb.js";
import { startFakeStripe, type FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { sha256Hex } from "../support/hash.js";
import { draftedContract, joinRoom, roofDeal, type Person } from "../support/restart.js";
import { TEST_PUBLISHABLE_KEY, completeAuthentication, confirmCardSetup, paymentsClient } from "../support/stripe-device.js";

const WEBHOOK_SECRET = "whsec_handshake_test";
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The real server on the Stripe rail against the fake, which delivers its events to the server's webhook. */
async function start(env: Record<string, string> = {}): Promise<{ fake: FakeStripe; app: TestApp }> {
  const fake = await startFakeStripe();
  cleanups.push(() => fake.close());
  const app = await startTestApp({
    PAYMENT_RAIL: "stripe",
    STRIPE_SECRET_KEY: "sk_test_handshake",
    STRIPE_API_BASE: fake.url,
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    STRIPE_PUBLISHABLE_KEY: TEST_PUBLISHABLE_KEY,
    STRIPE_RETURN_URL: "https://app.example/?stripe=return",
    STRIPE_REFRESH_URL: "https://app.example/?stripe=refresh",
    NEGOTIATION_ROUND_TIMEOUT_MS: "20000",
    NEGOTIATION_TOTAL_TIMEOUT_MS: "60000",
    ...env,
  });
  cleanups.push(() => app.close());
  fake.deliverWebhooksTo({ url: `${app.baseUrl}/webhooks/stripe`, secret: WEBHOOK_SECRET });
  return { fake, app };
}

async function pair(app: TestApp, roomId: string): Promise<{ provider: Person; payer: Person }> {
  const provider = await joinRoom(app.baseUrl, roomId, roofDeal.provider);
  const payer = await joinRoom(app.baseUrl, roomId, roofDeal.client);
  cleanups.push(() => provider.panel.stop(), () => payer.panel.stop());
  return { provider, payer };
}

/** Onboards the provider through the RPC and Stripe's hosted page, as a person would. */
async function onboard(fake: FakeStripe, app: TestApp, person: Person): Promise<void> {
  const { url } = await paymentsClient(app.baseUrl, person.userToken).startPayeeOnboarding({});
  const page = await fetch(url);
  expect(await page.text()).toContain("Finish onboarding");
  const back = await fetch(url, { method: "POST", redirect: "manual" });
  expect(back.status).toBe(303);
  expect(back.headers.get("location")).toBe("https://app.example/?stripe=return");
  await fake.webhooksSettled();
}

/** Saves `token` as the person's card: the server's SetupIntent, confirmed on the device, recorded from the webhook. */
async function saveCard(fake: FakeStripe, app: TestApp, person: Person, token: string): Promise<string> {
  const payments = paymentsClient(app.baseUrl, person.userToken);
  const setup = await payments.startCardSetup({});
  expect(setup.publishableKey).toBe(TEST_PUBLISHABLE_KEY);
  await confirmCardSetup(fake, setup.clientSecret, token);
  await fake.webhooksSettled();
  expect((await payments.getPaymentSetup({})).setup?.cardSaved).toBe(true);
  const saved = [...fake.setupIntents.values()].find((s) => setup.clientSecret.startsWith(s.id))!;
  return saved.payment_method!;
}

async function signedByBoth(provider: Person, payer: Person): Promise<Contract> {
  await roofDeal.talk(provider, payer);
  const drafted = await draftedContract(provider);
  await provider.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
  await payer.room.signContract({ contractId: drafted.id, textSha256: sha256Hex(drafted.text) });
  return drafted;
}

function actionsOf(person: Person): PaymentAction[] {
  return person.panel.events.flatMap((e: PanelEvent) => (e.event.case === "paymentAction" ? [e.event.value] : []));
}

async function statusOf(person: Person, contractId: string): Promise<ContractStatus> {
  return (await person.contracts.getContract({ contractId })).contract!.status;
}

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

describe("Stripe Connect onboarding, saved cards, 3-D Secure and declines through the real server", () => {
  it("a payee who has not finished onboarding is told before drafting; onboarding is recorded from account.updated and on refresh", async () => {
    const { fake, app } = await start();
    const { provider, payer } = await pair(app, "connect-onboard");

    // Not onboarded: no contract is drafted, and both people hear why.
    await roofDeal.talk(provider, payer);
    for (const person of [provider, payer]) {
      const notice = await person.panel.waitFor((e) => e.event.case === "error" && e.event.value.code === "payee_not_ready", "payee_not_ready");
      expect(notice.event.value).toMatchObject({ stage: "contract", message: expect.stringContaining("Stripe") });
    }
    expect(provider.panel.events.some((e) => e.event.case === "contract")).toBe(false);

    const payments = paymentsClient(app.baseUrl, provider.userToken);
    const first = await payments.startPayeeOnboarding({});
    expect(first.setup).toMatchObject({ payeeAccountCreated: true, chargesEnabled: false });
    expect(first.expiresAtMs).toBeGreaterThan(BigInt(Date.now()));
    // The account is created once, bound to the user: a second link is for the same account.
    await payments.startPayeeOnboarding({});
    expect(fake.accounts.size).toBe(1);
    const account = [...fake.accounts.values()][0]!;
    expect(account.metadata).toEqual({ user_id: provider.userId });
    expect(account.controller).toEqual({ fees: { payer: "application" }, losses: { payments: "application" }, stripe_dashboard: { type: "express" } });
    const creates = fake.requests.filter((r) => r.method === "POST" && r.path === "/v1/accounts");
    expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(new Set([`hs1:account:${provider.userId}`]));

    // A used link sends the person to refresh_url for a new one.
    await fetch(first.url);
    const reused = await fetch(first.url, { redirect: "manual" });
    expect(reused.headers.get("location")).toBe("https://app.example/?stripe=refresh");

    await onboard(fake, app, provider);
    expect(fake.deliveredEvents).toContainEqual({ type: "account.updated", status: 200 });
    expect((await payments.getPaymentSetup({})).setup).toMatchObject({ chargesEnabled: true, payoutsEnabled: true });
    // A refresh reads Stripe again: the account lost payouts (Stripe wants more details).
    account.payouts_enabled = false;
    expect((await payments.getPaymentSetup({ refresh: true })).setup).toMatchObject({ chargesEnabled: true, payoutsEnabled: false });

    // The payer has no Stripe account to onboard for paying: their setup says so.
    expect((await paymentsClient(app.baseUrl, payer.userToken).getPaymentSetup({})).setup).toMatchObject({ payeeAccountCreated: false, cardSaved: false });
  }, 60_000);

  it("3-D Secure: the payer alone is asked, completes it on the device, and the contract becomes active; charged once, with the platform fee", async () => {
    const { fake, app } = await start({ PLATFORM_FEE_BPS: "250" });
    const { provider, payer } = await pair(app, "connect-sca");
    await onboard(fake, app, provider);
    const card = await saveCard(fake, app, payer, "pm_card_authenticationRequired");
    expect(fake.paymentMethods.get(card)?.customer).toBe(fake.customers.values().next().value!.id);

    const contract = await signedByBoth(provider, payer);
    await expect.poll(() => actionsOf(payer).length, { timeout: 15_000 }).toBe(2);
    // Neither failed nor retried: pending, EXECUTING, each intent tried once.
    expect(await statusOf(payer, contract.id)).toBe(ContractStatus.EXECUTING);
    expect(fake.created()).toBe(2);
    const actions = actionsOf(payer);
    expect(actions.every((a) => a.kind === "authenticate" && a.clientSecret.includes("_secret_") && a.paymentMethodId === card)).toBe(true);
    // The client secret goes to the payer only.
    expect(actionsOf(provider)).toEqual([]);

    for (const action of actions) await completeAuthentication(fake, action.clientSecret, action.paymentMethodId);
    await fake.webhooksSettled();
    await expect.poll(() => statusOf(payer, contract.id), { timeout: 15_000 }).toBe(ContractStatus.ACTIVE);
    const after = (await payer.contracts.getContract({ contractId: contract.id })).contract!;
    expect(after.payments.map((p) => p.status)).toEqual([PaymentStatus.SUCCEEDED]);
    expect(after.holds.map((h) => h.status)).toEqual([EscrowHoldStatus.HELD]);
    expect(fake.created()).toBe(2);
    const paid = fake.intents.get(after.payments[0]!.railReference)!;
    expect(paid).toMatchObject({ status: "succeeded", amount: 6000, application_fee_amount: 150, payment_method: card });
    expect(fake.intents.get(after.holds[0]!.railReference)).toMatchObject({ status: "requires_capture", capture_method: "manual" });
  }, 60_000);

  it("3-D Secure the payer fails: the movement fails through the webhook and the payer alone is offered a retry", async () => {
    const { fake, app } = await start();
    const { provider, payer } = await pair(app, "connect-sca-fail");
    await onboard(fake, app, provider);
    const card = await saveCard(fake, app, payer, "pm_card_authenticationRequired");
    const contract = await signedByBoth(provider, payer);
    await expect.poll(() => actionsOf(payer).length, { timeout: 15_000 }).toBe(2);
    const [first] = actionsOf(payer);
    await completeAuthentication(fake, first!.clientSecret, card, false);
    await fake.webhooksSettled();
    await expect.poll(() => actionsOf(payer).filter((a) => a.kind === "retry").length, { timeout: 15_000 }).toBe(1);
    const seen = (await provider.contracts.getContract({ contractId: contract.id })).contract!;
    const movements = [...seen.payments.map((p) => p.status === PaymentStatus.FAILED), ...seen.holds.map((h) => h.status === EscrowHoldStatus.FAILED)];
    expect(movements.filter(Boolean)).toHaveLength(1);
    const retry = actionsOf(payer).find((a) => a.kind === "retry")!;
    expect(retry).toMatchObject({ lineItemId: first!.lineItemId, clientSecret: "", message: expect.stringContaining("authenticate") });
    expect(actionsOf(provider)).toEqual([]);
  }, 60_000);

  it("a decline shows the payer why; another user's card is PERMISSION_DENIED and nothing is charged; a retry on a new card of their own succeeds", async () => {
    const { fake, app } = await start();
    const { provider, payer } = await pair(app, "connect-decline");
    const victim = await joinRoom(app.baseUrl, "connect-victim", { ...roofDeal.client, displayName: "Vic" });
    cleanups.push(() => victim.panel.stop());
    await onboard(fake, app, provider);
    await saveCard(fake, app, payer, "pm_card_chargeCustomerFail");
    const victimCard = await saveCard(fake, app, victim, "pm_card_visa");

    const contract = await signedByBoth(provider, payer);
    await expect.poll(() => statusOf(provider, contract.id), { timeout: 15_000 }).toBe(ContractStatus.PAYMENT_FAILED);
    // Both see the failed contract and why; the payer is told the decline and that they may retry.
    const seen = (await provider.contracts.getContract({ contractId: contract.id })).contract!;
    expect(seen.payments[0]).toMatchObject({ status: PaymentStatus.FAILED, failureReason: expect.stringContaining("declined") });
    const retries = actionsOf(payer).filter((a) => a.kind === "retry");
    expect(retries.length).toBe(2);
    expect(retries[0]).toMatchObject({ declineCode: "generic_decline", message: expect.stringContaining("declined") });
    const chargedBefore = fake.created();

    const payments = paymentsClient(app.baseUrl, payer.userToken);
    const item = seen.terms!.lineItems[0]!;
    const denied = await refusal(payments.retryPayment({ contractId: contract.id, lineItemId: item.id, paymentMethodId: victimCard }));
    expect(denied.code).toBe(Code.PermissionDenied);
    expect(fake.created()).toBe(chargedBefore);
    expect(fake.requests.some((r) => r.path === "/v1/payment_intents" && r.rawBody.includes(victimCard))).toBe(false);
    // Only the payer may retry.
    const notPayer = await refusal(paymentsClient(app.baseUrl, provider.userToken).retryPayment({ contractId: contract.id, lineItemId: item.id }));
    expect(notPayer.code).toBe(Code.PermissionDenied);

    const goodCard = await saveCard(fake, app, payer, "pm_card_visa");
    for (const lineItem of seen.terms!.lineItems) await payments.retryPayment({ contractId: contract.id, lineItemId: lineItem.id });
    await expect.poll(() => statusOf(payer, contract.id), { timeout: 15_000 }).toBe(ContractStatus.ACTIVE);
    const after = (await payer.contracts.getContract({ contractId: contract.id })).contract!;
    expect(after.payments.map((p) => p.status)).toEqual([PaymentStatus.FAILED, PaymentStatus.SUCCEEDED]);
    // A new attempt key: Stripe keeps the decline under the first one.
    expect(after.payments[1]!.idempotencyKey).not.toBe(after.payments[0]!.idempotencyKey);
    expect(after.payments[1]!.idempotencyKey).toMatch(/^hs1:pay:.*:a[0-9a-f]{12}$/);
    expect(fake.intents.get(after.payments[1]!.railReference)).toMatchObject({ status: "succeeded", payment_method: goodCard });
    // A retry of what succeeded is refused.
    const again = await refusal(payments.retryPayment({ contractId: contract.id, lineItemId: item.id }));
    expect(again.code).toBe(Code.FailedPrecondition);
  }, 60_000);
});
