import { create } from "@bufbuild/protobuf";
import {
  LineItemKind,
  LineItemSchema,
  MilestoneTermsSchema,
  PartySchema,
  PricingFactorSchema,
  ProposalSchema,
  type LineItem,
  type Proposal,
} from "../../gen/handshake/v1/deal_pb.js";
import { AgentMessageKind, AgentMessageSchema } from "../../gen/handshake/v1/events_pb.js";
import { PriceRangeSchema } from "../../gen/handshake/v1/money_pb.js";
import { EscrowPreference, PartyRole, type AgentProfile } from "../../gen/handshake/v1/profile_pb.js";
import { draftFromTemplate } from "../deal/contract-template.js";
import { formatMoney, isSupportedCurrency } from "../core/money.js";
import { MAX_LINE_ITEMS, NegotiationMoveError, validateProposal } from "../deal/negotiation.js";
import { BankError } from "../payments/bank.js";
import type { AgentDeps } from "./agent.js";
import { toJsonSchema, validateInput, type SchemaNode } from "./tool-schema.js";

/** The names of the agents' tools. */
export type ToolName =
  | "propose"
  | "evaluate_proposal"
  | "message_user"
  | "check_balance"
  | "recent_transactions"
  | "draft_contract_text";

/** A tool as Claude sees it (the Messages API `tools` entry, without cache_control). */
export interface ToolDefinition {
  name: ToolName;
  description: string;
  input_schema: { type: "object"; [key: string]: unknown };
}

/** What a tool call returned: text for the model, and whether it is an error (`is_error`). */
export interface ToolResult {
  content: string;
  isError: boolean;
}

/** The tool set of one agent: definitions for the model, and one entry point that never throws. */
export interface AgentToolSet {
  definitions(): ToolDefinition[];
  /** Validates, reports the call and its result to the user, runs it; errors become `isError` results. */
  call(name: string, input: unknown): Promise<ToolResult>;
}

/** Options of `createAgentTools`. */
export interface AgentToolOptions {
  /** Adds `draft_contract_text` (a preview of the contract for the current offer); for Claude. */
  draftContractTool?: boolean;
}

/** A line item as the tools take it: amounts in integer minor units. */
export interface LineItemInput {
  id?: string;
  description: string;
  kind: "immediate" | "escrow" | "conditional";
  amount_minor?: number;
  range?: { min_minor: number; max_minor: number };
  quantity?: number;
  unit_price_minor?: number;
  unit?: string;
  pricing_factors?: { name: string; description?: string; impact_minor: number }[];
  milestone?: { title: string; deliverables?: string[]; verification_method?: string; completion_criteria?: string };
  condition?: string;
}

/** A complete offer as the tools take it. */
export interface ProposalInput {
  summary: string;
  currency: string;
  /** The side of the agent's own user. */
  my_role: "provider" | "client";
  line_items: LineItemInput[];
}

/** Input of `propose`. */
export interface ProposeInput extends ProposalInput {
  reason: string;
}

/** Input of `evaluate_proposal`. */
export interface EvaluateInput {
  decision: "accept" | "counter" | "reject";
  reason: string;
  counter?: ProposalInput;
}

const MAX_MINOR = 1_000_000_000_000_000; // 10^15: far below 2^53, far above any real deal.

