import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWeb } from "../../clients/web/build.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { launchChromium } from "../support/browser.js";
import { sha256Hex } from "../support/hash.js";
import { DESKTOP, photographScreen } from "./web-axe.js";

/*
 * A whole deal as two people would do it in the browser, each in a Chromium of their own (the
 * fake microphone's WAV file is per process): the plumber starts a new room and shares the link;
 * the homeowner joins on the wrong side, both are warned and she switches with one tap; they
 * talk through the fake microphones and the server's PocketSphinx hears them (nothing typed);
 * her agent asks her approval above her limit; both sign; the boiler repair is paid and the
 * radiator flush held in escrow; it settles below its maximum; her balances and saved contracts
 * say where the money went. Every screen is checked with axe-core and photographed at desktop
 * and phone width into test-artifacts/web/journey-*.png.
 */

const WEB_ROOT = path.resolve("clients/web/dist");
const ARTIFACTS = path.resolve("test-artifacts/web");
const PLUMBER_WAV = path.resolve("test/fixtures/audio/provider-boiler-radiators-16k.wav");
const HOMEOWNER_WAV = path.resolve("test/fixtures/audio/client-fair-handshake-16k.wav");

let t: TestApp;
const browsers: Browser[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  await buildWeb({ outDir: WEB_ROOT });
  await mkdir(ARTIFACTS, { recursive: true });
  t = await startTestApp({ WEB_ROOT, SPEECH_ENGINE: "pocketsphinx" });
  // Each file plays once from when the page opens the microphone, as a person would say it once.
  browsers.push(...(await Promise.all([launchChromium({ micWav: PLUMBER_WAV, once: true }), launchChromium({ micWav: HOMEOWNER_WAV, once: true })])));
}, 120_000);

afterAll(async () => {
  for (const browser of browsers) await browser.close().catch(() => undefined);
  await t?.close();
});

async function personIn(browser: Browser): Promise<Page> {
  const page = await (await browser.newContext({ viewport: DESKTOP })).newPage();
  page.on("pageerror", (err) => pageErrors.push(err.message));
  return page;
}

function shot(page: Page, name: string): Promise<void> {
  return photographScreen(page, ARTIFACTS, `journey-${name}`);
}

/** The text of every final transcript line `page` shows from the other person, joined. */
async function heardFromPeer(page: Page): Promise<string> {
  return (await page.locator('[data-testid="transcript"] li.theirs[data-final="true"] .text').allTextContents()).join(" ");
}

