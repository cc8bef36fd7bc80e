import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import {
  EscrowHoldSchema,
  EscrowHoldStatus,
  PaymentSchema,
  PaymentStatus,
  type Contract,
  type EscrowHold,
  type LineItem,
  type Payment,
} from "../../gen/handshake/v1/deal_pb.js";
import { ExecutionStepStatus } from "../../gen/handshake/v1/events_pb.js";
import { FailedPreconditionError } from "../core/errors.js";
import { formatMoney } from "../core/money.js";
import { holdAmountOf, type ContractParties } from "../deal/milestones-rules.js";
import { PaymentRailError, type PaymentRail, type RailParties, type RailRequest, type RailResult } from "../payments/rail.js";
import type { Store } from "../store/store.js";
import { idempotencyKey, newAttemptId } from "./idempotency.js";
import { askRail, holdStatusOf, railRequestFor } from "./rail-call.js";
import type { SettlementEvents } from "./settlement-events.js";

/**
 * How long after its intent a pending movement may still be resent under its key: Stripe prunes
 * keys once they are at least 24 hours old, so an hour is kept in hand.
 */
export const KEY_RESEND_LIMIT_MS = 23 * 60 * 60 * 1000;

/** What one saga step needs around it. */
export interface StepContext {
  store: Store;
  rail: PaymentRail;
  events: SettlementEvents;
  now: () => number;
  log: Logger;
}

/** The two forward steps of the saga: pay an IMMEDIATE item now, or hold an ESCROW/CONDITIONAL one. */
export type MoneyStepKind = "pay" | "hold";

type Outcome = "succeeded" | "failed" | "other";

/** What differs between paying and holding; the step itself is written once, in `moneyStep`. */
interface StepSpec<R extends Payment | EscrowHold> {
  stepName: string;
  /** "Payment" / "Escrow hold", for the room and the logs. */
  label: string;
  intent(contract: Contract, item: LineItem, parties: ContractParties, key: string, rail: PaymentRail, atMs: bigint): R;
  recordIntent(store: Store, intent: R): Promise<R>;
  recordResult(store: Store, result: R): Promise<void>;
  isPending(record: R): boolean;
  event(record: R): { kind: "payment"; payment: Payment } | { kind: "hold"; hold: EscrowHold };
  call(rail: PaymentRail, request: RailRequest): Promise<RailResult>;
  result(stored: R, answer: RailResult | PaymentRailError, atMs: bigint): R;
  outcome(record: R): Outcome;
  /** The item's records, oldest first: a retry adds one after the failed attempt. */
  attempts(contract: Contract, item: LineItem): R[];
  started(money: string, parties: ContractParties): string;
  succeeded(money: string, parties: ContractParties, item: LineItem): string;
}

const pay: StepSpec<Payment> = {
  stepName: "payment",
  label: "Payment",
  intent: (contract, item, parties, key, rail, atMs) =>
    create(PaymentSchema, {
      id: `pay_${randomUUID()}`,
      contractId: contract.id,
      lineItemId: item.id,
      payerUserId: parties.clientUserId,
      payeeUserId: parties.providerUserId,
      amountMinor: item.amountMinor,
      currency: contract.terms?.currency ?? "",
      status: PaymentStatus.PENDING,
      idempotencyKey: key,
      rail: rail.kind,
      updatedAtMs: atMs,
    }),
  recordIntent: (store, intent) => store.recordPaymentIntent(intent),
  recordResult: (store, result) => store.recordPaymentResult(result),
  isPending: (p) => p.status === PaymentStatus.PENDING,
  event: (payment) => ({ kind: "payment", payment }),
  call: (rail, request) => rail.pay(request),
  result(stored, answer, atMs) {
    const result: Payment = { ...stored, updatedAtMs: atMs };
    if (answer instanceof PaymentRailError || answer.status !== "succeeded") {
      result.status = PaymentStatus.FAILED;
      result.failureReason = answer instanceof PaymentRailError ? answer.message : answer.failureReason || `unexpected rail answer: ${answer.status}`;
      if (!(answer instanceof PaymentRailError)) result.railReference = answer.reference;
    } else {
      result.status = PaymentStatus.SUCCEEDED;
      result.railReference = answer.reference;
      result.failureReason = "";
    }
    return result;
  },
  outcome: (p) => (p.status === PaymentStatus.SUCCEEDED ? "succeeded" : "failed"),
  attempts: (contract, item) => contract.payments.filter((p) => p.lineItemId === item.id),
  started: (money, parties) => `Paying ${money} to ${parties.providerName}`,
  succeeded: (money, parties) => `${money} paid to ${parties.providerName}`,
};

