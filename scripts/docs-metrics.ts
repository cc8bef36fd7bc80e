// `npm run docs:metrics`: makes docs/metrics.png, the README's picture of the metrics after a demo
// run. Starts the real server (offline engines, ledger) and Debian's prometheus with the repo's
// scrape config, runs a few deals, then renders what Prometheus holds (stage p50/p99, RPCs by
// method, rail outcomes) as a page in headless Chromium and saves its screenshot.
import { mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { launchChromium } from "../test/support/browser.js";
import { startTestApp } from "../test/support/app.js";
import { paidDeal } from "../test/support/deal-run.js";
import { startPrometheus, type PrometheusServer } from "../test/support/prometheus.js";
import { tempDir } from "../test/support/store.js";

const OUT = fileURLToPath(new URL("../docs/metrics.png", import.meta.url));
const DEALS = 4;
const STAGES = [
  ["handshake_trigger_to_proposal_seconds", "trigger → first proposal"],
  ["handshake_negotiation_duration_seconds", "negotiation"],
  ["handshake_contract_drafted_to_signed_seconds", "contract drafted → both signed"],
  ["handshake_payment_rail_call_duration_seconds", "payment rail calls"],
  ["handshake_event_log_write_seconds", "event log write"],
  ["handshake_store_call_duration_seconds", "store calls"],
] as const;

const escape = (text: string) => text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
const seconds = (s: number) => (Number.isNaN(s) ? "–" : s < 0.001 ? `${(s * 1e6).toFixed(0)} µs` : s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(2)} s`);

async function page(prometheus: PrometheusServer): Promise<string> {
  const one = async (expr: string) => (await prometheus.query(expr))[0]?.value ?? Number.NaN;
  const quantile = (q: number, name: string) => one(`histogram_quantile(${q}, sum by (le) (${name}_bucket))`);
  const stageRows = await Promise.all(
    STAGES.map(async ([name, label]) => `<tr><td>${label}</td><td class="n">${await one(`sum(${name}_count)`)}</td><td class="n">${seconds(await quantile(0.5, name))}</td><td class="n">${seconds(await quantile(0.99, name))}</td><td class="m">${name}</td></tr>`),
  );
  const rpcs = (await prometheus.query(`sum by (method, path, code) (handshake_rpc_duration_seconds_count)`)).sort((a, b) => b.value - a.value);
  const most = Math.max(1, ...rpcs.map((r) => r.value));
  const rpcRows = rpcs.map(
    (r) =>
      `<tr><td>${escape(r.metric.method ?? "")}</td><td>${escape(r.metric.path ?? "")}</td><td>${escape(r.metric.code ?? "")}</td><td class="n">${r.value}</td><td><div class="bar" style="width:${Math.round((r.value / most) * 220)}px"></div></td></tr>`,
  );
  const rails = await prometheus.query(`sum by (rail, action, outcome) (handshake_payment_rail_call_duration_seconds_count)`);
  const railRows = rails.map((r) => `<tr><td>${escape(r.metric.rail ?? "")}</td><td>${escape(r.metric.action ?? "")}</td><td>${escape(r.metric.outcome ?? "")}</td><td class="n">${r.value}</td></tr>`);
  const rounds = await one(`sum(handshake_negotiation_rounds_sum) / sum(handshake_negotiation_rounds_count)`);
  return `<!doctype html><html><head><meta charset="utf-8"><style>
    body { font: 13px system-ui, sans-serif; margin: 24px; color: #1d2330; width: 1040px; }
    h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 22px 0 6px; } p { margin: 0; color: #5b6475; }
    table { border-collapse: collapse; } td, th { padding: 4px 10px; border-bottom: 1px solid #e3e6ec; text-align: left; }
    th { background: #f3f5f8; font-weight: 600; } .n { text-align: right; font-variant-numeric: tabular-nums; } .m { color: #7a8396; font-family: monospace; }
    .bar { height: 10px; background: #3d7bd9; border-radius: 2px; } .cols { display: flex; gap: 32px; align-items: flex-start; }
  </style></head><body>
    <h1>Handshake metrics after a demo run</h1>
    <p>${DEALS} deals through a real server (offline agents, ledger rail), scraped every second by Prometheus with deploy/prometheus/prometheus.yml; mean negotiation rounds ${rounds.toFixed(1)}.</p>
    <h2>Deal stages</h2>
    <table><tr><th>stage</th><th>count</th><th>p50</th><th>p99</th><th>metric</th></tr>${stageRows.join("")}</table>
    <div class="cols">
      <div><h2>RPCs by method, path and code</h2><table><tr><th>method</th><th>path</th><th>code</th><th>calls</th><th></th></tr>${rpcRows.join("")}</table></div>
      <div><h2>Payment rail calls</h2><table><tr><th>rail</th><th>action</th><th>outcome</th><th>calls</th></tr>${railRows.join("")}</table></div>
    </div>
  </body></html>`;
}

const work = await tempDir();
const t = await startTestApp();
const prometheus = await startPrometheus(`127.0.0.1:${t.port}`, work.dir);
try {
  for (let i = 0; i < DEALS; i++) {
    const { provider, client } = await paidDeal(t, `demo-${i}`);
    await Promise.all([provider.panel.stop(), client.panel.stop()]);
  }
  // Until a scrape after the last deal is stored (both signatures of every deal counted), at most 30 s.
  const signed = `sum(handshake_rpc_duration_seconds_count{method="handshake.v1.RoomService/SignContract"})`;
  for (let i = 0; i < 150 && ((await prometheus.query(signed))[0]?.value ?? 0) < 2 * DEALS; i++) await delay(200);
  const html = await page(prometheus);
  const browser = await launchChromium();
  try {
    const tab = await browser.newPage({ viewport: { width: 1100, height: 800 }, deviceScaleFactor: 1 });
    await tab.setContent(html);
    await mkdir(fileURLToPath(new URL("../docs/", import.meta.url)), { recursive: true });
    await tab.screenshot({ path: OUT, fullPage: true });
  } finally {
    await browser.close();
  }
  console.log(`wrote ${OUT}`);
} finally {
  await prometheus.close();
  await t.close();
  await work.cleanup();
}
