import { LineItemKind, type LineItem, type Proposal } from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import type { ContractDrafter, DraftInput } from "./contract-drafter.js";
import { formatMoney } from "../core/money.js";

/**
 * The embedded contract drafter: a deterministic template. The same terms and parties always
 * give the same text, so the same hash.
 */
export function createTemplateDrafter(): ContractDrafter {
  return { draft: async (input) => draftFromTemplate(input) };
}

/** Format characters that reorder text on screen (bidi embeddings, overrides, isolates and marks). */
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/** Control characters, line and paragraph separators: what could start a new line of the contract. */
const LINE_BREAKERS = /[\p{Cc}\u2028\u2029]/gu;

/**
 * Quotes what people (or their agents) said, on one line: line breaks and controls become spaces,
 * bidi controls go, and the result is a JSON string literal, so no input can pass as a clause.
 */
export function quoteUserText(text: string): string {
  return JSON.stringify(text.replace(BIDI_CONTROLS, "").replace(LINE_BREAKERS, " ").replace(/\s+/g, " ").trim());
}

/** What kind of deal a proposal is, for its heading and the parties' names. */
export type DealKind = "sale" | "lessons" | "service";

/**
 * Reads the kind of deal from the proposal's own words: a sale of goods ("Sale of …", sold,
 * bought), lessons (lessons, tuition, tutoring, classes), else a service.
 */
export function dealKindOf(proposal: Pick<Proposal, "summary" | "lineItems">): DealKind {
  const words = `${proposal.summary} ${proposal.lineItems.map((i) => `${i.description} ${i.unit}`).join(" ")}`.toLowerCase();
  if (/^\s*sale of\b/.test(proposal.summary.toLowerCase()) || /\b(?:sale|sell|sold|selling|purchase|bought|second-hand|used)\b/.test(proposal.summary.toLowerCase())) return "sale";
  if (/\b(?:lessons?|tuition|tutoring|tutor|classes|coaching)\b/.test(words)) return "lessons";
  return "service";
}

/** Heading and the two parties' names per kind: a sale of goods is no service agreement. */
const KIND_WORDS: Record<DealKind, { heading: string; payee: string; payer: string }> = {
  sale: { heading: "SALE OF GOODS AGREEMENT", payee: "Seller", payer: "Buyer" },
  lessons: { heading: "LESSONS AGREEMENT", payee: "Teacher", payer: "Student" },
  service: { heading: "SERVICE AGREEMENT", payee: "Provider", payer: "Client" },
};

/** Renders the template synchronously (also the fallback when a remote drafter fails). */
export function draftFromTemplate({ proposal, parties, conversation }: DraftInput): { title: string; text: string } {
  const provider = parties.find((p) => p.role === PartyRole.PROVIDER);
  const client = parties.find((p) => p.role === PartyRole.CLIENT);
  const money = (minor: bigint) => formatMoney(minor, proposal.currency);
  const q = quoteUserText;
  const kind = KIND_WORDS[dealKindOf(proposal)];
  const fallbackTitle = kind.heading[0] + kind.heading.slice(1).toLowerCase();
  const title = firstSentence(proposal.summary.replace(BIDI_CONTROLS, "").replace(LINE_BREAKERS, " ")) || fallbackTitle;
  const lines: string[] = [];
  // Everything people or agents wrote is quoted (q); only the template's own words are bare.
  lines.push(`${kind.heading}: ${q(title)}`, "");
  lines.push("Parties", `- ${kind.payee}: ${provider ? q(provider.displayName) : "?"} (user ${provider?.userId ?? "?"})`);
  lines.push(`- ${kind.payer}: ${client ? q(client.displayName) : "?"} (user ${client?.userId ?? "?"})`, "");
  lines.push("1. Scope", `  ${q(proposal.summary || title)}`, "");
  lines.push(`2. Price: ${money(proposal.totalMinor)} in total (${proposal.currency}), made up of:`);
  proposal.lineItems.forEach((item, i) => lines.push(...describeItem(item, i + 1, money)));
  lines.push("");
  lines.push("3. Payment");
  lines.push(`- Immediate items are paid by the ${kind.payer} to the ${kind.payee} when both parties have signed.`);
  lines.push(`- Escrow and conditional items are authorised from the ${kind.payer} at their maximum when both parties have signed,`);
  lines.push(`  and captured when both parties confirm the milestone (for a price range, at the amount the ${kind.payee}`);
  lines.push(`  proposes within the range and the ${kind.payer} approves). The ${kind.payee} may release a hold at any time.`);
  lines.push("");
  lines.push("4. Record");
  lines.push("- This agreement was negotiated by the parties' agents from a spoken conversation and takes effect when");
  lines.push("  both parties have signed this exact text (identified by its SHA-256 hash).");
  const quotes = conversation.filter((e) => e.isFinal).slice(-6);
  if (quotes.length > 0) {
    lines.push("- Conversation excerpts:");
    for (const entry of quotes) {
      const who = parties.find((p) => p.userId === entry.speakerUserId)?.displayName ?? entry.speakerUserId;
      lines.push(`  ${q(who)}: ${q(entry.text)}`);
    }
  }
  lines.push("", `Proposal ${proposal.id}`);
  return { title, text: lines.join("\n") + "\n" };
}

function describeItem(item: LineItem, n: number, money: (minor: bigint) => string): string[] {
  const kind =
    item.kind === LineItemKind.ESCROW ? "escrow" : item.kind === LineItemKind.CONDITIONAL ? "conditional" : "paid on signing";
  const price = item.range
    ? `between ${money(item.range.minMinor)} and ${money(item.range.maxMinor)}`
    : item.quantity > 1
      ? `${item.quantity} ${item.unit ? quoteUserText(item.unit) : "units"} × ${money(item.unitPriceMinor)} = ${money(item.amountMinor)}`
      : money(item.amountMinor);
  const q = quoteUserText;
  const out = [`  ${n}. ${q(item.description)}: ${price} (${kind})`];
  for (const factor of item.pricingFactors) out.push(`     - ${q(factor.name)}: ${money(factor.impactMinor)}${factor.description ? ` (${q(factor.description)})` : ""}`);
  if (item.condition) out.push(`     Condition: ${q(item.condition)}`);
  if (item.milestone) {
    out.push(`     Milestone: ${q(item.milestone.title)}`);
    if (item.milestone.deliverables.length) out.push(`     Deliverables: ${item.milestone.deliverables.map(q).join("; ")}`);
    if (item.milestone.verificationMethod) out.push(`     Verified by: ${q(item.milestone.verificationMethod)}`);
    if (item.milestone.completionCriteria) out.push(`     Complete when: ${q(item.milestone.completionCriteria)}`);
  }
  return out;
}

function firstSentence(text: string): string {
  const s = text.trim().split(/(?<=[.!?])\s/)[0] ?? "";
  return s.length > 80 ? s.slice(0, 77) + "…" : s.replace(/[.!?]$/, "");
}
