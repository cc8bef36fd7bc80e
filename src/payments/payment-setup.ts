import type { Logger } from "pino";
import { create } from "@bufbuild/protobuf";
import { PaymentSetupSchema, type PaymentSetup } from "../../gen/handshake/v1/payments_service_pb.js";
import type { AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { FailedPreconditionError, NotFoundError, PermissionDeniedError } from "../core/errors.js";
import { silentLogger } from "../core/log.js";
import type { Store } from "../store/store.js";
import type { ConnectedAccountView, SetupIntentView, StripeConnect } from "./stripe-connect.js";

/** Where Stripe sends people back to after hosted pages (env STRIPE_RETURN_URL / STRIPE_REFRESH_URL). */
export interface PaymentSetupUrls {
  /** Where onboarding returns to; the app then asks GetPaymentSetup with refresh. */
  returnUrl: string;
  /** Where an expired or used onboarding link sends the person; the app asks for a new link there. */
  refreshUrl: string;
}

/** Options of the payment setup service. */
export interface PaymentSetupOptions {
  store: Store;
  /** Undefined with the ledger rail: then nothing here is available. */
  stripe: StripeConnect | undefined;
  urls: PaymentSetupUrls;
  /** Stripe publishable key for Stripe.js (env STRIPE_PUBLISHABLE_KEY); "" when not set. */
  publishableKey: string;
  /** Where browsers load Stripe.js from (env STRIPE_JS_URL). */
  stripeJsUrl: string;
  log?: Logger;
}

/** Whether a payee can be paid on the configured rail, and if not, why in words. */
export type PayeeReadiness = { ready: true } | { ready: false; reason: string };

/**
 * People's Stripe objects, created by the server and bound to their user in their stored profile
 * (DESIGN.md: never named by a client): a payee's connected account and its onboarding state, a
 * payer's customer and saved card. Every method acts on the caller's own objects only.
 */
export interface PaymentSetupService {
  /** True when payments go through Stripe (the other methods refuse otherwise). */
  readonly enabled: boolean;
  /** Creates the connected account once, then a fresh onboarding link. */
  startOnboarding(userId: string): Promise<{ url: string; expiresAtMs: number; setup: PaymentSetup }>;
  /** The user's setup; `refresh` reads the connected account from Stripe and records it first. */
  getSetup(userId: string, refresh: boolean): Promise<PaymentSetup>;
  /** Creates the customer once, then a SetupIntent (client secret) or a hosted setup page. */
  startCardSetup(userId: string, hosted: boolean): Promise<{ clientSecret: string; hostedUrl: string; publishableKey: string; stripeJsUrl: string }>;
  /** Makes `paymentMethodId` the user's default, after checking at Stripe that it is attached to their own customer. */
  useOwnPaymentMethod(userId: string, paymentMethodId: string): Promise<void>;
  /** `account.updated`: records charges/payouts enabled on the account's owner. Returns what it did. */
  applyAccountUpdate(account: ConnectedAccountView): Promise<string>;
  /** `setup_intent.succeeded`: the card becomes the owner's default. Returns what it did. */
  applySetupSucceeded(intent: SetupIntentView): Promise<string>;
  /** Whether Stripe lets `userId` be paid (always ready on the ledger). */
  payeeReadiness(userId: string): Promise<PayeeReadiness>;
}

/** Creates the service. */
export function createPaymentSetupService(options: PaymentSetupOptions): PaymentSetupService {
  const { store, stripe, urls, publishableKey, stripeJsUrl } = options;
  const log = (options.log ?? silentLogger).child({ component: "payment-setup" });

  function requireStripe(): StripeConnect {
    if (!stripe) throw new FailedPreconditionError("payments use the embedded ledger here: there is no Stripe account or card to set up");
    return stripe;
  }

  async function profileOf(userId: string): Promise<AgentProfile> {
    const profile = await store.getProfile(userId);
    if (!profile) throw new NotFoundError("join a room first: there is no profile for this user yet");
    return profile;
  }

  /** Writes server-bound Stripe fields into the stored profile, leaving everything else as stored. */
  async function bind(userId: string, fields: Partial<Pick<AgentProfile, "stripeAccountId" | "stripeChargesEnabled" | "stripePayoutsEnabled" | "stripeCustomerId" | "stripePaymentMethodId">>): Promise<AgentProfile> {
    const profile = { ...(await profileOf(userId)), ...fields };
    await store.saveProfile(userId, profile);
    return profile;
  }

  function setupOf(profile: AgentProfile): PaymentSetup {
    return create(PaymentSetupSchema, {
      payeeAccountCreated: profile.stripeAccountId !== "",
      chargesEnabled: profile.stripeChargesEnabled,
      payoutsEnabled: profile.stripePayoutsEnabled,
      cardSaved: profile.stripePaymentMethodId !== "",
      publishableKey,
      stripeJsUrl,
    });
  }

  async function ensureAccount(userId: string): Promise<AgentProfile> {
    const profile = await profileOf(userId);
    if (profile.stripeAccountId) return profile;
    // The account's key is made from the user id, so two first calls at once get one account.
    const account = await requireStripe().createAccount(userId, undefined);
    log.info({ userId, accountId: account.accountId }, "stripe connected account created");
    return bind(userId, { stripeAccountId: account.accountId, stripeChargesEnabled: account.chargesEnabled, stripePayoutsEnabled: account.payoutsEnabled });
  }

  async function ensureCustomer(userId: string): Promise<AgentProfile> {
    const profile = await profileOf(userId);
    if (profile.stripeCustomerId) return profile;
    const customerId = await requireStripe().createCustomer(userId, profile.displayName);
    log.info({ userId, customerId }, "stripe customer created");
    return bind(userId, { stripeCustomerId: customerId });
  }

  return {
    enabled: stripe !== undefined,

    async startOnboarding(userId) {
      const profile = await ensureAccount(userId);
      const link = await requireStripe().createAccountLink(profile.stripeAccountId, urls.refreshUrl, urls.returnUrl);
      return { ...link, setup: setupOf(profile) };
    },

    async getSetup(userId, refresh) {
      requireStripe();
      const profile = await profileOf(userId);
      if (!refresh || !profile.stripeAccountId) return setupOf(profile);
      const account = await requireStripe().retrieveAccount(profile.stripeAccountId);
      return setupOf(await bind(userId, { stripeChargesEnabled: account.chargesEnabled, stripePayoutsEnabled: account.payoutsEnabled }));
    },

    async startCardSetup(userId, hosted) {
      const profile = await ensureCustomer(userId);
      const connect = requireStripe();
      if (hosted) {
        const page = await connect.createSetupCheckout(profile.stripeCustomerId, userId, profile.currency || "GBP", urls.returnUrl, urls.refreshUrl);
        return { clientSecret: "", hostedUrl: page.url, publishableKey, stripeJsUrl };
      }
      const intent = await connect.createSetupIntent(profile.stripeCustomerId, userId);
      return { clientSecret: intent.clientSecret, hostedUrl: "", publishableKey, stripeJsUrl };
    },

    async useOwnPaymentMethod(userId, paymentMethodId) {
      const profile = await profileOf(userId);
      const owner = profile.stripeCustomerId ? await requireStripe().paymentMethodCustomer(paymentMethodId) : "";
      // Someone else's card, or one attached to nobody: never charged on this user's behalf.
      if (owner === "" || owner !== profile.stripeCustomerId) {
        log.warn({ userId }, "payment method of another customer refused");
        throw new PermissionDeniedError("that payment method is not one of your saved cards");
      }
      if (profile.stripePaymentMethodId !== paymentMethodId) await bind(userId, { stripePaymentMethodId: paymentMethodId });
    },

    async applyAccountUpdate(account) {
      const profile = account.userId ? await store.getProfile(account.userId) : undefined;
      // Only the account the server bound to that user: metadata alone proves nothing.
      if (!profile || profile.stripeAccountId !== account.accountId) return "ignored: account not bound to a user";
      if (profile.stripeChargesEnabled === account.chargesEnabled && profile.stripePayoutsEnabled === account.payoutsEnabled) return "no change";
      await bind(account.userId, { stripeChargesEnabled: account.chargesEnabled, stripePayoutsEnabled: account.payoutsEnabled });
      log.info({ userId: account.userId, chargesEnabled: account.chargesEnabled, payoutsEnabled: account.payoutsEnabled }, "stripe account state recorded");
      return "account updated";
    },

    async applySetupSucceeded(intent) {
      const profile = intent.userId ? await store.getProfile(intent.userId) : undefined;
      if (!profile || !profile.stripeCustomerId || profile.stripeCustomerId !== intent.customerId) return "ignored: customer not bound to a user";
      if (intent.status !== "succeeded" || !intent.paymentMethodId) return "ignored: setup not succeeded";
      if (profile.stripePaymentMethodId === intent.paymentMethodId) return "no change";
      await bind(intent.userId, { stripePaymentMethodId: intent.paymentMethodId });
      log.info({ userId: intent.userId }, "saved card recorded as the default");
      return "card saved";
    },

    async payeeReadiness(userId) {
      if (!stripe) return { ready: true };
      const profile = await store.getProfile(userId);
      if (!profile?.stripeAccountId) {
        return { ready: false, reason: `${profile?.displayName || "The payee"} has not connected a Stripe account to be paid into yet: start payee onboarding first` };
      }
      if (!profile.stripeChargesEnabled) {
        return { ready: false, reason: `${profile.displayName || "The payee"}'s Stripe account cannot take payments yet: finish Stripe onboarding first` };
      }
      return { ready: true };
    },
  };
}
