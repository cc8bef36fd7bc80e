import type { PaymentRail as PaymentRailKind } from "../../gen/handshake/v1/deal_pb.js";
import type { Retryable } from "../core/retry.js";

/** Who pays whom, as the rail needs it. Accounts come from the parties' profiles. */
export interface RailParties {
  payerUserId: string;
  payeeUserId: string;
  /** Stripe customer and saved payment method of the payer (unused by the ledger). */
  payerCustomerId?: string;
  payerPaymentMethodId?: string;
  /** Stripe connected account of the payee (unused by the ledger). */
  payeeAccountId?: string;
}

/** One call to a rail. The key is derived from contract + line item + action and never changes on retry. */
export interface RailRequest extends RailParties {
  idempotencyKey: string;
  amountMinor: bigint;
  currency: string;
  description: string;
  /** Our references, passed on as metadata so webhooks can be matched. */
  contractId: string;
  lineItemId: string;
}

/** What a rail reports back. */
export interface RailResult {
  /** The rail's id: ledger transaction id or Stripe PaymentIntent id. */
  reference: string;
  /**
   * `requires_action`: the card issuer wants the payer to authenticate (3-D Secure) before the
   * money moves; neither failed nor to be retried: the payer confirms with `clientSecret`, and the
   * outcome arrives later (a webhook, or `status`).
   */
  status: "succeeded" | "held" | "captured" | "released" | "failed" | "requires_action";
  /** Amount captured so far, for holds. */
  capturedMinor?: bigint;
  /** When an authorisation lapses, Unix ms (holds only). */
  expiresAtMs?: number;
  failureReason?: string;
  /** PaymentIntent client secret for the payer's device (`requires_action` only). */
  clientSecret?: string;
  /** The payment method the movement was tried with. */
  paymentMethodId?: string;
  /** The issuer's decline code of a declined card (e.g. "insufficient_funds"). */
  declineCode?: string;
}

/**
 * A payment rail: Stripe Connect (remote) or the embedded ledger. Every method is idempotent for
 * its key: calling it again with the same key returns the first outcome and moves no more money.
 * A hold is settled once: after a capture a release is refused, after a release a capture is
 * (PaymentRailError), whatever our records say, so a crash between a rail call and its record
 * can never settle one hold both ways.
 */
export interface PaymentRail {
  readonly kind: PaymentRailKind;
  /** Pays now. */
  pay(request: RailRequest): Promise<RailResult>;
  /** Authorises and holds `amountMinor` for later capture. */
  hold(request: RailRequest): Promise<RailResult>;
  /** Captures `amountMinor` of the hold `reference` (all or part; the rest is released). */
  capture(reference: string, request: RailRequest): Promise<RailResult>;
  /** Cancels the hold `reference`, returning the money to the payer. */
  release(reference: string, request: RailRequest): Promise<RailResult>;
  /** The rail's current view of `reference`. */
  status(reference: string): Promise<RailResult>;
  /**
   * The movement the pay or hold `request` made, found by the contract and line item it carries
   * (when the call's answer was lost, so no reference is known), or undefined when none is found.
   */
  find?(request: RailRequest): Promise<RailResult | undefined>;
}

/**
 * A rail refusal or failure. `retryable` follows core/retry.ts: false for 4xx other than 408 and
 * 429. `outcomeUnknown`: no answer to rely on (a timeout or lost connection after the retries, a
 * 5xx, a 429, still processing), so the money may have moved: the record stays pending, never failed.
 */
export class PaymentRailError extends Error implements Retryable {
  override readonly name = "PaymentRailError";
  constructor(
    message: string,
    readonly code: string,
    readonly retryable: boolean,
    readonly outcomeUnknown = false,
    /** The issuer's decline code when a card was declined (e.g. "insufficient_funds"). */
    readonly declineCode = "",
  ) {
    super(message);
  }
}
