import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { freePort } from "./ports.js";

/** Debian's prometheus (installed by .ci/run). */
export const PROMETHEUS_BIN = "/usr/bin/prometheus";
/** The repo's scrape config, which the server's operators use. */
export const SCRAPE_CONFIG = fileURLToPath(new URL("../../deploy/prometheus/prometheus.yml", import.meta.url));

/** A running Prometheus scraping one Handshake server. */
export interface PrometheusServer {
  /** http://127.0.0.1:<port> */
  url: string;
  /** An instant query through the HTTP API (/api/v1/query): each series' labels and value. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: number }[]>;
  /** Stops it and waits for the process to exit. */
  close(): Promise<void>;
}

/**
 * The repo's scrape config with the target and the interval filled in: the two lines marked
 * `# targets` and `# interval`; throws if the file no longer has them.
 */
export async function scrapeConfigFor(target: string, interval: string): Promise<string> {
  const text = await readFile(SCRAPE_CONFIG, "utf8");
  const filled = text
    .replace(/scrape_interval: \S+ # interval/, `scrape_interval: ${interval} # interval`)
    .replace(/- targets: \[[^\]]*\] # targets/, `- targets: [${JSON.stringify(target)}] # targets`);
  if (!filled.includes(`${interval} # interval`) || !filled.includes(`[${JSON.stringify(target)}] # targets`)) {
    throw new Error(`${SCRAPE_CONFIG} lost its "# interval" or "# targets" line`);
  }
  return filled;
}

/**
 * Starts Prometheus on 127.0.0.1 scraping `target` (host:port) every second, its config and data
 * in `dir`; resolves once it reports ready.
 */
export async function startPrometheus(target: string, dir: string): Promise<PrometheusServer> {
  const port = await freePort();
  const configFile = path.join(dir, "prometheus.yml");
  await writeFile(configFile, await scrapeConfigFor(target, "1s"));
  const child = spawn(
    PROMETHEUS_BIN,
    [`--config.file=${configFile}`, `--storage.tsdb.path=${path.join(dir, "tsdb")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const exited = once(child, "exit");
  const url = `http://127.0.0.1:${port}`;
  const close = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(killer);
  };
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`prometheus exited: ${stderr}`);
      const ready = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
      if (ready) break;
      if (i > 300) throw new Error(`prometheus not ready after 30 s: ${stderr}`);
      await delay(100);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    url,
    async query(expr) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.json()) as { status: string; error?: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      if (body.status !== "success" || !body.data) throw new Error(`query ${expr} failed: ${body.error ?? res.status}`);
      return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
    close,
  };
}
