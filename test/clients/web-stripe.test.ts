import { mkdir, mkdtemp, rm } from "node:fs/promises";
import net, { type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWeb } from "../../clients/web/build.js";
import { ContractStatus, EscrowHoldStatus, PaymentStatus } from "../../gen/handshake/v1/deal_pb.js";
import { startFakeStripe, type FakeStripe } from "../../src/payments/testing/fake-stripe-server.js";
import { clients, startTestApp, type TestApp } from "../support/app.js";
import { launchChromium } from "../support/browser.js";
import { TEST_PUBLISHABLE_KEY } from "../support/stripe-device.js";
import { startStripeJsStandIn, type StripeJsStandIn } from "../support/stripe-js-standin.js";
import { DESKTOP } from "./web-axe.js";

/*
 * The web app's Stripe flows in headless Chromium, against the fake Stripe and a Stripe.js
 * stand-in served by this test: the payee connects Stripe through the onboarding link and comes
 * back to the app, the payer saves a card that wants 3-D Secure, they make a deal, and the payer
 * completes 3-D Secure in the Stripe window; the contract becomes active.
 */

const ARTIFACTS = path.resolve("test-artifacts/web-stripe");
const WEBHOOK_SECRET = "whsec_web_stripe";

let webRoot: string;
let fake: FakeStripe;
let standIn: StripeJsStandIn;
let t: TestApp;
let browser: Browser;

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  webRoot = await mkdtemp(path.join(os.tmpdir(), "handshake-web-stripe-"));
  await buildWeb({ outDir: webRoot });
  await mkdir(ARTIFACTS, { recursive: true });
  fake = await startFakeStripe();
  standIn = await startStripeJsStandIn(fake.url);
  const port = await freePort();
  t = await startTestApp({
    PORT: String(port),
    WEB_ROOT: webRoot,
    PAYMENT_RAIL: "stripe",
    STRIPE_SECRET_KEY: "sk_test_web",
    STRIPE_API_BASE: fake.url,
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    STRIPE_PUBLISHABLE_KEY: TEST_PUBLISHABLE_KEY,
    STRIPE_JS_URL: standIn.url,
    STRIPE_RETURN_URL: `http://127.0.0.1:${port}/?stripe=return`,
    STRIPE_REFRESH_URL: `http://127.0.0.1:${port}/?stripe=refresh`,
    NEGOTIATION_ROUND_TIMEOUT_MS: "20000",
    NEGOTIATION_TOTAL_TIMEOUT_MS: "60000",
  });
  fake.deliverWebhooksTo({ url: `${t.baseUrl}/webhooks/stripe`, secret: WEBHOOK_SECRET });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
  await standIn?.close();
  await fake?.close();
  if (webRoot) await rm(webRoot, { recursive: true, force: true });
});

const pageErrors: string[] = [];

/** A person on a device of their own: a browser profile, and the page they join the room on. */
async function person(roomId: string, name: string, role: "provider" | "client"): Promise<{ room: Page; settings: () => Promise<Page> }> {
  const context = await browser.newContext({ viewport: DESKTOP });
  const room = await context.newPage();
  room.on("pageerror", (err) => pageErrors.push(err.message));
  await room.goto(`${t.baseUrl}/?room=${roomId}`);
  await room.getByTestId("profile-name").fill(name);
  await room.getByTestId(`profile-role-${role}`).check();
  if (role === "client") {
    await room.getByTestId("settings").locator("summary").click();
    await room.getByTestId("profile-max-auto-approve").fill("400");
  }
  await room.getByTestId("join").click();
  await room.getByTestId("room-screen").waitFor();
  return {
    room,
    // Another tab of the same browser: its settings sheet knows this device's person.
    async settings() {
      const page = await context.newPage();
      page.on("pageerror", (err) => pageErrors.push(err.message));
      await page.goto(`${t.baseUrl}/`);
      await page.getByTestId("settings").locator("summary").click();
      return page;
    },
  };
}

async function say(page: Page, other: Page, text: string): Promise<void> {
  const before = await other.locator('[data-testid="transcript"] li[data-final="true"]').count();
  await page.getByTestId("say-input").fill(text);
  await page.getByTestId("say-input").press("Enter");
  await other.waitForFunction((n) => document.querySelectorAll('[data-testid="transcript"] li[data-final="true"]').length > n, before);
}

async function userTokenOf(page: Page): Promise<string> {
  const saved = await page.evaluate(() => localStorage.getItem("handshake.lastIdentity"));
  return (JSON.parse(saved ?? "{}") as { userToken: string }).userToken;
}

