import {
  ContractStatus,
  EscrowHoldStatus,
  MilestoneStatus,
  NegotiationStatus,
  PaymentStatus,
  RoundAction,
  type Contract,
  type EscrowHold,
  type Milestone,
  type Negotiation,
  type NegotiationRound,
  type Payment,
} from "../../../gen/handshake/v1/deal_pb.js";
import { ExecutionStepStatus, type ExecutionStep } from "../../../gen/handshake/v1/events_pb.js";
import type { TriggerEvent } from "../../../gen/handshake/v1/transcript_pb.js";
import { formatMoney } from "../../shared/format.js";
import { settledTotalOf } from "./contract-view.js";
import { h, type Child } from "./dom.js";
import { icon, type IconName } from "./icons.js";

/*
 * The deal as a timeline a person can read: what was said to start it, each offer and counter, the
 * contract, each signature and each movement of money, in words and with an icon per kind of step.
 * Tool calls and step names stay out; the contract itself opens in a sheet.
 */

/** Everything the timeline is drawn from, as the room last saw it. */
export interface TimelineState {
  trigger: TriggerEvent | undefined;
  negotiation: Negotiation | undefined;
  /** True while the agents are still talking (the room has an active negotiation). */
  negotiating: boolean;
  contract: Contract | undefined;
  payments: readonly Payment[];
  holds: readonly EscrowHold[];
  milestones: readonly Milestone[];
  steps: readonly ExecutionStep[];
}

/** How the timeline names people and what it can do. */
export interface TimelineDeps {
  /** "You", or the person's display name. */
  nameOf: (userId: string) => string;
  /** "Your agent", or "Sam's agent". */
  agentOf: (userId: string) => string;
  /** Opens the contract sheet. */
  openContract: () => void;
  /** This person's approval prompts, already built, shown after the offers they answer. */
  approvals: readonly HTMLElement[];
}

/** A name after a verb: "paid you", not "paid You". */
function object(nameOf: (id: string) => string, userId: string): string {
  const name = nameOf(userId);
  return name === "You" ? "you" : name;
}

type Tone = "info" | "good" | "warn" | "bad" | "busy";

function entry(kind: string, glyph: IconName, tone: Tone, title: Child, detail?: Child, atMs?: bigint, extra?: Child): HTMLElement {
  return h(
    "li",
    { class: `event tone-${tone}`, "data-kind": kind },
    h("span", { class: "icon" }, icon(glyph)),
    h(
      "div",
      { class: "body" },
      h("p", { class: "title" }, title, atMs ? h("time", { datetime: new Date(Number(atMs)).toISOString() }, clock(atMs)) : undefined),
      detail ? h("p", { class: "detail" }, detail) : undefined,
      extra,
    ),
  );
}

