import Stripe from "stripe";
import type { Logger } from "pino";
import { PaymentRail as PaymentRailKind } from "../../gen/handshake/v1/deal_pb.js";
import { silentLogger } from "../core/log.js";
import { isRetryableStatus } from "../core/retry.js";
import { PaymentRailError, type PaymentRail, type RailRequest, type RailResult } from "./rail.js";

/** Card authorisation window when the customer is present (customer-initiated): 7 days. */
export const CUSTOMER_INITIATED_AUTH_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * Card authorisation window for merchant-initiated (`off_session`) payments: Visa keeps these
 * for only 4 days 18 hours, the shortest of the card networks, so we plan with it.
 */
export const MERCHANT_INITIATED_AUTH_MS = (4 * 24 + 18) * 60 * 60 * 1000;

/**
 * The payment method used in Stripe test mode when the payer's profile has none saved. Test mode
 * only: with a live key a missing payment method is an error, never a silent test card.
 */
export const TEST_MODE_PAYMENT_METHOD = "pm_card_visa";

/**
 * The Stripe API version every request is pinned to (the `Stripe-Version` header). Pinned in code,
 * not left to the account's default, so a dashboard upgrade cannot change the shapes we read; it
 * is the installed SDK's own version (typed as such), so upgrading `stripe` means a deliberate edit here.
 */
export const STRIPE_API_VERSION: Stripe.LatestApiVersion = "2026-10-28.endive";

/** Options of the Stripe rail. */
export interface StripeRailOptions {
  /** Platform secret key (`sk_test_…` / `sk_live_…`, env STRIPE_SECRET_KEY). Never logged. */
  secretKey: string;
  /** Base URL to reach instead of api.stripe.com, e.g. a local fake (env STRIPE_API_BASE); host/port/protocol win over it. */
  apiBase?: string;
  host?: string;
  port?: number;
  protocol?: "http" | "https";
  /** stripe-node's own retries of connection errors, 409 and 5xx, with the same key (default 2; 429 is not retried). */
  maxNetworkRetries?: number;
  /** Per-request timeout, ms (default 30 000). */
  timeoutMs?: number;
  /** Test mode allows the test card fallback; default: the key starts with `sk_test_`. */
  testMode?: boolean;
  /**
   * The platform account's country (env STRIPE_PLATFORM_COUNTRY, ISO 3166 alpha-2): when set, a
   * payee whose connected account is in another country is charged `on_behalf_of` that account.
   */
  platformCountry?: string;
  /** The platform's cut of each payment, basis points of the amount (env PLATFORM_FEE_BPS, default 0). */
  platformFeeBps?: number;
  log?: Logger;
}

/**
 * A Stripe Connect rail using destination charges: the PaymentIntent is created and confirmed on
 * the platform for the payer's customer and saved card (`off_session`), and the money goes to the
 * payee's connected account (`transfer_data.destination`). Escrow is `capture_method: manual` at
 * the held amount; capture sends `amount_to_capture` (a partial capture releases the rest);
 * release cancels the PaymentIntent. Every POST carries our idempotency key, so a retry after a
 * crash gets Stripe's first answer instead of a second charge.
 *
 * Hold expiry: because the server charges a saved card off-session, Stripe treats the
 * authorisation as merchant-initiated; we record the charge's `capture_before` when Stripe gives
 * it, else the PaymentIntent's creation time + 4 days 18 hours (Visa's MIT window; 7 days would
 * apply to customer-initiated payments).
 */
