import type { PanelEvent, SameSideWarning } from "../../gen/handshake/v1/events_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { AgentMessageKind, ApprovalStatus, ExecutionStepStatus, SessionStatus } from "../../gen/handshake/v1/events_pb.js";
import {
  ContractStatus,
  EscrowHoldStatus,
  LineItemKind,
  MilestoneStatus,
  NegotiationStatus,
  PaymentStatus,
  RoundAction,
  type LineItem,
  type Proposal,
} from "../../gen/handshake/v1/deal_pb.js";
import { TriggerKind } from "../../gen/handshake/v1/transcript_pb.js";

/*
 * Words for what happens in a room. Pure and free of Node APIs, so the browser app bundles the
 * same wording as the command line.
 */

/** Digits after the decimal point per ISO 4217 code; 2 when not listed. */
const MINOR_DIGITS: Record<string, number> = { JPY: 0, KRW: 0, ISK: 0, CLP: 0, VND: 0, BHD: 3, KWD: 3, OMR: 3, JOD: 3, TND: 3 };
const SYMBOLS: Record<string, string> = { GBP: "£", EUR: "€", USD: "$", JPY: "¥" };

/** Minor-unit digits of a currency (2 for GBP, 0 for JPY). */
export function minorDigitsOf(currency: string): number {
  return MINOR_DIGITS[currency.toUpperCase()] ?? 2;
}

/** Formats minor units exactly, without floats: `formatMoney(12050n, "GBP")` is "£120.50". */
export function formatMoney(amountMinor: bigint, currency: string): string {
  const digits = minorDigitsOf(currency);
  const negative = amountMinor < 0n;
  const abs = negative ? -amountMinor : amountMinor;
  const scale = 10n ** BigInt(digits);
  const major = (abs / scale).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const minor = digits > 0 ? "." + (abs % scale).toString().padStart(digits, "0") : "";
  const symbol = SYMBOLS[currency.toUpperCase()];
  const body = symbol ? `${symbol}${major}${minor}` : `${major}${minor} ${currency.toUpperCase()}`;
  return negative ? `-${body}` : body;
}

/**
 * Parses a decimal amount typed by a person ("120", "120.5", "1,250.00") into minor units,
 * exactly. Throws on anything else, or on more decimals than the currency has.
 */
export function parseMoney(text: string, currency: string): bigint {
  const cleaned = text.trim().replace(/^[£€$¥]/, "").replace(/,/g, "");
  const match = /^(\d+)(?:\.(\d+))?$/.exec(cleaned);
  if (!match) throw new Error(`"${text}" is not an amount`);
  const digits = minorDigitsOf(currency);
  const fraction = match[2] ?? "";
  if (fraction.length > digits) throw new Error(`"${text}" has more than ${digits} decimals for ${currency}`);
  return BigInt(match[1] ?? "0") * 10n ** BigInt(digits) + BigInt(fraction.padEnd(digits, "0") || "0");
}

/** Lower-case enum label without its prefix, e.g. `AWAITING_SIGNATURES` → "awaiting signatures". */
function label(name: string | undefined): string {
  return (name ?? "unknown").toLowerCase().replace(/_/g, " ");
}

/** A contract status in words. */
export function contractStatusText(status: ContractStatus): string {
  return label(ContractStatus[status]);
}
/** A negotiation status in words. */
export function negotiationStatusText(status: NegotiationStatus): string {
  return label(NegotiationStatus[status]);
}
/** A payment status in words. */
export function paymentStatusText(status: PaymentStatus): string {
  return label(PaymentStatus[status]);
}
/** A hold status in words. */
export function holdStatusText(status: EscrowHoldStatus): string {
  return label(EscrowHoldStatus[status]);
}
/** A milestone status in words. */
export function milestoneStatusText(status: MilestoneStatus): string {
  return label(MilestoneStatus[status]);
}
/** A session status in words. */
export function sessionStatusText(status: SessionStatus): string {
  return label(SessionStatus[status]);
}
/** A negotiation move in words. */
export function roundActionText(action: RoundAction): string {
  return label(RoundAction[action]);
}
/** A line item kind in words ("immediate", "escrow", "conditional"). */
export function lineItemKindText(kind: LineItemKind): string {
  return label(LineItemKind[kind]);
}

/** One line item: "Boiler repair — £120.00 (immediate)", with its range and quantity when set. */
export function describeLineItem(item: LineItem, currency: string): string {
  const range = item.range ? ` range ${formatMoney(item.range.minMinor, currency)}–${formatMoney(item.range.maxMinor, currency)}` : "";
  const qty = item.quantity > 1 ? ` (${item.quantity} ${item.unit || "units"} × ${formatMoney(item.unitPriceMinor, currency)})` : "";
  return `${item.description} — ${formatMoney(item.amountMinor, currency)}${qty}${range} [${lineItemKindText(item.kind)}]`;
}

/** A proposal in one line: total and items. */
export function describeProposal(proposal: Proposal): string {
  const items = proposal.lineItems.map((i) => describeLineItem(i, proposal.currency)).join("; ");
  return `${formatMoney(proposal.totalMinor, proposal.currency)}: ${items}`;
}

/** Resolves a user id to a display name; falls back to the id. */
export type NameOf = (userId: string) => string;

/** A side of a deal as the join screen asks it: "paying" or "being paid". */
export function sideWords(role: PartyRole): string {
  return role === PartyRole.CLIENT ? "paying" : role === PartyRole.PROVIDER ? "being paid" : "on no side";
}

/**
 * The same-side warning as a sentence: "You and Sam are both set as paying — one of you should
 * switch", or that it is over. `nameOf` may answer "You" for the viewer, who is then named first.
 */
