import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import type { AddressInfo, Socket } from "node:net";
import {
  createWebhookSender,
  paymentMethodView,
  testCard,
  type FakeAccount,
  type FakeCheckoutSession,
  type FakePaymentMethod,
  type FakeSetupIntent,
  type WebhookTarget,
} from "./fake-stripe-connect.js";

/**
 * A local Stripe for tests: node:http on 127.0.0.1, port 0, speaking the parts of Stripe's v1 API
 * the Stripe rail uses, on the wire (form-encoded bodies with qs-style brackets, JSON answers,
 * Stripe's error envelope, `Idempotency-Key` semantics). Unlike stripe-mock it keeps state, so a
 * PaymentIntent really walks requires_capture → succeeded / canceled.
 *
 * Magic values, like Stripe's test mode: payment method `pm_card_chargeDeclined` → 402
 * card_declined; `pm_card_chargeDeclinedInsufficientFunds` → 402 insufficient_funds;
 * destination `acct_unready` → 400 insufficient_capabilities_for_transfer; a destination not
 * starting with `acct_` → 400 "No such destination". Keys: `sk_test_…` and `rk_test_…` are
 * accepted (any other → 401), `rk_test_denied…` is a restricted key without access (403).
 *
 * Connect and saved cards (fake-stripe-connect.ts): accounts start with charges and payouts
 * disabled until their Account Link's hosted page (or `completeOnboarding`) finishes onboarding;
 * customers; SetupIntents confirmed with a test token attach a new payment method to the
 * customer; a PaymentIntent for a customer on another customer's payment method is refused, as
 * Stripe does. `pm_card_authenticationRequired` (4000 0027 6000 3184) wants 3-D Secure: off-session
 * it is refused with 402 authentication_required (the intent left requires_payment_method, its
 * client secret in the error), on-session it goes requires_action; the payer completes it on the
 * hosted 3-D Secure page (or `authenticate`). A publishable key (`pk_test_…`) may only confirm or
 * read an intent whose client secret it sends, as Stripe.js does; CORS is open for it. With
 * `deliverWebhooksTo`, every state change is POSTed as a signed event (`Stripe-Signature` t=,v1=).
 */
export interface FakeStripe {
  /** e.g. http://127.0.0.1:54321 */
  url: string;
  host: string;
  port: number;
  /** Every request received, in order, replays and scripted faults included. */
  requests: RecordedRequest[];
  /** PaymentIntents by id, as the fake holds them. */
  intents: Map<string, FakeIntent>;
  /** PaymentIntents created (not replays): each is one charge or authorisation attempt. */
  created(): number;
  /**
   * Answers the next `times` matching requests with `status` before they reach the API (like an
   * overloaded front end), so they are not stored under their idempotency key. With `stored`, a
   * 500 comes from inside the API instead, after execution began: Stripe saves it under the key and
   * answers every retry with that key with it (nothing is carried out).
   */
  failNext(fault: { status: 429 | 500 | 503; times?: number; match?: (r: RecordedRequest) => boolean; stored?: boolean }): void;
  /**
   * Never answers the next matching request (the client's timeout must fire). With
   * `afterExecuting`, the request is carried out (and its answer saved under its key) first, as
   * when Stripe did the work but the answer was lost on the way back.
   */
  hangNext(match?: (r: RecordedRequest) => boolean, options?: { afterExecuting?: boolean }): void;
  /** The JSON body Stripe would POST to a webhook endpoint for `type` about the intent `intentId`. */
  eventFor(type: string, intentId: string): string;
  /** Resolves when `count` requests in total have arrived. */
  waitForRequests(count: number): Promise<void>;
  accounts: Map<string, FakeAccount>;
  customers: Map<string, { id: string; name: string | null; metadata: Record<string, string> }>;
  paymentMethods: Map<string, FakePaymentMethod>;
  setupIntents: Map<string, FakeSetupIntent>;
  checkoutSessions: Map<string, FakeCheckoutSession>;
  /** POSTs every event from now on to `target`, signed with its secret (undefined: stop). */
  deliverWebhooksTo(target: WebhookTarget | undefined): void;
  /** Resolves once every event sent so far was answered by the endpoint. */
  webhooksSettled(): Promise<void>;
  /** Events delivered, in order, with the endpoint's HTTP status (0: no answer). */
  deliveredEvents: { type: string; status: number }[];
  /** Finishes onboarding of a connected account as its hosted page would: charges and payouts enabled, account.updated sent. */
  completeOnboarding(accountId: string): void;
  /** Confirms a SetupIntent with a test token as Stripe.js would (on the payer's device). */
  confirmSetup(setupIntentId: string, token: string): void;
  /** The payer's answer on the 3-D Secure page of an intent in requires_action. */
  authenticate(intentId: string, approve: boolean): void;
  close(): Promise<void>;
}

