import { EscrowHoldStatus, PaymentStatus, type EscrowHold, type Payment } from "../../../gen/handshake/v1/deal_pb.js";
import { formatMoney } from "../../shared/format.js";
import { h } from "./dom.js";

/*
 * Where a person's money went, per currency, in plain words: "You paid £200.00, £80.00 of it held
 * in escrow." Worked out from the payments and holds of their deals, so it reads the same on any
 * payment rail.
 */

/** One currency's totals for one person, minor units. */
export interface CurrencyTotals {
  currency: string;
  /** Paid out: payments made, money held in escrow now, and escrow captured for the other side. */
  paidMinor: bigint;
  /** Of what they paid, still held in escrow. */
  heldMinor: bigint;
  /** Came back to them from escrow (released, expired, or the part not captured). */
  refundedMinor: bigint;
  /** Paid to them: payments received and escrow captured for them. */
  receivedMinor: bigint;
  /** Held in escrow for them, not paid yet. */
  heldForMinor: bigint;
}

/** Adds up `userId`'s money per currency from payments and holds (each counted once by id). */
export function currencyTotals(userId: string, payments: readonly Payment[], holds: readonly EscrowHold[]): CurrencyTotals[] {
  const byCurrency = new Map<string, CurrencyTotals>();
  const of = (currency: string) => {
    let totals = byCurrency.get(currency);
    if (!totals) byCurrency.set(currency, (totals = { currency, paidMinor: 0n, heldMinor: 0n, refundedMinor: 0n, receivedMinor: 0n, heldForMinor: 0n }));
    return totals;
  };
  for (const p of payments) {
    if (p.status !== PaymentStatus.SUCCEEDED) continue;
    if (p.payerUserId === userId) of(p.currency).paidMinor += p.amountMinor;
    if (p.payeeUserId === userId) of(p.currency).receivedMinor += p.amountMinor;
  }
  for (const hold of holds) {
    const payer = hold.payerUserId === userId;
    const payee = hold.payeeUserId === userId;
    if (!payer && !payee) continue;
    const t = of(hold.currency);
    switch (hold.status) {
      case EscrowHoldStatus.HELD:
        if (payer) {
          t.paidMinor += hold.amountMinor;
          t.heldMinor += hold.amountMinor;
        }
        if (payee) t.heldForMinor += hold.amountMinor;
        break;
      case EscrowHoldStatus.CAPTURED:
        if (payer) {
          t.paidMinor += hold.capturedMinor;
          t.refundedMinor += hold.amountMinor - hold.capturedMinor;
        }
        if (payee) t.receivedMinor += hold.capturedMinor;
        break;
      case EscrowHoldStatus.RELEASED:
      case EscrowHoldStatus.EXPIRED:
        if (payer) t.refundedMinor += hold.amountMinor;
        break;
      default:
        // Pending or failed holds moved no money.
        break;
    }
  }
  return [...byCurrency.values()].filter((t) => t.paidMinor || t.refundedMinor || t.receivedMinor || t.heldForMinor);
}

/** One currency's totals as sentences, e.g. "You paid £200.00, £80.00 of it held in escrow." */
export function totalsInWords(t: CurrencyTotals): string[] {
  const money = (minor: bigint) => formatMoney(minor, t.currency);
  const lines: string[] = [];
  if (t.paidMinor === 0n && t.refundedMinor > 0n) lines.push(`The ${money(t.refundedMinor)} you put in escrow came back to you.`);
  else if (t.paidMinor > 0n) {
    const held = t.heldMinor > 0n ? `, ${money(t.heldMinor)} of it held in escrow` : "";
    const back = t.refundedMinor > 0n ? `; ${money(t.refundedMinor)} came back to you from escrow` : "";
    lines.push(`You paid ${money(t.paidMinor)}${held}${back}.`);
  }
  if (t.receivedMinor > 0n) {
    const more = t.heldForMinor > 0n ? `, and ${money(t.heldForMinor)} more is held in escrow for you` : "";
    lines.push(`You were paid ${money(t.receivedMinor)}${more}.`);
  } else if (t.heldForMinor > 0n) lines.push(`${money(t.heldForMinor)} is held in escrow for you.`);
  return lines;
}

/** The balances view: one block per currency, or a line saying no money has moved. */
export function balancesView(userId: string, payments: readonly Payment[], holds: readonly EscrowHold[]): HTMLElement {
  const totals = currencyTotals(userId, payments, holds);
  return h(
    "section",
    { class: "balances", "data-testid": "balances", "aria-label": "Your money" },
    h("h3", {}, "Your money"),
    totals.length === 0
      ? h("p", { class: "muted" }, "No money has moved yet.")
      : h("ul", {}, ...totals.map((t) => h("li", { "data-testid": "balance", "data-currency": t.currency }, ...totalsInWords(t).map((line) => h("span", { class: "line" }, line))))),
  );
}
