import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWeb } from "../../clients/web/build.js";
import { loadDialogue } from "../../clients/cli/dialogue.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { sha256Hex } from "../support/hash.js";
import { launchChromium } from "../support/browser.js";
import { DESKTOP, photographScreen } from "./web-axe.js";

/*
 * The browser app end to end in headless Chromium: two people in separate browser profiles join
 * one room, the plumber talks through a fake microphone fed from a WAV fixture (the homeowner
 * hears it), both type their lines as on-device transcripts, the agents agree, both sign, both
 * see the payment and the escrow hold, and they settle the escrow milestone from the page.
 */

const WEB_ROOT = path.resolve("clients/web/dist");
const ARTIFACTS = path.resolve("test-artifacts/web");
const MIC_WAV = path.resolve("test/fixtures/audio/provider-offer-16k.wav");
const DIALOGUE = path.resolve("test/fixtures/dialogues/boiler-repair.json");

let t: TestApp;
let browser: Browser;
const contexts: BrowserContext[] = [];
/** Uncaught errors in any page; each test ends by checking there were none. */
const pageErrors: string[] = [];
/** Console warnings and errors and 404s in any page, checked by the deal test. */
const consoleNoise: string[] = [];

beforeAll(async () => {
  await buildWeb({ outDir: WEB_ROOT });
  await mkdir(ARTIFACTS, { recursive: true });
  t = await startTestApp({ WEB_ROOT });
  browser = await launchChromium({ micWav: MIC_WAV });
}, 120_000);

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser?.close();
  await t?.close();
});

async function person(): Promise<Page> {
  // A browser profile each, as two people on two devices: separate storage and connections.
  const context = await browser.newContext({ viewport: DESKTOP });
  contexts.push(context);
  const page = await context.newPage();
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (message) => {
    if (message.type() === "warning" || message.type() === "error") consoleNoise.push(message.text());
  });
  page.on("response", (response) => {
    if (response.status() === 404) consoleNoise.push(`404 ${response.url()}`);
  });
  return page;
}

/** Checks `page` with axe-core and photographs it at desktop and phone width. */
function shots(page: Page, name: string): Promise<void> {
  return photographScreen(page, ARTIFACTS, name);
}

async function join(page: Page, roomId: string, profile: { name: string; role: string; trade?: string; maxAutoApprove?: string; rates?: string }): Promise<void> {
  await page.goto(`${t.baseUrl}/?room=${roomId}`);
  await page.getByTestId("setup-screen").waitFor();
  await page.getByTestId("profile-name").fill(profile.name);
  await page.getByTestId(`profile-role-${profile.role}`).check();
  // Trade, rates and limits live in the settings sheet, closed by default.
  if (profile.trade || profile.maxAutoApprove || profile.rates) await page.getByTestId("settings").locator("summary").click();
  if (profile.trade) await page.getByTestId("profile-trade").fill(profile.trade);
  if (profile.maxAutoApprove) await page.getByTestId("profile-max-auto-approve").fill(profile.maxAutoApprove);
  if (profile.rates) await page.getByTestId("profile-rates").fill(profile.rates);
  expect(await page.getByTestId("room-input").inputValue()).toBe(roomId);
  await page.getByTestId("join").click();
  await page.getByTestId("room-screen").waitFor();
}

/** Resolves when the page's transcript holds `count` final lines. */
async function finalLines(page: Page, count: number): Promise<void> {
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="transcript"] li[data-final="true"]').length >= n, count);
}

describe("browser app", () => {
  it("takes two people from setup to a signed, paid contract", async () => {
    const roomId = `web-${Date.now().toString(36)}`;
    const plumber = await person();
    const homeowner = await person();
    try {
      await deal(roomId, plumber, homeowner);
      expect(pageErrors).toEqual([]);
      // No favicon 404 and no invalid room-code pattern in the console.
      expect(consoleNoise.filter((line) => /404|pattern/i.test(line))).toEqual([]);
    } catch (err) {
      // What each person saw when it failed, for the artifacts.
      await plumber.screenshot({ path: path.join(ARTIFACTS, "failed-plumber.png"), fullPage: true }).catch(() => undefined);
      await homeowner.screenshot({ path: path.join(ARTIFACTS, "failed-homeowner.png"), fullPage: true }).catch(() => undefined);
      throw err;
    }
  }, 120_000);
});

