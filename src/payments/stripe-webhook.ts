import type { Logger } from "pino";
import Stripe from "stripe";
import {
  EscrowHoldStatus,
  PaymentRail as PaymentRailKind,
  PaymentStatus,
  type EscrowHold,
  type Payment,
} from "../../gen/handshake/v1/deal_pb.js";
import { silentLogger } from "../core/log.js";
import type { Store } from "../store/store.js";
import { MERCHANT_INITIATED_AUTH_MS } from "./stripe-rail.js";
import type { PaymentSetupService } from "./payment-setup.js";
import { toAccountView, toSetupIntentView } from "./stripe-connect.js";

/** How far a signature's timestamp may be from our clock, seconds (Stripe's default). */
export const DEFAULT_WEBHOOK_TOLERANCE_SEC = 300;

/** Why a `Stripe-Signature` header was refused, or that it was fine. */
export type SignatureCheck = { ok: true; timestampSec: number } | { ok: false; reason: string };

/**
 * Verifies a `Stripe-Signature` header (`t=<unix>,v1=<hex>[,v1=…]`) over the raw body with the
 * SDK's own `Stripe.webhooks.constructEvent` (HMAC-SHA256 of `${t}.${rawBody}`, constant-time,
 * too old → refused), plus a check the SDK leaves out: a timestamp more than `toleranceSec` in the
 * future is refused too (a signature made with a skewed or forged clock is a replay waiting).
 */
export function verifyStripeSignature(
  rawBody: Buffer,
  header: string | undefined,
  secret: string,
  nowSec: number,
  toleranceSec: number = DEFAULT_WEBHOOK_TOLERANCE_SEC,
): SignatureCheck {
  if (!header) return { ok: false, reason: "missing Stripe-Signature header" };
  try {
    Stripe.webhooks.constructEvent(rawBody, header, secret, toleranceSec, undefined, nowSec * 1000);
  } catch (err) {
    const message = err instanceof Error ? err.message : "";
    if (/tolerance/i.test(message)) return { ok: false, reason: "signature timestamp is outside the tolerance" };
    if (/No signatures found/i.test(message)) return { ok: false, reason: "signature does not match the payload" };
    return { ok: false, reason: "signature header has no timestamp or v1 signature" };
  }
  const timestampSec = Number(/(?:^|,)\s*t=(\d{1,12})/.exec(header)?.[1]);
  if (timestampSec - nowSec > toleranceSec) return { ok: false, reason: "signature timestamp is outside the tolerance" };
  return { ok: true, timestampSec };
}

/** What a webhook changed, for broadcasting to the contract's room and refreshing its status. */
export type StripeWebhookUpdate =
  | { kind: "payment"; contractId: string; payment: Payment }
  | { kind: "hold"; contractId: string; hold: EscrowHold };

/** Options of the webhook handler. */
export interface StripeWebhookHandlerOptions {
  store: Store;
  /** The endpoint's signing secret (`whsec_…`, env STRIPE_WEBHOOK_SECRET). */
  secret: string;
  /** Records onboarding (`account.updated`) and saved cards (`setup_intent.succeeded`); those events are ignored without it. */
  setup?: PaymentSetupService;
  /** Called after a payment or hold record changed. */
  onUpdate?: (update: StripeWebhookUpdate) => void;
  /** Clock, Unix ms. */
  now?: () => number;
  toleranceSec?: number;
  /** Most event ids remembered for replay refusal (oldest forgotten first). */
  maxRememberedEvents?: number;
  log?: Logger;
}

/** An HTTP answer for Stripe: 2xx means "delivered", anything else makes Stripe retry. */
export interface WebhookResponse {
  status: number;
  body: string;
}

/** The handler the server mounts on POST /webhooks/stripe; it needs the raw, unparsed body. */
export type StripeWebhookHandler = (rawBody: Buffer, signatureHeader: string | undefined) => Promise<WebhookResponse>;