const hold: StepSpec<EscrowHold> = {
  stepName: "escrow_hold",
  label: "Escrow hold",
  intent: (contract, item, parties, key, rail, atMs) =>
    create(EscrowHoldSchema, {
      id: `hold_${randomUUID()}`,
      contractId: contract.id,
      lineItemId: item.id,
      payerUserId: parties.clientUserId,
      payeeUserId: parties.providerUserId,
      amountMinor: holdAmountOf(item),
      capturedMinor: 0n,
      currency: contract.terms?.currency ?? "",
      status: EscrowHoldStatus.PENDING,
      idempotencyKey: key,
      rail: rail.kind,
      updatedAtMs: atMs,
    }),
  recordIntent: (store, intent) => store.recordHoldIntent(intent),
  recordResult: (store, result) => store.recordHoldResult(result),
  isPending: (h) => h.status === EscrowHoldStatus.PENDING,
  event: (h) => ({ kind: "hold", hold: h }),
  call: (rail, request) => rail.hold(request),
  result(stored, answer, atMs) {
    const result: EscrowHold = { ...stored, updatedAtMs: atMs };
    if (answer instanceof PaymentRailError) {
      result.status = EscrowHoldStatus.FAILED;
      result.failureReason = answer.message;
    } else {
      result.railReference = answer.reference;
      result.expiresAtMs = BigInt(answer.expiresAtMs ?? 0);
      result.capturedMinor = answer.capturedMinor ?? (answer.status === "succeeded" ? stored.amountMinor : 0n);
      result.failureReason = answer.failureReason ?? "";
      result.status = holdStatusOf(answer);
    }
    return result;
  },
  outcome: (h) => (h.status === EscrowHoldStatus.HELD ? "succeeded" : h.status === EscrowHoldStatus.FAILED ? "failed" : "other"),
  attempts: (contract, item) => contract.holds.filter((h) => h.lineItemId === item.id),
  started: (money) => `Holding ${money} in escrow`,
  succeeded: (money, _parties, item) => `${money} held in escrow until "${item.milestone?.title || item.description}" is done`,
};

/**
 * One forward step of the saga for one line item: records the intent (PENDING, with the key made
 * from contract + item + action) before the rail is called and the answer after, so a crash in
 * between is finished by calling again: the stored intent and key are reused, never a new one.
 * A step already answered does nothing. Its undo is derived from what it recorded (see `undoPlan`).
 */
export async function moneyStep(
  ctx: StepContext,
  kind: MoneyStepKind,
  contract: Contract,
  item: LineItem,
  parties: ContractParties,
  railParties: RailParties,
): Promise<void> {
  if (kind === "pay") await runStep(ctx, pay, "pay", contract, item, parties, railParties);
  else await runStep(ctx, hold, "hold", contract, item, parties, railParties);
}

/**
 * A new attempt of an item whose latest pay or hold failed (the payer retries, perhaps on another
 * card): a new record under a key of its own (amount + attempt id), since Stripe keeps the first
 * answer (the decline) under the old key. Refuses (FailedPrecondition) unless the latest failed.
 */
export async function retryMoneyStep(
  ctx: StepContext,
  kind: MoneyStepKind,
  contract: Contract,
  item: LineItem,
  parties: ContractParties,
  railParties: RailParties,
): Promise<void> {
  const spec: StepSpec<Payment | EscrowHold> = kind === "pay" ? (pay as StepSpec<Payment | EscrowHold>) : (hold as StepSpec<Payment | EscrowHold>);
  const latest = spec.attempts(contract, item).at(-1);
  if (!latest || spec.outcome(latest) !== "failed") {
    throw new FailedPreconditionError(`the ${spec.label.toLowerCase()} of "${item.description}" has not failed; only a failed one can be tried again`);
  }
  const key = idempotencyKey(contract.id, item.id, kind, { amountMinor: latest.amountMinor, attemptId: newAttemptId() });
  await runStep(ctx, spec, kind, contract, item, parties, railParties, key);
}

