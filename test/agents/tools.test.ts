import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { LineItemKind, NegotiationStatus } from "../../gen/handshake/v1/deal_pb.js";
import { AgentMessageKind } from "../../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, EscrowPreference, PartyRole, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { createAgentTools, type ProposeInput } from "../../src/agents/tools.js";
import { createNegotiationSession, type NegotiationSession } from "../../src/deal/negotiation.js";
import { BankError, type BankAccount, type BankBalance } from "../../src/payments/bank.js";
import { makeDeps } from "../support/agents.js";

const PROVIDER = "pat";
const CLIENT = "cleo";

function clientProfile(init: MessageInitShape<typeof AgentProfileSchema> = {}): AgentProfile {
  return create(AgentProfileSchema, {
    displayName: "Cleo",
    role: PartyRole.CLIENT,
    currency: "GBP",
    maxAutoApproveMinor: 50_000n,
    escrowPreference: EscrowPreference.NEVER,
    ...init,
  });
}

const providerProfile = create(AgentProfileSchema, { displayName: "Pat", role: PartyRole.PROVIDER, currency: "GBP", trade: "plumber" });

/** A bank that answers from a script and counts its calls. */
function fakeBank(answer: BankBalance | BankError): BankAccount & { calls: number } {
  const bank = {
    calls: 0,
    async getBalance() {
      bank.calls += 1;
      if (answer instanceof BankError) throw answer;
      return answer;
    },
    async recentTransactions(limit: number) {
      bank.calls += 1;
      if (answer instanceof BankError) throw answer;
      return [{ id: "tx1", amountMinor: -1_250n, currency: "GBP", description: "Coffee beans", createdAtMs: Date.UTC(2025, 0, 2) }].slice(0, limit);
    },
  };
  return bank;
}

function setup(options: { client?: AgentProfile; bank?: BankAccount; initiator?: string; draft?: boolean } = {}) {
  const session: NegotiationSession = createNegotiationSession({
    id: "neg-t",
    roomId: "room-1",
    initiatorUserId: options.initiator ?? PROVIDER,
    participants: [PROVIDER, CLIENT],
    roundTimeoutMs: 60_000,
    totalTimeoutMs: 60_000,
    onChange: () => {},
  });
  const clientSide = makeDeps({ userId: CLIENT, peerId: PROVIDER, profile: options.client ?? clientProfile(), peerProfile: providerProfile, session: () => session, ...(options.bank ? { bank: options.bank } : {}) });
  const providerSide = makeDeps({ userId: PROVIDER, peerId: CLIENT, profile: providerProfile, peerProfile: options.client ?? clientProfile(), session: () => session });
  return {
    session,
    client: { tools: createAgentTools(clientSide.deps, { draftContractTool: options.draft ?? false }), messages: clientSide.messages },
    provider: { tools: createAgentTools(providerSide.deps, { draftContractTool: options.draft ?? false }), messages: providerSide.messages },
    close: () => session.close(),
  };
}

function offer(role: "provider" | "client", items: ProposeInput["line_items"]): ProposeInput {
  return { summary: "Fix the boiler", currency: "GBP", my_role: role, line_items: items, reason: "as discussed" };
}

