import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BankError } from "../../src/payments/bank.js";
import { createMonzoBank } from "../../src/payments/monzo.js";
import { startFakeMonzo, type FakeMonzo, type MonzoTransactionJson } from "../../src/payments/testing/fake-monzo-server.js";

const NOW_MS = Date.parse("2026-06-01T12:00:00.000Z");
let monzo: FakeMonzo;

beforeEach(async () => {
  monzo = await startFakeMonzo();
  monzo.tokens.set("tok_ok", "ok");
  monzo.tokens.set("tok_expired", "expired");
  monzo.tokens.set("tok_new", "unapproved");
});

afterEach(async () => {
  await monzo.close();
});

function bank(accessToken = "tok_ok") {
  return createMonzoBank({ accessToken, baseUrl: monzo.url, now: () => NOW_MS });
}

function tx(n: number, amount: number): MonzoTransactionJson {
  const created = new Date(NOW_MS - (200 - n) * 60_000).toISOString();
  return { id: `tx_${String(n).padStart(4, "0")}`, amount, currency: "GBP", created, description: `shop ${n}`, category: "groceries", settled: created };
}

async function bankError(p: Promise<unknown>): Promise<BankError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BankError);
  return err as BankError;
}

describe("Monzo bank against a local fake", () => {
  it("reads the balance of the first open account in minor units, with the bearer token", async () => {
    monzo.balanceMinor = 123_456;
    const balance = await bank().getBalance();
    expect(balance).toEqual({ balanceMinor: 123_456n, currency: "GBP" });
    expect(monzo.requests.map((r) => r.path)).toEqual(["/accounts", "/balance"]);
    expect(monzo.requests[1]!.query).toEqual({ account_id: "acc_1" });
    expect(monzo.requests.every((r) => r.authorization === "Bearer tok_ok")).toBe(true);
  });

  it("lists the newest transactions first, paging through Monzo's oldest-first pages", async () => {
    monzo.transactions = Array.from({ length: 150 }, (_, i) => tx(i + 1, -(i + 1) * 100));
    const account = bank();
    const recent = await account.recentTransactions(3);
    expect(recent.map((t) => t.id)).toEqual(["tx_0150", "tx_0149", "tx_0148"]);
    expect(recent[0]).toEqual({
      id: "tx_0150",
      amountMinor: -15_000n,
      currency: "GBP",
      description: "shop 150",
      createdAtMs: NOW_MS - 50 * 60_000,
    });
    const pages = monzo.requests.filter((r) => r.path === "/transactions");
    expect(pages).toHaveLength(2);
    expect(pages[0]!.query).toMatchObject({ account_id: "acc_1", limit: "100" });
    // Stays inside Monzo's 90-day window.
    expect(Date.parse(pages[0]!.query.since!)).toBeGreaterThan(NOW_MS - 90 * 24 * 3600 * 1000);
    expect(pages[1]!.query.since).toBe("tx_0100");
  });

  it("says the token expired or was revoked on 401", async () => {
    const err = await bankError(bank("tok_expired").getBalance());
    expect(err.code).toBe("unauthorized");
    expect(err.message).toContain("Monzo token expired or revoked");
  });

  it("asks the person to approve access in the Monzo app on 403", async () => {
    const err = await bankError(bank("tok_new").recentTransactions(5));
    expect(err.code).toBe("forbidden");
    expect(err.message).toContain("approve access in the Monzo app");
  });

  it("reports Monzo as unavailable on a server error", async () => {
    monzo.outage = 503;
    const err = await bankError(bank().getBalance());
    expect(err).toMatchObject({ code: "unavailable" });
  });

  it("reports a body it cannot read as bad_response", async () => {
    const broken = createMonzoBank({
      accessToken: "tok_ok",
      baseUrl: monzo.url,
      accountId: "acc_1",
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        await res.body?.cancel();
        return new Response("<html>oops</html>", { status: 200, headers: { "content-type": "text/html" } });
      },
    });
    const err = await bankError(broken.getBalance());
    expect(err.code).toBe("bad_response");
  });
});
