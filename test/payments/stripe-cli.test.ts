import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { runCli } from "../../clients/cli/cli.js";
import { startFakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { startTestApp } from "../support/app.js";
import { joinRoom, roofDeal } from "../support/restart.js";

const WEBHOOK_SECRET = "whsec_cli_test";
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Runs the CLI in-process; resolves with its exit code and what it printed. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (c: Buffer) => (out += c.toString()));
  stderr.on("data", (c: Buffer) => (err += c.toString()));
  const code = await runCli(args, { stdout, stderr, env: {} });
  return { code, stdout: out, stderr: err };
}

describe("CLI: Stripe onboarding and card links", () => {
  it("prints the onboarding link and the hosted card page; both work, and status says so", async () => {
    const fake = await startFakeStripe();
    cleanups.push(() => fake.close());
    const app = await startTestApp({ PAYMENT_RAIL: "stripe", STRIPE_SECRET_KEY: "sk_test_cli", STRIPE_API_BASE: fake.url, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET });
    cleanups.push(() => app.close());
    fake.deliverWebhooksTo({ url: `${app.baseUrl}/webhooks/stripe`, secret: WEBHOOK_SECRET });
    const provider = await joinRoom(app.baseUrl, "cli-stripe", roofDeal.provider);
    const payer = await joinRoom(app.baseUrl, "cli-stripe", roofDeal.client);
    cleanups.push(() => provider.panel.stop(), () => payer.panel.stop());
    const as = (token: string) => ["--server", app.baseUrl, "--token", token];

    const before = await cli(["stripe", "status", ...as(provider.userToken)]);
    expect(before).toMatchObject({ code: 0, stdout: expect.stringContaining("not set up to be paid (stripe onboard)") });

    const onboard = await cli(["stripe", "onboard", ...as(provider.userToken)]);
    expect(onboard.code).toBe(0);
    const link = /https?:\/\/\S+/.exec(onboard.stdout)![0];
    expect(link.startsWith(`${fake.url}/connect/onboarding/`)).toBe(true);
    await fetch(link);
    await fetch(link, { method: "POST", redirect: "manual" });
    await fake.webhooksSettled();
    expect((await cli(["stripe", "status", ...as(provider.userToken)])).stdout).toContain("can be paid, payouts on");

    const card = await cli(["stripe", "card", ...as(payer.userToken)]);
    expect(card.code).toBe(0);
    const page = /https?:\/\/\S+/.exec(card.stdout)![0];
    expect(await (await fetch(page)).text()).toContain("Save card");
    const saved = await fetch(page, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "card=pm_card_visa", redirect: "manual" });
    expect(saved.status).toBe(303);
    await fake.webhooksSettled();
    expect((await cli(["stripe", "status", "--refresh", ...as(payer.userToken)])).stdout).toContain("a card is saved to pay with");
    // The hosted page saved the card on the payer's own, server-created customer.
    const [customer] = [...fake.customers.values()];
    expect(customer?.metadata).toEqual({ user_id: payer.userId });
    expect([...fake.paymentMethods.values()].map((pm) => pm.customer)).toEqual([customer!.id]);

    const usage = await cli(["stripe", "retry", ...as(payer.userToken)]);
    expect(usage.code).toBe(2);
  }, 30_000);
});
