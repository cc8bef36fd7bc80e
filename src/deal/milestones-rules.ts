import {
  EscrowHoldStatus,
  MilestoneStatus,
  type Contract,
  type EscrowHold,
  type LineItem,
  type Milestone,
} from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from "../core/errors.js";
import { formatMoney } from "../core/money.js";
import { isSettledMilestone, next, type MilestoneEvent } from "./milestones-state.js";

/** The client (payer) and provider (payee) of a contract. */
export interface ContractParties {
  clientUserId: string;
  providerUserId: string;
  clientName: string;
  providerName: string;
}

/** Who pays and who is paid: the parties' roles, else the agreed proposal's user ids. */
export function partiesOf(contract: Contract): ContractParties {
  const client = contract.parties.find((p) => p.role === PartyRole.CLIENT);
  const provider = contract.parties.find((p) => p.role === PartyRole.PROVIDER);
  const clientUserId = client?.userId || contract.terms?.clientUserId || "";
  const providerUserId = provider?.userId || contract.terms?.providerUserId || "";
  if (!clientUserId || !providerUserId) {
    throw new FailedPreconditionError(`contract ${contract.id} does not name both a client and a provider`);
  }
  const nameOf = (userId: string) => contract.parties.find((p) => p.userId === userId)?.displayName || userId;
  return { clientUserId, providerUserId, clientName: nameOf(clientUserId), providerName: nameOf(providerUserId) };
}

/** The amount an escrow or conditional item holds: its range's maximum, else its amount. */
export function holdAmountOf(item: LineItem): bigint {
  return item.range ? item.range.maxMinor : item.amountMinor;
}

/** Everything one milestone action is decided on, read in one go under the contract's lock. */
export interface MilestoneScene {
  contract: Contract;
  parties: ContractParties;
  role: "client" | "provider";
  milestone: Milestone;
  item: LineItem;
  hold: EscrowHold | undefined;
  /** The final amount is a range, agreed by proposal and approval. */
  ranged: boolean;
}

/** Refuses anyone who is not a party to the contract (PermissionDenied). */
export function requireParty(contract: Contract, userId: string): void {
  if (!contract.parties.some((p) => p.userId === userId)) throw new PermissionDeniedError("you are not a party to this contract");
}

/** The scene of `milestoneId` as `userId` sees it; NotFound for an unknown milestone or item. */
export function milestoneScene(contract: Contract, userId: string, milestoneId: string): MilestoneScene {
  const parties = partiesOf(contract);
  const milestone = contract.milestones.find((m) => m.id === milestoneId);
  if (!milestone) throw new NotFoundError(`milestone ${milestoneId} not found in contract ${contract.id}`);
  const item = contract.terms?.lineItems.find((i) => i.id === milestone.lineItemId);
  if (!item) throw new NotFoundError(`line item ${milestone.lineItemId} of milestone ${milestoneId} not found`);
  const role = userId === parties.providerUserId ? "provider" : "client";
  // The latest attempt: a retried hold adds a record after the failed one.
  const hold = contract.holds.findLast((h) => h.lineItemId === milestone.lineItemId);
  return { contract, parties, role, milestone, item, hold, ranged: milestone.minMinor < milestone.maxMinor };
}

/** The hold of the scene, refusing (FailedPrecondition) when it is not HELD. */
export function requireHeld(s: MilestoneScene): EscrowHold {
  if (!s.hold || s.hold.status !== EscrowHoldStatus.HELD) {
    const state = s.hold ? EscrowHoldStatus[s.hold.status].toLowerCase() : "not placed";
    throw new FailedPreconditionError(`the escrow hold for this milestone is not in place (it is ${state})`);
  }
  return s.hold;
}

/**
 * What an action decided. `unchanged`: it already took effect; `save`: record the milestone;
 * `capture`: record the milestone when `record`, then capture `amountMinor`; `release`: give the hold back.
 */
export type MilestoneDecision =
  | { kind: "unchanged"; milestone: Milestone }
  | { kind: "save"; milestone: Milestone }
  | { kind: "capture"; milestone: Milestone; record: boolean; amountMinor: bigint; hold: EscrowHold }
  | { kind: "release"; milestone: Milestone; hold: EscrowHold };

function apply(milestone: Milestone, event: MilestoneEvent): Milestone {
  const after = next(milestone, event);
  if (!after) throw new FailedPreconditionError("this milestone is already settled");
  return after;
}

/**
 * A party says the milestone is done. A fixed-amount milestone is captured in full once both have;
 * a ranged one is refused for the client (a plain confirmation carries no amount). Repeating a
 * confirmation is a no-op, except that after a refused capture it tries the capture again.
 */
export function decideConfirm(s: MilestoneScene): MilestoneDecision {
  const { milestone } = s;
  if (isSettledMilestone(milestone)) return { kind: "unchanged", milestone };
  if (s.ranged && s.role === "client") {
    throw new FailedPreconditionError(
      "this milestone's price is a range: the provider proposes the final amount and you approve it (ApproveMilestoneAmount)",
    );
  }
  const wasSet = s.role === "provider" ? milestone.providerConfirmed : milestone.clientConfirmed;
  const bothAfter = s.role === "provider" ? milestone.clientConfirmed : milestone.providerConfirmed;
  // A retry after a refused capture: both had confirmed, so try the capture again (same key).
  const retryCapture = milestone.status === MilestoneStatus.FAILED && milestone.providerConfirmed && milestone.clientConfirmed && !s.ranged;
  if (wasSet && !retryCapture) return { kind: "unchanged", milestone };
  const hold = requireHeld(s);
  const confirmed = wasSet ? milestone : apply(milestone, { type: "confirm", by: s.role });
  if (!s.ranged && (bothAfter || retryCapture)) return { kind: "capture", milestone: confirmed, record: !wasSet, amountMinor: hold.amountMinor, hold };
  return { kind: "save", milestone: confirmed };
}

