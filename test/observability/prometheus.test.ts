import { readFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import { paidDeal } from "../support/deal-run.js";
import { startPrometheus, type PrometheusServer } from "../support/prometheus.js";
import { tempDir } from "../support/store.js";

/** The Grafana dashboard in the repo: a panel's title and its PromQL targets. */
type Dashboard = { panels: { type: string; title: string; targets?: { expr: string }[] }[] };
const DASHBOARD = new URL("../../deploy/grafana/handshake-dashboard.json", import.meta.url);

/** The per-stage histograms one offline deal with device transcripts moves, each at least once. */
const STAGE_HISTOGRAMS = [
  "handshake_trigger_to_proposal_seconds",
  "handshake_negotiation_duration_seconds",
  "handshake_negotiation_rounds",
  "handshake_contract_drafted_to_signed_seconds",
  "handshake_payment_rail_call_duration_seconds",
  "handshake_event_log_write_seconds",
];

describe("Debian's prometheus scraping a real server with the repo's scrape config", () => {
  let t: TestApp;
  let prometheus: PrometheusServer;
  let work: { dir: string; cleanup: () => Promise<void> };

  beforeAll(async () => {
    work = await tempDir();
    t = await startTestApp();
    prometheus = await startPrometheus(`127.0.0.1:${t.port}`, work.dir);
  });
  afterAll(async () => {
    await prometheus?.close();
    await t?.close();
    await work?.cleanup();
  });

  it("after one deal, holds every stage histogram with count ≥ 1 and the RPC counters by method, path and code", async () => {
    const { provider, client } = await paidDeal(t, "prometheus-room");
    await Promise.all([provider.panel.stop(), client.panel.stop()]);

    const countOf = async (expr: string) => (await prometheus.query(expr)).reduce((sum, r) => sum + r.value, 0);
    const wanted = [
      ...STAGE_HISTOGRAMS.map((name) => ({ expr: `sum(${name}_count{job="handshake"})`, atLeast: 1 })),
      { expr: `sum(handshake_rpc_duration_seconds_count{method="handshake.v1.RoomService/SignContract",path="connect",code="OK"})`, atLeast: 2 },
      { expr: `sum(handshake_rpc_duration_seconds_count{method="handshake.v1.RoomService/JoinRoom",code="OK"})`, atLeast: 2 },
    ];
    // Scraped every second: wait, bounded, until a scrape after the deal is stored.
    let counts: number[] = [];
    for (let i = 0; i < 150; i++) {
      counts = await Promise.all(wanted.map((w) => countOf(w.expr)));
      if (counts.every((c, j) => c >= wanted[j]!.atLeast)) break;
      await delay(200);
    }
    expect(Object.fromEntries(wanted.map((w, j) => [w.expr, counts[j]! >= w.atLeast]))).toEqual(Object.fromEntries(wanted.map((w) => [w.expr, true])));

    const up = await prometheus.query(`up{job="handshake"}`);
    expect(up).toEqual([{ metric: expect.objectContaining({ instance: `127.0.0.1:${t.port}`, deployment: "handshake" }), value: 1 }]);
    // The labels Prometheus stored are the bounded sets: no room, user or contract id anywhere.
    const series = await prometheus.query(`{__name__=~"handshake_.*"}`);
    expect(series.length).toBeGreaterThan(10);
    for (const { metric } of series) {
      for (const value of Object.values(metric)) expect(value).not.toMatch(/prometheus-room|usr_|ctr_|neg_/);
    }
  });

  it("runs every query of the Grafana dashboard, each on metrics the server serves", async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8")) as Dashboard;
    // Declared (# TYPE) is enough: a labelled histogram has no samples before its first observation.
    const exposition = await (await fetch(`${t.baseUrl}/metrics`)).text();
    const declared = new Set([...exposition.matchAll(/^# TYPE (\S+) (\w+)$/gm)].flatMap(([, name, type]) => (type === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!])));
    const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((target) => ({ title: p.title, expr: target.expr })));
    expect(queries.length).toBeGreaterThan(20);
    for (const { title, expr } of queries) {
      // Grafana's variables as Grafana would fill them for this one server.
      const filled = expr.replaceAll("$__rate_interval", "1m").replaceAll("$job", "handshake").replaceAll("$instance", ".*");
      await expect(prometheus.query(filled), title).resolves.toBeInstanceOf(Array);
      for (const name of expr.match(/\b(?:handshake|process|nodejs)_[a-z0-9_]+/g) ?? []) expect(declared, `${title}: ${name}`).toContain(name);
    }
  });
});
