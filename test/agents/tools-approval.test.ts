import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { AgentProfileSchema, EscrowPreference, PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { createAgentTools } from "../../src/agents/tools.js";
import type { ApprovalAsk, ApprovalOutcome } from "../../src/deal/approvals.js";
import { createNegotiationSession, type NegotiationSession } from "../../src/deal/negotiation.js";
import { makeDeps } from "../support/agents.js";

const PAT = "pat";
const CLEO = "cleo";
const cleo = create(AgentProfileSchema, { displayName: "Cleo", role: PartyRole.CLIENT, currency: "GBP", maxAutoApproveMinor: 10_000n, escrowPreference: EscrowPreference.NEVER });
const pat = create(AgentProfileSchema, { displayName: "Pat", role: PartyRole.PROVIDER, currency: "GBP" });

const sessions: NegotiationSession[] = [];
afterEach(() => {
  for (const s of sessions.splice(0)) s.close();
});

function offer(amountMinor: number, role: "provider" | "client") {
  return {
    summary: "Gutter repair",
    currency: "GBP",
    my_role: role,
    line_items: [{ id: "gutter", description: "Gutter repair", kind: "immediate", amount_minor: amountMinor }],
    reason: "As agreed.",
  };
}

/** The same offer as a counter's terms (no reason of its own). */
function terms(amountMinor: number, role: "provider" | "client") {
  const { reason: _reason, ...rest } = offer(amountMinor, role);
  return rest;
}

/** Cleo's tools with a person who answers `answers` in turn; every ask is recorded. */
function setup(initiator: string, answers: ApprovalOutcome[]) {
  const session = createNegotiationSession({
    id: "neg-a",
    roomId: "room-1",
    initiatorUserId: initiator,
    participants: [PAT, CLEO],
    roundTimeoutMs: 60_000,
    totalTimeoutMs: 60_000,
    onChange: () => {},
  });
  sessions.push(session);
  const asks: ApprovalAsk[] = [];
  const client = makeDeps({ userId: CLEO, peerId: PAT, profile: cleo, peerProfile: pat, session: () => session });
  client.deps.requestApproval = async (ask) => {
    asks.push(ask);
    return answers.shift() ?? "expired";
  };
  const provider = makeDeps({ userId: PAT, peerId: CLEO, profile: pat, peerProfile: cleo, session: () => session });
  return { session, asks, client: createAgentTools(client.deps), clientMessages: client.messages, provider: createAgentTools(provider.deps) };
}

describe("tools ask the paying person above their max auto-approve", () => {
  it("accepting above the limit asks first; approved, the offer is accepted", async () => {
    const { session, asks, client, provider, clientMessages } = setup(PAT, ["approved"]);
    expect((await provider.call("propose", offer(45_000, "provider"))).isError).toBe(false);
    const result = await client.call("evaluate_proposal", { decision: "accept", reason: "Fine." });
    expect(result.isError).toBe(false);
    expect(asks).toEqual([{ negotiationId: "neg-a", summary: "Pay £450.00 to Pat for Gutter repair", amountMinor: 45_000n, limitMinor: 10_000n, currency: "GBP" }]);
    expect(session.state()).toBe("agreed");
    expect(clientMessages.some((m) => m.text.startsWith("Approval needed: £450.00 is above your auto-approve limit"))).toBe(true);
  });

  it("an approved total covers lower offers in the same negotiation without asking again", async () => {
    const { session, asks, client, provider } = setup(CLEO, ["approved"]);
    expect((await client.call("propose", offer(45_000, "client"))).isError).toBe(false);
    expect((await provider.call("evaluate_proposal", { decision: "counter", reason: "More", counter: terms(50_000, "provider") })).isError).toBe(false);
    const counter = await client.call("evaluate_proposal", { decision: "counter", reason: "Meet me", counter: terms(40_000, "client") });
    expect(counter.isError).toBe(false);
    expect(asks.map((a) => a.amountMinor)).toEqual([45_000n]);
    expect(session.snapshot().currentProposal?.totalMinor).toBe(40_000n);
  });

  it("declined, the agent rejects and the negotiation ends", async () => {
    const { session, client, provider } = setup(PAT, ["declined"]);
    await provider.call("propose", offer(45_000, "provider"));
    const result = await client.call("evaluate_proposal", { decision: "accept", reason: "Fine." });
    expect(result.isError).toBe(false);
    expect(result.content).toContain("declined");
    expect(session.state()).toBe("rejected");
    expect(session.snapshot().rounds.at(-1)).toMatchObject({ fromUserId: CLEO, reason: "My user declined these terms." });
  });

  it("expired (the negotiation ended first), nothing is agreed and the tool says so", async () => {
    const { session, client } = setup(CLEO, ["expired"]);
    const result = await client.call("propose", offer(45_000, "client"));
    expect(result.isError).toBe(true);
    expect(result.content).toContain("ended before your user answered");
    expect(session.snapshot().rounds).toHaveLength(0);
  });

  it("a limit set in another currency allows nothing in this one: the person is asked, with a limit of 0", async () => {
    const { asks, client, provider, session } = setup(PAT, ["approved"]);
    await provider.call("propose", { ...offer(9_000, "provider"), currency: "EUR" });
    expect((await client.call("evaluate_proposal", { decision: "accept", reason: "Fine." })).isError).toBe(false);
    expect(asks).toEqual([expect.objectContaining({ amountMinor: 9_000n, limitMinor: 0n, currency: "EUR", summary: "Pay €90.00 to Pat for Gutter repair" })]);
    expect(session.state()).toBe("agreed");
  });

  it("within the limit, nobody is asked", async () => {
    const { asks, client, provider, session } = setup(PAT, []);
    await provider.call("propose", offer(9_000, "provider"));
    expect((await client.call("evaluate_proposal", { decision: "accept", reason: "Fine." })).isError).toBe(false);
    expect(asks).toHaveLength(0);
    expect(session.state()).toBe("agreed");
  });
});