export function createStripeRail(options: StripeRailOptions): PaymentRail {
  const log = (options.log ?? silentLogger).child({ component: "stripe-rail" });
  const testMode = options.testMode ?? options.secretKey.startsWith("sk_test_");
  const stripe = createStripeClient(options);
  const feeBps = BigInt(options.platformFeeBps ?? 0);

  /**
   * Connected accounts' countries, read once each: a destination charge to an account in another
   * country than the platform's needs `on_behalf_of` (the account is the settlement merchant,
   * https://docs.stripe.com/connect/destination-charges), same-country ones do not. Cached, so a
   * resent call sends the same parameters.
   */
  const countries = new Map<string, Promise<string>>();
  function countryOf(accountId: string): Promise<string> {
    let country = countries.get(accountId);
    if (!country) {
      country = stripe.accounts.retrieve(accountId).then((a) => a.country ?? "");
      // A failed read is not cached: the next payment asks again.
      country.catch(() => countries.delete(accountId));
      countries.set(accountId, country);
    }
    return country;
  }

  async function onBehalfOf(payeeAccountId: string): Promise<string | undefined> {
    const platform = options.platformCountry?.toUpperCase();
    if (!platform) return undefined;
    try {
      const payee = (await countryOf(payeeAccountId)).toUpperCase();
      return payee !== "" && platform !== payee ? payeeAccountId : undefined;
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, "could not read account countries; charging without on_behalf_of");
      return undefined;
    }
  }

  function paymentMethodOf(request: RailRequest): string {
    if (request.payerPaymentMethodId) return request.payerPaymentMethodId;
    if (testMode) return TEST_MODE_PAYMENT_METHOD;
    throw new PaymentRailError(
      "The payer has no saved card: add a payment method to the profile before paying",
      "payer_payment_method_missing",
      false,
    );
  }

  /** Creates and confirms a destination charge; `manual` makes it a hold. */
  async function createIntent(request: RailRequest, manual: boolean): Promise<Stripe.PaymentIntent> {
    if (!request.payerCustomerId) {
      throw new PaymentRailError("The payer has no Stripe customer: set it in the profile before paying", "payer_customer_missing", false);
    }
    if (!request.payeeAccountId) {
      throw new PaymentRailError(
        "The payee has no Stripe connected account: they must finish Stripe onboarding before being paid",
        "payee_account_missing",
        false,
      );
    }
    const amount = toStripeAmount(request.amountMinor);
    const feeMinor = (request.amountMinor * feeBps) / 10_000n;
    const onBehalf = await onBehalfOf(request.payeeAccountId);
    const params: Stripe.PaymentIntentCreateParams = {
      amount,
      currency: request.currency.toLowerCase(),
      customer: request.payerCustomerId,
      payment_method: paymentMethodOf(request),
      // Cards only: they support manual capture and need no redirect, which off_session cannot do.
      allowed_payment_method_types: ["card"],
      confirm: true,
      off_session: true,
      capture_method: manual ? "manual" : "automatic",
      transfer_data: { destination: request.payeeAccountId },
      description: request.description.slice(0, 1000),
      metadata: { contract_id: request.contractId, line_item_id: request.lineItemId },
    };
    // For a hold the fee is taken at capture (capped at what is captured), so it is set there.
    if (feeMinor > 0n && !manual) params.application_fee_amount = Number(feeMinor);
    if (onBehalf) params.on_behalf_of = onBehalf;
    // The charge carries the exact authorisation deadline (capture_before).
    if (manual) params.expand = ["latest_charge"];
    try {
      return await stripe.paymentIntents.create(params, { idempotencyKey: request.idempotencyKey });
    } catch (err) {
      // Off-session, a card whose issuer wants 3-D Secure is refused with authentication_required
      // and the intent left for the payer to confirm on-session: an answer to act on, not a failure.
      if (err instanceof Stripe.errors.StripeCardError && err.code === "authentication_required" && err.payment_intent) return err.payment_intent;
      throw err;
    }
  }

  async function call<T>(what: string, request: RailRequest | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const mapped = toPaymentRailError(err);
      log.warn(
        {
          what,
          code: mapped.code,
          retryable: mapped.retryable,
          contractId: request?.contractId,
          lineItemId: request?.lineItemId,
          idempotencyKey: request?.idempotencyKey,
        },
        "stripe call failed",
      );
      throw mapped;
    }
  }

  const retrieve = (reference: string): Promise<Stripe.PaymentIntent> =>
    stripe.paymentIntents.retrieve(reference, { expand: ["latest_charge"] });

  return {
    kind: PaymentRailKind.STRIPE,

    pay: (request) => call("pay", request, async () => toRailResult(await createIntent(request, false))),

    hold: (request) => call("hold", request, async () => toRailResult(await createIntent(request, true))),

    capture: (reference, request) =>
      call("capture", request, async () => {
        const amountToCapture = toStripeAmount(request.amountMinor);
        try {
          const captureFee = (request.amountMinor * feeBps) / 10_000n;
          const intent = await stripe.paymentIntents.capture(
            reference,
            { amount_to_capture: amountToCapture, ...(captureFee > 0n ? { application_fee_amount: Number(captureFee) } : {}) },
            { idempotencyKey: request.idempotencyKey },
          );
          return toRailResult(intent);
        } catch (err) {
          // Captured before under a key Stripe has since pruned: the same capture is a no-op.
          if (unexpectedState(err)) {
            const intent = await retrieve(reference);
            if (intent.status === "succeeded" && intent.amount_received === amountToCapture) return toRailResult(intent);
          }
          throw err;
        }
      }),

    release: (reference, request) =>
      call("release", request, async () => {
        try {
          const intent = await stripe.paymentIntents.cancel(
            reference,
            { cancellation_reason: "requested_by_customer" },
            { idempotencyKey: request.idempotencyKey },
          );
          return toRailResult(intent);
        } catch (err) {
          // Already cancelled (or lapsed): the money is back with the payer, which is what release wants.
          if (unexpectedState(err)) {
            const intent = await retrieve(reference);
            if (intent.status === "canceled") return toRailResult(intent);
          }
          throw err;
        }
      }),

    status: (reference) => call("status", undefined, async () => toRailResult(await retrieve(reference))),

    // Search by the metadata every intent is created with (its index lags by up to a minute, so
    // "none" is only as good as that); the most advanced one wins if a retry ever made two.
    find: (request) =>
      call("find", request, async () => {
        const query = `metadata['contract_id']:'${searchValue(request.contractId)}' AND metadata['line_item_id']:'${searchValue(request.lineItemId)}'`;
        const found = await stripe.paymentIntents.search({ query, limit: 10 });
        const rank = (i: Stripe.PaymentIntent) => (i.status === "succeeded" ? 3 : i.status === "requires_capture" ? 2 : i.status === "canceled" ? 0 : 1);
        const best = [...found.data].sort((a, b) => rank(b) - rank(a) || b.created - a.created)[0];
        return best ? toRailResult(await retrieve(best.id)) : undefined;
      }),
  };
}

