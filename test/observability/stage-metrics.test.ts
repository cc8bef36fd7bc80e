import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContractStatus, PaymentRail as PaymentRailKind, PaymentStatus, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../gen/handshake/v1/profile_pb.js";
import { withRailMetrics } from "../../src/compose/rail-metrics.js";
import { noopStageMetrics, type RailCallOutcome, type StageMetrics } from "../../src/core/metrics.js";
import { PaymentRailError, type PaymentRail, type RailRequest } from "../../src/payments/rail.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { sampleValue, scrape } from "../support/metrics-text.js";
import { joinPerson, type Person } from "../support/people.js";

/** Says `text` and waits until the speaker's own panel shows it: the room has taken the words by then. */
async function say(person: Person, text: string): Promise<void> {
  await person.say(text);
  await person.panel.waitFor((e) => e.event.case === "transcript" && e.event.value.isFinal && e.event.value.text === text, `transcript "${text}"`);
}

describe("stage histograms after one deal through the real server (offline engines, ledger)", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ NEGOTIATION_ROUND_TIMEOUT_MS: "20000", NEGOTIATION_TOTAL_TIMEOUT_MS: "60000" });
  });
  afterAll(async () => {
    await t.close();
  });

  it("times trigger → proposal, drafted → both signed, each ledger call by action and outcome, and each event log write", async () => {
    const before = await scrape(t.baseUrl);
    const sam = await joinPerson(t.baseUrl, "stages-1", { displayName: "Sam", role: PartyRole.PROVIDER, trade: "plumber", rates: [{ description: "boiler repair", amountMinor: 12_000n }] });
    const alex = await joinPerson(t.baseUrl, "stages-1", { displayName: "Alex", role: PartyRole.CLIENT, maxAutoApproveMinor: 20_000n });
    await say(sam, "I can fix your boiler today for one hundred and twenty pounds.");
    await say(alex, "OK, handshake.");
    const drafted = await alex.panel.waitFor((e) => e.event.case === "contract" && e.event.value.status === ContractStatus.AWAITING_SIGNATURES, "contract");
    const contract = drafted.event.value as Contract;
    const hash = createHash("sha256").update(contract.text, "utf8").digest("hex");
    await sam.room.signContract({ contractId: contract.id, textSha256: hash });
    await alex.room.signContract({ contractId: contract.id, textSha256: hash });
    await alex.panel.waitFor((e) => e.event.case === "payment" && e.event.value.status === PaymentStatus.SUCCEEDED, "payment");
    await Promise.all([sam.panel.stop(), alex.panel.stop()]);

    const after = await scrape(t.baseUrl);
    const moved = (name: string, labels: Record<string, string> = {}) => sampleValue(after, name, labels) - sampleValue(before, name, labels);
    expect(moved("handshake_trigger_to_proposal_seconds_count")).toBe(1);
    expect(moved("handshake_contract_drafted_to_signed_seconds_count")).toBe(1);
    expect(moved("handshake_negotiation_rounds_count", { outcome: "agreed" })).toBe(1);
    expect(moved("handshake_negotiation_rounds_sum", { outcome: "agreed" })).toBeGreaterThanOrEqual(1);
    expect(moved("handshake_negotiation_duration_seconds_count", { outcome: "agreed" })).toBe(1);
    // Every store call is timed by Store method: the contract's signatures among them.
    expect(moved("handshake_store_call_duration_seconds_count", { method: "addSignature", outcome: "ok" })).toBeGreaterThanOrEqual(2);
    expect(moved("handshake_payment_rail_call_duration_seconds_count", { rail: "ledger", action: "pay", outcome: "succeeded" })).toBeGreaterThanOrEqual(1);
    // Every event the panel showed was committed first: at least as many writes as events seen.
    expect(moved("handshake_event_log_write_seconds_count")).toBeGreaterThanOrEqual(alex.panel.events.length);
  });
});

describe("withRailMetrics", () => {
  const request: RailRequest = { payerUserId: "u_a", payeeUserId: "u_b", idempotencyKey: "k", amountMinor: 100n, currency: "GBP", description: "d", contractId: "c", lineItemId: "i" };
  const recorded: { rail: string; action: string; outcome: RailCallOutcome }[] = [];
  const metrics: StageMetrics = { ...noopStageMetrics, railCall: (rail, action, outcome) => recorded.push({ rail, action, outcome }) };
  const rail: PaymentRail = {
    kind: PaymentRailKind.LEDGER,
    pay: async () => ({ reference: "tx_1", status: "succeeded" }),
    hold: async () => {
      throw new PaymentRailError("card declined", "card_declined", false);
    },
    capture: async () => {
      throw new Error("socket hang up");
    },
    release: async (reference) => ({ reference, status: "released" }),
    status: async (reference) => ({ reference, status: "held" }),
  };

  it("records each call's outcome (the rail's status, refused, or error) and passes answers and errors through unchanged", async () => {
    const timed = withRailMetrics(rail, "ledger", metrics);
    expect(timed.kind).toBe(PaymentRailKind.LEDGER);
    expect(await timed.pay(request)).toEqual({ reference: "tx_1", status: "succeeded" });
    await expect(timed.hold(request)).rejects.toMatchObject({ name: "PaymentRailError", code: "card_declined" });
    await expect(timed.capture("tx_1", request)).rejects.toThrow("socket hang up");
    expect(await timed.release("tx_2", request)).toEqual({ reference: "tx_2", status: "released" });
    expect(await timed.status("tx_3")).toEqual({ reference: "tx_3", status: "held" });
    expect(recorded).toEqual([
      { rail: "ledger", action: "pay", outcome: "succeeded" },
      { rail: "ledger", action: "hold", outcome: "refused" },
      { rail: "ledger", action: "capture", outcome: "error" },
      { rail: "ledger", action: "release", outcome: "released" },
      { rail: "ledger", action: "status", outcome: "held" },
    ]);
  });
});
