import { createRequire } from "node:module";
import path from "node:path";
import type { Page } from "playwright-core";

/*
 * An accessibility check of what a page shows now, with axe-core run inside the page: the
 * violations rated serious or critical, one line each, so a test can expect none.
 */

const AXE_SCRIPT = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/** Runs axe-core on `page` and returns its serious and critical violations as "rule: target" lines. */
export async function seriousViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: AXE_SCRIPT });
  const found = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(context: Document, options: object): Promise<{ violations: { id: string; impact?: string | null; nodes: { target: unknown[] }[] }[] }> } }).axe;
    const result = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact ?? "", targets: v.nodes.map((n) => JSON.stringify(n.target)) }));
  });
  return found.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id}: ${v.targets.join(", ")}`);
}

/** The widths every browser-test screen is photographed at. */
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/**
 * Checks what `page` shows with axe-core (the test fails on a serious or critical violation),
 * then photographs it into `dir` as `<name>.png` at desktop width and `<name>-phone.png` at
 * phone width, and goes back to desktop width.
 */
export async function photographScreen(page: Page, dir: string, name: string): Promise<void> {
  const violations = await seriousViolations(page);
  if (violations.length > 0) throw new Error(`${name}: serious accessibility violations:\n${violations.join("\n")}`);
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  // The phone layout has its own rules (the sheet from the bottom, one column): axe checks it too.
  const phoneViolations = await seriousViolations(page);
  if (phoneViolations.length > 0) throw new Error(`${name} (phone): serious accessibility violations:\n${phoneViolations.join("\n")}`);
  await page.screenshot({ path: path.join(dir, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
}
