import type { Balance } from "../../gen/handshake/v1/money_pb.js";
import type { Contract } from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import {
  contractStatusText,
  describeLineItem,
  formatMoney,
  holdStatusText,
  milestoneStatusText,
  paymentStatusText,
  type NameOf,
} from "../shared/format.js";
import type { DealOutcome } from "./participant.js";

/** The lines of a deal summary: terms, hash, signatures, payments, holds and milestones. */
export function dealSummary(outcome: DealOutcome, nameOf: NameOf): string[] {
  const { contract } = outcome;
  const terms = contract.terms;
  const currency = terms?.currency ?? "";
  const lines = [
    `Contract "${contract.title}" (${contract.id}) — ${contractStatusText(contract.status)}`,
    `  parties: ${contract.parties.map((p) => `${p.displayName} (${p.role === PartyRole.PROVIDER ? "provider" : p.role === PartyRole.CLIENT ? "client" : "party"})`).join(", ")}`,
    `  sha256:  ${contract.textSha256}`,
    `  agreed terms${terms ? ` (total ${formatMoney(terms.totalMinor, currency)})` : ""}:`,
    ...(terms?.lineItems ?? []).map((item) => `    - ${describeLineItem(item, currency)}`),
    `  signatures:`,
    ...contract.signatures.map((s) => `    - ${nameOf(s.userId)} signed ${s.textSha256.slice(0, 16)}… at ${new Date(Number(s.signedAtMs)).toISOString()}`),
  ];
  if (contract.declinedByUserId) lines.push(`  declined by ${nameOf(contract.declinedByUserId)}: "${contract.declinedReason}" (nothing was paid)`);
  if (outcome.payments.length > 0) {
    lines.push("  payments:");
    for (const p of outcome.payments) {
      lines.push(`    - ${formatMoney(p.amountMinor, p.currency)} ${nameOf(p.payerUserId)} → ${nameOf(p.payeeUserId)}: ${paymentStatusText(p.status)} (${p.railReference || p.id})`);
    }
  }
  if (outcome.holds.length > 0) {
    lines.push("  escrow holds:");
    for (const h of outcome.holds) {
      lines.push(`    - ${formatMoney(h.amountMinor, h.currency)} from ${nameOf(h.payerUserId)} for ${nameOf(h.payeeUserId)}: ${holdStatusText(h.status)}`);
    }
  }
  if (outcome.milestones.length > 0) {
    lines.push("  milestones:");
    for (const m of outcome.milestones) {
      lines.push(`    - ${m.terms?.title ?? m.lineItemId} (${m.id}): ${milestoneStatusText(m.status)}, ${formatMoney(m.minMinor, m.currency)}–${formatMoney(m.maxMinor, m.currency)}`);
    }
  }
  return lines;
}

/** One line per balance: available, held and received, in each currency. */
export function balanceLines(name: string, balances: readonly Balance[]): string[] {
  if (balances.length === 0) return [`  ${name}: no ledger activity`];
  return balances.map(
    (b) =>
      `  ${name}: available ${formatMoney(b.availableMinor, b.currency)}, held ${formatMoney(b.heldMinor, b.currency)}, received ${formatMoney(b.receivedMinor, b.currency)}`,
  );
}

/** The full text of a contract with its hash and state, for `contract <id>`. */
export function contractDetail(contract: Contract, nameOf: NameOf, hashMatches: boolean): string[] {
  return [
    ...dealSummary({ contract, payments: contract.payments, holds: contract.holds, milestones: contract.milestones }, nameOf),
    `  text hash ${hashMatches ? "verified" : "DOES NOT MATCH the text"}`,
    "",
    contract.text,
  ];
}
