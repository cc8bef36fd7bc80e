import type { Logger } from "pino";
import { EscrowHoldStatus, type Contract, type EscrowHold, type Milestone } from "../../gen/handshake/v1/deal_pb.js";
import { milestoneAfterHold } from "../deal/milestones-rules.js";
import type { PaymentRail, RailResult } from "../payments/rail.js";
import type { Store } from "../store/store.js";
import type { SettlementEvents } from "./settlement-events.js";

/**
 * Brings milestones in line with holds that changed outside the milestone service (captured or
 * released at the rail, lapsed): each such milestone is stored and broadcast.
 */
export async function syncMilestones(store: Store, events: SettlementEvents, now: () => number, contract: Contract): Promise<void> {
  for (const milestone of contract.milestones) {
    const hold = contract.holds.findLast((h) => h.lineItemId === milestone.lineItemId);
    if (!hold) continue;
    const next = milestoneAfterHold(milestone, hold);
    if (!next) continue;
    next.updatedAtMs = BigInt(now());
    await store.saveMilestone(next);
    events.emit({ kind: "milestone", roomId: contract.roomId, contractId: contract.id, milestone: next });
  }
}

/**
 * Records a hold whose state changed, with its milestone in the same transaction when the change
 * settles the milestone too; returns that milestone (to announce) or undefined.
 */
export async function recordHoldChange(store: Store, now: () => number, contract: Contract, hold: EscrowHold): Promise<Milestone | undefined> {
  const milestone = contract.milestones.find((m) => m.lineItemId === hold.lineItemId);
  const next = milestone && milestoneAfterHold(milestone, hold);
  if (next) {
    next.updatedAtMs = BigInt(now());
    await store.recordSettlementOutcome({ hold, milestone: next });
  } else {
    await store.recordHoldResult(hold);
  }
  return next;
}

/**
 * Asks the rail about each HELD hold of the contract and records what it carried out without our
 * record of it (a crash after the rail call): the hold and its milestone, in one transaction.
 */
export async function squareHoldsWithRail(store: Store, rail: PaymentRail, events: SettlementEvents, now: () => number, log: Logger, contract: Contract): Promise<void> {
  for (const hold of contract.holds) {
    if (hold.status !== EscrowHoldStatus.HELD || hold.rail !== rail.kind || hold.railReference === "") continue;
    let view: RailResult;
    try {
      view = await rail.status(hold.railReference);
    } catch (err) {
      log.warn({ err, contractId: contract.id, holdId: hold.id }, "rail status unavailable while reconciling a hold");
      continue;
    }
    let updated: EscrowHold | undefined;
    if (view.status === "captured" || view.status === "succeeded") {
      updated = { ...hold, status: EscrowHoldStatus.CAPTURED, capturedMinor: view.capturedMinor ?? hold.amountMinor, failureReason: "" };
    } else if (view.status === "released") {
      updated = { ...hold, status: EscrowHoldStatus.RELEASED, capturedMinor: 0n, failureReason: "" };
    }
    if (!updated) continue;
    updated.updatedAtMs = BigInt(now());
    log.info({ contractId: contract.id, holdId: hold.id, status: view.status }, "hold settled at the rail without its record; recording it");
    const next = await recordHoldChange(store, now, contract, updated);
    events.emit({ kind: "hold", roomId: contract.roomId, contractId: contract.id, hold: updated });
    if (next) events.emit({ kind: "milestone", roomId: contract.roomId, contractId: contract.id, milestone: next });
  }
}
