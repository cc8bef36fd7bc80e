import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LineItemKind, LineItemSchema, NegotiationStatus, ProposalSchema, RoundAction, type Negotiation, type Proposal } from "../../gen/handshake/v1/deal_pb.js";
import { createNegotiationSession, NegotiationMoveError, type NegotiationSessionOptions } from "../../src/deal/negotiation.js";

/** A negotiation stored after a round goes on, in another session (another node), where it stood. */

const A = "alice";
const B = "bob";

function offer(totalMinor: bigint): Proposal {
  return create(ProposalSchema, {
    summary: "Boiler repair",
    currency: "GBP",
    totalMinor,
    lineItems: [create(LineItemSchema, { id: "item-1", description: "Repair", kind: LineItemKind.IMMEDIATE, amountMinor: totalMinor, quantity: 1 })],
    providerUserId: A,
    clientUserId: B,
  });
}

let clock = 1_000_000;
beforeEach(() => {
  vi.useFakeTimers();
  clock = 1_000_000;
});
afterEach(() => vi.useRealTimers());

function session(changes: Negotiation[], extra: Partial<NegotiationSessionOptions> = {}) {
  return createNegotiationSession({
    id: "neg-1",
    roomId: "room-1",
    initiatorUserId: A,
    participants: [A, B],
    maxRounds: 3,
    roundTimeoutMs: 10_000,
    totalTimeoutMs: 60_000,
    now: () => clock,
    onChange: (negotiation) => changes.push(negotiation),
    ...extra,
  });
}

describe("a restored negotiation", () => {
  it("keeps its rounds, its turn, its proposal numbering and its round limit", () => {
    const first: Negotiation[] = [];
    const before = session(first);
    before.propose(A, offer(20_000n), "opening");
    before.counter(B, offer(15_000n), "too much");
    before.close();
    const stored = first.at(-1)!;

    clock += 2_000;
    const after: Negotiation[] = [];
    const resumed = session(after, { restored: stored });
    expect(resumed.snapshot()).toEqual(stored);
    expect(() => resumed.counter(B, offer(14_000n), "again")).toThrow(NegotiationMoveError);
    resumed.counter(A, offer(18_000n), "meet me");
    const third = after.at(-1)!;
    expect(third.rounds.map((r) => r.number)).toEqual([1, 2, 3]);
    expect(third.currentProposal?.id).toBe("neg-1-p3");
    // Three offers were made across both sessions: the limit holds over the move.
    expect(() => resumed.counter(B, offer(16_000n), "one more")).toThrow(/round limit/);
    expect(after.at(-1)?.status).toBe(NegotiationStatus.REJECTED);
    resumed.close();
  });

  it("keeps its clocks: the round's time runs from its last move, the whole from its start", () => {
    const first: Negotiation[] = [];
    const before = session(first);
    before.propose(A, offer(20_000n), "opening");
    before.close();
    const stored = first.at(-1)!;

    // Down for 8 of the round's 10 seconds: 2 are left.
    clock += 8_000;
    const after: Negotiation[] = [];
    const resumed = session(after, { restored: stored });
    clock += 1_900;
    vi.advanceTimersByTime(1_900);
    expect(after).toEqual([]);
    clock += 100;
    vi.advanceTimersByTime(100);
    expect(after.at(-1)?.status).toBe(NegotiationStatus.EXPIRED);
    expect(after.at(-1)?.endReason).toMatch(/round timeout/);
    resumed.close();

    // Past its total time while no node hosted it: it expires at once.
    const late: Negotiation[] = [];
    clock = Number(stored.expiresAtMs) + 1;
    session(late, { restored: stored });
    vi.advanceTimersByTime(0);
    expect(late.at(-1)?.status).toBe(NegotiationStatus.EXPIRED);
  });

  it("refuses what is not open or not this negotiation", () => {
    const changes: Negotiation[] = [];
    const before = session(changes);
    before.propose(A, offer(20_000n), "opening");
    before.accept(B, "fine");
    const agreed = changes.at(-1)!;
    expect(agreed.rounds.at(-1)?.action).toBe(RoundAction.ACCEPT);
    expect(() => session([], { restored: agreed })).toThrow(/open negotiation/);
    expect(() => session([], { id: "neg-2", restored: changes[0]! })).toThrow(/open negotiation/);
  });
});
