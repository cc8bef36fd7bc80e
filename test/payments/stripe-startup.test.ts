import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Stripe from "stripe";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { STRIPE_API_VERSION, checkStripeKey, createStripeRail } from "../../src/payments/stripe-rail.js";
import { DENIED_KEY_PREFIX, startFakeStripe, type FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { idempotencyKey } from "../../src/settlement/idempotency.js";
import { startTestApp } from "../support/app.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

let fake: FakeStripe;
let dataDir: string;
beforeEach(async () => {
  fake = await startFakeStripe();
  dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-stripe-start-"));
});
afterEach(async () => {
  await fake.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** Runs `src/main.ts` as a process until it exits (or `timeoutMs`); its exit code and stderr. */
async function runMain(env: Record<string, string>, timeoutMs = 30_000): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: REPO_ROOT,
    env: { ...process.env, HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "info", SPEECH_ENGINE: "device", DATA_DIR: dataDir, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, stderr };
}

describe("the Stripe API version", () => {
  it("is pinned in code to the installed SDK's version and sent on every request", async () => {
    expect(STRIPE_API_VERSION).toBe("2026-10-28.endive");
    // The SDK's own pinned version: an SDK upgrade without a deliberate edit fails here (and in tsc).
    expect(STRIPE_API_VERSION).toBe(Stripe.API_VERSION);
    const rail = createStripeRail({ secretKey: "sk_test_x", apiBase: fake.url, maxNetworkRetries: 0 });
    await rail.pay({
      idempotencyKey: idempotencyKey("ctr_v", "item-1", "pay"),
      amountMinor: 500n,
      currency: "GBP",
      description: "x",
      contractId: "ctr_v",
      lineItemId: "item-1",
      payerUserId: "a",
      payeeUserId: "b",
      payerCustomerId: "cus_a",
      payerPaymentMethodId: "pm_card_visa",
      payeeAccountId: "acct_b",
    });
    await checkStripeKey({ secretKey: "sk_test_x", apiBase: fake.url });
    expect(fake.requests.length).toBe(2);
    for (const r of fake.requests) expect(r.stripeVersion).toBe(STRIPE_API_VERSION);
  });
});

describe("the check of STRIPE_SECRET_KEY at start", () => {
  it("passes for a test secret key and a restricted key, with GET /v1/balance", async () => {
    expect(await checkStripeKey({ secretKey: "sk_test_x", apiBase: fake.url })).toEqual({ ok: true, livemode: false });
    expect(await checkStripeKey({ secretKey: "rk_test_x", apiBase: fake.url })).toEqual({ ok: true, livemode: false });
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["GET /v1/balance", "GET /v1/balance"]);
  });

  it("names the key when Stripe answers 401 or 403, and tells an unreachable Stripe apart", async () => {
    const refused = await checkStripeKey({ secretKey: "sk_live_wrong", apiBase: fake.url });
    expect(refused).toMatchObject({ ok: false, reason: "refused" });
    expect(!refused.ok && refused.message).toContain("STRIPE_SECRET_KEY");
    const forbidden = await checkStripeKey({ secretKey: `${DENIED_KEY_PREFIX}_x`, apiBase: fake.url });
    expect(forbidden).toMatchObject({ ok: false, reason: "forbidden" });
    expect(!forbidden.ok && forbidden.message).toContain("STRIPE_SECRET_KEY");
    fake.failNext({ status: 503, times: 5 });
    expect(await checkStripeKey({ secretKey: "sk_test_x", apiBase: fake.url, maxNetworkRetries: 0 })).toMatchObject({ ok: false, reason: "unreachable" });
  });

  it("stops the app before it listens when the key is refused", async () => {
    await expect(startTestApp({ PAYMENT_RAIL: "stripe", STRIPE_SECRET_KEY: "sk_live_wrong", STRIPE_API_BASE: fake.url }, dataDir)).rejects.toThrow(
      /STRIPE_SECRET_KEY/,
    );
  });

  it("the server process exits with code 2 and a message naming STRIPE_SECRET_KEY on a refused or forbidden key", async () => {
    for (const key of ["sk_live_wrong", `${DENIED_KEY_PREFIX}_x`]) {
      const { code, stderr } = await runMain({ PAYMENT_RAIL: "stripe", STRIPE_SECRET_KEY: key, STRIPE_API_BASE: fake.url });
      expect(code).toBe(2);
      expect(stderr).toMatch(/"msg":"configuration error: .*STRIPE_SECRET_KEY/);
    }
  }, 60_000);
});
