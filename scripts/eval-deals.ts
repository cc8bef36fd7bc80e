// `npm run eval:deals`: every conversation in test/fixtures/deals through the real server over gRPC
// (offline engines, device transcripts), one line per case and a pass rate; exits 1 below 100 %.
// Options: --only <id-part>[,<id-part>…] runs a subset; --concurrency N (default 6); --verbose shows
// what passing cases produced too.
import { runDealEval } from "../test/support/deal-eval.js";

const args = process.argv.slice(2);
const value = (name: string) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const only = value("--only")?.split(",").filter(Boolean);
const concurrency = Number(value("--concurrency") ?? process.env.EVAL_CONCURRENCY ?? 6);

const verbose = args.includes("--verbose");
const report = await runDealEval({ concurrency, verbose, ...(only ? { only } : {}), print: (line) => console.log(line) });
process.exitCode = report.total > 0 && report.passed === report.total ? 0 : 1;
