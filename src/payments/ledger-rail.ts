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
 * release: payer held → payer available. Each call is one transaction under the request's
 * idempotency key, so a replay returns the first transaction and moves nothing more. Holds do
 * not lapse here (no `expiresAtMs`).
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
      await post(request, legs, memo("capture", request));
      return { reference, status: "captured", capturedMinor: amount };
    },

    async release(reference, request) {
      const hold = await holdFor(reference);
      if (hold.status === EscrowHoldStatus.RELEASED) return { reference, status: "released", capturedMinor: 0n };
      if (hold.status !== EscrowHoldStatus.HELD && hold.status !== EscrowHoldStatus.PENDING) {
        throw new PaymentRailError("This hold is no longer held and cannot be released", "hold_not_releasable", false);
      }
      const { payerUserId: payer, currency, amountMinor } = hold;
      await post(
        request,
        [
          { account: ledgerAccounts.held(payer), currency, amountMinor: -amountMinor },
          { account: ledgerAccounts.available(payer), currency, amountMinor },
        ],
        memo("release", request),
      );
      return { reference, status: "released", capturedMinor: 0n };
    },

    async status(reference) {
      // In the embedded ledger the store is the rail: its records are the rail's view.
      const payment = await store.getPaymentByRailReference(reference);
      if (payment && payment.rail === PaymentRailKind.LEDGER) return { reference, status: "succeeded" };
      const hold = await holdFor(reference);
      return { reference, ...holdView(hold) };
    },
  };
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
