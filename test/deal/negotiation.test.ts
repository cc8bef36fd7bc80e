import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  LineItemKind,
  LineItemSchema,
  MilestoneTermsSchema,
  NegotiationStatus,
  ProposalSchema,
  RoundAction,
  type Negotiation,
  type Proposal,
} from "../../gen/handshake/v1/deal_pb.js";
import { PriceRangeSchema } from "../../gen/handshake/v1/money_pb.js";
import {
  createNegotiationSession,
  NegotiationMoveError,
  nextNegotiationState,
  validateProposal,
  type NegotiationTransition,
} from "../../src/deal/negotiation.js";

const A = "alice";
const B = "bob";

function proposal(totalMinor: bigint, overrides: MessageInitShape<typeof ProposalSchema> = {}): Proposal {
  return create(ProposalSchema, {
    summary: "Boiler repair",
    currency: "GBP",
    totalMinor,
    lineItems: [create(LineItemSchema, { id: "item-1", description: "Repair", kind: LineItemKind.IMMEDIATE, amountMinor: totalMinor, quantity: 1, unitPriceMinor: totalMinor })],
    providerUserId: A,
    clientUserId: B,
    ...overrides,
  });
}

function start(options: { maxRounds?: number; roundTimeoutMs?: number; totalTimeoutMs?: number } = {}) {
  const changes: { negotiation: Negotiation; transition: NegotiationTransition | undefined }[] = [];
  let clock = 1_000;
  const session = createNegotiationSession({
    id: "neg-1",
    roomId: "room-1",
    initiatorUserId: A,
    participants: [A, B],
    maxRounds: options.maxRounds,
    roundTimeoutMs: options.roundTimeoutMs ?? 30_000,
    totalTimeoutMs: options.totalTimeoutMs ?? 120_000,
    now: () => clock,
    onChange: (negotiation, transition) => changes.push({ negotiation, transition }),
  });
  return { session, changes, tick: (ms: number) => (clock += ms) };
}

describe("nextNegotiationState", () => {
  it("moves open to the final states and ignores timers after the end", () => {
    expect(nextNegotiationState("open", { type: "offer" })).toBe("open");
    expect(nextNegotiationState("open", { type: "accept" })).toBe("agreed");
    expect(nextNegotiationState("open", { type: "reject" })).toBe("rejected");
    expect(nextNegotiationState("open", { type: "round_limit" })).toBe("rejected");
    expect(nextNegotiationState("open", { type: "round_timeout" })).toBe("expired");
    expect(nextNegotiationState("open", { type: "total_timeout" })).toBe("expired");
    expect(nextNegotiationState("agreed", { type: "round_timeout" })).toBe("agreed");
    expect(nextNegotiationState("rejected", { type: "total_timeout" })).toBe("rejected");
    expect(nextNegotiationState("agreed", { type: "offer" })).toBeUndefined();
    expect(nextNegotiationState("expired", { type: "accept" })).toBeUndefined();
  });
});