describe("browser journey, spoken", () => {
  it("takes two people in two browsers from a new room through a spoken deal to settled money", async () => {
    const [plumberBrowser, homeownerBrowser] = browsers as [Browser, Browser];
    const plumber = await personIn(plumberBrowser);
    const homeowner = await personIn(homeownerBrowser);
    try {
      // The plumber makes a new room; its link is what he sends.
      await plumber.goto(`${t.baseUrl}/`);
      await plumber.getByTestId("profile-name").fill("Sam Price");
      await plumber.getByTestId("profile-role-provider").check();
      await shot(plumber, "1-join");
      await plumber.getByTestId("new-room").click();
      await plumber.getByTestId("room-screen").waitFor();
      const link = await plumber.getByTestId("share-link").inputValue();
      expect(link).toMatch(/\?room=[A-Za-z0-9_-]{8,}$/);

      // The homeowner opens the link and picks the wrong side by mistake; her limit is £150.
      await homeowner.goto(link);
      await homeowner.getByTestId("profile-name").fill("Alex Morgan");
      await homeowner.getByTestId("profile-role-provider").check();
      await homeowner.getByTestId("settings").locator("summary").click();
      await homeowner.getByTestId("profile-max-auto-approve").fill("150");
      await homeowner.getByTestId("join").click();
      await homeowner.getByTestId("room-screen").waitFor();

      // Both are warned before any deal fails on it, and one tap switches her side.
      await homeowner.getByTestId("same-side").getByText("You and Sam Price are both set as being paid — one of you should switch").waitFor();
      await plumber.getByTestId("same-side").getByText("You and Alex Morgan are both set as being paid").waitFor();
      await shot(homeowner, "2-same-side");
      await homeowner.getByTestId("switch-side").click();
      for (const page of [plumber, homeowner]) await page.getByTestId("same-side").waitFor({ state: "hidden" });
      await homeowner.locator('[data-testid="trigger-state"] [data-armed="true"]').waitFor();
      await homeowner.locator('[data-testid="agent-state"][data-state="listening"]', { hasText: "Your agent is listening" }).waitFor();

      // The plumber speaks: his level meter moves, she sees him here with good audio, and the
      // server's recogniser writes down what he said.
      await plumber.getByTestId("mic-toggle").click();
      await plumber.waitForFunction(() => Number((document.querySelector('[data-testid="mic-level"]') as HTMLElement | null)?.dataset.peak ?? 0) > 0.3);
      await homeowner.locator('[data-testid="peer-presence"]:is([data-quality="good"], [data-quality="fair"], [data-quality="poor"])', { hasText: "Sam Price is here" }).waitFor();
      await shot(homeowner, "3-call");
      await homeowner.waitForFunction(() => {
        const said = Array.from(document.querySelectorAll('[data-testid="transcript"] li.theirs[data-final="true"] .text')).map((e) => e.textContent).join(" ");
        return /hundred/.test(said) && /twenty/.test(said) && /forty/.test(said) && /eighty/.test(said);
      }, undefined, { timeout: 60_000 });
      await plumber.getByTestId("mic-toggle").click();
      expect(await heardFromPeer(homeowner)).toMatch(/boiler/);
      expect(await homeowner.locator('[data-testid="transcript"] li.theirs time').count()).toBeGreaterThan(0);

      // The homeowner agrees aloud and says the trigger word.
      await homeowner.getByTestId("mic-toggle").click();
      await homeowner.locator('[data-testid="timeline"] [data-kind="trigger"]').waitFor({ timeout: 60_000 });
      await homeowner.getByTestId("mic-toggle").click();
      expect(await heardFromPeer(plumber)).toMatch(/handshake/);
      expect(await homeowner.locator('[data-testid="transcript"] li[data-final="true"] .text').evaluateAll((items) => items.every((li) => li.closest("li")?.querySelector("time")))).toBe(true);

      // £200 is above her £150 limit: her agent asks her, and only her.
      const approval = homeowner.locator('[data-testid="timeline"] [data-testid="approval"][data-status="PENDING"]');
      await approval.waitFor({ timeout: 30_000 });
      expect(await approval.textContent()).toContain("Pay £200.00 to Sam Price");
      expect(await plumber.getByTestId("approval").count()).toBe(0);
      await homeowner.locator('[data-testid="agent-state"][data-state="asking"]', { hasText: "waiting for your answer" }).waitFor();
      await plumber.locator('[data-testid="agent-state"][data-state="negotiating"]').waitFor();
      await shot(homeowner, "4-approval");
      await homeowner.getByTestId("approval-approve").click();

      // The contract opens in a sheet on both pages, its hash checked on each device.
      for (const page of [plumber, homeowner]) {
        await page.locator('[data-testid="contract-sheet"][open] [data-testid="contract"][data-status="AWAITING_SIGNATURES"]').waitFor();
        await page.locator('[data-testid="hash-state"].ok').waitFor();
      }
      expect(await homeowner.getByTestId("contract-hash").textContent()).toBe(sha256Hex((await homeowner.getByTestId("contract-text").textContent()) ?? ""));
      expect(await homeowner.getByTestId("contract-total").textContent()).toBe("£200.00");
      await shot(homeowner, "5-contract");
      await homeowner.getByTestId("sign-button").click();
      await plumber.getByTestId("sign-button").click();

      // The boiler repair is paid at once, the radiator flush held in escrow.
      for (const page of [plumber, homeowner]) {
        await page.locator('[data-testid="contract"][data-status="ACTIVE"]').waitFor();
        await page.locator('[data-testid="payment"][data-status="succeeded"]', { hasText: "£120.00" }).waitFor();
        await page.locator('[data-testid="hold"][data-status="held"]', { hasText: "£80.00" }).waitFor();
      }
      await homeowner.getByTestId("balances").getByText("You paid £200.00, £80.00 of it held in escrow.").waitFor({ state: "attached" });
      await plumber.getByTestId("balances").getByText("You were paid £120.00, and £80.00 more is held in escrow for you.").waitFor({ state: "attached" });
      await shot(plumber, "6-paid");

      // The flush took less than its maximum: he proposes £65, she approves; each sees only their own move.
      expect(await homeowner.getByTestId("milestone-propose").count()).toBe(0);
      await homeowner.getByTestId("milestone-waiting").getByText("Waiting for Sam Price to propose the final amount.").waitFor();
      await plumber.getByTestId("milestone-amount").fill("65");
      await plumber.getByTestId("milestone-propose").click();
      await plumber.getByTestId("milestone-waiting").getByText("Waiting for Alex Morgan to approve £65.00.").waitFor();
      expect(await plumber.getByTestId("milestone-approve").count()).toBe(0);
      await homeowner.locator('[data-testid="milestone-approve"]', { hasText: "£65.00" }).click();
      for (const page of [plumber, homeowner]) {
        await page.locator('[data-testid="milestone"][data-status="completed"]').waitFor();
        await page.locator('[data-testid="contract-total-settled"]', { hasText: "£185.00" }).waitFor();
      }
      await shot(homeowner, "7-milestone-settled");

      // Her money in words, beside the timeline.
      await homeowner.getByTestId("close-contract").click();
      await homeowner.getByTestId("balances").getByText("You paid £185.00; £15.00 came back to you from escrow.").waitFor();
      await plumber.getByTestId("close-contract").click();
      await plumber.getByTestId("balances").getByText("You were paid £185.00.").waitFor();
      await homeowner.locator('[data-testid="timeline"] [data-kind="completed"]').waitFor();
      await homeowner.locator('[data-testid="timeline"] [data-kind="contract"]', { hasText: "Total £185.00 as settled (agreed £200.00)" }).waitFor();
      await shot(homeowner, "8-balances");

      // Saved contracts, in a new tab of her browser: who with, its state, and a row that opens it.
      const saved = await homeowner.context().newPage();
      saved.on("pageerror", (err) => pageErrors.push(err.message));
      await saved.goto(`${t.baseUrl}/?view=contracts`);
      const row = saved.getByTestId("contract-row").first();
      await row.waitFor();
      expect(await row.getByTestId("contract-counterparty").textContent()).toBe("Sam Price (being paid)");
      expect(await row.getAttribute("data-status")).toBe("COMPLETED");
      expect(await row.getByTestId("contract-row-total-settled").textContent()).toBe("£185.00");
      await saved.getByTestId("saved-balances").getByText("You paid £185.00; £15.00 came back to you from escrow.").waitFor();
      await shot(saved, "9-saved-contracts");
      await row.getByTestId("contract-open").click();
      await saved.locator('[data-testid="contract-sheet"][open] [data-testid="contract"][data-status="COMPLETED"]').waitFor();
      await shot(saved, "10-saved-contract-sheet");
      expect(pageErrors).toEqual([]);
    } catch (err) {
      await plumber.screenshot({ path: path.join(ARTIFACTS, "journey-failed-plumber.png"), fullPage: true }).catch(() => undefined);
      await homeowner.screenshot({ path: path.join(ARTIFACTS, "journey-failed-homeowner.png"), fullPage: true }).catch(() => undefined);
      throw err;
    }
  }, 180_000);
});
