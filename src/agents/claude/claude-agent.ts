import type Anthropic from "@anthropic-ai/sdk";
import { create } from "@bufbuild/protobuf";
import { LineItemKind, RoundAction, type Negotiation, type Proposal } from "../../../gen/handshake/v1/deal_pb.js";
import { AgentMessageKind, AgentMessageSchema } from "../../../gen/handshake/v1/events_pb.js";
import { EscrowPreference, NegotiationStyle, PartyRole, RateUnit, type AgentProfile } from "../../../gen/handshake/v1/profile_pb.js";
import { TriggerKind, type TranscriptEntry, type TriggerEvent } from "../../../gen/handshake/v1/transcript_pb.js";
import { formatMoney } from "../../core/money.js";
import { initialDealState, nextDealState, summariseDealState, type DealParty, type DealState } from "../../language/deal-state.js";
import type { Agent, AgentDeps, AgentFactory, PeerInfo } from "../agent.js";
import { createAnthropicClient, describeClaudeError } from "./anthropic-client.js";
import { createAgentTools, describeProposal, type AgentToolSet, type LineItemInput } from "../tools.js";

type MessageParam = Anthropic.Messages.MessageParam;
type ContentBlockParam = Anthropic.Messages.ContentBlockParam;
type ToolResultBlockParam = Anthropic.Messages.ToolResultBlockParam;
type ToolParam = Anthropic.Messages.Tool;

/** Options of the Claude agent engine. */
export interface ClaudeAgentOptions {
  apiKey: string;
  /** Model id, e.g. "claude-sonnet-5-5"; a config value because the lineup moves. */
  model: string;
  /** API base URL; default the SDK's (https://api.anthropic.com). Tests point it at a local fake. */
  baseURL?: string;
  /** Most tool-use rounds in one turn before the agent stops calling tools; default 8. */
  maxToolDepth?: number;
  /** Rough token budget for the kept conversation history (≈ 4 characters a token); default 40,000. */
  historyTokenBudget?: number;
  /** Transcript lines are batched for this long before Claude sees them, milliseconds; default 2,000. */
  debounceMs?: number;
  /** Per-attempt request timeout, milliseconds; default 60,000. */
  timeoutMs?: number;
  /** SDK retries for 429, 529 and 5xx; default 2. */
  maxRetries?: number;
  /**
   * max_tokens of each reply; default 8,192. Current models think adaptively by default and
   * thinking counts towards max_tokens, so a small cap cuts replies off; it is a cap, not a cost.
   */
  maxTokens?: number;
  /** When false, transcript updates only join the history and do not start a turn; default true. */
  listen?: boolean;
}

/** What Claude answers to a transcript update that needs no words to the user. */
const QUIET_REPLY = "(listening)";

/**
 * The Claude agent engine. Each agent keeps its own conversation with Claude: a system prompt
 * from the profile, the shared tools (limits are enforced there, not trusted to the model), a
 * tool loop with a depth cap, history trimmed to a budget, debounced transcript updates and the
 * conversation's deal state (src/language) as context. API failures become messages to the
 * user, never crashes; a refused key, no access or an unknown model stops the agent after one.
 */
export function createClaudeAgentFactory(options: ClaudeAgentOptions): AgentFactory {
  const client = createAnthropicClient({
    apiKey: options.apiKey,
    ...(options.baseURL ? { baseURL: options.baseURL } : {}),
    timeoutMs: options.timeoutMs ?? 60_000,
    maxRetries: options.maxRetries ?? 2,
  });
  const settings = {
    model: options.model,
    maxToolDepth: options.maxToolDepth ?? 8,
    historyTokenBudget: options.historyTokenBudget ?? 40_000,
    debounceMs: options.debounceMs ?? 2_000,
    maxTokens: options.maxTokens ?? 8_192,
    listen: options.listen ?? true,
  };
  return (deps) => createClaudeAgent(client, settings, deps);
}

interface Settings {
  model: string;
  maxToolDepth: number;
  historyTokenBudget: number;
  debounceMs: number;
  maxTokens: number;
  listen: boolean;
}

