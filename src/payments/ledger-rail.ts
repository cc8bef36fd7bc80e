import { randomUUID } from "node:crypto";
import { EscrowHoldStatus, PaymentRail as PaymentRailKind, type EscrowHold } from "../../gen/handshake/v1/deal_pb.js";
import { ledgerAccounts } from "../store/ledger-accounts.js";
import type { LedgerLeg, Store } from "../store/store.js";
import { PaymentRailError, type PaymentRail, type RailRequest, type RailResult } from "./rail.js";

/** Ledger account names, the convention the store's `getBalances` reads (defined once, in the store). */
export { ledgerAccounts };

/** Options of the ledger rail. */
export interface LedgerRailOptions {
  /** Clock for transaction times, Unix ms. */
  now?: () => number;
}

/**
 * The embedded payment rail: double-entry transactions in the store's ledger, no outside service.
 *
 * Funding: there is no real money source offline, so the payer's `available` account may go
 * negative (an overdraft) rather than every payment first drawing on `external:funding`. A
 * negative available balance reads as "owes this much"; top-ups, if ever added, move money
 * `external:funding` → `available`. Every transaction's legs sum to zero per currency.
 *
 * pay: payer available → payee received. hold: payer available → payer held. capture(amount):
 * payer held → payee received for `amount`, the rest of the hold back to payer available.
 * release: payer held → payer available. Each call is one transaction under an idempotency key,
 * so a replay returns the first transaction and moves nothing more: pay and hold use the request's
 * key; a capture or release uses the hold's own settlement key, so a hold is settled once however
 * it is asked (a capture of a released hold is refused even while its record still says HELD).
 * Holds do not lapse here (no `expiresAtMs`).
 */
export function createLedgerRail(store: Store, options: LedgerRailOptions = {}): PaymentRail {
  const now = options.now ?? Date.now;

  /** Posts the legs once per key; a replay with different legs is refused, as Stripe would. */
  async function post(request: RailRequest, legs: LedgerLeg[], memo: string): Promise<string> {
    const { transaction, replayed } = await store.postLedgerTransaction({
      id: `ltx_${randomUUID()}`,
      idempotencyKey: request.idempotencyKey,
      legs,
      memo,
      atMs: now(),
    });
    if (replayed && !sameLegs(transaction.legs, legs)) {
      throw new PaymentRailError(
        "This idempotency key was already used for a different ledger movement",
        "idempotency_error",
        false,
      );
    }
    return transaction.id;
  }

  /**
   * Posts the one settlement a hold can have (a capture or a release) under a key of the hold's
   * own, whatever the request's key: a second settlement of any kind is a replay of the first,
   * so a hold is never both released and captured even when its record lags the ledger after a
   * crash. Returns what the first settlement was.
   */
  async function settle(hold: EscrowHold, legs: LedgerLeg[], memoText: string): Promise<Settlement> {
    const { transaction } = await store.postLedgerTransaction({
      id: `ltx_${randomUUID()}`,
      idempotencyKey: settlementKey(hold.railReference),
      legs,
      memo: memoText,
      atMs: now(),
    });
    return settlementOf(hold, transaction.legs);
  }

  async function holdFor(reference: string): Promise<EscrowHold> {
    const hold = await store.getHoldByRailReference(reference);
    if (!hold || hold.rail !== PaymentRailKind.LEDGER) {
      throw new PaymentRailError(`No ledger escrow hold has reference ${reference}`, "unknown_reference", false);
    }
    return hold;
  }

  return {
    kind: PaymentRailKind.LEDGER,

    async pay(request) {
      checkRequest(request);
      const { payerUserId: payer, payeeUserId: payee, currency, amountMinor } = request;
      const reference = await post(
        request,
        [
          { account: ledgerAccounts.available(payer), currency, amountMinor: -amountMinor },
          { account: ledgerAccounts.received(payee), currency, amountMinor },
        ],
        memo("pay", request),
      );
      return { reference, status: "succeeded" };
    },

    async hold(request) {
      checkRequest(request);
      const { payerUserId: payer, currency, amountMinor } = request;
      const reference = await post(
        request,
        [
          { account: ledgerAccounts.available(payer), currency, amountMinor: -amountMinor },
          { account: ledgerAccounts.held(payer), currency, amountMinor },
        ],
        memo("hold", request),
      );
      return { reference, status: "held", capturedMinor: 0n };
    },

    async capture(reference, request) {
      // The hold record, not the request, says whose money is held and how much.
      const hold = await holdFor(reference);
      const amount = request.amountMinor;
      if (amount <= 0n || amount > hold.amountMinor) {
        throw new PaymentRailError(
          `Capture amount ${amount} must be between 1 and the held ${hold.amountMinor}`,
          "invalid_amount",
          false,
        );
      }
      if (hold.status === EscrowHoldStatus.CAPTURED) {
        // Already captured: the same capture again is its own replay; any other is refused.
        if (hold.capturedMinor === amount) return { reference, status: "captured", capturedMinor: amount };
        throw new PaymentRailError("This hold was already captured", "already_captured", false);
      }
      if (hold.status !== EscrowHoldStatus.HELD && hold.status !== EscrowHoldStatus.PENDING) {
        throw new PaymentRailError("This hold is no longer held and cannot be captured", "hold_not_capturable", false);
      }
      const { payerUserId: payer, payeeUserId: payee, currency } = hold;
      const rest = hold.amountMinor - amount;
      const legs: LedgerLeg[] = [
        { account: ledgerAccounts.held(payer), currency, amountMinor: -hold.amountMinor },
        { account: ledgerAccounts.received(payee), currency, amountMinor: amount },
      ];
      if (rest > 0n) legs.push({ account: ledgerAccounts.available(payer), currency, amountMinor: rest });
      const first = await settle(hold, legs, memo("capture", request));
      if (first.action === "release") throw new PaymentRailError("This hold was already released and cannot be captured", "hold_not_capturable", false);
      if (first.capturedMinor !== amount) throw new PaymentRailError("This hold was already captured", "already_captured", false);
      return { reference, status: "captured", capturedMinor: amount };
    },

    async release(reference, request) {
      const hold = await holdFor(reference);
      if (hold.status === EscrowHoldStatus.RELEASED) return { reference, status: "released", capturedMinor: 0n };
      if (hold.status !== EscrowHoldStatus.HELD && hold.status !== EscrowHoldStatus.PENDING) {
        throw new PaymentRailError("This hold is no longer held and cannot be released", "hold_not_releasable", false);
      }
      const { payerUserId: payer, currency, amountMinor } = hold;
      const first = await settle(
        hold,
        [
          { account: ledgerAccounts.held(payer), currency, amountMinor: -amountMinor },
          { account: ledgerAccounts.available(payer), currency, amountMinor },
        ],
        memo("release", request),
      );
      if (first.action === "capture") throw new PaymentRailError("This hold was already captured and cannot be released", "hold_not_releasable", false);
      return { reference, status: "released", capturedMinor: 0n };
    },

    async status(reference) {
      // In the embedded ledger the store is the rail: its records (and postings) are the rail's view.
      const payment = await store.getPaymentByRailReference(reference);
      if (payment && payment.rail === PaymentRailKind.LEDGER) return { reference, status: "succeeded" };
      const hold = await holdFor(reference);
      if (hold.status === EscrowHoldStatus.HELD || hold.status === EscrowHoldStatus.PENDING) {
        // The record may lag the ledger after a crash: the settlement posting is what happened.
        const posted = await store.getLedgerTransaction(settlementKey(reference));
        if (posted) {
          const done = settlementOf(hold, posted.legs);
          return done.action === "capture" ? { reference, status: "captured", capturedMinor: done.capturedMinor } : { reference, status: "released", capturedMinor: 0n };
        }
      }
      return { reference, ...holdView(hold) };
    },
  };
}

