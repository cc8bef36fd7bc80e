import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { LineItemKind, NegotiationStatus, RoundAction, type Negotiation } from "../../gen/handshake/v1/deal_pb.js";
import { AgentMessageKind } from "../../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, EscrowPreference, NegotiationStyle, PartyRole, RateUnit } from "../../gen/handshake/v1/profile_pb.js";
import { TriggerEventSchema, TriggerKind, type TranscriptEntry } from "../../gen/handshake/v1/transcript_pb.js";
import type { Agent } from "../../src/agents/agent.js";
import { dealTerms, readConversation } from "../../src/language/deal-state.js";
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

describe("what the offline agent reads from the talk", () => {
  const parties = [{ userId: P, profileRole: "provider" as const }, { userId: C, profileRole: "client" as const }];
  const read = (lines: [string, string][]) => readConversation(parties, "GBP", lines.map(([speakerUserId, text], index) => ({ speakerUserId, text, index })));

  it("decides who pays whom from the talk, the profile only when the talk does not say", () => {
    // Carl's profile says client, but he is selling his radiators to Pia.
    const sale = dealTerms(read([[C, "Do you want my old radiators? Make me an offer."], [P, "I'll give you a hundred quid for the radiators."], [C, "Sold."]]))!;
    expect(sale).toMatchObject({ payeeUserId: C, payerUserId: P, rolesFromTalk: true, agreed: true, agreedTotalMinor: 10_000n });
    const job = dealTerms(read([[P, "The repair is £200."], [C, "OK."]]))!;
    expect(job).toMatchObject({ payeeUserId: P, payerUserId: C, rolesFromTalk: false });
  });

  it("keeps each side's position apart from a ceiling when they have not agreed", () => {
    const terms = dealTerms(
      read([
        [P, "The call-out is £80, plus labour at £40 an hour for about three hours."],
        [C, "My budget is 180 pounds at most."],
        [P, "OK, £35 an hour then."],
      ]),
    )!;
    expect(terms.items.map((i) => [i.description, i.amountMinor, i.quantity, i.unitPriceMinor, i.unit])).toEqual([
      ["Call-out", 8_000n, 1, 8_000n, ""],
      ["Labour", 10_500n, 3, 3_500n, "hour"],
    ]);
    expect(terms).toMatchObject({ agreed: false, payeeAskMinor: 18_500n, payerCapMinor: 18_000n });
    expect(terms.payerOfferMinor).toBeUndefined();
  });

  it("finds nothing when no price was named", () => {
    expect(dealTerms(read([[P, "Nice to meet you."], [C, "Likewise."]]))).toBeUndefined();
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

  it("fills a price the talk left open from its person's rate, and the payer agrees within its limit", async () => {
    const r = room({ initiator: P, provider: { rates: [{ description: "boiler service", amountMinor: 9_500n, unit: RateUnit.JOB }] } });
    r.start(talk([[C, "Could you service the boiler while you're here?"], [P, "Sure, handshake."]]));
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.AGREED);
    expect(final.currentProposal).toMatchObject({ totalMinor: 9_500n, providerUserId: P });
    expect(final.currentProposal!.lineItems[0]!.description).toBe("Boiler service");
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

  it("keeps the payer within its bank balance while haggling", async () => {
    const bank: BankAccount = {
      getBalance: async () => ({ balanceMinor: 17_000n, currency: "GBP" }),
      recentTransactions: async () => [],
    };
    const r = room({ initiator: P, clientBank: bank, provider: { rates: [{ description: "repair", amountMinor: 16_000n, unit: RateUnit.JOB }] } });
    r.start(talk([[P, "The repair is £200."], [C, "Hmm, let the agents sort it out."]]));
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.AGREED);
    expect(final.currentProposal!.totalMinor).toBeLessThanOrEqual(17_000n);
    expect(final.currentProposal!.totalMinor).toBeGreaterThanOrEqual(16_000n);
    await r.stop();
  });

  it("does not re-haggle a price both said yes to, even when its balance cannot cover it", async () => {
    const bank: BankAccount = {
      getBalance: async () => ({ balanceMinor: 17_000n, currency: "GBP" }),
      recentTransactions: async () => [],
    };
    const r = room({ initiator: P, clientBank: bank });
    r.start(talk([[P, "The repair is £200."], [C, "OK, sounds good."]]));
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.REJECTED);
    const offers = final.rounds.filter((round) => round.proposal).map((round) => round.proposal!.totalMinor);
    expect(offers).toEqual([20_000n]);
    expect(r.clientMessages.some((m) => m.isError && /Not affordable/.test(m.text))).toBe(true);
    await r.stop();
  });

  it("writes down the terms agreed aloud, in one offer and one yes, whatever the styles", async () => {
    const r = room({
      initiator: C,
      provider: { style: NegotiationStyle.AGGRESSIVE, rates: [{ description: "sofa", amountMinor: 45_000n, unit: RateUnit.JOB }] },
      client: { style: NegotiationStyle.AGGRESSIVE },
    });
    r.start(
      talk([
        [C, "You had it at four fifty, would you take three fifty?"],
        [P, "Three fifty's a bit low. Four twenty?"],
        [C, "Hmm. Four hundred and I'll take it today."],
        [P, "Go on, four hundred for the sofa."],
      ]),
    );
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.AGREED);
    expect(final.rounds.map((round) => round.action)).toEqual([RoundAction.PROPOSE, RoundAction.ACCEPT]);
    const terms = final.currentProposal!;
    expect(terms.totalMinor).toBe(40_000n);
    expect(terms.summary).toMatch(/^Sale of /);
    expect(terms.lineItems.map((i) => [i.description, i.amountMinor, i.kind])).toEqual([["Sofa", 40_000n, LineItemKind.IMMEDIATE]]);
    await r.stop();
  });

  it("calls goods bought from someone without a trade a sale, and a rental or a trade's work not", async () => {
    const sale = room({ initiator: C });
    sale.start(talk([[C, "Oh, I love this lamp."], [P, "Sixty quid for the lamp."], [C, "Would you take forty?"], [P, "Fifty, and that's final."], [C, "Yeah alright, fifty."]]));
    expect((await sale.done).currentProposal!.summary).toMatch(/^Sale of Lamp\./);
    await sale.stop();
    const rental = room({ initiator: C });
    rental.start(talk([[C, "What are you asking for the week?"], [P, "For the flat rental, the whole week, six hundred pounds."], [C, "Six hundred, lovely, we'll take it."]]));
    expect((await rental.done).currentProposal!.summary).toMatch(/^Flat rental\./);
    await rental.stop();
    const work = room({ initiator: C, provider: { trade: "roofer" } });
    work.start(talk([[C, "Can you fix the gutter?"], [P, "The gutter repair is a hundred and twenty pounds."], [C, "Deal."]]));
    expect((await work.done).currentProposal!.summary).toMatch(/^Gutter repair\./);
    await work.stop();
  });

  it("holds uncertain work in escrow with the range said", async () => {
    const r = room({ initiator: C });
    r.start(
      talk([
        [P, "The call-out is sixty pounds."],
        [C, "Okay. And the actual repair?"],
        [P, "The repair, um, somewhere between eighty and one twenty, depending on what I find when I'm up there."],
        [C, "That's fine, you'll know more once you're up there."],
      ]),
    );
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.AGREED);
    const items = final.currentProposal!.lineItems;
    expect(items.map((i) => [i.description, i.kind, i.amountMinor])).toEqual([
      ["Call-out", LineItemKind.IMMEDIATE, 6_000n],
      ["Repair", LineItemKind.ESCROW, 12_000n],
    ]);
    expect(items[1]!.range).toMatchObject({ minMinor: 8_000n, maxMinor: 12_000n });
    await r.stop();
  });

  it("pays the person who sold, whatever their profile says, and puts a wrong-way offer right", async () => {
    // Pia is a tradesperson (provider profile) buying Carl's radiators: Pia pays Carl.
    const r = room({ initiator: C, client: { maxAutoApproveMinor: 0n } , provider: { maxAutoApproveMinor: 50_000n } });
    r.start(talk([[C, "Do you want those old radiators? Make me an offer."], [P, "I'll give you a hundred and twenty quid for the radiators."], [C, "A hundred and twenty quid, sold."]]));
    const final = await r.done;
    expect(final.status).toBe(NegotiationStatus.AGREED);
    expect(final.currentProposal).toMatchObject({ providerUserId: C, clientUserId: P, totalMinor: 12_000n });
    await r.stop();
  });
});
