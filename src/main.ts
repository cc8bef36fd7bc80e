import { existsSync } from "node:fs";
import { startApp } from "./compose/app.js";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger, createStartupLogger } from "./core/log.js";
import { startTelemetry } from "./compose/telemetry.js";

/** Most time shutdown may take before the process exits anyway. */
const SHUTDOWN_LIMIT_MS = 9_000;

/** Where a browser on this machine opens the app: a wildcard listen address is reached on localhost. */
function openUrl(host: string, port: number, secure: boolean): string {
  const name = host === "" || host === "0.0.0.0" || host === "::" ? "localhost" : host.includes(":") ? `[${host}]` : host;
  return `${secure ? "https" : "http"}://${name}:${port}/`;
}

async function main(): Promise<void> {
  let config;
  try {
    // `.env` (a copy of .env.example) fills in what the environment leaves unset; the environment wins.
    if (existsSync(".env")) {
      try {
        process.loadEnvFile(".env");
      } catch (err) {
        throw new ConfigError(`.env could not be read: ${(err as Error).message}`);
      }
    }
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      // One JSON line like every other; the message names what to fix.
      createStartupLogger().fatal(`configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  // Off (the API's no-op) unless OTEL_EXPORTER_OTLP_ENDPOINT is set.
  const telemetry = startTelemetry();
  if (telemetry) log.info("tracing to OTLP");
  // Start-up checks against outside services (the Claude model) also end in a ConfigError.
  const app = await startApp(config, log).catch((err: unknown) => {
    if (!(err instanceof ConfigError)) throw err;
    createStartupLogger().fatal(`configuration error: ${err.message}`);
    process.exit(2);
  });
  log.info({ host: config.host, port: app.port, dataDir: config.dataDir }, "listening");
  const url = openUrl(config.host, app.port, config.tls !== undefined);
  if (app.deps.webRoot) log.info({ url }, `open ${url}`);
  else log.warn({ url }, "no browser app to serve: build it with npm run build:web (npm start does)");

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    const forced = setTimeout(() => {
      log.error("shutdown took too long; exiting");
      process.exit(1);
    }, SHUTDOWN_LIMIT_MS);
    forced.unref();
    app.close().then(
      async () => {
        await telemetry?.shutdown().catch((err: unknown) => log.warn({ err }, "flushing traces failed"));
        log.info("stopped");
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

void main().catch((err: unknown) => {
  createStartupLogger().fatal({ err }, "handshake failed to start");
  process.exit(1);
});
