import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { NegotiationStatus, RoundAction, type Negotiation } from "../../gen/handshake/v1/deal_pb.js";
import { AgentMessageKind } from "../../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, EscrowPreference, PartyRole, RateUnit } from "../../gen/handshake/v1/profile_pb.js";
import { TriggerEventSchema, TriggerKind, type TranscriptEntry } from "../../gen/handshake/v1/transcript_pb.js";
import type { Agent } from "../../src/agents/agent.js";
import { decideRoles, sketchDeal } from "../../src/language/deal-extraction.js";
import { createOfflineAgentFactory } from "../../src/agents/offline/offline-negotiator.js";
import { createNegotiationSession, type NegotiationSession } from "../../src/deal/negotiation.js";
import type { BankAccount } from "../../src/payments/bank.js";
import { entry, makeDeps } from "../support/agents.js";

const P = "pia";
const C = "carl";
type ProfileInit = MessageInitShape<typeof AgentProfileSchema>;

function talk(lines: [string, string][]): TranscriptEntry[] {
  return lines.map(([who, text], i) => entry(who, text, i));
}

/** Two offline agents and a session, wired like the room wires them. */
function room(options: { provider?: ProfileInit; client?: ProfileInit; initiator: string; clientBank?: BankAccount }) {
  const provider = create(AgentProfileSchema, { displayName: "Pia", role: PartyRole.PROVIDER, currency: "GBP", ...options.provider });
  const client = create(AgentProfileSchema, { displayName: "Carl", role: PartyRole.CLIENT, currency: "GBP", maxAutoApproveMinor: 100_000n, escrowPreference: EscrowPreference.NEVER, ...options.client });
  let session: NegotiationSession | undefined;
  const factory = createOfflineAgentFactory();
  const p = makeDeps({ userId: P, peerId: C, profile: provider, peerProfile: client, session: () => session });
  const c = makeDeps({ userId: C, peerId: P, profile: client, peerProfile: provider, session: () => session, ...(options.clientBank ? { bank: options.clientBank } : {}) });
  const agents: Record<string, Agent> = { [P]: factory(p.deps), [C]: factory(c.deps) };
  let finish!: (n: Negotiation) => void;
  const done = new Promise<Negotiation>((r) => (finish = r));
  session = createNegotiationSession({
    id: "neg-o",
    roomId: "room-1",
    initiatorUserId: options.initiator,
    participants: [P, C],
    roundTimeoutMs: 60_000,
    totalTimeoutMs: 60_000,
    onChange: (n) => {
      const last = n.rounds.at(-1);
      if (n.status !== NegotiationStatus.OPEN) finish(n);
      else if (last && (last.action === RoundAction.PROPOSE || last.action === RoundAction.COUNTER)) agents[last.fromUserId === P ? C : P]!.onPeerMove(n);
    },
  });
  const start = (conversation: TranscriptEntry[]) => {
    for (const e of conversation) for (const id of [P, C]) agents[id]!.pushTranscript(e, e.speakerUserId === id ? "self" : "peer");
    agents[options.initiator]!.startNegotiation(create(TriggerEventSchema, { kind: TriggerKind.KEYWORD, speakerUserId: options.initiator, keyword: "handshake" }), conversation);
  };
  const stop = async () => {
    session!.close();
    await Promise.all([agents[P]!.stop(), agents[C]!.stop()]);
  };
  return { session: () => session!, start, done, stop, providerMessages: p.messages, clientMessages: c.messages };
}