/** The stripe-node client of the rail and of the start-up key check, pinned to `STRIPE_API_VERSION`. */
export function createStripeClient(options: StripeRailOptions): Stripe {
  return new Stripe(options.secretKey, {
    ...endpoint(options),
    apiVersion: STRIPE_API_VERSION,
    maxNetworkRetries: options.maxNetworkRetries ?? 2,
    timeout: options.timeoutMs ?? 30_000,
    // Telemetry would write an id file under $HOME and report request timings to Stripe.
    telemetry: false,
    appInfo: { name: "handshake" },
  });
}

/** What the start-up check of STRIPE_SECRET_KEY found. */
export type StripeKeyCheck =
  | { ok: true; livemode: boolean }
  | { ok: false; reason: "refused" | "forbidden" | "unreachable"; message: string };

/**
 * Checks the platform key at start with GET /v1/balance, a read any secret key and any restricted
 * key with balance read access may make: a bad key stops the server before anyone signs a contract
 * instead of failing their first payment. "unreachable" (network, 5xx) is for the caller to judge.
 */
export async function checkStripeKey(options: StripeRailOptions): Promise<StripeKeyCheck> {
  const stripe = createStripeClient({ ...options, maxNetworkRetries: options.maxNetworkRetries ?? 1, timeoutMs: options.timeoutMs ?? 10_000 });
  try {
    const balance = await stripe.balance.retrieve();
    return { ok: true, livemode: balance.livemode };
  } catch (err) {
    if (err instanceof Stripe.errors.StripeAuthenticationError) {
      return { ok: false, reason: "refused", message: `Stripe refused STRIPE_SECRET_KEY (401: ${err.message}); set a valid sk_… or rk_… key` };
    }
    if (err instanceof Stripe.errors.StripePermissionError) {
      return { ok: false, reason: "forbidden", message: `STRIPE_SECRET_KEY may not read the balance (403: ${err.message}); give the restricted key balance read access` };
    }
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, reason: "unreachable", message: `Could not check STRIPE_SECRET_KEY with Stripe: ${message}` };
  }
}

