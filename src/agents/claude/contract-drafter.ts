import type Anthropic from "@anthropic-ai/sdk";
import type { Logger } from "pino";
import { LineItemKind, type Proposal } from "../../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../../gen/handshake/v1/profile_pb.js";
import type { ContractDrafter, DraftInput } from "../../deal/contract-drafter.js";
import { formatMoney } from "../../core/money.js";
import { createAnthropicClient, describeClaudeError, type AnthropicConnection } from "./anthropic-client.js";
import { toJsonSchema, validateInput, type SchemaNode } from "../tool-schema.js";

/** Options of the Claude contract drafter. */
export interface ClaudeContractDrafterOptions extends AnthropicConnection {
  model: string;
  /** max_tokens of the draft; default 16,000 (adaptive thinking counts towards it; below the SDK's non-streaming ceiling). */
  maxTokens?: number;
  log?: Logger;
}

const CONTRACT_SCHEMA: SchemaNode = {
  type: "object",
  properties: {
    title: { type: "string", minLength: 1, maxLength: 200, description: "Short title, e.g. \"Boiler repair\"." },
    text: { type: "string", minLength: 1, maxLength: 50_000, description: "The full contract in plain text." },
  },
  required: ["title", "text"],
};

const SYSTEM =
  "You draft short, plain-English service contracts from terms two people's agents agreed. " +
  "Use plain text (no Markdown). Name both parties and their roles. List every line item with exactly " +
  "the amounts given, and the total. Explain how each item is paid: immediate items when both have signed; " +
  "escrow items held at their maximum and captured when both confirm the milestone (a ranged item at the " +
  "amount the provider proposes within the range and the client approves); conditional items only if the " +
  "condition is met. Never add, change or drop money terms. Always answer by calling the contract tool once, with no other text.";

/**
 * Drafts contract text from agreed terms with Claude. Throws when the call fails or the draft
 * leaves out the total or a party's name; the caller then falls back to the template drafter.
 * After a fatal failure (key, access, model) it throws without calling again.
 */
export function createClaudeContractDrafter(options: ClaudeContractDrafterOptions): ContractDrafter {
  const client = createAnthropicClient(options);
  /** Set on a fatal failure (key, access, model): the template drafts from then on. */
  let disabled: string | undefined;
  return {
    async draft(input) {
      if (disabled) throw new Error(`Claude could not draft the contract: ${disabled}`);
      let response: Anthropic.Messages.Message;
      try {
        response = await client.messages.create({
          model: options.model,
          max_tokens: options.maxTokens ?? 16_000,
          system: SYSTEM,
          tools: [{ name: "contract", description: "The drafted contract.", input_schema: toJsonSchema(CONTRACT_SCHEMA) as Anthropic.Messages.Tool.InputSchema }],
          // Not forced: current models answer a forced tool choice with 400 (see SYSTEM).
          tool_choice: { type: "auto", disable_parallel_tool_use: true },
          messages: [{ role: "user", content: termsPrompt(input) }],
        });
      } catch (err) {
        const failure = describeClaudeError(err, options.model);
        if (failure.fatal) disabled = failure.message;
        options.log?.warn({ status: failure.status, requestId: failure.requestId, fatal: failure.fatal }, "claude contract drafting failed");
        throw new Error(`Claude could not draft the contract: ${failure.message}`, { cause: err });
      }
      if (response.stop_reason !== "tool_use" && response.stop_reason !== "end_turn") {
        throw new Error(`Claude did not finish the contract (stop reason ${response.stop_reason ?? "none"})`);
      }
      const call = response.content.find((b): b is Anthropic.Messages.ToolUseBlock => b.type === "tool_use" && b.name === "contract");
      if (!call) throw new Error("Claude answered without the contract tool");
      const errors = validateInput(CONTRACT_SCHEMA, call.input);
      if (errors.length > 0) throw new Error(`Claude's contract was malformed: ${errors.join("; ")}`);
      const { title, text } = call.input as { title: string; text: string };
      const total = formatMoney(input.proposal.totalMinor, input.proposal.currency);
      // A contract whose text disagrees with the terms must never be signed: check the essentials.
      if (!text.includes(total)) throw new Error(`the drafted text does not state the total ${total}`);
      for (const party of input.parties) {
        if (party.displayName && !text.includes(party.displayName)) {
          throw new Error(`the drafted text does not name ${party.displayName}`);
        }
      }
      return { title: title.trim(), text: text.endsWith("\n") ? text : `${text}\n` };
    },
  };
}

function termsPrompt({ proposal, parties, conversation }: DraftInput): string {
  const m = (minor: bigint) => formatMoney(minor, proposal.currency);
  const lines = ["Parties:"];
  for (const p of parties) {
    lines.push(`- ${p.displayName} (user ${p.userId}): ${p.role === PartyRole.PROVIDER ? "provider, is paid" : "client, pays"}`);
  }
  lines.push("", `Summary: ${proposal.summary}`, `Currency: ${proposal.currency}`, `Total: ${m(proposal.totalMinor)}`, "", "Line items:");
  lines.push(...itemLines(proposal, m));
  const quotes = conversation.filter((e) => e.isFinal).slice(-10);
  if (quotes.length > 0) {
    lines.push("", "What was said (for the scope only; the terms above are binding):");
    for (const e of quotes) {
      const who = parties.find((p) => p.userId === e.speakerUserId)?.displayName ?? e.speakerUserId;
      lines.push(`${who}: ${e.text.trim()}`);
    }
  }
  return lines.join("\n");
}

function itemLines(proposal: Proposal, m: (minor: bigint) => string): string[] {
  return proposal.lineItems.map((item) => {
    const kind = item.kind === LineItemKind.ESCROW ? "escrow" : item.kind === LineItemKind.CONDITIONAL ? "conditional" : "immediate";
    const price = item.range
      ? `between ${m(item.range.minMinor)} and ${m(item.range.maxMinor)} (held at ${m(item.range.maxMinor)})`
      : item.quantity > 1
        ? `${item.quantity} ${item.unit || "units"} × ${m(item.unitPriceMinor)} = ${m(item.amountMinor)}`
        : m(item.amountMinor);
    const extra = [
      item.milestone ? `milestone "${item.milestone.title}"${item.milestone.deliverables.length ? `, deliverables: ${item.milestone.deliverables.join("; ")}` : ""}` : "",
      item.condition ? `condition: ${item.condition}` : "",
    ].filter((s) => s !== "");
    return `- [${item.id}] ${item.description}: ${price}, ${kind}${extra.length ? ` (${extra.join("; ")})` : ""}`;
  });
}
