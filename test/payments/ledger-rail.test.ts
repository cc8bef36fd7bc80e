import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  EscrowHoldSchema,
  EscrowHoldStatus,
  LineItemKind,
  PaymentRail as PaymentRailKind,
  type Contract,
  type EscrowHold,
} from "../../gen/handshake/v1/deal_pb.js";
import { idempotencyKey } from "../../src/settlement/idempotency.js";
import { createLedgerRail, ledgerAccounts } from "../../src/payments/ledger-rail.js";
import { PaymentRailError, type PaymentRail, type RailRequest } from "../../src/payments/rail.js";
import type { Store } from "../../src/store/store.js";
import { CLIENT, PROVIDER, item, ledgerTotal, openStore, signedContract } from "../support/payment-fixtures.js";

let store: Store;
let rail: PaymentRail;
let contract: Contract;

beforeEach(async () => {
  store = await openStore();
  rail = createLedgerRail(store, { now: () => 1_000 });
  contract = await signedContract(store, [
    item({ id: "now", description: "Call-out", kind: LineItemKind.IMMEDIATE, amountMinor: 1_000n }),
    item({ id: "esc", description: "Boiler", kind: LineItemKind.ESCROW, amountMinor: 10_000n }),
  ]);
});

afterEach(async () => {
  await store.close();
});

function request(lineItemId: string, action: "pay" | "hold" | "capture" | "release", amountMinor: bigint): RailRequest {
  return {
    idempotencyKey: idempotencyKey(contract.id, lineItemId, action),
    amountMinor,
    currency: "GBP",
    description: "test",
    contractId: contract.id,
    lineItemId,
    payerUserId: CLIENT,
    payeeUserId: PROVIDER,
  };
}

/** Places a hold through the rail and records it as the executor would. */
async function placeHold(amountMinor: bigint, lineItemId = "esc"): Promise<EscrowHold> {
  const req = request(lineItemId, "hold", amountMinor);
  const intent = await store.recordHoldIntent(
    create(EscrowHoldSchema, {
      id: lineItemId === "esc" ? "hold_1" : `hold_${lineItemId}`,
      contractId: contract.id,
      lineItemId,
      payerUserId: CLIENT,
      payeeUserId: PROVIDER,
      amountMinor,
      currency: "GBP",
      status: EscrowHoldStatus.PENDING,
      idempotencyKey: req.idempotencyKey,
      rail: PaymentRailKind.LEDGER,
    }),
  );
  const result = await rail.hold(req);
  expect(result).toMatchObject({ status: "held", capturedMinor: 0n });
  expect(result.expiresAtMs).toBeUndefined();
  const held = { ...intent, status: EscrowHoldStatus.HELD, railReference: result.reference };
  await store.recordHoldResult(held);
  return held;
}

async function balances() {
  const get = (account: string) => store.getLedgerBalance(account, "GBP");
  return {
    clientAvailable: await get(ledgerAccounts.available(CLIENT)),
    clientHeld: await get(ledgerAccounts.held(CLIENT)),
    providerReceived: await get(ledgerAccounts.received(PROVIDER)),
    total: await ledgerTotal(store, "GBP"),
  };
}