/** When a hold lapses: the charge's `capture_before` if known, else creation + the merchant-initiated window. */
export function authorizationDeadlineMs(intent: Pick<Stripe.PaymentIntent, "created" | "latest_charge">): number {
  const charge = intent.latest_charge;
  const captureBefore = charge && typeof charge === "object" ? charge.payment_method_details?.card?.capture_before : undefined;
  if (typeof captureBefore === "number" && captureBefore > 0) return captureBefore * 1000;
  return intent.created * 1000 + MERCHANT_INITIATED_AUTH_MS;
}

/** Converts a PaymentIntent into the rail's view of it. */
export function toRailResult(intent: Stripe.PaymentIntent): RailResult {
  const reference = intent.id;
  switch (intent.status) {
    case "succeeded":
      return intent.capture_method === "manual"
        ? { reference, status: "captured", capturedMinor: BigInt(intent.amount_received) }
        : { reference, status: "succeeded" };
    case "requires_capture":
      return { reference, status: "held", capturedMinor: 0n, expiresAtMs: authorizationDeadlineMs(intent) };
    case "canceled":
      // A cancelled payment that never held money failed; a cancelled hold was released (or lapsed).
      return intent.capture_method === "manual"
        ? { reference, status: "released", capturedMinor: 0n }
        : { reference, status: "failed", failureReason: "The payment was cancelled" };
    case "requires_payment_method": {
      const error = intent.last_payment_error;
      if (error?.code === "authentication_required") return needsAuthentication(intent);
      return {
        reference,
        status: "failed",
        failureReason: error?.message ?? "The card was declined",
        ...(error?.decline_code ? { declineCode: error.decline_code } : {}),
        ...paymentMethodField(intent),
      };
    }
    case "requires_action":
      return needsAuthentication(intent);
    default:
      // processing / requires_confirmation: not settled yet; the caller may ask again later.
      throw new PaymentRailError(`The payment is still ${intent.status}`, "not_settled", true, true);
  }
}

/** An intent the payer must confirm on their device (3-D Secure), with what Stripe.js needs for it. */
function needsAuthentication(intent: Stripe.PaymentIntent): RailResult {
  return {
    reference: intent.id,
    status: "requires_action",
    clientSecret: intent.client_secret ?? "",
    failureReason: "The card issuer asks the payer to authenticate this payment",
    ...paymentMethodField(intent),
  };
}

function paymentMethodField(intent: Stripe.PaymentIntent): { paymentMethodId?: string } {
  const method = intent.payment_method ?? intent.last_payment_error?.payment_method;
  const id = typeof method === "string" ? method : method?.id;
  return id ? { paymentMethodId: id } : {};
}

/** Stripe error codes that mean the payee's connected account cannot take this money. */
const PAYEE_ACCOUNT_CODES = new Set([
  "account_invalid",
  "account_closed",
  "insufficient_capabilities_for_transfer",
  "transfers_not_allowed",
  "account_country_invalid_address",
]);