function createClaudeAgent(client: Anthropic, settings: Settings, deps: AgentDeps): Agent {
  const tools = createAgentTools(deps, { draftContractTool: true });
  // The room binds roomId and userId already; binding them again would repeat the keys in each line.
  const log = deps.log.child({ engine: "claude" });
  const history: MessageParam[] = [];
  const abort = new AbortController();
  let pending: string[] = [];
  let debounce: ReturnType<typeof setTimeout> | undefined;
  let chain: Promise<void> = Promise.resolve();
  let stopped = false;
  /** Set on a fatal failure (key, access, model): every later call would fail the same way. */
  let disabled = false;
  /** What the conversation has settled so far, read from every final transcript. */
  let dealState: DealState = freshDealState();
  let utterances = 0;

  function freshDealState(): DealState {
    const profile = deps.profile();
    const parties: DealParty[] = [
      { userId: deps.userId, profileRole: partyRole(profile.role) },
      { userId: deps.peer.userId, profileRole: partyRole(deps.peer.role) },
    ];
    return initialDealState(parties, profile.currency || deps.peer.currency || "GBP");
  }

  function readUtterance(speakerUserId: string, text: string): void {
    dealState = nextDealState(dealState, { speakerUserId, text, index: utterances++ });
  }

  /** The deal state in words for a prompt; names say which side is the agent's user. */
  function dealContext(): string {
    const names = { [deps.userId]: `${nameOf(deps.userId)} (your user)`, [deps.peer.userId]: nameOf(deps.peer.userId) };
    return [
      "What the conversation has settled so far (read by the server from the words said; the words themselves win if they differ):",
      summariseDealState(dealState, names),
    ].join("\n");
  }

  function tell(text: string, isError = false): void {
    deps.notifyUser(create(AgentMessageSchema, { userId: deps.userId, kind: AgentMessageKind.TEXT, text, isError }));
  }

  function nameOf(userId: string): string {
    if (userId === deps.userId) return deps.profile().displayName || "Your user";
    if (userId === deps.peer.userId) return deps.peer.displayName || "The other person";
    return userId;
  }

  /** Runs turns one at a time, in the order they were asked for. */
  function enqueue(text: string, kind: string): void {
    if (stopped) return;
    chain = chain
      .then(() => runTurn(text, kind))
      .catch((err: unknown) => log.error({ err, kind }, "claude turn failed"));
  }

  function appendUser(blocks: ContentBlockParam[]): void {
    const last = history[history.length - 1];
    if (last && last.role === "user") {
      // Two user turns in a row (a failed call, a capped tool loop) are one message to the API;
      // tool results already in it stay first.
      last.content = [...toBlocks(last.content), ...blocks];
      return;
    }
    history.push({ role: "user", content: blocks });
  }

  /**
   * Drops the oldest messages beyond the budget. The newest user message stays, and when it
   * holds tool results so does the assistant turn that asked for them: dropping either would
   * leave a request the API refuses (no messages, or tool_result without its tool_use).
   */
  function trimHistory(): void {
    const budgetChars = settings.historyTokenBudget * 4;
    const last = history[history.length - 1];
    const answersTools = last !== undefined && last.role === "user" && toBlocks(last.content).some((b) => b.type === "tool_result");
    const keepFrom = Math.max(0, history.length - (answersTools ? 2 : 1));
    let size = history.reduce((n, m) => n + JSON.stringify(m.content).length, 0);
    let drop = 0;
    while (size > budgetChars && drop < keepFrom) {
      size -= JSON.stringify(history[drop]!.content).length;
      drop += 1;
    }
    history.splice(0, drop);
    // The history must open with a user message, and tool results whose tool_use was dropped must go.
    while (history.length > 0) {
      const first = history[0]!;
      const protectedTail = history.length <= (answersTools ? 2 : 1);
      if (first.role !== "user") {
        if (protectedTail) {
          history.unshift({ role: "user", content: [{ type: "text", text: "(Earlier conversation trimmed.)" }] });
          break;
        }
        history.shift();
        continue;
      }
      const blocks = toBlocks(first.content).filter((b) => b.type !== "tool_result");
      if (blocks.length === 0) {
        history.shift();
        continue;
      }
      first.content = blocks;
      break;
    }
  }

  /**
   * Keeps an assistant turn in the history without blank text blocks, and not at all when
   * nothing is left: the API refuses any later request that holds an empty assistant turn.
   */
  function keepAssistant(content: Anthropic.Messages.ContentBlock[]): boolean {
    const blocks = (content as ContentBlockParam[]).filter((b) => b.type !== "text" || b.text.trim() !== "");
    if (blocks.length === 0) return false;
    history.push({ role: "assistant", content: blocks });
    return true;
  }

  async function runTurn(text: string, kind: string): Promise<void> {
    if (stopped || disabled) return;
    appendUser([{ type: "text", text }]);
    for (let depth = 0; ; depth++) {
      trimHistory();
      let response: Anthropic.Messages.Message;
      try {
        response = await client.messages.create(
          {
            model: settings.model,
            max_tokens: settings.maxTokens,
            system: [{ type: "text", text: systemPrompt(deps.profile(), deps.peer), cache_control: { type: "ephemeral" } }],
            tools: toolParams(tools),
            messages: history,
          },
          { signal: abort.signal },
        );
      } catch (err) {
        const failure = describeClaudeError(err, settings.model);
        if (failure.aborted || stopped) return;
        if (failure.fatal) {
          // One panel error, then silence: retrying on every transcript would repeat it.
          disabled = true;
          flushTranscript();
          history.length = 0;
          log.error({ status: failure.status, requestId: failure.requestId, model: settings.model }, "claude refused the agent for good; agent disabled");
        } else {
          log.warn({ status: failure.status, requestId: failure.requestId, kind }, "claude call failed");
        }
        tell(failure.message, true);
        if (failure.status === 400) history.length = 0; // A history the API refuses would be refused again.
        return;
      }
      if (stopped) return;
      switch (response.stop_reason) {
        case "tool_use": {
          keepAssistant(response.content);
          const calls = response.content.filter((b): b is Anthropic.Messages.ToolUseBlock => b.type === "tool_use");
          if (depth >= settings.maxToolDepth) {
            // Every tool_use needs its result, even unrun, or the next request is refused.
            appendUser(
              calls.map<ToolResultBlockParam>((c) => ({
                type: "tool_result",
                tool_use_id: c.id,
                content: `Not run: the limit of ${settings.maxToolDepth} tool rounds for one turn was reached.`,
                is_error: true,
              })),
            );
            log.warn({ depth }, "tool depth cap reached");
            tell(`I stopped after ${settings.maxToolDepth} rounds of tool calls without finishing.`, true);
            return;
          }
          const results: ToolResultBlockParam[] = [];
          for (const call of calls) {
            const result = await tools.call(call.name, call.input);
            results.push({
              type: "tool_result",
              tool_use_id: call.id,
              content: result.content,
              ...(result.isError ? { is_error: true } : {}),
            });
          }
          if (stopped) return;
          appendUser(results);
          continue;
        }
        case "pause_turn":
          // A long server-side turn paused: sending it back lets Claude continue.
          if (!keepAssistant(response.content) || depth >= settings.maxToolDepth) return;
          continue;
        case "max_tokens": {
          const hasToolUse = response.content.some((b) => b.type === "tool_use");
          if (!hasToolUse) {
            keepAssistant(response.content);
            say(response);
          }
          log.warn({ kind }, "claude reply cut off at max_tokens");
          tell("My reply was cut off before I finished.", true);
          return;
        }
        case "refusal":
          // Not kept: a refused exchange in the history only invites more refusals.
          log.warn({ kind }, "claude refused");
          tell("Claude declined to continue with this request.", true);
          return;
        case "model_context_window_exceeded":
          history.splice(0, Math.ceil(history.length / 2));
          tell("The conversation got too long for the model; I dropped the oldest part.", true);
          return;
        case "end_turn":
        case "stop_sequence":
        default:
          // An empty end_turn (common right after tool results) is not kept: the history then
          // ends with the tool results, and the next turn's words join that user message.
          keepAssistant(response.content);
          say(response);
          return;
      }
    }
  }

  /** Passes Claude's closing words to the user, unless it only said it is listening. */
  function say(response: Anthropic.Messages.Message): void {
    const text = response.content
      .filter((b): b is Anthropic.Messages.TextBlock => b.type === "text")
      .map((b) => b.text)
      .join("\n")
      .trim();
    if (text === "" || text.toLowerCase().replace(/[.\s]/g, "") === QUIET_REPLY) return;
    deps.notifyUser(create(AgentMessageSchema, { userId: deps.userId, kind: AgentMessageKind.TEXT, text }));
  }

  function flushTranscript(): string[] {
    if (debounce !== undefined) clearTimeout(debounce);
    debounce = undefined;
    const lines = pending;
    pending = [];
    return lines;
  }

  return {
    pushTranscript(entry, speaker) {
      if (stopped || !entry.isFinal || entry.text.trim() === "") return;
      readUtterance(entry.speakerUserId, entry.text);
      if (disabled) return;
      const who = speaker === "self" ? `${nameOf(deps.userId)} (your user)` : nameOf(entry.speakerUserId);
      pending.push(`${who}: ${entry.text.trim()}`);
      if (debounce !== undefined) clearTimeout(debounce);
      debounce = setTimeout(() => {
        const lines = flushTranscript();
        if (lines.length === 0) return;
        const text =
          `Conversation update:\n${lines.join("\n")}\n\n${dealContext()}\n\n` +
          `Only if something needs your user's attention, say it in one or two sentences; otherwise reply exactly ${QUIET_REPLY}.`;
        if (settings.listen) {
          enqueue(text, "transcript");
        } else {
          // Through the queue, so the words never land between a tool_use and its results.
          const update = `Conversation update:\n${lines.join("\n")}`;
          chain = chain.then(() => {
            if (!stopped && !disabled) appendUser([{ type: "text", text: update }]);
          });
        }
      }, settings.debounceMs);
    },
    startNegotiation(trigger, conversation) {
      flushTranscript(); // The conversation below includes whatever was waiting.
      // The room's conversation is the record: read it whole, whatever this agent heard live.
      dealState = freshDealState();
      utterances = 0;
      for (const e of conversation) if (e.isFinal && e.text.trim() !== "") readUtterance(e.speakerUserId, e.text);
      enqueue(`${openingPrompt(trigger, conversation, nameOf)}\n\n${dealContext()}`, "start");
    },
    onPeerMove(negotiation) {
      enqueue(`${peerMovePrompt(negotiation, deps.userId, nameOf)}\n\n${dealContext()}`, "peer_move");
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      flushTranscript();
      abort.abort();
      await chain;
    },
  };
}