describe("browser app after a server restart", () => {
  it("reconnects, rejoins and resumes the panel after the last event it saw, showing nothing twice", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "handshake-web-restart-"));
    let app = await startTestApp({ WEB_ROOT }, dataDir);
    try {
      const roomId = `restart-${Date.now().toString(36)}`;
      const a = await person();
      const b = await person();
      const base = app.baseUrl;
      for (const [page, name, role] of [[a, "Ada", "provider"], [b, "Bo", "client"]] as const) {
        await page.goto(`${base}/?room=${roomId}`);
        await page.getByTestId("profile-name").fill(name);
        await page.getByTestId(`profile-role-${role}`).check();
        await page.getByTestId("join").click();
        await page.getByTestId("room-screen").waitFor();
      }
      await a.getByTestId("say-input").fill("Before the restart.");
      await a.getByTestId("say-input").press("Enter");
      await finalLines(a, 1);
      await finalLines(b, 1);

      await app.close();
      // A line typed while the server is gone is kept on the page and sent once it is back.
      await b.getByTestId("reconnecting").waitFor();
      await b.getByTestId("say-input").fill("Typed while offline.");
      await b.getByTestId("say-input").press("Enter");
      await b.getByTestId("unsent-line").getByText("Typed while offline.").waitFor();
      await b.screenshot({ path: path.join(ARTIFACTS, "7-offline.png"), fullPage: true });
      app = await startTestApp({ WEB_ROOT, PORT: String(app.port) }, dataDir);
      for (const page of [a, b]) {
        await page.waitForFunction(() => {
          const pill = document.querySelector('[data-testid="link-state"]') as HTMLElement | null;
          return Number(pill?.dataset.reconnects ?? 0) >= 1 && pill?.dataset.state === "live";
        });
      }
      await b.getByTestId("say-input").fill("After the restart.");
      await b.getByTestId("say-input").press("Enter");
      for (const page of [a, b]) {
        await finalLines(page, 3);
        const lines = await page.locator('[data-testid="transcript"] li[data-final="true"] .text').allTextContents();
        expect(lines).toEqual(["Before the restart.", "Typed while offline.", "After the restart."]);
        // "Reconnecting" is gone once the connection is back, and nothing is left unsent.
        expect(await page.getByTestId("reconnecting").isHidden()).toBe(true);
      }
      expect(await b.getByTestId("unsent-line").count()).toBe(0);
      await a.screenshot({ path: path.join(ARTIFACTS, "7-after-restart.png"), fullPage: true });
      expect(pageErrors).toEqual([]);
    } finally {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 90_000);
});

