import { createClient, type Client } from "@connectrpc/connect";
import { PaymentsService } from "../../gen/handshake/v1/payments_service_pb.js";
import type { FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { grpcTransport } from "./app.js";

/** The publishable key the Stripe tests configure (STRIPE_PUBLISHABLE_KEY) and Stripe.js sends. */
export const TEST_PUBLISHABLE_KEY = "pk_test_handshake";

/** PaymentsService over gRPC with the person's user token. */
export function paymentsClient(baseUrl: string, userToken: string): Client<typeof PaymentsService> {
  return createClient(PaymentsService, grpcTransport(baseUrl, userToken));
}

/** A call from the payer's device to Stripe as Stripe.js makes it: form-encoded, the publishable key as `key`. */
export async function stripeJsCall(fake: FakeStripe, path: string, params: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${fake.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ key: TEST_PUBLISHABLE_KEY, ...params }).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The SetupIntent id inside its client secret (`seti_…_secret_…`). */
export function intentIdOf(clientSecret: string): string {
  return clientSecret.slice(0, clientSecret.indexOf("_secret_"));
}

/** Saves `token` (a test card such as pm_card_visa) on the SetupIntent, as Stripe.js confirmCardSetup does on the device. */
export async function confirmCardSetup(fake: FakeStripe, clientSecret: string, token: string): Promise<void> {
  const answer = await stripeJsCall(fake, `/v1/setup_intents/${intentIdOf(clientSecret)}/confirm`, { client_secret: clientSecret, payment_method: token });
  if (answer.status !== 200) throw new Error(`card setup refused: ${JSON.stringify(answer.body)}`);
}

/**
 * What Stripe.js confirmCardPayment does for a payment whose issuer wants 3-D Secure: confirms on
 * the device, then the payer answers on the 3-D Secure page the intent's next_action names.
 */
export async function completeAuthentication(fake: FakeStripe, clientSecret: string, paymentMethodId: string, approve = true): Promise<void> {
  const confirmed = await stripeJsCall(fake, `/v1/payment_intents/${intentIdOf(clientSecret)}/confirm`, { client_secret: clientSecret, payment_method: paymentMethodId });
  const next = confirmed.body.next_action as { redirect_to_url?: { url: string } } | null | undefined;
  if (confirmed.status !== 200 || !next?.redirect_to_url) throw new Error(`confirm did not ask for 3-D Secure: ${JSON.stringify(confirmed.body)}`);
  const page = await fetch(next.redirect_to_url.url);
  if (!(await page.text()).includes("Complete authentication")) throw new Error("no 3-D Secure page");
  const answer = await fetch(next.redirect_to_url.url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: `result=${approve ? "complete" : "fail"}`,
    redirect: "manual",
  });
  await answer.text();
}
