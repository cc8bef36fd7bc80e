import { MilestoneStatus, type Milestone } from "../../gen/handshake/v1/deal_pb.js";
import { FailedPreconditionError } from "../core/errors.js";

/** Where a milestone stands; the stored `MilestoneStatus` is its wire form. */
export type MilestoneState = "pending" | "amount_proposed" | "completed" | "released" | "failed";

/** What can happen to a milestone: the parties' actions, and the rail's answers about its hold. */
export type MilestoneEvent =
  | { type: "confirm"; by: "client" | "provider" }
  | { type: "propose"; amountMinor: bigint }
  | { type: "approve" }
  | { type: "captured"; capturedMinor: bigint }
  | { type: "released" }
  | { type: "refused"; reason: string }
  | { type: "hold_expired" };

/** A state change, as `transition` reports it. */
export interface MilestoneChange {
  from: MilestoneState;
  to: MilestoneState;
  at: number;
}

const STATES: Record<MilestoneState, MilestoneStatus> = {
  pending: MilestoneStatus.PENDING,
  amount_proposed: MilestoneStatus.AMOUNT_PROPOSED,
  completed: MilestoneStatus.COMPLETED,
  released: MilestoneStatus.RELEASED,
  failed: MilestoneStatus.FAILED,
};

/** The state a stored status means; an unset status reads as pending. */
export function milestoneState(status: MilestoneStatus): MilestoneState {
  for (const [state, s] of Object.entries(STATES) as [MilestoneState, MilestoneStatus][]) if (s === status) return state;
  return "pending";
}

/** True once the hold was captured or released: nothing moves a settled milestone again. */
export function isSettledMilestone(milestone: Milestone): boolean {
  const state = milestoneState(milestone.status);
  return state === "completed" || state === "released";
}

/**
 * The milestone after `event`, or undefined when the event is not allowed in its state. Pure:
 * no clock (the caller stamps `updatedAtMs`), no store.
 */
export function next(milestone: Milestone, event: MilestoneEvent): Milestone | undefined {
  const state = milestoneState(milestone.status);
  if (state === "completed" || state === "released") return undefined;
  switch (event.type) {
    case "confirm":
      return { ...milestone, [event.by === "provider" ? "providerConfirmed" : "clientConfirmed"]: true };
    case "propose":
      // A new amount needs a new approval; proposing it is the provider's confirmation.
      return {
        ...milestone,
        status: STATES.amount_proposed,
        proposedAmountMinor: event.amountMinor,
        providerConfirmed: true,
        clientConfirmed: false,
        failureReason: "",
      };
    case "approve":
      if (milestone.proposedAmountMinor <= 0n || (state !== "amount_proposed" && state !== "failed")) return undefined;
      return { ...milestone, clientConfirmed: true };
    case "captured":
      return { ...milestone, status: STATES.completed, capturedMinor: event.capturedMinor, failureReason: "" };
    case "released":
      return { ...milestone, status: STATES.released, capturedMinor: 0n, failureReason: "" };
    case "refused":
      return { ...milestone, status: STATES.failed, failureReason: event.reason };
    case "hold_expired":
      if (state === "failed") return undefined;
      return { ...milestone, status: STATES.failed, failureReason: "The escrow hold lapsed before capture" };
  }
}

/**
 * Applies `event` and stamps the time; refuses an illegal move with FailedPreconditionError.
 * Returns the change of state too (undefined when the state stayed, e.g. a confirmation).
 */
export function transition(milestone: Milestone, event: MilestoneEvent, atMs: number): { milestone: Milestone; change?: MilestoneChange } {
  const after = next(milestone, event);
  if (!after) {
    throw new FailedPreconditionError(`milestone ${milestone.id} cannot take "${event.type}" while ${milestoneState(milestone.status)}`);
  }
  after.updatedAtMs = BigInt(atMs);
  const from = milestoneState(milestone.status);
  const to = milestoneState(after.status);
  return from === to ? { milestone: after } : { milestone: after, change: { from, to, at: atMs } };
}