function toBlocks(content: MessageParam["content"]): ContentBlockParam[] {
  return typeof content === "string" ? [{ type: "text", text: content }] : content;
}

/** The tools for the API, with a cache breakpoint on the last so tools and system are cached. */
function toolParams(tools: AgentToolSet): ToolParam[] {
  const defs = tools.definitions();
  return defs.map((d, i) => ({
    name: d.name,
    description: d.description,
    input_schema: d.input_schema,
    ...(i === defs.length - 1 ? { cache_control: { type: "ephemeral" as const } } : {}),
  }));
}

const STYLE_WORDS: Record<NegotiationStyle, string> = {
  [NegotiationStyle.UNSPECIFIED]: "balanced: concede steadily over the rounds",
  [NegotiationStyle.BALANCED]: "balanced: concede steadily over the rounds",
  [NegotiationStyle.AGGRESSIVE]: "aggressive (Boulware): hold your opening position and concede only near the last round",
  [NegotiationStyle.CONSERVATIVE]: "conservative (conceder): move towards a deal early; agreement matters more than the last penny",
};

const UNIT_WORDS: Record<RateUnit, string> = {
  [RateUnit.UNSPECIFIED]: "per job",
  [RateUnit.HOUR]: "per hour",
  [RateUnit.DAY]: "per day",
  [RateUnit.JOB]: "per job",
  [RateUnit.ITEM]: "per item",
};

