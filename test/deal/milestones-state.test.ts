import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { MilestoneSchema, MilestoneStatus } from "../../gen/handshake/v1/deal_pb.js";
import { FailedPreconditionError } from "../../src/core/errors.js";
import { isSettledMilestone, milestoneState, next, transition } from "../../src/deal/milestones-state.js";

const pending = create(MilestoneSchema, { id: "m1", contractId: "c1", lineItemId: "i1", status: MilestoneStatus.PENDING, minMinor: 2_000n, maxMinor: 5_000n, currency: "GBP" });

describe("milestone state machine", () => {
  it("walks a ranged milestone through proposal, approval and capture", () => {
    const proposed = next(pending, { type: "propose", amountMinor: 3_000n })!;
    expect(proposed).toMatchObject({ status: MilestoneStatus.AMOUNT_PROPOSED, proposedAmountMinor: 3_000n, providerConfirmed: true, clientConfirmed: false });
    const approved = next(proposed, { type: "approve" })!;
    expect(approved).toMatchObject({ status: MilestoneStatus.AMOUNT_PROPOSED, clientConfirmed: true });
    const { milestone, change } = transition(approved, { type: "captured", capturedMinor: 3_000n }, 42);
    expect(milestone).toMatchObject({ status: MilestoneStatus.COMPLETED, capturedMinor: 3_000n, updatedAtMs: 42n });
    expect(change).toEqual({ from: "amount_proposed", to: "completed", at: 42 });
    expect(isSettledMilestone(milestone)).toBe(true);
  });

  it("refuses every move out of a settled milestone, and an approval with nothing proposed", () => {
    const released = next(pending, { type: "released" })!;
    expect(milestoneState(released.status)).toBe("released");
    for (const event of [{ type: "confirm", by: "client" }, { type: "captured", capturedMinor: 1n }, { type: "refused", reason: "x" }] as const) {
      expect(next(released, event)).toBeUndefined();
      expect(() => transition(released, event, 1)).toThrow(FailedPreconditionError);
    }
    expect(next(pending, { type: "approve" })).toBeUndefined();
  });

  it("records a refusal as FAILED, from which a retry may still settle, and a lapse only once", () => {
    const failed = next(pending, { type: "refused", reason: "card declined" })!;
    expect(failed).toMatchObject({ status: MilestoneStatus.FAILED, failureReason: "card declined" });
    expect(next(failed, { type: "captured", capturedMinor: 5_000n })).toMatchObject({ status: MilestoneStatus.COMPLETED, failureReason: "" });
    const lapsed = next(pending, { type: "hold_expired" })!;
    expect(lapsed.status).toBe(MilestoneStatus.FAILED);
    expect(next(lapsed, { type: "hold_expired" })).toBeUndefined();
  });

  it("keeps the state on a confirmation and reports no change", () => {
    const { milestone, change } = transition(pending, { type: "confirm", by: "provider" }, 7);
    expect(milestone).toMatchObject({ status: MilestoneStatus.PENDING, providerConfirmed: true, clientConfirmed: false });
    expect(change).toBeUndefined();
  });
});
