import type { Contract } from "../../gen/handshake/v1/deal_pb.js";
import { milestoneAfterHold } from "../deal/milestones-rules.js";
import type { Store } from "../store/store.js";
import type { SettlementEvents } from "./settlement-events.js";

/**
 * Brings milestones in line with holds that changed outside the milestone service (captured or
 * released at the rail, lapsed): each such milestone is stored and broadcast.
 */
export async function syncMilestones(store: Store, events: SettlementEvents, now: () => number, contract: Contract): Promise<void> {
  for (const milestone of contract.milestones) {
    const hold = contract.holds.find((h) => h.lineItemId === milestone.lineItemId);
    if (!hold) continue;
    const next = milestoneAfterHold(milestone, hold);
    if (!next) continue;
    next.updatedAtMs = BigInt(now());
    await store.saveMilestone(next);
    events.emit({ kind: "milestone", roomId: contract.roomId, contractId: contract.id, milestone: next });
  }
}
