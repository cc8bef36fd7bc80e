import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { EscrowHoldSchema, EscrowHoldStatus, PaymentSchema, PaymentStatus } from "../../gen/handshake/v1/deal_pb.js";
import { currencyTotals, totalsInWords } from "../../clients/web/src/balances.js";
import { callClock, peerQuality } from "../../clients/web/src/call-panel.js";

/*
 * The browser app's pure parts: money in words per currency, the call clock and the judged
 * quality of the other person's audio. The browser tests show them on screens; these cover the
 * cases a single deal does not reach.
 */

const pay = (payer: string, payee: string, amountMinor: bigint, currency = "GBP", status = PaymentStatus.SUCCEEDED) =>
  create(PaymentSchema, { id: `pay_${payer}_${amountMinor}_${currency}`, payerUserId: payer, payeeUserId: payee, amountMinor, currency, status });
const hold = (payer: string, payee: string, amountMinor: bigint, status: EscrowHoldStatus, capturedMinor = 0n, currency = "GBP") =>
  create(EscrowHoldSchema, { id: `hold_${amountMinor}_${status}`, payerUserId: payer, payeeUserId: payee, amountMinor, capturedMinor, currency, status });

describe("balances in words", () => {
  it("says what the payer paid and how much of it is held, per currency", () => {
    const totals = currencyTotals("alex", [pay("alex", "sam", 12_000n), pay("alex", "sam", 5_000n, "EUR")], [hold("alex", "sam", 8_000n, EscrowHoldStatus.HELD)]);
    expect(totals.map(totalsInWords)).toEqual([["You paid £200.00, £80.00 of it held in escrow."], ["You paid €50.00."]]);
  });

  it("counts only what was captured of a hold settled below its amount, and the rest as come back", () => {
    const settled = [hold("alex", "sam", 8_000n, EscrowHoldStatus.CAPTURED, 6_500n)];
    expect(currencyTotals("alex", [pay("alex", "sam", 12_000n)], settled).flatMap(totalsInWords)).toEqual(["You paid £185.00; £15.00 came back to you from escrow."]);
    expect(currencyTotals("sam", [pay("alex", "sam", 12_000n)], settled).flatMap(totalsInWords)).toEqual(["You were paid £185.00."]);
  });

  it("tells the payee what waits in escrow for them, and leaves out money that never moved", () => {
    const holds = [hold("alex", "sam", 8_000n, EscrowHoldStatus.HELD), hold("alex", "sam", 3_000n, EscrowHoldStatus.FAILED)];
    expect(currencyTotals("sam", [pay("alex", "sam", 9_900n, "GBP", PaymentStatus.FAILED)], holds).flatMap(totalsInWords)).toEqual(["£80.00 is held in escrow for you."]);
    expect(currencyTotals("alex", [], [hold("alex", "sam", 8_000n, EscrowHoldStatus.RELEASED)]).flatMap(totalsInWords)).toEqual(["The £80.00 you put in escrow came back to you."]);
    expect(currencyTotals("nobody", [pay("alex", "sam", 100n)], holds)).toEqual([]);
  });
});

describe("the call", () => {
  it("shows minutes and seconds, and hours after an hour", () => {
    expect(callClock(0)).toBe("0:00");
    expect(callClock(65_400)).toBe("1:05");
    expect(callClock(3_725_000)).toBe("1:02:05");
  });

  it("judges the other person's audio from the frames of the last two seconds", () => {
    const here = { connected: true, muted: false };
    expect(peerQuality(100, here)).toBe("good");
    expect(peerQuality(60, here)).toBe("fair");
    expect(peerQuality(10, here)).toBe("poor");
    expect(peerQuality(0, here)).toBe("silent");
    expect(peerQuality(100, { connected: false, muted: false })).toBe("away");
    expect(peerQuality(0, undefined)).toBe("absent");
  });
});