function clock(atMs: bigint): string {
  return new Date(Number(atMs)).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function roundWords(round: NegotiationRound, agent: string, first: boolean): { icon: IconName; tone: Tone; title: string } {
  const total = round.proposal ? formatMoney(round.proposal.totalMinor, round.proposal.currency) : "";
  switch (round.action) {
    case RoundAction.PROPOSE:
      return { icon: "chat", tone: "info", title: first ? `${agent} opened with ${total}` : `${agent} offered ${total}` };
    case RoundAction.COUNTER:
      return { icon: "swap", tone: "info", title: `${agent} countered with ${total}` };
    case RoundAction.ACCEPT:
      return { icon: "check", tone: "good", title: `${agent} accepted${total ? ` ${total}` : ""}` };
    case RoundAction.REJECT:
      return { icon: "cross", tone: "bad", title: `${agent} walked away` };
    default:
      return { icon: "chat", tone: "info", title: `${agent} replied` };
  }
}

function itemsInWords(round: NegotiationRound): string {
  const p = round.proposal;
  if (!p) return "";
  return p.lineItems.map((i) => `${i.description} ${formatMoney(i.amountMinor, p.currency)}`).join(" · ");
}

/** The negotiation's outcome in a few words, for the status pill. */
export function negotiationWords(status: NegotiationStatus): string {
  switch (status) {
    case NegotiationStatus.AGREED:
      return "agreed";
    case NegotiationStatus.REJECTED:
      return "no agreement";
    case NegotiationStatus.EXPIRED:
      return "ran out of time";
    default:
      return "negotiating";
  }
}

function holdWords(hold: EscrowHold, nameOf: (id: string) => string): { icon: IconName; tone: Tone; title: string } {
  const to = object(nameOf, hold.payeeUserId);
  const payer = object(nameOf, hold.payerUserId);
  const held = formatMoney(hold.amountMinor, hold.currency);
  const captured = formatMoney(hold.capturedMinor, hold.currency);
  const back = formatMoney(hold.amountMinor - hold.capturedMinor, hold.currency);
  switch (hold.status) {
    case EscrowHoldStatus.HELD:
      return { icon: "lock", tone: "info", title: `${held} from ${payer} is held in escrow` };
    case EscrowHoldStatus.CAPTURED:
      return {
        icon: "unlock",
        tone: "good",
        title: hold.capturedMinor < hold.amountMinor ? `${captured} released to ${to}, ${back} back to ${payer}` : `${captured} released to ${to}`,
      };
    case EscrowHoldStatus.RELEASED:
      return { icon: "undo", tone: "warn", title: `${held} returned to ${payer}` };
    case EscrowHoldStatus.EXPIRED:
      return { icon: "clock", tone: "warn", title: `The hold on ${held} expired and went back to ${payer}` };
    case EscrowHoldStatus.FAILED:
      return { icon: "alert", tone: "bad", title: `Holding ${held} failed${hold.failureReason ? `: ${hold.failureReason}` : ""}` };
    default:
      return { icon: "clock", tone: "busy", title: `Holding ${held} in escrow…` };
  }
}

function paymentWords(p: Payment, nameOf: (id: string) => string): { icon: IconName; tone: Tone; title: string } {
  const money = formatMoney(p.amountMinor, p.currency);
  const who = nameOf(p.payerUserId);
  const to = object(nameOf, p.payeeUserId);
  switch (p.status) {
    case PaymentStatus.SUCCEEDED:
      return { icon: "card", tone: "good", title: `${who} paid ${to} ${money}` };
    case PaymentStatus.FAILED:
      return { icon: "alert", tone: "bad", title: `Paying ${money} to ${to} failed${p.failureReason ? `: ${p.failureReason}` : ""}` };
    default:
      return { icon: "clock", tone: "busy", title: `Paying ${money} to ${to}…` };
  }
}

function milestoneWords(m: Milestone): { icon: IconName; tone: Tone; title: string } | undefined {
  const what = m.terms?.title || "The milestone";
  switch (m.status) {
    case MilestoneStatus.COMPLETED:
      return { icon: "flag", tone: "good", title: `${what} settled at ${formatMoney(m.capturedMinor, m.currency)}` };
    case MilestoneStatus.AMOUNT_PROPOSED:
      return { icon: "pen", tone: "info", title: `${what}: ${formatMoney(m.proposedAmountMinor, m.currency)} proposed, waiting for approval` };
    case MilestoneStatus.RELEASED:
      return { icon: "undo", tone: "warn", title: `${what}: the escrow went back to the payer` };
    case MilestoneStatus.FAILED:
      return { icon: "alert", tone: "bad", title: `${what} could not be settled${m.failureReason ? `: ${m.failureReason}` : ""}` };
    default:
      return undefined;
  }
}

/** Builds the timeline's entries, oldest first, ending with what is happening now. */
export function timelineEntries(state: TimelineState, deps: TimelineDeps): HTMLElement[] {
  const out: HTMLElement[] = [];
  const { nameOf, agentOf } = deps;
  if (state.trigger) {
    const t = state.trigger;
    out.push(entry("trigger", "spark", "info", `${nameOf(t.speakerUserId)} made it a deal`, `“${t.matchedText}”`, t.atMs));
  }
  const n = state.negotiation;
  for (const [index, round] of (n?.rounds ?? []).entries()) {
    const words = roundWords(round, agentOf(round.fromUserId), index === 0);
    const detail = [itemsInWords(round), round.reason].filter((s) => s !== "").join(" — ");
    out.push(entry("round", words.icon, words.tone, words.title, detail || undefined, round.atMs));
  }
  for (const approval of deps.approvals) out.push(h("li", { class: "event tone-warn", "data-kind": "approval" }, h("span", { class: "icon" }, icon("question")), h("div", { class: "body" }, approval)));
  if (n && n.status !== NegotiationStatus.AGREED && n.status !== NegotiationStatus.OPEN && n.status !== NegotiationStatus.UNSPECIFIED) {
    out.push(entry("ended", "cross", "bad", `No deal: ${negotiationWords(n.status)}`, n.endReason || undefined));
  }
  const c = state.contract;
  if (c) {
    // Once a ranged item settled below its maximum, the total says what the deal came to.
    const settled = settledTotalOf(c, state.milestones.length > 0 ? state.milestones : c.milestones);
    const total = !c.terms ? "" : settled !== c.terms.totalMinor ? `${formatMoney(settled, c.terms.currency)} as settled (agreed ${formatMoney(c.terms.totalMinor, c.terms.currency)})` : formatMoney(c.terms.totalMinor, c.terms.currency);
    const open = h("button", { type: "button", class: "primary", "data-testid": "open-contract", onclick: () => deps.openContract() }, c.status === ContractStatus.AWAITING_SIGNATURES ? "Read and sign" : "View contract");
    out.push(entry("contract", "document", "info", `Contract drafted: ${c.title}`, total ? `Total ${total}` : undefined, c.createdAtMs, open));
    for (const s of c.signatures) out.push(entry("signature", "pen", "good", `${nameOf(s.userId)} signed`, undefined, s.signedAtMs));
    if (c.status === ContractStatus.DECLINED) out.push(entry("declined", "cross", "bad", `${nameOf(c.declinedByUserId)} declined the contract`, c.declinedReason ? `“${c.declinedReason}”` : undefined));
  }
  for (const p of state.payments) {
    const words = paymentWords(p, nameOf);
    out.push(entry("payment", words.icon, words.tone, words.title, undefined, p.updatedAtMs));
  }
  for (const hold of state.holds) {
    // A settled hold still shows that the money was held first, then where it went.
    if (hold.status === EscrowHoldStatus.CAPTURED || hold.status === EscrowHoldStatus.RELEASED || hold.status === EscrowHoldStatus.EXPIRED) {
      const held = holdWords({ ...hold, status: EscrowHoldStatus.HELD }, nameOf);
      out.push(entry("hold", held.icon, held.tone, held.title.replace(" is held ", " was held ")));
    }
    const words = holdWords(hold, nameOf);
    out.push(entry("hold", words.icon, words.tone, words.title, undefined, hold.updatedAtMs));
  }
  for (const m of state.milestones) {
    const words = milestoneWords(m);
    if (words) out.push(entry("milestone", words.icon, words.tone, words.title, undefined, m.updatedAtMs));
  }
  // A failed step's detail is a sentence for people ("Releasing £80.00 failed: …"); the rest repeat the entries above.
  for (const step of state.steps) if (step.status === ExecutionStepStatus.FAILED && step.step !== "decline" && step.detail) out.push(entry("problem", "alert", "bad", step.detail));
  if (c?.status === ContractStatus.COMPLETED) out.push(entry("completed", "done", "good", "All done: every payment is settled"));
  if (state.negotiating) out.push(h("li", { class: "event tone-busy", "data-kind": "negotiating", "data-testid": "negotiating" }, h("span", { class: "icon spinner", "aria-hidden": "true" }), h("div", { class: "body", role: "status" }, h("p", { class: "title" }, "The agents are negotiating…"))));
  return out;
}