/** What settled a hold: a capture (with the amount paid out) or a release. */
interface Settlement {
  action: "capture" | "release";
  capturedMinor: bigint;
}

/** The ledger key of a hold's one settlement. */
function settlementKey(holdReference: string): string {
  return `ledger:settle:${holdReference}`;
}

/** Reads a settlement posting: a capture credits the payee's received account, a release does not. */
function settlementOf(hold: EscrowHold, legs: readonly LedgerLeg[]): Settlement {
  const paid = legs.find((l) => l.account === ledgerAccounts.received(hold.payeeUserId));
  return paid ? { action: "capture", capturedMinor: paid.amountMinor } : { action: "release", capturedMinor: 0n };
}

function holdView(hold: EscrowHold): Omit<RailResult, "reference"> {
  switch (hold.status) {
    case EscrowHoldStatus.CAPTURED:
      return { status: "captured", capturedMinor: hold.capturedMinor };
    case EscrowHoldStatus.RELEASED:
    case EscrowHoldStatus.EXPIRED:
      return { status: "released", capturedMinor: 0n };
    case EscrowHoldStatus.FAILED:
      return { status: "failed", failureReason: hold.failureReason };
    default:
      // PENDING with a reference means the transaction was posted: the money is held.
      return { status: "held", capturedMinor: 0n };
  }
}

function checkRequest(request: RailRequest): void {
  if (request.amountMinor <= 0n) {
    throw new PaymentRailError(`Amount must be positive, got ${request.amountMinor}`, "invalid_amount", false);
  }
  if (!/^[A-Z]{3}$/.test(request.currency)) {
    throw new PaymentRailError(`Currency "${request.currency}" is not an ISO 4217 code`, "invalid_currency", false);
  }
  if (request.payerUserId === "" || request.payeeUserId === "") {
    throw new PaymentRailError("Payer and payee are required", "invalid_parties", false);
  }
  if (request.payerUserId === request.payeeUserId) {
    throw new PaymentRailError("Payer and payee are the same person", "invalid_parties", false);
  }
}

function memo(action: string, request: RailRequest): string {
  return `${action} ${request.contractId}/${request.lineItemId}: ${request.description}`.slice(0, 500);
}

function sameLegs(a: readonly LedgerLeg[], b: readonly LedgerLeg[]): boolean {
  return (
    a.length === b.length &&
    a.every((leg, i) => {
      const other = b[i];
      return other !== undefined && other.account === leg.account && other.currency === leg.currency && other.amountMinor === leg.amountMinor;
    })
  );
}