/** The PaymentIntent fields we read from an event; everything else is ignored. */
interface IntentPayload {
  id: string;
  status: string;
  captureMethod: string;
  amountReceived: number;
  created: number;
  cancellationReason: string;
  lastErrorMessage: string;
  lastErrorCode: string;
  contractId: string;
  lineItemId: string;
}

const HANDLED_EVENTS = new Set([
  "payment_intent.succeeded",
  "payment_intent.amount_capturable_updated",
  "payment_intent.canceled",
  "payment_intent.payment_failed",
]);

/**
 * Creates the Stripe webhook handler: verifies the signature (400, nothing changed, when it is
 * wrong or stale), does not apply an event id it has already seen again, and applies PaymentIntent
 * events to the stored payment or hold they belong to, found by rail reference or else by the
 * `contract_id` / `line_item_id` metadata we set (a payment whose create call timed out has no
 * reference yet). Updates only move forward: a late `canceled` never undoes a capture.
 *
 * Replay memory is in-process and only needs to span the signature tolerance: an older replay
 * is refused as stale anyway. After a restart an event could be applied twice, which is harmless
 * because applying is idempotent. A repeated event id is acknowledged with 200: Stripe delivers
 * at least once and retries anything not answered 2xx for up to three days
 * (https://docs.stripe.com/webhooks/process-undelivered-events), so a redelivery whose first 200
 * was lost must not be refused; a captured request replayed within the tolerance changes nothing
 * either way.
 */
