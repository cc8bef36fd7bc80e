import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NegotiationStatus, type Negotiation } from "../../gen/handshake/v1/deal_pb.js";
import { AgentMessageKind, type AgentMessage } from "../../gen/handshake/v1/events_pb.js";
import { AgentProfileSchema, PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { TriggerEventSchema, TriggerKind } from "../../gen/handshake/v1/transcript_pb.js";
import type { Agent } from "../../src/agents/agent.js";
import { createClaudeAgentFactory, type ClaudeAgentOptions } from "../../src/agents/claude/claude-agent.js";
import { createAgentTools } from "../../src/agents/tools.js";
import {
  emptyEndTurnReply,
  errorBody,
  messageBody,
  startFakeAnthropic,
  textReply,
  toolUseReply,
  type FakeAnthropic,
} from "../../src/agents/claude/testing/fake-anthropic.js";
import { createNegotiationSession, type NegotiationSession } from "../../src/deal/negotiation.js";
import { entry, makeDeps } from "../support/agents.js";

const KEY = "sk-ant-test";
const SELF = "pat";
const PEER = "cleo";

const conversation = [
  entry(PEER, "My boiler is broken, can you fix it?", 0),
  entry(SELF, "I can fix it for £200.", 1),
  entry(PEER, "Deal, handshake.", 2),
];
const trigger = create(TriggerEventSchema, { kind: TriggerKind.KEYWORD, speakerUserId: SELF, keyword: "handshake", matchedText: "Deal, handshake." });

const proposeInput = {
  summary: "Fix the boiler",
  currency: "GBP",
  my_role: "provider",
  line_items: [{ description: "Boiler repair", kind: "immediate", amount_minor: 20_000 }],
  reason: "As agreed",
};

let fake: FakeAnthropic;
let session: NegotiationSession;
let changes: Negotiation[];
let agents: Agent[];

beforeEach(async () => {
  fake = await startFakeAnthropic({ validKey: KEY });
  changes = [];
  agents = [];
  session = createNegotiationSession({
    id: "neg-c",
    roomId: "room-1",
    initiatorUserId: SELF,
    participants: [SELF, PEER],
    roundTimeoutMs: 60_000,
    totalTimeoutMs: 60_000,
    onChange: (n) => changes.push(n),
  });
});

afterEach(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  session.close();
  await fake.close();
  // The fake refuses what the real API refuses: no test may have sent a request it would 400.
  expect(fake.rejections.filter((r) => r.status === 400).map((r) => r.message)).toEqual([]);
});