describe("negotiation session", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("runs propose → counter → accept, emitting every change with the full message", () => {
    const { session, changes } = start();
    session.propose(A, proposal(20_000n), "opening");
    session.counter(B, proposal(15_000n), "too much");
    session.accept(A, "fine");
    expect(session.state()).toBe("agreed");
    expect(changes).toHaveLength(3);
    expect(changes[0]!.transition).toBeUndefined();
    expect(changes[2]!.transition).toEqual({ from: "open", to: "agreed", at: 1_000 });
    const final = changes[2]!.negotiation;
    expect(final.status).toBe(NegotiationStatus.AGREED);
    expect(final.rounds.map((r) => [r.number, r.fromUserId, r.action])).toEqual([
      [1, A, RoundAction.PROPOSE],
      [2, B, RoundAction.COUNTER],
      [3, A, RoundAction.ACCEPT],
    ]);
    expect(final.currentProposal?.totalMinor).toBe(15_000n);
    expect(final.currentProposal?.proposedByUserId).toBe(B);
    expect(final.currentProposal?.id).toBe("neg-1-p2");
    expect(final.expiresAtMs).toBe(121_000n);
    // Snapshots are copies: changing one does not change the session.
    final.rounds.length = 0;
    expect(session.snapshot().rounds).toHaveLength(3);
  });

  it("enforces turn order and participants", () => {
    const { session, changes } = start();
    expect(() => session.propose(B, proposal(10_000n), "me first")).toThrow(/not your turn/);
    expect(() => session.counter(A, proposal(10_000n), "x")).toThrow(/no offer to counter/);
    expect(() => session.accept(B, "x")).toThrow(/no offer to accept/);
    expect(() => session.propose("mallory", proposal(10_000n), "x")).toThrow(/not a participant/);
    session.propose(A, proposal(10_000n), "opening");
    expect(() => session.propose(B, proposal(9_000n), "x")).toThrow(/already on the table/);
    expect(() => session.counter(A, proposal(9_000n), "again")).toThrow(/not your turn/);
    expect(() => session.accept(A, "mine")).toThrow(/own offer/);
    expect(changes).toHaveLength(1);
    expect(session.state()).toBe("open");
  });

  it("refuses invalid proposals with the reason", () => {
    const { session } = start();
    const bad = proposal(10_000n, { totalMinor: 9_000n });
    expect(() => session.propose(A, bad, "x")).toThrow(NegotiationMoveError);
    expect(() => session.propose(A, bad, "x")).toThrow(/proposal invalid: total 9000 must equal the sum/);
    session.propose(A, proposal(10_000n), "opening");
    expect(() => session.counter(B, proposal(9_000n, { currency: "EUR" }), "x")).toThrow(/same currency/);
  });

  it("refuses moves after the end", () => {
    const { session, changes } = start();
    session.propose(A, proposal(10_000n), "opening");
    session.reject(B, "no thanks");
    expect(session.state()).toBe("rejected");
    expect(changes.at(-1)!.negotiation.endReason).toBe("no thanks");
    expect(() => session.accept(B, "changed my mind")).toThrow(/already ended/);
    expect(() => session.counter(B, proposal(9_000n), "x")).toThrow(/already ended/);
    expect(() => session.reject(A, "x")).toThrow(/already ended/);
  });

  it("ends as rejected when a counter would go past the round limit", () => {
    const { session, changes } = start({ maxRounds: 3 });
    session.propose(A, proposal(30_000n), "1");
    session.counter(B, proposal(10_000n), "2");
    session.counter(A, proposal(25_000n), "3");
    expect(() => session.counter(B, proposal(12_000n), "4")).toThrow(/round limit/);
    expect(session.state()).toBe("rejected");
    const last = changes.at(-1)!;
    expect(last.transition).toMatchObject({ from: "open", to: "rejected" });
    expect(last.negotiation.endReason).toMatch(/^round limit/);
    expect(last.negotiation.rounds.at(-1)!.action).toBe(RoundAction.REJECT);
  });

  it("still lets the last offer be accepted at the round limit", () => {
    const { session } = start({ maxRounds: 2 });
    session.propose(A, proposal(30_000n), "1");
    session.counter(B, proposal(20_000n), "2");
    session.accept(A, "ok");
    expect(session.state()).toBe("agreed");
  });

  it("expires when a side does not move within the round timeout, and each move resets it", () => {
    const { session, changes } = start({ roundTimeoutMs: 10_000, totalTimeoutMs: 100_000 });
    vi.advanceTimersByTime(9_000);
    session.propose(A, proposal(10_000n), "opening");
    vi.advanceTimersByTime(9_000);
    expect(session.state()).toBe("open");
    vi.advanceTimersByTime(1_000);
    expect(session.state()).toBe("expired");
    const last = changes.at(-1)!;
    expect(last.transition).toMatchObject({ from: "open", to: "expired" });
    expect(last.negotiation.status).toBe(NegotiationStatus.EXPIRED);
    expect(last.negotiation.endReason).toMatch(/^round timeout/);
    expect(() => session.accept(B, "late")).toThrow(/already ended/);
  });

  it("expires after the total timeout even while both keep moving", () => {
    const { session, changes } = start({ roundTimeoutMs: 10_000, totalTimeoutMs: 25_000, maxRounds: 10 });
    session.propose(A, proposal(30_000n), "1");
    vi.advanceTimersByTime(8_000);
    session.counter(B, proposal(10_000n), "2");
    vi.advanceTimersByTime(8_000);
    session.counter(A, proposal(25_000n), "3");
    vi.advanceTimersByTime(8_000);
    expect(session.state()).toBe("open");
    vi.advanceTimersByTime(1_000);
    expect(session.state()).toBe("expired");
    expect(changes.at(-1)!.negotiation.endReason).toMatch(/^total timeout/);
  });

  it("does not fire timers after the end or after close, and close is safe twice", () => {
    const { session, changes } = start({ roundTimeoutMs: 10_000, totalTimeoutMs: 20_000 });
    session.propose(A, proposal(10_000n), "opening");
    session.accept(B, "yes");
    const count = changes.length;
    vi.advanceTimersByTime(60_000);
    expect(changes).toHaveLength(count);
    expect(session.state()).toBe("agreed");

    const other = start({ roundTimeoutMs: 10_000, totalTimeoutMs: 20_000 });
    other.session.close();
    other.session.close();
    vi.advanceTimersByTime(60_000);
    expect(other.changes).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("validateProposal", () => {
  const parties = [A, B] as const;
  const item = (init: Record<string, unknown>) =>
    create(LineItemSchema, { id: "i1", description: "Work", kind: LineItemKind.IMMEDIATE, amountMinor: 100n, quantity: 1, ...init });

  it.each([
    ["lower-case currency", { currency: "gbp" }, /currency/],
    ["same provider and client", { clientUserId: A }, /different/],
    ["an outsider", { providerUserId: "mallory" }, /two participants/],
    ["no items", { lineItems: [], totalMinor: 0n }, /1 to 50 line items/],
    ["51 items", { lineItems: Array.from({ length: 51 }, (_, i) => item({ id: `i${i}` })), totalMinor: 5_100n }, /1 to 50/],
    ["a zero amount", { lineItems: [item({ amountMinor: 0n })], totalMinor: 0n }, /greater than zero/],
    ["a wrong total", { lineItems: [item({})], totalMinor: 99n }, /sum of the line items/],
    ["quantity × unit price mismatch", { lineItems: [item({ quantity: 3, unitPriceMinor: 40n, amountMinor: 100n })], totalMinor: 100n }, /quantity × unit price/],
    ["a range with min above max", { lineItems: [item({ kind: LineItemKind.ESCROW, range: create(PriceRangeSchema, { minMinor: 200n, maxMinor: 100n }), milestone: create(MilestoneTermsSchema, { title: "Done" }) })], totalMinor: 100n }, /minimum must not exceed/],
    ["a range whose max is not the amount", { lineItems: [item({ kind: LineItemKind.ESCROW, range: create(PriceRangeSchema, { minMinor: 50n, maxMinor: 90n }), milestone: create(MilestoneTermsSchema, { title: "Done" }) })], totalMinor: 100n }, /range maximum/],
    ["an immediate ranged item", { lineItems: [item({ range: create(PriceRangeSchema, { minMinor: 50n, maxMinor: 100n }) })], totalMinor: 100n }, /escrow or conditional/],
    ["escrow without milestone", { lineItems: [item({ kind: LineItemKind.ESCROW })], totalMinor: 100n }, /milestone/],
    ["duplicate ids", { lineItems: [item({}), item({})], totalMinor: 200n }, /used twice/],
  ])("refuses %s", (_name, overrides, reason) => {
    expect(validateProposal(proposal(100n, overrides as MessageInitShape<typeof ProposalSchema>), parties)).toMatch(reason);
  });

  it("accepts counted and ranged items that are consistent", () => {
    const p = proposal(0n, {
      lineItems: [
        item({ id: "labour", quantity: 3, unitPriceMinor: 4_000n, amountMinor: 12_000n, unit: "hour" }),
        item({ id: "repair", kind: LineItemKind.ESCROW, amountMinor: 25_000n, range: create(PriceRangeSchema, { minMinor: 15_000n, maxMinor: 25_000n }), milestone: create(MilestoneTermsSchema, { title: "Roof fixed" }) }),
      ],
      totalMinor: 37_000n,
    });
    expect(validateProposal(p, parties)).toBeUndefined();
  });
});