const LINE_ITEM_SCHEMA: SchemaNode = {
  type: "object",
  properties: {
    id: { type: "string", minLength: 1, maxLength: 64, description: "Item id; keep the same id for the same item across counter-offers." },
    description: { type: "string", minLength: 1, maxLength: 500, description: "What is being bought." },
    kind: {
      type: "string",
      enum: ["immediate", "escrow", "conditional"],
      description: "immediate: paid when both sign; escrow: held and paid when its milestone is confirmed; conditional: held, paid only if the condition is met.",
    },
    amount_minor: { type: "integer", minimum: 1, maximum: MAX_MINOR, description: "Price in minor units (pence, cents). For a ranged item, equals range.max_minor. For a counted item, quantity × unit_price_minor." },
    range: {
      type: "object",
      description: "Set when the final price is only known later; the item is then held in escrow at max_minor.",
      properties: {
        min_minor: { type: "integer", minimum: 1, maximum: MAX_MINOR },
        max_minor: { type: "integer", minimum: 1, maximum: MAX_MINOR },
      },
      required: ["min_minor", "max_minor"],
    },
    quantity: { type: "integer", minimum: 1, maximum: 100_000, description: "Number of units (hours, items); 1 when not counted." },
    unit_price_minor: { type: "integer", minimum: 1, maximum: MAX_MINOR, description: "Price per unit in minor units, for counted items." },
    unit: { type: "string", maxLength: 40, description: "Unit name for quantity, e.g. \"hour\"." },
    pricing_factors: {
      type: "array",
      maxItems: 10,
      description: "What moved the price, so both sides see why.",
      items: {
        type: "object",
        properties: {
          name: { type: "string", minLength: 1, maxLength: 100 },
          description: { type: "string", maxLength: 500 },
          impact_minor: { type: "integer", minimum: -MAX_MINOR, maximum: MAX_MINOR, description: "Effect on the amount, minor units; negative for a discount." },
        },
        required: ["name", "impact_minor"],
      },
    },
    milestone: {
      type: "object",
      description: "What must be delivered for an escrow or conditional item to be paid.",
      properties: {
        title: { type: "string", minLength: 1, maxLength: 200 },
        deliverables: { type: "array", maxItems: 20, items: { type: "string", minLength: 1, maxLength: 300 } },
        verification_method: { type: "string", maxLength: 300 },
        completion_criteria: { type: "string", maxLength: 300 },
      },
      required: ["title"],
    },
    condition: { type: "string", maxLength: 500, description: "For conditional items: the condition, in words." },
  },
  required: ["description", "kind"],
};

const PROPOSAL_PROPERTIES: Record<string, SchemaNode> = {
  summary: { type: "string", minLength: 1, maxLength: 1000, description: "One paragraph in plain words; the other person sees it. Never mention your user's limits." },
  currency: { type: "string", pattern: "^[A-Z]{3}$", description: "ISO 4217 code for every amount, e.g. GBP." },
  my_role: { type: "string", enum: ["provider", "client"], description: "Your user's side: provider (does the work, is paid) or client (pays)." },
  line_items: { type: "array", minItems: 1, maxItems: MAX_LINE_ITEMS, items: LINE_ITEM_SCHEMA },
};

const PROPOSE_SCHEMA: SchemaNode = {
  type: "object",
  properties: {
    ...PROPOSAL_PROPERTIES,
    reason: { type: "string", minLength: 1, maxLength: 1000, description: "Why this offer; the other side sees it." },
  },
  required: ["summary", "currency", "my_role", "line_items", "reason"],
};

const EVALUATE_SCHEMA: SchemaNode = {
  type: "object",
  properties: {
    decision: { type: "string", enum: ["accept", "counter", "reject"] },
    reason: { type: "string", minLength: 1, maxLength: 1000, description: "Why; the other side sees it. Never mention your user's limits." },
    counter: {
      type: "object",
      description: "The new offer, required when decision is counter.",
      properties: PROPOSAL_PROPERTIES,
      required: ["summary", "currency", "my_role", "line_items"],
    },
  },
  required: ["decision", "reason"],
};

const MESSAGE_SCHEMA: SchemaNode = {
  type: "object",
  properties: { text: { type: "string", minLength: 1, maxLength: 2000, description: "What to tell your user." } },
  required: ["text"],
};

const EMPTY_SCHEMA: SchemaNode = { type: "object", properties: {}, required: [] };

const TRANSACTIONS_SCHEMA: SchemaNode = {
  type: "object",
  properties: { limit: { type: "integer", minimum: 1, maximum: 50, description: "How many, newest first; default 10." } },
  required: [],
};

const DRAFT_SCHEMA: SchemaNode = {
  type: "object",
  properties: { title: { type: "string", maxLength: 200, description: "Optional title for the preview." } },
  required: [],
};

interface ToolSpec {
  name: ToolName;
  description: string;
  schema: SchemaNode;
  run(input: unknown): Promise<ToolResult>;
  /** One line for the user's panel saying what the agent is doing. */
  describeCall(input: unknown): string;
}