describe("agent tools", () => {
  it("describes its tools as JSON schemas that refuse unknown fields", () => {
    const t = setup({ draft: true });
    const defs = t.client.tools.definitions();
    expect(defs.map((d) => d.name)).toEqual(["propose", "evaluate_proposal", "message_user", "check_balance", "recent_transactions", "draft_contract_text"]);
    const propose = defs[0]!.input_schema as unknown as { required: string[]; additionalProperties: boolean; properties: Record<string, { items?: { required?: string[] } }> };
    expect(propose.additionalProperties).toBe(false);
    expect(propose.required).toEqual(["summary", "currency", "my_role", "line_items", "reason"]);
    expect(propose.properties.line_items!.items!.required).toEqual(["description", "kind"]);
    expect(setup().client.tools.definitions().map((d) => d.name)).not.toContain("draft_contract_text");
    t.close();
  });

  it("turns invalid input into an error result that names the fields, and reports it", async () => {
    const t = setup();
    const result = await t.provider.tools.call("propose", { summary: "", currency: "pounds", my_role: "boss", line_items: [{ kind: "immediate", amount_minor: -5 }], extra: 1 });
    expect(result.isError).toBe(true);
    expect(result.content).toContain("input.summary must not be empty");
    expect(result.content).toContain("input.currency has the wrong format");
    expect(result.content).toContain("input.my_role must be one of");
    expect(result.content).toContain("input.line_items[0].description is required");
    expect(result.content).toContain("input.line_items[0].amount_minor must be at least 1");
    expect(result.content).toContain("input.reason is required");
    expect(result.content).toContain("input.extra is not a known field");
    expect(t.provider.messages.map((m) => [m.kind, m.toolName, m.isError])).toEqual([
      [AgentMessageKind.TOOL_CALL, "propose", false],
      [AgentMessageKind.TOOL_RESULT, "propose", true],
    ]);
    expect((await t.provider.tools.call("nope", {})).content).toMatch(/Unknown tool "nope"/);
    expect((await t.provider.tools.call("evaluate_proposal", { decision: "maybe", reason: "x" })).isError).toBe(true);
    expect(t.session.snapshot().rounds).toHaveLength(0);
    t.close();
  });

  it("refuses inconsistent amounts with what is wrong", async () => {
    const t = setup();
    const mismatch = await t.provider.tools.call("propose", offer("provider", [{ description: "Labour", kind: "immediate", quantity: 3, unit_price_minor: 4_000, amount_minor: 10_000 }]));
    expect(mismatch).toMatchObject({ isError: true });
    expect(mismatch.content).toMatch(/quantity × unit_price_minor \(3 × 4000\) must equal the amount 10000/);
    const ranged = await t.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "escrow", range: { min_minor: 15_000, max_minor: 25_000 }, amount_minor: 20_000 }]));
    expect(ranged.content).toMatch(/must equal range.max_minor/);
    const none = await t.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "immediate" }]));
    expect(none.content).toMatch(/needs amount_minor, unit_price_minor or range/);
    const currency = await t.provider.tools.call("propose", { ...offer("provider", [{ description: "Repair", kind: "immediate", amount_minor: 100 }]), currency: "XYZ" });
    expect(currency.content).toMatch(/not supported/);
    t.close();
  });

  it("makes an offer: computes the total, holds a ranged item in escrow, fills milestones", async () => {
    const t = setup();
    const result = await t.provider.tools.call(
      "propose",
      offer("provider", [
        { description: "Labour", kind: "immediate", quantity: 3, unit_price_minor: 4_000, unit: "hour" },
        { description: "Repair", kind: "immediate", range: { min_minor: 15_000, max_minor: 25_000 } },
      ]),
    );
    expect(result.isError).toBe(false);
    expect(result.content).toMatch(/Offer sent \(offer 1 of at most 5\): £370.00 total/);
    expect(result.content).toMatch(/item-2 has a price range, so it is held in escrow/);
    const p = t.session.snapshot().currentProposal!;
    expect(p.totalMinor).toBe(37_000n);
    expect(p.providerUserId).toBe(PROVIDER);
    expect(p.clientUserId).toBe(CLIENT);
    expect(p.lineItems[0]).toMatchObject({ id: "item-1", amountMinor: 12_000n, quantity: 3, unitPriceMinor: 4_000n, unit: "hour", kind: LineItemKind.IMMEDIATE });
    expect(p.lineItems[1]).toMatchObject({ kind: LineItemKind.ESCROW, amountMinor: 25_000n });
    expect(p.lineItems[1]!.milestone?.title).toBe("Repair");
    t.close();
  });

  it("turns a refused move into an error result, not an exception", async () => {
    const t = setup();
    const result = await t.client.tools.call("propose", offer("client", [{ description: "Repair", kind: "immediate", amount_minor: 10_000 }]));
    expect(result).toMatchObject({ isError: true });
    expect(result.content).toMatch(/The negotiation refused the move: not your turn/);
    expect((await t.client.tools.call("evaluate_proposal", { decision: "accept", reason: "ok" })).content).toMatch(/no offer to accept/);
    t.close();
  });

  it("never lets the payer offer above its limit, and tells the user approval is needed", async () => {
    const t = setup({ initiator: CLIENT });
    const result = await t.client.tools.call("propose", offer("client", [{ description: "Repair", kind: "immediate", amount_minor: 60_000 }]));
    expect(result.isError).toBe(true);
    expect(result.content).toMatch(/Refused: £600.00 is above your auto-approve limit of £500.00/);
    const approval = t.client.messages.find((m) => m.kind === AgentMessageKind.TEXT);
    expect(approval).toMatchObject({ isError: true, userId: CLIENT });
    expect(approval!.text).toMatch(/^Approval needed: £600.00 is above your auto-approve limit of £500.00/);
    expect(t.session.snapshot().rounds).toHaveLength(0);
    // The provider side has no such limit: being paid more is not a risk to it.
    t.close();
  });

  it("never lets the payer accept above its limit, or in a currency its limit is not in", async () => {
    const t = setup();
    await t.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "immediate", amount_minor: 50_001 }]));
    const refused = await t.client.tools.call("evaluate_proposal", { decision: "accept", reason: "ok" });
    expect(refused.content).toMatch(/above your auto-approve limit/);
    expect(t.session.state()).toBe("open");
    expect(t.client.messages.some((m) => m.kind === AgentMessageKind.TEXT && m.text.startsWith("Approval needed"))).toBe(true);
    t.close();

    const eur = setup({ client: clientProfile({ currency: "EUR" }) });
    await eur.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "immediate", amount_minor: 100 }]));
    expect((await eur.client.tools.call("evaluate_proposal", { decision: "accept", reason: "ok" })).content).toMatch(/the deal is in GBP but your auto-approve limit is set in EUR/);
    eur.close();

    const zero = setup({ client: clientProfile({ maxAutoApproveMinor: 0n }) });
    await zero.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "immediate", amount_minor: 100 }]));
    expect((await zero.client.tools.call("evaluate_proposal", { decision: "accept", reason: "ok" })).content).toMatch(/limit is zero/);
    zero.close();
  });

  it("applies the payer's escrow preference to its own offers", async () => {
    const items: ProposeInput["line_items"] = [
      { description: "Call-out", kind: "immediate", amount_minor: 6_000 },
      { description: "Boiler", kind: "immediate", amount_minor: 30_000 },
    ];
    const above = setup({ initiator: CLIENT, client: clientProfile({ escrowPreference: EscrowPreference.ABOVE_THRESHOLD, escrowThresholdMinor: 10_000n }) });
    const result = await above.client.tools.call("propose", offer("client", items));
    expect(result.content).toMatch(/Moved to escrow per your user's escrow preference: item-2/);
    expect(above.session.snapshot().currentProposal!.lineItems.map((i) => i.kind)).toEqual([LineItemKind.IMMEDIATE, LineItemKind.ESCROW]);
    above.close();

    const always = setup({ initiator: CLIENT, client: clientProfile({ escrowPreference: EscrowPreference.ALWAYS }) });
    await always.client.tools.call("propose", offer("client", items));
    const held = always.session.snapshot().currentProposal!.lineItems;
    expect(held.every((i) => i.kind === LineItemKind.ESCROW && i.milestone?.title)).toBe(true);
    always.close();

    const never = setup({ initiator: CLIENT, client: clientProfile({ escrowPreference: EscrowPreference.NEVER }) });
    await never.client.tools.call("propose", offer("client", items));
    expect(never.session.snapshot().currentProposal!.lineItems.every((i) => i.kind === LineItemKind.IMMEDIATE)).toBe(true);
    never.close();
  });

  it("refuses to accept an offer that pays immediately what the payer wants held", async () => {
    const t = setup({ client: clientProfile({ escrowPreference: EscrowPreference.ALWAYS }) });
    await t.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "immediate", amount_minor: 10_000 }]));
    const result = await t.client.tools.call("evaluate_proposal", { decision: "accept", reason: "ok" });
    expect(result.content).toMatch(/wants item-1 held in escrow.*Counter with those items in escrow/);
    const counter = await t.client.tools.call("evaluate_proposal", {
      decision: "counter",
      reason: "same price, held",
      counter: { summary: "Repair", currency: "GBP", my_role: "client", line_items: [{ id: "item-1", description: "Repair", kind: "immediate", amount_minor: 10_000 }] },
    });
    expect(counter.isError).toBe(false);
    expect(t.session.snapshot().currentProposal!.lineItems[0]!.kind).toBe(LineItemKind.ESCROW);
    const accepted = await t.provider.tools.call("evaluate_proposal", { decision: "accept", reason: "fine" });
    expect(accepted.isError).toBe(false);
    expect(t.session.snapshot().status).toBe(NegotiationStatus.AGREED);
    t.close();
  });

  it("checks affordability before the payer accepts", async () => {
    const poor = fakeBank({ balanceMinor: 9_999n, currency: "GBP" });
    const t = setup({ bank: poor });
    await t.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "immediate", amount_minor: 10_000 }]));
    const refused = await t.client.tools.call("evaluate_proposal", { decision: "accept", reason: "ok" });
    expect(refused.content).toMatch(/not affordable \(your balance of £99.99 does not cover £100.00\)/);
    expect(t.client.messages.some((m) => m.kind === AgentMessageKind.TEXT && m.text.startsWith("Not affordable"))).toBe(true);
    expect(t.session.state()).toBe("open");
    t.close();

    const rich = fakeBank({ balanceMinor: 10_000n, currency: "GBP" });
    const ok = setup({ bank: rich });
    await ok.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "immediate", amount_minor: 10_000 }]));
    expect((await ok.client.tools.call("evaluate_proposal", { decision: "accept", reason: "ok" })).isError).toBe(false);
    expect(rich.calls).toBe(1);
    expect(ok.session.state()).toBe("agreed");
    ok.close();

    const broken = setup({ bank: fakeBank(new BankError("Monzo is down", "unavailable")) });
    await broken.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "immediate", amount_minor: 10_000 }]));
    expect((await broken.client.tools.call("evaluate_proposal", { decision: "accept", reason: "ok" })).content).toMatch(
      /could not check your user's balance.*could not be reached just now/,
    );
    expect(broken.session.state()).toBe("open");
    broken.close();
  });

  it("reads the bank only when one is connected, with clear errors", async () => {
    const none = setup();
    expect(await none.client.tools.call("check_balance", {})).toEqual({ isError: true, content: "No bank is connected for your user, so the balance cannot be checked." });
    expect((await none.client.tools.call("recent_transactions", {})).content).toMatch(/No bank is connected/);
    none.close();

    const bank = setup({ bank: fakeBank({ balanceMinor: 123_456n, currency: "GBP" }) });
    expect(await bank.client.tools.call("check_balance", {})).toEqual({ isError: false, content: "Balance: £1,234.56 (GBP)." });
    expect((await bank.client.tools.call("recent_transactions", { limit: 5 })).content).toBe("2025-01-02 -£12.50 Coffee beans");
    expect((await bank.client.tools.call("recent_transactions", { limit: 500 })).content).toMatch(/limit must be at most 50/);
    bank.close();

    const expired = setup({ bank: fakeBank(new BankError("token expired", "unauthorized")) });
    const result = await expired.client.tools.call("check_balance", {});
    expect(result.isError).toBe(true);
    expect(result.content).toMatch(/Your bank refused the connection .* reconnect your bank. token expired/);
    expired.close();
  });

  it("messages the user and previews the contract for the offer on the table", async () => {
    const t = setup({ draft: true });
    await t.provider.tools.call("message_user", { text: "They want it done by Friday." });
    expect(t.provider.messages.some((m) => m.kind === AgentMessageKind.TEXT && m.text === "They want it done by Friday.")).toBe(true);
    expect((await t.provider.tools.call("draft_contract_text", {})).content).toMatch(/no offer on the table/);
    await t.provider.tools.call("propose", offer("provider", [{ description: "Repair", kind: "immediate", amount_minor: 10_000 }]));
    const preview = await t.provider.tools.call("draft_contract_text", {});
    expect(preview.isError).toBe(false);
    expect(preview.content).toMatch(/^PREVIEW \(not binding\)/);
    expect(preview.content).toContain("£100.00");
    t.close();
  });
});