describe("conversation analysis", () => {
  it("decides roles from what people say when profiles do not", () => {
    const conversation = talk([
      [C, "I need my fence painted. How much would you charge?"],
      [P, "I can paint it for £300."],
    ]);
    const unknown = [{ userId: P, role: PartyRole.UNSPECIFIED }, { userId: C, role: PartyRole.UNSPECIFIED }] as const;
    expect(decideRoles(conversation, unknown)).toEqual({ providerUserId: P, clientUserId: C });
    // A stated role wins over the talk, and the answer does not depend on who asks.
    const stated = [{ userId: C, role: PartyRole.PROVIDER }, { userId: P, role: PartyRole.UNSPECIFIED }] as const;
    expect(decideRoles(conversation, stated)).toEqual({ providerUserId: C, clientUserId: P });
    expect(decideRoles(conversation, [stated[1], stated[0]])).toEqual({ providerUserId: C, clientUserId: P });
  });

  it("collects items across turns, revises them, and separates a budget from an offer", () => {
    const conversation = talk([
      [P, "The call-out is £80, plus labour at £40 an hour for about three hours."],
      [C, "My budget is 180 pounds at most."],
      [P, "OK, £35 an hour then."],
      [C, "How about £170?"],
    ]);
    const sketch = sketchDeal(conversation, [{ userId: P, role: PartyRole.PROVIDER }, { userId: C, role: PartyRole.CLIENT }], "GBP")!;
    expect(sketch.items.map((i) => [i.description, i.amountMinor, i.quantity, i.unitPriceMinor, i.unit])).toEqual([
      ["Call-out", 8_000n, 1, 8_000n, ""],
      ["Labour", 10_500n, 3, 3_500n, "hour"],
    ]);
    expect(sketch.providerAskMinor).toBe(18_500n);
    expect(sketch.clientBudgetMinor).toBe(18_000n);
    expect(sketch.clientOfferMinor).toBe(17_000n);
    expect(sketch.clientAgreed).toBe(false);
  });

  it("finds nothing when no price was named", () => {
    const conversation = talk([[P, "Nice to meet you."], [C, "Likewise."]]);
    expect(sketchDeal(conversation, [{ userId: P, role: PartyRole.PROVIDER }, { userId: C, role: PartyRole.CLIENT }], "GBP")).toBeUndefined();
  });
});

describe("offline negotiator", () => {
  it("decides later than the caller, never inside its call", async () => {
    const r = room({ initiator: P });
    r.start(talk([[P, "I can fix it for £200."], [C, "Sounds good, let's do it."]]));
    expect(r.session().snapshot().rounds).toHaveLength(0);
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.AGREED);
    expect(final.currentProposal!.totalMinor).toBe(20_000n);
    await r.stop();
  });

  it("walks away, telling its user, when no price was named", async () => {
    const r = room({ initiator: P });
    r.start(talk([[P, "Handshake."], [C, "Handshake."]]));
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.REJECTED);
    expect(final.endReason).toMatch(/No price was named/);
    expect(r.providerMessages.some((m) => m.kind === AgentMessageKind.TEXT && /could not find a price/.test(m.text))).toBe(true);
    await r.stop();
  });

  it("asks for approval instead of paying when its limit is zero", async () => {
    const r = room({ initiator: C, client: { maxAutoApproveMinor: 0n } });
    r.start(talk([[P, "I can fix it for £200."], [C, "Deal."]]));
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.REJECTED);
    expect(final.rounds.every((round) => round.proposal === undefined)).toBe(true);
    expect(r.clientMessages.some((m) => m.kind === AgentMessageKind.TEXT && m.isError && /^Approval needed/.test(m.text))).toBe(true);
    await r.stop();
  });

  it("keeps the payer within its bank balance", async () => {
    const bank: BankAccount = {
      getBalance: async () => ({ balanceMinor: 17_000n, currency: "GBP" }),
      recentTransactions: async () => [],
    };
    const r = room({ initiator: P, clientBank: bank, provider: { rates: [{ description: "repair", amountMinor: 16_000n, unit: RateUnit.JOB }] } });
    r.start(talk([[P, "The repair is £200."], [C, "OK, sounds good."]]));
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.AGREED);
    expect(final.currentProposal!.totalMinor).toBeLessThanOrEqual(17_000n);
    expect(final.currentProposal!.totalMinor).toBeGreaterThanOrEqual(16_000n);
    await r.stop();
  });
});