/** An agent for SELF against the fake, and a way to await the messages it sends its user. */
function makeAgent(options: Partial<ClaudeAgentOptions> = {}) {
  const profile = create(AgentProfileSchema, { displayName: "Pat", role: PartyRole.PROVIDER, trade: "plumber", currency: "GBP" });
  const { deps, messages } = makeDeps({ userId: SELF, peerId: PEER, profile, peerProfile: create(AgentProfileSchema, { displayName: "Cleo", role: PartyRole.CLIENT }), session: () => session });
  const waiters: { match: (m: AgentMessage) => boolean; resolve: (m: AgentMessage) => void }[] = [];
  const notify = deps.notifyUser;
  deps.notifyUser = (m) => {
    notify(m);
    for (const w of [...waiters]) {
      if (w.match(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  const agent = createClaudeAgentFactory({ apiKey: KEY, model: "claude-test", baseURL: fake.url, maxRetries: 0, debounceMs: 10, ...options })(deps);
  agents.push(agent);
  const message = (match: (m: AgentMessage) => boolean) =>
    new Promise<AgentMessage>((resolve) => {
      const found = messages.find(match);
      if (found) resolve(found);
      else waiters.push({ match, resolve });
    });
  const text = (pattern: RegExp) => message((m) => m.kind === AgentMessageKind.TEXT && pattern.test(m.text));
  return { agent, messages, message, text };
}

type Block = { type: string; [key: string]: unknown };
type Msg = { role: string; content: Block[] };

describe("Claude agent", () => {
  it("runs a tool_use → tool_result round trip with the request bodies the API expects", async () => {
    fake.reply(toolUseReply([{ id: "toolu_1", name: "propose", input: proposeInput }], "Opening at £200."), textReply("I offered £200 for the boiler."));
    const { agent, text } = makeAgent();
    agent.startNegotiation(trigger, conversation);
    await text(/I offered £200/);

    const [first, second] = fake.requests.map((r) => r.body) as [Record<string, unknown>, Record<string, unknown>];
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[0]!.path).toBe("/v1/messages");
    expect(first.model).toBe("claude-test");
    expect(first.max_tokens).toBe(8192);
    const system = first.system as Block[];
    expect(system).toHaveLength(1);
    expect(system[0]).toMatchObject({ type: "text", cache_control: { type: "ephemeral" } });
    expect(system[0]!.text).toContain("negotiating agent of Pat");
    expect(system[0]!.text).not.toContain("monzo");
    const tools = first.tools as Block[];
    // Every tool tools.ts defines goes to Claude, in its order (a tool added there is picked up).
    const { deps } = makeDeps({ userId: SELF, peerId: PEER, profile: create(AgentProfileSchema, {}), session: () => session });
    const defined = createAgentTools(deps, { draftContractTool: true }).definitions();
    expect(tools.map((t) => t.name)).toEqual(defined.map((d) => d.name));
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(["propose", "evaluate_proposal", "message_user", "draft_contract_text"]));
    expect(tools.map((t) => t.input_schema)).toEqual(defined.map((d) => d.input_schema));
    expect(tools.at(-1)!.cache_control).toEqual({ type: "ephemeral" });
    expect(tools.slice(0, -1).every((t) => t.cache_control === undefined)).toBe(true);
    expect((tools[0]!.input_schema as Block).type).toBe("object");
    const firstMessages = first.messages as Msg[];
    expect(firstMessages).toHaveLength(1);
    expect(firstMessages[0]!.role).toBe("user");
    expect(firstMessages[0]!.content[0]!.text).toContain("Pat: I can fix it for £200.");

    const messages = second.messages as Msg[];
    expect(messages.map((m) => m.role)).toEqual(["user", "assistant", "user"]);
    // The assistant turn goes back as it came, tool_use and all.
    expect(messages[1]!.content).toEqual([
      { type: "text", text: "Opening at £200." },
      { type: "tool_use", id: "toolu_1", name: "propose", input: proposeInput },
    ]);
    expect(messages[2]!.content).toHaveLength(1);
    expect(messages[2]!.content[0]).toMatchObject({ type: "tool_result", tool_use_id: "toolu_1" });
    expect(messages[2]!.content[0]!.is_error).toBeUndefined();
    expect(messages[2]!.content[0]!.content).toMatch(/^Offer sent/);
    expect(session.snapshot().currentProposal?.totalMinor).toBe(20_000n);
  });

  it("answers several tool calls with all results first, in one user message, and flags errors", async () => {
    fake.reply(
      toolUseReply([
        { id: "toolu_a", name: "check_balance", input: {} },
        { id: "toolu_b", name: "propose", input: { ...proposeInput, line_items: [{ description: "x", kind: "sometimes" }] } },
        { id: "toolu_c", name: "message_user", input: { text: "Working on it." } },
      ]),
      textReply("(listening)"),
    );
    const { agent, messages } = makeAgent();
    agent.startNegotiation(trigger, conversation);
    const [, second] = await fake.waitForRequests(2);
    await agent.stop();
    const last = (second!.body.messages as Msg[]).at(-1)!;
    expect(last.role).toBe("user");
    expect(last.content.map((b) => [b.type, b.tool_use_id, b.is_error])).toEqual([
      ["tool_result", "toolu_a", true],
      ["tool_result", "toolu_b", true],
      ["tool_result", "toolu_c", undefined],
    ]);
    expect(last.content[0]!.content).toMatch(/No bank is connected/);
    expect(last.content[1]!.content).toMatch(/input.line_items\[0\].kind must be one of/);
    expect(messages.some((m) => m.kind === AgentMessageKind.TEXT && m.text === "Working on it.")).toBe(true);
    // "(listening)" is not passed on to the user.
    expect(messages.some((m) => m.text === "(listening)")).toBe(false);
    expect(session.snapshot().rounds).toHaveLength(0);
  });

  it("retries a 429 through the SDK and then succeeds", async () => {
    fake.reply({ status: 429, body: errorBody("rate_limit_error", "Number of requests has exceeded your rate limit"), headers: { "retry-after": "0" } }, textReply("Ready when you are."));
    const { agent, text } = makeAgent({ maxRetries: 2 });
    agent.startNegotiation(trigger, conversation);
    await text(/Ready when you are/);
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[1]!.headers["x-stainless-retry-count"]).toBe("1");
    expect(fake.requests[1]!.body).toEqual(fake.requests[0]!.body);
  });

  it("turns a 500 that outlasts the retries into a message to the user, and keeps working", async () => {
    fake.reply(
      { status: 500, body: errorBody("api_error", "Internal server error") },
      { status: 500, body: errorBody("api_error", "Internal server error") },
      textReply("Back again."),
    );
    const { agent, text } = makeAgent({ maxRetries: 1 });
    agent.startNegotiation(trigger, conversation);
    const failure = await text(/Claude failed \(500\)/);
    expect(failure.isError).toBe(true);
    expect(fake.requests).toHaveLength(2);
    agent.onPeerMove(session.snapshot());
    await text(/Back again/);
    // The failed turn's words stay in one user message with the new ones: roles keep alternating.
    expect((fake.requests[2]!.body.messages as Msg[]).map((m) => m.role)).toEqual(["user"]);
  });

  it("tells the user when the API key is refused, and stops calling", async () => {
    const { agent, text } = makeAgent({ apiKey: "sk-ant-wrong" });
    agent.startNegotiation(trigger, conversation);
    const refused = await text(/the Anthropic API key was refused/i);
    expect(refused).toMatchObject({ isError: true, userId: SELF });
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]!.headers.authorization ?? fake.requests[0]!.headers["x-api-key"]).toContain("sk-ant-wrong");
    agent.onPeerMove(session.snapshot());
    await agent.stop();
    expect(fake.requests).toHaveLength(1);
  });

  it("stops a runaway tool loop at the depth cap and keeps the history valid", async () => {
    const loop = () => toolUseReply([{ id: `toolu_${fake.requests.length}`, name: "message_user", input: { text: "again" } }]);
    fake.reply(loop, loop, loop, textReply("Done."));
    const { agent, text } = makeAgent({ maxToolDepth: 2 });
    agent.startNegotiation(trigger, conversation);
    await text(/stopped after 2 rounds of tool calls/);
    expect(fake.requests).toHaveLength(3);
    agent.onPeerMove(session.snapshot());
    await text(/^Done\.$/);
    const messages = fake.requests[3]!.body.messages as Msg[];
    expect(messages.map((m) => m.role)).toEqual(["user", "assistant", "user", "assistant", "user", "assistant", "user"]);
    const last = messages.at(-1)!;
    // The unrun call still gets its result, first, followed by the new turn's text.
    expect(last.content.map((b) => b.type)).toEqual(["tool_result", "text"]);
    expect(last.content[0]).toMatchObject({ tool_use_id: "toolu_3", is_error: true });
    expect(last.content[0]!.content).toMatch(/Not run/);
  });

  it("answers the peer's move with the offer and the round count", async () => {
    fake.reply(textReply("(listening)"));
    const { agent } = makeAgent();
    const peerSession = createNegotiationSession({
      id: "neg-p",
      roomId: "room-1",
      initiatorUserId: PEER,
      participants: [SELF, PEER],
      roundTimeoutMs: 60_000,
      totalTimeoutMs: 60_000,
      maxRounds: 2,
      onChange: () => {},
    });
    const { deps } = makeDeps({ userId: PEER, peerId: SELF, profile: create(AgentProfileSchema, { role: PartyRole.CLIENT, currency: "GBP", maxAutoApproveMinor: 100_000n }), session: () => peerSession });
    await createAgentTools(deps).call("propose", { ...proposeInput, my_role: "client", line_items: [{ description: "Boiler repair", kind: "immediate", amount_minor: 15_000 }] });
    agent.onPeerMove(peerSession.snapshot());
    const [request] = await fake.waitForRequests(1);
    const prompt = (request!.body.messages as Msg[])[0]!.content[0]!.text as string;
    expect(prompt).toContain("opened with: £150.00 total in GBP (your user provides and is paid)");
    expect(prompt).toContain('"amount_minor":15000');
    expect(prompt).toContain("Offers so far: 1 of at most 2.");
    peerSession.close();
  });

  it("batches transcript lines (debounced) into one update", async () => {
    fake.reply(textReply("They mentioned a deadline."));
    const { agent, text } = makeAgent({ debounceMs: 20 });
    agent.pushTranscript(entry(PEER, "Hello.", 10), "peer");
    agent.pushTranscript(entry(SELF, "Hi there.", 11), "self");
    agent.pushTranscript(entry(PEER, "It must be done by Friday.", 12), "peer");
    await text(/deadline/);
    expect(fake.requests).toHaveLength(1);
    const update = (fake.requests[0]!.body.messages as Msg[])[0]!.content[0]!.text as string;
    expect(update).toContain("Cleo: Hello.\nPat (your user): Hi there.\nCleo: It must be done by Friday.");
  });

  it("trims history to its budget without leaving orphaned tool results", async () => {
    fake.reply(toolUseReply([{ id: "toolu_1", name: "propose", input: proposeInput }]), textReply("Offered."), textReply("Noted."));
    const { agent, text } = makeAgent({ historyTokenBudget: 200 });
    agent.startNegotiation(trigger, conversation);
    await text(/^Offered\.$/);
    agent.onPeerMove(session.snapshot());
    await text(/^Noted\.$/);
    const messages = fake.requests[2]!.body.messages as Msg[];
    expect(messages[0]!.role).toBe("user");
    expect(messages[0]!.content.some((b) => b.type === "tool_result")).toBe(false);
    expect(messages.length).toBeLessThan(5);
  });

  it("handles refusal and max_tokens stop reasons without breaking the next turn", async () => {
    fake.reply(
      { body: messageBody([], "refusal") },
      { body: messageBody([{ type: "tool_use", id: "toolu_cut", name: "propose", input: {} }], "max_tokens") },
      textReply("All good."),
    );
    const { agent, text } = makeAgent();
    agent.startNegotiation(trigger, conversation);
    await text(/declined to continue/);
    agent.onPeerMove(session.snapshot());
    await text(/cut off/);
    agent.onPeerMove(session.snapshot());
    await text(/All good/);
    // Neither the refused nor the cut-off reply (with its half tool call) went back to the API.
    const messages = fake.requests[2]!.body.messages as Msg[];
    expect(messages.map((m) => m.role)).toEqual(["user"]);
    expect(JSON.stringify(messages)).not.toContain("toolu_cut");
    expect(session.snapshot().status).toBe(NegotiationStatus.OPEN);
  });
});