/**
 * Creates an agent's tools over its `AgentDeps`. Both engines use them, so the limits live here
 * once: the paying side never offers or accepts above its auto-approve limit without its person
 * (`propose` and `evaluate_proposal` ask them through `deps.requestApproval` and wait; declined
 * ends the negotiation), the payer's escrow preference is applied, the payer's balance is checked
 * before accepting, and every proposal passes the same `validateProposal` as the negotiation.
 */
export function createAgentTools(deps: AgentDeps, options: AgentToolOptions = {}): AgentToolSet {
  const specs: ToolSpec[] = [
    {
      name: "propose",
      description:
        "Make an offer in the open negotiation: the opening offer, or a counter-offer when the other side's offer is on the table. " +
        "Amounts are integers in minor units (pence, cents) of one currency. The total is the sum of the items (computed for you). " +
        "Items whose price is only known later get a range and are held in escrow. " +
        "If your user would pay more than their auto-approve limit, the tool asks them and waits for their answer; if they decline, the negotiation ends.",
      schema: PROPOSE_SCHEMA,
      run: (input) => runPropose(input as ProposeInput),
      describeCall: (input) => `Offering: ${summariseInput(input as ProposalInput)}`,
    },
    {
      name: "evaluate_proposal",
      description:
        "Answer the other side's current offer: accept it, counter with a complete new offer, or reject (walk away). " +
        "Once the round limit is reached you may only accept or reject. " +
        "Accepting or countering above your user's auto-approve limit asks them first and waits; if they decline, the negotiation ends.",
      schema: EVALUATE_SCHEMA,
      run: (input) => runEvaluate(input as EvaluateInput),
      describeCall: (input) => {
        const e = input as EvaluateInput;
        if (e.decision === "counter" && e.counter) return `Countering: ${summariseInput(e.counter)}`;
        return e.decision === "accept" ? "Accepting the offer" : `Rejecting the offer: ${e.reason}`;
      },
    },
    {
      name: "message_user",
      description: "Tell your own user something (only they see it): a question, a warning, a short update.",
      schema: MESSAGE_SCHEMA,
      run: async (input) => {
        notify(AgentMessageKind.TEXT, (input as { text: string }).text);
        return ok("Delivered to your user.");
      },
      describeCall: () => "Messaging you",
    },
    {
      name: "check_balance",
      description: "Your user's bank balance (read-only), when they connected a bank.",
      schema: EMPTY_SCHEMA,
      run: () => runCheckBalance(),
      describeCall: () => "Checking your bank balance",
    },
    {
      name: "recent_transactions",
      description: "Your user's recent bank transactions, newest first (read-only), when they connected a bank.",
      schema: TRANSACTIONS_SCHEMA,
      run: (input) => runRecentTransactions((input as { limit?: number }).limit ?? 10),
      describeCall: () => "Reading your recent transactions",
    },
  ];
  if (options.draftContractTool) {
    specs.push({
      name: "draft_contract_text",
      description:
        "Preview the contract text for the offer currently on the table, to explain it to your user. " +
        "The binding contract is drafted by the server once both sides agree.",
      schema: DRAFT_SCHEMA,
      run: (input) => runDraft((input as { title?: string }).title),
      describeCall: () => "Previewing the contract text",
    });
  }

  /** Per negotiation, the highest total the person approved above their limit. */
  const approvedUpTo = new Map<string, { amountMinor: bigint; currency: string }>();

  function notify(kind: AgentMessageKind, text: string, toolName = "", isError = false): void {
    deps.notifyUser(create(AgentMessageSchema, { userId: deps.userId, kind, text, toolName, isError }));
  }

  function session() {
    return deps.negotiation();
  }

  function money(minor: bigint, currency: string): string {
    return formatMoney(minor, currency);
  }

  /** Tells the user their approval is needed and returns the refusal for the model. */
  function needsApproval(problem: string): ToolResult {
    notify(AgentMessageKind.TEXT, `Approval needed: ${problem}. I have not agreed to it on your behalf.`, "", true);
    return fail(`Refused: ${problem}. Your user has been told their approval is needed; do not offer or accept this amount.`);
  }

  async function runPropose(input: ProposeInput): Promise<ToolResult> {
    const negotiation = session();
    if (!negotiation) return fail("There is no open negotiation to make an offer in.");
    const built = buildProposal(input, deps);
    if ("error" in built) return fail(built.error);
    const prepared = await prepareAsPayer(built.proposal, built.notes, negotiation.id);
    if ("result" in prepared) return prepared.result;
    const snapshot = negotiation.snapshot();
    try {
      if (snapshot.currentProposal) negotiation.counter(deps.userId, prepared.proposal, input.reason);
      else negotiation.propose(deps.userId, prepared.proposal, input.reason);
    } catch (err) {
      return moveFailed(err);
    }
    return ok(offerMade(prepared.proposal, prepared.notes));
  }

  async function runEvaluate(input: EvaluateInput): Promise<ToolResult> {
    const negotiation = session();
    if (!negotiation) return fail("There is no open negotiation.");
    const current = negotiation.snapshot().currentProposal;
    switch (input.decision) {
      case "reject":
        try {
          negotiation.reject(deps.userId, input.reason);
        } catch (err) {
          return moveFailed(err);
        }
        return ok("You rejected the offer; the negotiation is over.");
      case "counter": {
        if (!input.counter) return fail("input.counter is required when decision is counter");
        const built = buildProposal(input.counter, deps);
        if ("error" in built) return fail(built.error);
        const prepared = await prepareAsPayer(built.proposal, built.notes, negotiation.id);
        if ("result" in prepared) return prepared.result;
        try {
          negotiation.counter(deps.userId, prepared.proposal, input.reason);
        } catch (err) {
          return moveFailed(err);
        }
        return ok(offerMade(prepared.proposal, prepared.notes));
      }
      case "accept": {
        if (!current) return fail("There is no offer to accept yet.");
        if (current.proposedByUserId === deps.userId) return fail("You cannot accept your own offer; wait for the other side.");
        if (current.clientUserId === deps.userId) {
          const profile = deps.profile();
          const limit = payerLimitProblem(current, profile);
          if (limit) {
            const approval = await seekApproval(current, limit, negotiation.id);
            if ("result" in approval) return approval.result;
            // The person took their time: the offer they approved must still be the one on the table.
            const now = negotiation.snapshot();
            if (negotiation.state() !== "open" || now.currentProposal?.id !== current.id) {
              return fail("The negotiation moved on while your user was deciding; nothing was accepted.");
            }
          }
          const escrow = escrowPreferenceProblem(current, profile);
          if (escrow) return fail(`Refused: ${escrow}. Counter with those items in escrow instead.`);
          const afford = await affordability(current);
          if (afford) return afford;
        }
        try {
          negotiation.accept(deps.userId, input.reason);
        } catch (err) {
          return moveFailed(err);
        }
        return ok(`You accepted: ${describeProposal(current, deps.userId)}`);
      }
    }
  }

  /**
   * Asks the person before committing them above their max auto-approve, and waits for the answer
   * (the negotiation's round timeout still runs). Approved: the agent may go on with these terms,
   * and with any lower total in the same negotiation without asking again. Declined: the agent
   * walks away and the negotiation ends. A limit set in another currency allows nothing in this
   * one, so the request says 0. Without a way to ask, the terms are refused.
   */
  async function seekApproval(proposal: Proposal, problem: string, negotiationId: string): Promise<{ approved: true } | { result: ToolResult }> {
    const profile = deps.profile();
    const limitCurrency = profile.currency || proposal.currency;
    if (!deps.requestApproval) return { result: needsApproval(problem) };
    const granted = approvedUpTo.get(negotiationId);
    if (granted && granted.currency === proposal.currency && proposal.totalMinor <= granted.amountMinor) return { approved: true };
    notify(AgentMessageKind.TEXT, `Approval needed: ${problem}. Approve or decline it on your panel; I am waiting for you.`);
    const outcome = await deps.requestApproval({
      negotiationId,
      summary: approvalSummary(proposal),
      amountMinor: proposal.totalMinor,
      limitMinor: limitCurrency === proposal.currency ? profile.maxAutoApproveMinor : 0n,
      currency: proposal.currency,
    });
    switch (outcome) {
      case "approved":
        approvedUpTo.set(negotiationId, { amountMinor: proposal.totalMinor, currency: proposal.currency });
        return { approved: true };
      case "declined": {
        const negotiation = session();
        if (negotiation?.id === negotiationId && negotiation.state() === "open") {
          try {
            negotiation.reject(deps.userId, "My user declined these terms.");
          } catch (err) {
            return { result: moveFailed(err) };
          }
        }
        return {
          result: ok(`Your user declined paying ${money(proposal.totalMinor, proposal.currency)}, so you rejected it and the negotiation is over. Make no further offers.`),
        };
      }
      case "expired":
        return { result: fail("The negotiation ended before your user answered the approval request; nothing was agreed.") };
    }
  }

  /** The commitment in the person's words: "Pay £450.00 to Sam for Gutter repair". */
  function approvalSummary(proposal: Proposal): string {
    const items = proposal.lineItems.map((item) => item.description).join(", ");
    const what = items.length > 300 ? `${items.slice(0, 297)}…` : items;
    return `Pay ${money(proposal.totalMinor, proposal.currency)} to ${deps.peer.displayName || "the other person"} for ${what}`;
  }

  /** Applies the payer's escrow preference and limit to an offer the agent is about to make. */
  async function prepareAsPayer(
    proposal: Proposal,
    notes: string[],
    negotiationId: string,
  ): Promise<{ proposal: Proposal; notes: string[] } | { result: ToolResult }> {
    if (proposal.clientUserId !== deps.userId) return { proposal, notes };
    const profile = deps.profile();
    const applied = applyEscrowPreference(proposal, profile);
    if (applied.moved.length > 0) notes.push(`Moved to escrow per your user's escrow preference: ${applied.moved.join(", ")}.`);
    const limit = payerLimitProblem(applied.proposal, profile);
    if (limit) {
      const approval = await seekApproval(applied.proposal, limit, negotiationId);
      if ("result" in approval) return approval;
      notes.push(`Your user approved paying ${money(applied.proposal.totalMinor, applied.proposal.currency)}.`);
    }
    const invalid = validateProposal(applied.proposal, [deps.userId, deps.peer.userId]);
    if (invalid) return { result: fail(`Proposal invalid: ${invalid}`) };
    return { proposal: applied.proposal, notes };
  }

  /** Refuses acceptance when the bank says the payer cannot cover the total. */
  async function affordability(proposal: Proposal): Promise<ToolResult | undefined> {
    if (!deps.bank) return undefined;
    try {
      const balance = await deps.bank.getBalance();
      if (balance.currency !== proposal.currency) return undefined; // Cannot compare: the limit check stands alone.
      if (balance.balanceMinor < proposal.totalMinor) {
        const problem = `your balance of ${money(balance.balanceMinor, balance.currency)} does not cover ${money(proposal.totalMinor, proposal.currency)}`;
        notify(AgentMessageKind.TEXT, `Not affordable: ${problem}. I have not accepted.`, "", true);
        return fail(`Refused: not affordable (${problem}).`);
      }
      return undefined;
    } catch (err) {
      return fail(`Refused: could not check your user's balance before accepting. ${bankMessage(err)}`);
    }
  }

  function offerMade(proposal: Proposal, notes: string[]): string {
    const state = session()?.snapshot();
    const offers = state?.rounds.filter((r) => r.proposal !== undefined).length ?? 0;
    const rounds = state ? ` (offer ${offers} of at most ${state.maxRounds})` : "";
    return [`Offer sent${rounds}: ${describeProposal(proposal, deps.userId)}`, ...notes].join("\n");
  }

  function moveFailed(err: unknown): ToolResult {
    if (err instanceof NegotiationMoveError) return fail(`The negotiation refused the move: ${err.message}`);
    deps.log.error({ err, roomId: deps.roomId, userId: deps.userId }, "negotiation move failed unexpectedly");
    return fail("The move failed because of an internal error.");
  }

  async function runCheckBalance(): Promise<ToolResult> {
    if (!deps.bank) return fail("No bank is connected for your user, so the balance cannot be checked.");
    try {
      const balance = await deps.bank.getBalance();
      return ok(`Balance: ${money(balance.balanceMinor, balance.currency)} (${balance.currency}).`);
    } catch (err) {
      return fail(bankMessage(err));
    }
  }

  async function runRecentTransactions(limit: number): Promise<ToolResult> {
    if (!deps.bank) return fail("No bank is connected for your user, so transactions cannot be read.");
    try {
      const list = await deps.bank.recentTransactions(limit);
      if (list.length === 0) return ok("No recent transactions.");
      const lines = list.map(
        (t) => `${new Date(t.createdAtMs).toISOString().slice(0, 10)} ${money(t.amountMinor, t.currency)} ${t.description}`,
      );
      return ok(lines.join("\n"));
    } catch (err) {
      return fail(bankMessage(err));
    }
  }

  async function runDraft(title: string | undefined): Promise<ToolResult> {
    const current = session()?.snapshot().currentProposal;
    if (!current) return fail("There is no offer on the table to draft from.");
    const self = deps.profile();
    const parties = [
      create(PartySchema, {
        userId: deps.userId,
        displayName: self.displayName || deps.userId,
        role: current.providerUserId === deps.userId ? PartyRole.PROVIDER : PartyRole.CLIENT,
      }),
      create(PartySchema, {
        userId: deps.peer.userId,
        displayName: deps.peer.displayName || deps.peer.userId,
        role: current.providerUserId === deps.peer.userId ? PartyRole.PROVIDER : PartyRole.CLIENT,
      }),
    ];
    const draft = draftFromTemplate({ proposal: current, parties, conversation: [] });
    return ok(`PREVIEW (not binding): ${title?.trim() || draft.title}\n\n${draft.text}`);
  }

  return {
    definitions: () =>
      specs.map((s) => ({ name: s.name, description: s.description, input_schema: toJsonSchema(s.schema) as ToolDefinition["input_schema"] })),
    async call(name, input) {
      const spec = specs.find((s) => s.name === name);
      if (!spec) {
        const result = fail(`Unknown tool "${name}". Available: ${specs.map((s) => s.name).join(", ")}.`);
        notify(AgentMessageKind.TOOL_RESULT, result.content, name, true);
        return result;
      }
      const errors = validateInput(spec.schema, input);
      if (errors.length > 0) {
        const result = fail(`Invalid input: ${errors.join("; ")}`);
        notify(AgentMessageKind.TOOL_CALL, `${spec.name} (invalid input)`, spec.name);
        notify(AgentMessageKind.TOOL_RESULT, result.content, spec.name, true);
        return result;
      }
      notify(AgentMessageKind.TOOL_CALL, spec.describeCall(input), spec.name);
      let result: ToolResult;
      try {
        result = await spec.run(input);
      } catch (err) {
        deps.log.error({ err, tool: spec.name, roomId: deps.roomId, userId: deps.userId }, "tool failed unexpectedly");
        result = fail("The tool failed because of an internal error.");
      }
      notify(AgentMessageKind.TOOL_RESULT, result.content, spec.name, result.isError);
      return result;
    },
  };
}