export function sameSideText(warning: SameSideWarning, nameOf: NameOf): string {
  const names = warning.userIds.map(nameOf).sort((a, b) => (a === "You" ? -1 : b === "You" ? 1 : 0));
  const who = names.length === 2 ? `${names[0]} and ${names[1]}` : names.join(", ");
  if (warning.cleared) return `${who} are on different sides now.`;
  return `${who} are both set as ${sideWords(warning.role)} — one of you should switch, or the deal will fail.`;
}

/**
 * A room event as one readable line, e.g. `[12] negotiation round 2: Sam counter £130.00: …`.
 * Returns the line without a trailing newline.
 */
export function describeEvent(event: PanelEvent, nameOf: NameOf): string {
  const prefix = `[${event.seq}]`;
  const e = event.event;
  switch (e.case) {
    case "roomStatus": {
      const people = e.value.participants
        .map((p) => `${p.displayName} (${sessionStatusText(p.sessionStatus)}${p.connected ? "" : ", away"}${p.muted ? ", muted" : ""})`)
        .join(", ");
      const trigger = e.value.triggerArmed ? `armed on "${e.value.triggerKeyword}"` : "not armed";
      return `${prefix} room ${e.value.roomId}: ${people || "empty"}; ${e.value.paired ? "paired" : "waiting"}; trigger ${trigger}`;
    }
    case "transcript":
      return `${prefix} ${nameOf(e.value.speakerUserId)}${e.value.isFinal ? "" : " (partial)"}: "${e.value.text}"`;
    case "trigger":
      return `${prefix} trigger (${label(TriggerKind[e.value.kind])}) by ${nameOf(e.value.speakerUserId)}: "${e.value.matchedText}"`;
    case "agentMessage": {
      const kind = e.value.kind === AgentMessageKind.TEXT ? "agent" : e.value.kind === AgentMessageKind.TOOL_CALL ? "agent tool call" : "agent tool result";
      const tool = e.value.toolName ? ` ${e.value.toolName}` : "";
      return `${prefix} ${kind}${tool}${e.value.isError ? " (error)" : ""} for ${nameOf(e.value.userId)}: ${e.value.text}`;
    }
    case "negotiation": {
      const n = e.value;
      const last = n.rounds.at(-1);
      const round = last
        ? ` round ${last.number}: ${nameOf(last.fromUserId)} ${roundActionText(last.action)}${last.proposal ? ` ${describeProposal(last.proposal)}` : ""}${last.reason ? ` — ${last.reason}` : ""}`
        : "";
      const end = n.endReason ? ` (${n.endReason})` : "";
      return `${prefix} negotiation ${negotiationStatusText(n.status)}${round}${end}`;
    }
    case "contract": {
      const c = e.value;
      const signed = c.signatures.map((s) => nameOf(s.userId)).join(", ");
      return `${prefix} contract "${c.title}" ${contractStatusText(c.status)}, sha256 ${c.textSha256}${signed ? `, signed by ${signed}` : ""}${c.terms ? `; ${describeProposal(c.terms)}` : ""}`;
    }
    case "executionStep": {
      const s = e.value;
      const status = label(ExecutionStepStatus[s.status]);
      return `${prefix} step ${s.step} ${status}${s.detail ? `: ${s.detail}` : ""}`;
    }
    case "payment": {
      const p = e.value;
      const why = p.failureReason ? ` (${p.failureReason})` : "";
      return `${prefix} payment ${formatMoney(p.amountMinor, p.currency)} ${nameOf(p.payerUserId)} → ${nameOf(p.payeeUserId)} ${paymentStatusText(p.status)}${why}`;
    }
    case "escrowHold": {
      const h = e.value;
      const captured = h.capturedMinor > 0n ? `, captured ${formatMoney(h.capturedMinor, h.currency)}` : "";
      const why = h.failureReason ? ` (${h.failureReason})` : "";
      return `${prefix} escrow hold ${formatMoney(h.amountMinor, h.currency)} from ${nameOf(h.payerUserId)} ${holdStatusText(h.status)}${captured}${why}`;
    }
    case "milestone": {
      const m = e.value;
      const proposed = m.proposedAmountMinor ? `, proposed ${formatMoney(m.proposedAmountMinor, m.currency)}` : "";
      const confirmed = [m.providerConfirmed ? "provider" : "", m.clientConfirmed ? "client" : ""].filter(Boolean).join("+");
      return `${prefix} milestone "${m.terms?.title ?? m.id}" ${milestoneStatusText(m.status)}${proposed}${confirmed ? `, confirmed by ${confirmed}` : ""} (${m.id})`;
    }
    case "approvalRequest":
      return `${prefix} approval ${label(ApprovalStatus[e.value.status])} for ${nameOf(e.value.userId)}: ${e.value.summary} (${e.value.id})`;
    case "gap":
      return `${prefix} events after seq ${e.value.afterSeq} up to ${e.value.lastMissingSeq} are no longer kept`;
    case "sameSide":
      return `${prefix} ${e.value.cleared ? "sides sorted" : "warning"}: ${sameSideText(e.value, nameOf)}`;
    case "paymentAction":
      return `${prefix} payment needs you (${e.value.kind}${e.value.declineCode ? `, ${e.value.declineCode}` : ""}): ${e.value.message}`;
    case "error":
      return `${prefix} error in ${e.value.stage} (${e.value.code}${e.value.retryable ? ", retrying" : ""}): ${e.value.message}`;
    case undefined:
      return `${prefix} (empty event)`;
  }
}