async function deal(roomId: string, plumber: Page, homeowner: Page): Promise<void> {
  {

    await plumber.goto(`${t.baseUrl}/?room=${roomId}`);
    await plumber.getByTestId("setup-screen").waitFor();
    await shots(plumber, "1-setup");

    await join(plumber, roomId, { name: "Sam Price", role: "provider", trade: "plumber", rates: "boiler repair: 120 per job" });
    await join(homeowner, roomId, { name: "Alex Morgan", role: "client", maxAutoApprove: "250" });
    await plumber.waitForFunction(() => document.querySelector('[data-testid="participants"]')?.textContent?.includes("Alex Morgan"));
    await homeowner.waitForFunction(() => document.querySelector('[data-testid="trigger-state"] [data-armed="true"]') !== null);
    expect(await homeowner.getByTestId("share-link").inputValue()).toBe(`${t.baseUrl}/?room=${roomId}`);

    // The plumber speaks through the fake microphone (a WAV fixture); the homeowner hears it.
    await plumber.getByTestId("mic-toggle").click();
    await plumber.getByTestId("mute-toggle").waitFor({ state: "visible" });
    await homeowner.waitForFunction(() => Number((document.querySelector('[data-testid="peer-presence"]') as HTMLElement | null)?.dataset.frames ?? 0) > 20);
    // The level meter moves with the voice, and the homeowner sees the plumber here and his audio arriving.
    await plumber.waitForFunction(() => Number((document.querySelector('[data-testid="mic-level"]') as HTMLElement | null)?.dataset.peak ?? 0) > 0.3);
    await homeowner.locator('[data-testid="peer-presence"]:is([data-quality="good"], [data-quality="fair"], [data-quality="poor"])', { hasText: "Sam Price is here" }).waitFor();
    expect(await homeowner.getByTestId("call-timer").textContent()).toMatch(/^on the call \d+:\d\d$/);
    expect(await plumber.getByTestId("mic-device").locator("option").count()).toBeGreaterThan(0);
    await shots(homeowner, "2-room-listening");

    // Both type their lines as on-device transcripts, in turn.
    const dialogue = await loadDialogue(DIALOGUE);
    // Whether the timeline said the agents were at work: noted as it happens, as it may not last long.
    await homeowner.evaluate(() => {
      const seen = () => document.querySelector('[data-testid="timeline"] [data-testid="negotiating"]') !== null;
      new MutationObserver(() => {
        if (seen()) document.body.dataset.sawNegotiating = "true";
      }).observe(document.body, { childList: true, subtree: true });
    });
    for (const [index, line] of dialogue.entries()) {
      const speaker = line.speaker === "provider" ? plumber : homeowner;
      await speaker.getByTestId("say-input").fill(line.text);
      await speaker.getByTestId("say-input").press("Enter");
      await finalLines(plumber, index + 1);
      await finalLines(homeowner, index + 1);
    }
    const said = await homeowner.locator('[data-testid="transcript"] li[data-final="true"] .text').allTextContents();
    expect(said).toEqual(dialogue.map((l) => l.text));

    // The agents agree and a contract appears on both pages with a hash that matches its text.
    for (const page of [plumber, homeowner]) {
      await page.locator('[data-testid="negotiation-status"]', { hasText: "agreed" }).waitFor();
      await page.locator('[data-testid="contract"][data-status="AWAITING_SIGNATURES"]').waitFor();
      await page.locator('[data-testid="hash-state"].ok').waitFor();
      await page.locator('[data-testid="sign-button"]:not([disabled])').waitFor();
    }
    const text = await homeowner.getByTestId("contract-text").textContent();
    const hash = await homeowner.getByTestId("contract-hash").textContent();
    expect(hash).toBe(sha256Hex(text ?? ""));
    expect(await plumber.getByTestId("contract-hash").textContent()).toBe(hash);
    expect(await homeowner.getByTestId("contract-total").textContent()).toBe("£200.00");
    // The timeline tells the deal in words: the trigger, the offers, the contract; no tool calls or step names.
    expect(await homeowner.evaluate(() => document.body.dataset.sawNegotiating)).toBe("true");
    await homeowner.getByTestId("close-contract").click();
    const kinds = await homeowner.locator('[data-testid="timeline"] > li').evaluateAll((items) => items.map((li) => (li as HTMLElement).dataset.kind));
    expect(kinds.slice(0, 2)).toEqual(["trigger", "round"]);
    expect(kinds).toContain("contract");
    const told = (await homeowner.getByTestId("timeline").textContent()) ?? "";
    expect(told).toContain("made it a deal");
    expect(told).toMatch(/agent (opened with|offered|countered with) £/);
    expect(told).not.toMatch(/\b[a-z]+_[a-z_]+\b|\[|tool/);
    await shots(homeowner, "3-timeline");
    await homeowner.getByTestId("open-contract").click();
    await homeowner.getByTestId("contract-text").evaluate((pre) => (pre.parentElement as HTMLDetailsElement).open = true);
    await shots(homeowner, "3-contract");

    // Both sign; both see the £120 payment and the £80 hold.
    await homeowner.getByTestId("sign-button").click();
    await plumber.getByTestId("sign-button").click();
    for (const page of [plumber, homeowner]) {
      await page.locator('[data-testid="contract"][data-status="ACTIVE"]').waitFor();
      await page.locator('[data-testid="payment"][data-status="succeeded"]', { hasText: "£120.00" }).waitFor();
      await page.locator('[data-testid="hold"][data-status="held"]', { hasText: "£80.00" }).waitFor();
      expect(await page.locator('[data-testid="signatures"] .signature').count()).toBe(2);
      expect(await page.locator('[data-testid="timeline"] [data-kind="signature"]').count()).toBe(2);
      await page.locator('[data-testid="timeline"] [data-kind="payment"]', { hasText: /paid (Sam Price|you) £120\.00/ }).waitFor({ state: "attached" });
      await page.locator('[data-testid="timeline"] [data-kind="hold"]', { hasText: "£80.00 from" }).waitFor({ state: "attached" });
    }
    await homeowner.getByTestId("balances").getByText("You paid £200.00, £80.00 of it held in escrow.").waitFor({ state: "attached" });
    await plumber.getByTestId("balances").getByText("You were paid £120.00, and £80.00 more is held in escrow for you.").waitFor({ state: "attached" });
    await shots(plumber, "4-paid");

    // The escrow milestone: the plumber proposes £65, the homeowner approves, £65 is paid out.
    await homeowner.getByTestId("milestone-waiting").getByText("Waiting for Sam Price to propose the final amount.").waitFor();
    expect(await homeowner.getByTestId("milestone-confirm").count()).toBe(0);
    await plumber.getByTestId("milestone-amount").fill("65");
    await plumber.getByTestId("milestone-propose").click();
    // Each side is offered only its own move: no approving for the plumber, no proposing for the homeowner.
    await plumber.getByTestId("milestone-waiting").getByText("Waiting for Alex Morgan to approve £65.00.").waitFor();
    expect(await plumber.getByTestId("milestone-approve").count()).toBe(0);
    expect(await homeowner.getByTestId("milestone-propose").count()).toBe(0);
    await homeowner.locator('[data-testid="milestone-approve"]', { hasText: "£65.00" }).click();
    for (const page of [plumber, homeowner]) {
      await page.locator('[data-testid="milestone"][data-status="completed"]').waitFor();
      await page.locator('[data-testid="hold"][data-status="captured"]', { hasText: "£65.00 paid out" }).waitFor();
      await page.locator('[data-testid="timeline"] [data-kind="hold"]', { hasText: /£65\.00 released to (Sam Price|you), £15\.00 back to/ }).waitFor({ state: "attached" });
    }
    // Settled below its £80 maximum: the line and the total say what was paid.
    expect(await homeowner.getByTestId("contract-total-settled").textContent()).toBe("£185.00");
    await homeowner.getByTestId("balances").getByText("You paid £185.00; £15.00 came back to you from escrow.").waitFor({ state: "attached" });
    await shots(homeowner, "5-milestone");
    await homeowner.getByTestId("close-contract").click();
    await shots(homeowner, "5-timeline-settled");

    // Saved contracts, from the homeowner's browser.
    await homeowner.goto(`${t.baseUrl}/?view=contracts`);
    await homeowner.getByTestId("contract-row").first().click();
    await homeowner.locator('[data-testid="contract"][data-status="COMPLETED"]').waitFor();
    expect(await homeowner.getByTestId("contract-hash").textContent()).toBe(hash);
    await shots(homeowner, "6-saved-contracts");
  }
}

describe("browser app: new room and a second tab", () => {
  it("makes a server-chosen room with a share link, and a duplicated tab joins as someone new", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    contexts.push(context);
    const first = await context.newPage();
    first.on("pageerror", (err) => pageErrors.push(err.message));
    await first.goto(`${t.baseUrl}/`);
    await first.getByTestId("profile-name").fill("Ada");
    await first.getByTestId("profile-role-provider").check();
    await first.getByTestId("new-room").click();
    await first.getByTestId("room-screen").waitFor();
    const code = (await first.getByTestId("room-code").textContent()) ?? "";
    expect(code.length).toBeGreaterThanOrEqual(8);
    expect(await first.getByTestId("share-link").inputValue()).toBe(`${t.baseUrl}/?room=${code}`);
    const firstIdentity = await first.evaluate(() => sessionStorage.getItem("handshake.identity"));
    expect(firstIdentity).toBeTruthy();

    // Chromium copies sessionStorage into a duplicated tab; the copy must not become a second Ada.
    const second = await context.newPage();
    second.on("pageerror", (err) => pageErrors.push(err.message));
    await second.addInitScript((value) => {
      if (!sessionStorage.getItem("handshake.identity")) sessionStorage.setItem("handshake.identity", value);
    }, firstIdentity ?? "");
    await second.goto(`${t.baseUrl}/?room=${code}`);
    expect(await second.getByTestId("room-input").inputValue()).toBe(code);
    // The device's saved name is Ada's, and Ada is in a room in the first tab: the name is not offered.
    await second.getByTestId("name-hint").getByText("Ada is already in a room in another tab").waitFor();
    expect(await second.getByTestId("profile-name").inputValue()).toBe("");
    expect(await second.getByTestId("profile-role-provider").isChecked()).toBe(false);
    await shots(second, "8-second-tab-join");
    await second.getByTestId("profile-name").fill("Bo");
    await second.getByTestId("profile-role-client").check();
    await second.getByTestId("join").click();
    await second.getByTestId("room-screen").waitFor();
    const ids = await Promise.all([first, second].map((page) => page.evaluate(() => (JSON.parse(sessionStorage.getItem("handshake.identity") ?? "{}") as { userId?: string }).userId)));
    expect(ids[1]).toBeTruthy();
    expect(ids[1]).not.toBe(ids[0]);
    await first.waitForFunction(() => document.querySelector('[data-testid="participants"]')?.textContent?.includes("Bo"));
    await shots(first, "8-new-room");
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
