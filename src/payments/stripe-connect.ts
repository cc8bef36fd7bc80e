import Stripe from "stripe";
import { createStripeClient, toPaymentRailError, type StripeRailOptions } from "./stripe-rail.js";

/** A connected account as the server needs it: whose it is and whether Stripe lets it be paid. */
export interface ConnectedAccountView {
  accountId: string;
  /** The `user_id` metadata the server created the account with. */
  userId: string;
  chargesEnabled: boolean;
  payoutsEnabled: boolean;
}

/** A SetupIntent as the server needs it (from an API answer or a `setup_intent.succeeded` event). */
export interface SetupIntentView {
  id: string;
  status: string;
  customerId: string;
  paymentMethodId: string;
  /** The `user_id` metadata the server created it with. */
  userId: string;
}

/**
 * The Stripe calls of onboarding payees and saving payers' cards, on the same pinned client as
 * the rail. Every create carries an idempotency key made from the user id, so two concurrent
 * first calls get one account or customer. Vendor JSON stays in here.
 */
export interface StripeConnect {
  /**
   * Creates the user's connected account: controller properties as Stripe recommends for a
   * platform that pays out (the platform pays fees and carries losses, Stripe's Express dashboard
   * and hosted onboarding), card payments and transfers requested.
   */
  createAccount(userId: string, country: string | undefined): Promise<ConnectedAccountView>;
  /** A single-use onboarding link for the account. */
  createAccountLink(accountId: string, refreshUrl: string, returnUrl: string): Promise<{ url: string; expiresAtMs: number }>;
  retrieveAccount(accountId: string): Promise<ConnectedAccountView>;
  /** Creates the user's customer (the payer side). */
  createCustomer(userId: string, name: string): Promise<string>;
  /** A SetupIntent for off-session use later, cards only; returns its client secret. */
  createSetupIntent(customerId: string, userId: string): Promise<{ id: string; clientSecret: string }>;
  /** A hosted Checkout page in setup mode that saves a card for the customer. */
  createSetupCheckout(customerId: string, userId: string, currency: string, successUrl: string, cancelUrl: string): Promise<{ url: string }>;
  retrieveSetupIntent(id: string): Promise<SetupIntentView>;
  /** The customer a payment method is attached to, or "" when none (or Stripe does not know it). */
  paymentMethodCustomer(paymentMethodId: string): Promise<string>;
}

/** Creates the adapter; errors come out as `PaymentRailError` with a message fit to show a person. */
export function createStripeConnect(options: StripeRailOptions): StripeConnect {
  const stripe = createStripeClient(options);
  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw toPaymentRailError(err);
    }
  };
  return {
    createAccount: (userId, country) =>
      call(async () =>
        toAccountView(
          await stripe.accounts.create(
            {
              ...(country ? { country } : {}),
              controller: {
                fees: { payer: "application" },
                losses: { payments: "application" },
                stripe_dashboard: { type: "express" },
              },
              capabilities: { card_payments: { requested: true }, transfers: { requested: true } },
              metadata: { user_id: userId },
            },
            { idempotencyKey: `hs1:account:${userId}` },
          ),
        ),
      ),
    createAccountLink: (accountId, refreshUrl, returnUrl) =>
      call(async () => {
        const link = await stripe.accountLinks.create({ account: accountId, type: "account_onboarding", refresh_url: refreshUrl, return_url: returnUrl });
        return { url: link.url, expiresAtMs: link.expires_at * 1000 };
      }),
    retrieveAccount: (accountId) => call(async () => toAccountView(await stripe.accounts.retrieve(accountId))),
    createCustomer: (userId, name) =>
      call(async () => (await stripe.customers.create({ name: name.slice(0, 256), metadata: { user_id: userId } }, { idempotencyKey: `hs1:customer:${userId}` })).id),
    createSetupIntent: (customerId, userId) =>
      call(async () => {
        const intent = await stripe.setupIntents.create({
          customer: customerId,
          usage: "off_session",
          allowed_payment_method_types: ["card"],
          metadata: { user_id: userId },
        });
        if (!intent.client_secret) throw new Error("Stripe gave the SetupIntent no client secret");
        return { id: intent.id, clientSecret: intent.client_secret };
      }),
    createSetupCheckout: (customerId, userId, currency, successUrl, cancelUrl) =>
      call(async () => {
        const session = await stripe.checkout.sessions.create({
          mode: "setup",
          customer: customerId,
          currency: currency.toLowerCase(),
          allowed_payment_method_types: ["card"],
          setup_intent_data: { metadata: { user_id: userId } },
          success_url: successUrl,
          cancel_url: cancelUrl,
        });
        if (!session.url) throw new Error("Stripe gave the Checkout session no URL");
        return { url: session.url };
      }),
    retrieveSetupIntent: (id) => call(async () => toSetupIntentView(await stripe.setupIntents.retrieve(id))),
    paymentMethodCustomer: (paymentMethodId) =>
      call(async () => {
        try {
          const method = await stripe.paymentMethods.retrieve(paymentMethodId);
          return idOf(method.customer);
        } catch (err) {
          if (err instanceof Stripe.errors.StripeInvalidRequestError && err.code === "resource_missing") return "";
          throw err;
        }
      }),
  };
}

/** The view of an `account` object (API answer or `account.updated` event). */
export function toAccountView(account: Pick<Stripe.Account, "id" | "metadata" | "charges_enabled" | "payouts_enabled">): ConnectedAccountView {
  return {
    accountId: account.id,
    userId: account.metadata?.user_id ?? "",
    chargesEnabled: account.charges_enabled === true,
    payoutsEnabled: account.payouts_enabled === true,
  };
}

/** The view of a `setup_intent` object (API answer or `setup_intent.succeeded` event). */
export function toSetupIntentView(intent: Pick<Stripe.SetupIntent, "id" | "status" | "customer" | "payment_method" | "metadata">): SetupIntentView {
  return {
    id: intent.id,
    status: intent.status,
    customerId: idOf(intent.customer),
    paymentMethodId: idOf(intent.payment_method),
    userId: intent.metadata?.user_id ?? "",
  };
}

/** An expandable Stripe field's id: the string itself, or the expanded object's id. */
function idOf(value: string | { id: string } | null | undefined): string {
  if (!value) return "";
  return typeof value === "string" ? value : value.id;
}
