import { describe, expect, it } from "vitest";
import { ApprovalStatus, type ApprovalRequest } from "../../gen/handshake/v1/events_pb.js";
import { FailedPreconditionError, NotFoundError, PermissionDeniedError } from "../../src/core/errors.js";
import { createApprovalBook, nextApprovalState, transitionApproval, type ApprovalOutcome } from "../../src/deal/approvals.js";

const ASK = { negotiationId: "neg-1", summary: "Pay £450.00 to Sam for Gutter repair", amountMinor: 45_000n, limitMinor: 10_000n, currency: "GBP" };

function book() {
  const changes: ApprovalRequest[] = [];
  let n = 0;
  const b = createApprovalBook({ onChange: (r) => changes.push(r), newId: () => `apr_${++n}`, now: () => 7 });
  return { b, changes };
}

describe("approval machine", () => {
  it("answers once; expiry after an answer is a no-op; a second answer is refused", () => {
    expect(nextApprovalState("pending", "approve")).toBe("approved");
    expect(nextApprovalState("pending", "decline")).toBe("declined");
    expect(nextApprovalState("pending", "expire")).toBe("expired");
    expect(nextApprovalState("approved", "expire")).toBe("approved");
    expect(nextApprovalState("expired", "approve")).toBeUndefined();
    expect(transitionApproval("pending", "approve", 5)).toEqual({ from: "pending", to: "approved", at: 5 });
    expect(transitionApproval("declined", "expire", 5)).toBeUndefined();
    expect(() => transitionApproval("approved", "decline", 5)).toThrow(FailedPreconditionError);
  });
});

describe("approval book", () => {
  it("opens a pending request to one person and settles the agent's wait with their answer", async () => {
    const { b, changes } = book();
    const outcome = b.ask("alex", ASK);
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ id: "apr_1", userId: "alex", status: ApprovalStatus.PENDING, amountMinor: 45_000n, limitMinor: 10_000n });
    expect(() => b.answer("sam", "apr_1", true)).toThrow(PermissionDeniedError);
    expect(() => b.answer("alex", "apr_9", true)).toThrow(NotFoundError);
    expect(b.answer("alex", "apr_1", true).status).toBe(ApprovalStatus.APPROVED);
    await expect(outcome).resolves.toBe("approved");
    expect(() => b.answer("alex", "apr_1", false)).toThrow(FailedPreconditionError);
    expect(changes.map((c) => c.status)).toEqual([ApprovalStatus.PENDING, ApprovalStatus.APPROVED]);
  });

  it("expires only the ended negotiation's pending requests, or all of them", async () => {
    const { b, changes } = book();
    const first = b.ask("alex", ASK);
    const other = b.ask("alex", { ...ASK, negotiationId: "neg-2" });
    b.expire("neg-1");
    await expect(first).resolves.toBe("expired");
    const settled: ApprovalOutcome[] = [];
    void other.then((o) => settled.push(o));
    await Promise.resolve();
    expect(settled).toEqual([]);
    b.expire();
    await expect(other).resolves.toBe("expired");
    expect(changes.filter((c) => c.status === ApprovalStatus.EXPIRED).map((c) => c.id)).toEqual(["apr_1", "apr_2"]);
    expect(() => b.answer("alex", "apr_2", true)).toThrow(FailedPreconditionError);
  });

  it("a declined request settles the wait as declined", async () => {
    const { b } = book();
    const outcome = b.ask("alex", ASK);
    b.answer("alex", "apr_1", false);
    await expect(outcome).resolves.toBe("declined");
  });
});