async function runStep<R extends Payment | EscrowHold>(
  ctx: StepContext,
  spec: StepSpec<R>,
  action: MoneyStepKind,
  contract: Contract,
  item: LineItem,
  parties: ContractParties,
  railParties: RailParties,
  retryKey?: string,
): Promise<void> {
  const { store, rail, events, now, log } = ctx;
  // The latest attempt's key: after a retry, the item's movement is the retried one.
  const key = retryKey ?? spec.attempts(contract, item).at(-1)?.idempotencyKey ?? idempotencyKey(contract.id, item.id, action);
  const fresh = spec.intent(contract, item, parties, key, rail, BigInt(now()));
  const stored = await spec.recordIntent(store, fresh);
  if (!spec.isPending(stored)) return; // answered before: nothing to do
  // A record left pending before (an answer lost, a crash): the rail may have moved the money.
  const resumed = stored.id !== fresh.id;
  const noun = spec.label.toLowerCase();
  if (stored.rail !== rail.kind) {
    events.panelError(contract, "payment_rail_mismatch", `A${action === "hold" ? "n" : ""} ${noun} was started on another payment rail; it needs attention`, false);
    log.error({ contractId: contract.id, lineItemId: item.id, rail: stored.rail }, `pending ${action === "hold" ? "hold" : "payment"} belongs to another rail`);
    return;
  }
  const money = formatMoney(stored.amountMinor, stored.currency);
  const at = { roomId: contract.roomId, contractId: contract.id };
  events.emit({ ...at, ...spec.event(stored) });
  events.step(contract, { step: spec.stepName, lineItemId: item.id, userId: stored.payerUserId, status: ExecutionStepStatus.STARTED, detail: spec.started(money, parties) });
  // The stored key, not a fresh one: on resume it is the key of the interrupted call.
  const request = railRequestFor(contract, item, railParties, stored.idempotencyKey, stored.amountMinor);
  // Resumed: what the rail made is looked up first (Stripe keeps a key's answer only 24 hours);
  // when nothing is found the same call is sent again under the same key.
  const found = resumed ? await lookUp(rail, request, stored.railReference, log) : undefined;
  if (!found && resumed && rail.find && now() - Number(stored.updatedAtMs) > KEY_RESEND_LIMIT_MS) {
    // Stripe may have pruned the key: a resend could charge twice. Nothing found is no proof, so a person decides.
    events.panelError(contract, "payment_needs_attention", `${spec.label} of ${money} has no known outcome after a day; it is not sent again automatically`, false);
    log.error({ contractId: contract.id, lineItemId: item.id }, `pending ${noun} too old to resend by key; needs attention`);
    return;
  }
  const answer = found ?? (await askRail(() => spec.call(rail, request)));
  if (answer instanceof PaymentRailError && answer.outcomeUnknown) {
    // No answer to rely on: the record stays PENDING (never "failed") until the rail is asked again.
    events.panelError(contract, "payment_pending", `${spec.label} of ${money}: ${answer.message}; checking with the payment provider before anything is retried`, true);
    log.warn({ contractId: contract.id, lineItemId: item.id, code: answer.code }, `${noun} outcome unknown; left pending`);
    return;
  }
  if (!(answer instanceof PaymentRailError) && answer.status === "requires_action") {
    // Neither failed nor retried: the payer authenticates on their device and Stripe's webhook (or
    // the next look-up) brings the outcome. The payer hears it once per intent.
    const waiting = { ...stored, railReference: answer.reference, updatedAtMs: BigInt(now()) };
    await spec.recordResult(store, waiting);
    if (stored.railReference !== answer.reference) {
      events.emit({ ...at, ...spec.event(waiting) });
      events.paymentAction(contract, stored.payerUserId, {
        lineItemId: item.id,
        kind: "authenticate",
        clientSecret: answer.clientSecret ?? "",
        paymentMethodId: answer.paymentMethodId ?? "",
        message: `Your card issuer asks you to confirm the ${noun} of ${money} for "${item.description}"`,
        declineCode: "",
      });
      log.info({ contractId: contract.id, lineItemId: item.id }, `${noun} waits for the payer to authenticate`);
    }
    return;
  }
  const result = spec.result(stored, answer, BigInt(now()));
  await spec.recordResult(store, result);
  events.emit({ ...at, ...spec.event(result) });
  const outcome = spec.outcome(result);
  if (outcome === "succeeded") {
    events.step(contract, { step: spec.stepName, lineItemId: item.id, userId: result.payerUserId, status: ExecutionStepStatus.SUCCEEDED, detail: spec.succeeded(money, parties, item) });
  } else if (outcome === "failed") {
    const retryable = answer instanceof PaymentRailError && answer.retryable;
    const failed = failureMessage(spec.label, result, item.description);
    events.step(contract, { step: spec.stepName, lineItemId: item.id, userId: result.payerUserId, status: ExecutionStepStatus.FAILED, detail: `${spec.label} of ${money} failed: ${result.failureReason}` });
    events.panelError(contract, "payment_failed", failed, retryable);
    offerRetry(events, contract, result.payerUserId, item.id, failed, {
      declineCode: answer instanceof PaymentRailError ? answer.declineCode : (answer.declineCode ?? ""),
      paymentMethodId: answer instanceof PaymentRailError ? "" : (answer.paymentMethodId ?? ""),
    });
    log.warn({ contractId: contract.id, lineItemId: item.id, reason: result.failureReason }, `${noun} failed`);
  }
}