/** Maps anything stripe-node throws to a `PaymentRailError` with a message fit to show a person. */
export function toPaymentRailError(err: unknown): PaymentRailError {
  if (err instanceof PaymentRailError) return err;
  const E = Stripe.errors;
  if (err instanceof E.StripeCardError) {
    const declineCode = err.decline_code ?? "";
    if (declineCode === "insufficient_funds" || err.code === "insufficient_funds") {
      return new PaymentRailError("The card was declined: insufficient funds", "insufficient_funds", false, false, "insufficient_funds");
    }
    return new PaymentRailError(`The card was declined: ${err.message}`, err.code ?? "card_declined", false, false, declineCode);
  }
  if (err instanceof E.StripeIdempotencyError) {
    return new PaymentRailError(
      "Stripe refused the request: its idempotency key was already used with different parameters",
      "idempotency_error",
      false,
    );
  }
  if (err instanceof E.StripeRateLimitError) {
    return new PaymentRailError("Stripe is limiting our request rate; try again shortly", "rate_limited", true, true);
  }
  if (err instanceof E.StripeAuthenticationError) {
    return new PaymentRailError("Stripe rejected the platform's API key (STRIPE_SECRET_KEY)", "stripe_authentication", false);
  }
  if (err instanceof E.StripePermissionError) {
    return new PaymentRailError(`The platform's Stripe key may not do this: ${err.message}`, "stripe_permission", false);
  }
  if (err instanceof E.StripeConnectionError) {
    return /timeout/i.test(err.message)
      ? new PaymentRailError("Stripe did not answer in time", "timeout", true, true)
      : new PaymentRailError("Could not reach Stripe", "network", true, true);
  }
  if (err instanceof E.StripeInvalidRequestError) {
    const code = err.code ?? "";
    if (PAYEE_ACCOUNT_CODES.has(code) || err.param?.startsWith("transfer_data") || /destination/i.test(err.message)) {
      return new PaymentRailError(
        `The payee's Stripe account cannot receive this payment (is onboarding finished?): ${err.message}`,
        "payee_account_not_ready",
        false,
      );
    }
    if (code === "payment_intent_unexpected_state") {
      return new PaymentRailError(`The payment is not in a state that allows this: ${err.message}`, "unexpected_state", false);
    }
    if (code === "resource_missing") {
      return new PaymentRailError(`Stripe does not know this payment: ${err.message}`, "unknown_reference", false);
    }
    return new PaymentRailError(`Stripe refused the request: ${err.message}`, code || "invalid_request", false);
  }
  if (err instanceof E.StripeAPIError) {
    return new PaymentRailError("Stripe had an internal error; try again", "stripe_unavailable", true, true);
  }
  if (err instanceof E.StripeError) {
    const status = err.statusCode ?? 0;
    return new PaymentRailError(`Stripe error: ${err.message}`, err.code ?? "stripe_error", isRetryableStatus(status), status >= 500 || status === 429 || status === 0);
  }
  const message = err instanceof Error ? err.message : String(err);
  return new PaymentRailError(`Stripe call failed: ${message}`, "stripe_error", false);
}

/** A value inside a quoted Stripe search clause: backslash and quote escaped. */
function searchValue(value: string): string {
  return value.replace(/[\\']/g, (c) => `\\${c}`);
}

function unexpectedState(err: unknown): boolean {
  return err instanceof Stripe.errors.StripeInvalidRequestError && err.code === "payment_intent_unexpected_state";
}

/** Stripe takes amounts as JSON numbers; refuse anything a double cannot hold exactly. */
function toStripeAmount(amountMinor: bigint): number {
  if (amountMinor <= 0n || amountMinor > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new PaymentRailError(`Amount ${amountMinor} is out of range`, "invalid_amount", false);
  }
  return Number(amountMinor);
}

function endpoint(options: StripeRailOptions): { host?: string; port?: number; protocol?: "http" | "https" } {
  const out: { host?: string; port?: number; protocol?: "http" | "https" } = {};
  if (options.apiBase) {
    const url = new URL(options.apiBase);
    const protocol = url.protocol === "http:" ? "http" : "https";
    out.protocol = protocol;
    out.host = url.hostname;
    out.port = url.port ? Number(url.port) : protocol === "http" ? 80 : 443;
  }
  if (options.host !== undefined) out.host = options.host;
  if (options.port !== undefined) out.port = options.port;
  if (options.protocol !== undefined) out.protocol = options.protocol;
  return out;
}