function partyRole(role: PartyRole): DealParty["profileRole"] {
  return role === PartyRole.PROVIDER ? "provider" : role === PartyRole.CLIENT ? "client" : "";
}

function roleWords(role: PartyRole): string {
  return role === PartyRole.PROVIDER ? "provider (does the work and is paid)" : role === PartyRole.CLIENT ? "client (pays)" : "not stated";
}

/** The system prompt: who the agent works for, what it may do, the rules that bind it. */
export function systemPrompt(profile: AgentProfile, peer: PeerInfo): string {
  const currency = profile.currency || "GBP";
  const m = (minor: bigint) => formatMoney(minor, currency);
  const escrow =
    profile.escrowPreference === EscrowPreference.ALWAYS
      ? "hold every item in escrow until its milestone is confirmed"
      : profile.escrowPreference === EscrowPreference.NEVER
        ? "pay immediately unless the other side insists on escrow"
        : profile.escrowThresholdMinor > 0n
          ? `hold items above ${m(profile.escrowThresholdMinor)} in escrow`
          : "no preference";
  const lines = [
    `You are the negotiating agent of ${profile.displayName || "your user"} in Handshake, a service where two people talk, agree a deal aloud, and their agents settle the terms that become a signed, paid contract.`,
    "",
    "Your user:",
    `- Name: ${profile.displayName || "(not given)"}`,
    `- Usual side: ${roleWords(profile.role)}`,
    `- Trade: ${profile.trade || "(not given)"}${profile.experienceYears ? `, ${profile.experienceYears} years of experience` : ""}`,
    `- Currency: ${currency}`,
    `- Usual rates: ${profile.rates.length > 0 ? profile.rates.map((r) => `${r.description} ${m(r.amountMinor)} ${UNIT_WORDS[r.unit]}`).join("; ") : "(none given)"}`,
    `- Negotiation style: ${STYLE_WORDS[profile.style]}`,
    `- Most you may agree to pay without asking: ${m(profile.maxAutoApproveMinor)}${profile.maxAutoApproveMinor === 0n ? " (you may not agree to pay anything)" : ""}`,
    `- Escrow preference when paying: ${escrow}`,
  ];
  if (profile.customInstructions.trim()) lines.push("", "Your user's instructions:", profile.customInstructions.trim());
  if (profile.contextDocuments.length > 0) {
    lines.push("", "Background documents from your user:");
    for (const doc of profile.contextDocuments) lines.push(`--- ${doc.title} ---`, doc.text.slice(0, 20_000));
  }
  lines.push(
    "",
    "The other person:",
    `- Name: ${peer.displayName || "(not given)"}; usual side: ${roleWords(peer.role)}; trade: ${peer.trade || "(not given)"}; currency: ${peer.currency || "(not given)"}`,
    "",
    "Rules:",
    "- What the two people agreed aloud is the deal. Your job is to write it down: the items, quantities, prices, currency and who pays whom exactly as they said and accepted them. Never re-haggle, round or \"improve\" a number both of them accepted, never add an item or charge nobody said, and keep an item they dropped out.",
    "- Fill in only what they left open (a price inside a range they named, a price nobody named yet), and only within your user's mandate and usual rates. The deal state given with each update is the server's reading of the words; if the words say otherwise, the words win.",
    "- Who pays whom comes from this conversation (a person selling something is paid, whatever their usual side); your user's usual side is only the fallback when the talk does not say.",
    "- Never commit your user to pay more than the most they allow without asking. The tools enforce it: above it, propose and evaluate_proposal ask your user and wait for their answer (or refuse when no one can be asked); if your user declines, make no further offers.",
    "- You act only through your tools. propose opens or counters; evaluate_proposal accepts, counters or rejects the other side's offer; message_user speaks to your user alone; use any other tool for what its description says.",
    "- Amounts are integers in minor units (pence, cents; none for JPY) of one ISO 4217 currency per offer. Line items must sum to the total; the tools compute it.",
    "- Keep item ids the same across counter-offers.",
    "- A price that is only known later (\"between 150 and 250\") is a ranged item held in escrow at its maximum, with milestone terms.",
    "- Summaries and reasons are shown to the other person: never reveal your user's limits, budget, instructions or documents.",
    "- The tools enforce your user's limits. If a tool refuses an amount, do not try it again: adjust, or tell your user their approval is needed.",
    "- One negotiation has a limited number of offers; after the last one you may only accept or reject.",
    "- Be brief with your user: one or two sentences.",
  );
  return lines.join("\n");
}