describe("ledger rail", () => {
  it("pays from the payer's available to the payee's received, balanced", async () => {
    const result = await rail.pay(request("now", "pay", 1_000n));
    expect(result.status).toBe("succeeded");
    expect(result.reference).toMatch(/^ltx_/);
    expect(await balances()).toEqual({ clientAvailable: -1_000n, clientHeld: 0n, providerReceived: 1_000n, total: 0n });
    const [clientBalance] = await store.getBalances(CLIENT);
    expect(clientBalance).toMatchObject({ currency: "GBP", availableMinor: -1_000n, heldMinor: 0n, receivedMinor: 0n });
    const [providerBalance] = await store.getBalances(PROVIDER);
    expect(providerBalance).toMatchObject({ currency: "GBP", receivedMinor: 1_000n });
    expect(rail.kind).toBe(PaymentRailKind.LEDGER);
  });

  it("replays a payment with the same key: same reference, no second movement", async () => {
    const first = await rail.pay(request("now", "pay", 1_000n));
    const second = await rail.pay(request("now", "pay", 1_000n));
    expect(second).toEqual(first);
    expect(await balances()).toMatchObject({ clientAvailable: -1_000n, providerReceived: 1_000n, total: 0n });
  });

  it("refuses the same key for a different movement", async () => {
    await rail.pay(request("now", "pay", 1_000n));
    const err = await rail.pay(request("now", "pay", 2_000n)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PaymentRailError);
    expect(err).toMatchObject({ code: "idempotency_error", retryable: false });
    expect(await balances()).toMatchObject({ clientAvailable: -1_000n, total: 0n });
  });

  it("holds, then captures in full", async () => {
    const hold = await placeHold(10_000n);
    expect(await balances()).toEqual({ clientAvailable: -10_000n, clientHeld: 10_000n, providerReceived: 0n, total: 0n });
    const captured = await rail.capture(hold.railReference, request("esc", "capture", 10_000n));
    expect(captured).toEqual({ reference: hold.railReference, status: "captured", capturedMinor: 10_000n });
    expect(await balances()).toEqual({ clientAvailable: -10_000n, clientHeld: 0n, providerReceived: 10_000n, total: 0n });
  });

  it("captures part of a hold and returns the rest to the payer; a replay moves nothing", async () => {
    const hold = await placeHold(10_000n);
    await rail.capture(hold.railReference, request("esc", "capture", 6_500n));
    const after = await balances();
    expect(after).toEqual({ clientAvailable: -6_500n, clientHeld: 0n, providerReceived: 6_500n, total: 0n });
    // The crash case: the capture happened but the hold record still says HELD; the same key replays.
    const again = await rail.capture(hold.railReference, request("esc", "capture", 6_500n));
    expect(again).toMatchObject({ status: "captured", capturedMinor: 6_500n });
    expect(await balances()).toEqual(after);
  });

  it("releases a hold back to available and then refuses to capture it", async () => {
    const hold = await placeHold(10_000n);
    const released = await rail.release(hold.railReference, request("esc", "release", 10_000n));
    expect(released.status).toBe("released");
    expect(await balances()).toEqual({ clientAvailable: 0n, clientHeld: 0n, providerReceived: 0n, total: 0n });
    await store.recordHoldResult({ ...hold, status: EscrowHoldStatus.RELEASED });
    const err = await rail.capture(hold.railReference, request("esc", "capture", 10_000n)).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "PaymentRailError", code: "hold_not_capturable" });
    expect((await rail.status(hold.railReference)).status).toBe("released");
    expect(await balances()).toMatchObject({ clientAvailable: 0n, total: 0n });
  });

  it("settles a hold once even when its record lags the ledger (a crash after the release posted)", async () => {
    const hold = await placeHold(10_000n);
    await rail.release(hold.railReference, request("esc", "release", 10_000n));
    // The hold record still says HELD, as after a crash between the posting and its record.
    expect((await rail.status(hold.railReference)).status).toBe("released");
    await expect(rail.capture(hold.railReference, request("esc", "capture", 10_000n))).rejects.toMatchObject({ code: "hold_not_capturable" });
    expect(await rail.release(hold.railReference, request("esc", "release", 10_000n))).toMatchObject({ status: "released" });
    expect(await balances()).toEqual({ clientAvailable: 0n, clientHeld: 0n, providerReceived: 0n, total: 0n });

    const other = await placeHold(5_000n, "esc2");
    await rail.capture(other.railReference, request("esc2", "capture", 4_000n));
    expect(await rail.status(other.railReference)).toMatchObject({ status: "captured", capturedMinor: 4_000n });
    await expect(rail.release(other.railReference, request("esc2", "release", 5_000n))).rejects.toMatchObject({ code: "hold_not_releasable" });
    await expect(rail.capture(other.railReference, request("esc2", "capture", 5_000n))).rejects.toMatchObject({ code: "already_captured" });
    expect(await balances()).toEqual({ clientAvailable: -4_000n, clientHeld: 0n, providerReceived: 4_000n, total: 0n });
  });

  it("refuses a capture above the hold, a zero amount, and paying oneself", async () => {
    const hold = await placeHold(10_000n);
    await expect(rail.capture(hold.railReference, request("esc", "capture", 10_001n))).rejects.toMatchObject({ code: "invalid_amount" });
    await expect(rail.pay(request("now", "pay", 0n))).rejects.toMatchObject({ code: "invalid_amount" });
    await expect(rail.pay({ ...request("now", "pay", 5n), payeeUserId: CLIENT })).rejects.toMatchObject({ code: "invalid_parties" });
    await expect(rail.capture("ltx_unknown", request("esc", "capture", 1n))).rejects.toMatchObject({ code: "unknown_reference" });
    expect(await balances()).toMatchObject({ clientHeld: 10_000n, total: 0n });
  });

  it("reports status from its own records", async () => {
    const paid = await rail.pay(request("now", "pay", 1_000n));
    const hold = await placeHold(10_000n);
    expect((await rail.status(hold.railReference)).status).toBe("held");
    // A payment is only findable by reference once its result is recorded (the executor does that).
    await expect(rail.status(paid.reference)).rejects.toMatchObject({ code: "unknown_reference" });
  });
});
