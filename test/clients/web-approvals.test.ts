import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { scriptedGutterClaude } from "../support/scripted-claude.js";
import os from "node:os";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWeb } from "../../clients/web/build.js";
import { startFakeAnthropic, type FakeAnthropic } from "../../src/agents/claude/testing/fake-anthropic.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { seriousViolations } from "./web-axe.js";

/*
 * The browser app's approval and decline controls in headless Chromium: the homeowner's agent asks
 * before paying above her limit (Approve / Decline on her page only), she approves, then declines
 * the drafted contract with a reason, and the plumber's page shows why. Claude's part is played by
 * the local Messages API fake: the triggered agent proposes £450, the other accepts.
 */

const ARTIFACTS = path.resolve("test-artifacts/web");
let webRoot: string;
let fake: FakeAnthropic;
let app: TestApp;
let browser: Browser;
const pageErrors: string[] = [];

beforeAll(async () => {
  webRoot = await mkdtemp(path.join(os.tmpdir(), "handshake-web-approvals-"));
  await buildWeb({ outDir: webRoot });
  fake = await startFakeAnthropic({ validKey: "sk-ant-test" });
  fake.reply(...Array.from({ length: 200 }, () => scriptedGutterClaude));
  app = await startTestApp({ WEB_ROOT: webRoot, AGENT_ENGINE: "claude", ANTHROPIC_API_KEY: "sk-ant-test", ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_MODEL: "claude-test" });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await app?.close();
  await fake?.close();
  await rm(webRoot, { recursive: true, force: true });
});

async function person(roomId: string, name: string, role: string, maxAutoApprove?: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => pageErrors.push(err.message));
  await page.goto(`${app.baseUrl}/?room=${roomId}`);
  await page.getByTestId("profile-name").fill(name);
  await page.getByTestId(`profile-role-${role}`).check();
  if (maxAutoApprove) {
    await page.getByTestId("settings").locator("summary").click();
    await page.getByTestId("profile-max-auto-approve").fill(maxAutoApprove);
  }
  await page.getByTestId("join").click();
  await page.getByTestId("room-screen").waitFor();
  return page;
}

async function say(page: Page, text: string): Promise<void> {
  await page.getByTestId("say-input").fill(text);
  await page.getByTestId("say-input").press("Enter");
  await page.getByTestId("transcript").getByText(text).waitFor();
}

describe("browser app: mandates and declining", () => {
  it("shows the approval request to its person only, approves it, then declines the contract with a reason both see", async () => {
    const roomId = `approve-${Date.now().toString(36)}`;
    const sam = await person(roomId, "Sam", "provider");
    const alex = await person(roomId, "Alex", "client", "100");
    await say(sam, "Four hundred and fifty pounds for the gutter repair.");
    await say(sam, "Handshake.");

    // The prompt is a step of Alex's deal timeline.
    const request = alex.locator('[data-testid="timeline"] [data-testid="approval"]');
    await request.waitFor();
    expect(await request.getAttribute("data-status")).toBe("PENDING");
    expect(await request.textContent()).toContain("Pay £450.00 to Sam for Gutter repair");
    expect(await sam.getByTestId("approval").count()).toBe(0);
    expect(await seriousViolations(alex)).toEqual([]);
    await mkdir(ARTIFACTS, { recursive: true });
    await alex.screenshot({ path: path.join(ARTIFACTS, "approval-prompt.png"), fullPage: true });
    await alex.getByTestId("approval-approve").click();
    await alex.locator('[data-testid="approval"][data-status="APPROVED"]').waitFor();

    // The contract opens in a sheet by itself, waiting for her signature.
    await alex.locator('[data-testid="contract-sheet"][open] [data-testid="contract"][data-status="AWAITING_SIGNATURES"]').waitFor();
    expect(await alex.getByTestId("contract-total").textContent()).toBe("£450.00");
    await alex.getByTestId("decline-button").click();
    await alex.getByTestId("notices").getByText("Say why you decline").waitFor();
    await alex.getByTestId("decline-reason").fill("I found someone closer.");
    await alex.getByTestId("decline-button").click();

    for (const page of [sam, alex]) {
      await page.locator('[data-testid="contract"][data-status="DECLINED"]').waitFor();
      expect(await page.getByTestId("declined-reason").textContent()).toContain("I found someone closer.");
      expect(await page.getByTestId("decline-form").count()).toBe(0);
      expect(await page.getByTestId("sign-button").count()).toBe(0);
      await page.locator('[data-testid="timeline"] [data-kind="declined"]', { hasText: "I found someone closer." }).waitFor({ state: "attached" });
    }
    await alex.locator('[data-testid="trigger-state"] [data-armed="true"]').waitFor();
    expect(pageErrors).toEqual([]);
  }, 120_000);
});