/** The one wording of a failed movement: `Payment of £40.00 for "Parts" failed: card declined`. */
function failureMessage(label: string, movement: Payment | EscrowHold, description: string): string {
  return `${label} of ${formatMoney(movement.amountMinor, movement.currency)} for "${description}" failed: ${movement.failureReason}`;
}

/**
 * A movement the rail reported on by itself (a webhook): when it failed — a decline, a 3-D Secure
 * the payer abandoned — the payer is offered a retry, as when the rail call itself answered so.
 */
export function offerRetryIfFailed(events: SettlementEvents, contract: Contract, reported: Payment | EscrowHold): void {
  const isPayment = reported.$typeName === "handshake.v1.Payment";
  if (reported.status !== (isPayment ? PaymentStatus.FAILED : EscrowHoldStatus.FAILED)) return;
  const description = contract.terms?.lineItems.find((i) => i.id === reported.lineItemId)?.description ?? reported.lineItemId;
  offerRetry(events, contract, reported.payerUserId, reported.lineItemId, failureMessage((isPayment ? pay : hold).label, reported, description));
}

/**
 * A declined card (or a 3-D Secure the payer did not complete) is the payer's to fix: they alone
 * hear why, and may try again (RetryPayment).
 */
function offerRetry(
  events: SettlementEvents,
  contract: Contract,
  payerUserId: string,
  lineItemId: string,
  message: string,
  card: { declineCode: string; paymentMethodId: string } = { declineCode: "", paymentMethodId: "" },
): void {
  events.paymentAction(contract, payerUserId, { lineItemId, kind: "retry", clientSecret: "", message, ...card });
}

/** The rail's record of a pending movement, if it can find one; a rail error other than "still processing" means "look again later by key". */
async function lookUp(rail: PaymentRail, request: RailRequest, reference: string, log: Logger): Promise<RailResult | PaymentRailError | undefined> {
  // A known reference (an intent waiting for the payer to authenticate) is asked about directly.
  if (!rail.find && reference === "") return undefined;
  try {
    return reference !== "" ? await rail.status(reference) : await rail.find!(request);
  } catch (err) {
    if (err instanceof PaymentRailError && err.code === "not_settled") return err;
    log.warn({ err, contractId: request.contractId, lineItemId: request.lineItemId }, "looking up a pending movement at the rail failed; sending it again by key");
    return undefined;
  }
}