function ok(content: string): ToolResult {
  return { content, isError: false };
}

function fail(content: string): ToolResult {
  return { content, isError: true };
}

function summariseInput(input: ProposalInput): string {
  const count = input.line_items.length;
  return `${count} item${count === 1 ? "" : "s"} in ${input.currency}: ${input.summary}`;
}

/** Words for a BankError (or anything else a bank call threw), fit to show a person. */
export function bankMessage(err: unknown): string {
  if (err instanceof BankError) {
    switch (err.code) {
      case "unauthorized":
        return `Your bank refused the connection (the access token is missing or expired); reconnect your bank. ${err.message}`;
      case "forbidden":
        return `Your bank has not allowed access yet; approve it in your banking app. ${err.message}`;
      case "unavailable":
        return `Your bank could not be reached just now; try again shortly. ${err.message}`;
      case "bad_response":
        return `Your bank sent an answer that could not be read. ${err.message}`;
    }
  }
  return "Your bank could not be asked because of an internal error.";
}

/**
 * Builds a Proposal from tool input: resolves amounts (range → max, quantity × unit price),
 * fills ids and default milestones, and sets provider and client from `my_role`.
 * Returns what is wrong instead when the input is inconsistent.
 */
export function buildProposal(
  input: ProposalInput,
  deps: Pick<AgentDeps, "userId" | "peer">,
): { proposal: Proposal; notes: string[] } | { error: string } {
  if (!isSupportedCurrency(input.currency)) return { error: `currency ${input.currency} is not supported` };
  const notes: string[] = [];
  const items: LineItem[] = [];
  const ids = new Set<string>();
  for (const [index, raw] of input.line_items.entries()) {
    const where = `line_items[${index}]`;
    const id = raw.id?.trim() || `item-${index + 1}`;
    if (ids.has(id)) return { error: `${where}.id "${id}" is used twice` };
    ids.add(id);
    const quantity = raw.quantity ?? 1;
    let amount: bigint;
    let unitPrice: bigint;
    let range: { minMinor: bigint; maxMinor: bigint } | undefined;
    if (raw.range) {
      if (raw.range.min_minor > raw.range.max_minor) return { error: `${where}.range.min_minor must not exceed max_minor` };
      range = { minMinor: BigInt(raw.range.min_minor), maxMinor: BigInt(raw.range.max_minor) };
      amount = range.maxMinor;
      if (raw.amount_minor !== undefined && BigInt(raw.amount_minor) !== amount) {
        return { error: `${where}.amount_minor must equal range.max_minor (${raw.range.max_minor}) for a ranged item` };
      }
    } else if (raw.amount_minor !== undefined) {
      amount = BigInt(raw.amount_minor);
    } else if (raw.unit_price_minor !== undefined) {
      amount = BigInt(raw.unit_price_minor) * BigInt(quantity);
    } else {
      return { error: `${where} needs amount_minor, unit_price_minor or range` };
    }
    if (raw.unit_price_minor !== undefined) {
      unitPrice = BigInt(raw.unit_price_minor);
      if (unitPrice * BigInt(quantity) !== amount) {
        return { error: `${where}: quantity × unit_price_minor (${quantity} × ${raw.unit_price_minor}) must equal the amount ${amount}` };
      }
    } else if (amount % BigInt(quantity) === 0n) {
      unitPrice = amount / BigInt(quantity);
    } else {
      return { error: `${where}: amount ${amount} cannot be split evenly into ${quantity} units; give unit_price_minor` };
    }
    let kind = raw.kind === "escrow" ? LineItemKind.ESCROW : raw.kind === "conditional" ? LineItemKind.CONDITIONAL : LineItemKind.IMMEDIATE;
    if (range && kind === LineItemKind.IMMEDIATE) {
      // A price known only later cannot be paid now: it is held instead.
      kind = LineItemKind.ESCROW;
      notes.push(`${id} has a price range, so it is held in escrow.`);
    }
    if (kind === LineItemKind.CONDITIONAL && !raw.condition?.trim()) {
      return { error: `${where}.condition is required for a conditional item` };
    }
    const item = create(LineItemSchema, {
      id,
      description: raw.description.trim(),
      kind,
      amountMinor: amount,
      range: range ? create(PriceRangeSchema, range) : undefined,
      quantity,
      unitPriceMinor: unitPrice,
      unit: raw.unit?.trim() ?? "",
      pricingFactors: (raw.pricing_factors ?? []).map((f) =>
        create(PricingFactorSchema, { name: f.name, description: f.description ?? "", impactMinor: BigInt(f.impact_minor) }),
      ),
      milestone: raw.milestone
        ? create(MilestoneTermsSchema, {
            title: raw.milestone.title,
            deliverables: raw.milestone.deliverables ?? [],
            verificationMethod: raw.milestone.verification_method ?? "",
            completionCriteria: raw.milestone.completion_criteria ?? "",
          })
        : undefined,
      condition: raw.condition?.trim() ?? "",
    });
    if (item.kind !== LineItemKind.IMMEDIATE && !item.milestone) item.milestone = defaultMilestone(item.description);
    items.push(item);
  }
  const self = deps.userId;
  const peer = deps.peer.userId;
  const proposal = create(ProposalSchema, {
    summary: input.summary.trim(),
    currency: input.currency,
    totalMinor: items.reduce((sum, item) => sum + item.amountMinor, 0n),
    lineItems: items,
    providerUserId: input.my_role === "provider" ? self : peer,
    clientUserId: input.my_role === "provider" ? peer : self,
  });
  const invalid = validateProposal(proposal, [self, peer]);
  if (invalid) return { error: `Proposal invalid: ${invalid}` };
  return { proposal, notes };
}