describe("browser app with Stripe", () => {
  it("onboards the payee, saves the payer's card with Stripe.js, and completes 3-D Secure: the contract becomes active", async () => {
    const roomId = `web-stripe-${Date.now().toString(36)}`;
    const rita = await person(roomId, "Rita", "provider");
    const omar = await person(roomId, "Omar", "client");

    // The payee connects Stripe: the link leaves for Stripe's onboarding and comes back.
    const ritaSettings = await rita.settings();
    await expect.poll(() => ritaSettings.getByTestId("stripe-status").textContent()).toContain("Not set up to be paid");
    await ritaSettings.screenshot({ path: path.join(ARTIFACTS, "1-payee-settings.png"), fullPage: true });
    await ritaSettings.getByTestId("stripe-onboard").click();
    await ritaSettings.getByRole("button", { name: "Finish onboarding" }).waitFor();
    await ritaSettings.screenshot({ path: path.join(ARTIFACTS, "2-stripe-onboarding.png"), fullPage: true });
    await ritaSettings.getByRole("button", { name: "Finish onboarding" }).click();
    await ritaSettings.waitForURL(/stripe=return/);
    await ritaSettings.getByTestId("settings").locator("summary").click();
    await expect.poll(() => ritaSettings.getByTestId("stripe-status").textContent(), { timeout: 10_000 }).toContain("You can be paid.");
    await ritaSettings.screenshot({ path: path.join(ARTIFACTS, "3-payee-onboarded.png"), fullPage: true });

    // The payer saves a card with Stripe.js: one whose issuer wants 3-D Secure.
    const omarSettings = await omar.settings();
    await expect.poll(() => omarSettings.getByTestId("stripe-status").textContent()).toContain("No card saved");
    await omarSettings.getByTestId("stripe-card").click();
    await omarSettings.getByTestId("standin-card").selectOption("pm_card_authenticationRequired");
    await omarSettings.screenshot({ path: path.join(ARTIFACTS, "4-payer-card.png"), fullPage: true });
    await omarSettings.getByTestId("stripe-card-save").click();
    await expect.poll(() => omarSettings.getByTestId("stripe-status").textContent(), { timeout: 15_000 }).toContain("A card is saved to pay with.");
    await omarSettings.screenshot({ path: path.join(ARTIFACTS, "5-payer-card-saved.png"), fullPage: true });

    // The deal, typed.
    await say(omar.room, rita.room, "Water is coming through the ceiling when it rains. Can you repair the roof?");
    await say(rita.room, omar.room, "The call-out is sixty pounds.");
    await say(rita.room, omar.room, "The repair itself could be anything from 150 to 250 pounds, depending on what I find up there.");
    await say(omar.room, rita.room, "OK, that sounds good to me. Handshake.");
    for (const page of [omar.room, rita.room]) {
      await page.locator('[data-testid="sign-button"]:not([disabled])').waitFor({ timeout: 30_000 });
      await page.getByTestId("sign-button").click();
      await page.getByTestId("close-contract").click();
    }

    // The payer alone is asked; Stripe's 3-D Secure window opens and the payer completes it.
    await expect.poll(() => omar.room.getByTestId("payment-action").count(), { timeout: 15_000 }).toBe(2);
    expect(await rita.room.getByTestId("payment-action").count()).toBe(0);
    await omar.room.screenshot({ path: path.join(ARTIFACTS, "6-payer-asked.png"), fullPage: true });
    for (let i = 0; i < 2; i++) {
      const action = omar.room.getByTestId("payment-action").nth(i);
      await action.getByTestId("payment-action-authenticate").click();
      const frame = omar.room.frameLocator('[data-testid="standin-3ds"]');
      await frame.getByRole("button", { name: "Complete authentication" }).waitFor();
      if (i === 0) await omar.room.screenshot({ path: path.join(ARTIFACTS, "7-3ds-window.png"), fullPage: true });
      await frame.getByRole("button", { name: "Complete authentication" }).click();
      await expect.poll(() => action.getByTestId("payment-action-outcome").textContent(), { timeout: 10_000 }).toBe("Payment confirmed.");
    }
    await fake.webhooksSettled();
    const contracts = clients(t.baseUrl, await userTokenOf(omar.room)).contracts;
    await expect.poll(async () => (await contracts.listContracts({})).contracts[0]?.status, { timeout: 15_000 }).toBe(ContractStatus.ACTIVE);
    const [contract] = (await contracts.listContracts({})).contracts;
    expect(contract!.payments.map((p) => p.status)).toEqual([PaymentStatus.SUCCEEDED]);
    expect(contract!.holds.map((h) => h.status)).toEqual([EscrowHoldStatus.HELD]);
    expect(fake.created()).toBe(2);
    await omar.room.screenshot({ path: path.join(ARTIFACTS, "8-payer-after.png"), fullPage: true });
    expect(pageErrors).toEqual([]);
  }, 120_000);
});