export function createStripeWebhookHandler(options: StripeWebhookHandlerOptions): StripeWebhookHandler {
  const { store } = options;
  const now = options.now ?? Date.now;
  const toleranceSec = options.toleranceSec ?? DEFAULT_WEBHOOK_TOLERANCE_SEC;
  const maxRemembered = options.maxRememberedEvents ?? 10_000;
  const log = (options.log ?? silentLogger).child({ component: "stripe-webhook" });
  if (!options.secret) throw new Error("the Stripe webhook handler needs a signing secret (STRIPE_WEBHOOK_SECRET)");
  /** Event id → when we accepted it, Unix ms; insertion-ordered, so the first entry is the oldest. */
  const seen = new Map<string, number>();

  function forgetOld(atMs: number): void {
    const horizon = atMs - 2 * toleranceSec * 1000;
    for (const [id, at] of seen) {
      if (at >= horizon && seen.size <= maxRemembered) break;
      seen.delete(id);
    }
  }

  async function findPayment(intent: IntentPayload): Promise<Payment | undefined> {
    const byReference = await store.getPaymentByRailReference(intent.id);
    if (byReference) return byReference;
    if (!intent.contractId || !intent.lineItemId) return undefined;
    const contract = await store.getContract(intent.contractId);
    return contract?.payments.findLast(
      (p) => p.lineItemId === intent.lineItemId && p.rail === PaymentRailKind.STRIPE && (p.railReference === "" || p.railReference === intent.id),
    );
  }

  async function findHold(intent: IntentPayload): Promise<EscrowHold | undefined> {
    const byReference = await store.getHoldByRailReference(intent.id);
    if (byReference) return byReference;
    if (!intent.contractId || !intent.lineItemId) return undefined;
    const contract = await store.getContract(intent.contractId);
    return contract?.holds.findLast(
      (h) => h.lineItemId === intent.lineItemId && h.rail === PaymentRailKind.STRIPE && (h.railReference === "" || h.railReference === intent.id),
    );
  }

  function notify(update: StripeWebhookUpdate): void {
    try {
      options.onUpdate?.(update);
    } catch (err) {
      // The record is stored; a listener's failure must not make Stripe redeliver the event.
      log.error({ err, contractId: update.contractId }, "stripe webhook listener threw");
    }
  }

  async function apply(type: string, intent: IntentPayload): Promise<string> {
    const atMs = BigInt(now());
    const hold = intent.captureMethod === "manual" ? await findHold(intent) : undefined;
    if (hold) {
      const next = nextHold(hold, type, intent);
      if (!next) return "no change";
      next.updatedAtMs = atMs;
      await store.recordHoldResult(next);
      notify({ kind: "hold", contractId: next.contractId, hold: next });
      return "hold updated";
    }
    const payment = await findPayment(intent);
    if (payment) {
      const next = nextPayment(payment, type, intent);
      if (!next) return "no change";
      next.updatedAtMs = atMs;
      await store.recordPaymentResult(next);
      notify({ kind: "payment", contractId: next.contractId, payment: next });
      return "payment updated";
    }
    return "ignored: unknown payment intent";
  }

  async function applySetupEvent(event: { id: string; type: string; object: unknown }): Promise<WebhookResponse> {
    if (!options.setup) return { status: 200, body: "ignored: event type not handled" };
    const object = event.object;
    const expected = event.type === "account.updated" ? "account" : "setup_intent";
    if (!isRecord(object) || object.object !== expected || typeof object.id !== "string") {
      return { status: 400, body: `malformed event: data.object is not a ${expected}` };
    }
    try {
      const outcome =
        event.type === "account.updated"
          ? await options.setup.applyAccountUpdate(toAccountView(object as unknown as Stripe.Account))
          : await options.setup.applySetupSucceeded(toSetupIntentView(object as unknown as Stripe.SetupIntent));
      log.info({ eventId: event.id, type: event.type, outcome }, "stripe webhook applied");
      return { status: 200, body: outcome };
    } catch (err) {
      seen.delete(event.id);
      log.error({ err, eventId: event.id, type: event.type }, "stripe webhook could not be applied");
      return { status: 500, body: "could not apply the event" };
    }
  }

  return async (rawBody, signatureHeader) => {
    const atMs = now();
    const check = verifyStripeSignature(rawBody, signatureHeader, options.secret, Math.floor(atMs / 1000), toleranceSec);
    if (!check.ok) {
      log.warn({ reason: check.reason }, "stripe webhook refused");
      return { status: 400, body: check.reason };
    }
    let event: { id: string; type: string; object: unknown };
    try {
      event = parseEvent(rawBody);
    } catch (err) {
      return { status: 400, body: `malformed event: ${(err as Error).message}` };
    }
    forgetOld(atMs);
    if (seen.has(event.id)) {
      log.warn({ eventId: event.id }, "stripe webhook event received again; not applied again");
      return { status: 200, body: "already received: not applied again" };
    }
    // Claimed before applying, so two concurrent deliveries of one event apply it once.
    seen.set(event.id, atMs);
    if (event.type === "account.updated" || event.type === "setup_intent.succeeded") return applySetupEvent(event);
    if (!HANDLED_EVENTS.has(event.type)) return { status: 200, body: "ignored: event type not handled" };
    let intent: IntentPayload;
    try {
      intent = parseIntent(event.object);
    } catch (err) {
      return { status: 400, body: `malformed payment intent: ${(err as Error).message}` };
    }
    try {
      const outcome = await apply(event.type, intent);
      log.info({ eventId: event.id, type: event.type, paymentIntent: intent.id, outcome }, "stripe webhook applied");
      return { status: 200, body: outcome };
    } catch (err) {
      // Let Stripe deliver it again once the store is back.
      seen.delete(event.id);
      log.error({ err, eventId: event.id, type: event.type }, "stripe webhook could not be applied");
      return { status: 500, body: "could not apply the event" };
    }
  };
}

/**
 * Off-session, an issuer that wants 3-D Secure makes Stripe report payment_failed with
 * authentication_required: the payer was asked to authenticate, so nothing failed yet.
 */
function waitsForPayer(type: string, intent: IntentPayload): boolean {
  return type === "payment_intent.payment_failed" && intent.lastErrorCode === "authentication_required";
}