/** The provider proposes the final amount of a ranged milestone, within [min, max]. */
export function decidePropose(s: MilestoneScene, amountMinor: bigint): MilestoneDecision {
  const { milestone } = s;
  if (s.role !== "provider") throw new PermissionDeniedError("only the provider proposes the final amount");
  if (isSettledMilestone(milestone)) throw new FailedPreconditionError("this milestone is already settled");
  if (!s.ranged) throw new FailedPreconditionError("this milestone has a fixed amount; confirm it instead");
  if (amountMinor < milestone.minMinor || amountMinor > milestone.maxMinor) {
    throw new InvalidArgumentError(
      `amount_minor must be between ${milestone.minMinor} and ${milestone.maxMinor} (${formatMoney(milestone.minMinor, milestone.currency)}–${formatMoney(milestone.maxMinor, milestone.currency)})`,
    );
  }
  requireHeld(s);
  if (milestone.status === MilestoneStatus.AMOUNT_PROPOSED && milestone.proposedAmountMinor === amountMinor) return { kind: "unchanged", milestone };
  return { kind: "save", milestone: apply(milestone, { type: "propose", amountMinor }) };
}

/** The client approves exactly the proposed amount: that much is captured, the rest released. */
export function decideApprove(s: MilestoneScene, amountMinor: bigint): MilestoneDecision {
  const { milestone } = s;
  if (s.role !== "client") throw new PermissionDeniedError("only the client approves the final amount");
  if (milestone.status === MilestoneStatus.COMPLETED && milestone.capturedMinor === amountMinor) return { kind: "unchanged", milestone };
  if (isSettledMilestone(milestone)) throw new FailedPreconditionError("this milestone is already settled");
  const proposed = milestone.proposedAmountMinor;
  const retry = milestone.status === MilestoneStatus.FAILED && milestone.clientConfirmed && proposed > 0n;
  if (milestone.status !== MilestoneStatus.AMOUNT_PROPOSED && !retry) {
    throw new FailedPreconditionError("no final amount has been proposed for this milestone yet");
  }
  if (proposed === 0n || amountMinor !== proposed) {
    throw new FailedPreconditionError(
      `the proposed amount is ${proposed === 0n ? "unset" : formatMoney(proposed, milestone.currency)}, not ${formatMoney(amountMinor, milestone.currency)}; reload and approve what is proposed`,
    );
  }
  const hold = requireHeld(s);
  // Recorded before the capture call: the approval is the record of what to capture.
  if (milestone.clientConfirmed) return { kind: "capture", milestone, record: false, amountMinor: proposed, hold };
  return { kind: "capture", milestone: apply(milestone, { type: "approve" }), record: true, amountMinor: proposed, hold };
}

/** The provider gives the hold back to the client; a milestone already paid out cannot be. */
export function decideRelease(s: MilestoneScene): MilestoneDecision {
  const { milestone } = s;
  if (s.role !== "provider") throw new PermissionDeniedError("only the provider may release the escrow to the client");
  if (milestone.status === MilestoneStatus.RELEASED) return { kind: "unchanged", milestone };
  if (milestone.status === MilestoneStatus.COMPLETED) throw new FailedPreconditionError("this milestone was already paid out");
  return { kind: "release", milestone, hold: requireHeld(s) };
}

/** The amount the parties decided to capture, when they did and it is not done yet (crash recovery). */
export function decidedCapture(s: MilestoneScene): bigint | undefined {
  const { milestone, hold } = s;
  if (isSettledMilestone(milestone) || milestone.status === MilestoneStatus.FAILED || hold?.status !== EscrowHoldStatus.HELD) return undefined;
  if (!s.ranged) return milestone.providerConfirmed && milestone.clientConfirmed ? hold.amountMinor : undefined;
  const approved = milestone.status === MilestoneStatus.AMOUNT_PROPOSED && milestone.clientConfirmed && milestone.proposedAmountMinor > 0n;
  return approved ? milestone.proposedAmountMinor : undefined;
}

/**
 * The milestone as its hold says it must be, after the hold changed outside the milestone
 * service (captured, released or lapsed at the rail); undefined when nothing is to change.
 */
export function milestoneAfterHold(milestone: Milestone, hold: EscrowHold): Milestone | undefined {
  if (isSettledMilestone(milestone)) return undefined;
  if (hold.status === EscrowHoldStatus.CAPTURED) return next(milestone, { type: "captured", capturedMinor: hold.capturedMinor });
  if (hold.status === EscrowHoldStatus.RELEASED) return next(milestone, { type: "released" });
  if (hold.status === EscrowHoldStatus.EXPIRED) return next(milestone, { type: "hold_expired" });
  return undefined;
}