/** Milestone terms for an item moved to escrow without its own. */
export function defaultMilestone(description: string) {
  const title = description.length > 200 ? description.slice(0, 197) + "…" : description;
  return create(MilestoneTermsSchema, {
    title,
    deliverables: [description],
    verificationMethod: "Both parties confirm in the app",
    completionCriteria: "The work is done as described and both parties have confirmed it",
  });
}

/** Items that must be held under the payer's preference (ALWAYS: all; ABOVE_THRESHOLD: above it). */
function mustBeHeld(item: LineItem, profile: AgentProfile): boolean {
  switch (profile.escrowPreference) {
    case EscrowPreference.ALWAYS:
      return true;
    case EscrowPreference.NEVER:
      return false;
    case EscrowPreference.ABOVE_THRESHOLD:
      return item.amountMinor > profile.escrowThresholdMinor;
    case EscrowPreference.UNSPECIFIED:
    default:
      // Unspecified is "above threshold", but an unset threshold (0) is not a wish to hold everything.
      return profile.escrowThresholdMinor > 0n && item.amountMinor > profile.escrowThresholdMinor;
  }
}

/**
 * Applies the payer's escrow preference to an offer: immediate items that should be held become
 * escrow items with milestone terms. Returns the new proposal and the ids moved.
 */