describe("Claude agent against the strict Messages API rules", () => {
  it("keeps an empty end_turn after a tool call out of the history, so the next request is accepted", async () => {
    fake.reply(toolUseReply([{ id: "toolu_e", name: "propose", input: proposeInput }]), emptyEndTurnReply(), textReply("They agreed on Friday."));
    const { agent, messages, text } = makeAgent();
    agent.startNegotiation(trigger, conversation);
    await fake.waitForRequests(2);
    agent.pushTranscript(entry(PEER, "Can you come on Friday?", 3), "peer");
    await text(/agreed on Friday/);

    expect(fake.requests).toHaveLength(3);
    expect(fake.rejections).toEqual([]);
    const third = fake.requests[2]!.body.messages as Msg[];
    // user(opening) → assistant(tool_use) → user(tool_result, then the new words): no empty turn.
    expect(third.map((m) => m.role)).toEqual(["user", "assistant", "user"]);
    expect(third.every((m) => m.content.length > 0)).toBe(true);
    expect(third[2]!.content.map((b) => b.type)).toEqual(["tool_result", "text"]);
    expect(third[2]!.content[0]).toMatchObject({ tool_use_id: "toolu_e" });
    expect(third[2]!.content[1]!.text).toContain("Cleo: Can you come on Friday?");
    // The empty reply said nothing to the person.
    expect(messages.filter((m) => m.isError)).toEqual([]);
  });

  it("sends requests the current default model accepts (no forced tool choice, no prefill)", async () => {
    fake.reply(toolUseReply([{ id: "toolu_d", name: "propose", input: proposeInput }]), textReply("Offered £200."));
    const { agent, text } = makeAgent({ model: "claude-sonnet-5-5" });
    agent.startNegotiation(trigger, conversation);
    await text(/Offered £200/);
    expect(fake.requests.map((r) => r.body.model)).toEqual(["claude-sonnet-5-5", "claude-sonnet-5-5"]);
    expect(fake.requests.every((r) => r.body.tool_choice === undefined)).toBe(true);
    expect(fake.rejections).toEqual([]);
  });

  it.each([
    { status: 404, type: "not_found_error", message: "model: claude-test", expected: /404 \(model: claude-test\): ANTHROPIC_MODEL=claude-test does not exist or is retired/ },
    { status: 403, type: "permission_error", message: "Your API key does not have permission to use the specified resource.", expected: /may not use ANTHROPIC_MODEL=claude-test \(403/ },
  ])("ends the agent with one panel error on a $status mid-call, and makes no further calls", async ({ status, type, message, expected }) => {
    fake.reply(toolUseReply([{ id: "toolu_m", name: "propose", input: proposeInput }]), { status, body: errorBody(type, message) }, textReply("never sent"));
    const { agent, messages, text } = makeAgent({ maxRetries: 2 });
    agent.startNegotiation(trigger, conversation);
    const failure = await text(expected);
    expect(failure).toMatchObject({ isError: true, userId: SELF });
    // Not retried by the SDK: two requests, the tool round and the refused one.
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[1]!.headers["x-stainless-retry-count"]).toBe("0");

    agent.pushTranscript(entry(PEER, "Are you still there?", 3), "peer");
    agent.pushTranscript(entry(SELF, "Hello?", 4), "self");
    agent.onPeerMove(session.snapshot());
    agent.startNegotiation(trigger, conversation);
    await agent.stop();
    expect(fake.requests).toHaveLength(2);
    expect(messages.filter((m) => m.isError)).toHaveLength(1);
  });

  it("gives Claude the conversation's deal state and the agreed-aloud rule", async () => {
    fake.reply(textReply("(listening)"));
    const { agent } = makeAgent();
    agent.startNegotiation(trigger, conversation);
    const [request] = await fake.waitForRequests(1);
    const system = (request!.body.system as Block[])[0]!.text as string;
    expect(system).toContain("What the two people agreed aloud is the deal");
    expect(system).toContain("Never re-haggle");
    expect(system).toContain("Fill in only what they left open");
    const prompt = (request!.body.messages as Msg[])[0]!.content[0]!.text as string;
    expect(prompt).toContain("What the conversation has settled so far");
    expect(prompt).toContain("£200.00");
    expect(prompt).toContain("Pat (your user)");
  });
});