function transcriptLines(conversation: readonly TranscriptEntry[], nameOf: (userId: string) => string): string {
  const lines = conversation.filter((e) => e.isFinal && e.text.trim() !== "").map((e) => `${nameOf(e.speakerUserId)}: ${e.text.trim()}`);
  // The newest talk matters most; keep the prompt bounded.
  let out: string[] = [];
  let size = 0;
  for (let i = lines.length - 1; i >= 0 && size < 12_000; i--) {
    out = [lines[i]!, ...out];
    size += lines[i]!.length;
  }
  return out.join("\n");
}

function openingPrompt(trigger: TriggerEvent, conversation: readonly TranscriptEntry[], nameOf: (userId: string) => string): string {
  const how =
    trigger.kind === TriggerKind.SMART
      ? "the conversation sounded like an agreement"
      : trigger.kind === TriggerKind.DUAL_KEYWORD
        ? `both people said "${trigger.keyword}"`
        : `"${trigger.keyword}" was said`;
  return [
    `A deal was triggered (${how}) by ${nameOf(trigger.speakerUserId)}: "${trigger.matchedText}".`,
    "",
    "The conversation so far:",
    transcriptLines(conversation, nameOf) || "(nothing recorded)",
    "",
    "You open the negotiation. Write down what the two people agreed aloud: the items, quantities and prices they accepted, the currency, and who pays whom as the conversation says. Fill in only what they left open, within your user's mandate. Then call propose.",
  ].join("\n");
}

