import { EscrowHoldStatus, type Contract, type LineItem } from "../../gen/handshake/v1/deal_pb.js";
import type { ContractParties } from "../deal/milestones-rules.js";
import { PaymentRailError, type RailParties, type RailRequest, type RailResult } from "../payments/rail.js";
import type { Store } from "../store/store.js";

/** The rail's view of the parties: user ids plus the Stripe ids saved in their profiles. */
export async function railPartiesFor(store: Store, parties: ContractParties): Promise<RailParties> {
  const [client, provider] = await Promise.all([store.getProfile(parties.clientUserId), store.getProfile(parties.providerUserId)]);
  return {
    payerUserId: parties.clientUserId,
    payeeUserId: parties.providerUserId,
    payerCustomerId: client?.stripeCustomerId || undefined,
    payerPaymentMethodId: client?.stripePaymentMethodId || undefined,
    payeeAccountId: provider?.stripeAccountId || undefined,
  };
}

/** One rail request for `item` of `contract`: deterministic, so a resumed call sends exactly the first's parameters. */
export function railRequestFor(contract: Contract, item: LineItem, parties: RailParties, key: string, amountMinor: bigint, currency?: string): RailRequest {
  return {
    ...parties,
    idempotencyKey: key,
    amountMinor,
    currency: currency ?? contract.terms?.currency ?? "",
    description: `${contract.title}: ${item.description}`.slice(0, 500),
    contractId: contract.id,
    lineItemId: item.id,
  };
}

/** The hold status a rail answer means. */
export function holdStatusOf(result: RailResult): EscrowHoldStatus {
  switch (result.status) {
    case "held":
      return EscrowHoldStatus.HELD;
    case "captured":
      return EscrowHoldStatus.CAPTURED;
    case "released":
      return EscrowHoldStatus.RELEASED;
    case "failed":
      return EscrowHoldStatus.FAILED;
    case "requires_action":
      // Waiting for the payer to authenticate: nothing is held yet, and nothing failed.
      return EscrowHoldStatus.PENDING;
    case "succeeded":
      // A hold the rail reports as plainly paid was captured in full.
      return EscrowHoldStatus.CAPTURED;
  }
}

/**
 * Calls the rail: a `PaymentRailError` is an answer to record (a refusal), anything else is
 * thrown because the outcome is unknown and must be retried with the same key.
 */
export async function askRail(fn: () => Promise<RailResult>): Promise<RailResult | PaymentRailError> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PaymentRailError) return err;
    throw err;
  }
}