describe("Claude agent with thinking and setting errors", () => {
  it("passes thinking blocks back unchanged with their tool_use, and drops a blank text block", async () => {
    const thinking = { type: "thinking", thinking: "They said £200; write it down.", signature: "sig_abc" };
    fake.reply(
      { body: messageBody([thinking, { type: "text", text: " " }, { type: "tool_use", id: "toolu_t", name: "propose", input: proposeInput }], "tool_use") },
      textReply("Offered."),
    );
    const { agent, text } = makeAgent();
    agent.startNegotiation(trigger, conversation);
    await text(/^Offered\.$/);
    const assistant = (fake.requests[1]!.body.messages as Msg[])[1]!;
    expect(assistant.content).toEqual([thinking, { type: "tool_use", id: "toolu_t", name: "propose", input: proposeInput }]);
  });

  it("stops after a 429 for the spend limit, which waiting does not lift", async () => {
    const spent = { type: "error", error: { type: "rate_limit_error", message: "You have reached your specified API usage limits.", details: { error_code: "enforced_spend_limit_reached" } } };
    fake.reply({ status: 429, body: spent, headers: { "x-should-retry": "false" } }, textReply("never sent"));
    const { agent, messages, text } = makeAgent({ maxRetries: 2 });
    agent.startNegotiation(trigger, conversation);
    await text(/spend limit \(429\)/);
    agent.onPeerMove(session.snapshot());
    await agent.stop();
    expect(fake.requests).toHaveLength(1);
    expect(messages.filter((m) => m.isError)).toHaveLength(1);
  });

  it("ends the agent once when a setting is refused for every call (max_tokens above the model's limit)", async () => {
    const { agent, messages, text } = makeAgent({ maxTokens: 100_000 });
    agent.startNegotiation(trigger, conversation);
    await text(/maximum allowed number of output tokens.*The agent has stopped using Claude/);
    agent.onPeerMove(session.snapshot());
    agent.pushTranscript(entry(PEER, "Hello?", 3), "peer");
    await agent.stop();
    expect(fake.requests).toHaveLength(1);
    expect(messages.filter((m) => m.isError)).toHaveLength(1);
    fake.rejections.length = 0; // The refusal was the point of this test.
  });
});