/** One request as the fake saw it. */
export interface RecordedRequest {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  authorization: string | undefined;
  stripeVersion: string | undefined;
  /** The decoded form body (or query, for GET), nested as qs would. */
  params: Record<string, unknown>;
  rawBody: string;
  /** True when answered from the idempotency cache. */
  replayed: boolean;
}

/** A PaymentIntent in the fake's memory (the JSON fields the rail reads). */
export interface FakeIntent {
  id: string;
  object: "payment_intent";
  amount: number;
  amount_capturable: number;
  amount_received: number;
  currency: string;
  status: string;
  capture_method: string;
  customer: string | null;
  payment_method: string | null;
  description: string | null;
  metadata: Record<string, string>;
  transfer_data: { destination: string } | null;
  created: number;
  cancellation_reason: string | null;
  last_payment_error: { type: string; code: string; decline_code?: string; message: string } | null;
  latest_charge: string | null;
  livemode: false;
  client_secret?: string;
  off_session?: boolean;
  next_action?: unknown;
  application_fee_amount?: number | null;
  on_behalf_of?: string | null;
}

interface Answer {
  status: number;
  body: unknown;
}

/** Restricted test keys starting with this are granted nothing: every request is answered 403. */
export const DENIED_KEY_PREFIX = "rk_test_denied";

/** Visa's merchant-initiated authorisation window, which the fake reports as `capture_before`. */
const MIT_WINDOW_SEC = (4 * 24 + 18) * 3600;

