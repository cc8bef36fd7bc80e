import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LineItemKind, LineItemSchema, PartySchema, ProposalSchema } from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { TriggerKind } from "../../gen/handshake/v1/transcript_pb.js";
import { createClaudeContractDrafter } from "../../src/agents/claude/contract-drafter.js";
import { createClaudeSmartTrigger } from "../../src/agents/claude/smart-trigger.js";
import { errorBody, startFakeAnthropic, textReply, toolUseReply, type FakeAnthropic } from "../../src/agents/claude/testing/fake-anthropic.js";
import { entry } from "../support/agents.js";

const KEY = "sk-ant-test";
let fake: FakeAnthropic;

beforeEach(async () => {
  fake = await startFakeAnthropic({ validKey: KEY });
});
afterEach(async () => {
  await fake.close();
});

const talk = [entry("pat", "I can fix it for £200.", 0), entry("cleo", "Deal!", 1)];

describe("Claude smart trigger", () => {
  const detector = (apiKey = KEY) => createClaudeSmartTrigger({ apiKey, model: "claude-test", baseURL: fake.url, maxRetries: 0 });

  it("forces the report tool and maps the labelled speaker back to the user", async () => {
    fake.reply(toolUseReply([{ id: "toolu_r", name: "report_deal", input: { deal_agreed: true, speaker: "B", confidence_percent: 92, quote: "Deal!" } }]));
    const smart = detector();
    expect(smart.intervalMs).toBe(5_000);
    const event = await smart.consider(talk);
    expect(event).toMatchObject({ kind: TriggerKind.SMART, speakerUserId: "cleo", matchedText: "Deal!" });
    expect(event!.confidence).toBeCloseTo(0.92);
    const body = fake.requests[0]!.body;
    expect(body.tool_choice).toEqual({ type: "auto", disable_parallel_tool_use: true });
    expect((body.messages as { content: string }[])[0]!.content).toBe("The conversation, oldest first:\nA: I can fix it for £200.\nB: Deal!");
  });

  it("does not fire on low confidence, no agreement or an unusable answer", async () => {
    fake.reply(
      toolUseReply([{ id: "t1", name: "report_deal", input: { deal_agreed: true, speaker: "A", confidence_percent: 40, quote: "" } }]),
      toolUseReply([{ id: "t2", name: "report_deal", input: { deal_agreed: false, speaker: "A", confidence_percent: 99, quote: "" } }]),
      toolUseReply([{ id: "t3", name: "report_deal", input: { deal_agreed: "yes" } }]),
      textReply("I think so."),
    );
    const smart = detector();
    for (let i = 0; i < 4; i++) expect(await smart.consider(talk)).toBeUndefined();
    expect(fake.requests).toHaveLength(4);
  });

  it("asks the current default model without a forced tool choice, which it would refuse", async () => {
    fake.reply(toolUseReply([{ id: "toolu_s", name: "report_deal", input: { deal_agreed: true, speaker: "A", confidence_percent: 90, quote: "I can fix it for £200." } }]));
    const smart = createClaudeSmartTrigger({ apiKey: KEY, model: "claude-sonnet-5-5", baseURL: fake.url, maxRetries: 0 });
    expect(await smart.consider(talk)).toMatchObject({ kind: TriggerKind.SMART, speakerUserId: "pat" });
    expect(fake.rejections).toEqual([]);
  });

  it("stops calling after a 404 for its model", async () => {
    fake.reply({ status: 404, body: errorBody("not_found_error", "model: claude-test") }, textReply("never sent"));
    const smart = detector();
    expect(await smart.consider(talk)).toBeUndefined();
    expect(await smart.consider(talk)).toBeUndefined();
    expect(fake.requests).toHaveLength(1);
  });

  it("treats API failures as no deal and stops calling after a refused key", async () => {
    fake.reply({ status: 529, body: errorBody("overloaded_error", "Overloaded") });
    expect(await detector().consider(talk)).toBeUndefined();
    const refused = detector("sk-ant-wrong");
    expect(await refused.consider(talk)).toBeUndefined();
    expect(await refused.consider(talk)).toBeUndefined();
    expect(fake.requests).toHaveLength(2);
  });
});