/** The payment after `type`, or undefined when the event changes nothing (never moves backwards). */
function nextPayment(payment: Payment, type: string, intent: IntentPayload): Payment | undefined {
  if (waitsForPayer(type, intent)) return undefined;
  const next = { ...payment, railReference: intent.id };
  switch (type) {
    case "payment_intent.succeeded":
      if (payment.status === PaymentStatus.SUCCEEDED) return undefined;
      return { ...next, status: PaymentStatus.SUCCEEDED, failureReason: "" };
    case "payment_intent.payment_failed":
    case "payment_intent.canceled":
      if (payment.status !== PaymentStatus.PENDING) return undefined;
      return {
        ...next,
        status: PaymentStatus.FAILED,
        failureReason: type === "payment_intent.canceled" ? "The payment was cancelled" : intent.lastErrorMessage || "The card was declined",
      };
    default:
      return undefined;
  }
}

/** The hold after `type`, or undefined when the event changes nothing (never moves backwards). */
function nextHold(hold: EscrowHold, type: string, intent: IntentPayload): EscrowHold | undefined {
  if (waitsForPayer(type, intent)) return undefined;
  const next = { ...hold, railReference: intent.id };
  const open = hold.status === EscrowHoldStatus.PENDING || hold.status === EscrowHoldStatus.FAILED;
  switch (type) {
    case "payment_intent.amount_capturable_updated":
      if (!open) return undefined;
      return {
        ...next,
        status: EscrowHoldStatus.HELD,
        failureReason: "",
        expiresAtMs: hold.expiresAtMs > 0n ? hold.expiresAtMs : BigInt(intent.created * 1000 + MERCHANT_INITIATED_AUTH_MS),
      };
    case "payment_intent.succeeded": {
      const captured = BigInt(intent.amountReceived);
      if (hold.status === EscrowHoldStatus.CAPTURED && hold.capturedMinor === captured) return undefined;
      return { ...next, status: EscrowHoldStatus.CAPTURED, capturedMinor: captured, failureReason: "" };
    }
    case "payment_intent.canceled": {
      if (hold.status !== EscrowHoldStatus.HELD && hold.status !== EscrowHoldStatus.PENDING) return undefined;
      const lapsed = intent.cancellationReason === "automatic" || intent.cancellationReason === "expired";
      return lapsed
        ? { ...next, status: EscrowHoldStatus.EXPIRED, failureReason: "The card authorisation lapsed before capture" }
        : { ...next, status: EscrowHoldStatus.RELEASED, failureReason: "" };
    }
    case "payment_intent.payment_failed":
      if (hold.status !== EscrowHoldStatus.PENDING) return undefined;
      return { ...next, status: EscrowHoldStatus.FAILED, failureReason: intent.lastErrorMessage || "The card was declined" };
    default:
      return undefined;
  }
}

function parseEvent(rawBody: Buffer): { id: string; type: string; object: unknown } {
  const parsed: unknown = JSON.parse(rawBody.toString("utf8"));
  if (!isRecord(parsed)) throw new Error("not a JSON object");
  const { id, type, data } = parsed;
  if (typeof id !== "string" || id === "") throw new Error("no event id");
  if (typeof type !== "string") throw new Error("no event type");
  return { id, type, object: isRecord(data) ? data.object : undefined };
}

function parseIntent(object: unknown): IntentPayload {
  if (!isRecord(object) || object.object !== "payment_intent" || typeof object.id !== "string") {
    throw new Error("data.object is not a payment intent");
  }
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  const lastError = isRecord(object.last_payment_error) ? object.last_payment_error : {};
  return {
    id: object.id,
    status: str(object.status),
    captureMethod: str(object.capture_method),
    amountReceived: typeof object.amount_received === "number" && Number.isSafeInteger(object.amount_received) ? object.amount_received : 0,
    created: typeof object.created === "number" ? object.created : 0,
    cancellationReason: str(object.cancellation_reason),
    lastErrorMessage: str(lastError.message),
    lastErrorCode: str(lastError.code),
    contractId: str(metadata.contract_id),
    lineItemId: str(metadata.line_item_id),
  };
}

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