/** Starts the fake. `clockMs` gives Stripe's notion of now (for `created`). */
export async function startFakeStripe(options: { clockMs?: () => number } = {}): Promise<FakeStripe> {
  const clockMs = options.clockMs ?? Date.now;
  const requests: RecordedRequest[] = [];
  const intents = new Map<string, FakeIntent>();
  const idempotency = new Map<string, { fingerprint: string; answer: Answer }>();
  const faults: { status: number; times: number; match: (r: RecordedRequest) => boolean; stored: boolean }[] = [];
  const hangs: { match: (r: RecordedRequest) => boolean; afterExecuting: boolean }[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const sockets = new Set<Socket>();
  let createdCount = 0;
  let seq = 0;
  let baseUrl = "";
  const accounts = new Map<string, FakeAccount>();
  const customers = new Map<string, { id: string; name: string | null; metadata: Record<string, string> }>();
  const paymentMethods = new Map<string, FakePaymentMethod>();
  const setupIntents = new Map<string, FakeSetupIntent>();
  const checkoutSessions = new Map<string, FakeCheckoutSession>();
  const accountLinks = new Map<string, { account: string; refreshUrl: string; returnUrl: string; expiresAt: number; used: boolean }>();
  const webhooks = createWebhookSender(clockMs);
  const nowSec = () => Math.floor(clockMs() / 1000);
  const secretFor = (id: string) => `${id}_secret_${randomBytes(12).toString("hex")}`;

  function notify(): void {
    for (const w of [...waiters]) {
      if (requests.length >= w.count) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }

  function stripeError(status: number, error: Record<string, unknown>): Answer {
    return { status, body: { error } };
  }

  function chargeView(intent: FakeIntent, expand: string[]): unknown {
    if (!intent.latest_charge || !expand.includes("latest_charge")) return intent.latest_charge;
    return {
      id: intent.latest_charge,
      object: "charge",
      payment_method_details: {
        type: "card",
        card: intent.capture_method === "manual" ? { capture_before: intent.created + MIT_WINDOW_SEC } : {},
      },
    };
  }

  function view(intent: FakeIntent, expand: string[]): unknown {
    return { ...intent, latest_charge: chargeView(intent, expand) };
  }

  function createIntent(p: Record<string, unknown>): Answer {
    const amount = Number(p.amount);
    if (!Number.isInteger(amount) || amount <= 0) {
      return stripeError(400, { type: "invalid_request_error", code: "parameter_invalid_integer", param: "amount", message: "Invalid integer: amount" });
    }
    const transfer = p.transfer_data as Record<string, unknown> | undefined;
    const destination = typeof transfer?.destination === "string" ? transfer.destination : undefined;
    if (destination !== undefined && !destination.startsWith("acct_")) {
      return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "transfer_data[destination]", message: `No such destination: '${destination}'` });
    }
    if (destination === "acct_unready") {
      return stripeError(400, {
        type: "invalid_request_error",
        code: "insufficient_capabilities_for_transfer",
        param: "transfer_data[destination]",
        message: "Your destination account needs to have at least one of the following capabilities enabled: transfers, crypto_transfers, legacy_payments",
      });
    }
    const methodId = typeof p.payment_method === "string" ? p.payment_method : "";
    const saved = paymentMethods.get(methodId);
    if (saved && typeof p.customer === "string" && saved.customer !== p.customer) {
      return stripeError(400, {
        type: "invalid_request_error",
        code: "payment_method_not_available",
        param: "payment_method",
        message: `The PaymentMethod ${methodId} does not belong to the Customer ${p.customer}. Please use a PaymentMethod that is attached to this Customer.`,
      });
    }
    if (typeof p.customer === "string" && p.customer.startsWith("cus_fake_") && !customers.has(p.customer)) {
      return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "customer", message: `No such customer: '${p.customer}'` });
    }
    createdCount++;
    const intent: FakeIntent = {
      id: `pi_fake_${++seq}`,
      object: "payment_intent",
      amount,
      amount_capturable: 0,
      amount_received: 0,
      currency: String(p.currency ?? ""),
      status: "requires_confirmation",
      capture_method: String(p.capture_method ?? "automatic"),
      customer: typeof p.customer === "string" ? p.customer : null,
      payment_method: typeof p.payment_method === "string" ? p.payment_method : null,
      description: typeof p.description === "string" ? p.description : null,
      metadata: (p.metadata as Record<string, string> | undefined) ?? {},
      transfer_data: destination ? { destination } : null,
      created: Math.floor(clockMs() / 1000),
      cancellation_reason: null,
      last_payment_error: null,
      latest_charge: null,
      livemode: false,
      off_session: p.off_session === "true",
      application_fee_amount: p.application_fee_amount === undefined ? null : Number(p.application_fee_amount),
      on_behalf_of: typeof p.on_behalf_of === "string" ? p.on_behalf_of : null,
    };
    intent.client_secret = secretFor(intent.id);
    intents.set(intent.id, intent);
    if (p.confirm !== "true") return { status: 200, body: view(intent, expandOf(p)) };
    return confirmIntent(intent, expandOf(p));
  }

  /** What charging the payment method does: a saved one's test card, or a test token's. */
  function behaviourOf(methodId: string | null) {
    if (!methodId) return "succeeds" as const;
    return paymentMethods.get(methodId)?.behaviour ?? testCard(methodId)?.behaviour ?? "succeeds";
  }

  /** Moves the money of a confirmed intent: held, paid, refused, or waiting for 3-D Secure. */
  function confirmIntent(intent: FakeIntent, expand: string[], returnUrl?: string): Answer {
    const behaviour = behaviourOf(intent.payment_method);
    const decline =
      behaviour === "declined"
        ? { code: "card_declined", decline_code: "generic_decline", message: "Your card was declined." }
        : behaviour === "insufficient_funds"
          ? { code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." }
          : behaviour === "authentication_required" && intent.off_session
            ? { code: "authentication_required", decline_code: "authentication_required", message: "Your card was declined. This transaction requires authentication." }
            : undefined;
    if (decline) {
      intent.status = "requires_payment_method";
      intent.last_payment_error = { type: "card_error", ...decline, payment_method: intent.payment_method ? { id: intent.payment_method, object: "payment_method" } : undefined } as FakeIntent["last_payment_error"];
      webhooks.send("payment_intent.payment_failed", view(intent, []));
      return stripeError(402, { type: "card_error", ...decline, payment_intent: view(intent, []) });
    }
    if (behaviour === "authentication_required" && intent.status !== "authenticated") {
      intent.status = "requires_action";
      intent.last_payment_error = null;
      intent.next_action = { type: "redirect_to_url", redirect_to_url: { url: `${baseUrl}/3ds/${intent.id}`, return_url: returnUrl ?? null } };
      webhooks.send("payment_intent.requires_action", view(intent, []));
      return { status: 200, body: view(intent, expand) };
    }
    intent.latest_charge = `ch_fake_${seq}`;
    intent.next_action = null;
    intent.last_payment_error = null;
    if (intent.capture_method === "manual") {
      intent.status = "requires_capture";
      intent.amount_capturable = intent.amount;
      webhooks.send("payment_intent.amount_capturable_updated", view(intent, []));
    } else {
      intent.status = "succeeded";
      intent.amount_received = intent.amount;
      webhooks.send("payment_intent.succeeded", view(intent, []));
    }
    return { status: 200, body: view(intent, expand) };
  }

  /** POST /v1/payment_intents/:id/confirm, from Stripe.js (publishable key + client secret) or the server. */
  function confirmExisting(intent: FakeIntent, p: Record<string, unknown>): Answer {
    if (!["requires_payment_method", "requires_confirmation", "requires_action"].includes(intent.status)) return unexpectedState(intent, "confirmed");
    if (typeof p.payment_method === "string") intent.payment_method = p.payment_method;
    // The payer is here now: on-session, so an issuer that wants 3-D Secure gets it.
    intent.off_session = false;
    return confirmIntent(intent, expandOf(p), typeof p.return_url === "string" ? p.return_url : undefined);
  }

  function authenticate(intent: FakeIntent, approve: boolean): void {
    if (intent.status !== "requires_action") return;
    if (approve) {
      intent.status = "authenticated";
      confirmIntent(intent, []);
      return;
    }
    intent.status = "requires_payment_method";
    intent.next_action = null;
    intent.last_payment_error = {
      type: "invalid_request_error",
      code: "payment_intent_authentication_failure",
      message: "We are unable to authenticate your payment method. Please choose a different payment method and try again.",
    };
    webhooks.send("payment_intent.payment_failed", view(intent, []));
  }

  function badParam(param: string, message: string): Answer {
    return stripeError(400, { type: "invalid_request_error", code: "parameter_missing", param, message });
  }

  function createAccount(p: Record<string, unknown>): Answer {
    const id = `acct_fake_${++seq}`;
    const requested = (p.capabilities as Record<string, { requested?: string }> | undefined) ?? {};
    const account: FakeAccount = {
      id,
      object: "account",
      country: typeof p.country === "string" ? p.country : "GB",
      charges_enabled: false,
      payouts_enabled: false,
      details_submitted: false,
      controller: p.controller ?? null,
      capabilities: Object.fromEntries(Object.entries(requested).filter(([, v]) => v.requested === "true").map(([k]) => [k, "inactive"])),
      metadata: (p.metadata as Record<string, string> | undefined) ?? {},
      created: nowSec(),
      livemode: false,
    };
    accounts.set(id, account);
    return { status: 200, body: account };
  }

  function createAccountLink(p: Record<string, unknown>): Answer {
    if (typeof p.account !== "string") return badParam("account", "Missing required param: account.");
    if (!accounts.has(p.account)) return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "account", message: `No such account: '${p.account}'` });
    if (p.type !== "account_onboarding" && p.type !== "account_update") return badParam("type", "Missing required param: type.");
    if (typeof p.return_url !== "string") return badParam("return_url", "Missing required param: return_url.");
    if (typeof p.refresh_url !== "string") return badParam("refresh_url", "Missing required param: refresh_url.");
    const linkId = randomBytes(9).toString("hex");
    const created = nowSec();
    accountLinks.set(linkId, { account: p.account, refreshUrl: p.refresh_url, returnUrl: p.return_url, expiresAt: created + 300, used: false });
    return { status: 200, body: { object: "account_link", created, expires_at: created + 300, url: `${baseUrl}/connect/onboarding/${linkId}` } };
  }

  function completeOnboarding(accountId: string): void {
    const account = accounts.get(accountId);
    if (!account) throw new Error(`no account ${accountId}`);
    account.charges_enabled = true;
    account.payouts_enabled = true;
    account.details_submitted = true;
    for (const k of Object.keys(account.capabilities)) account.capabilities[k] = "active";
    webhooks.send("account.updated", account);
  }

  function createCustomer(p: Record<string, unknown>): Answer {
    const customer = { id: `cus_fake_${++seq}`, object: "customer", name: typeof p.name === "string" ? p.name : null, metadata: (p.metadata as Record<string, string> | undefined) ?? {}, livemode: false };
    customers.set(customer.id, customer);
    return { status: 200, body: customer };
  }

  function newSetupIntent(customer: string, usage: string, metadata: Record<string, string>): FakeSetupIntent {
    const id = `seti_fake_${++seq}`;
    const intent: FakeSetupIntent = { id, object: "setup_intent", client_secret: secretFor(id), customer, payment_method: null, status: "requires_payment_method", usage, metadata, created: nowSec(), livemode: false };
    setupIntents.set(id, intent);
    return intent;
  }

  function createSetupIntent(p: Record<string, unknown>): Answer {
    if (typeof p.customer === "string" && !customers.has(p.customer)) {
      return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "customer", message: `No such customer: '${p.customer}'` });
    }
    if (p.usage !== undefined && p.usage !== "off_session" && p.usage !== "on_session") {
      return stripeError(400, { type: "invalid_request_error", code: "parameter_invalid_empty", param: "usage", message: `Invalid usage: must be one of off_session or on_session` });
    }
    const intent = newSetupIntent(typeof p.customer === "string" ? p.customer : "", typeof p.usage === "string" ? p.usage : "off_session", (p.metadata as Record<string, string> | undefined) ?? {});
    return { status: 200, body: intent };
  }

  /** Confirms a SetupIntent with a test token: a new payment method, attached to its customer. */
  function confirmSetupIntent(intent: FakeSetupIntent, token: string): Answer {
    if (intent.status !== "requires_payment_method" && intent.status !== "requires_confirmation") {
      return stripeError(400, { type: "invalid_request_error", code: "setup_intent_unexpected_state", message: `This SetupIntent could not be confirmed because it has a status of ${intent.status}.` });
    }
    const card = testCard(token);
    if (!card) return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "payment_method", message: `No such PaymentMethod: '${token}'` });
    if ((card.behaviour === "declined" || card.behaviour === "insufficient_funds") && !card.attaches) {
      return stripeError(402, { type: "card_error", code: "card_declined", decline_code: card.behaviour === "declined" ? "generic_decline" : "insufficient_funds", message: "Your card was declined.", setup_intent: intent });
    }
    const pm: FakePaymentMethod = { id: `pm_fake_${++seq}`, object: "payment_method", type: "card", customer: intent.customer || null, card: { brand: card.brand, last4: card.last4 }, created: nowSec(), livemode: false, behaviour: card.behaviour };
    paymentMethods.set(pm.id, pm);
    intent.payment_method = pm.id;
    intent.status = "succeeded";
    webhooks.send("setup_intent.succeeded", intent);
    return { status: 200, body: intent };
  }

  function createCheckoutSession(p: Record<string, unknown>): Answer {
    if (p.mode !== "setup") return stripeError(400, { type: "invalid_request_error", param: "mode", message: "The fake serves Checkout in setup mode only." });
    if (typeof p.success_url !== "string") return badParam("success_url", "Missing required param: success_url.");
    if (typeof p.customer !== "string" || !customers.has(p.customer)) {
      return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "customer", message: `No such customer: '${String(p.customer)}'` });
    }
    if (typeof p.currency !== "string" && p.allowed_payment_method_types === undefined) return badParam("currency", "currency is required in setup mode when allowed_payment_method_types is not set.");
    const data = (p.setup_intent_data as { metadata?: Record<string, string> } | undefined) ?? {};
    const intent = newSetupIntent(p.customer, "off_session", data.metadata ?? {});
    const id = `cs_test_fake_${++seq}`;
    const session: FakeCheckoutSession = {
      id,
      object: "checkout.session",
      mode: "setup",
      customer: p.customer,
      setup_intent: intent.id,
      status: "open",
      success_url: p.success_url,
      cancel_url: typeof p.cancel_url === "string" ? p.cancel_url : "",
      url: `${baseUrl}/checkout/${id}`,
      livemode: false,
    };
    checkoutSessions.set(id, session);
    return { status: 200, body: session };
  }

  /** A publishable key may only read or confirm an intent whose client secret it presents (what Stripe.js does). */
  function publishableKeyCall(method: string, pathname: string, p: Record<string, unknown>): Answer {
    const m = /^\/v1\/(payment_intents|setup_intents)\/([^/]+)(\/confirm)?$/.exec(pathname);
    const intent = m ? (m[1] === "payment_intents" ? intents.get(m[2]!) : setupIntents.get(m[2]!)) : undefined;
    if (!m || (method === "POST") !== (m[3] !== undefined)) {
      return stripeError(400, { type: "invalid_request_error", message: "This API call cannot be made with a publishable API key. Please use a secret API key." });
    }
    if (!intent || typeof p.client_secret !== "string" || p.client_secret !== intent.client_secret) {
      return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "intent", message: `No such ${m[1] === "payment_intents" ? "payment_intent" : "setup_intent"}: '${m[2]}'` });
    }
    return route(method, pathname, p);
  }

  /** Pages a person opens in a browser: onboarding, setup Checkout, 3-D Secure. */
  function hostedPage(method: string, pathname: string, params: Record<string, unknown>): { status: number; headers: Record<string, string>; body: string } | undefined {
    const page = (title: string, inner: string) => ({
      status: 200,
      headers: { "content-type": "text/html; charset=utf-8" },
      body: `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body><main><h1>${title}</h1>${inner}</main></body></html>`,
    });
    const redirect = (to: string) => ({ status: 303, headers: { location: to }, body: "" });
    let m = /^\/connect\/onboarding\/([0-9a-f]+)$/.exec(pathname);
    if (m) {
      const link = accountLinks.get(m[1]!);
      if (!link) return { status: 404, headers: {}, body: "no such link" };
      if (method === "GET") {
        // Single use and minutes long, like Stripe's: a used or expired link goes to refresh_url.
        if (link.used || nowSec() > link.expiresAt) return redirect(link.refreshUrl);
        link.used = true;
        return page("Stripe test onboarding", `<form method="post"><button type="submit">Finish onboarding</button></form>`);
      }
      completeOnboarding(link.account);
      return redirect(link.returnUrl);
    }
    m = /^\/checkout\/(cs_test_fake_\d+)$/.exec(pathname);
    if (m) {
      const session = checkoutSessions.get(m[1]!);
      if (!session) return { status: 404, headers: {}, body: "no such session" };
      if (method === "GET") {
        return page("Save your card", `<form method="post"><label>Test card <select name="card"><option>pm_card_visa</option><option>pm_card_authenticationRequired</option><option>pm_card_chargeDeclined</option></select></label><button type="submit">Save card</button></form>`);
      }
      const answer = confirmSetupIntent(setupIntents.get(session.setup_intent)!, typeof params.card === "string" ? params.card : "pm_card_visa");
      if (answer.status !== 200) return page("Card refused", "<p>Your card was declined.</p>");
      session.status = "complete";
      webhooks.send("checkout.session.completed", session);
      return redirect(session.success_url);
    }
    m = /^\/3ds\/(pi_fake_\d+)$/.exec(pathname);
    if (m) {
      const intent = intents.get(m[1]!);
      if (!intent) return { status: 404, headers: {}, body: "no such payment" };
      if (method === "GET") {
        return page("3D Secure test payment", `<form method="post"><button name="result" value="complete" type="submit">Complete authentication</button> <button name="result" value="fail" type="submit">Fail authentication</button></form>`);
      }
      authenticate(intent, params.result === "complete");
      const back = (intent.next_action as { redirect_to_url?: { return_url?: string | null } } | null | undefined)?.redirect_to_url?.return_url;
      return back ? redirect(back) : page("Authentication done", "<p>You can close this window.</p>");
    }
    return undefined;
  }

  function unexpectedState(intent: FakeIntent, action: string): Answer {
    return stripeError(400, {
      type: "invalid_request_error",
      code: "payment_intent_unexpected_state",
      message: `This PaymentIntent could not be ${action} because it has a status of ${intent.status}.`,
      payment_intent: view(intent, []),
    });
  }

  function capture(intent: FakeIntent, p: Record<string, unknown>): Answer {
    if (intent.status !== "requires_capture") return unexpectedState(intent, "captured");
    const amount = p.amount_to_capture === undefined ? intent.amount_capturable : Number(p.amount_to_capture);
    if (!Number.isInteger(amount) || amount <= 0 || amount > intent.amount_capturable) {
      return stripeError(400, { type: "invalid_request_error", code: "amount_too_large", param: "amount_to_capture", message: "The amount to capture must be less than or equal to the amount capturable." });
    }
    intent.status = "succeeded";
    intent.amount_received = amount;
    intent.amount_capturable = 0;
    webhooks.send("payment_intent.succeeded", view(intent, []));
    return { status: 200, body: view(intent, expandOf(p)) };
  }

  function cancel(intent: FakeIntent, p: Record<string, unknown>): Answer {
    if (!["requires_capture", "requires_payment_method", "requires_confirmation", "requires_action"].includes(intent.status)) {
      return unexpectedState(intent, "canceled");
    }
    intent.status = "canceled";
    intent.amount_capturable = 0;
    intent.cancellation_reason = typeof p.cancellation_reason === "string" ? p.cancellation_reason : null;
    webhooks.send("payment_intent.canceled", view(intent, []));
    return { status: 200, body: view(intent, expandOf(p)) };
  }

  /** Stripe's search query language, the part the rail uses: `metadata['k']:'v'` clauses joined by AND. */
  function search(p: Record<string, unknown>): Answer {
    const query = typeof p.query === "string" ? p.query : "";
    const clauses = query.split(/\s+AND\s+/).map((c) => /^metadata\['([^']+)'\]:'((?:[^'\\]|\\.)*)'$/.exec(c.trim()));
    if (query === "" || clauses.some((c) => !c)) {
      return stripeError(400, { type: "invalid_request_error", code: "parameter_invalid_string", param: "query", message: `Invalid search query: ${query}` });
    }
    const wanted = clauses.map((c) => [c![1]!, c![2]!.replace(/\\(.)/g, "$1")] as const);
    const data = [...intents.values()].filter((i) => wanted.every(([k, v]) => i.metadata[k] === v)).reverse();
    return { status: 200, body: { object: "search_result", url: "/v1/payment_intents/search", has_more: false, next_page: null, data: data.map((i) => view(i, [])) } };
  }

  function route(method: string, path: string, p: Record<string, unknown>): Answer {
    if (method === "POST" && path === "/v1/payment_intents") return createIntent(p);
    if (method === "POST" && path === "/v1/accounts") return createAccount(p);
    if (method === "GET" && path === "/v1/account") {
      return { status: 200, body: { id: "acct_fake_platform", object: "account", country: "GB", charges_enabled: true, payouts_enabled: true, metadata: {}, livemode: false } };
    }
    if (method === "POST" && path === "/v1/account_links") return createAccountLink(p);
    if (method === "POST" && path === "/v1/customers") return createCustomer(p);
    if (method === "POST" && path === "/v1/setup_intents") return createSetupIntent(p);
    if (method === "POST" && path === "/v1/checkout/sessions") return createCheckoutSession(p);
    const byId = /^\/v1\/(accounts|customers|payment_methods|setup_intents)\/([^/]+)(\/confirm)?$/.exec(path);
    if (byId) {
      const [, kind, rawId, confirm] = byId;
      const id = decodeURIComponent(rawId!);
      const found = (kind === "accounts" ? accounts : kind === "customers" ? customers : kind === "payment_methods" ? paymentMethods : setupIntents).get(id);
      if (!found) {
        const noun = { accounts: "account", customers: "customer", payment_methods: "PaymentMethod", setup_intents: "setup_intent" }[kind!];
        return stripeError(404, { type: "invalid_request_error", code: "resource_missing", param: "id", message: `No such ${noun}: '${id}'` });
      }
      if (method === "GET" && !confirm) return { status: 200, body: kind === "payment_methods" ? paymentMethodView(found as FakePaymentMethod) : found };
      if (method === "POST" && confirm && kind === "setup_intents") return confirmSetupIntent(found as FakeSetupIntent, typeof p.payment_method === "string" ? p.payment_method : "");
      return stripeError(405, { type: "invalid_request_error", message: "Method not allowed" });
    }
    if (method === "GET" && path === "/v1/balance") {
      const funds = [{ amount: 0, currency: "gbp", source_types: { card: 0 } }];
      return { status: 200, body: { object: "balance", available: funds, pending: funds, livemode: false } };
    }
    if (method === "GET" && path === "/v1/payment_intents/search") return search(p);
    const m = /^\/v1\/payment_intents\/([^/]+)(?:\/(capture|cancel|confirm))?$/.exec(path);
    if (!m) return stripeError(404, { type: "invalid_request_error", message: `Unrecognized request URL (${method}: ${path}).` });
    const intent = intents.get(decodeURIComponent(m[1] ?? ""));
    if (!intent) {
      return stripeError(404, { type: "invalid_request_error", code: "resource_missing", param: "intent", message: `No such payment_intent: '${m[1]}'` });
    }
    if (method === "GET" && !m[2]) return { status: 200, body: view(intent, expandOf(p)) };
    if (method === "POST" && m[2] === "capture") return capture(intent, p);
    if (method === "POST" && m[2] === "cancel") return cancel(intent, p);
    if (method === "POST" && m[2] === "confirm") return confirmExisting(intent, p);
    return stripeError(405, { type: "invalid_request_error", message: "Method not allowed" });
  }

  function send(res: ServerResponse, answer: Answer, replayed: boolean): void {
    const body = JSON.stringify(answer.body);
    res.writeHead(answer.status, {
      "content-type": "application/json",
      // Stripe's API answers browsers (Stripe.js) too.
      "access-control-allow-origin": "*",
      "content-length": Buffer.byteLength(body),
      "request-id": `req_fake_${requests.length}`,
      ...(replayed ? { "idempotent-replayed": "true" } : {}),
    });
    res.end(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const rawBody = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", "http://fake");
    const method = req.method ?? "GET";
    if (method === "OPTIONS") {
      res.writeHead(204, { "access-control-allow-origin": "*", "access-control-allow-methods": "GET, POST", "access-control-allow-headers": "authorization, content-type, stripe-version", "access-control-max-age": "600" });
      res.end();
      return;
    }
    // Pages people open in a browser are no API calls: not recorded, no key.
    const pageAnswer = url.pathname.startsWith("/v1/") ? undefined : hostedPage(method, url.pathname, parseForm(method === "GET" ? url.search.slice(1) : rawBody));
    if (pageAnswer) {
      res.writeHead(pageAnswer.status, pageAnswer.headers);
      res.end(pageAnswer.body);
      return;
    }
    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const record: RecordedRequest = {
      method,
      path: url.pathname,
      idempotencyKey: header("idempotency-key"),
      authorization: header("authorization"),
      stripeVersion: header("stripe-version"),
      params: parseForm(method === "GET" ? url.search.slice(1) : rawBody),
      rawBody,
      replayed: false,
    };
    requests.push(record);
    notify();

    const hangAt = hangs.findIndex((h) => h.match(record));
    const hang = hangAt >= 0 ? hangs.splice(hangAt, 1)[0] : undefined;
    // Never answered; the socket is destroyed at close().
    if (hang && !hang.afterExecuting) return;
    const answer = execute(record, method, url.pathname, rawBody);
    if (!hang) send(res, answer.answer, answer.replayed);
  }

  /** Carries out one request: scripted faults, authentication, idempotency, then the API. */
  function execute(record: RecordedRequest, method: string, pathname: string, rawBody: string): { answer: Answer; replayed: boolean } {
    const fault = faults.find((f) => f.match(record));
    if (fault) {
      if (--fault.times <= 0) faults.splice(faults.indexOf(fault), 1);
    }
    const faultAnswer = (status: number): Answer =>
      stripeError(
        status,
        status === 429
          ? { type: "invalid_request_error", code: "rate_limit", message: "Too many requests hit the API too quickly." }
          : { type: "api_error", message: "An unknown error occurred." },
      );
    if (fault && !fault.stored) return { answer: faultAnswer(fault.status), replayed: false };
    // Stripe.js sends its publishable key as the `key` parameter, not a header.
    const apiKey = record.authorization?.replace(/^Bearer /, "") || (typeof record.params.key === "string" ? record.params.key : "");
    if (apiKey.startsWith("pk_test_")) return { answer: publishableKeyCall(method, pathname, record.params), replayed: false };
    if (!apiKey.startsWith("sk_test_") && !apiKey.startsWith("rk_test_")) {
      return { answer: stripeError(401, { type: "invalid_request_error", message: "Invalid API Key provided." }), replayed: false };
    }
    // A restricted key granted nothing: Stripe answers 403 for any endpoint it lacks access to.
    if (apiKey.startsWith(DENIED_KEY_PREFIX)) {
      return {
        answer: stripeError(403, {
          type: "invalid_request_error",
          message: `The provided key '${apiKey.slice(0, 12)}***' does not have the required permissions for this endpoint on account 'acct_fake_platform'.`,
        }),
        replayed: false,
      };
    }
    const key = record.idempotencyKey;
    if (method === "POST" && key) {
      const fingerprint = `${method} ${pathname} ${rawBody}`;
      const saved = idempotency.get(key);
      if (saved) {
        if (saved.fingerprint !== fingerprint) {
          return {
            answer: stripeError(400, {
              type: "idempotency_error",
              message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
            }),
            replayed: false,
          };
        }
        record.replayed = true;
        return { answer: saved.answer, replayed: true };
      }
      const answer = fault ? faultAnswer(fault.status) : route(method, pathname, record.params);
      // Stripe saves the outcome once execution began, failures included (not 400 validation errors).
      if (answer.status !== 400 || (answer.body as { error?: { code?: string } }).error?.code === "payment_intent_unexpected_state") {
        idempotency.set(key, { fingerprint, answer });
      }
      return { answer, replayed: false };
    }
    return { answer: fault ? faultAnswer(fault.status) : route(method, pathname, record.params), replayed: false };
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { type: "api_error", message: String(err) } }));
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}`;

  return {
    url: `http://127.0.0.1:${port}`,
    host: "127.0.0.1",
    port,
    requests,
    intents,
    created: () => createdCount,
    accounts,
    customers,
    paymentMethods,
    setupIntents,
    checkoutSessions,
    deliverWebhooksTo: (target) => webhooks.setTarget(target),
    webhooksSettled: () => webhooks.settled(),
    deliveredEvents: webhooks.delivered,
    completeOnboarding,
    confirmSetup(setupIntentId, token) {
      const intent = setupIntents.get(setupIntentId);
      if (!intent) throw new Error(`no setup intent ${setupIntentId}`);
      const answer = confirmSetupIntent(intent, token);
      if (answer.status !== 200) throw new Error(`setup refused: ${JSON.stringify(answer.body)}`);
    },
    authenticate(intentId, approve) {
      const intent = intents.get(intentId);
      if (!intent) throw new Error(`no payment intent ${intentId}`);
      authenticate(intent, approve);
    },
    failNext({ status, times = 1, match = () => true, stored = false }) {
      faults.push({ status, times, match, stored });
    },
    hangNext(match = () => true, options = {}) {
      hangs.push({ match, afterExecuting: options.afterExecuting ?? false });
    },
    eventFor(type, intentId) {
      const intent = intents.get(intentId);
      if (!intent) throw new Error(`no payment intent ${intentId}`);
      return JSON.stringify({
        id: `evt_fake_${++seq}`,
        object: "event",
        api_version: "2026-10-28.endive",
        created: Math.floor(clockMs() / 1000),
        type,
        livemode: false,
        data: { object: view(intent, []) },
      });
    },
    waitForRequests(count) {
      return new Promise((resolve) => {
        waiters.push({ count, resolve });
        notify();
      });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

/** Decodes `a[b][0]=c&…` into nested objects and arrays, as Stripe (qs) does. */
export function parseForm(body: string): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  if (!body) return root;
  for (const pair of body.split("&")) {
    if (!pair) continue;
    const eq = pair.indexOf("=");
    const rawKey = eq < 0 ? pair : pair.slice(0, eq);
    const rawValue = eq < 0 ? "" : pair.slice(eq + 1);
    const key = decodeURIComponent(rawKey.replace(/\+/g, " "));
    const value = decodeURIComponent(rawValue.replace(/\+/g, " "));
    const first = /^[^[]+/.exec(key)?.[0] ?? key;
    const path = [first, ...[...key.slice(first.length).matchAll(/\[([^\]]*)\]/g)].map((m) => m[1] ?? "")];
    let node: Record<string, unknown> | unknown[] = root;
    path.forEach((part, i) => {
      const last = i === path.length - 1;
      const container = node as Record<string, unknown>;
      if (last) {
        container[part] = value;
        return;
      }
      const nextIsIndex = /^\d+$/.test(path[i + 1] ?? "");
      if (container[part] === undefined) container[part] = nextIsIndex ? [] : {};
      node = container[part] as Record<string, unknown> | unknown[];
    });
  }
  return root;
}

function expandOf(p: Record<string, unknown>): string[] {
  const expand = p.expand;
  return Array.isArray(expand) ? expand.map(String) : [];
}