describe("Claude contract drafter", () => {
  const proposal = create(ProposalSchema, {
    id: "p1",
    summary: "Fix the boiler",
    currency: "GBP",
    totalMinor: 20_000n,
    lineItems: [create(LineItemSchema, { id: "item-1", description: "Boiler repair", kind: LineItemKind.IMMEDIATE, amountMinor: 20_000n, quantity: 1, unitPriceMinor: 20_000n })],
    providerUserId: "pat",
    clientUserId: "cleo",
  });
  const parties = [
    create(PartySchema, { userId: "pat", displayName: "Pat Smith", role: PartyRole.PROVIDER }),
    create(PartySchema, { userId: "cleo", displayName: "Cleo Jones", role: PartyRole.CLIENT }),
  ];
  const drafter = () => createClaudeContractDrafter({ apiKey: KEY, model: "claude-test", baseURL: fake.url, maxRetries: 0 });

  it("returns the drafted title and text, sending the exact terms", async () => {
    const text = "SERVICE AGREEMENT\nPat Smith (provider) repairs the boiler of Cleo Jones (client) for £200.00, paid on signing.";
    fake.reply(toolUseReply([{ id: "toolu_c", name: "contract", input: { title: "Boiler repair", text } }]));
    const draft = await drafter().draft({ proposal, parties, conversation: talk });
    expect(draft).toEqual({ title: "Boiler repair", text: `${text}\n` });
    const body = fake.requests[0]!.body;
    expect(body.tool_choice).toEqual({ type: "auto", disable_parallel_tool_use: true });
    const prompt = (body.messages as { content: string }[])[0]!.content;
    expect(prompt).toContain("Total: £200.00");
    expect(prompt).toContain("- [item-1] Boiler repair: £200.00, immediate");
    expect(prompt).toContain("- Pat Smith (user pat): provider, is paid");
  });

  it("throws (so the caller uses the template) when the text misses the terms or the call fails", async () => {
    fake.reply(
      toolUseReply([{ id: "t1", name: "contract", input: { title: "Repair", text: "Pat Smith and Cleo Jones agree on a fair price." } }]),
      toolUseReply([{ id: "t2", name: "contract", input: { title: "Repair", text: "£200.00 for the boiler, Pat Smith." } }]),
      textReply("Here is your contract: ..."),
      { status: 500, body: errorBody("api_error", "Internal server error") },
    );
    await expect(drafter().draft({ proposal, parties, conversation: [] })).rejects.toThrow(/does not state the total £200.00/);
    await expect(drafter().draft({ proposal, parties, conversation: [] })).rejects.toThrow(/does not name Cleo Jones/);
    await expect(drafter().draft({ proposal, parties, conversation: [] })).rejects.toThrow(/without the contract tool/);
    await expect(drafter().draft({ proposal, parties, conversation: [] })).rejects.toThrow(/Claude could not draft the contract: Claude failed \(500\)/);
    const wrongKey = createClaudeContractDrafter({ apiKey: "nope", model: "claude-test", baseURL: fake.url, maxRetries: 0 });
    await expect(wrongKey.draft({ proposal, parties, conversation: [] })).rejects.toThrow(/API key was refused/);
  });

  it("drafts with the current default model (no forced tool choice), and stops calling after a 404", async () => {
    const text = "Pat Smith repairs the boiler of Cleo Jones for £200.00, paid on signing.";
    fake.reply(toolUseReply([{ id: "toolu_d", name: "contract", input: { title: "Boiler repair", text } }]));
    const current = createClaudeContractDrafter({ apiKey: KEY, model: "claude-sonnet-5-5", baseURL: fake.url, maxRetries: 0 });
    await expect(current.draft({ proposal, parties, conversation: talk })).resolves.toEqual({ title: "Boiler repair", text: `${text}\n` });
    expect(fake.rejections).toEqual([]);

    fake.reply({ status: 404, body: errorBody("not_found_error", "model: claude-test") }, textReply("never sent"));
    const gone = drafter();
    await expect(gone.draft({ proposal, parties, conversation: [] })).rejects.toThrow(/ANTHROPIC_MODEL=claude-test does not exist or is retired/);
    await expect(gone.draft({ proposal, parties, conversation: [] })).rejects.toThrow(/ANTHROPIC_MODEL=claude-test does not exist or is retired/);
    expect(fake.requests).toHaveLength(2);
  });
});