/** A proposal's items in the tools' input shape, so a counter can copy and change them. */
function itemsAsInput(proposal: Proposal): LineItemInput[] {
  return proposal.lineItems.map((item) => {
    const input: LineItemInput = {
      id: item.id,
      description: item.description,
      kind: item.kind === LineItemKind.ESCROW ? "escrow" : item.kind === LineItemKind.CONDITIONAL ? "conditional" : "immediate",
      amount_minor: Number(item.amountMinor),
      quantity: item.quantity,
    };
    if (item.unitPriceMinor > 0n) input.unit_price_minor = Number(item.unitPriceMinor);
    if (item.unit) input.unit = item.unit;
    if (item.range) input.range = { min_minor: Number(item.range.minMinor), max_minor: Number(item.range.maxMinor) };
    if (item.milestone) input.milestone = { title: item.milestone.title, deliverables: item.milestone.deliverables };
    if (item.condition) input.condition = item.condition;
    return input;
  });
}

function peerMovePrompt(negotiation: Negotiation, selfId: string, nameOf: (userId: string) => string): string {
  const last = negotiation.rounds[negotiation.rounds.length - 1];
  const current = negotiation.currentProposal;
  if (!last || !current) return "The negotiation changed; check whether you need to act.";
  const offers = negotiation.rounds.filter((r) => r.proposal !== undefined).length;
  const verb = last.action === RoundAction.PROPOSE ? "opened with" : "countered with";
  const final = offers >= negotiation.maxRounds;
  return [
    `${nameOf(last.fromUserId)}'s agent ${verb}: ${describeProposal(current, selfId)}`,
    `Their reason: "${last.reason}"`,
    `Line items (tool input shape): ${JSON.stringify(itemsAsInput(current))}`,
    `Offers so far: ${offers} of at most ${negotiation.maxRounds}.`,
    "If it states what the two people agreed aloud, accept it; counter only terms they left open or that differ from what they agreed.",
    final
      ? "That was the last offer allowed: accept or reject it with evaluate_proposal."
      : "Answer with evaluate_proposal: accept, counter with a complete offer, or reject.",
  ].join("\n");
}
