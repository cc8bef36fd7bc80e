import { describe, expect, it } from "vitest";
import { formatResult, runDealEval } from "../support/deal-eval.js";

// The deal-fidelity eval of issue 14, end to end in real time: it fails below 100 %.
describe("deal fidelity (npm run eval:deals)", () => {
  it("turns every conversation in test/fixtures/deals into exactly the contract the people agreed", async () => {
    const report = await runDealEval({ concurrency: 6, print: (line) => console.log(line) });
    const failing = report.results.filter((r) => !r.pass).map((r) => formatResult(r));
    expect(report.total).toBeGreaterThanOrEqual(40);
    expect(failing, `${report.passed}/${report.total} passed`).toEqual([]);
  }, 900_000);
});
