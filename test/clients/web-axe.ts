import { createRequire } from "node:module";
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