export function applyEscrowPreference(proposal: Proposal, payerProfile: AgentProfile): { proposal: Proposal; moved: string[] } {
  const moved: string[] = [];
  const lineItems = proposal.lineItems.map((item) => {
    if (item.kind !== LineItemKind.IMMEDIATE || !mustBeHeld(item, payerProfile)) return item;
    moved.push(item.id);
    return create(LineItemSchema, { ...item, kind: LineItemKind.ESCROW, milestone: item.milestone ?? defaultMilestone(item.description) });
  });
  return { proposal: create(ProposalSchema, { ...proposal, lineItems }), moved };
}

/** Why the payer's preference forbids accepting `proposal` as it is, or undefined. */
export function escrowPreferenceProblem(proposal: Proposal, payerProfile: AgentProfile): string | undefined {
  const ids = applyEscrowPreference(proposal, payerProfile).moved;
  if (ids.length === 0) return undefined;
  return `your user wants ${ids.join(", ")} held in escrow, but the offer pays ${ids.length === 1 ? "it" : "them"} immediately`;
}

/**
 * Why the paying side may not agree to `proposal` without its user, or undefined: the total
 * (escrow counted at its maximum) above `max_auto_approve_minor`, or a currency the limit is not in.
 */
export function payerLimitProblem(proposal: Proposal, payerProfile: AgentProfile): string | undefined {
  const limitCurrency = payerProfile.currency || proposal.currency;
  if (limitCurrency !== proposal.currency) {
    return `the deal is in ${proposal.currency} but your auto-approve limit is set in ${limitCurrency}`;
  }
  if (payerProfile.maxAutoApproveMinor <= 0n) {
    return `paying ${formatMoney(proposal.totalMinor, proposal.currency)} needs your approval (your auto-approve limit is zero)`;
  }
  if (proposal.totalMinor > payerProfile.maxAutoApproveMinor) {
    return `${formatMoney(proposal.totalMinor, proposal.currency)} is above your auto-approve limit of ${formatMoney(payerProfile.maxAutoApproveMinor, proposal.currency)}`;
  }
  return undefined;
}

/** A proposal in words from one user's point of view, for tool results and prompts. */
export function describeProposal(proposal: Proposal, viewerUserId: string): string {
  const m = (minor: bigint) => formatMoney(minor, proposal.currency);
  const side = proposal.providerUserId === viewerUserId ? "your user provides and is paid" : "your user pays";
  const items = proposal.lineItems.map((item) => {
    const kind = item.kind === LineItemKind.ESCROW ? "escrow" : item.kind === LineItemKind.CONDITIONAL ? "conditional" : "immediate";
    const price = item.range
      ? `${m(item.range.minMinor)}–${m(item.range.maxMinor)} (held at ${m(item.range.maxMinor)})`
      : item.quantity > 1
        ? `${item.quantity} ${item.unit || "units"} × ${m(item.unitPriceMinor)} = ${m(item.amountMinor)}`
        : m(item.amountMinor);
    return `[${item.id}] ${item.description}: ${price}, ${kind}`;
  });
  return `${m(proposal.totalMinor)} total in ${proposal.currency} (${side}); ${items.join("; ")}. Summary: ${proposal.summary}`;
}
